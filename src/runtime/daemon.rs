//! `kimaki start`: open the store, recover jobs, start the dispatcher and every configured
//! adapter, report readiness, and on a stop request shut down in order: stop intake → let running
//! jobs finish within the grace period → cancel the rest → flush → exit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::onboarding::GatewayLogin;
use super::wiring;
use crate::adapters::control::http::HttpApi;
use crate::adapters::control::protocol::{Call, CallError, LaneStatus, QueueStatus};
use crate::adapters::control::{ControlHandler, ControlServer, InstanceLock, StatusReport};
use crate::adapters::discord::{self, DiscordDeps, DiscordHandle};
use crate::adapters::git::GitWorktrees;
use crate::adapters::mesh::{self, MeshDeps, MeshHandle};
use crate::adapters::scheduler::{Scheduler, SystemClock};
use crate::config::{keys, Loaded};
use crate::core::tasks::Tasks;
use crate::core::{
    clock, DispatchOptions, Dispatcher, Health, JobId, JobQueue, Runner, Workspaces, Worktrees,
};
use crate::store::{Store, StoreError};
use crate::telemetry::sse::{AdapterSummary, Lifecycle, LifecycleOut};

/// How long the mesh link may take to send its last events and say goodbye.
const MESH_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after the drain the control socket stays up for final status calls.
const CONTROL_LINGER: Duration = Duration::from_millis(0);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open the control socket {path}: {source}")]
    ControlSocket {
        path: String,
        source: std::io::Error,
    },
    #[error("the store could not be opened: {0}")]
    StoreTask(String),
}

/// What `start` was asked to run.
pub struct DaemonOptions {
    pub loaded: Loaded,
    /// Proof that this process owns the data dir.
    pub lock: InstanceLock,
    pub lifecycle: LifecycleOut,
    /// Runners beyond the built-in ones (tests and benchmarks add an in-process runner).
    pub extra_runners: Vec<Arc<dyn Runner>>,
    /// The executable path, captured at start (an upgrade may replace the file later).
    pub exe: String,
    /// Gateway mode: the onboarded credential replaces the bot token.
    pub gateway: Option<GatewayLogin>,
}

/// Facts printed when kimaki is ready.
#[derive(Debug, Clone)]
pub struct ReadyInfo {
    pub socket: String,
    pub adapters: Vec<AdapterSummary>,
    pub recovered_queued: usize,
    pub interrupted: usize,
    pub local_only: bool,
}

/// A running kimaki.
pub struct Daemon {
    queue: JobQueue,
    states: Health,
    stop: StopHandle,
    control: Arc<dyn ControlHandler>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    dispatch_stop: CancellationToken,
    control_stop: CancellationToken,
    intake_stop: CancellationToken,
    mesh_stop: CancellationToken,
    mesh: Option<MeshHandle>,
    discord: Option<DiscordHandle>,
    lifecycle: LifecycleOut,
    store: Store,
    ready: ReadyInfo,
    _lock: InstanceLock,
}

impl Daemon {
    /// Starts everything and returns once kimaki accepts work.
    pub async fn start(options: DaemonOptions) -> Result<Self, DaemonError> {
        let started = Instant::now();
        let DaemonOptions {
            loaded,
            lock,
            lifecycle,
            extra_runners,
            exe,
            gateway,
        } = options;
        let data_dir = loaded.data_dir.clone();
        let store_path = data_dir.store_dir();
        let store = tokio::task::spawn_blocking(move || Store::open(&store_path))
            .await
            .map_err(|e| DaemonError::StoreTask(e.to_string()))??;
        let queue = JobQueue::new(store.clone());
        let recovery = queue.recover().await.map_err(|e| match e {
            crate::core::QueueError::Store(s) => DaemonError::Store(s),
            other => DaemonError::StoreTask(other.to_string()),
        })?;

        let states = Health::default();
        let stop = StopHandle::new();
        let dispatch_stop = CancellationToken::new();
        let control_stop = CancellationToken::new();
        let mut tasks = Vec::new();

        tracing::debug!(settings = %effective_settings(&loaded), "Effective settings.");
        let workspaces = Workspaces::new(store.clone());
        // Shared by every intake that can start a session in a worktree (control socket, Discord).
        let worktrees: Arc<dyn Worktrees> = Arc::new(GitWorktrees::new());
        let scheduled = Tasks::new(store.clone());
        let intake_stop = CancellationToken::new();
        let runners = Arc::new(wiring::runners(&loaded, &extra_runners));
        tasks.push((
            "runner-probe",
            tokio::spawn(wiring::probe_runners(runners.clone(), states.clone())),
        ));
        let grace = Duration::from_secs(loaded.settings.u64(keys::SHUTDOWN_GRACE_SECS));
        let mut dispatcher = Dispatcher::new(
            queue.clone(),
            runners.clone(),
            DispatchOptions {
                drain_grace: grace,
                ..DispatchOptions::default()
            },
        );
        if let Some(transcriber) = wiring::voice(&loaded, &states) {
            dispatcher = dispatcher.with_transcriber(transcriber);
        }
        tasks.push((
            "dispatcher",
            tokio::spawn(dispatcher.run(dispatch_stop.clone())),
        ));
        let scheduler = Scheduler::new(scheduled.clone(), queue.clone(), Arc::new(SystemClock))
            .with_health(states.clone());
        tasks.push((
            "scheduler",
            tokio::spawn(scheduler.run(intake_stop.clone())),
        ));
        let mesh_stop = CancellationToken::new();
        let mesh_config = wiring::mesh(&loaded);
        let has_mesh = mesh_config.is_some();
        let mesh = mesh_config.map(|config| {
            mesh::spawn(
                config,
                MeshDeps {
                    queue: queue.clone(),
                    workspaces: workspaces.clone(),
                    runners: runners.clone(),
                    health: states.clone(),
                    store: store.clone(),
                },
                mesh_stop.clone(),
            )
        });

        let socket = data_dir.socket();
        let server = ControlServer::bind(&socket).map_err(|source| DaemonError::ControlSocket {
            path: socket.display().to_string(),
            source,
        })?;
        let handler = Arc::new(Handler {
            exe: exe.clone(),
            dump_dir: data_dir.root().to_owned(),
            workspaces: workspaces.clone(),
            worktrees: worktrees.clone(),
            tasks: scheduled.clone(),
            settings: loaded.settings.clone(),
            attachments_dir: data_dir.attachments_dir(),
            queue: queue.clone(),
            states: states.clone(),
            stop: stop.clone(),
            started_at: clock::now_ms(),
            data_dir: data_dir.root().display().to_string(),
        });
        states.set("control", "running", Some(socket.display().to_string()));
        let control: Arc<dyn ControlHandler> = handler;
        tasks.push((
            "control",
            tokio::spawn(server.run(control.clone(), control_stop.clone())),
        ));

        if loaded.settings.bool(keys::API_ENABLED) {
            let port = u16::try_from(loaded.settings.u64(keys::API_PORT)).unwrap_or(0);
            match HttpApi::bind(
                port,
                loaded.settings.secret(keys::API_TOKEN),
                control.clone(),
            )
            .await
            {
                Ok(api) => {
                    let addr = api.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    states.set("api", "listening", Some(format!("http://{addr}")));
                    tracing::info!(addr = %addr, "Local API listening.");
                    tasks.push(("api", tokio::spawn(api.run(control_stop.clone()))));
                }
                Err(e) => {
                    tracing::error!(error = %e, "Local API not started.");
                    states.set("api", "failed", Some(e.to_string()));
                }
            }
        }

        // Discord last: by now a message can be enqueued and its job's events rendered, and
        // `spawn` waits for READY so the `ready` event below can name the app and guilds.
        let discord_config = wiring::discord(&loaded, gateway.as_ref());
        let has_discord = discord_config.is_some();
        let discord = match discord_config {
            None => None,
            Some(config) => {
                let deps = DiscordDeps {
                    queue: queue.clone(),
                    workspaces: workspaces.clone(),
                    health: states.clone(),
                    store: store.clone(),
                    worktrees: worktrees.clone(),
                    tasks: scheduled.clone(),
                };
                match discord::spawn(config, deps, CancellationToken::new()).await {
                    Ok(handle) => Some(handle),
                    Err(e) => {
                        // The rest of kimaki (CLI, mesh, scheduler) keeps working without it.
                        tracing::error!(error = %e, "Discord is not running.");
                        states.set("discord", "failed", Some(e.to_string()));
                        lifecycle.emit(&Lifecycle::Error {
                            message: e.to_string(),
                            install_url: None,
                        });
                        None
                    }
                }
            }
        };
        let identity = discord.as_ref().and_then(DiscordHandle::identity);

        let local_only = !has_discord && !has_mesh;

        let adapters: Vec<AdapterSummary> = states
            .snapshot()
            .into_iter()
            .map(|a| AdapterSummary {
                name: a.name,
                state: a.state,
            })
            .collect();
        let ready = ReadyInfo {
            socket: socket.display().to_string(),
            adapters: adapters.clone(),
            recovered_queued: recovery.queued,
            interrupted: recovery.interrupted.len(),
            local_only,
        };
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            queued = recovery.queued,
            interrupted = recovery.interrupted.len(),
            "kimaki is ready."
        );
        if let Some(d) = discord.as_ref() {
            // A refusal after start-up (a revoked token or credential) is announced like one at
            // start: the rest of kimaki keeps running.
            let stopped = d.stopped_owned();
            tokio::spawn(async move {
                if let Err(e) = stopped.await {
                    lifecycle.emit(&Lifecycle::Error {
                        message: e.to_string(),
                        install_url: None,
                    });
                }
            });
        }
        lifecycle.emit(&Lifecycle::Ready {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION"),
            data_dir: data_dir.root().display().to_string(),
            socket: ready.socket.clone(),
            adapters,
            app_id: identity.as_ref().map(|i| i.application_id.to_string()),
            guild_ids: identity
                .map(|i| i.guild_ids.iter().map(u64::to_string).collect())
                .unwrap_or_default(),
        });
        Ok(Self {
            queue,
            states,
            stop,
            control,
            tasks,
            dispatch_stop,
            control_stop,
            intake_stop,
            mesh_stop,
            mesh,
            discord,
            lifecycle,
            store,
            ready,
            _lock: lock,
        })
    }

    pub fn ready_info(&self) -> &ReadyInfo {
        &self.ready
    }

    pub fn queue(&self) -> &JobQueue {
        &self.queue
    }

    pub fn states(&self) -> &Health {
        &self.states
    }

    /// A handle that begins the ordered shutdown from anywhere (signals, tests).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The control API in process (signals use it for state dumps).
    pub fn control(&self) -> Arc<dyn ControlHandler> {
        self.control.clone()
    }

    /// Waits for a stop request, shuts down in order, and says whether to restart.
    pub async fn run_until_stopped(self) -> StopRequest {
        self.stop.stopped().await;
        let request = self.stop.request_now();
        self.shutdown(&request.reason).await;
        request
    }

    async fn shutdown(self, reason: &str) {
        let reason = reason.to_owned();
        tracing::info!(reason = %reason, "Shutting down.");
        self.lifecycle.emit(&Lifecycle::Stopping {
            reason: reason.clone(),
        });
        // 1. Stop intake: nothing new is accepted; queued jobs stay on disk for the next start.
        self.queue.stop_intake();
        self.intake_stop.cancel();
        if let Some(discord) = &self.discord {
            discord.stop_intake();
        }
        // 2–3. Drain running jobs within the grace period, then cancel the rest.
        self.dispatch_stop.cancel();
        let mut tasks = self.tasks;
        if let Some(pos) = tasks.iter().position(|(n, _)| *n == "dispatcher") {
            let (_, handle) = tasks.remove(pos);
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "The dispatcher ended abnormally.");
            }
        }
        // 4. Flush: Discord renders what the drained jobs said (the rest at the next start), and
        // the mesh link sends the final events of drained jobs before it closes
        // (anything it cannot send now is in its durable outbox for the next start).
        if let Some(discord) = self.discord {
            discord.shutdown().await;
        }
        self.mesh_stop.cancel();
        if let Some(mesh) = self.mesh {
            if tokio::time::timeout(MESH_CLOSE_TIMEOUT, mesh.stopped())
                .await
                .is_err()
            {
                tracing::warn!("The mesh link did not close in time; its outbox keeps the rest.");
            }
        }
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "Final store flush failed.");
        }
        tokio::time::sleep(CONTROL_LINGER).await;
        self.control_stop.cancel();
        for (name, handle) in tasks {
            match tokio::time::timeout(Duration::from_secs(5), handle).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(task = name, error = %e, "Task ended abnormally."),
                Err(_) => tracing::error!(task = name, "Task did not stop in time."),
            }
        }
        tracing::info!("Stopped.");
    }
}

/// Non-default, non-secret settings with their sources, for the debug log.
fn effective_settings(loaded: &Loaded) -> String {
    loaded
        .settings
        .display_rows()
        .into_iter()
        .filter(|r| r.source != crate::config::Source::Default && !r.secret)
        .map(|r| format!("{}={} ({})", r.key, r.value, r.source))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the daemon stops, and whether it should start again in place afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    pub reason: String,
    pub restart: bool,
}

/// Requests shutdown (or a restart) from anywhere; the first request is the one that counts.
#[derive(Clone, Default)]
pub struct StopHandle {
    token: CancellationToken,
    request: Arc<std::sync::Mutex<Option<StopRequest>>>,
}

impl StopHandle {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stop(&self, reason: &str) {
        self.request(StopRequest {
            reason: reason.to_owned(),
            restart: false,
        });
    }

    /// Shut down in order, then start again with the same arguments (new config is read).
    pub fn restart(&self, reason: &str) {
        self.request(StopRequest {
            reason: reason.to_owned(),
            restart: true,
        });
    }

    fn request(&self, req: StopRequest) {
        let mut slot = self.request.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(req);
        }
        drop(slot);
        self.token.cancel();
    }

    pub async fn stopped(&self) {
        self.token.cancelled().await
    }

    fn request_now(&self) -> StopRequest {
        self.request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or(StopRequest {
                reason: "stop requested".to_owned(),
                restart: false,
            })
    }
}

struct Handler {
    tasks: Tasks,
    exe: String,
    dump_dir: std::path::PathBuf,
    queue: JobQueue,
    workspaces: Workspaces,
    worktrees: Arc<dyn Worktrees>,
    settings: crate::config::Settings,
    attachments_dir: std::path::PathBuf,
    states: Health,
    stop: StopHandle,
    started_at: i64,
    data_dir: String,
}

impl Handler {
    /// Writes `<data-dir>/state-<unix ms>.json` (mode 0600): status, lanes, queued jobs, pending
    /// interactions, workspaces. Prompts appear in it; secrets never do (none are in the store).
    async fn dump_state(&self) -> Result<String, String> {
        let status = self.status().await;
        let mut lanes = Vec::new();
        for (lane, _) in self.queue.depths().map_err(|e| e.to_string())? {
            let queued: Vec<serde_json::Value> = self
                .queue
                .queued_in_lane(&lane)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|r| {
                    serde_json::json!({
                        "job_id": r.job.id, "runner": r.job.runner, "source": r.job.source,
                        "created_at": r.job.created_at, "held": r.held,
                        "prompt_chars": r.job.prompt.chars().count(),
                    })
                })
                .collect();
            let record = self.queue.lane(&lane).map_err(|e| e.to_string())?;
            lanes.push(serde_json::json!({"lane": lane, "record": record, "queued": queued}));
        }
        let dump = serde_json::json!({
            "written_at": clock::rfc3339(clock::now_ms()),
            "status": status,
            "lanes": lanes,
            "active": self.queue.active_jobs(),
            "pending_interactions": self.queue.pending_interactions().map_err(|e| e.to_string())?,
            "workspaces": self.workspaces.list().map_err(|e| e.to_string())?,
        });
        let path = self
            .dump_dir
            .join(format!("state-{}.json", clock::now_ms()));
        let bytes = serde_json::to_vec_pretty(&dump).map_err(|e| e.to_string())?;
        crate::config::env_file::write_private_file(&path, &bytes).map_err(|e| e.to_string())?;
        tracing::info!(path = %path.display(), "State dump written.");
        Ok(path.display().to_string())
    }
}

#[async_trait]
impl ControlHandler for Handler {
    async fn status(&self) -> StatusReport {
        let active = self.queue.active_jobs();
        let mut lanes: Vec<LaneStatus> = self
            .queue
            .depths()
            .unwrap_or_default()
            .into_iter()
            .map(|(lane, queued)| LaneStatus {
                running_job: self.queue.active_job(&lane).map(|j| j.to_string()),
                lane: lane.to_string(),
                queued,
            })
            .collect();
        for (lane, job) in &active {
            if !lanes.iter().any(|l| l.lane == lane.as_str()) {
                lanes.push(LaneStatus {
                    lane: lane.to_string(),
                    queued: 0,
                    running_job: Some(job.to_string()),
                });
            }
        }
        lanes.sort_by(|a, b| a.lane.cmp(&b.lane));
        let now = clock::now_ms();
        let mut adapters = self.states.snapshot();
        if let Some(why) = self.queue.store().write_failure() {
            // Not an adapter, but what a user must see first when it happens.
            adapters.insert(
                0,
                crate::core::health::ComponentStatus {
                    name: "store".to_owned(),
                    state: "failed".to_owned(),
                    since: now,
                    detail: Some(format!(
                        "can no longer write ({why}); new work is refused. Free disk space, then restart kimaki"
                    )),
                },
            );
        }
        StatusReport {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            data_dir: self.data_dir.clone(),
            started_at: self.started_at,
            uptime_secs: u64::try_from((now - self.started_at) / 1000).unwrap_or(0),
            exe: self.exe.clone(),
            adapters,
            queue: QueueStatus {
                queued: self.queue.queued_total(),
                running: active.len(),
                lanes,
            },
            rss_bytes: super::process::rss_bytes(),
        }
    }

    async fn shutdown(&self, reason: String) {
        self.stop.stop(&reason);
    }

    async fn call(&self, call: Call) -> Result<serde_json::Value, CallError> {
        match call {
            Call::Restart { reason } => {
                self.stop
                    .restart(&reason.unwrap_or_else(|| "restart requested".to_owned()));
                return Ok(serde_json::json!({"restarting": true}));
            }
            Call::DumpState => {
                let path = self
                    .dump_state()
                    .await
                    .map_err(|e| CallError::new("internal", e))?;
                return Ok(serde_json::json!({"path": path}));
            }
            _ => {}
        }
        let local = super::intake::Local {
            queue: &self.queue,
            workspaces: &self.workspaces,
            settings: &self.settings,
            attachments_dir: &self.attachments_dir,
            worktrees: &*self.worktrees,
        };
        super::local_calls::handle(call, &local, &self.tasks).await
    }

    async fn follow(
        &self,
        job_id: String,
        after_seq: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<serde_json::Value>, CallError> {
        super::local_calls::follow(&self.queue, JobId::new(job_id), after_seq)
    }
}
