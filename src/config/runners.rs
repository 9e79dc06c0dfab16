//! Facts about the runner CLIs kimaki supports: which setting names the executable, which version
//! the test suite ran against, and how to install it.

use super::keys;

#[derive(Debug, Clone, Copy)]
pub struct RunnerSpec {
    /// The runner id used in `KIMAKI_RUNNER` and in jobs.
    pub id: &'static str,
    pub display: &'static str,
    /// The setting that names its executable.
    pub program_key: &'static str,
    /// The version kimaki's tests run against; others may work but are untested.
    pub tested_version: &'static str,
    pub install: &'static str,
}

pub const RUNNERS: &[RunnerSpec] = &[
    RunnerSpec {
        id: "opencode",
        display: "OpenCode",
        program_key: keys::OPENCODE_BIN,
        tested_version: "1.18.33",
        install: "npm install -g opencode-ai@1.18.33",
    },
    RunnerSpec {
        id: "codex",
        display: "Codex CLI",
        program_key: keys::CODEX_BIN,
        tested_version: "0.169.0",
        install: "npm install -g @openai/codex@0.169.0",
    },
    RunnerSpec {
        id: "claude",
        display: "Claude Code",
        program_key: keys::CLAUDE_BIN,
        tested_version: "2.1.197",
        install: "npm install -g @anthropic-ai/claude-code@2.1.197",
    },
];

pub fn find(id: &str) -> Option<&'static RunnerSpec> {
    RUNNERS.iter().find(|r| r.id == id)
}
