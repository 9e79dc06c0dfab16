//! `CodexRunner`: one `codex app-server` process per job, driven over JSON-RPC on stdio.
//! initialize → `thread/start` (or `thread/resume` of the lane's thread) → `turn/start` → events
//! until `turn/completed`; approvals are answered from the job's policy or by a person; cancel is
//! `turn/interrupt`, then the process group is stopped.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::config::{spec, CodexConfig, RUNNER_ID};
use super::map::{self, Incoming, Mapper, ServerAsk, TurnEnd};
use crate::adapters::process::{self, JsonlProcess, Line, ProcessSpec};
use crate::adapters::runner_state::{AlwaysAllowed, VersionCache};
use crate::config::programs::{find_program, program_version};
use crate::core::events::{FailureKind, PermissionDecision};
use crate::core::{
    CancelSignal, Control, EventEmitter, EventKind, PermissionPolicy, RequestId, RunContext,
    RunRequest, RunSummary, Runner, RunnerError, RunnerId, RunnerInfo,
};

/// kimaki's version, sent as the client version in `initialize`.
const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Failure messages carry at most this much of the runner's stderr.
const STDERR_IN_MESSAGE: usize = 2000;

/// Runs jobs with the Codex CLI.
pub struct CodexRunner {
    config: CodexConfig,
    version: VersionCache,
    /// Tools a person allowed "always", per Codex thread. Outlives the per-job processes.
    always: AlwaysAllowed,
}

impl CodexRunner {
    pub fn new(config: CodexConfig) -> Self {
        Self {
            config,
            version: VersionCache::default(),
            always: AlwaysAllowed::default(),
        }
    }

    fn resolve(&self) -> Option<PathBuf> {
        find_program(&self.config.program, self.config.search_path.as_deref())
    }

    fn unavailable_message(&self) -> String {
        let install = spec().map_or("npm install -g @openai/codex", |s| s.install);
        format!(
            "the Codex CLI (`{}`) was not found; install it with `{install}` or set CODEX_BIN to its path",
            self.config.program
        )
    }

    fn spawn_args(&self, request: &RunRequest) -> Vec<String> {
        let mut args = vec!["app-server".to_owned()];
        // Silences github.com / chatgpt.com (plugins) and ab.chatgpt.com (analytics); a
        // connection failure ends after the provider's retries instead of retrying forever.
        for flag in [
            "-c",
            "analytics.enabled=false",
            "--disable",
            "plugins",
            "--disable",
            "unbounded_connection_retries",
        ] {
            args.push(flag.to_owned());
        }
        if let Some(agent) = request.agent.as_deref().filter(|a| !a.is_empty()) {
            // Codex has no agents; a kimaki agent selects a Codex config profile of that name.
            args.push("-c".to_owned());
            args.push(format!("profile={}", Value::from(agent)));
        }
        for c in &self.config.config_overrides {
            args.push("-c".to_owned());
            args.push(c.clone());
        }
        args
    }
}

#[async_trait]
impl Runner for CodexRunner {
    fn id(&self) -> RunnerId {
        RunnerId::new(RUNNER_ID)
    }

    async fn probe(&self) -> RunnerInfo {
        let Some(program) = self.resolve() else {
            return RunnerInfo {
                id: self.id(),
                available: false,
                version: None,
                reason: Some(self.unavailable_message()),
                program: None,
            };
        };
        let shown = Some(program.display().to_string());
        match program_version(&program).await {
            Ok(version) => {
                if let Some(s) = spec().filter(|s| s.tested_version != version) {
                    tracing::warn!(version = %version, tested = s.tested_version, "Codex CLI version differs from the tested one.");
                }
                RunnerInfo {
                    id: self.id(),
                    available: true,
                    version: Some(version),
                    reason: None,
                    program: shown,
                }
            }
            Err(e) => RunnerInfo {
                id: self.id(),
                available: false,
                version: None,
                reason: Some(e),
                program: shown,
            },
        }
    }

    async fn run(&self, request: RunRequest, ctx: RunContext) -> Result<RunSummary, RunnerError> {
        let Some(program) = self.resolve() else {
            return Err(RunnerError::failed(
                FailureKind::RunnerUnavailable,
                self.unavailable_message(),
            ));
        };
        if !request.cwd.is_dir() {
            return Err(RunnerError::failed(
                FailureKind::Workspace,
                format!("the workspace {} does not exist", request.cwd.display()),
            ));
        }
        let version = self.version.of(&program).await;
        let log_dir = self.config.log_dir();
        process::prune_logs(log_dir.clone()).await;
        let spec = ProcessSpec {
            program,
            args: self.spawn_args(&request),
            cwd: request.cwd.clone(),
            env: self.config.env.clone(),
            stderr_log: Some(log_dir.join(format!("{}.log", request.job_id))),
        };
        let proc = JsonlProcess::spawn(&spec).map_err(|e| {
            RunnerError::failed(
                FailureKind::RunnerUnavailable,
                format!("{e}; {}", self.unavailable_message()),
            )
        })?;
        let RunContext {
            events,
            cancel,
            controls,
        } = ctx;
        let model = request
            .model
            .clone()
            .or_else(|| self.config.default_model.clone());
        let mut session = Session {
            runner: self,
            proc,
            events,
            cancel,
            controls,
            controls_open: true,
            job_id: request.job_id.to_string(),
            policy: request.permission_policy,
            next_id: 0,
            thread_id: None,
            turn_id: None,
            mapper: Mapper::new(model.clone()),
            pending: HashMap::new(),
            stopping: None,
            secrets: self.config.all_secrets(),
        };
        let result = session.drive(&request, model.as_deref(), version).await;
        session.finish(result).await
    }
}

/// Why a job ended before its turn did.
#[derive(Debug)]
enum Halt {
    Cancelled,
    NoProgress,
    /// stdout closed: the process exited (or closed it) without finishing the turn.
    Exited,
    BootTimeout(&'static str),
    Io(process::ProcessError),
    Protocol(String),
}

/// Why kimaki is stopping a turn that is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    Cancel,
    NoProgress,
}

/// A request waiting for a person.
struct Pending {
    rpc_id: Value,
    method: String,
    params: Value,
    kind: PendingKind,
}

enum PendingKind {
    Permission { tool: String },
    Question { ids: Vec<String> },
}

/// One job's conversation with one `codex app-server`.
struct Session<'a> {
    runner: &'a CodexRunner,
    proc: JsonlProcess,
    events: EventEmitter,
    cancel: CancelSignal,
    controls: mpsc::Receiver<Control>,
    controls_open: bool,
    job_id: String,
    policy: PermissionPolicy,
    next_id: i64,
    thread_id: Option<String>,
    turn_id: Option<String>,
    mapper: Mapper,
    pending: HashMap<RequestId, Pending>,
    stopping: Option<Stopping>,
    secrets: Vec<String>,
}

impl Session<'_> {
    async fn drive(
        &mut self,
        request: &RunRequest,
        model: Option<&str>,
        version: Option<String>,
    ) -> Result<TurnEnd, Halt> {
        let boot_deadline = Instant::now() + self.runner.config.deadlines.boot;
        let init = self
            .call(
                "initialize",
                map::initialize_params(CLIENT_VERSION),
                boot_deadline,
            )
            .await?;
        if let Err(e) = init {
            return Err(Halt::Protocol(format!(
                "Codex refused to initialize: {}",
                e.message
            )));
        }
        self.send(&map::notification("initialized")).await?;

        let cwd = request.cwd.display().to_string();
        let sandbox = self.runner.config.sandbox.as_wire();
        let mut thread = None;
        if let Some(previous) = request.session.as_deref() {
            let params = map::thread_params(&cwd, model, sandbox, Some(previous));
            match self.call("thread/resume", params, boot_deadline).await? {
                Ok(r) => thread = thread_id_of(&r),
                Err(e) => {
                    tracing::warn!(thread = previous, error = %e.message, "Cannot resume the Codex thread; starting a new one.");
                    self.events.emit(EventKind::Status {
                        message: format!(
                            "The previous Codex session could not be resumed ({}); this job starts a new one.",
                            e.message
                        ),
                        retry: None,
                    });
                }
            }
        }
        let thread = match thread {
            Some(t) => t,
            None => {
                let params = map::thread_params(&cwd, model, sandbox, None);
                match self.call("thread/start", params, boot_deadline).await? {
                    Ok(r) => thread_id_of(&r).ok_or_else(|| {
                        Halt::Protocol("Codex started a thread without an id".to_owned())
                    })?,
                    Err(e) => {
                        return Err(Halt::Protocol(format!(
                            "Codex could not start a thread: {}",
                            e.message
                        )))
                    }
                }
            }
        };
        self.thread_id = Some(thread.clone());
        self.events.emit(EventKind::Started {
            runner: RUNNER_ID.to_owned(),
            runner_version: version,
            runner_session_id: Some(thread.clone()),
            pid: self.proc.pid(),
        });

        let turn_request = self.next_request_id();
        let params = map::turn_start_params(&thread, &request.prompt, &request.attachments);
        self.send(&map::request(turn_request, "turn/start", params))
            .await?;
        self.turn_loop(turn_request).await
    }

    /// Reads events until the turn ends, answering approvals and controls on the way.
    async fn turn_loop(&mut self, turn_request: i64) -> Result<TurnEnd, Halt> {
        let deadlines = self.runner.config.deadlines;
        let mut idle_deadline = Instant::now() + deadlines.no_progress;
        let mut stop_deadline = Instant::now();
        // Bounded by the process: every iteration consumes a line, a control or a deadline, and
        // stdout closing ends the loop.
        loop {
            let waiting_for_person = !self.pending.is_empty();
            tokio::select! {
                biased;
                _ = self.cancel.cancelled(), if self.stopping.is_none() => {
                    if !self.begin_stop(Stopping::Cancel).await {
                        return Err(Halt::Cancelled);
                    }
                    stop_deadline = Instant::now() + deadlines.interrupt_grace;
                }
                _ = sleep_until(stop_deadline), if self.stopping.is_some() => {
                    return Err(match self.stopping {
                        Some(Stopping::NoProgress) => Halt::NoProgress,
                        _ => Halt::Cancelled,
                    });
                }
                _ = sleep_until(idle_deadline), if self.stopping.is_none() && !waiting_for_person => {
                    if !self.begin_stop(Stopping::NoProgress).await {
                        return Err(Halt::NoProgress);
                    }
                    stop_deadline = Instant::now() + deadlines.interrupt_grace;
                }
                control = self.controls.recv(), if self.controls_open => {
                    match control {
                        Some(c) => self.answer(c).await?,
                        None => self.controls_open = false,
                    }
                    if self.pending.is_empty() {
                        idle_deadline = Instant::now() + deadlines.no_progress;
                    }
                }
                line = self.proc.next_line() => {
                    let Some(line) = line else {
                        return Err(Halt::Exited);
                    };
                    idle_deadline = Instant::now() + deadlines.no_progress;
                    if let Some(end) = self.on_line(line, Some(turn_request)).await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Starts stopping the running turn; `false` when there is no turn to interrupt yet.
    async fn begin_stop(&mut self, why: Stopping) -> bool {
        self.stopping = Some(why);
        self.abandon_pending().await;
        let (Some(thread), Some(turn)) = (self.thread_id.clone(), self.turn_id.clone()) else {
            return false;
        };
        let id = self.next_request_id();
        let params = map::interrupt_params(&thread, &turn);
        self.send(&map::request(id, "turn/interrupt", params))
            .await
            .is_ok()
    }

    /// Answers every request still waiting for a person as abandoned.
    async fn abandon_pending(&mut self) {
        let pending: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        for p in pending {
            let result = match p.kind {
                PendingKind::Permission { .. } => map::abandon_result(&p.method, &p.params),
                PendingKind::Question { ids } => map::answers_result(&ids, None),
            };
            // The process may already be gone; the stop that follows handles that.
            let _ = self.send(&map::response(&p.rpc_id, result)).await;
        }
    }

    /// Sends a request and waits for its response, handling whatever arrives meanwhile.
    async fn call(
        &mut self,
        method: &'static str,
        params: Value,
        deadline: Instant,
    ) -> Result<Result<Value, map::RpcError>, Halt> {
        let id = self.next_request_id();
        self.send(&map::request(id, method, params)).await?;
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(Halt::Cancelled),
                _ = sleep_until(deadline) => return Err(Halt::BootTimeout(method)),
                line = self.proc.next_line() => {
                    let Some(line) = line else {
                        return Err(Halt::Exited);
                    };
                    if let Line::Json(v) = &line {
                        if let Incoming::Response { id: rid, result } = map::classify(v) {
                            if rid == id {
                                return Ok(result);
                            }
                        }
                    }
                    self.on_line(line, None).await?;
                }
            }
        }
    }

    /// Handles one stdout line; returns the turn's end when this line ended it.
    async fn on_line(
        &mut self,
        line: Line,
        turn_request: Option<i64>,
    ) -> Result<Option<TurnEnd>, Halt> {
        let v = match line {
            Line::Json(v) => v,
            Line::Text(t) => {
                tracing::debug!(line = %process::truncate(&t, 300), "Codex printed a non-JSON line.");
                return Ok(None);
            }
            Line::TooLong(len) => {
                self.events.emit(EventKind::Status {
                    message: format!(
                        "Codex sent an oversized message ({len} bytes); it was skipped."
                    ),
                    retry: None,
                });
                return Ok(None);
            }
        };
        match map::classify(&v) {
            Incoming::Response { id, result } if Some(id) == turn_request => match result {
                Ok(r) => {
                    if let Some(turn) = r["turn"]["id"].as_str() {
                        self.turn_id = Some(turn.to_owned());
                    }
                    Ok(None)
                }
                Err(e) => Ok(Some(TurnEnd::Failed {
                    kind: FailureKind::Protocol,
                    message: format!("Codex refused the turn: {}", e.message),
                })),
            },
            Incoming::Response { .. } => Ok(None),
            Incoming::Notification { method, params } => {
                let mapped = self.mapper.notification(&method, &params);
                if let Some(turn) = mapped.turn_started {
                    self.turn_id = Some(turn);
                }
                for e in mapped.events {
                    self.events.emit(e);
                }
                if mapped.turn_end.is_none() && !is_known_quiet(&method) {
                    tracing::trace!(method = %method, "Codex notification.");
                }
                Ok(mapped.turn_end)
            }
            Incoming::Request { id, method, params } => {
                self.on_server_request(id, method, params).await?;
                Ok(None)
            }
            Incoming::Unknown => Ok(None),
        }
    }

    async fn on_server_request(
        &mut self,
        rpc_id: Value,
        method: String,
        params: Value,
    ) -> Result<(), Halt> {
        if self.stopping.is_some() {
            let result = map::abandon_result(&method, &params);
            return self.send(&map::response(&rpc_id, result)).await;
        }
        match self.mapper.server_ask(&method, &params) {
            ServerAsk::Permission {
                tool,
                title,
                input,
                patterns,
            } => {
                let session = self.thread_id.clone().unwrap_or_default();
                let auto = match self.policy {
                    PermissionPolicy::Allow => Some((PermissionDecision::Once, "policy: allow")),
                    PermissionPolicy::Deny => Some((PermissionDecision::Reject, "policy: deny")),
                    PermissionPolicy::Ask if self.runner.always.allows(&session, &tool) => {
                        Some((PermissionDecision::Once, "always allowed in this session"))
                    }
                    PermissionPolicy::Ask => None,
                };
                if let Some((decision, why)) = auto {
                    let verb = if decision == PermissionDecision::Reject {
                        "Denied"
                    } else {
                        "Allowed"
                    };
                    self.events.emit(EventKind::Status {
                        message: format!("{verb} `{tool}` automatically ({why})."),
                        retry: None,
                    });
                    let result = map::permission_result(&method, &params, decision);
                    return self.send(&map::response(&rpc_id, result)).await;
                }
                let request_id = self.request_id(&rpc_id);
                self.events.emit(EventKind::PermissionRequested {
                    request_id: request_id.clone(),
                    tool: tool.clone(),
                    title,
                    input,
                    patterns,
                });
                self.pending.insert(
                    request_id,
                    Pending {
                        rpc_id,
                        method,
                        params,
                        kind: PendingKind::Permission { tool },
                    },
                );
                Ok(())
            }
            ServerAsk::Question { ids, questions } => {
                if self.policy != PermissionPolicy::Ask {
                    // Nobody is there to answer: dismiss, and the agent decides by itself.
                    let result = map::answers_result(&ids, None);
                    return self.send(&map::response(&rpc_id, result)).await;
                }
                let request_id = self.request_id(&rpc_id);
                self.events.emit(EventKind::QuestionAsked {
                    request_id: request_id.clone(),
                    questions,
                });
                self.pending.insert(
                    request_id,
                    Pending {
                        rpc_id,
                        method,
                        params,
                        kind: PendingKind::Question { ids },
                    },
                );
                Ok(())
            }
            ServerAsk::Elicitation => {
                self.send(&map::response(&rpc_id, map::elicitation_decline()))
                    .await
            }
            ServerAsk::Unsupported => {
                tracing::debug!(method = %method, "Codex asked for something kimaki does not support.");
                let message = format!("kimaki does not support `{method}`");
                self.send(&map::error_response(&rpc_id, &message)).await
            }
        }
    }

    /// Applies a person's answer to the request it names.
    async fn answer(&mut self, control: Control) -> Result<(), Halt> {
        let Some(pending) = self.pending.remove(control.request_id()) else {
            tracing::debug!(request_id = %control.request_id(), "Answer for a request this job is not waiting for.");
            return Ok(());
        };
        let result = match (&pending.kind, control) {
            (PendingKind::Permission { tool }, Control::Permission { decision, .. }) => {
                if decision == PermissionDecision::Always {
                    if let Some(thread) = &self.thread_id {
                        self.runner.always.allow(thread, tool);
                    }
                }
                map::permission_result(&pending.method, &pending.params, decision)
            }
            (PendingKind::Question { ids }, Control::Answer { answers, .. }) => {
                map::answers_result(ids, Some(&answers))
            }
            (PendingKind::Question { ids }, Control::DismissQuestion { .. }) => {
                map::answers_result(ids, None)
            }
            (_, other) => {
                tracing::warn!(request_id = %other.request_id(), "Answer of the wrong kind; rejecting the request.");
                map::abandon_result(&pending.method, &pending.params)
            }
        };
        self.send(&map::response(&pending.rpc_id, result)).await
    }

    /// How the job ends, from how the turn (or the process) ended.
    async fn finish(mut self, result: Result<TurnEnd, Halt>) -> Result<RunSummary, RunnerError> {
        let deadlines = self.runner.config.deadlines;
        // A runner that exits while kimaki stops a stalled turn still timed out.
        let result = match result {
            Err(Halt::Exited) if self.stopping == Some(Stopping::NoProgress) => {
                Err(Halt::NoProgress)
            }
            other => other,
        };
        if let Some(usage) = self.mapper.usage_event() {
            self.events.emit(usage);
        }
        let session = self.thread_id.clone();
        let cancelled = self.cancel.is_cancelled();
        let outcome = match result {
            Ok(TurnEnd::Completed) => {
                // A clean exit lets Codex flush the thread, so the next job can resume it.
                let status = self
                    .proc
                    .stop(deadlines.exit_grace * 4, deadlines.term_grace)
                    .await;
                return Ok(RunSummary {
                    summary: self.mapper.summary(),
                    runner_session_id: session,
                    exit_code: status.and_then(|s| s.code()),
                });
            }
            Ok(TurnEnd::Failed { kind, message }) => Err(RunnerError::failed(
                kind,
                process::redact(&message, &self.secrets),
            )),
            Ok(TurnEnd::Interrupted) | Err(Halt::Cancelled) if cancelled => {
                Err(RunnerError::cancelled(None))
            }
            Err(Halt::NoProgress) | Ok(TurnEnd::Interrupted)
                if self.stopping == Some(Stopping::NoProgress) =>
            {
                Err(RunnerError::failed(
                    FailureKind::Timeout,
                    format!(
                        "Codex showed no progress for {:?}, so the turn was stopped",
                        deadlines.no_progress
                    ),
                ))
            }
            Ok(TurnEnd::Interrupted) => Err(RunnerError::failed(
                FailureKind::RunnerCrashed,
                "Codex interrupted the turn by itself",
            )),
            Err(Halt::Cancelled) | Err(Halt::NoProgress) => Err(RunnerError::cancelled(None)),
            Err(Halt::BootTimeout(stage)) => {
                let tail = self.stderr_tail();
                Err(RunnerError::failed(
                    FailureKind::Timeout,
                    format!(
                        "Codex did not answer `{stage}` within {} s{tail}",
                        deadlines.boot.as_secs()
                    ),
                ))
            }
            Err(Halt::Protocol(message)) => Err(RunnerError::failed(
                FailureKind::Protocol,
                process::redact(&message, &self.secrets),
            )),
            Err(Halt::Io(e)) => {
                let tail = self.stderr_tail();
                Err(RunnerError::failed(
                    FailureKind::RunnerCrashed,
                    format!("lost the connection to Codex ({e}){tail}"),
                ))
            }
            Err(Halt::Exited) => {
                let status = self.proc.wait_exit(deadlines.exit_grace).await;
                if self.cancel.is_cancelled() {
                    Err(RunnerError::cancelled(None))
                } else {
                    self.proc
                        .stop(deadlines.exit_grace, deadlines.term_grace)
                        .await;
                    let tail = self.stderr_tail();
                    let how = match status.and_then(|s| s.code()) {
                        Some(code) => format!("exited with code {code}"),
                        None => "was killed".to_owned(),
                    };
                    return Err(RunnerError::failed(
                        FailureKind::RunnerCrashed,
                        format!("Codex {how} before the turn finished{tail}"),
                    )
                    .with_exit_code(status.and_then(|s| s.code()))
                    .with_session(session));
                }
            }
        };
        let status = self
            .proc
            .stop(deadlines.exit_grace, deadlines.term_grace)
            .await;
        outcome.map_err(|e| {
            e.with_session(session)
                .with_exit_code(status.and_then(|s| s.code()))
        })
    }

    fn stderr_tail(&self) -> String {
        let tail = self.proc.stderr_tail(&self.secrets);
        if tail.is_empty() {
            return String::new();
        }
        let start = tail.len().saturating_sub(STDERR_IN_MESSAGE);
        let start = (start..tail.len())
            .find(|i| tail.is_char_boundary(*i))
            .unwrap_or(tail.len());
        format!("\ncodex stderr (last lines):\n{}", &tail[start..])
    }

    async fn send(&mut self, v: &Value) -> Result<(), Halt> {
        self.proc.send(v).await.map_err(Halt::Io)
    }

    fn next_request_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// A kimaki-wide unique id for a Codex server request (Codex numbers them per process).
    fn request_id(&self, rpc_id: &Value) -> RequestId {
        let n = match rpc_id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        RequestId::new(format!("{}-codex-{n}", self.job_id))
    }
}

fn thread_id_of(result: &Value) -> Option<String> {
    result["thread"]["id"].as_str().map(str::to_owned)
}

/// Notifications that carry nothing for the job; not worth a trace line each.
fn is_known_quiet(method: &str) -> bool {
    matches!(
        method,
        "item/agentMessage/delta" | "thread/status/changed" | "thread/tokenUsage/updated"
    )
}
