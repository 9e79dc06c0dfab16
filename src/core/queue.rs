//! The one durable job queue. Every source of work enqueues here; a job is flushed to disk before
//! `enqueue` returns, so an acknowledged job survives kill -9. Lanes keep FIFO order per
//! conversation; `EnqueueMode::Interrupt` puts a job at the front and stops the running one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};

use super::clock::now_ms;
use super::events::{CancelReason, EventBus, EventKind, JobEvent, Outcome};
use super::ids::{JobId, LaneId, RequestId};
use super::interactions::{self, InteractionKind, Lookup, PendingInteraction, Resolution};
use super::job::{EnqueueMode, Job, JobRecord, JobSource, JobState, LaneRecord, NewJob};
use super::runner::{CancelSignal, Control, EventEmitter};
use crate::store::{self, Batch, Store, StoreError, Tree};

/// Finished jobs (and their events) are kept this long, for `status`, replays and dedup.
const RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

const FRONT: u8 = 0;
const BACK: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("kimaki is shutting down and accepts no new work; try again after it restarts")]
    ShuttingDown,
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the project directory {0} does not exist or is not a directory")]
    WorkspaceMissing(PathBuf),
    #[error("no job with id {0}")]
    UnknownJob(JobId),
    #[error("no pending request with id {0}")]
    UnknownRequest(RequestId),
    #[error("that answer does not fit request {0} (a permission needs a decision, a question needs answers)")]
    WrongAnswerKind(RequestId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, QueueError>;

/// What `enqueue` did.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub record: JobRecord,
    /// Jobs of the lane ahead of this one (including a running one).
    pub position: u32,
    /// The id was already known; nothing new was written.
    pub existing: bool,
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It had not started; it is now `Cancelled`.
    Dequeued,
    /// It is running; it was asked to stop.
    Stopping,
    AlreadyFinished,
}

/// What `answer` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// Delivered to the running job.
    Applied,
    /// Someone already answered it; nothing changed.
    AlreadyResolved,
    /// Its job was no longer running (kimaki restarted meanwhile): the answer was recorded and a
    /// follow-up job continues the session with it.
    Continued(JobId),
}

/// A job being run right now.
pub(crate) struct ActiveJob {
    pub job_id: JobId,
    pub cancel: CancelSignal,
    pub controls: mpsc::Sender<Control>,
    pub events: EventEmitter,
}

/// What start-up recovery found.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Jobs that were leased or running when the previous process died.
    pub interrupted: Vec<JobId>,
    /// Jobs still waiting, which will run.
    pub queued: usize,
    /// Finished jobs removed by retention.
    pub pruned: usize,
}

/// Handle on the queue; cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    bus: EventBus,
    wake: Notify,
    active: Mutex<HashMap<LaneId, ActiveJob>>,
    accepting: AtomicBool,
    /// Serializes `Queued → Leased` against `Queued → Cancelled`, so a job is never both run
    /// and dequeued.
    transitions: tokio::sync::Mutex<()>,
}

impl JobQueue {
    pub fn new(store: Store) -> Self {
        let bus = EventBus::new(store.clone());
        Self {
            inner: Arc::new(Inner {
                store,
                bus,
                wake: Notify::new(),
                active: Mutex::new(HashMap::new()),
                accepting: AtomicBool::new(true),
                transitions: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Accepts a job. It is on disk when this returns.
    pub async fn enqueue(&self, new: NewJob, mode: EnqueueMode) -> Result<Enqueued> {
        if !self.inner.accepting.load(Ordering::SeqCst) {
            return Err(QueueError::ShuttingDown);
        }
        if new.prompt.trim().is_empty() && new.attachments.is_empty() && new.voice.is_none() {
            return Err(QueueError::EmptyPrompt);
        }
        if !new.workspace.is_dir() {
            return Err(QueueError::WorkspaceMissing(new.workspace));
        }
        if let Some(id) = &new.id {
            if let Some(record) = self.get(id)? {
                let position = self.position(&record)?;
                return Ok(Enqueued {
                    record,
                    position,
                    existing: true,
                });
            }
        }

        let store = &self.inner.store;
        let now = now_ms();
        let job = Job {
            id: new.id.unwrap_or_else(JobId::generate),
            lane: new.lane,
            source: new.source,
            workspace: new.workspace,
            runner: new.runner,
            prompt: new.prompt,
            attachments: new.attachments,
            model: new.model,
            agent: new.agent,
            permission_policy: new.permission_policy,
            timeout_ms: new.timeout_ms,
            reply_to: new.reply_to,
            meta: new.meta,
            created_at: now,
            voice: new.voice,
            notify_only: new.notify_only,
        };
        if job.notify_only {
            return self.note(job).await;
        }
        let front = mode == EnqueueMode::Interrupt;
        let held = new.held;
        let order = store.next_id()?;
        let position = self.waiting_ahead(&job.lane, front, order)?;
        let record = JobRecord {
            job,
            state: JobState::Queued,
            order,
            front,
            last_seq: 1,
            updated_at: now,
            reason: None,
            held,
        };

        // In order, not as one atomic batch (which costs a disk write of its own; the flush
        // below is the one that matters): lane, job, its `Queued` event, then its place in the
        // lane, last, because that is where the dispatcher finds it (so `Queued` is always the
        // job's first event). A crash can keep only a prefix of these; `recover` completes any
        // prefix that includes the job record.
        let mut batch = Batch::new();
        let lane = self.lane_for(&record.job, now)?;
        batch.put(Tree::Lanes, record.job.lane.as_str(), &lane)?;
        batch.put(Tree::Jobs, record.job.id.as_str(), &record)?;
        store.apply_in_order(batch)?;
        self.inner
            .bus
            .publish(queued_event(&record, position), Batch::new())?;
        let mut batch = Batch::new();
        batch.put_raw(
            Tree::LaneQueue,
            lane_queue_key(&record.job.lane, front, order),
            record.job.id.as_str(),
        );
        store.apply_in_order(batch)?;
        store.flush().await?;

        if front {
            self.interrupt_running(&record.job.lane, &record.job.id);
        }
        self.inner.wake.notify_one();
        Ok(Enqueued {
            record,
            position,
            existing: false,
        })
    }

    /// A notification: stored as done at once (`Queued` then `Finished`, so sinks show it like
    /// any job) and kept in the lane for its next run. No runner is involved.
    async fn note(&self, job: Job) -> Result<Enqueued> {
        let store = &self.inner.store;
        let now = job.created_at;
        let record = JobRecord {
            order: store.next_id()?,
            job,
            state: JobState::Succeeded,
            front: false,
            last_seq: 2,
            updated_at: now,
            reason: None,
            held: false,
        };
        let mut lane = self.lane_for(&record.job, now)?;
        lane.notes.push(record.job.prompt.clone());
        lane.last_activity_at = now;
        let mut batch = Batch::new();
        batch.put(Tree::Jobs, record.job.id.as_str(), &record)?;
        batch.put(Tree::Lanes, record.job.lane.as_str(), &lane)?;
        let event = |seq, kind| JobEvent {
            job_id: record.job.id.clone(),
            lane: record.job.lane.clone(),
            seq,
            at: now,
            kind,
        };
        self.inner
            .bus
            .publish(event(1, EventKind::Queued { position: 0 }), batch)?;
        self.inner.bus.publish(
            event(
                2,
                EventKind::Finished {
                    outcome: Outcome::Succeeded,
                    summary: None,
                    error: None,
                    reason: None,
                    exit_code: None,
                    duration_ms: Some(0),
                },
            ),
            Batch::new(),
        )?;
        store.flush().await?;
        Ok(Enqueued {
            record,
            position: 0,
            existing: false,
        })
    }

    /// The lane record after `job` joins it: a change of runner or directory starts a new runner
    /// session.
    fn lane_for(&self, job: &Job, now: i64) -> Result<LaneRecord> {
        let existing: Option<LaneRecord> = self.inner.store.get(Tree::Lanes, job.lane.as_str())?;
        Ok(match existing {
            Some(mut lane) => {
                if lane.runner != job.runner || lane.workspace != job.workspace {
                    lane.runner = job.runner.clone();
                    lane.workspace = job.workspace.clone();
                    lane.runner_session_id = None;
                }
                lane
            }
            None => LaneRecord {
                lane: job.lane.clone(),
                runner: job.runner.clone(),
                workspace: job.workspace.clone(),
                runner_session_id: None,
                created_at: now,
                last_activity_at: now,
                carry_over: Vec::new(),
                notes: Vec::new(),
                last_job: None,
            },
        })
    }

    fn interrupt_running(&self, lane: &LaneId, by: &JobId) {
        let active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = active.get(lane) {
            if running
                .cancel
                .cancel(CancelReason::Interrupted { by: by.clone() })
            {
                tracing::info!(job_id = %running.job_id, by = %by, "Interrupting the running job.");
            }
        }
    }

    /// Jobs that would run before a new job with this key.
    fn waiting_ahead(&self, lane: &LaneId, front: bool, order: u64) -> Result<u32> {
        let mine = lane_queue_key(lane, front, order);
        // Every key from the lane's prefix up to this job's key is in the lane, ahead of it.
        let ahead = self.inner.store.count_range(
            Tree::LaneQueue,
            &store::prefix_of(lane.as_str()),
            &mine,
        )?;
        let running = usize::from(self.active_job(lane).is_some());
        Ok(u32::try_from(ahead + running).unwrap_or(u32::MAX))
    }

    fn position(&self, record: &JobRecord) -> Result<u32> {
        if record.state != JobState::Queued {
            return Ok(0);
        }
        self.waiting_ahead(&record.job.lane, record.front, record.order)
    }

    pub fn get(&self, id: &JobId) -> Result<Option<JobRecord>> {
        Ok(self.inner.store.get(Tree::Jobs, id.as_str())?)
    }

    pub fn lane(&self, lane: &LaneId) -> Result<Option<LaneRecord>> {
        Ok(self.inner.store.get(Tree::Lanes, lane.as_str())?)
    }

    /// Every lane (conversation) kimaki knows, most recently active first.
    pub fn lanes(&self) -> Result<Vec<LaneRecord>> {
        let mut all: Vec<LaneRecord> = self
            .inner
            .store
            .scan_all::<LaneRecord>(Tree::Lanes)?
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        all.sort_by_key(|l| std::cmp::Reverse(l.last_activity_at));
        Ok(all)
    }

    /// The queued jobs of a lane, in the order they will run.
    pub fn queued_in_lane(&self, lane: &LaneId) -> Result<Vec<JobRecord>> {
        let mut out = Vec::new();
        for (_, id) in self
            .inner
            .store
            .scan_raw_prefix(Tree::LaneQueue, store::prefix_of(lane.as_str()))?
        {
            let id = JobId::new(String::from_utf8_lossy(&id).into_owned());
            if let Some(r) = self.get(&id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Number of queued jobs per lane (lanes with none are omitted).
    pub fn depths(&self) -> Result<Vec<(LaneId, usize)>> {
        let mut out: Vec<(LaneId, usize)> = Vec::new();
        for (k, _) in self.inner.store.scan_raw_prefix(Tree::LaneQueue, [])? {
            let Some(lane) = lane_of_key(&k) else {
                continue;
            };
            match out.last_mut() {
                Some((l, n)) if *l == lane => *n += 1,
                _ => out.push((lane, 1)),
            }
        }
        Ok(out)
    }

    /// Total queued jobs.
    pub fn queued_total(&self) -> usize {
        self.inner.store.len(Tree::LaneQueue)
    }

    /// `(lane, job)` for every job running now.
    pub fn active_jobs(&self) -> Vec<(LaneId, JobId)> {
        let active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(LaneId, JobId)> = active
            .iter()
            .map(|(l, a)| (l.clone(), a.job_id.clone()))
            .collect();
        out.sort();
        out
    }

    pub fn active_job(&self, lane: &LaneId) -> Option<JobId> {
        self.inner
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(lane)
            .map(|a| a.job_id.clone())
    }

    /// Stops a job: a queued one never runs; a running one is asked to stop.
    pub async fn cancel(&self, id: &JobId, reason: CancelReason) -> Result<CancelOutcome> {
        let record = self
            .get(id)?
            .ok_or_else(|| QueueError::UnknownJob(id.clone()))?;
        if record.state.is_terminal() {
            return Ok(CancelOutcome::AlreadyFinished);
        }
        if self.signal_running(&record.job.lane, id, &reason) {
            return Ok(CancelOutcome::Stopping);
        }
        let _guard = self.inner.transitions.lock().await;
        let record = self
            .get(id)?
            .ok_or_else(|| QueueError::UnknownJob(id.clone()))?;
        match record.state {
            JobState::Queued => {
                self.finish_queued(record, Outcome::Cancelled, describe_cancel(&reason))
                    .await?;
                Ok(CancelOutcome::Dequeued)
            }
            // Leased while we waited for the lock: it is in the active map now.
            JobState::Leased | JobState::Running
                if self.signal_running(&record.job.lane, id, &reason) =>
            {
                Ok(CancelOutcome::Stopping)
            }
            _ => Ok(CancelOutcome::AlreadyFinished),
        }
    }

    fn signal_running(&self, lane: &LaneId, id: &JobId, reason: &CancelReason) -> bool {
        let active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
        match active.get(lane).filter(|a| &a.job_id == id) {
            Some(running) => {
                if running.cancel.cancel(reason.clone()) {
                    running.events.emit_core(EventKind::Cancelling {
                        reason: reason.clone(),
                    });
                }
                true
            }
            None => false,
        }
    }

    /// Lets a held job run. Returns `false` if it is no longer waiting.
    pub async fn release(&self, id: &JobId) -> Result<bool> {
        let _guard = self.inner.transitions.lock().await;
        let Some(mut record) = self.get(id)? else {
            return Err(QueueError::UnknownJob(id.clone()));
        };
        if record.state != JobState::Queued {
            return Ok(false);
        }
        if record.held {
            record.held = false;
            record.updated_at = now_ms();
            let mut batch = Batch::new();
            batch.put(Tree::Jobs, id.as_str(), &record)?;
            self.inner.store.commit(batch).await?;
            self.inner.wake.notify_one();
        }
        Ok(true)
    }

    /// Removes every queued job of a lane without running it; returns how many.
    pub async fn clear_lane(&self, lane: &LaneId) -> Result<usize> {
        let _guard = self.inner.transitions.lock().await;
        let queued = self.queued_in_lane(lane)?;
        let n = queued.len();
        for record in queued {
            self.finish_queued(
                record,
                Outcome::Cancelled,
                "removed from the queue".to_owned(),
            )
            .await?;
        }
        Ok(n)
    }

    /// Asks the running job of `lane` to stop; queued jobs stay and the next one starts after.
    pub fn abort_lane(&self, lane: &LaneId) -> Option<JobId> {
        let active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
        let running = active.get(lane)?;
        if running.cancel.cancel(CancelReason::User) {
            running.events.emit_core(EventKind::Cancelling {
                reason: CancelReason::User,
            });
        }
        Some(running.job_id.clone())
    }

    async fn finish_queued(
        &self,
        mut record: JobRecord,
        outcome: Outcome,
        reason: String,
    ) -> Result<()> {
        let state = match outcome {
            Outcome::Cancelled => JobState::Cancelled,
            Outcome::Failed => JobState::Failed,
            _ => JobState::Interrupted,
        };
        let mut batch = Batch::new();
        batch.delete(
            Tree::LaneQueue,
            lane_queue_key(&record.job.lane, record.front, record.order),
        );
        record.state = state;
        record.last_seq += 1;
        record.updated_at = now_ms();
        record.reason = Some(reason.clone());
        batch.put(Tree::Jobs, record.job.id.as_str(), &record)?;
        self.inner.bus.publish(
            JobEvent {
                job_id: record.job.id.clone(),
                lane: record.job.lane.clone(),
                seq: record.last_seq,
                at: record.updated_at,
                kind: EventKind::Finished {
                    outcome,
                    summary: None,
                    error: None,
                    reason: Some(reason),
                    exit_code: None,
                    duration_ms: None,
                },
            },
            batch,
        )?;
        self.inner.store.flush().await?;
        Ok(())
    }

    /// Answers a pending permission request or question.
    pub async fn answer(&self, control: Control) -> Result<AnswerOutcome> {
        let id = control.request_id().clone();
        let pending = match interactions::lookup(&self.inner.store, &id)? {
            Lookup::Unknown => return Err(QueueError::UnknownRequest(id)),
            Lookup::Resolved(_) => return Ok(AnswerOutcome::AlreadyResolved),
            Lookup::Pending(p) => p,
        };
        let resolution = resolution_for(&pending, &control)?;
        {
            let active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(running) = active
                .get(&pending.lane)
                .filter(|a| a.job_id == pending.job_id)
            {
                if running.controls.try_send(control.clone()).is_ok() {
                    running.events.emit_core(resolution_event(&id, resolution));
                    return Ok(AnswerOutcome::Applied);
                }
            }
        }
        self.continue_after_restart(pending, resolution).await
    }

    /// The job that asked is gone: record the answer and continue the session with it.
    async fn continue_after_restart(
        &self,
        pending: PendingInteraction,
        resolution: Resolution,
    ) -> Result<AnswerOutcome> {
        let asked = self.get(&pending.job_id)?;
        let mut batch = Batch::new();
        let kind = match &resolution {
            Resolution::Permission { resolution } => EventKind::PermissionResolved {
                request_id: pending.request_id.clone(),
                resolution: *resolution,
            },
            Resolution::Question { answers } => EventKind::QuestionResolved {
                request_id: pending.request_id.clone(),
                answers: answers.clone(),
            },
        };
        interactions::record(&mut batch, &pending.job_id, &pending.lane, &kind)?;
        self.inner.store.commit(batch).await?;
        let Some(asked) = asked else {
            return Err(QueueError::UnknownJob(pending.job_id));
        };
        let prompt = continuation_prompt(&pending, &resolution);
        let mut meta = serde_json::Map::new();
        meta.insert(
            "continues".to_owned(),
            serde_json::Value::String(pending.job_id.to_string()),
        );
        let new = NewJob {
            id: None,
            lane: pending.lane.clone(),
            source: asked.job.source,
            workspace: asked.job.workspace.clone(),
            runner: asked.job.runner.clone(),
            prompt,
            attachments: Vec::new(),
            model: asked.job.model.clone(),
            agent: asked.job.agent.clone(),
            permission_policy: asked.job.permission_policy,
            timeout_ms: asked.job.timeout_ms,
            reply_to: asked.job.reply_to.clone(),
            meta,
            held: false,
            voice: None,
            notify_only: false,
        };
        let enq = self.enqueue(new, EnqueueMode::Queue).await?;
        Ok(AnswerOutcome::Continued(enq.record.job.id))
    }

    /// Every permission request and question still waiting.
    pub fn pending_interactions(&self) -> Result<Vec<PendingInteraction>> {
        Ok(interactions::pending(&self.inner.store)?)
    }

    /// Stops accepting new jobs (shutdown step 1). Queued jobs stay for the next start.
    pub fn stop_intake(&self) {
        self.inner.accepting.store(false, Ordering::SeqCst);
    }

    pub fn is_accepting(&self) -> bool {
        self.inner.accepting.load(Ordering::SeqCst)
    }

    /// Start-up: a job that was handed to a runner when the previous process died is marked
    /// `Interrupted` (never silently re-run); queued jobs stay queued; old finished jobs go.
    pub async fn recover(&self) -> Result<Recovery> {
        let store = &self.inner.store;
        let mut report = Recovery::default();
        let now = now_ms();
        let restored = self.inner.bus.repair_index()?;
        if restored > 0 {
            tracing::info!(restored, "Re-indexed job events cut off by a crash.");
        }
        let records: Vec<(Vec<u8>, JobRecord)> = store.scan_all(Tree::Jobs)?;
        for (_, mut record) in records {
            match record.state {
                JobState::Queued => {
                    // An enqueue cut short by a crash (see `enqueue`): complete it, in the same
                    // order.
                    if self.inner.bus.last_seq(&record.job.id)? == 0 {
                        let position = self.position(&record)?;
                        self.inner
                            .bus
                            .publish(queued_event(&record, position), Batch::new())?;
                    }
                    let key = lane_queue_key(&record.job.lane, record.front, record.order);
                    if !store.contains(Tree::LaneQueue, &key)? {
                        let mut batch = Batch::new();
                        batch.put_raw(Tree::LaneQueue, key, record.job.id.as_str());
                        store.apply(batch)?;
                    }
                    report.queued += 1;
                }
                JobState::Leased | JobState::Running => {
                    let reason = "kimaki stopped while this job was running (restart or crash); it was not re-run. Send the request again to retry.".to_owned();
                    record.state = JobState::Interrupted;
                    // The runner's events went on past the record's seq; `Finished` follows
                    // whichever of them survived the crash.
                    let emitted = self.inner.bus.last_seq(&record.job.id)?;
                    record.last_seq = record.last_seq.max(emitted) + 1;
                    record.updated_at = now;
                    record.reason = Some(reason.clone());
                    let mut batch = Batch::new();
                    batch.put(Tree::Jobs, record.job.id.as_str(), &record)?;
                    self.inner.bus.publish(
                        JobEvent {
                            job_id: record.job.id.clone(),
                            lane: record.job.lane.clone(),
                            seq: record.last_seq,
                            at: now,
                            kind: EventKind::Finished {
                                outcome: Outcome::Interrupted,
                                summary: None,
                                error: None,
                                reason: Some(reason),
                                exit_code: None,
                                duration_ms: None,
                            },
                        },
                        batch,
                    )?;
                    tracing::warn!(job_id = %record.job.id, lane = %record.job.lane, "Job was running when kimaki stopped; marked interrupted.");
                    report.interrupted.push(record.job.id);
                }
                _ if now - record.updated_at > RETENTION_MS => {
                    self.inner.bus.forget_job(&record.job.id)?;
                    let mut batch = Batch::new();
                    batch.delete(Tree::Jobs, record.job.id.as_str());
                    store.apply(batch)?;
                    report.pruned += 1;
                }
                _ => {}
            }
        }
        store.flush().await?;
        self.inner.wake.notify_one();
        Ok(report)
    }

    // ---- dispatcher side -------------------------------------------------------------

    pub(crate) async fn notified(&self) {
        self.inner.wake.notified().await
    }

    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The head job of every lane that has no running job, oldest first.
    pub(crate) fn runnable_heads(&self) -> Result<Vec<JobRecord>> {
        let store = &self.inner.store;
        let mut heads = Vec::new();
        let mut start: Vec<u8> = Vec::new();
        while let Some((key, id)) = store.first_from(Tree::LaneQueue, &start)? {
            let Some(lane) = lane_of_key(&key) else { break };
            // Skip the rest of this lane: `lane ‖ 1` sorts after every `lane ‖ 0 ‖ …` key.
            start = lane.as_str().as_bytes().to_vec();
            start.push(1);
            if self.active_job(&lane).is_some() {
                continue;
            }
            let id = JobId::new(String::from_utf8_lossy(&id).into_owned());
            match self.get(&id)? {
                // A held job keeps its lane waiting until it is released.
                Some(r) if r.state == JobState::Queued && r.held => {}
                Some(r) if r.state == JobState::Queued => heads.push(r),
                // A dangling queue entry (the job finished some other way): drop it.
                _ => {
                    let mut batch = Batch::new();
                    batch.delete(Tree::LaneQueue, key);
                    store.apply(batch)?;
                }
            }
        }
        heads.sort_by_key(|r| (!r.front, r.order));
        Ok(heads)
    }

    /// `Queued → Leased`, durably, and registers the job as active in its lane.
    pub(crate) async fn lease(
        &self,
        mut record: JobRecord,
        cancel: CancelSignal,
        controls: mpsc::Sender<Control>,
    ) -> Result<Option<(JobRecord, EventEmitter, LaneRecord)>> {
        let _guard = self.inner.transitions.lock().await;
        // Re-read: it may have been cancelled since the dispatcher picked it.
        let Some(current) = self.get(&record.job.id)? else {
            return Ok(None);
        };
        if current.state != JobState::Queued || current.held {
            return Ok(None);
        }
        record = current;
        let store = &self.inner.store;
        let now = now_ms();
        let mut lane: LaneRecord = match store.get(Tree::Lanes, record.job.lane.as_str())? {
            Some(l) => l,
            None => self.lane_for(&record.job, now)?,
        };
        record.state = JobState::Leased;
        record.updated_at = now;
        let mut batch = Batch::new();
        batch.delete(
            Tree::LaneQueue,
            lane_queue_key(&record.job.lane, record.front, record.order),
        );
        batch.put(Tree::Jobs, record.job.id.as_str(), &record)?;
        // Carried-over prompts move into this job now; they are in its prompt from here on.
        let carry = std::mem::take(&mut lane.carry_over);
        if !carry.is_empty() {
            record.job.prompt = compose_carry_over(&carry, &record.job.prompt);
        }
        let notes = std::mem::take(&mut lane.notes);
        if !notes.is_empty() {
            record.job.prompt = compose_notes(&notes, &record.job.prompt);
        }
        if !carry.is_empty() || !notes.is_empty() {
            batch.put(Tree::Jobs, record.job.id.as_str(), &record)?;
        }
        batch.put(Tree::Lanes, lane.lane.as_str(), &lane)?;

        let events = EventEmitter::new(
            self.inner.bus.clone(),
            record.job.id.clone(),
            record.job.lane.clone(),
            record.last_seq,
        );
        // Registered before the commit so a cancel that races the lease finds the job.
        self.inner
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                record.job.lane.clone(),
                ActiveJob {
                    job_id: record.job.id.clone(),
                    cancel,
                    controls,
                    events: events.clone(),
                },
            );
        if let Err(e) = store.commit(batch).await {
            self.inner
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&record.job.lane);
            return Err(e.into());
        }
        Ok(Some((record, events, lane)))
    }

    /// `Leased → Running` (the runner reported `Started`), plus the runner session for the lane.
    pub(crate) fn mark_running(&self, job: &JobId, session: Option<String>) -> Result<()> {
        let store = &self.inner.store;
        let Some(mut record) = self.get(job)? else {
            return Ok(());
        };
        if record.state != JobState::Leased {
            return Ok(());
        }
        record.state = JobState::Running;
        record.updated_at = now_ms();
        let mut batch = Batch::new();
        batch.put(Tree::Jobs, job.as_str(), &record)?;
        if let Some(session) = session {
            if let Some(mut lane) = self.lane(&record.job.lane)? {
                lane.runner_session_id = Some(session);
                batch.put(Tree::Lanes, lane.lane.as_str(), &lane)?;
            }
        }
        store.apply(batch)?;
        Ok(())
    }

    /// Records the end of a run: the terminal state, the `Finished` event and lane bookkeeping,
    /// in one durable batch; then frees the lane.
    pub(crate) async fn complete(&self, done: Completion) -> Result<()> {
        let store = &self.inner.store;
        let now = now_ms();
        let mut record = done.record;
        record.state = match done.outcome {
            Outcome::Succeeded => JobState::Succeeded,
            Outcome::Failed | Outcome::TimedOut => JobState::Failed,
            Outcome::Cancelled => JobState::Cancelled,
            Outcome::Interrupted => JobState::Interrupted,
        };
        record.updated_at = now;
        record.reason = done.reason.clone();
        record.last_seq = done.events.last_seq() + 1;
        let mut batch = Batch::new();
        batch.put(Tree::Jobs, record.job.id.as_str(), &record)?;
        if let Some(mut lane) = self.lane(&record.job.lane)? {
            lane.last_activity_at = now;
            lane.last_job = Some(record.job.id.clone());
            if let Some(session) = &done.runner_session_id {
                lane.runner_session_id = Some(session.clone());
            }
            if let Some(text) = &done.carry_over {
                lane.carry_over.push(text.clone());
            }
            batch.put(Tree::Lanes, lane.lane.as_str(), &lane)?;
        }
        // Requests of this job that nobody answered stay pending: an answer can still continue
        // the session after the job is gone.
        self.inner.bus.publish(
            JobEvent {
                job_id: record.job.id.clone(),
                lane: record.job.lane.clone(),
                seq: record.last_seq,
                at: now,
                kind: EventKind::Finished {
                    outcome: done.outcome,
                    summary: done.summary,
                    error: done.error,
                    reason: done.reason,
                    exit_code: done.exit_code,
                    duration_ms: Some(done.duration_ms),
                },
            },
            batch,
        )?;
        store.flush().await?;
        self.inner
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&record.job.lane);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Replaces a voice job's recording by its transcript, so nothing transcribes it twice.
    pub(crate) async fn record_transcript(&self, job: &JobId, prompt: &str) -> Result<()> {
        let Some(mut record) = self.get(job)? else {
            return Err(QueueError::UnknownJob(job.clone()));
        };
        record.job.prompt = prompt.to_owned();
        record.job.voice = None;
        let mut batch = Batch::new();
        batch.put(Tree::Jobs, job.as_str(), &record)?;
        self.inner.store.commit(batch).await?;
        Ok(())
    }

    /// Fails a job that cannot even be leased (unknown runner), so it never blocks its lane.
    pub(crate) async fn reject_queued(&self, record: JobRecord, reason: String) -> Result<()> {
        self.finish_queued(record, Outcome::Failed, reason).await
    }

    /// Asks every running job to stop for `reason`.
    pub(crate) fn cancel_all(&self, reason: CancelReason) {
        let active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
        for running in active.values() {
            if running.cancel.cancel(reason.clone()) {
                running.events.emit_core(EventKind::Cancelling {
                    reason: reason.clone(),
                });
            }
        }
    }
}

/// The end of one run, as the dispatcher reports it.
pub(crate) struct Completion {
    pub record: JobRecord,
    pub events: EventEmitter,
    pub outcome: Outcome,
    pub summary: Option<String>,
    pub error: Option<super::events::Failure>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub runner_session_id: Option<String>,
    /// The prompt, when the job was interrupted before the runner ever saw it.
    pub carry_over: Option<String>,
}

fn queued_event(record: &JobRecord, position: u32) -> JobEvent {
    JobEvent {
        job_id: record.job.id.clone(),
        lane: record.job.lane.clone(),
        seq: 1,
        at: record.job.created_at,
        kind: EventKind::Queued { position },
    }
}

fn lane_queue_key(lane: &LaneId, front: bool, order: u64) -> Vec<u8> {
    let mut suffix = Vec::with_capacity(9);
    suffix.push(if front { FRONT } else { BACK });
    suffix.extend_from_slice(&store::be(order));
    store::key2(lane.as_str(), &suffix)
}

fn lane_of_key(key: &[u8]) -> Option<LaneId> {
    let end = key.iter().position(|b| *b == 0)?;
    Some(LaneId::new(
        String::from_utf8_lossy(&key[..end]).into_owned(),
    ))
}

fn describe_cancel(reason: &CancelReason) -> String {
    match reason {
        CancelReason::User => "cancelled before it started".to_owned(),
        CancelReason::Interrupted { by } => format!("replaced by {by} before it started"),
        CancelReason::Shutdown => "kimaki shut down before it started".to_owned(),
        CancelReason::TimedOut => "its deadline passed before it started".to_owned(),
        CancelReason::Revoked { reason } => format!("withdrawn by the coordinator: {reason}"),
    }
}

fn resolution_for(pending: &PendingInteraction, control: &Control) -> Result<Resolution> {
    match (&pending.kind, control) {
        (InteractionKind::Permission { .. }, Control::Permission { decision, .. }) => {
            Ok(Resolution::Permission {
                resolution: (*decision).into(),
            })
        }
        (InteractionKind::Question { .. }, Control::Answer { answers, .. }) => {
            Ok(Resolution::Question {
                answers: Some(answers.clone()),
            })
        }
        (InteractionKind::Question { .. }, Control::DismissQuestion { .. }) => {
            Ok(Resolution::Question { answers: None })
        }
        _ => Err(QueueError::WrongAnswerKind(pending.request_id.clone())),
    }
}

fn resolution_event(id: &RequestId, resolution: Resolution) -> EventKind {
    match resolution {
        Resolution::Permission { resolution } => EventKind::PermissionResolved {
            request_id: id.clone(),
            resolution,
        },
        Resolution::Question { answers } => EventKind::QuestionResolved {
            request_id: id.clone(),
            answers,
        },
    }
}

fn continuation_prompt(pending: &PendingInteraction, resolution: &Resolution) -> String {
    let what = match (&pending.kind, resolution) {
        (
            InteractionKind::Permission { tool, title, .. },
            Resolution::Permission { resolution },
        ) => {
            let subject = title.clone().unwrap_or_else(|| format!("use `{tool}`"));
            let answer = match resolution {
                super::events::PermissionResolution::Once => "allowed it once",
                super::events::PermissionResolution::Always => {
                    "allowed it for the rest of the session"
                }
                super::events::PermissionResolution::Reject
                | super::events::PermissionResolution::Timeout => "denied it",
            };
            format!("You asked for permission to {subject}. The user {answer}.")
        }
        (InteractionKind::Question { questions }, Resolution::Question { answers }) => {
            let mut text = String::from("You asked the user:");
            for (i, q) in questions.iter().enumerate() {
                let a = answers
                    .as_ref()
                    .and_then(|a| a.get(i))
                    .map(|v| v.join(", "))
                    .unwrap_or_else(|| "(no answer)".to_owned());
                text.push_str(&format!("\n- {} → {}", q.question, a));
            }
            text
        }
        _ => String::from("The user answered your pending request."),
    };
    format!(
        "{what}\nYour previous run was interrupted while it waited for this answer (kimaki restarted). Continue the task from where you left off, taking the answer into account."
    )
}

fn compose_carry_over(carry: &[String], prompt: &str) -> String {
    let mut text = String::from(
        "Earlier message(s) in this conversation were interrupted before you saw them:\n",
    );
    for c in carry {
        text.push_str("<interrupted-message>\n");
        text.push_str(c);
        text.push_str("\n</interrupted-message>\n");
    }
    text.push('\n');
    text.push_str(prompt);
    text
}

fn compose_notes(notes: &[String], prompt: &str) -> String {
    let mut text =
        String::from("Notification(s) posted in this conversation before this message:\n");
    for n in notes {
        text.push_str("<notification>\n");
        text.push_str(n);
        text.push_str("\n</notification>\n");
    }
    text.push('\n');
    text.push_str(prompt);
    text
}

/// `JobSource` names for display.
pub fn source_name(s: JobSource) -> &'static str {
    match s {
        JobSource::Discord => "discord",
        JobSource::Mesh => "mesh",
        JobSource::Cli => "cli",
        JobSource::Scheduler => "scheduler",
        JobSource::Voice => "voice",
        JobSource::Api => "api",
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
