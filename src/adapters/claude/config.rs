//! `ClaudeConfig`: which `claude` to run, in which environment, with which extra flags, retry
//! budget and deadlines. Built from settings in production; tests fill the fields directly.
//! Constructing it never touches the filesystem or starts anything.

use std::path::PathBuf;

use crate::adapters::process::{ChildEnv, Deadlines, Secrets};
use crate::config::{keys, runners, DataDir, Env, Settings};

/// The runner id jobs name.
pub const RUNNER_ID: &str = "claude";

/// Subdirectory of `<data-dir>/runners` kimaki keeps for Claude Code (per-job stderr logs).
const STATE_SUBDIR: &str = "claude";

/// Credentials Claude Code may read from the environment; scrubbed from every message.
const SECRET_ENV: [&str; 3] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
];

/// Claude's own default is 10 retries over more than 150 s; three keep a flaky endpoint usable
/// while a dead one fails within seconds.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// How kimaki runs Claude Code.
#[derive(Debug, Clone)]
pub struct ClaudeConfig {
    /// The executable: a path, or a name looked up on `search_path`.
    pub program: String,
    /// The PATH used to find `program`.
    pub search_path: Option<String>,
    /// kimaki's own directory for this runner (per-job stderr logs under `logs/`).
    pub state_dir: PathBuf,
    /// Model for jobs that name none; `None` keeps Claude Code's configured default.
    pub default_model: Option<String>,
    /// The child's environment. Production inherits kimaki's (minus `KIMAKI_*`/`MESH_*`), so the
    /// user's login and `~/.claude` apply; tests start empty.
    pub env: ChildEnv,
    /// Extra command-line arguments, after kimaki's own.
    pub extra_args: Vec<String>,
    /// `CLAUDE_CODE_MAX_RETRIES`; `None` leaves Claude's default.
    pub max_retries: Option<u32>,
    /// Values scrubbed from failure messages (API keys the child can see).
    pub secrets: Secrets,
    pub deadlines: Deadlines,
}

impl ClaudeConfig {
    /// Defaults around `program`: inherited environment, [`DEFAULT_MAX_RETRIES`].
    pub fn new(program: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            search_path: None,
            state_dir: state_dir.into(),
            default_model: None,
            env: ChildEnv {
                inherit: true,
                remove: Vec::new(),
                vars: Vec::new(),
            },
            extra_args: Vec::new(),
            max_retries: Some(DEFAULT_MAX_RETRIES),
            secrets: Secrets::default(),
            deadlines: Deadlines::default(),
        }
    }

    /// Production settings: `CLAUDE_BIN` on PATH, `KIMAKI_MODEL` as the default model.
    pub fn from_settings(settings: &Settings, data_dir: &DataDir, env: &Env) -> Self {
        let mut config = Self::new(
            settings.get(keys::CLAUDE_BIN),
            data_dir.runners_dir().join(STATE_SUBDIR),
        );
        config.search_path = env.path().map(str::to_owned);
        config.env.remove = env.owned_names();
        config.default_model = Some(settings.get(keys::MODEL))
            .filter(|m| !m.is_empty())
            .map(str::to_owned);
        config.secrets = Secrets(
            SECRET_ENV
                .iter()
                .filter_map(|k| env.get(k))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect(),
        );
        config
    }

    pub(super) fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// Values to scrub: the configured secrets plus any credential-looking explicit variables.
    pub(super) fn all_secrets(&self) -> Vec<String> {
        let mut out = self.secrets.0.clone();
        out.extend(self.env.secret_values());
        out
    }

    /// The child's environment: the configured one plus the variables kimaki always sets.
    pub(super) fn child_env(&self) -> ChildEnv {
        let mut env = ChildEnv {
            inherit: self.env.inherit,
            remove: self.env.remove.clone(),
            vars: Vec::new(),
        };
        // Zero DNS lookups besides the model endpoint: no telemetry, update checks or error
        // reports from a headless agent.
        env.vars.push((
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_owned(),
            "1".to_owned(),
        ));
        if let Some(n) = self.max_retries {
            env.vars
                .push(("CLAUDE_CODE_MAX_RETRIES".to_owned(), n.to_string()));
        }
        // Explicit variables come last so a test or an operator can override the above.
        env.vars.extend(self.env.vars.iter().cloned());
        env
    }
}

/// The install command and pinned version from the runner table.
pub(super) fn spec() -> Option<&'static runners::RunnerSpec> {
    runners::find(RUNNER_ID)
}
