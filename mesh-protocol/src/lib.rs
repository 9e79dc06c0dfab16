//! Wire types of the kimaki mesh protocol, v1: one outbound Socket.IO link from an agent to a
//! mesh coordinator, one JSON object per event. Types and codecs only: serde and serde_json,
//! no runtime, no sockets, no clock. Used by the agent's mesh adapter, the test coordinator and
//! the schema generator alike.
//!
//! # Layout
//! - `events`: event names (`hello`, `job.event`, …) and the reserved Socket.IO names
//! - `features`: feature flags negotiated in `hello`/`welcome`
//! - `limits`: protocol size limits per event
//! - `message`: `AgentMessage` / `MeshMessage`, routed by event name, with decode and encode
//! - `codec`: size checks and the `DecodeError` / `EncodeError` a transport sees
//! - `auth`: the CONNECT `auth` payload, version negotiation, `connect_error`
//! - `hello`, `link`, `job`: payloads of the handshake, link upkeep and job control
//! - `job_event`: `job.event` and the typed `data` of each event type
//! - `observe`: `job.observed`, a job the coordinator did not dispatch (feature `observe`)
//! - `job_state`, `inventory`, `error`, `ids`: shared sub-types
//! - `schema` (feature `schema`): the JSON Schema document of everything above
//!
//! # Compatibility
//! Unknown fields are ignored, unknown enum strings decode to an `Unknown` variant, unknown event
//! names and `job.event` types are kept verbatim. Ids are newtypes over `String`, so a `jobId`
//! cannot be passed where a `leaseId` belongs; the wire sees plain strings.

#[macro_use]
mod open_enum;

mod auth;
mod codec;
mod error;
mod hello;
mod ids;
mod inventory;
mod job;
mod job_state;
mod link;
mod message;
mod observe;
#[cfg(feature = "schema")]
mod schema;

pub mod events;
pub mod features;
pub mod job_event;
pub mod limits;

/// The protocol version this crate speaks (`auth.protocol`, `welcome.protocol`).
pub const PROTOCOL_VERSION: u32 = 1;

pub use auth::{ConnectAuth, ConnectRejection, ConnectionMode, ProtocolRange, Token};
pub use codec::{DecodeError, EncodeError};
pub use error::{ErrorCode, WireError};
pub use hello::{
    AgentInfo, Capacity, HelloParams, HelloResume, Limits, ResumeAction, ResumeDirective,
    ResumeJob, WelcomeResponse,
};
pub use ids::{
    GatewayId, InstanceId, JobId, LeaseId, MsgId, RequestId, SessionId, Timestamp, WorkspaceId,
};
pub use inventory::{Runner, RunnerKind, Vcs, VcsKind, Workspace};
pub use job::{
    AckDecision, CancelReason, CancelStatus, InputKind, InputReply, InputStatus, JobAckResponse,
    JobCancelParams, JobCancelResponse, JobDispatchParams, JobEventsAckResponse, JobInputParams,
    JobInputResponse, JobSpec, PermissionDecision, PermissionPolicy, PermissionReply,
    QuestionReply,
};
pub use job_event::{
    CancellingData, FileAction, FileData, FinishedData, JobEvent, JobEventNotification, JobOutcome,
    OutputData, OutputStream, PermissionData, PermissionResolution, Question, QuestionData,
    QuestionOption, RequestPhase, StartedData, StatusData, ToolData, ToolPhase, UsageData,
};
pub use job_state::JobState;
pub use limits::SizeLimits;
pub use link::{
    AuthRotateParams, AuthRotateResponse, ByeNotification, ByeReason, DrainNotification,
    HeartbeatParams, HeartbeatResponse, InventoryUpdateNotification, LeaseExpiry, Load,
    MeshErrorNotification, PendingCancel, RunningJob,
};
pub use message::{AgentMessage, MeshMessage};
pub use observe::{JobObservedNotification, JobOrigin, MAX_OBSERVED_PROMPT_BYTES};
#[cfg(feature = "schema")]
pub use schema::{schema_document, REGENERATE_COMMAND};
