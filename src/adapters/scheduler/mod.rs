//! Fires scheduled tasks through the shared queue: one timer to the next due time (no polling),
//! re-armed whenever tasks change. An occurrence's job id is derived from the task and its due
//! time, so a crash between enqueueing and recording the firing cannot fire it twice.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::core::tasks::{Task, Tasks};
use crate::core::{EnqueueMode, Health, JobId, JobQueue, QueueError};

/// Longest single sleep: the wall clock can jump (suspend, NTP), so re-check at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

enum Fired {
    Enqueued(JobId),
    /// Not run this time (previous still running, or the job could not be made).
    Skipped,
    /// Not now (shutting down): stays due.
    Later,
}

/// Wall-clock time in Unix ms; tests substitute one that follows tokio's paused clock.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::core::clock::now_ms()
    }
}

pub struct Scheduler {
    tasks: Tasks,
    queue: JobQueue,
    clock: Arc<dyn Clock>,
    health: Option<Health>,
    passes: tokio::sync::watch::Sender<u64>,
}

impl Scheduler {
    pub fn new(tasks: Tasks, queue: JobQueue, clock: Arc<dyn Clock>) -> Self {
        Self {
            tasks,
            queue,
            clock,
            health: None,
            passes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Counts completed passes (fire what is due, then arm the timer); lets tests step time and
    /// wait for the scheduler to settle without sleeping.
    pub fn passes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.passes.subscribe()
    }

    pub fn with_health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Runs until `shutdown`. Occurrences missed while kimaki was down fire once, at start.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut changes = self.tasks.subscribe();
        loop {
            let next = match self.fire_due().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "Scheduler cannot read its tasks; retrying in a minute.");
                    Some(self.clock.now_ms() + 60_000)
                }
            };
            let wait = next
                .map(|due| {
                    Duration::from_millis(u64::try_from(due - self.clock.now_ms()).unwrap_or(0))
                })
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            if let Some(h) = &self.health {
                let detail = next.map(|n| format!("next at {}", crate::core::clock::rfc3339(n)));
                h.set("scheduler", "running", detail);
            }
            self.passes.send_modify(|p| *p += 1);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Fires every task that is due; returns the next due time.
    async fn fire_due(&self) -> Result<Option<i64>, crate::core::tasks::TaskError> {
        let now = self.clock.now_ms();
        let mut next: Option<i64> = None;
        for task in self.tasks.list()? {
            let Some(due) = task.next_due_ms else {
                continue;
            };
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            let job = match self.fire(&task, due).await {
                Fired::Enqueued(job) => Some(job),
                Fired::Skipped => None,
                // kimaki is shutting down: leave it due for the next start.
                Fired::Later => continue,
            };
            if let Some(updated) = self.tasks.fired(&task.id, due, now, job).await? {
                if let Some(n) = updated.next_due_ms {
                    next = Some(next.map_or(n, |m| m.min(n)));
                }
            }
        }
        Ok(next)
    }

    /// Enqueues one occurrence.
    async fn fire(&self, task: &Task, due: i64) -> Fired {
        if self.previous_still_running(task) {
            tracing::info!(task = %task.id, "Skipping a scheduled run: the previous one has not finished.");
            return Fired::Skipped;
        }
        match self
            .queue
            .enqueue(task.job_for(due), EnqueueMode::Queue)
            .await
        {
            Ok(e) => {
                tracing::info!(task = %task.id, job_id = %e.record.job.id, "Scheduled task fired.");
                Fired::Enqueued(e.record.job.id)
            }
            Err(QueueError::ShuttingDown) => Fired::Later,
            Err(e) => {
                // Recorded as done anyway: a broken task must not fire in a tight loop.
                tracing::warn!(task = %task.id, error = %e, "Scheduled task could not be enqueued.");
                Fired::Skipped
            }
        }
    }

    fn previous_still_running(&self, task: &Task) -> bool {
        if task.allow_concurrency {
            return false;
        }
        let Some(previous) = &task.last_job else {
            return false;
        };
        matches!(self.queue.get(previous), Ok(Some(r)) if !r.state.is_terminal())
    }
}
