//! `job.observed`: a job this agent runs that no coordinator dispatched (a Discord message, the
//! CLI, a scheduled task), announced so the mesh can watch it. Negotiated by the feature
//! `observe`; a coordinator without it never receives one.
//!
//! The coordinator answers with `job.events.ack` (`ackedSeq` 0 for a new job, its stored value
//! for a repeat); the job's `job.event`s follow only after that first ack, under the `leaseId`
//! the agent minted, with the same seq, window and resume rules as a dispatched job. The
//! coordinator may only watch: a `job.cancel` or `job.input` for an observed job is answered
//! `unknown`, since the person who started it decides (in Discord, on the CLI).

use serde::{Deserialize, Serialize};

use crate::ids::{JobId, LeaseId, MsgId, Timestamp, WorkspaceId};
use crate::inventory::RunnerKind;

/// Longest `prompt` in a `job.observed`, in bytes; a longer prompt is cut in the middle.
pub const MAX_OBSERVED_PROMPT_BYTES: usize = 16 * 1024;

open_string_enum! {
    /// Where an observed job came from. Values this version does not know are kept by name.
    pub enum JobOrigin {
        /// A message, slash command or voice note in Discord.
        Discord = "discord",
        /// `kimaki send` or another local command.
        Cli = "cli",
        /// A scheduled task.
        Schedule = "schedule",
        /// The agent's local HTTP API.
        Api = "api",
    }
    other = Other;
}

/// `job.observed`: announces a job the coordinator did not dispatch. Idempotent on
/// `(jobId, leaseId)`; answered by `job.events.ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobObservedNotification {
    /// This message.
    pub msg_id: MsgId,
    /// The job, as the agent names it.
    pub job_id: JobId,
    /// Minted by the agent; the job's `job.event`s carry it.
    pub lease_id: LeaseId,
    /// Where the job came from.
    pub origin: JobOrigin,
    /// Which runner runs it.
    pub runner: RunnerKind,
    /// The advertised workspace it runs in; absent when it runs elsewhere (a worktree, a
    /// directory that is not a workspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<WorkspaceId>,
    /// The conversation it belongs to (one Discord thread, one CLI session): jobs of one
    /// conversation share it, and run one after another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The prompt, at most `MAX_OBSERVED_PROMPT_BYTES` (cut in the middle when longer).
    pub prompt: String,
    /// Model override, when the job has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// When the job was queued.
    pub created_at: Timestamp,
}
