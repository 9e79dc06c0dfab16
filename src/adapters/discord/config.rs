//! `DiscordConfig`: the token, where the API lives, who may use the bot, defaults for channels,
//! the shell capability and every timing. Built from settings in production; tests fill the
//! fields (an API base pointing at a twin, short timeouts). Constructing it starts nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serenity::client::RawEventHandler;

use super::gateway_proxy::Authorization;
use super::outbound::OutboundTimings;
use super::render::Verbosity;
use crate::config::{keys, validate, DataDir, Env, Secret, Settings};

/// Discord's production API host.
pub const DEFAULT_API_BASE: &str = "https://discord.com";

/// The role that blocks everyone, owner included (case-insensitive).
pub const BLOCKED_ROLE: &str = "no-kimaki";

/// Who may use the bot.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// Users allowed besides the owner, admins, Manage Server and the allowed roles.
    pub allowed_users: Vec<u64>,
    /// Role names (case-insensitive); the first is created at setup if none exists.
    pub allowed_roles: Vec<String>,
    /// Other bots whose messages start sessions.
    pub allowed_bots: Vec<u64>,
    /// Roles (besides owner, admins and Manage Server) that may run `!command`.
    pub shell_roles: Vec<String>,
}

/// Timings; the defaults are production values, tests shorten them.
#[derive(Debug, Clone)]
pub struct DiscordTimings {
    /// Each REST request's own deadline.
    pub request_timeout: Duration,
    /// `spawn` waits this long for READY (or a fatal close) before returning anyway.
    pub ready_timeout: Duration,
    /// A refused user hears about it at most once per channel in this period.
    pub refusal_cooldown: Duration,
    /// Permission prompts are denied automatically after this long.
    pub permission_timeout: Duration,
    /// `!command` is killed after this long.
    pub shell_timeout: Duration,
    /// Registered projects without a channel are looked for this often.
    pub channel_sync_interval: Duration,
    pub outbound: OutboundTimings,
}

impl Default for DiscordTimings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
            ready_timeout: Duration::from_secs(30),
            refusal_cooldown: Duration::from_secs(3600),
            permission_timeout: Duration::from_secs(10 * 60),
            shell_timeout: Duration::from_secs(10),
            channel_sync_interval: Duration::from_secs(60),
            outbound: OutboundTimings::default(),
        }
    }
}

/// How the Discord adapter runs.
#[derive(Clone)]
pub struct DiscordConfig {
    pub token: Secret,
    /// The shared bot through a gateway proxy (`kimaki start --gateway`): a refused token is a
    /// refused onboarding credential.
    pub gateway_mode: bool,
    /// The application id; `None` derives it from the token.
    pub app_id: Option<u64>,
    /// Only this guild is set up; `None` sets up every guild (channels only when there is one).
    pub guild_id: Option<u64>,
    /// `None` is Discord itself, with serenity's own rate limiter; a base URL (a proxy, a test
    /// server) disables it, because serenity ignores the base URL while its limiter is on.
    pub api_base: Option<String>,
    /// Downloads go here (`<data-dir>/attachments`).
    pub attachments_dir: PathBuf,
    /// `/add-project` may register directories directly inside this one.
    pub projects_dir: PathBuf,
    /// The runner new sessions use.
    pub runner: String,
    pub default_model: Option<String>,
    pub default_agent: Option<String>,
    pub access: AccessConfig,
    pub default_verbosity: Verbosity,
    pub default_mention_mode: bool,
    pub shell_enabled: bool,
    /// The machine's name, shown in channel topics.
    pub machine: String,
    pub timings: DiscordTimings,
    /// Sees every raw gateway event (tests install the twin's unknown-event guard).
    pub raw_event_handler: Option<Arc<dyn RawEventHandler>>,
}

impl std::fmt::Debug for DiscordConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordConfig")
            .field("token", &self.token)
            .field("guild_id", &self.guild_id)
            .field("api_base", &self.api_base)
            .field("runner", &self.runner)
            .field("access", &self.access)
            .field("default_verbosity", &self.default_verbosity)
            .field("default_mention_mode", &self.default_mention_mode)
            .field("shell_enabled", &self.shell_enabled)
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

fn snowflakes(settings: &Settings, key: &str) -> Vec<u64> {
    settings
        .list(key)
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn non_empty(s: &str) -> Option<String> {
    Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned)
}

impl DiscordConfig {
    /// Defaults around a token: Discord itself, the `Kimaki` role, text-and-essential-tools.
    pub fn new(token: Secret, data_dir: &DataDir) -> Self {
        Self {
            gateway_mode: false,
            token,
            app_id: None,
            guild_id: None,
            api_base: None,
            attachments_dir: data_dir.attachments_dir(),
            projects_dir: data_dir.default_projects_dir(),
            runner: "opencode".to_owned(),
            default_model: None,
            default_agent: None,
            access: AccessConfig {
                allowed_roles: vec!["Kimaki".to_owned()],
                ..AccessConfig::default()
            },
            default_verbosity: Verbosity::default(),
            default_mention_mode: false,
            shell_enabled: false,
            machine: machine_name(),
            timings: DiscordTimings::default(),
            raw_event_handler: None,
        }
    }

    /// Production settings. `None` when no bot token is set (kimaki then runs without Discord).
    pub fn from_settings(settings: &Settings, data_dir: &DataDir, _env: &Env) -> Option<Self> {
        let token = settings.secret(keys::BOT_TOKEN)?;
        let mut c = Self::new(token, data_dir);
        c.app_id = settings.get(keys::APP_ID).parse().ok();
        c.guild_id = settings.get(keys::GUILD_ID).parse().ok();
        let base = settings.get(keys::DISCORD_API_URL).trim_end_matches('/');
        c.api_base = (!base.is_empty() && base != DEFAULT_API_BASE).then(|| base.to_owned());
        c.apply_settings(settings);
        Some(c)
    }

    /// Gateway mode: the shared bot through the proxy at `api_base`, with the proxy's credential
    /// as its token, serving only the guild it was authorized in.
    pub fn through_gateway(
        settings: &Settings,
        data_dir: &DataDir,
        api_base: &str,
        authorization: &Authorization,
    ) -> Self {
        let mut c = Self::new(authorization.credential.clone(), data_dir);
        c.app_id = Some(authorization.app_id);
        c.guild_id = Some(authorization.guild_id);
        c.api_base = Some(api_base.trim_end_matches('/').to_owned());
        c.gateway_mode = true;
        c.apply_settings(settings);
        c
    }

    fn apply_settings(&mut self, settings: &Settings) {
        let c = self;
        if let Some(p) = non_empty(settings.get(keys::PROJECTS_DIR)) {
            c.projects_dir = PathBuf::from(p);
        }
        c.runner = non_empty(settings.get(keys::RUNNER)).unwrap_or_else(|| "opencode".into());
        c.default_model = non_empty(settings.get(keys::MODEL));
        c.default_agent = non_empty(settings.get(keys::AGENT));
        c.access = AccessConfig {
            allowed_users: snowflakes(settings, keys::ALLOWED_USERS),
            allowed_roles: settings.list(keys::ALLOWED_ROLES),
            allowed_bots: snowflakes(settings, keys::ALLOWED_BOTS),
            shell_roles: settings.list(keys::SHELL_ROLES),
        };
        c.default_verbosity = Verbosity::parse(settings.get(keys::VERBOSITY)).unwrap_or_default();
        c.default_mention_mode = settings.bool(keys::MENTION_MODE);
        c.shell_enabled = settings.bool(keys::SHELL_COMMANDS);
        c.timings.shell_timeout = Duration::from_secs(settings.u64(keys::SHELL_TIMEOUT_SECS));
        c.timings.permission_timeout =
            Duration::from_secs(settings.u64(keys::PERMISSION_TIMEOUT_MINUTES) * 60);
    }

    /// The configured application id, else the one encoded in the token.
    pub fn application_id(&self) -> Option<u64> {
        self.app_id.or_else(|| {
            validate::discord_app_id_from_token(self.token.expose())
                .ok()
                .and_then(|s| s.parse().ok())
        })
    }

    pub(super) fn api_base_or_default(&self) -> &str {
        self.api_base.as_deref().unwrap_or(DEFAULT_API_BASE)
    }
}

fn machine_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EnvFile, Layers};

    fn settings(file: &str) -> Settings {
        Settings::resolve(&Layers {
            flags: &[],
            env: &Env::default(),
            file: &EnvFile::parse(file),
            keyring: None,
        })
    }

    #[test]
    fn from_settings_reads_every_discord_key() {
        let data = DataDir::resolve(Some(std::path::Path::new("/tmp/kimaki-data"))).unwrap();
        assert!(DiscordConfig::from_settings(&settings(""), &data, &Env::default()).is_none());
        let file = "KIMAKI_BOT_TOKEN=MTIzNDU2Nzg5MDEyMzQ1Njc4.GTwin0.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\n\
                    KIMAKI_GUILD_ID=42\nKIMAKI_ALLOWED_USERS=1,2\nKIMAKI_ALLOWED_ROLES=Devs, Ops\n\
                    KIMAKI_ALLOWED_BOTS=9\nKIMAKI_DISCORD_API_URL=http://127.0.0.1:9/\n\
                    KIMAKI_RUNNER=codex\nKIMAKI_MODEL=m\nKIMAKI_VERBOSITY=text-only\n\
                    KIMAKI_MENTION_MODE=true\nKIMAKI_SHELL_COMMANDS=yes\nKIMAKI_SHELL_TIMEOUT_SECS=3\n\
                    KIMAKI_PERMISSION_TIMEOUT_MINUTES=2\n";
        let c = DiscordConfig::from_settings(&settings(file), &data, &Env::default()).unwrap();
        assert_eq!(c.guild_id, Some(42));
        assert_eq!(c.access.allowed_users, vec![1, 2]);
        assert_eq!(c.access.allowed_roles, vec!["Devs", "Ops"]);
        assert_eq!(c.access.allowed_bots, vec![9]);
        assert_eq!(c.api_base.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.runner, "codex");
        assert_eq!(c.default_model.as_deref(), Some("m"));
        assert_eq!(c.default_verbosity, Verbosity::TextOnly);
        assert!(c.default_mention_mode && c.shell_enabled);
        assert_eq!(c.timings.shell_timeout, Duration::from_secs(3));
        assert_eq!(c.timings.permission_timeout, Duration::from_secs(120));
        assert_eq!(c.application_id(), Some(123_456_789_012_345_678));
        assert_eq!(c.attachments_dir, data.attachments_dir());
        assert!(
            !format!("{c:?}").contains("kkkkkkkk"),
            "the token never shows in Debug"
        );
        let default_api = settings(
            "KIMAKI_BOT_TOKEN=MTIzNDU2Nzg5MDEyMzQ1Njc4.GTwin0.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\n",
        );
        let c = DiscordConfig::from_settings(&default_api, &data, &Env::default()).unwrap();
        assert_eq!(
            c.api_base, None,
            "Discord itself keeps serenity's rate limiter"
        );
        assert_eq!(c.access.allowed_roles, vec!["Kimaki"]);
    }
}
