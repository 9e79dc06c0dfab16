//! What an agent offers: its runners and workspaces, sent in `hello` and `inventory.update`.
//!
//! A workspace is announced by a stable id the agent made; its absolute path never leaves the
//! machine, and `job.dispatch` names it by that id.

use serde::{Deserialize, Serialize};

use crate::ids::WorkspaceId;

open_string_enum! {
    /// A runner id. Extension runners (`x-…`) and runners this version does not know are kept by
    /// name in `Other`, so a dispatch for them can still be routed or rejected by name.
    pub enum RunnerKind {
        /// OpenCode (`opencode serve`).
        OpenCode = "opencode",
        /// Codex CLI.
        Codex = "codex",
        /// Claude Code.
        ClaudeCode = "claude-code",
    }
    other = Other;
}

/// One runner the agent can start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Runner {
    /// Which runner.
    pub id: RunnerKind,
    /// Its version as the runner reports it.
    pub version: String,
    /// Whether jobs can be started on it now.
    pub available: bool,
    /// Why it is unavailable (binary missing, not logged in, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Models the runner offers, when it can list them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

/// One local workspace jobs can run in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// Stable id made by the agent.
    pub id: WorkspaceId,
    /// Display name.
    pub name: String,
    /// Version control facts, when the workspace is a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs: Option<Vcs>,
    /// Runners allowed in this workspace.
    pub runners: Vec<RunnerKind>,
}

/// Version control facts of a workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Vcs {
    /// Which system.
    pub kind: VcsKind,
    /// The remote's URL (credentials stripped by the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Current branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Whether the work tree has uncommitted changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
}

/// `vcs.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum VcsKind {
    /// Git.
    Git,
    /// A system this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}
