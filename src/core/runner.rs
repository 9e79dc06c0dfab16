//! The `Runner` trait every coding agent adapter implements, and what a run receives: the request,
//! an event emitter, a cancellation token and a channel of answers (permissions, questions).
//!
//! A runner reports *what happens* through `RunContext::emit` and *how it ended* by returning
//! from `run`; the core turns that return value into the job's single terminal event.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::{
    CancelReason, EventBus, EventKind, Failure, FailureKind, JobEvent, PermissionDecision,
};
use super::ids::{JobId, LaneId, RequestId, RunnerId};
use super::interactions;
use super::job::{Attachment, PermissionPolicy};
use crate::store::Batch;

/// Answers that reach a running job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    Permission {
        request_id: RequestId,
        decision: PermissionDecision,
    },
    /// One list of chosen labels per question.
    Answer {
        request_id: RequestId,
        answers: Vec<Vec<String>>,
    },
    /// Dismiss a question without answering it.
    DismissQuestion { request_id: RequestId },
}

impl Control {
    pub fn request_id(&self) -> &RequestId {
        match self {
            Control::Permission { request_id, .. }
            | Control::Answer { request_id, .. }
            | Control::DismissQuestion { request_id } => request_id,
        }
    }
}

/// What a runner needs to do one job.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub job_id: JobId,
    pub lane: LaneId,
    /// Working directory (the project, or its worktree).
    pub cwd: PathBuf,
    /// The prompt, with any carried-over or memory context already composed in.
    pub prompt: String,
    pub attachments: Vec<Attachment>,
    pub model: Option<String>,
    pub agent: Option<String>,
    /// The runner session to continue; `None` starts a new one.
    pub session: Option<String>,
    pub permission_policy: PermissionPolicy,
}

/// What a successful run reports back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// The final text, kept as the job's summary.
    pub summary: Option<String>,
    /// The runner session this job used, so the next job of the lane continues it.
    pub runner_session_id: Option<String>,
    pub exit_code: Option<i32>,
}

/// How a run failed. `Cancelled` is not a failure: it answers a cancel request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunnerError {
    #[error("{0}")]
    Failed(FailureDetail),
    #[error("cancelled")]
    Cancelled { runner_session_id: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureDetail {
    pub failure: Failure,
    pub exit_code: Option<i32>,
    pub runner_session_id: Option<String>,
}

impl std::fmt::Display for FailureDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.failure.message)
    }
}

impl RunnerError {
    pub fn failed(kind: FailureKind, message: impl Into<String>) -> Self {
        RunnerError::Failed(FailureDetail {
            failure: Failure::new(kind, message),
            exit_code: None,
            runner_session_id: None,
        })
    }

    pub fn with_exit_code(mut self, code: Option<i32>) -> Self {
        if let RunnerError::Failed(d) = &mut self {
            d.exit_code = code;
        }
        self
    }

    pub fn with_session(mut self, session: Option<String>) -> Self {
        match &mut self {
            RunnerError::Failed(d) => d.runner_session_id = session,
            RunnerError::Cancelled { runner_session_id } => *runner_session_id = session,
        }
        self
    }

    pub fn cancelled(session: Option<String>) -> Self {
        RunnerError::Cancelled {
            runner_session_id: session,
        }
    }

    pub fn kind(&self) -> Option<FailureKind> {
        match self {
            RunnerError::Failed(d) => Some(d.failure.kind),
            RunnerError::Cancelled { .. } => None,
        }
    }
}

/// Whether a runner can be used, and which version is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerInfo {
    pub id: RunnerId,
    pub available: bool,
    pub version: Option<String>,
    /// Why it is unavailable, with the fix.
    pub reason: Option<String>,
    /// The executable that will be run.
    pub program: Option<String>,
}

/// A coding agent kimaki can drive.
#[async_trait]
pub trait Runner: Send + Sync + 'static {
    fn id(&self) -> RunnerId;

    /// Checks the installation without starting any work.
    async fn probe(&self) -> RunnerInfo;

    /// Runs one job to completion. Must return soon after `ctx.cancel` fires (the dispatcher
    /// gives it a grace period, then drops the future, which kills child processes).
    async fn run(&self, request: RunRequest, ctx: RunContext) -> Result<RunSummary, RunnerError>;

    /// Stops background processes (servers) before kimaki exits.
    async fn shutdown(&self) {}
}

/// Runs once, when the runner reports `Started`.
type StartedHook = Box<dyn FnOnce(&EventKind) + Send>;

/// Writes a job's events: numbers them, persists them, broadcasts them, and records pending
/// interactions. Store failures are remembered and fail the job at the end instead of being
/// surfaced to every runner call.
#[derive(Clone)]
pub struct EventEmitter {
    inner: Arc<EmitterInner>,
}

struct EmitterInner {
    bus: EventBus,
    job_id: JobId,
    lane: LaneId,
    seq: AtomicU64,
    started: AtomicBool,
    store_error: Mutex<Option<String>>,
    /// Called (synchronously) after the `Started` event is stored.
    on_started: Mutex<Option<StartedHook>>,
}

impl EventEmitter {
    pub(crate) fn new(bus: EventBus, job_id: JobId, lane: LaneId, last_seq: u64) -> Self {
        Self {
            inner: Arc::new(EmitterInner {
                bus,
                job_id,
                lane,
                seq: AtomicU64::new(last_seq),
                started: AtomicBool::new(false),
                store_error: Mutex::new(None),
                on_started: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn on_started(&self, f: impl FnOnce(&EventKind) + Send + 'static) {
        *self
            .inner
            .on_started
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
    }

    /// Emits a runner event. Terminal and queue-only kinds are the core's to emit and are
    /// ignored here.
    pub fn emit(&self, kind: EventKind) {
        if kind.is_core_only() {
            tracing::warn!(job_id = %self.inner.job_id, "Runner tried to emit a core-only event; ignored.");
            return;
        }
        self.emit_core(kind);
    }

    pub(crate) fn emit_core(&self, kind: EventKind) {
        let mut batch = Batch::new();
        if let Err(e) =
            interactions::record(&mut batch, &self.inner.job_id, &self.inner.lane, &kind)
        {
            self.remember(e.to_string());
        }
        let seq = self.inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let event = JobEvent {
            job_id: self.inner.job_id.clone(),
            lane: self.inner.lane.clone(),
            seq,
            at: super::clock::now_ms(),
            kind,
        };
        let is_started = matches!(event.kind, EventKind::Started { .. });
        let started_kind = is_started.then(|| event.kind.clone());
        if let Err(e) = self.inner.bus.publish(event, batch) {
            tracing::error!(job_id = %self.inner.job_id, error = %e, "Could not persist a job event.");
            self.remember(e.to_string());
        }
        if let Some(kind) = started_kind {
            if !self.inner.started.swap(true, Ordering::SeqCst) {
                let hook = self
                    .inner
                    .on_started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                if let Some(hook) = hook {
                    hook(&kind);
                }
            }
        }
    }

    fn remember(&self, e: String) {
        let mut slot = self
            .inner
            .store_error
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    pub fn job_id(&self) -> &JobId {
        &self.inner.job_id
    }

    pub fn last_seq(&self) -> u64 {
        self.inner.seq.load(Ordering::SeqCst)
    }

    /// Whether the runner reported `Started` (its prompt reached the agent).
    pub fn has_started(&self) -> bool {
        self.inner.started.load(Ordering::SeqCst)
    }

    pub(crate) fn store_error(&self) -> Option<String> {
        self.inner
            .store_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Why the current run is being stopped, readable by the runner after `cancel` fires.
#[derive(Clone, Default)]
pub struct CancelSignal {
    token: CancellationToken,
    reason: Arc<Mutex<Option<CancelReason>>>,
}

impl CancelSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests a stop; the first reason wins.
    pub fn cancel(&self, reason: CancelReason) -> bool {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return false;
        }
        *slot = Some(reason);
        drop(slot);
        self.token.cancel();
        true
    }

    pub fn reason(&self) -> Option<CancelReason> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }
}

/// Everything a run talks back through.
pub struct RunContext {
    pub events: EventEmitter,
    pub cancel: CancelSignal,
    pub controls: mpsc::Receiver<Control>,
}

impl RunContext {
    pub fn emit(&self, kind: EventKind) {
        self.events.emit(kind)
    }
}
