//! Builds the runners and adapters the configuration asks for.

use std::sync::Arc;

use super::onboarding::GatewayLogin;
use crate::adapters::claude::{ClaudeConfig, ClaudeRunner};
use crate::adapters::codex::{CodexConfig, CodexRunner};
use crate::adapters::discord::DiscordConfig;
use crate::adapters::mesh::MeshConfig;
use crate::adapters::opencode::{OpencodeConfig, OpencodeRunner};
use crate::adapters::voice::{VoiceConfig, VoiceTranscriber};
use crate::config::{keys, Loaded};
use crate::core::{Health, Runner, RunnerSet, Transcriber};

/// Every runner kimaki can drive, plus any the embedding program adds (tests, benchmarks).
/// A runner whose program is missing is still registered: its jobs fail with a clear
/// "not installed" error instead of an unknown-runner one, and `status` shows why.
pub(super) fn runners(loaded: &Loaded, extra: &[Arc<dyn Runner>]) -> RunnerSet {
    let max = usize::try_from(loaded.settings.u64(keys::MAX_CONCURRENT_JOBS)).unwrap_or(1);
    let (settings, data_dir, env) = (&loaded.settings, &loaded.data_dir, &loaded.env);
    let mut set = RunnerSet::new();
    set.add(
        Arc::new(OpencodeRunner::new(OpencodeConfig::from_settings(
            settings, data_dir, env,
        ))),
        max,
    );
    set.add(
        Arc::new(CodexRunner::new(CodexConfig::from_settings(
            settings, data_dir, env,
        ))),
        max,
    );
    set.add(
        Arc::new(ClaudeRunner::new(ClaudeConfig::from_settings(
            settings, data_dir, env,
        ))),
        max,
    );
    for r in extra {
        set.add(r.clone(), max);
    }
    set
}

/// The mesh link, when `MESH_URL` or `MESH_ENDPOINTS` is set.
pub(super) fn mesh(loaded: &Loaded) -> Option<MeshConfig> {
    MeshConfig::from_settings(&loaded.settings, &loaded.data_dir, &loaded.env)
}

/// The Discord bot: the shared one through the gateway proxy after onboarding, else the user's
/// own when a bot token is set.
pub(super) fn discord(loaded: &Loaded, gateway: Option<&GatewayLogin>) -> Option<DiscordConfig> {
    match gateway {
        Some(login) => Some(DiscordConfig::through_gateway(
            &loaded.settings,
            &loaded.data_dir,
            &login.api_base,
            &login.authorization,
        )),
        None => DiscordConfig::from_settings(&loaded.settings, &loaded.data_dir, &loaded.env),
    }
}

/// Reports each runner's installation (version, or why it is unavailable) in `status`.
pub(super) async fn probe_runners(runners: Arc<RunnerSet>, health: Health) {
    for runner in runners.runners() {
        let name = format!("runner:{}", runner.id());
        health.set(&name, "probing", None);
        let info = runner.probe().await;
        if info.available {
            health.set(&name, "ready", info.version.map(|v| format!("version {v}")));
        } else {
            health.set(&name, "unavailable", info.reason);
        }
    }
}

/// The transcriber for voice messages, when a provider is configured; `status` says why not.
pub(super) fn voice(loaded: &Loaded, health: &Health) -> Option<Arc<dyn Transcriber>> {
    match VoiceConfig::from_settings(&loaded.settings, &loaded.data_dir, &loaded.env) {
        Ok(config) => {
            let summary = config.describe();
            match VoiceTranscriber::new(config) {
                Ok(t) => {
                    health.set("voice", "ready", Some(summary));
                    Some(Arc::new(t))
                }
                Err(e) => {
                    health.set("voice", "failed", Some(e.to_string()));
                    None
                }
            }
        }
        Err(off) => {
            health.set("voice", "disabled", Some(off.reason));
            None
        }
    }
}

/// What `doctor` says about voice messages: the provider chain, or why there is none.
pub fn voice_report(loaded: &Loaded) -> Result<(String, Vec<String>), (String, String)> {
    match VoiceConfig::from_settings(&loaded.settings, &loaded.data_dir, &loaded.env) {
        Ok(config) => Ok((config.describe(), config.skipped.clone())),
        Err(off) => Err((off.reason, off.fix)),
    }
}
