//! `kimaki start`: take the data-dir lock, start the daemon, wait for a stop request.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::output::{exit, Failure};
use super::GlobalArgs;
use crate::adapters::control::{
    Call, ControlClient, ControlError, ControlServer, InstanceLock, LockError,
};
use crate::adapters::discord::GatewayProxyError;
use crate::config::{keys, Loaded};
use crate::core::clock;
use crate::runtime::onboarding::{self, OnboardingError, OnboardingOptions};
use crate::runtime::onboarding_control::OnboardingControl;
use crate::runtime::{Daemon, DaemonError, DaemonOptions, ReadyInfo, StopRequest};
use crate::telemetry::{self, sse, LogOptions, Redactor};

/// Extra time, beyond the running instance's grace period, that a takeover waits for it to exit.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(20);

/// How long `start` waits for a CLI command that briefly holds the data dir (it has no socket).
const CLI_LOCK_WAIT: Duration = Duration::from_secs(10);

/// How often a takeover checks whether the old instance released the lock.
const TAKEOVER_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kimaki start                     foreground; logs to stderr and <data-dir>/kimaki.log
  kimaki start --takeover          replace the instance already running on this data dir
  kimaki start > events.txt        stdout not a terminal: lifecycle events as SSE `data:` lines
  kimaki start --gateway           no bot token: onboard through the gateway proxy at
                                   KIMAKI_GATEWAY_URL (install_url → authorized → ready)
  kimaki start --gateway --restart-onboarding --gateway-callback-url https://example.com/done

Signals: SIGTERM/SIGINT stop gracefully (running jobs get KIMAKI_SHUTDOWN_GRACE_SECS to finish;
queued jobs stay queued for the next start). A second SIGINT stops at once.")]
pub struct StartArgs {
    /// Ask the instance running on this data dir to shut down gracefully, then start.
    #[arg(long)]
    pub takeover: bool,

    /// Runner for new sessions for this run (same as --set KIMAKI_RUNNER=…).
    #[arg(long, value_name = "NAME")]
    pub runner: Option<String>,

    /// Model for new sessions for this run (same as --set KIMAKI_MODEL=…).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,

    /// Run the shared bot through the gateway proxy at KIMAKI_GATEWAY_URL instead of your own
    /// bot token; the first start prints an install URL and waits for the authorization.
    #[arg(long)]
    pub gateway: bool,

    /// Forget the saved gateway authorization (or pending install URL) and onboard again.
    #[arg(long, requires = "gateway")]
    pub restart_onboarding: bool,

    /// Where the proxy sends the person after they authorized (it appends `?guild_id=<id>`).
    #[arg(long, value_name = "URL", requires = "gateway")]
    pub gateway_callback_url: Option<String>,
}

pub fn run(global: &GlobalArgs, args: StartArgs, loaded: Loaded) -> Result<u8, Failure> {
    let mut flags = global.set.clone();
    if let Some(r) = &args.runner {
        flags.push((keys::RUNNER.to_owned(), r.clone()));
    }
    if let Some(m) = &args.model {
        flags.push((keys::MODEL.to_owned(), m.clone()));
    }
    let loaded = if flags.len() != global.set.len() {
        Loaded::load(loaded.data_dir, loaded.env, &flags)
            .map_err(|e| Failure::new(exit::CONFIG, e.to_string()))?
    } else {
        loaded
    };
    let lifecycle = sse::LifecycleOut::detect();
    let fail = |f: Failure| {
        lifecycle.emit(&sse::Lifecycle::Error {
            message: f.message.clone(),
            install_url: None,
        });
        f
    };

    check_config(&loaded).map_err(fail)?;
    let gateway_url = gateway_url(&args, &loaded).map_err(fail)?;
    loaded
        .data_dir
        .ensure()
        .map_err(|e| fail(Failure::new(exit::CONFIG, e.to_string())))?;

    let rt = super::runtime().map_err(fail)?;
    let lock = rt
        .block_on(take_lock(&loaded, args.takeover))
        .map_err(fail)?;

    // Only the lock holder may reset the log: a refused second start must not wipe it.
    let log_file = telemetry::reset_log_file(&loaded.data_dir.log_file()).map_err(|e| {
        fail(Failure::new(
            exit::DATA,
            format!("cannot write {}: {e}", loaded.data_dir.log_file().display()),
        ))
    })?;
    let redactor = Redactor::new(loaded.settings.secret_values());
    telemetry::init(
        &log_options(global, &loaded),
        Some(log_file),
        redactor.clone(),
    );
    if gateway_url.is_some() && loaded.settings.is_set(keys::BOT_TOKEN) {
        tracing::info!(
            "--gateway given: the shared bot runs through the proxy; KIMAKI_BOT_TOKEN is not used."
        );
    }
    for key in &loaded.settings.unknown_file_keys {
        tracing::warn!(key = %key, "Unknown key in config.env (ignored); run `kimaki doctor`.");
    }
    for key in &loaded.settings.unknown_env_keys {
        tracing::warn!(key = %key, "Unknown kimaki environment variable (ignored); run `kimaki doctor`.");
    }

    // Captured now: an upgrade may replace the file, and /proc/self/exe would then point at the
    // deleted original.
    let exe = std::env::current_exe().map_err(|e| {
        fail(Failure::new(
            exit::FAILURE,
            format!("cannot find kimaki's own executable: {e}"),
        ))
    })?;
    let request = rt.block_on(async {
        // Installed before `ready` is announced: a signal that arrives right after it must find
        // a handler, not the default action (which would kill the process).
        let mut signals = Signals::install().map_err(|e| {
            fail(Failure::new(
                exit::FAILURE,
                format!("cannot install signal handlers: {e}"),
            ))
        })?;
        let gateway = match gateway_url {
            None => None,
            Some(gateway_url) => {
                let waiting_on = Arc::new(std::sync::Mutex::new(None));
                let options = OnboardingOptions {
                    gateway_url,
                    state_file: loaded.data_dir.gateway_onboarding(),
                    callback_url: args.gateway_callback_url.clone(),
                    restart: args.restart_onboarding,
                    lifecycle,
                    redactor,
                    waiting_on: waiting_on.clone(),
                };
                // `kimaki status` and `kimaki stop` work while a person is being waited for.
                let stop = CancellationToken::new();
                let control = serve_while_onboarding(&loaded, &exe, waiting_on, stop.clone())
                    .map_err(fail)?;
                // Waiting for a person can take long: a stop request must still end it.
                let outcome = tokio::select! {
                    login = onboarding::onboard(options) => Ok(login),
                    reason = signals.stop_requested() => Err(reason.to_owned()),
                    _ = stop.cancelled() => Err("stop requested".to_owned()),
                };
                control.stop().await;
                match outcome {
                    Ok(login) => Some(login.map_err(|e| onboarding_failure(e, lifecycle))?),
                    Err(reason) => {
                        tracing::info!(reason, "Stopped while onboarding.");
                        lifecycle.emit(&sse::Lifecycle::Stopping {
                            reason: reason.clone(),
                        });
                        return Ok(StopRequest {
                            reason,
                            restart: false,
                        });
                    }
                }
            }
        };
        let daemon = Daemon::start(DaemonOptions {
            loaded,
            lock,
            lifecycle,
            extra_runners: Vec::new(),
            exe: exe.display().to_string(),
            gateway,
        })
        .await
        .map_err(|e| fail(daemon_failure(e)))?;
        print_ready(daemon.ready_info());
        signals.watch(&daemon);
        Ok::<_, Failure>(daemon.run_until_stopped().await)
    })?;
    // Let every task (and the log writer) finish before replacing or ending the process.
    rt.shutdown_timeout(Duration::from_secs(2));
    if request.restart {
        return Err(restart_in_place(&exe));
    }
    Ok(exit::OK)
}

/// Replaces this process with a fresh kimaki started with the same arguments; the pid stays the
/// same, so service managers keep tracking it. Only returns on failure.
fn restart_in_place(exe: &std::path::Path) -> Failure {
    use std::os::unix::process::CommandExt;
    let args = args_for_restart(std::env::args_os().skip(1));
    tracing::info!(exe = %exe.display(), "Restarting in place.");
    let err = std::process::Command::new(exe).args(&args).exec();
    Failure::new(
        exit::FAILURE,
        format!("cannot restart {}: {err}", exe.display()),
    )
}

/// The control socket of the onboarding wait; `stop` closes it (and removes the socket file)
/// before the daemon binds its own.
struct OnboardingSocket {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl OnboardingSocket {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

fn serve_while_onboarding(
    loaded: &Loaded,
    exe: &std::path::Path,
    waiting_on: Arc<std::sync::Mutex<Option<String>>>,
    stop: CancellationToken,
) -> Result<OnboardingSocket, Failure> {
    let socket = loaded.data_dir.socket();
    let server = ControlServer::bind(&socket).map_err(|e| {
        Failure::new(
            exit::FAILURE,
            format!("cannot open the control socket {}: {e}", socket.display()),
        )
    })?;
    let handler = Arc::new(OnboardingControl {
        data_dir: loaded.data_dir.root().display().to_string(),
        exe: exe.display().to_string(),
        started_at: clock::now_ms(),
        waiting_on,
        stop,
    });
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(handler, shutdown.clone()));
    Ok(OnboardingSocket { shutdown, task })
}

/// The same arguments minus `--restart-onboarding`: it asked for one fresh onboarding, and a
/// restart (SIGUSR2, `kimaki restart`, `kimaki upgrade`) must keep the authorization it got.
fn args_for_restart(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    args.filter(|a| a != "--restart-onboarding").collect()
}

/// `KIMAKI_GATEWAY_URL` when `--gateway` is given; a missing proxy URL or a bad callback URL is
/// a configuration problem, found before the data dir is touched.
fn gateway_url(args: &StartArgs, loaded: &Loaded) -> Result<Option<String>, Failure> {
    if !args.gateway {
        return Ok(None);
    }
    if let Some(callback) = &args.gateway_callback_url {
        let ok = reqwest::Url::parse(callback)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        if !ok {
            return Err(Failure::new(
                exit::USAGE,
                format!("--gateway-callback-url `{callback}` is not an http(s) URL"),
            ));
        }
    }
    let url = loaded.settings.get(keys::GATEWAY_URL).trim();
    if url.is_empty() {
        return Err(Failure::new(
            exit::CONFIG,
            format!(
                "--gateway needs the gateway proxy's URL in {}",
                keys::GATEWAY_URL
            ),
        )
        .hint(format!(
            "set {}=https://… in config.env or the environment (see docs/gateway-mode.md)",
            keys::GATEWAY_URL
        )));
    }
    Ok(Some(url.to_owned()))
}

/// Emits the `error` event (with the install URL it concerns) and picks the exit code.
fn onboarding_failure(e: OnboardingError, lifecycle: sse::LifecycleOut) -> Failure {
    lifecycle.emit(&sse::Lifecycle::Error {
        message: e.to_string(),
        install_url: e.install_url().map(str::to_owned),
    });
    let code = match &e {
        OnboardingError::Proxy(GatewayProxyError::BadUrl(_)) => exit::CONFIG,
        OnboardingError::Proxy(GatewayProxyError::File { .. }) => exit::DATA,
        OnboardingError::Proxy(
            GatewayProxyError::Unreachable { .. }
            | GatewayProxyError::Refused { .. }
            | GatewayProxyError::Decode { .. },
        )
        | OnboardingError::PollGaveUp { .. } => exit::UNAVAILABLE,
        // A restart opens a new install URL, so a service manager may try again.
        OnboardingError::Failed { .. } | OnboardingError::Expired { .. } => exit::FAILURE,
    };
    let hint = match code {
        exit::UNAVAILABLE => format!(
            "check that the gateway proxy at {} is up, then start again",
            keys::GATEWAY_URL
        ),
        exit::FAILURE => "start again to get a new install URL".to_owned(),
        _ => "fix the problem above, then start again".to_owned(),
    };
    Failure::new(code, e.to_string()).hint(hint)
}

fn check_config(loaded: &Loaded) -> Result<(), Failure> {
    let s = &loaded.settings;
    if !s.has_errors() {
        return Ok(());
    }
    let mut problems: Vec<String> = s
        .invalid
        .iter()
        .map(|i| format!("{} (from {}) {}", i.key, i.source, i.message))
        .collect();
    problems.extend(s.secret_errors.iter().cloned());
    Err(Failure::new(
        exit::CONFIG,
        format!("invalid configuration:\n  {}", problems.join("\n  ")),
    )
    .hint("fix the values above (`kimaki doctor` lists every problem), then start again"))
}

async fn take_lock(loaded: &Loaded, takeover: bool) -> Result<InstanceLock, Failure> {
    let path = loaded.data_dir.lock_file();
    match InstanceLock::acquire(&path) {
        Ok(l) => return Ok(l),
        Err(LockError::Held { pid, .. }) if takeover => {
            ask_to_stop(loaded, pid).await?;
        }
        Err(e @ LockError::Held { .. }) => {
            // A daemon answers on its socket; a short CLI command (send, project add) holding
            // the store for a moment does not: wait for that one instead of refusing.
            let client = ControlClient::new(&loaded.data_dir.socket(), Duration::from_secs(2));
            if client.call::<serde_json::Value>(Call::Status).await.is_ok() {
                return Err(Failure::new(exit::UNAVAILABLE, e.to_string()));
            }
            let deadline = Instant::now() + CLI_LOCK_WAIT;
            loop {
                tokio::time::sleep(TAKEOVER_POLL).await;
                match InstanceLock::acquire(&path) {
                    Ok(l) => return Ok(l),
                    Err(LockError::Held { .. }) if Instant::now() < deadline => {}
                    Err(e @ LockError::Held { .. }) => {
                        return Err(Failure::new(exit::UNAVAILABLE, e.to_string()))
                    }
                    Err(e) => return Err(Failure::new(exit::DATA, e.to_string())),
                }
            }
        }
        Err(e) => return Err(Failure::new(exit::DATA, e.to_string())),
    }
    let grace = Duration::from_secs(loaded.settings.u64(keys::SHUTDOWN_GRACE_SECS));
    let deadline = Instant::now() + grace + TAKEOVER_MARGIN;
    loop {
        match InstanceLock::acquire(&path) {
            Ok(l) => return Ok(l),
            Err(LockError::Held { pid, .. }) if Instant::now() < deadline => {
                let _ = pid;
                tokio::time::sleep(TAKEOVER_POLL).await;
            }
            Err(LockError::Held { pid, .. }) => {
                return Err(Failure::new(
                    exit::UNAVAILABLE,
                    format!(
                        "the running kimaki{} did not stop within {}s",
                        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                        (grace + TAKEOVER_MARGIN).as_secs()
                    ),
                ))
            }
            Err(e) => return Err(Failure::new(exit::DATA, e.to_string())),
        }
    }
}

async fn ask_to_stop(loaded: &Loaded, pid: Option<u32>) -> Result<(), Failure> {
    let client = ControlClient::new(&loaded.data_dir.socket(), Duration::from_secs(5));
    let reason = format!(
        "taken over by a new `kimaki start` (pid {})",
        std::process::id()
    );
    match client
        .call::<serde_json::Value>(Call::Shutdown {
            reason: Some(reason),
        })
        .await
    {
        Ok(_) => {
            eprintln!(
                "Asked the running kimaki{} to stop; waiting for it to finish…",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            );
            Ok(())
        }
        Err(ControlError::NotRunning(_)) => Ok(()),
        Err(e) => Err(Failure::new(
            exit::UNAVAILABLE,
            format!("the running kimaki does not answer on its control socket: {e}"),
        )
        .hint(match pid {
            Some(p) => format!("stop it with `kill {p}` and start again"),
            None => "stop the other kimaki process and start again".to_owned(),
        })),
    }
}

fn daemon_failure(e: DaemonError) -> Failure {
    match e {
        DaemonError::Store(s) => Failure::new(exit::DATA, s.to_string()),
        other => Failure::new(exit::FAILURE, other.to_string()),
    }
}

fn log_options(global: &GlobalArgs, loaded: &Loaded) -> LogOptions {
    LogOptions {
        rust_log: loaded.settings.rust_log.clone(),
        level: loaded.settings.get(keys::LOG_LEVEL).to_owned(),
        verbosity: global.verbose as i8 - global.quiet as i8,
        color: !loaded.env.no_color(),
    }
}

/// A short human summary on stderr when a person is watching.
fn print_ready(info: &ReadyInfo) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    eprintln!("kimaki is running. Control socket: {}", info.socket);
    if info.recovered_queued > 0 {
        eprintln!(
            "  {} queued job(s) from before will run now.",
            info.recovered_queued
        );
    }
    if info.interrupted > 0 {
        eprintln!(
            "  {} job(s) were running when kimaki last stopped; they are marked interrupted.",
            info.interrupted
        );
    }
    if info.local_only {
        eprintln!("  No Discord bot or mesh is configured: kimaki runs as a local agent.");
        eprintln!("  Add Discord:  kimaki init --discord-token <TOKEN>");
        eprintln!("  Add a mesh:   kimaki init --mesh-url <URL> --mesh-token <TOKEN>");
    }
    eprintln!("  Stop with Ctrl-C (or SIGTERM).");
}

/// SIGTERM/SIGINT request a graceful stop (a second SIGINT exits at once); SIGUSR2 restarts in
/// place; SIGUSR1 writes a state dump.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Waits for SIGTERM or SIGINT, before a daemon exists to stop.
    async fn stop_requested(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "received SIGTERM",
            _ = self.int.recv() => "received SIGINT",
        }
    }

    fn watch(self, daemon: &Daemon) {
        let Signals {
            mut term,
            mut int,
            mut usr1,
            mut usr2,
        } = self;
        let stop = daemon.stop_handle();
        let control = daemon.control();
        let restart = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = usr1.recv() => {
                        if let Err(e) = control.call(crate::adapters::control::Call::DumpState).await {
                            tracing::error!(error = %e.message, "State dump failed.");
                        }
                    }
                    Some(()) = usr2.recv() => restart.restart("received SIGUSR2"),
                    _ = restart.stopped() => return,
                }
            }
        });
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => stop.stop("received SIGTERM"),
                _ = int.recv() => stop.stop("received SIGINT"),
                _ = stop.stopped() => {}
            }
            if int.recv().await.is_some() {
                eprintln!("Second interrupt: exiting now.");
                std::process::exit(130);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_keeps_every_flag_but_restart_onboarding() {
        let args = [
            "--data-dir",
            "/d",
            "start",
            "--gateway",
            "--restart-onboarding",
        ]
        .map(OsString::from)
        .into_iter();
        assert_eq!(
            args_for_restart(args),
            ["--data-dir", "/d", "start", "--gateway"].map(OsString::from)
        );
    }
}
