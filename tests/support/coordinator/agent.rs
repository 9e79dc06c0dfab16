//! The kimaki side of the mesh tests: a real queue, dispatcher, workspace registry and mesh link
//! over a temp data dir, pointed at coordinators. Restartable on the same data dir. Plus
//! `ChattyRunner`, a test-only in-process runner that streams many deltas over time (the
//! plumbing under a long job), since the echo runner answers at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kimaki::adapters::mesh::{self, LinkState, MeshConfig, MeshDeps, MeshHandle, MeshStatus};
use kimaki::core::events::TextStream;
use kimaki::core::{
    DispatchOptions, Dispatcher, EventKind, Health, JobQueue, RunContext, RunRequest, RunSummary,
    Runner, RunnerError, RunnerId, RunnerInfo, RunnerSet, Workspaces,
};
use kimaki::store::{Store, StoreError};
use mesh_protocol::{JobSpec, PermissionPolicy, RunnerKind, WorkspaceId};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The token the test coordinators accept by default.
pub const TOKEN: &str = "gw_at_test";

/// Timings that keep the suite fast: short backoff, quick resends and watchdog slack.
pub fn test_config(endpoints: Vec<String>) -> MeshConfig {
    let mut c = MeshConfig::new(endpoints);
    c.token = Some(TOKEN.to_owned());
    c.account = "ops@example.com".into();
    c.gateway_name = "test-agent".into();
    c.endpoint_id = "ep_test".into();
    c.max_concurrent_jobs = 4;
    c.connect_timeout = Duration::from_secs(3);
    c.welcome_timeout = Duration::from_secs(3);
    c.backoff_initial = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c.auth_retry = Duration::from_secs(60);
    c.superseded_pause = Duration::from_secs(1);
    c.watchdog_grace = Duration::from_millis(500);
    c.resend_after = Duration::from_millis(500);
    c.send_timeout = Duration::from_secs(2);
    c.shutdown_flush = Duration::from_secs(2);
    c
}

/// Coordinator settings matching `test_config`: fast heartbeats and engine pings.
pub fn fast_coordinator() -> super::CoordinatorConfig {
    super::CoordinatorConfig {
        heartbeat_ms: 300,
        ping_interval: Duration::from_secs(1),
        ping_timeout: Duration::from_secs(1),
        dispatch_ack_timeout_ms: 2_000,
        ..super::CoordinatorConfig::default()
    }
}

/// A dispatch spec for a kimaki runner id (mapped to its wire id).
pub fn spec(runner: &str, workspace_id: &str, prompt: &str) -> JobSpec {
    let wire = match runner {
        "claude" => RunnerKind::ClaudeCode,
        "opencode" => RunnerKind::OpenCode,
        "codex" => RunnerKind::Codex,
        other => RunnerKind::Other(format!("x-{other}")),
    };
    JobSpec {
        runner: wire,
        workspace_id: WorkspaceId::new(workspace_id),
        prompt: prompt.to_owned(),
        model: None,
        args: None,
        env: None,
        timeout_ms: None,
        permission_policy: Some(PermissionPolicy::Ask),
        resume_session: None,
        mirror: None,
    }
}

/// A running agent.
pub struct Agent {
    pub dir: TempDir,
    pub workspace: PathBuf,
    pub workspace_id: String,
    pub queue: JobQueue,
    pub workspaces: Workspaces,
    pub health: Health,
    pub mesh: Option<MeshHandle>,
    shutdown: CancellationToken,
    dispatch_stop: CancellationToken,
    dispatcher: Option<JoinHandle<()>>,
}

impl Agent {
    /// A fresh data dir with one registered workspace (`api-server`).
    pub async fn start(config: MeshConfig, runners: Vec<(Arc<dyn Runner>, usize)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let workspace = dir.path().join("api-server");
        std::fs::create_dir_all(&workspace).expect("workspace dir");
        Self::start_in(dir, config, runners).await
    }

    /// Starts on an existing data dir (a restart keeps the store).
    pub async fn start_in(
        dir: TempDir,
        config: MeshConfig,
        runners: Vec<(Arc<dyn Runner>, usize)>,
    ) -> Self {
        // After a crash the aborted job tasks release their store handles asynchronously; the
        // lock is free once the last one is dropped.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let store = loop {
            let store_path = dir.path().join("store");
            match tokio::task::spawn_blocking(move || Store::open(&store_path))
                .await
                .unwrap()
            {
                Ok(store) => break store,
                Err(StoreError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("open store: {e}"),
            }
        };
        let queue = JobQueue::new(store.clone());
        queue.recover().await.expect("recover");
        let workspaces = Workspaces::new(store.clone());
        let ws = workspaces
            .add(&dir.path().join("api-server"), None)
            .await
            .expect("register workspace");
        let mut set = RunnerSet::new();
        for (r, max) in runners {
            set.add(r, max);
        }
        let runners = Arc::new(set);
        let dispatch_stop = CancellationToken::new();
        let dispatcher = Dispatcher::new(
            queue.clone(),
            runners.clone(),
            DispatchOptions {
                cancel_grace: Duration::from_secs(2),
                drain_grace: Duration::from_secs(2),
            },
        );
        let dispatcher = tokio::spawn(dispatcher.run(dispatch_stop.clone()));
        let health = Health::default();
        let shutdown = CancellationToken::new();
        let handle = mesh::spawn(
            config,
            MeshDeps {
                queue: queue.clone(),
                workspaces: workspaces.clone(),
                runners,
                health: health.clone(),
                store,
            },
            shutdown.clone(),
        );
        Self {
            workspace: ws.path.clone(),
            workspace_id: ws.id,
            dir,
            queue,
            workspaces,
            health,
            mesh: Some(handle),
            shutdown,
            dispatch_stop,
            dispatcher: Some(dispatcher),
        }
    }

    pub fn status(&self) -> MeshStatus {
        self.mesh.as_ref().expect("mesh running").status()
    }

    /// Waits until the link satisfies `pred`; panics with the last status after `timeout`.
    pub async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&MeshStatus) -> bool,
    ) -> MeshStatus {
        let mesh = self.mesh.as_ref().expect("mesh running");
        match mesh.wait_for(timeout, pred).await {
            Some(s) => s,
            None => panic!(
                "mesh link: no {what} within {timeout:?}; last status {:?}",
                mesh.status()
            ),
        }
    }

    pub async fn wait_connected(&self, timeout: Duration) -> MeshStatus {
        self.wait_status("connection", timeout, |s| s.state == LinkState::Connected)
            .await
    }

    /// Orderly stop (dispatcher drains, then the mesh link flushes); returns the data dir.
    pub async fn stop(mut self) -> TempDir {
        self.queue.stop_intake();
        self.dispatch_stop.cancel();
        if let Some(d) = self.dispatcher.take() {
            tokio::time::timeout(Duration::from_secs(20), d)
                .await
                .expect("dispatcher stops")
                .unwrap();
        }
        self.shutdown.cancel();
        if let Some(m) = self.mesh.take() {
            tokio::time::timeout(Duration::from_secs(20), m.stopped())
                .await
                .expect("mesh link stops");
        }
        self.release()
    }

    /// Abrupt stop: tasks are aborted mid-flight, nothing is flushed on purpose (a crash).
    pub async fn crash(mut self) -> TempDir {
        if let Some(m) = self.mesh.take() {
            m.abort().await;
        }
        if let Some(d) = self.dispatcher.take() {
            d.abort();
            let _ = d.await;
        }
        self.release()
    }

    fn release(self) -> TempDir {
        let Agent { dir, .. } = self;
        dir
    }
}

/// Streams `chunks` deltas, `interval` apart, then finishes; the prompt `chatty:<n>:<ms>` sets
/// both. Cancel-aware. Counts runs, to prove a job never ran twice.
#[derive(Default)]
pub struct ChattyRunner {
    pub runs: AtomicUsize,
}

impl ChattyRunner {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The text a `chatty:<n>:<ms>` job streams.
    pub fn expected_text(chunks: usize) -> String {
        (0..chunks).map(|i| format!("chunk {i}\n")).collect()
    }
}

#[async_trait]
impl Runner for ChattyRunner {
    fn id(&self) -> RunnerId {
        RunnerId::new("chatty")
    }

    async fn probe(&self) -> RunnerInfo {
        RunnerInfo {
            id: self.id(),
            available: true,
            version: Some("1.0.0".into()),
            reason: None,
            program: None,
        }
    }

    async fn run(&self, req: RunRequest, ctx: RunContext) -> Result<RunSummary, RunnerError> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let session = format!("chatty-{n}");
        ctx.emit(EventKind::Started {
            runner: "chatty".into(),
            runner_version: Some("1.0.0".into()),
            runner_session_id: Some(session.clone()),
            pid: None,
        });
        let mut parts = req.prompt.trim().split(':').skip(1);
        let chunks: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(10);
        let interval: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(10);
        ctx.emit(EventKind::ToolStarted {
            call_id: "call_1".into(),
            name: "bash".into(),
            input: serde_json::json!({"command": "ls"}),
        });
        for i in 0..chunks {
            if interval == 0 {
                // As fast as the emitter takes them: a zero sleep still waits for a timer tick.
                if ctx.cancel.is_cancelled() {
                    return Err(RunnerError::cancelled(Some(session)));
                }
                tokio::task::yield_now().await;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(interval)) => {}
                    _ = ctx.cancel.cancelled() => return Err(RunnerError::cancelled(Some(session))),
                }
            }
            ctx.emit(EventKind::TextDelta {
                part_id: "p1".into(),
                stream: TextStream::Assistant,
                delta: format!("chunk {i}\n"),
            });
        }
        ctx.emit(EventKind::ToolFinished {
            call_id: "call_1".into(),
            name: "bash".into(),
            output: "README.md".into(),
            is_error: false,
            exit_code: Some(0),
        });
        Ok(RunSummary {
            summary: Some(format!("streamed {chunks} chunks")),
            runner_session_id: Some(session),
            exit_code: Some(0),
        })
    }
}
