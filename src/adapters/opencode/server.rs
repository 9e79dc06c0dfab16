//! The `opencode serve` process kimaki shares between all projects: started on first use, probed
//! until healthy before any request, watched while it runs, restarted with backoff after a
//! crash, and stopped (process group: SIGTERM, then SIGKILL) on shutdown. One server answers for
//! every project directory through `?directory=`; see docs/opencode.md for why and the numbers.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::Api;
use super::config::OpencodeConfig;
use super::error::{OpencodeError, Result};
use super::stream::{run_event_stream, EventHub};
use crate::config::programs;

/// Pause between health probes while the server boots.
const HEALTH_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// SIGTERM to SIGKILL on shutdown; OpenCode exits in well under a second.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Server output lines kept for error messages.
const OUTPUT_TAIL_LINES: usize = 20;
/// First delay before restarting after a crash; doubled per crash in a row…
const RESTART_BACKOFF: Duration = Duration::from_secs(1);
/// …up to this.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);
/// A server that ran this long before it died is not crash-looping: restart it at once.
const STABLE_UPTIME: Duration = Duration::from_secs(60);

/// Starts and owns the shared server.
pub(super) struct ServerManager {
    config: Arc<OpencodeConfig>,
    slot: tokio::sync::Mutex<Slot>,
    closed: AtomicBool,
}

#[derive(Default)]
struct Slot {
    server: Option<Arc<Server>>,
    /// Crashes (or failed starts) in a row.
    crashes: u32,
    last_failure: Option<Instant>,
}

impl ServerManager {
    pub(super) fn new(config: Arc<OpencodeConfig>) -> Self {
        Self {
            config,
            slot: tokio::sync::Mutex::new(Slot::default()),
            closed: AtomicBool::new(false),
        }
    }

    /// The running server, starting (or restarting) it if needed. The start-up runs in its own
    /// task, so a job cancelled while waiting does not kill a server other jobs are waiting for.
    pub(super) async fn ensure(self: &Arc<Self>) -> Result<Arc<Server>> {
        let me = self.clone();
        tokio::spawn(async move { me.ensure_running().await })
            .await
            .map_err(|e| OpencodeError::Task(e.to_string()))?
    }

    /// The current server without starting one (for tests and diagnostics).
    pub(super) async fn current(&self) -> Option<Arc<Server>> {
        self.slot.lock().await.server.clone()
    }

    async fn ensure_running(&self) -> Result<Arc<Server>> {
        let mut slot = self.slot.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            return Err(OpencodeError::ShuttingDown);
        }
        if let Some(server) = &slot.server {
            if !server.has_exited() {
                return Ok(server.clone());
            }
            let uptime = server.started.elapsed();
            tracing::warn!(pid = ?server.pid, reason = %server.exit_reason(), uptime_secs = uptime.as_secs(), "The OpenCode server is gone; starting a new one.");
            slot.crashes = if uptime >= STABLE_UPTIME {
                0
            } else {
                slot.crashes + 1
            };
            slot.last_failure = Some(Instant::now());
            slot.server = None;
        }
        if let (Some(at), n) = (slot.last_failure, slot.crashes) {
            if n > 0 {
                let backoff = RESTART_BACKOFF
                    .saturating_mul(2u32.saturating_pow(n - 1))
                    .min(MAX_RESTART_BACKOFF);
                tokio::time::sleep_until(at + backoff).await;
            }
        }
        match Server::start(&self.config).await {
            Ok(server) => {
                let server = Arc::new(server);
                slot.server = Some(server.clone());
                Ok(server)
            }
            Err(e) => {
                // A server that dies or hangs while starting is retried with backoff; a missing
                // program costs nothing to try again and should be reported at once.
                if matches!(
                    e,
                    OpencodeError::BootExited { .. } | OpencodeError::BootTimeout { .. }
                ) {
                    slot.crashes += 1;
                    slot.last_failure = Some(Instant::now());
                }
                Err(e)
            }
        }
    }

    /// Stops the server; no new one starts afterwards.
    pub(super) async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let server = self.slot.lock().await.server.take();
        if let Some(server) = server {
            server.stop().await;
        }
    }
}

/// One running `opencode serve`.
pub(super) struct Server {
    pub(super) api: Api,
    pub(super) hub: EventHub,
    pub(super) version: String,
    pub(super) pid: Option<u32>,
    life: Arc<Life>,
    started: Instant,
    /// Tells the watcher (and the event stream) to stop the server.
    stop: CancellationToken,
    watcher: Mutex<Option<JoinHandle<()>>>,
    context_limits: Mutex<HashMap<(String, String, String), Option<u64>>>,
}

/// Whether the process is still there, and why not.
struct Life {
    exited: CancellationToken,
    reason: Mutex<Option<String>>,
    pgid: Option<Pid>,
}

impl Life {
    fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "it exited".to_owned())
    }

    fn set_reason(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(reason);
        }
    }

    /// Gives up on a live server: records why and kills it; the watcher sees it exit.
    fn fail(&self, reason: String) {
        tracing::error!(reason = %reason, "The OpenCode server is unusable; killing it.");
        self.set_reason(reason);
        signal_group(self.pgid, Signal::SIGKILL);
    }
}

impl Server {
    async fn start(config: &OpencodeConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| OpencodeError::StateDir {
            path: config.state_dir.display().to_string(),
            source,
        })?;
        let port = free_port()?;
        let mut child =
            server_command(config, port)
                .spawn()
                .map_err(|source| OpencodeError::Missing {
                    program: config.program.display().to_string(),
                    install: OpencodeConfig::install_hint(),
                    source,
                })?;
        let pid = child.id();
        let pgid = pid.and_then(|p| i32::try_from(p).ok()).map(Pid::from_raw);
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(OUTPUT_TAIL_LINES)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(drain_output(out, tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(drain_output(err, tail.clone()));
        }
        let base = format!("http://127.0.0.1:{port}");
        let api = Api::new(base.clone(), config.request_timeout)?;
        let deadline = Instant::now() + config.boot_timeout;
        let started = Instant::now();
        let version = match wait_healthy(&mut child, &api, config, deadline, &tail).await {
            Ok(v) => v,
            Err(e) => {
                signal_group(pgid, Signal::SIGKILL);
                return Err(e);
            }
        };
        let hub = EventHub::new();
        let stop = CancellationToken::new();
        let life = Arc::new(Life {
            exited: CancellationToken::new(),
            reason: Mutex::new(None),
            pgid,
        });
        let stream_life = life.clone();
        tokio::spawn(run_event_stream(
            hub.clone(),
            format!("{base}/global/event"),
            stop.clone(),
            move |reason| stream_life.fail(reason),
        ));
        let ready = tokio::select! {
            () = hub.connected() => Ok(()),
            () = tokio::time::sleep_until(deadline) => Err(OpencodeError::BootTimeout {
                timeout: config.boot_timeout,
                tail: " (its event stream never opened)".to_owned(),
            }),
            status = child.wait() => Err(OpencodeError::BootExited {
                status: describe_exit(status.ok()),
                tail: tail_text(&tail),
            }),
        };
        if let Err(e) = ready {
            stop.cancel();
            signal_group(pgid, Signal::SIGKILL);
            return Err(e);
        }
        let watcher = tokio::spawn(watch_process(child, life.clone(), stop.clone(), tail));
        tracing::info!(pid = ?pid, port, version = %version, boot_ms = started.elapsed().as_millis() as u64, "OpenCode server ready.");
        Ok(Self {
            api,
            hub,
            version,
            pid,
            life,
            started,
            stop,
            watcher: Mutex::new(Some(watcher)),
            context_limits: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn has_exited(&self) -> bool {
        self.life.exited.is_cancelled()
    }

    /// Resolves when the process is gone.
    pub(super) async fn exited(&self) {
        self.life.exited.cancelled().await
    }

    pub(super) fn exit_reason(&self) -> String {
        self.life.reason()
    }

    /// The context window of a model for a project, looked up once per server.
    pub(super) async fn context_limit(
        &self,
        dir: &str,
        provider: &str,
        model: &str,
    ) -> Option<u64> {
        let key = (dir.to_owned(), provider.to_owned(), model.to_owned());
        if let Some(hit) = self.limits().get(&key) {
            return *hit;
        }
        let limit = match self.api.context_limit(dir, provider, model).await {
            Ok(limit) => limit,
            Err(e) => {
                tracing::debug!(error = %e, "Cannot read the model's context window.");
                None
            }
        };
        self.limits().insert(key, limit);
        limit
    }

    fn limits(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), Option<u64>>> {
        self.context_limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// SIGTERM to the process group, SIGKILL after a grace period; waits for the exit.
    pub(super) async fn stop(&self) {
        self.stop.cancel();
        let watcher = self
            .watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(watcher) = watcher {
            let _ = tokio::time::timeout(STOP_GRACE + Duration::from_secs(1), watcher).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The last user is gone without `stop()` (kimaki dropped the runner): do not leave the
        // server behind. The watcher, if its runtime still runs, escalates to SIGKILL.
        if !self.has_exited() {
            self.stop.cancel();
            signal_group(self.life.pgid, Signal::SIGTERM);
        }
    }
}

/// Probes `/global/health` (short per-request deadline, retried) until healthy or the deadline;
/// returns the version it reports.
async fn wait_healthy(
    child: &mut Child,
    api: &Api,
    config: &OpencodeConfig,
    deadline: Instant,
    tail: &Arc<Mutex<VecDeque<String>>>,
) -> Result<String> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(OpencodeError::BootExited {
                status: describe_exit(Some(status)),
                tail: tail_text(tail),
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(OpencodeError::BootTimeout {
                timeout: config.boot_timeout,
                tail: tail_text(tail),
            });
        }
        let probe = config.health_probe_timeout.min(deadline - now);
        if let Ok(version) = api.health(probe).await {
            return Ok(version);
        }
        tokio::time::sleep(HEALTH_RETRY_PAUSE).await;
    }
}

/// Waits for the process to exit (crash) or for `stop` (shutdown), then cleans up its group.
async fn watch_process(
    mut child: Child,
    life: Arc<Life>,
    stop: CancellationToken,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    tokio::select! {
        status = child.wait() => {
            let status = describe_exit(status.ok());
            life.set_reason(format!("it exited unexpectedly ({status})"));
            tracing::error!(pid = ?child.id(), status = %status, output = %tail_text(&tail), "The OpenCode server exited.");
            // Tool processes it started are in its group.
            signal_group(life.pgid, Signal::SIGKILL);
        }
        () = stop.cancelled() => {
            life.set_reason("kimaki stopped it".to_owned());
            signal_group(life.pgid, Signal::SIGTERM);
            if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                tracing::warn!("The OpenCode server ignored SIGTERM; killing it.");
                signal_group(life.pgid, Signal::SIGKILL);
                let _ = child.wait().await;
            }
        }
    }
    stop.cancel();
    life.exited.cancel();
}

/// `opencode serve` on `port`, in its own process group, with the configured environment.
fn server_command(config: &OpencodeConfig, port: u16) -> Command {
    let mut cmd = Command::new(&config.program);
    cmd.args(["serve", "--hostname", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .current_dir(&config.state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own group, so stopping it also stops the shells and tools it started.
        .process_group(0);
    apply_env(&mut cmd, config);
    cmd
}

/// The environment rules every OpenCode process gets.
fn apply_env(cmd: &mut Command, config: &OpencodeConfig) {
    if config.inherit_env {
        for name in &config.remove_env {
            cmd.env_remove(name);
        }
    } else {
        cmd.env_clear();
    }
    cmd.envs(config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
}

/// `opencode --version`, run like the server (same environment), within a deadline.
pub(super) async fn program_version(
    config: &OpencodeConfig,
) -> std::result::Result<String, String> {
    let mut cmd = Command::new(&config.program);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    apply_env(&mut cmd, config);
    let program = config.program.display();
    let out = tokio::time::timeout(programs::VERSION_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            format!(
                "`{program} --version` did not answer within {:?}",
                programs::VERSION_TIMEOUT
            )
        })?
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} --version` failed ({})",
            describe_exit(Some(out.status))
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(programs::parse_version(&text).unwrap_or_else(|| text.trim().to_owned()))
}

/// A port nobody listens on right now (OpenCode treats `--port 0` as its default, 4096).
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|a| a.port())
        .map_err(OpencodeError::Port)
}

async fn drain_output(out: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "kimaki::opencode::server", "{line}");
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == OUTPUT_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
    let lines: Vec<&str> = tail
        .iter()
        .map(String::as_str)
        .filter(|l| !l.trim().is_empty() && !l.contains("OPENCODE_SERVER_PASSWORD"))
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last output: {}", lines.join(" | "))
    }
}

fn describe_exit(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => s.to_string(),
        },
        None => "exit status unknown".to_owned(),
    }
}

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH (already gone) is the expected outcome after an exit.
        let _ = killpg(pgid, signal);
    }
}

/// Whether `program` can be executed (for `probe`).
pub(super) fn is_runnable(program: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(program).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
