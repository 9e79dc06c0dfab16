//! The heart of kimaki: jobs, the one durable queue, lanes, the dispatcher, the `Runner` trait and
//! the event bus. Every source of work enqueues here and every sink reads events from here.
//! Must not import any adapter, SDK (serenity, rust_socketio, reqwest) or wire type.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod clock;
pub mod dispatch;
pub mod events;
pub mod health;
pub mod ids;
pub mod interactions;
pub mod job;
pub mod queue;
pub mod runner;
pub mod tasks;
pub mod transcribe;
pub mod workspaces;
pub mod worktrees;

pub use dispatch::{DispatchOptions, Dispatcher, RunnerSet};
pub use events::{
    CancelReason, EventBus, EventKind, Failure, FailureKind, JobEvent, Outcome, StoredEvent,
    Subscription,
};
pub use health::{ComponentStatus, Health};
pub use ids::{JobId, LaneId, RequestId, RunnerId};
pub use job::{
    Attachment, EnqueueMode, Job, JobRecord, JobSource, JobState, LaneRecord, NewJob,
    PermissionPolicy, ReplyTo, VoiceInput,
};
pub use queue::{AnswerOutcome, CancelOutcome, Enqueued, JobQueue, QueueError, Recovery};
pub use runner::{
    CancelSignal, Control, EventEmitter, RunContext, RunRequest, RunSummary, Runner, RunnerError,
    RunnerInfo,
};
pub use transcribe::{Transcriber, Transcript};
pub use workspaces::{Workspace, WorkspaceError, Workspaces};
pub use worktrees::{WorktreeError, WorktreeInfo, Worktrees};
