//! The link handshake: `hello` (agent → mesh) and its answer `welcome` (mesh → agent), including
//! the jobs the agent resumes and what the mesh decides for each.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::ConnectionMode;
use crate::ids::{GatewayId, InstanceId, JobId, LeaseId, MsgId, SessionId, Timestamp};
use crate::inventory::{Runner, Workspace};
use crate::job_state::JobState;
use crate::limits;

/// `hello`: first emit on a link, sent only after the namespace connect event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HelloParams {
    /// This message.
    pub msg_id: MsgId,
    /// Who the agent is.
    pub agent: AgentInfo,
    /// Features the agent supports (see `features`).
    pub features: Vec<String>,
    /// How much work the agent takes.
    pub capacity: Capacity,
    /// Every runner, available or not.
    pub runners: Vec<Runner>,
    /// Every workspace.
    pub workspaces: Vec<Workspace>,
    /// Jobs the agent still holds from earlier links.
    pub resume: HelloResume,
}

/// `hello.agent`: the agent's identity and platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    /// Persisted identity.
    pub gateway_id: GatewayId,
    /// New per process start.
    pub instance_id: InstanceId,
    /// Display name (`MESH_GATEWAY_NAME`).
    pub name: String,
    /// Account the gateway belongs to (`MESH_ACCOUNT`).
    pub account_email: String,
    /// Endpoint id the agent registered under.
    pub endpoint_id: String,
    /// Host name of the machine.
    pub hostname: String,
    /// Operating system (`linux`, `macos`, `windows`).
    pub os: String,
    /// CPU architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// The agent's release version.
    pub version: String,
    /// Always `outbound`.
    pub connection_mode: ConnectionMode,
}

/// `hello.capacity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Jobs the agent runs at once.
    pub max_concurrent_jobs: u32,
}

/// `hello.resume`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HelloResume {
    /// Jobs the agent holds a lease for.
    pub jobs: Vec<ResumeJob>,
}

/// One job the agent claims on a new link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResumeJob {
    /// The job.
    pub job_id: JobId,
    /// The lease the agent holds.
    pub lease_id: LeaseId,
    /// The job's state as the agent sees it.
    pub state: JobState,
    /// Highest `seq` in the agent's outbox for this job.
    pub last_seq: u64,
}

/// `welcome`: the answer to `hello`; the link is live from here on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct WelcomeResponse {
    /// This message.
    pub msg_id: MsgId,
    /// The `hello` this answers.
    pub re: MsgId,
    /// The negotiated protocol version.
    pub protocol: u32,
    /// Features both sides support.
    pub features: Vec<String>,
    /// This link, as the coordinator names it.
    pub session_id: SessionId,
    /// The coordinator's clock.
    pub server_time: Timestamp,
    /// How often to send `heartbeat` (15,000).
    pub heartbeat_ms: u64,
    /// How long a lease lives without a heartbeat listing it (60,000).
    pub lease_ttl_ms: u64,
    /// How soon a `job.dispatch` must be answered (10,000).
    pub dispatch_ack_timeout_ms: u64,
    /// How long a job may run without a link before the agent kills it (600,000).
    pub orphan_timeout_ms: u64,
    /// Size and flow limits.
    pub limits: Limits,
    /// New endpoint order, replacing the configured one; persisted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    /// What to do with each job the agent resumed.
    pub resume: Vec<ResumeDirective>,
}

impl WelcomeResponse {
    /// `heartbeatMs` as a duration.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// `leaseTtlMs` as a duration.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    /// `dispatchAckTimeoutMs` as a duration.
    pub fn dispatch_ack_timeout(&self) -> Duration {
        Duration::from_millis(self.dispatch_ack_timeout_ms)
    }

    /// `orphanTimeoutMs` as a duration.
    pub fn orphan_timeout(&self) -> Duration {
        Duration::from_millis(self.orphan_timeout_ms)
    }
}

/// `welcome.limits`. `Default` gives the values a v1 coordinator announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Largest encoded `job.event` or reply, in bytes (65,536).
    pub max_event_bytes: u32,
    /// Most unacknowledged `job.event`s per job (256).
    pub max_inflight_events: u32,
    /// Most unacknowledged bytes per job (1,048,576).
    pub max_inflight_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: u32::try_from(limits::MAX_EVENT_BYTES).unwrap_or(u32::MAX),
            max_inflight_events: limits::DEFAULT_MAX_INFLIGHT_EVENTS,
            max_inflight_bytes: limits::DEFAULT_MAX_INFLIGHT_BYTES,
        }
    }
}

/// One entry of `welcome.resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResumeDirective {
    /// The job.
    pub job_id: JobId,
    /// The lease the agent claimed.
    pub lease_id: LeaseId,
    /// Highest contiguous `seq` the coordinator stored; the agent replays what follows.
    pub acked_seq: u64,
    /// What the agent does with the job.
    pub action: ResumeAction,
}

/// `welcome.resume[].action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ResumeAction {
    /// Delete the outbox up to `ackedSeq`, replay the rest, keep running.
    Continue,
    /// Kill the job and report `finished(cancelled)`.
    Cancel,
    /// Delete local state; the coordinator no longer knows the lease.
    Forget,
    /// An action this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}
