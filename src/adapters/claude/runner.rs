//! `ClaudeRunner`: one long-lived-mode `claude -p --input-format stream-json` process per job.
//! initialize (control protocol) → one user message → output until `result`; `can_use_tool`
//! prompts are answered from the job's policy or by a person; cancel is the control protocol's
//! `interrupt`, then the process group is stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::config::{spec, ClaudeConfig, RUNNER_ID};
use super::map::{self, Incoming, Mapper, PermissionAsk, TurnEnd};
use crate::adapters::process::{self, JsonlProcess, Line, ProcessSpec};
use crate::adapters::runner_state::{AlwaysAllowed, VersionCache};
use crate::config::programs::{find_program, program_version};
use crate::core::events::{FailureKind, PermissionDecision};
use crate::core::{
    CancelSignal, Control, EventEmitter, EventKind, PermissionPolicy, RequestId, RunContext,
    RunRequest, RunSummary, Runner, RunnerError, RunnerId, RunnerInfo,
};

/// Failure messages carry at most this much of the runner's stderr.
const STDERR_IN_MESSAGE: usize = 2000;

/// Control request ids kimaki uses; Claude echoes them in its `control_response`.
const INIT_REQUEST: &str = "kimaki-init";
const INTERRUPT_REQUEST: &str = "kimaki-interrupt";

/// Runs jobs with Claude Code.
pub struct ClaudeRunner {
    config: ClaudeConfig,
    version: VersionCache,
    /// Tools a person allowed "always", per Claude session. Outlives the per-job processes.
    always: AlwaysAllowed,
}

impl ClaudeRunner {
    pub fn new(config: ClaudeConfig) -> Self {
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
        let install = spec().map_or("npm install -g @anthropic-ai/claude-code", |s| s.install);
        format!(
            "Claude Code (`{}`) was not found; install it with `{install}` or set CLAUDE_BIN to its path",
            self.config.program
        )
    }

    fn spawn_args(
        &self,
        request: &RunRequest,
        model: Option<&str>,
        resume: Option<&str>,
    ) -> Vec<String> {
        let mut args: Vec<String> = [
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            // Permission prompts come to kimaki as `can_use_tool` control requests.
            "--permission-prompt-tool",
            "stdio",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        if let Some(m) = model {
            args.extend(["--model".to_owned(), map::claude_model(m).to_owned()]);
        }
        if let Some(agent) = request.agent.as_deref().filter(|a| !a.is_empty()) {
            args.extend(["--agent".to_owned(), agent.to_owned()]);
        }
        if let Some(session) = resume {
            args.extend(["--resume".to_owned(), session.to_owned()]);
        }
        args.extend(self.config.extra_args.iter().cloned());
        args
    }
}

#[async_trait]
impl Runner for ClaudeRunner {
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
                    tracing::warn!(version = %version, tested = s.tested_version, "Claude Code version differs from the tested one.");
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
        let RunContext {
            events,
            cancel,
            mut controls,
        } = ctx;
        let model = request
            .model
            .clone()
            .or_else(|| self.config.default_model.clone());
        let mut resume = request.session.clone();
        // At most two attempts: the second only when the first named a session Claude lacks.
        for attempt in 0..2 {
            let spec = ProcessSpec {
                program: program.clone(),
                args: self.spawn_args(&request, model.as_deref(), resume.as_deref()),
                cwd: request.cwd.clone(),
                env: self.config.child_env(),
                stderr_log: Some(log_dir.join(format!("{}-{attempt}.log", request.job_id))),
            };
            let proc = JsonlProcess::spawn(&spec).map_err(|e| {
                RunnerError::failed(
                    FailureKind::RunnerUnavailable,
                    format!("{e}; {}", self.unavailable_message()),
                )
            })?;
            let mut session = Session {
                runner: self,
                proc,
                events: &events,
                cancel: &cancel,
                controls: &mut controls,
                controls_open: true,
                job_id: request.job_id.to_string(),
                policy: request.permission_policy,
                mapper: Mapper::new(model.clone()),
                pending: HashMap::new(),
                stopping: None,
                started: false,
                version: version.clone(),
                cwd: request.cwd.clone(),
                secrets: self.config.all_secrets(),
            };
            let result = session.drive(&request).await;
            if let (Ok(TurnEnd::SessionMissing), Some(previous)) = (&result, resume.as_deref()) {
                tracing::warn!(
                    session = previous,
                    "Claude has no such session; starting a new one."
                );
                events.emit(EventKind::Status {
                    message: format!(
                        "The previous Claude session ({previous}) could not be found; this job starts a new one."
                    ),
                    retry: None,
                });
                let d = self.config.deadlines;
                session.proc.stop(d.exit_grace, d.term_grace).await;
                resume = None;
                continue;
            }
            return session.finish(result).await;
        }
        Err(RunnerError::failed(
            FailureKind::Protocol,
            "Claude Code could not start a session",
        ))
    }
}

/// Why a job ended before its turn did.
#[derive(Debug)]
enum Halt {
    Cancelled,
    NoProgress,
    /// stdout closed: the process exited without finishing the turn.
    Exited,
    BootTimeout,
    Io(process::ProcessError),
    Protocol(String),
}

/// Why kimaki is stopping a turn that is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    Cancel,
    NoProgress,
}

/// A permission prompt waiting for a person.
struct Pending {
    claude_request: String,
    tool: String,
    input: Value,
}

/// One job's conversation with one Claude Code process.
struct Session<'a> {
    runner: &'a ClaudeRunner,
    proc: JsonlProcess,
    events: &'a EventEmitter,
    cancel: &'a CancelSignal,
    controls: &'a mut mpsc::Receiver<Control>,
    controls_open: bool,
    job_id: String,
    policy: PermissionPolicy,
    mapper: Mapper,
    pending: HashMap<RequestId, Pending>,
    stopping: Option<Stopping>,
    started: bool,
    version: Option<String>,
    cwd: PathBuf,
    secrets: Vec<String>,
}

impl Session<'_> {
    async fn drive(&mut self, request: &RunRequest) -> Result<TurnEnd, Halt> {
        let boot_deadline = Instant::now() + self.runner.config.deadlines.boot;
        self.send(&map::control_request(INIT_REQUEST, "initialize"))
            .await?;
        // Bounded by the boot deadline and by the process: each iteration consumes a line.
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(Halt::Cancelled),
                _ = sleep_until(boot_deadline) => return Err(Halt::BootTimeout),
                line = self.proc.next_line() => {
                    let Some(line) = line else {
                        return Err(Halt::Exited);
                    };
                    if let Line::Json(v) = &line {
                        if let Incoming::ControlResponse { request_id, error } = map::classify(v) {
                            if request_id == INIT_REQUEST {
                                if let Some(e) = error {
                                    return Err(Halt::Protocol(format!(
                                        "Claude Code refused to initialize: {e}"
                                    )));
                                }
                                break;
                            }
                        }
                    }
                    if let Some(end) = self.on_line(line).await? {
                        return Ok(end);
                    }
                }
            }
        }
        let prompt = map::compose_prompt(&request.prompt, &request.attachments);
        self.send(&map::user_message(&prompt)).await?;
        self.turn_loop().await
    }

    /// Reads output until the turn's `result`, answering prompts and controls on the way.
    async fn turn_loop(&mut self) -> Result<TurnEnd, Halt> {
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
                    self.begin_stop(Stopping::Cancel).await;
                    stop_deadline = Instant::now() + deadlines.interrupt_grace;
                }
                _ = sleep_until(stop_deadline), if self.stopping.is_some() => {
                    return Err(match self.stopping {
                        Some(Stopping::NoProgress) => Halt::NoProgress,
                        _ => Halt::Cancelled,
                    });
                }
                _ = sleep_until(idle_deadline), if self.stopping.is_none() && !waiting_for_person => {
                    self.begin_stop(Stopping::NoProgress).await;
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
                    if let Some(end) = self.on_line(line).await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Asks Claude to stop the turn; it answers with a `result` and stays alive.
    async fn begin_stop(&mut self, why: Stopping) {
        self.stopping = Some(why);
        let pending: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        for p in pending {
            let deny =
                map::permission_response(&p.claude_request, PermissionDecision::Reject, &p.input);
            // The process may already be gone; the stop that follows handles that.
            let _ = self.send(&deny).await;
        }
        let _ = self
            .send(&map::control_request(INTERRUPT_REQUEST, "interrupt"))
            .await;
    }

    /// Handles one stdout line; returns the turn's end when this line ended it.
    async fn on_line(&mut self, line: Line) -> Result<Option<TurnEnd>, Halt> {
        let v = match line {
            Line::Json(v) => v,
            Line::Text(t) => {
                tracing::debug!(line = %process::truncate(&t, 300), "Claude printed a non-JSON line.");
                return Ok(None);
            }
            Line::TooLong(len) => {
                self.events.emit(EventKind::Status {
                    message: format!(
                        "Claude Code sent an oversized message ({len} bytes); it was skipped."
                    ),
                    retry: None,
                });
                return Ok(None);
            }
        };
        match map::classify(&v) {
            Incoming::ControlResponse { request_id, error } => {
                if let Some(e) = error {
                    tracing::debug!(request_id = %request_id, error = %e, "Claude rejected a control request.");
                }
                Ok(None)
            }
            Incoming::CanUseTool(ask) => {
                self.on_permission(ask).await?;
                Ok(None)
            }
            Incoming::OtherControl {
                request_id,
                subtype,
            } => {
                tracing::debug!(subtype = %subtype, "Claude asked for something kimaki does not support.");
                let message = format!("kimaki does not support `{subtype}`");
                self.send(&map::control_error(&request_id, &message))
                    .await?;
                Ok(None)
            }
            Incoming::Output => {
                let cwd = self.cwd.clone();
                let exists = move |p: &Path| cwd.join(p).exists();
                let mapped = self.mapper.line(&v, &exists);
                if let Some(session) = mapped.session_started {
                    self.emit_started(Some(session));
                }
                for e in mapped.events {
                    if !self.started && is_output(&e) {
                        // Output before `init` would break the event order; it never happens
                        // with a healthy Claude, but the contract must hold regardless.
                        self.emit_started(None);
                    }
                    self.events.emit(e);
                }
                Ok(mapped.turn_end)
            }
        }
    }

    fn emit_started(&mut self, session: Option<String>) {
        if self.started {
            return;
        }
        self.started = true;
        self.events.emit(EventKind::Started {
            runner: RUNNER_ID.to_owned(),
            runner_version: self.version.clone(),
            runner_session_id: session,
            pid: self.proc.pid(),
        });
    }

    async fn on_permission(&mut self, ask: PermissionAsk) -> Result<(), Halt> {
        if self.stopping.is_some() {
            let deny =
                map::permission_response(&ask.request_id, PermissionDecision::Reject, &ask.input);
            return self.send(&deny).await;
        }
        let session = self.mapper.session_id().unwrap_or_default().to_owned();
        let auto = match self.policy {
            PermissionPolicy::Allow => Some((PermissionDecision::Once, "policy: allow")),
            PermissionPolicy::Deny => Some((PermissionDecision::Reject, "policy: deny")),
            PermissionPolicy::Ask if self.runner.always.allows(&session, &ask.tool) => {
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
                message: format!("{verb} `{}` automatically ({why}).", ask.tool),
                retry: None,
            });
            let answer = map::permission_response(&ask.request_id, decision, &ask.input);
            return self.send(&answer).await;
        }
        // Claude's request ids are UUIDs; the job id keeps them readable and unique in the store.
        let request_id = RequestId::new(format!("{}-claude-{}", self.job_id, ask.request_id));
        self.events.emit(EventKind::PermissionRequested {
            request_id: request_id.clone(),
            tool: ask.tool.clone(),
            title: ask.title,
            input: ask.input.clone(),
            patterns: ask.patterns,
        });
        self.pending.insert(
            request_id,
            Pending {
                claude_request: ask.request_id,
                tool: ask.tool,
                input: ask.input,
            },
        );
        Ok(())
    }

    /// Applies a person's answer to the prompt it names.
    async fn answer(&mut self, control: Control) -> Result<(), Halt> {
        let Some(pending) = self.pending.remove(control.request_id()) else {
            tracing::debug!(request_id = %control.request_id(), "Answer for a request this job is not waiting for.");
            return Ok(());
        };
        let decision = match control {
            Control::Permission { decision, .. } => decision,
            other => {
                tracing::warn!(request_id = %other.request_id(), "Answer of the wrong kind; denying the request.");
                PermissionDecision::Reject
            }
        };
        if decision == PermissionDecision::Always {
            if let Some(session) = self.mapper.session_id() {
                self.runner.always.allow(session, &pending.tool);
            }
        }
        let answer = map::permission_response(&pending.claude_request, decision, &pending.input);
        self.send(&answer).await
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
        let cancelled = self.cancel.is_cancelled();
        let outcome = match result {
            Ok(TurnEnd::Completed) => {
                // Closing stdin ends Claude cleanly, with the transcript flushed for `--resume`.
                let status = self
                    .proc
                    .stop(deadlines.exit_grace * 4, deadlines.term_grace)
                    .await;
                return Ok(RunSummary {
                    summary: self.mapper.summary(),
                    runner_session_id: self.session(),
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
                        "Claude Code showed no progress for {:?}, so the turn was stopped",
                        deadlines.no_progress
                    ),
                ))
            }
            Ok(TurnEnd::Interrupted) => Err(RunnerError::failed(
                FailureKind::RunnerCrashed,
                "Claude Code interrupted the turn by itself",
            )),
            Ok(TurnEnd::SessionMissing) => Err(RunnerError::failed(
                FailureKind::Protocol,
                "Claude Code could not find the session to continue",
            )),
            Err(Halt::Cancelled) | Err(Halt::NoProgress) => Err(RunnerError::cancelled(None)),
            Err(Halt::BootTimeout) => {
                let tail = self.stderr_tail();
                Err(RunnerError::failed(
                    FailureKind::Timeout,
                    format!(
                        "Claude Code did not answer `initialize` within {} s{tail}",
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
                    format!("lost the connection to Claude Code ({e}){tail}"),
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
                    let code = status.and_then(|s| s.code());
                    let how = match code {
                        Some(code) => format!("exited with code {code}"),
                        None => "was killed".to_owned(),
                    };
                    return Err(RunnerError::failed(
                        FailureKind::RunnerCrashed,
                        format!("Claude Code {how} before the turn finished{tail}"),
                    )
                    .with_exit_code(code)
                    .with_session(self.session()));
                }
            }
        };
        let status = self
            .proc
            .stop(deadlines.exit_grace, deadlines.term_grace)
            .await;
        let session = self.session();
        outcome.map_err(|e| {
            e.with_session(session)
                .with_exit_code(status.and_then(|s| s.code()))
        })
    }

    /// The session this job used: the one Claude reported, or the one it was asked to resume.
    fn session(&self) -> Option<String> {
        self.mapper.session_id().map(str::to_owned)
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
        format!("\nclaude stderr (last lines):\n{}", &tail[start..])
    }

    async fn send(&mut self, v: &Value) -> Result<(), Halt> {
        self.proc.send(v).await.map_err(Halt::Io)
    }
}

fn is_output(e: &EventKind) -> bool {
    matches!(
        e,
        EventKind::TextDelta { .. } | EventKind::TextPart { .. } | EventKind::ToolStarted { .. }
    )
}
