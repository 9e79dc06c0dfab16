//! The real queue and dispatcher, in process, over a temp store: enqueue jobs, then wait for
//! their events. Runner tests and queue tests both go through it, so every runner is exercised
//! on the same path production uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kimaki::core::{
    DispatchOptions, Dispatcher, EnqueueMode, EventKind, JobEvent, JobId, JobQueue, JobSource,
    LaneId, NewJob, Outcome, PermissionPolicy, Runner, RunnerId, RunnerSet, Transcriber,
};
use kimaki::store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct QueueHarness {
    pub queue: JobQueue,
    pub store_path: PathBuf,
    stop: CancellationToken,
    dispatcher: Option<JoinHandle<()>>,
}

impl QueueHarness {
    /// A queue over `store_path` (created if needed) with these runners (each with its own
    /// concurrency limit), already recovered and dispatching.
    pub async fn start(store_path: &Path, runners: Vec<(Arc<dyn Runner>, usize)>) -> Self {
        Self::start_with(
            store_path,
            runners,
            DispatchOptions {
                cancel_grace: Duration::from_secs(5),
                drain_grace: Duration::from_secs(5),
            },
        )
        .await
    }

    pub async fn start_with(
        store_path: &Path,
        runners: Vec<(Arc<dyn Runner>, usize)>,
        options: DispatchOptions,
    ) -> Self {
        Self::start_full(store_path, runners, options, None).await
    }

    /// Like [`QueueHarness::start`], with voice jobs transcribed by `transcriber`.
    pub async fn start_with_transcriber(
        store_path: &Path,
        runners: Vec<(Arc<dyn Runner>, usize)>,
        transcriber: Arc<dyn Transcriber>,
    ) -> Self {
        let options = DispatchOptions {
            cancel_grace: Duration::from_secs(5),
            drain_grace: Duration::from_secs(5),
        };
        Self::start_full(store_path, runners, options, Some(transcriber)).await
    }

    async fn start_full(
        store_path: &Path,
        runners: Vec<(Arc<dyn Runner>, usize)>,
        options: DispatchOptions,
        transcriber: Option<Arc<dyn Transcriber>>,
    ) -> Self {
        let path = store_path.to_owned();
        let store = tokio::task::spawn_blocking(move || Store::open(&path))
            .await
            .unwrap()
            .expect("open store");
        let queue = JobQueue::new(store);
        queue.recover().await.expect("recover");
        let mut set = RunnerSet::new();
        for (r, max) in runners {
            set.add(r, max);
        }
        let stop = CancellationToken::new();
        let mut dispatcher = Dispatcher::new(queue.clone(), Arc::new(set), options);
        if let Some(t) = transcriber {
            dispatcher = dispatcher.with_transcriber(t);
        }
        let handle = tokio::spawn(dispatcher.run(stop.clone()));
        Self {
            queue,
            store_path: store_path.to_owned(),
            stop,
            dispatcher: Some(handle),
        }
    }

    /// Stops the dispatcher (drain, then cancel) and waits for it.
    pub async fn shutdown(mut self) {
        self.queue.stop_intake();
        self.stop.cancel();
        if let Some(h) = self.dispatcher.take() {
            tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("dispatcher stops")
                .unwrap();
        }
    }

    pub async fn enqueue(&self, job: NewJob) -> JobId {
        self.enqueue_mode(job, EnqueueMode::Queue).await
    }

    pub async fn enqueue_mode(&self, job: NewJob, mode: EnqueueMode) -> JobId {
        self.queue
            .enqueue(job, mode)
            .await
            .expect("enqueue")
            .record
            .job
            .id
    }

    /// Waits for the first event of `job` matching `pred`.
    pub async fn wait_event(
        &self,
        job: &JobId,
        timeout: Duration,
        pred: impl Fn(&EventKind) -> bool,
    ) -> JobEvent {
        let mut sub = self.queue.bus().subscribe(0);
        let found = tokio::time::timeout(timeout, async {
            while let Some(ev) = sub.next().await {
                if &ev.event.job_id == job && pred(&ev.event.kind) {
                    return ev.event.clone();
                }
            }
            panic!("event bus closed");
        })
        .await;
        match found {
            Ok(ev) => ev,
            Err(_) => panic!(
                "no matching event for {job} within {timeout:?}; events so far:\n{}",
                describe(&self.events(job))
            ),
        }
    }

    /// Waits for the job's terminal event and returns all its events.
    pub async fn wait_finished(&self, job: &JobId, timeout: Duration) -> Vec<JobEvent> {
        self.wait_event(job, timeout, |k| k.is_terminal()).await;
        self.events(job)
    }

    pub fn events(&self, job: &JobId) -> Vec<JobEvent> {
        self.queue.bus().job_events(job, 0).expect("read events")
    }
}

/// A job for `runner` in `lane`, working in `workspace`.
pub fn new_job(lane: &str, runner: &str, workspace: &Path, prompt: &str) -> NewJob {
    NewJob {
        id: None,
        lane: LaneId::new(lane),
        source: JobSource::Cli,
        workspace: workspace.to_owned(),
        runner: RunnerId::new(runner),
        prompt: prompt.to_owned(),
        attachments: Vec::new(),
        model: None,
        agent: None,
        permission_policy: PermissionPolicy::Ask,
        timeout_ms: None,
        reply_to: None,
        meta: Default::default(),
        held: false,
        voice: None,
        notify_only: false,
    }
}

/// The outcome of the terminal event.
pub fn outcome(events: &[JobEvent]) -> Outcome {
    match events.last().map(|e| &e.kind) {
        Some(EventKind::Finished { outcome, .. }) => *outcome,
        other => panic!("last event is not Finished: {other:?}"),
    }
}

/// All assistant text of a job: final parts where present, else the deltas.
pub fn assistant_text(events: &[JobEvent]) -> String {
    use kimaki::core::events::TextStream;
    let mut parts: Vec<(String, String)> = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::TextDelta {
                part_id,
                stream: TextStream::Assistant,
                delta,
            } => match parts.iter_mut().find(|(p, _)| p == part_id) {
                Some((_, t)) => t.push_str(delta),
                None => parts.push((part_id.clone(), delta.clone())),
            },
            EventKind::TextPart {
                part_id,
                stream: TextStream::Assistant,
                text,
            } => match parts.iter_mut().find(|(p, _)| p == part_id) {
                Some((_, t)) => *t = text.clone(),
                None => parts.push((part_id.clone(), text.clone())),
            },
            _ => {}
        }
    }
    parts
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn describe(events: &[JobEvent]) -> String {
    events
        .iter()
        .map(|e| format!("  #{} {}", e.seq, serde_json::to_string(&e.kind).unwrap()))
        .collect::<Vec<_>>()
        .join("\n")
}
