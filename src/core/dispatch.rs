//! The dispatcher: takes runnable jobs from the queue (oldest lane head first), leases them when
//! their runner has a free slot, runs them, and records how each ended. The slot (a semaphore
//! permit) is taken *before* the lease, so work that cannot start stays queued and durable.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::events::{CancelReason, EventKind, Failure, FailureKind, Outcome};
use super::ids::RunnerId;
use super::job::{JobRecord, LaneRecord};
use super::queue::{Completion, JobQueue};
use super::runner::{
    CancelSignal, Control, EventEmitter, RunContext, RunRequest, Runner, RunnerError,
};
use super::transcribe::Transcriber;

/// Answers waiting for a runner to read them; people click far slower than runners read.
const CONTROL_CAPACITY: usize = 16;

/// MEMORY.md is inlined up to this size; beyond it the agent is told to read the file.
const MEMORY_INLINE_LIMIT: u64 = 64 * 1024;

/// After this long without activity in a lane, the agent is reminded to save context first.
const IDLE_REMINDER_AFTER: Duration = Duration::from_secs(10 * 60);

/// A runner and how many jobs it may run at once.
struct RunnerSlot {
    runner: Arc<dyn Runner>,
    permits: Arc<Semaphore>,
}

/// The runners the dispatcher can use.
#[derive(Default)]
pub struct RunnerSet {
    slots: HashMap<RunnerId, RunnerSlot>,
}

impl RunnerSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, runner: Arc<dyn Runner>, max_concurrent: usize) {
        self.slots.insert(
            runner.id(),
            RunnerSlot {
                runner,
                permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            },
        );
    }

    pub fn get(&self, id: &RunnerId) -> Option<Arc<dyn Runner>> {
        self.slots.get(id).map(|s| s.runner.clone())
    }

    pub fn ids(&self) -> Vec<RunnerId> {
        let mut ids: Vec<RunnerId> = self.slots.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn runners(&self) -> Vec<Arc<dyn Runner>> {
        let mut all: Vec<(RunnerId, Arc<dyn Runner>)> = self
            .slots
            .iter()
            .map(|(id, s)| (id.clone(), s.runner.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.into_iter().map(|(_, r)| r).collect()
    }

    fn try_acquire(&self, id: &RunnerId) -> Option<Result<OwnedSemaphorePermit, ()>> {
        let slot = self.slots.get(id)?;
        Some(slot.permits.clone().try_acquire_owned().map_err(|_| ()))
    }
}

/// Timing knobs.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// How long a runner has to return after a cancel before its future is dropped (which kills
    /// its child processes).
    pub cancel_grace: Duration,
    /// On shutdown, how long running jobs may finish before they are cancelled.
    pub drain_grace: Duration,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        Self {
            cancel_grace: Duration::from_secs(10),
            drain_grace: Duration::from_secs(30),
        }
    }
}

pub struct Dispatcher {
    queue: JobQueue,
    runners: Arc<RunnerSet>,
    options: DispatchOptions,
    transcriber: Option<Arc<dyn Transcriber>>,
}

impl Dispatcher {
    pub fn new(queue: JobQueue, runners: Arc<RunnerSet>, options: DispatchOptions) -> Self {
        Self {
            queue,
            runners,
            options,
            transcriber: None,
        }
    }

    /// Enables voice jobs: their recordings are transcribed right before they run.
    pub fn with_transcriber(mut self, transcriber: Arc<dyn Transcriber>) -> Self {
        self.transcriber = Some(transcriber);
        self
    }

    /// Runs until `shutdown` fires, then drains: running jobs get `drain_grace` to finish, the
    /// rest are cancelled (`Interrupted`, never re-run), queued jobs stay for the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks: JoinSet<()> = JoinSet::new();
        loop {
            self.dispatch_ready(&mut tasks).await;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = joined {
                        tracing::error!(error = %e, "A job task ended abnormally.");
                    }
                }
                _ = self.queue.notified() => {}
            }
        }
        self.drain(tasks).await;
    }

    async fn drain(&self, mut tasks: JoinSet<()>) {
        if !tasks.is_empty() {
            tracing::info!(
                running = tasks.len(),
                grace_secs = self.options.drain_grace.as_secs(),
                "Waiting for running jobs to finish."
            );
        }
        let finished = tokio::time::timeout(self.options.drain_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                running = tasks.len(),
                "Grace period over; cancelling running jobs."
            );
            self.queue.cancel_all(CancelReason::Shutdown);
            // Each job task enforces `cancel_grace` itself; the margin covers its bookkeeping.
            let margin = self.options.cancel_grace + Duration::from_secs(5);
            if tokio::time::timeout(margin, async { while tasks.join_next().await.is_some() {} })
                .await
                .is_err()
            {
                tracing::error!(running = tasks.len(), "Jobs did not stop; abandoning them (they will be reported interrupted at next start).");
                tasks.abort_all();
            }
        }
        for runner in self.runners.runners() {
            runner.shutdown().await;
        }
    }

    async fn dispatch_ready(&self, tasks: &mut JoinSet<()>) {
        let heads = match self.queue.runnable_heads() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "Cannot read the queue.");
                return;
            }
        };
        for record in heads {
            let permit = match self.runners.try_acquire(&record.job.runner) {
                Some(Ok(p)) => p,
                // Busy: it stays queued; a finishing job wakes us.
                Some(Err(())) => continue,
                None => {
                    let ids = self.runners.ids();
                    let available = if ids.is_empty() {
                        "none are available".to_owned()
                    } else {
                        format!(
                            "available: {}",
                            ids.iter()
                                .map(|r| r.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    let reason = format!(
                        "no runner named `{}` is configured ({available})",
                        record.job.runner
                    );
                    if let Err(e) = self.queue.reject_queued(record, reason).await {
                        tracing::error!(error = %e, "Cannot fail a job with an unknown runner.");
                    }
                    continue;
                }
            };
            let Some(runner) = self.runners.get(&record.job.runner) else {
                continue;
            };
            let cancel = CancelSignal::new();
            let (controls_tx, controls_rx) = mpsc::channel(CONTROL_CAPACITY);
            let leased = self.queue.lease(record, cancel.clone(), controls_tx).await;
            let (record, events, lane) = match leased {
                Ok(Some(l)) => l,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot lease a job.");
                    continue;
                }
            };
            let job = JobTask {
                queue: self.queue.clone(),
                runner,
                record,
                lane,
                events,
                cancel,
                controls: controls_rx,
                cancel_grace: self.options.cancel_grace,
                transcriber: self.transcriber.clone(),
            };
            let span = tracing::info_span!("job", job_id = %job.record.job.id, lane = %job.record.job.lane, runner = %job.record.job.runner);
            tasks.spawn(job.run(permit).instrument(span));
        }
    }
}

/// One job from lease to completion.
struct JobTask {
    queue: JobQueue,
    runner: Arc<dyn Runner>,
    record: JobRecord,
    lane: LaneRecord,
    events: EventEmitter,
    cancel: CancelSignal,
    controls: mpsc::Receiver<Control>,
    cancel_grace: Duration,
    transcriber: Option<Arc<dyn Transcriber>>,
}

impl JobTask {
    async fn run(self, permit: OwnedSemaphorePermit) {
        let JobTask {
            queue,
            runner,
            record,
            lane,
            events,
            cancel,
            controls,
            cancel_grace,
            transcriber,
        } = self;
        let job_id = record.job.id.clone();
        tracing::info!("Job leased.");
        let started_at = Instant::now();

        {
            let queue = queue.clone();
            let job_id = job_id.clone();
            events.on_started(move |kind| {
                if let EventKind::Started {
                    runner_session_id, ..
                } = kind
                {
                    if let Err(e) = queue.mark_running(&job_id, runner_session_id.clone()) {
                        tracing::error!(job_id = %job_id, error = %e, "Cannot record that the job started.");
                    }
                }
            });
        }

        let mut record = record;
        let result = match prepare_voice(
            &queue,
            transcriber.as_deref(),
            &mut record,
            &events,
            &cancel,
        )
        .await
        {
            Some(early) => early,
            None => {
                let request = build_request(&record, &lane);
                let ctx = RunContext {
                    events: events.clone(),
                    cancel: cancel.clone(),
                    controls,
                };
                let deadline = record.job.timeout_ms.map(Duration::from_millis);
                run_with_deadlines(&*runner, request, ctx, &cancel, deadline, cancel_grace).await
            }
        };

        let mut done = Completion {
            record: record.clone(),
            events: events.clone(),
            outcome: Outcome::Succeeded,
            summary: None,
            error: None,
            reason: None,
            exit_code: None,
            duration_ms: u64::try_from(started_at.elapsed().as_millis()).unwrap_or(u64::MAX),
            runner_session_id: None,
            carry_over: None,
        };
        let cancel_reason = cancel.reason();
        match result {
            RunResult::Finished(Ok(summary)) => {
                done.summary = summary.summary;
                done.exit_code = summary.exit_code;
                done.runner_session_id = summary.runner_session_id;
            }
            RunResult::Finished(Err(RunnerError::Failed(detail))) if cancel_reason.is_none() => {
                done.outcome = Outcome::Failed;
                done.reason = Some(detail.failure.message.clone());
                done.exit_code = detail.exit_code;
                done.runner_session_id = detail.runner_session_id;
                done.error = Some(detail.failure);
            }
            RunResult::Finished(Err(RunnerError::Failed(detail))) => {
                done.runner_session_id = detail.runner_session_id;
                done.exit_code = detail.exit_code;
                apply_cancel(&mut done, cancel_reason.as_ref());
            }
            RunResult::Finished(Err(RunnerError::Cancelled { runner_session_id })) => {
                done.runner_session_id = runner_session_id;
                apply_cancel(&mut done, cancel_reason.as_ref());
            }
            RunResult::NothingToDo(reason) => {
                done.outcome = Outcome::Cancelled;
                done.reason = Some(reason);
            }
            RunResult::Abandoned => {
                apply_cancel(&mut done, cancel_reason.as_ref());
                if let Some(r) = &mut done.reason {
                    r.push_str(" (the runner did not stop in time and was killed)");
                }
            }
            RunResult::Panicked(message) => {
                let failure = Failure::new(
                    FailureKind::Internal,
                    format!("the {} runner crashed: {message}", record.job.runner),
                );
                done.outcome = Outcome::Failed;
                done.reason = Some(failure.message.clone());
                done.error = Some(failure);
            }
        }
        if let Some(e) = events.store_error() {
            let failure = Failure::new(
                FailureKind::Internal,
                format!("kimaki could not save this job's events ({e}); is the disk full?"),
            );
            done.outcome = Outcome::Failed;
            done.reason = Some(failure.message.clone());
            done.error = Some(failure);
        }
        if matches!(cancel_reason, Some(CancelReason::Interrupted { .. })) && !events.has_started()
        {
            done.carry_over = Some(record.job.prompt.clone());
        }
        let outcome = done.outcome;
        if let Err(e) = queue.complete(done).await {
            tracing::error!(error = %e, "Cannot record the end of a job.");
        }
        tracing::info!(outcome = ?outcome, "Job finished.");
        drop(permit);
        queue.wake();
    }
}

/// Turns a spoken prompt into text before the run (in the job's place in its lane). Returns an
/// outcome when the job ends here: no transcriber, transcription failed, nothing intelligible, or
/// cancelled meanwhile.
async fn prepare_voice(
    queue: &JobQueue,
    transcriber: Option<&dyn Transcriber>,
    record: &mut JobRecord,
    events: &EventEmitter,
    cancel: &CancelSignal,
) -> Option<RunResult> {
    let voice = record.job.voice.clone()?;
    let Some(transcriber) = transcriber else {
        return Some(RunResult::Finished(Err(RunnerError::failed(
            FailureKind::RunnerUnavailable,
            "voice messages need a transcription provider: set GEMINI_API_KEY or OPENAI_API_KEY (kimaki init)",
        ))));
    };
    events.emit(EventKind::Status {
        message: "Transcribing voice message…".to_owned(),
        retry: None,
    });
    let transcript = tokio::select! {
        t = transcriber.transcribe(&record.job, &voice) => t,
        _ = cancel.cancelled() => return Some(RunResult::Finished(Err(RunnerError::cancelled(None)))),
    };
    let transcript = match transcript {
        Ok(t) => t,
        Err(failure) => {
            return Some(RunResult::Finished(Err(RunnerError::Failed(
                super::runner::FailureDetail {
                    failure,
                    exit_code: None,
                    runner_session_id: None,
                },
            ))))
        }
    };
    let text = transcript.text.trim();
    events.emit(EventKind::Transcribed {
        text: text.to_owned(),
        provider: transcript.provider.clone(),
    });
    if text.is_empty() || text == INAUDIBLE {
        return Some(RunResult::NothingToDo(
            "the voice message had no intelligible speech".to_owned(),
        ));
    }
    let mut prompt = format!("{}\n{text}", voice.preamble);
    if !record.job.prompt.trim().is_empty() {
        prompt.push_str("\n\n");
        prompt.push_str(&record.job.prompt);
    }
    if let Some(agent) = transcript.agent {
        record.job.agent.get_or_insert(agent);
    }
    if let Err(e) = queue.record_transcript(&record.job.id, &prompt).await {
        tracing::error!(error = %e, "Cannot save the transcript; continuing with it in memory.");
    }
    record.job.prompt = prompt;
    record.job.voice = None;
    None
}

/// What a transcriber answers when nothing in the recording is speech.
const INAUDIBLE: &str = "[inaudible audio]";

enum RunResult {
    /// Ended before the runner was needed (for example an empty voice message).
    NothingToDo(String),
    Finished(Result<super::runner::RunSummary, RunnerError>),
    /// Cancelled, and the runner did not return within the grace period.
    Abandoned,
    Panicked(String),
}

async fn run_with_deadlines(
    runner: &dyn Runner,
    request: RunRequest,
    ctx: RunContext,
    cancel: &CancelSignal,
    deadline: Option<Duration>,
    cancel_grace: Duration,
) -> RunResult {
    let run = AssertUnwindSafe(runner.run(request, ctx)).catch_unwind();
    tokio::pin!(run);
    let deadline_sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline_sleep);
    loop {
        tokio::select! {
            r = &mut run => return finished(r),
            _ = &mut deadline_sleep, if !cancel.is_cancelled() => {
                cancel.cancel(CancelReason::TimedOut);
            }
            _ = cancel.cancelled() => {
                return match tokio::time::timeout(cancel_grace, &mut run).await {
                    Ok(r) => finished(r),
                    Err(_) => RunResult::Abandoned,
                };
            }
        }
    }
}

fn finished(
    r: Result<Result<super::runner::RunSummary, RunnerError>, Box<dyn std::any::Any + Send>>,
) -> RunResult {
    match r {
        Ok(result) => RunResult::Finished(result),
        Err(panic) => RunResult::Panicked(
            panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned()),
        ),
    }
}

fn apply_cancel(done: &mut Completion, reason: Option<&CancelReason>) {
    let (outcome, text) = match reason {
        Some(CancelReason::User) => (Outcome::Cancelled, "stopped by the user".to_owned()),
        Some(CancelReason::Interrupted { by }) => (
            Outcome::Interrupted,
            format!("interrupted by a new message ({by})"),
        ),
        Some(CancelReason::Shutdown) => (
            Outcome::Interrupted,
            "kimaki shut down while it ran; it was not re-run".to_owned(),
        ),
        Some(CancelReason::TimedOut) => (Outcome::TimedOut, "the job's deadline passed".to_owned()),
        Some(CancelReason::Revoked { reason }) => (
            Outcome::Cancelled,
            format!("withdrawn by the coordinator: {reason}"),
        ),
        None => (Outcome::Cancelled, "stopped".to_owned()),
    };
    done.outcome = outcome;
    done.reason = Some(text);
    if outcome == Outcome::TimedOut {
        done.error = Some(Failure::new(
            FailureKind::Timeout,
            "the job's deadline passed",
        ));
    }
}

/// The runner's view of a job: its prompt with the project's memory (first turn of a session) or
/// a reminder to save context (after a long idle gap).
fn build_request(record: &JobRecord, lane: &LaneRecord) -> RunRequest {
    let job = &record.job;
    let mut prompt = job.prompt.clone();
    if lane.runner_session_id.is_none() {
        if let Some(memory) = read_memory(&job.workspace) {
            prompt = format!("{memory}\n\n{prompt}");
        }
    } else {
        let idle_ms = super::clock::now_ms() - lane.last_activity_at;
        if idle_ms > i64::try_from(IDLE_REMINDER_AFTER.as_millis()).unwrap_or(i64::MAX) {
            prompt.push_str(&format!(
                "\n\n<system-reminder>This conversation was idle for {} minutes. If anything from before is worth keeping, save it to MEMORY.md in the project root before starting on this request.</system-reminder>",
                idle_ms / 60_000
            ));
        }
    }
    RunRequest {
        job_id: job.id.clone(),
        lane: job.lane.clone(),
        cwd: job.workspace.clone(),
        prompt,
        attachments: job.attachments.clone(),
        model: job.model.clone(),
        agent: job.agent.clone(),
        session: lane.runner_session_id.clone(),
        permission_policy: job.permission_policy,
    }
}

fn read_memory(workspace: &Path) -> Option<String> {
    let path = workspace.join("MEMORY.md");
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.len() > MEMORY_INLINE_LIMIT {
        return Some(format!(
            "<system-reminder>This project keeps notes in MEMORY.md ({} KB). Read it before you start, and update it with anything worth remembering.</system-reminder>",
            meta.len() / 1024
        ));
    }
    let text = std::fs::read_to_string(&path).ok()?;
    Some(format!(
        "<memory file=\"MEMORY.md\">\n{}\n</memory>\n<system-reminder>MEMORY.md holds this project's notes from earlier sessions. Update it when you learn something worth keeping.</system-reminder>",
        text.trim_end()
    ))
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
