//! Messages that keep a link healthy or end it: heartbeats, inventory changes, token rotation,
//! drain, `bye` and `mesh.error`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Token;
use crate::error::WireError;
use crate::ids::{JobId, LeaseId, MsgId, Timestamp};
use crate::inventory::{Runner, Workspace};
use crate::job::CancelReason;

/// `heartbeat`: sent every `heartbeatMs`; lists the leases the agent still holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatParams {
    /// This message.
    pub msg_id: MsgId,
    /// Jobs the agent is running under a lease.
    pub running: Vec<RunningJob>,
    /// How busy the agent is.
    pub load: Load,
}

/// One entry of `heartbeat.running`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RunningJob {
    /// The job.
    pub job_id: JobId,
    /// The lease it runs under.
    pub lease_id: LeaseId,
    /// Highest `seq` the agent has written for the job.
    pub last_seq: u64,
}

/// `heartbeat.load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Load {
    /// Jobs running now.
    pub running_jobs: u32,
    /// Jobs the agent would accept now.
    pub free_slots: u32,
}

/// `heartbeat.ok`: the answer to `heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResponse {
    /// This message.
    pub msg_id: MsgId,
    /// The `heartbeat` this answers.
    pub re: MsgId,
    /// The coordinator's clock.
    pub server_time: Timestamp,
    /// When each lease the heartbeat listed now expires.
    pub leases: Vec<LeaseExpiry>,
    /// Cancels still pending, repeated until the agent reports the job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<Vec<PendingCancel>>,
}

/// One entry of `heartbeat.ok.leases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeaseExpiry {
    /// The job.
    pub job_id: JobId,
    /// The lease.
    pub lease_id: LeaseId,
    /// When the lease runs out unless a heartbeat lists it again.
    pub expires_at: Timestamp,
}

/// One entry of `heartbeat.ok.cancel`; the same facts as a `job.cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PendingCancel {
    /// The job.
    pub job_id: JobId,
    /// The lease to cancel.
    pub lease_id: LeaseId,
    /// Why.
    pub reason: CancelReason,
    /// How long a graceful stop may take before the process group is terminated.
    pub grace_ms: u64,
}

/// `inventory.update`: runners or workspaces changed. No reply; the next `hello` re-sends all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct InventoryUpdateNotification {
    /// This message.
    pub msg_id: MsgId,
    /// Monotonic revision; the coordinator ignores a lower one, since handlers may reorder.
    pub rev: u64,
    /// The full runner list, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runners: Option<Vec<Runner>>,
    /// The full workspace list, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspaces: Option<Vec<Workspace>>,
}

/// `auth.rotate`: a new token, to commit (keeping the previous one) and use from the next connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuthRotateParams {
    /// This message.
    pub msg_id: MsgId,
    /// The new token.
    pub token: Token,
    /// When the new token becomes valid.
    pub valid_from: Timestamp,
    /// Until when the previous token stays valid.
    pub previous_valid_until: Timestamp,
}

/// `auth.rotate.ok`: the new token is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuthRotateResponse {
    /// This message.
    pub msg_id: MsgId,
    /// The `auth.rotate` this answers.
    pub re: MsgId,
}

/// `drain`: the coordinator is going away; say `bye` and reconnect elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DrainNotification {
    /// This message.
    pub msg_id: MsgId,
    /// Why, for logs.
    pub reason: String,
    /// The endpoint to try first, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_to: Option<String>,
    /// How long to wait before reconnecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_after_ms: Option<u64>,
    /// Whether this coordinator sends no more dispatches.
    pub stop_dispatch: bool,
}

impl DrainNotification {
    /// `reconnectAfterMs` as a duration.
    pub fn reconnect_after(&self) -> Option<Duration> {
        self.reconnect_after_ms.map(Duration::from_millis)
    }
}

/// `bye`: the agent is going away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ByeNotification {
    /// This message.
    pub msg_id: MsgId,
    /// Why.
    pub reason: ByeReason,
    /// Whether running jobs finish before the process exits.
    pub wait_for_jobs: bool,
}

/// `bye.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ByeReason {
    /// The process is stopping.
    Shutdown,
    /// The coordinator asked (`drain`).
    Drain,
    /// The agent restarts into a new version.
    Update,
    /// A reason this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `mesh.error`: a request failed, or (`error.fatal`) the link is about to be closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct MeshErrorNotification {
    /// This message.
    pub msg_id: MsgId,
    /// The message that failed, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub re: Option<MsgId>,
    /// What went wrong.
    pub error: WireError,
}
