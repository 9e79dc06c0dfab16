//! Job control messages: dispatch and its ack, the event acknowledgement window, cancel and
//! interactive input, each with its reply.
//!
//! `jobId` is stable across redeliveries; `leaseId` is new for every attempt. Every message names
//! both so a late message for an old attempt can be recognised and dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::WireError;
use crate::ids::{JobId, LeaseId, MsgId, RequestId, Timestamp, WorkspaceId};
use crate::inventory::RunnerKind;
use crate::job_state::JobState;

/// `job.dispatch`: run this job under this lease. Answered by `job.ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobDispatchParams {
    /// This message; `job.ack.re` echoes it.
    pub msg_id: MsgId,
    /// The job, stable across redeliveries.
    pub job_id: JobId,
    /// This attempt's lease.
    pub lease_id: LeaseId,
    /// 1 for the first attempt, counting up with each new lease.
    pub attempt: u32,
    /// How long the lease lives without a heartbeat listing it.
    pub lease_ttl_ms: u64,
    /// When the job was created.
    pub created_at: Timestamp,
    /// When the job must be finished, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at: Option<Timestamp>,
    /// What to run.
    pub spec: JobSpec,
}

/// `job.dispatch.spec`: what to run and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// Which runner.
    pub runner: RunnerKind,
    /// Which workspace; the agent resolves it to a path locally.
    pub workspace_id: WorkspaceId,
    /// The prompt.
    pub prompt: String,
    /// Model override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Runner-specific options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
    /// Environment for the runner; the agent passes only names on its local allow-list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Run time limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// What to do with permission requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_policy: Option<PermissionPolicy>,
    /// Runner session to continue (`runnerSessionId` of an earlier job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_session: Option<String>,
    /// Local surfaces that should show the job too, e.g. `discord` (a thread in the workspace's
    /// project channel). An agent without such a surface ignores the entry; events still go to
    /// the coordinator as usual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Vec<String>>,
}

impl JobSpec {
    /// `timeoutMs` as a duration.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
}

/// `spec.permissionPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PermissionPolicy {
    /// Grant every request.
    Allow,
    /// Refuse every request.
    Deny,
    /// Ask a person (feature `interactive`); without it the agent refuses.
    Ask,
    /// A policy this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `job.ack`: the answer to `job.dispatch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobAckResponse {
    /// This message.
    pub msg_id: MsgId,
    /// The `job.dispatch` this answers.
    pub re: MsgId,
    /// The job.
    pub job_id: JobId,
    /// The lease from the dispatch.
    pub lease_id: LeaseId,
    /// Whether the agent took the job.
    pub decision: AckDecision,
    /// The job's local state, with `duplicate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Highest `seq` written for the job, with `duplicate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// Why, with `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

/// `job.ack.decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AckDecision {
    /// Committed locally; `started` follows.
    Accepted,
    /// Not taken (`error` says why); the mesh requeues it elsewhere.
    Rejected,
    /// This `(jobId, leaseId)` was seen before; `state` and `lastSeq` say where it is.
    Duplicate,
    /// A decision this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `job.events.ack`: cumulative acknowledgement of `job.event`s, and the send window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobEventsAckResponse {
    /// This message.
    pub msg_id: MsgId,
    /// The job.
    pub job_id: JobId,
    /// The lease the events were sent under.
    pub lease_id: LeaseId,
    /// Highest contiguous `seq` stored; the agent may delete everything up to it.
    pub acked_seq: u64,
    /// How many events past `ackedSeq` the agent may send; 0 pauses the job's stream.
    pub window: u32,
}

/// `job.cancel`: stop this job. Idempotent; `heartbeat.ok` repeats it while it is pending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobCancelParams {
    /// This message; `job.cancel.result.re` echoes it.
    pub msg_id: MsgId,
    /// The job.
    pub job_id: JobId,
    /// The lease to cancel.
    pub lease_id: LeaseId,
    /// Why.
    pub reason: CancelReason,
    /// How long a graceful stop may take before the process group is terminated (10,000).
    pub grace_ms: u64,
}

impl JobCancelParams {
    /// `graceMs` as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }
}

/// Why a job is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// A person asked.
    User,
    /// The job's deadline or `timeoutMs` passed.
    Timeout,
    /// The lease was revoked.
    LeaseRevoked,
    /// The coordinator is shutting down.
    Shutdown,
    /// A reason this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `job.cancel.result`: the answer to `job.cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobCancelResponse {
    /// This message.
    pub msg_id: MsgId,
    /// The `job.cancel` this answers.
    pub re: MsgId,
    /// The job.
    pub job_id: JobId,
    /// What the agent did.
    pub status: CancelStatus,
}

/// `job.cancel.result.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CancelStatus {
    /// Stopping; `cancelling` and then `finished` follow.
    Cancelling,
    /// The job had already finished; its real outcome stands.
    AlreadyFinished,
    /// The agent does not know the job (wire value `unknown`).
    #[serde(rename = "unknown")]
    UnknownJob,
    /// A status this version does not know. Encoded as `unrecognized`, since `unknown` is taken.
    #[serde(other, rename = "unrecognized")]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `job.input`: a person answered a permission request or a question (feature `interactive`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobInputParams {
    /// This message; `job.input.result.re` echoes it.
    pub msg_id: MsgId,
    /// The job.
    pub job_id: JobId,
    /// The lease the job runs under.
    pub lease_id: LeaseId,
    /// The `permission` or `question` event this answers.
    pub request_id: RequestId,
    /// Which kind of request.
    pub kind: InputKind,
    /// The answer; its shape follows `kind`.
    pub reply: InputReply,
}

/// `job.input.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Answers a `permission` event.
    Permission,
    /// Answers a `question` event.
    Question,
    /// A kind this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `job.input.reply`: `{decision, message?}` for a permission, `{answers}` for a question.
///
/// There is no catch-all shape: a new kind of input needs a new feature flag, so a peer never
/// receives a reply shape it did not announce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum InputReply {
    /// The answer to a permission request.
    Permission(PermissionReply),
    /// The answers to a question event.
    Question(QuestionReply),
}

/// The answer to a permission request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PermissionReply {
    /// Grant once, grant always, or refuse.
    pub decision: PermissionDecision,
    /// A note passed to the runner with the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The answers to a question event: one list of chosen labels per question, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct QuestionReply {
    /// Chosen labels (or free text) per question.
    pub answers: Vec<Vec<String>>,
}

/// A person's decision on a permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PermissionDecision {
    /// Grant this request only.
    Once,
    /// Grant this and matching requests for the rest of the job.
    Always,
    /// Refuse.
    Reject,
    /// A decision this version does not know; the agent treats it as a refusal.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `job.input.result`: the answer to `job.input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobInputResponse {
    /// This message.
    pub msg_id: MsgId,
    /// The `job.input` this answers.
    pub re: MsgId,
    /// The job.
    pub job_id: JobId,
    /// The request answered.
    pub request_id: RequestId,
    /// What the agent did with the answer.
    pub status: InputStatus,
}

/// `job.input.result.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum InputStatus {
    /// Passed to the runner.
    Applied,
    /// Someone or something (a timeout) answered first.
    AlreadyResolved,
    /// The agent does not know the request (wire value `unknown`).
    #[serde(rename = "unknown")]
    UnknownRequest,
    /// A status this version does not know. Encoded as `unrecognized`, since `unknown` is taken.
    #[serde(other, rename = "unrecognized")]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}
