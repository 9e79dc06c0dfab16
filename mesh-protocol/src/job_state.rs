//! `JobState`: where a job is, as the coordinator tracks it and the agent mirrors it.
//!
//! Only the names live here; the transitions are applied by the coordinator (and mirrored by the
//! agent's store), not by this crate.

use serde::{Deserialize, Serialize};

/// A job's state. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for an agent.
    Queued,
    /// Sent to an agent under a lease, not yet acknowledged.
    Dispatched,
    /// The agent committed it; `started` has not arrived yet.
    Accepted,
    /// `started` arrived for the current lease; the runner may launch.
    Running,
    /// A cancel is in progress.
    Cancelling,
    /// Running, but no heartbeat listed the lease for `leaseTtlMs`.
    Disconnected,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Stopped by a cancel.
    Cancelled,
    /// Stopped by its deadline.
    TimedOut,
    /// Disconnected for longer than `orphanTimeoutMs`.
    Lost,
    /// A state this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

impl JobState {
    /// Whether the job is over. `Unknown` counts as not over, so nothing is deleted on a guess.
    pub fn is_terminal(self) -> bool {
        match self {
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::TimedOut | Self::Lost => true,
            Self::Queued
            | Self::Dispatched
            | Self::Accepted
            | Self::Running
            | Self::Cancelling
            | Self::Disconnected
            | Self::Unknown => false,
        }
    }
}
