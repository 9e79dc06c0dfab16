//! The normalized event stream of every job. Runners emit `EventKind`s; the core numbers them per
//! job (`seq`) and globally (`cursor`), persists them, and broadcasts them to sinks. A sink that
//! lags behind, or restarts, re-reads from the store from the last cursor it saw, so a slow sink
//! never blocks a runner and never misses an event.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::clock;
use super::ids::{JobId, LaneId, RequestId};
use crate::store::{self, Batch, Store, Tree};

/// Live fan-out buffer: a few seconds of text deltas at peak; a sink that falls further behind
/// catches up from the store.
const BUS_CAPACITY: usize = 1024;

/// Events read from the store per catch-up step.
const CATCH_UP_BATCH: usize = 256;
/// Newest event-log entries checked for a missing index entry at start-up (only the last one
/// can be; the margin costs nothing).
const REPAIR_SCAN: usize = 16;

/// Which text a part carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextStream {
    Assistant,
    Reasoning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    Created,
    Modified,
    Deleted,
}

/// An answer to a permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionDecision {
    /// Allow this one request.
    Once,
    /// Allow this and similar requests for the rest of the session.
    Always,
    Reject,
}

/// How a permission request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionResolution {
    Once,
    Always,
    Reject,
    /// Nobody answered in time; the request was rejected.
    Timeout,
}

impl From<PermissionDecision> for PermissionResolution {
    fn from(d: PermissionDecision) -> Self {
        match d {
            PermissionDecision::Once => Self::Once,
            PermissionDecision::Always => Self::Always,
            PermissionDecision::Reject => Self::Reject,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionOption {
    pub label: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub question: String,
    #[serde(default)]
    pub header: Option<String>,
    pub options: Vec<QuestionOption>,
    #[serde(default)]
    pub multiple: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryInfo {
    pub attempt: u32,
    #[serde(default)]
    pub next_in_ms: Option<u64>,
}

/// Why a job was asked to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CancelReason {
    /// Someone pressed abort.
    User,
    /// A new message in the lane took its place.
    Interrupted { by: JobId },
    /// kimaki is shutting down or restarting.
    Shutdown,
    /// The job's own deadline passed.
    TimedOut,
    /// The coordinator that assigned it withdrew it.
    Revoked { reason: String },
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
    Interrupted,
    TimedOut,
}

/// A classified failure. The classification decides what users are told and whether trying again
/// can help; the message says what happened in words a user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The runner's program is missing or cannot start.
    RunnerUnavailable,
    /// The runner process died or its server crashed mid-job.
    RunnerCrashed,
    /// The model provider rejected the credentials.
    Auth,
    /// The model endpoint cannot be reached (or kept retrying past kimaki's deadline).
    ModelUnreachable,
    /// The model provider answered with an error.
    Api,
    /// The runner said something kimaki could not understand.
    Protocol,
    /// No progress within the deadline.
    Timeout,
    /// The job's directory is missing or not allowed.
    Workspace,
    /// kimaki itself failed (store, I/O).
    Internal,
}

impl FailureKind {
    /// Whether the same request might succeed later without anyone changing anything.
    pub fn is_retryable(self) -> bool {
        match self {
            FailureKind::ModelUnreachable
            | FailureKind::RunnerCrashed
            | FailureKind::Timeout
            | FailureKind::Internal => true,
            FailureKind::RunnerUnavailable
            | FailureKind::Auth
            | FailureKind::Api
            | FailureKind::Protocol
            | FailureKind::Workspace => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    pub retryable: bool,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retryable: kind.is_retryable(),
        }
    }
}

/// What happened, normalized across runners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The queue accepted the job; `position` is how many jobs of the lane are ahead of it.
    Queued {
        position: u32,
    },
    /// The runner started working on it.
    Started {
        runner: String,
        #[serde(default)]
        runner_version: Option<String>,
        #[serde(default)]
        runner_session_id: Option<String>,
        #[serde(default)]
        pid: Option<u32>,
    },
    TextDelta {
        part_id: String,
        stream: TextStream,
        delta: String,
    },
    /// The full text of a finished part (replaces the deltas of the same `part_id`).
    TextPart {
        part_id: String,
        stream: TextStream,
        text: String,
    },
    ToolStarted {
        call_id: String,
        name: String,
        #[serde(default)]
        input: serde_json::Value,
    },
    ToolFinished {
        call_id: String,
        name: String,
        output: String,
        is_error: bool,
        #[serde(default)]
        exit_code: Option<i32>,
    },
    FileChanged {
        path: String,
        action: FileAction,
    },
    PermissionRequested {
        request_id: RequestId,
        tool: String,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        input: serde_json::Value,
        #[serde(default)]
        patterns: Vec<String>,
    },
    PermissionResolved {
        request_id: RequestId,
        resolution: PermissionResolution,
    },
    QuestionAsked {
        request_id: RequestId,
        questions: Vec<Question>,
    },
    /// `answers` is one list of chosen labels per question; `None` means the question was
    /// dismissed.
    QuestionResolved {
        request_id: RequestId,
        answers: Option<Vec<Vec<String>>>,
    },
    Usage {
        input_tokens: u64,
        output_tokens: u64,
        #[serde(default)]
        cached_tokens: u64,
        #[serde(default)]
        cost_usd: Option<f64>,
        /// Share of the model's context window in use, 0–100.
        #[serde(default)]
        context_percent: Option<f64>,
        #[serde(default)]
        model: Option<String>,
    },
    /// A spoken prompt was transcribed; `text` is what the runner will be asked.
    Transcribed {
        text: String,
        provider: String,
    },
    /// Progress that is not output: booting, retrying the model, output truncated, …
    Status {
        message: String,
        #[serde(default)]
        retry: Option<RetryInfo>,
    },
    /// A stop was requested; the runner is winding down.
    Cancelling {
        reason: CancelReason,
    },
    /// Always the last event of a job, exactly once.
    Finished {
        outcome: Outcome,
        #[serde(default)]
        summary: Option<String>,
        #[serde(default)]
        error: Option<Failure>,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        exit_code: Option<i32>,
        #[serde(default)]
        duration_ms: Option<u64>,
    },
}

impl EventKind {
    pub fn is_terminal(&self) -> bool {
        matches!(self, EventKind::Finished { .. })
    }

    /// Kinds only the core may emit (runners report outcomes by returning from `run`).
    pub fn is_core_only(&self) -> bool {
        matches!(
            self,
            EventKind::Queued { .. } | EventKind::Cancelling { .. } | EventKind::Finished { .. }
        )
    }
}

/// One event of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: JobId,
    pub lane: LaneId,
    /// 1-based, contiguous per job.
    pub seq: u64,
    /// Unix milliseconds.
    pub at: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// An event with its global position; sinks remember `cursor` to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub cursor: u64,
    #[serde(flatten)]
    pub event: JobEvent,
}

/// Persists and fans out events. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    store: Store,
    tx: broadcast::Sender<Arc<StoredEvent>>,
    /// Serializes cursor assignment, persistence and broadcast so that live order equals store
    /// order (a sink that switches between them then never skips an event). Never held across
    /// an await.
    order: Arc<Mutex<()>>,
}

impl EventBus {
    pub fn new(store: Store) -> Self {
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        Self {
            store,
            tx,
            order: Arc::new(Mutex::new(())),
        }
    }

    /// Persists `event` (plus `extra` writes in the same atomic batch) and broadcasts it.
    /// Durability follows the store's flush policy; callers that acknowledge it flush.
    pub fn publish(&self, event: JobEvent, mut extra: Batch) -> store::Result<Arc<StoredEvent>> {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let cursor = self.store.next_id()?;
        let stored = StoredEvent { cursor, event };
        // A runner's stream (most events) carries no other writes: log then index, in order,
        // without an atomic batch, which would cost a disk write per event. A crash can then
        // cut at most the newest event's index entry, which `repair_index` restores.
        let atomic = !extra.is_empty();
        extra.put(Tree::EventLog, store::be(cursor), &stored)?;
        extra.put_raw(
            Tree::Events,
            event_key(&stored.event.job_id, stored.event.seq),
            store::be(cursor),
        );
        if atomic {
            self.store.apply(extra)?;
        } else {
            self.store.apply_in_order(extra)?;
        }
        let stored = Arc::new(stored);
        // No receivers is fine: sinks that start later read the store.
        let _ = self.tx.send(stored.clone());
        Ok(stored)
    }

    /// Every event after `cursor`, first from the store, then live.
    pub fn subscribe(&self, after_cursor: u64) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            store: self.store.clone(),
            last: after_cursor,
            backlog: VecDeque::new(),
            caught_up: false,
        }
    }

    /// The cursor of the newest event, so a sink can start "from now".
    pub fn head(&self) -> store::Result<u64> {
        Ok(self
            .store
            .last_raw(Tree::EventLog, [])?
            .and_then(|(k, _)| k.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Restores the per-job index entries of the newest events if a crash cut them off (see
    /// `publish`). Publishing is serialized and each event's log entry is written before its
    /// index entry, so only the tail of the log can be unindexed; a few entries are checked.
    /// Returns how many entries were restored.
    pub fn repair_index(&self) -> store::Result<usize> {
        let mut batch = Batch::new();
        for (_, stored) in self
            .store
            .last_n::<StoredEvent>(Tree::EventLog, REPAIR_SCAN)?
        {
            let key = event_key(&stored.event.job_id, stored.event.seq);
            if !self.store.contains(Tree::Events, &key)? {
                batch.put_raw(Tree::Events, key, store::be(stored.cursor));
            }
        }
        let restored = batch.len();
        self.store.apply(batch)?;
        Ok(restored)
    }

    /// The highest event seq stored for `job` (0 if none).
    pub fn last_seq(&self, job: &JobId) -> store::Result<u64> {
        let prefix = store::prefix_of(job.as_str());
        Ok(self
            .store
            .last_raw(Tree::Events, &prefix)?
            .and_then(|(k, _)| {
                k.get(prefix.len()..)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
            })
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// A job's events with `seq > after_seq`, in order.
    pub fn job_events(&self, job: &JobId, after_seq: u64) -> store::Result<Vec<JobEvent>> {
        let mut out = Vec::new();
        for (_, cursor) in self.raw_job_cursors(job, after_seq)? {
            if let Some(ev) = self.store.get::<StoredEvent>(Tree::EventLog, cursor)? {
                out.push(ev.event);
            }
        }
        Ok(out)
    }

    fn raw_job_cursors(&self, job: &JobId, after_seq: u64) -> store::Result<Vec<(u64, [u8; 8])>> {
        let prefix = store::prefix_of(job.as_str());
        let mut out = Vec::new();
        for (k, v) in self.store.scan_raw_prefix(Tree::Events, &prefix)? {
            let seq = k
                .get(prefix.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if seq > after_seq {
                if let Ok(c) = <[u8; 8]>::try_from(v.as_slice()) {
                    out.push((seq, c));
                }
            }
        }
        Ok(out)
    }

    /// Deletes the events of a finished job (retention).
    pub fn forget_job(&self, job: &JobId) -> store::Result<()> {
        let mut batch = Batch::new();
        for (seq, cursor) in self.raw_job_cursors(job, 0)? {
            batch.delete(Tree::EventLog, cursor);
            batch.delete(Tree::Events, event_key(job, seq));
        }
        self.store.apply(batch)
    }
}

fn event_key(job: &JobId, seq: u64) -> Vec<u8> {
    store::key2(job.as_str(), &store::be(seq))
}

/// A resumable stream of events in cursor order.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<StoredEvent>>,
    store: Store,
    last: u64,
    backlog: VecDeque<Arc<StoredEvent>>,
    caught_up: bool,
}

impl Subscription {
    /// The next event, or `None` when the bus is gone.
    pub async fn next(&mut self) -> Option<Arc<StoredEvent>> {
        loop {
            if let Some(ev) = self.backlog.pop_front() {
                self.last = ev.cursor;
                return Some(ev);
            }
            if !self.caught_up {
                match self.read_store() {
                    Ok(0) => self.caught_up = true,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "Event store read failed; following live events only.");
                        self.caught_up = true;
                    }
                }
            }
            match self.rx.recv().await {
                // Already delivered from the store: the live buffer overlaps the catch-up read.
                Ok(ev) if ev.cursor <= self.last => continue,
                Ok(ev) => {
                    self.last = ev.cursor;
                    return Some(ev);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.caught_up = false,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The cursor of the last event returned.
    pub fn cursor(&self) -> u64 {
        self.last
    }

    fn read_store(&mut self) -> store::Result<usize> {
        let start = store::be(self.last.saturating_add(1));
        let batch: Vec<(Vec<u8>, StoredEvent)> =
            self.store
                .scan_from(Tree::EventLog, &[], &start, CATCH_UP_BATCH)?;
        let n = batch.len();
        self.backlog
            .extend(batch.into_iter().map(|(_, ev)| Arc::new(ev)));
        Ok(n)
    }
}

/// Convenience for sinks and tests: the time now.
pub fn now() -> i64 {
    clock::now_ms()
}
