//! `CodexConfig`: which `codex` to run, in which environment, with which `-c` overrides and
//! deadlines. Built from settings in production; tests fill the fields directly. Constructing it
//! never touches the filesystem or starts anything.

use std::path::PathBuf;

use crate::adapters::process::{ChildEnv, Deadlines, Secrets};
use crate::config::{keys, runners, DataDir, Env, Settings};

/// The runner id jobs name.
pub const RUNNER_ID: &str = "codex";

/// Subdirectory of `<data-dir>/runners` kimaki keeps for Codex (per-job stderr logs).
const STATE_SUBDIR: &str = "codex";

/// Provider credentials Codex may read from the environment; their values are scrubbed from
/// every message kimaki shows.
const SECRET_ENV: [&str; 3] = ["OPENAI_API_KEY", "CODEX_API_KEY", "AZURE_OPENAI_API_KEY"];

/// Which sandbox Codex runs commands in (its `sandbox` thread setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CodexSandbox {
    ReadOnly,
    /// Writes inside the workspace only (bubblewrap on Linux).
    #[default]
    WorkspaceWrite,
    /// No sandbox: for machines where bubblewrap cannot run (some containers).
    DangerFullAccess,
}

impl CodexSandbox {
    pub(super) fn as_wire(self) -> &'static str {
        match self {
            CodexSandbox::ReadOnly => "read-only",
            CodexSandbox::WorkspaceWrite => "workspace-write",
            CodexSandbox::DangerFullAccess => "danger-full-access",
        }
    }
}

/// How kimaki runs the Codex CLI.
#[derive(Debug, Clone)]
pub struct CodexConfig {
    /// The executable: a path, or a name looked up on `search_path`.
    pub program: String,
    /// The PATH used to find `program`.
    pub search_path: Option<String>,
    /// kimaki's own directory for this runner (per-job stderr logs under `logs/`).
    pub state_dir: PathBuf,
    /// Model for jobs that name none; `None` keeps Codex's configured default.
    pub default_model: Option<String>,
    /// The child's environment. Production inherits kimaki's (minus `KIMAKI_*`/`MESH_*`), so
    /// the user's `CODEX_HOME`, login and provider keys apply; tests start empty.
    pub env: ChildEnv,
    /// `-c key=value` overrides passed to `codex app-server`, after kimaki's own.
    pub config_overrides: Vec<String>,
    pub sandbox: CodexSandbox,
    /// Values scrubbed from failure messages (API keys the child can see).
    pub secrets: Secrets,
    pub deadlines: Deadlines,
}

impl CodexConfig {
    /// Defaults around `program`: inherited environment, workspace-write sandbox.
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
            config_overrides: Vec::new(),
            sandbox: CodexSandbox::default(),
            secrets: Secrets::default(),
            deadlines: Deadlines::default(),
        }
    }

    /// Production settings: `CODEX_BIN` on PATH, `KIMAKI_MODEL` as the default model.
    pub fn from_settings(settings: &Settings, data_dir: &DataDir, env: &Env) -> Self {
        let mut config = Self::new(
            settings.get(keys::CODEX_BIN),
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

    /// The log directory for per-job stderr.
    pub(super) fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// Values to scrub: the configured secrets plus any credential-looking explicit variables.
    pub(super) fn all_secrets(&self) -> Vec<String> {
        let mut out = self.secrets.0.clone();
        out.extend(self.env.secret_values());
        out
    }
}

/// The install command and pinned version from the runner table.
pub(super) fn spec() -> Option<&'static runners::RunnerSpec> {
    runners::find(RUNNER_ID)
}
