//! Event names: lowercase and dotted, one constant per event and direction.
//!
//! Socket.IO clients treat a few names specially (`rust_socketio` maps `message`, `error`, `open`
//! and `close`, case-insensitively, onto its own callbacks), so those names are never used.

/// Agent → mesh: first emit on a link, carries identity, inventory and jobs to resume.
pub const HELLO: &str = "hello";
/// Agent → mesh: liveness and the leases the agent still holds.
pub const HEARTBEAT: &str = "heartbeat";
/// Agent → mesh: runners or workspaces changed.
pub const INVENTORY_UPDATE: &str = "inventory.update";
/// Agent → mesh: answer to a `job.dispatch`.
pub const JOB_ACK: &str = "job.ack";
/// Agent → mesh: one fact about a job, numbered by `seq`.
pub const JOB_EVENT: &str = "job.event";
/// Agent → mesh: answer to a `job.cancel`.
pub const JOB_CANCEL_RESULT: &str = "job.cancel.result";
/// Agent → mesh: answer to a `job.input`.
pub const JOB_INPUT_RESULT: &str = "job.input.result";
/// Agent → mesh: a rotated token was committed.
pub const AUTH_ROTATE_OK: &str = "auth.rotate.ok";
/// Agent → mesh: the agent is going away.
pub const BYE: &str = "bye";
/// Agent → mesh: a job nobody dispatched runs here (feature `observe`).
pub const JOB_OBSERVED: &str = "job.observed";

/// Mesh → agent: answer to `hello`; the link is live.
pub const WELCOME: &str = "welcome";
/// Mesh → agent: answer to `heartbeat`, with lease expiries and pending cancels.
pub const HEARTBEAT_OK: &str = "heartbeat.ok";
/// Mesh → agent: run this job under this lease.
pub const JOB_DISPATCH: &str = "job.dispatch";
/// Mesh → agent: cumulative acknowledgement of `job.event`s plus the send window.
pub const JOB_EVENTS_ACK: &str = "job.events.ack";
/// Mesh → agent: stop this job.
pub const JOB_CANCEL: &str = "job.cancel";
/// Mesh → agent: a person answered a permission or question.
pub const JOB_INPUT: &str = "job.input";
/// Mesh → agent: a new token to use from the next connect.
pub const AUTH_ROTATE: &str = "auth.rotate";
/// Mesh → agent: this coordinator is going away; reconnect elsewhere.
pub const DRAIN: &str = "drain";
/// Mesh → agent: a request failed, or the link is about to be closed (`fatal`).
pub const MESH_ERROR: &str = "mesh.error";

/// Every event the agent sends, in the order of the protocol reference.
pub const AGENT_EVENTS: [&str; 10] = [
    HELLO,
    HEARTBEAT,
    INVENTORY_UPDATE,
    JOB_ACK,
    JOB_EVENT,
    JOB_CANCEL_RESULT,
    JOB_INPUT_RESULT,
    AUTH_ROTATE_OK,
    BYE,
    JOB_OBSERVED,
];

/// Every event the mesh sends, in the order of the protocol reference.
pub const MESH_EVENTS: [&str; 9] = [
    WELCOME,
    HEARTBEAT_OK,
    JOB_DISPATCH,
    JOB_EVENTS_ACK,
    JOB_CANCEL,
    JOB_INPUT,
    AUTH_ROTATE,
    DRAIN,
    MESH_ERROR,
];

/// Names Socket.IO or its clients claim for themselves; an event must never be called this.
pub const RESERVED_EVENT_NAMES: [&str; 8] = [
    "message",
    "error",
    "open",
    "close",
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
];

/// Whether `name` collides with a reserved name. The match ignores ASCII case because
/// `rust_socketio` does.
pub fn is_reserved_event_name(name: &str) -> bool {
    RESERVED_EVENT_NAMES
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
}
