//! `OpencodeConfig`: which `opencode` program to run, the environment its server gets, and the
//! deadlines kimaki holds it to. Built once from `Settings`; tests set the fields directly.
//! Nothing here starts a process.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{keys, programs, runners, DataDir, Env, Settings};

/// The runner id jobs name.
pub(super) const RUNNER_ID: &str = "opencode";

/// Spawn to healthy takes 3–5 s on an idle 2-core machine and ~10 s under load; a cold disk cache
/// on a busy CI machine needs more.
pub(super) const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests made while OpenCode boots are accepted and never answered, so every probe is short
/// and retried.
pub(super) const DEFAULT_HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The first request for a new directory boots an OpenCode instance for it (config, plugins,
/// git), which takes seconds on a loaded machine; everything else answers in milliseconds.
pub(super) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A run with no event at all for this long (not counting time waiting for a person) is stuck.
pub(super) const DEFAULT_NO_PROGRESS_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// OpenCode retries an unreachable model forever (about 2, 5, 10, 18, 37 s apart); kimaki gives
/// up after this many retries…
pub(super) const DEFAULT_MODEL_RETRY_LIMIT: u32 = 3;
/// …or after retrying this long without any output, whichever comes first.
pub(super) const DEFAULT_MODEL_RETRY_WINDOW: Duration = Duration::from_secs(60);

/// kimaki pins and tests one OpenCode version; a server that updates itself in place would run
/// an untested one.
const PRODUCTION_ENV: [(&str, &str); 1] = [("OPENCODE_DISABLE_AUTOUPDATE", "1")];

/// How kimaki runs OpenCode.
#[derive(Debug, Clone)]
pub struct OpencodeConfig {
    /// The executable (`OPENCODE_BIN`, resolved on PATH when found).
    pub program: PathBuf,
    /// The server's private working directory (`<data-dir>/runners/opencode`).
    pub state_dir: PathBuf,
    /// Model for jobs that name none, as `provider/model`; `None` keeps the project's choice.
    pub default_model: Option<String>,
    /// Agent for jobs that name none; `None` keeps OpenCode's default agent.
    pub default_agent: Option<String>,
    /// Whether the server inherits kimaki's environment, minus kimaki's own `KIMAKI_*` and
    /// `MESH_*` variables (so kimaki's secrets never reach it). When false it starts empty.
    pub inherit_env: bool,
    /// Inherited variables to drop: kimaki's own (from the settings' environment snapshot).
    pub remove_env: Vec<String>,
    /// Variables set on top of that (tests: an isolated HOME, `OPENCODE_CONFIG_CONTENT`, …).
    pub env: Vec<(String, String)>,
    /// Spawn to healthy.
    pub boot_timeout: Duration,
    /// One `/global/health` probe.
    pub health_probe_timeout: Duration,
    /// One API request (create session, prompt, read messages, …).
    pub request_timeout: Duration,
    /// No event for this long (while nobody is being asked anything) aborts the run.
    pub no_progress_timeout: Duration,
    /// Model retries before the run is aborted as `ModelUnreachable`.
    pub model_retry_limit: u32,
    /// Time spent retrying the model before the run is aborted as `ModelUnreachable`.
    pub model_retry_window: Duration,
}

impl OpencodeConfig {
    /// Defaults for `program`, with the server working in `state_dir`.
    pub fn new(program: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            state_dir: state_dir.into(),
            default_model: None,
            default_agent: None,
            inherit_env: true,
            remove_env: Vec::new(),
            env: PRODUCTION_ENV
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
            health_probe_timeout: DEFAULT_HEALTH_PROBE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            no_progress_timeout: DEFAULT_NO_PROGRESS_TIMEOUT,
            model_retry_limit: DEFAULT_MODEL_RETRY_LIMIT,
            model_retry_window: DEFAULT_MODEL_RETRY_WINDOW,
        }
    }

    /// The configuration kimaki's settings describe: `OPENCODE_BIN` looked up on `PATH`, state
    /// under the data dir, and `KIMAKI_MODEL`/`KIMAKI_AGENT` as defaults when set.
    pub fn from_settings(settings: &Settings, data_dir: &DataDir, env: &Env) -> Self {
        let configured = settings.get(keys::OPENCODE_BIN);
        let program = programs::find_program(configured, env.path())
            .unwrap_or_else(|| PathBuf::from(configured));
        let mut config = Self::new(program, data_dir.runners_dir().join(RUNNER_ID));
        config.default_model = non_empty(settings.get(keys::MODEL));
        config.default_agent = non_empty(settings.get(keys::AGENT));
        config.remove_env = env.owned_names();
        config
    }

    /// How to install the version kimaki is tested with.
    pub(super) fn install_hint() -> &'static str {
        runners::find(RUNNER_ID).map_or("npm install -g opencode-ai", |r| r.install)
    }

    /// The version kimaki's tests ran against.
    pub(super) fn tested_version() -> &'static str {
        runners::find(RUNNER_ID).map_or("", |r| r.tested_version)
    }
}

fn non_empty(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EnvFile, Layers};

    fn settings(env: &Env, file: &str) -> Settings {
        Settings::resolve(&Layers {
            flags: &[],
            env,
            file: &EnvFile::parse(file),
            keyring: None,
        })
    }

    #[test]
    fn from_settings_resolves_program_state_dir_and_defaults() {
        let env = Env::from_pairs([("PATH", "/usr/bin:/bin")]);
        let data_dir = DataDir::resolve(Some(std::path::Path::new("/tmp/kimaki-data"))).unwrap();
        let config = OpencodeConfig::from_settings(
            &settings(
                &env,
                "OPENCODE_BIN=sh\nKIMAKI_MODEL=anthropic/claude-sonnet-4-5\n",
            ),
            &data_dir,
            &env,
        );
        assert!(config.program.is_absolute(), "{:?}", config.program);
        assert_eq!(config.state_dir, data_dir.runners_dir().join("opencode"));
        assert_eq!(
            config.default_model.as_deref(),
            Some("anthropic/claude-sonnet-4-5")
        );
        assert_eq!(config.default_agent, None);
        assert!(config.inherit_env);
        assert!(config
            .env
            .iter()
            .all(|(k, _)| k != "OPENCODE_PERMISSION" && k != "OPENCODE_CONFIG_CONTENT"));
    }

    #[test]
    fn a_missing_program_keeps_its_name_and_no_model_keeps_the_projects() {
        let env = Env::from_pairs([("PATH", "/nonexistent")]);
        let data_dir = DataDir::resolve(Some(std::path::Path::new("/tmp/kimaki-data"))).unwrap();
        let config = OpencodeConfig::from_settings(&settings(&env, ""), &data_dir, &env);
        assert_eq!(config.program, PathBuf::from("opencode"));
        assert_eq!(config.default_model, None);
    }

    #[test]
    fn kimaki_variables_are_not_inherited() {
        let env = Env::from_pairs([
            ("PATH", "/bin"),
            ("KIMAKI_BOT_TOKEN", "t"),
            ("MESH_TOKEN", "m"),
        ]);
        let data_dir = DataDir::resolve(Some(std::path::Path::new("/tmp/kimaki-data"))).unwrap();
        let config = OpencodeConfig::from_settings(&settings(&env, ""), &data_dir, &env);
        assert_eq!(config.remove_env, vec!["KIMAKI_BOT_TOKEN", "MESH_TOKEN"]);
    }
}
