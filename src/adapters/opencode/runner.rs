//! `OpencodeRunner`: one job is one prompt in an OpenCode session on the shared server. The run
//! loop translates the session's events, answers permissions and questions, reconciles after
//! stream gaps, and enforces kimaki's deadlines (no progress, model retries, cancel).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;

use super::api::PendingKind;
use super::config::{OpencodeConfig, RUNNER_ID};
use super::error::OpencodeError;
use super::map::{self, Signal, Turn, Verdict};
use super::server::{is_runnable, program_version, Server, ServerManager};
use super::stream::{HubMsg, Subscription};
use crate::core::clock::now_ms;
use crate::core::events::{FailureKind, PermissionResolution};
use crate::core::job::Attachment;
use crate::core::{
    Control, EventKind, PermissionPolicy, RequestId, RunContext, RunRequest, RunSummary, Runner,
    RunnerError, RunnerId, RunnerInfo,
};

/// OpenCode answers an abort in ~35 ms; the whole cancel must fit kimaki's 2 s promise.
const ABORT_TIMEOUT: Duration = Duration::from_millis(700);
/// After an abort, how long to wait for the session to report idle, so the lane's next prompt
/// does not race the abort.
const ABORT_SETTLE: Duration = Duration::from_millis(700);
/// OpenCode reports idle before it stores the last part; re-read after this pause…
const RECHECK_PAUSE: Duration = Duration::from_millis(250);
/// …this many times before taking the list as final.
const MAX_RECHECKS: u32 = 20;
/// Message-list pages read to find the start of a turn (`MESSAGE_PAGE` messages each).
const MAX_MESSAGE_PAGES: usize = 20;

/// Runs jobs with OpenCode (`opencode serve`).
pub struct OpencodeRunner {
    config: Arc<OpencodeConfig>,
    servers: Arc<ServerManager>,
}

impl OpencodeRunner {
    /// A runner that starts its server on first use.
    pub fn new(config: OpencodeConfig) -> Self {
        let config = Arc::new(config);
        Self {
            servers: Arc::new(ServerManager::new(config.clone())),
            config,
        }
    }

    /// Drops the server's event-stream connection for `outage`, as a network blip would: the
    /// stream then re-opens and every running job reconciles from OpenCode's message list.
    /// Returns whether a server was running. For tests and diagnostics.
    #[doc(hidden)]
    pub async fn drop_event_stream(&self, outage: Duration) -> bool {
        match self.servers.current().await {
            Some(server) if !server.has_exited() => {
                server.hub.drop_connection(outage);
                true
            }
            _ => false,
        }
    }
}

#[async_trait]
impl Runner for OpencodeRunner {
    fn id(&self) -> RunnerId {
        RunnerId::new(RUNNER_ID)
    }

    async fn probe(&self) -> RunnerInfo {
        let program = &self.config.program;
        let mut info = RunnerInfo {
            id: self.id(),
            available: false,
            version: None,
            reason: None,
            program: Some(program.display().to_string()),
        };
        let install = OpencodeConfig::install_hint();
        if !is_runnable(program) {
            info.reason = Some(format!(
                "{} is not installed or not executable; install OpenCode with `{install}` or point OPENCODE_BIN at it",
                program.display()
            ));
            return info;
        }
        match program_version(&self.config).await {
            Ok(version) => {
                let tested = OpencodeConfig::tested_version();
                if version != tested {
                    info.reason = Some(format!(
                        "OpenCode {version} is untested; kimaki is tested with {tested} (`{install}`)"
                    ));
                }
                info.available = true;
                info.version = Some(version);
            }
            Err(e) => info.reason = Some(e),
        }
        info
    }

    async fn run(&self, request: RunRequest, ctx: RunContext) -> Result<RunSummary, RunnerError> {
        let wanted = request
            .model
            .as_deref()
            .or(self.config.default_model.as_deref());
        let model = match wanted {
            Some(m) => Some(map::parse_model(m).ok_or_else(|| {
                RunnerError::failed(
                    FailureKind::Api,
                    format!("the model `{m}` is not written as provider/model (for example anthropic/claude-sonnet-4-5)"),
                )
                .with_session(request.session.clone())
            })?),
            None => None,
        };
        let agent = request
            .agent
            .clone()
            .or_else(|| self.config.default_agent.clone());
        let server = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Err(RunnerError::cancelled(request.session)),
            s = self.servers.ensure() => s.map_err(|e| failure(&e, request.session.clone()))?,
        };
        let dir = request.cwd.to_string_lossy().into_owned();
        let opened = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Err(RunnerError::cancelled(request.session)),
            o = open_session(&server, &dir, request.session.as_deref()) => o,
        };
        let (session, note) = opened.map_err(|e| failure(&e, request.session.clone()))?;
        // Subscribed before the prompt, so no event of this turn can be missed.
        let sub = server.hub.subscribe(&session);
        let sent_at = now_ms();
        // OpenCode reads attachments by `file://` URL, which must be absolute.
        let attachments: Vec<Attachment> = request
            .attachments
            .iter()
            .map(|a| Attachment {
                path: request.cwd.join(&a.path),
                ..a.clone()
            })
            .collect();
        let body = map::prompt_body(
            &request.prompt,
            &attachments,
            model.as_ref(),
            agent.as_deref(),
        );
        let turn = Turn::new(session.clone(), sent_at);
        let job = Job {
            config: self.config.clone(),
            server,
            dir,
            session,
            policy: request.permission_policy,
            ctx,
            sub,
            turn,
            pending: HashMap::new(),
            last_progress: Instant::now(),
            retry_since: None,
            recheck: None,
            idle_seen: false,
            controls_open: true,
        };
        job.start(body, note).await
    }

    async fn shutdown(&self) {
        self.servers.shutdown().await;
    }
}

/// The session to use: the lane's own if OpenCode still has it, else a new one (and a note).
async fn open_session(
    server: &Server,
    dir: &str,
    wanted: Option<&str>,
) -> Result<(String, Option<String>), OpencodeError> {
    let Some(id) = wanted else {
        return Ok((server.api.create_session(dir).await?, None));
    };
    if server.api.session_exists(dir, id).await? {
        return Ok((id.to_owned(), None));
    }
    let new = server.api.create_session(dir).await?;
    Ok((
        new,
        Some(format!(
            "OpenCode no longer has session {id}; this conversation continues in a new session"
        )),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Permission,
    Question,
}

/// One run in progress.
struct Job {
    config: Arc<OpencodeConfig>,
    server: Arc<Server>,
    dir: String,
    session: String,
    policy: PermissionPolicy,
    ctx: RunContext,
    sub: Subscription,
    turn: Turn,
    /// Requests waiting for a person; the no-progress clock stops while any is open.
    pending: HashMap<String, Waiting>,
    last_progress: Instant,
    /// When the model started failing without any output since.
    retry_since: Option<Instant>,
    /// When to re-read the message list after an idle that did not settle the turn.
    recheck: Option<(Instant, u32)>,
    idle_seen: bool,
    controls_open: bool,
}

enum Step {
    Cancelled,
    Crashed,
    Hub(Option<HubMsg>),
    Control(Option<Control>),
    Stalled,
    Recheck,
}

type Outcome = Result<RunSummary, RunnerError>;

impl Job {
    async fn start(mut self, body: Value, note: Option<String>) -> Outcome {
        let prompted = tokio::select! {
            biased;
            () = self.ctx.cancel.cancelled() => {
                // The prompt may already have arrived.
                self.abort().await;
                return Err(self.cancelled());
            }
            p = self.server.api.prompt(&self.dir, &self.session, &body) => p,
        };
        if let Err(e) = prompted {
            return Err(failure(&e, Some(self.session.clone())));
        }
        self.ctx.emit(EventKind::Started {
            runner: RUNNER_ID.to_owned(),
            runner_version: Some(self.server.version.clone()).filter(|v| !v.is_empty()),
            runner_session_id: Some(self.session.clone()),
            pid: self.server.pid,
        });
        if let Some(message) = note {
            self.ctx.emit(EventKind::Status {
                message,
                retry: None,
            });
        }
        self.last_progress = Instant::now();
        self.event_loop().await
    }

    async fn event_loop(mut self) -> Outcome {
        let cancel = self.ctx.cancel.clone();
        loop {
            let stall_at = self.last_progress + self.config.no_progress_timeout;
            let waiting_on_person = !self.pending.is_empty();
            let recheck_at = self.recheck.map(|(at, _)| at);
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => Step::Cancelled,
                () = self.server.exited() => Step::Crashed,
                msg = self.sub.rx.recv() => Step::Hub(msg),
                control = self.ctx.controls.recv(), if self.controls_open => Step::Control(control),
                () = tokio::time::sleep_until(stall_at), if !waiting_on_person => Step::Stalled,
                () = sleep_until_opt(recheck_at), if recheck_at.is_some() => Step::Recheck,
            };
            // Handling a step may call OpenCode; a cancel must not wait for a slow answer.
            let handled = tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                done = self.handle(step) => Some(done),
            };
            match handled {
                None => {
                    self.abort().await;
                    return Err(self.cancelled());
                }
                Some(Some(done)) => return done,
                Some(None) => {}
            }
        }
    }

    async fn handle(&mut self, step: Step) -> Option<Outcome> {
        let done = match step {
            Step::Cancelled => {
                self.abort().await;
                return Some(Err(self.cancelled()));
            }
            Step::Crashed | Step::Hub(None) => return Some(Err(self.crashed())),
            Step::Hub(Some(HubMsg::Event(event))) => {
                self.last_progress = Instant::now();
                let signals = self.turn.on_event(&event, now_ms());
                let done = self.apply(signals).await;
                self.look_up_context_limit().await;
                done
            }
            Step::Hub(Some(HubMsg::Gap)) => self.catch_up().await,
            Step::Control(Some(control)) => {
                self.on_control(control).await;
                None
            }
            Step::Control(None) => {
                self.controls_open = false;
                None
            }
            Step::Stalled => {
                self.abort().await;
                return Some(Err(self.fail(
                    FailureKind::Timeout,
                    format!(
                        "OpenCode showed no progress for {}s, so kimaki aborted the run",
                        self.config.no_progress_timeout.as_secs()
                    ),
                )));
            }
            Step::Recheck => {
                self.idle_seen = true;
                None
            }
        };
        if done.is_some() {
            return done;
        }
        if std::mem::take(&mut self.idle_seen) {
            return self.check_done().await;
        }
        None
    }

    /// Acts on translated signals. Idle only sets `idle_seen`: the caller then checks the turn.
    async fn apply(&mut self, signals: Vec<Signal>) -> Option<Outcome> {
        for signal in signals {
            match signal {
                Signal::Emit(kind) => {
                    self.retry_since = None;
                    self.ctx.emit(kind);
                }
                Signal::PermissionAsked { id, event } => self.on_permission(id, event).await,
                Signal::PermissionReplied { id, resolution } => {
                    // Answered outside kimaki (kimaki's own answers are no longer pending).
                    if self.pending.remove(&id).is_some() {
                        self.last_progress = Instant::now();
                        self.ctx.emit(EventKind::PermissionResolved {
                            request_id: RequestId::new(id),
                            resolution,
                        });
                    }
                }
                Signal::QuestionAsked { id, event } => self.on_question(id, event).await,
                Signal::QuestionResolved { id, answers } => {
                    if self.pending.remove(&id).is_some() {
                        self.last_progress = Instant::now();
                        self.ctx.emit(EventKind::QuestionResolved {
                            request_id: RequestId::new(id),
                            answers,
                        });
                    }
                }
                Signal::Retry {
                    attempt,
                    message,
                    next_in_ms,
                } => {
                    self.ctx
                        .emit(map::retry_status(attempt, &message, next_in_ms));
                    let since = *self.retry_since.get_or_insert_with(Instant::now);
                    if attempt >= self.config.model_retry_limit
                        || since.elapsed() >= self.config.model_retry_window
                    {
                        self.abort().await;
                        let detail = if message.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", map::truncate(&message, 500))
                        };
                        return Some(Err(self.fail(
                            FailureKind::ModelUnreachable,
                            format!(
                                "the model endpoint kept failing{detail}; kimaki gave up after {attempt} retries"
                            ),
                        )));
                    }
                }
                Signal::Idle => self.idle_seen = true,
            }
        }
        None
    }

    async fn on_permission(&mut self, id: String, event: EventKind) {
        self.ctx.emit(event);
        let (reply, resolution) = match self.policy {
            PermissionPolicy::Ask => {
                self.pending.insert(id, Waiting::Permission);
                return;
            }
            // Once, not always: the job's policy must not outlive the job (OpenCode applies
            // "always" to the whole project).
            PermissionPolicy::Allow => ("once", PermissionResolution::Once),
            PermissionPolicy::Deny => ("reject", PermissionResolution::Reject),
        };
        if let Err(e) = self
            .server
            .api
            .reply_permission(&self.dir, &id, reply)
            .await
        {
            tracing::warn!(request_id = %id, error = %e, "Cannot answer an OpenCode permission request.");
        }
        self.ctx.emit(EventKind::PermissionResolved {
            request_id: RequestId::new(id),
            resolution,
        });
    }

    async fn on_question(&mut self, id: String, event: EventKind) {
        self.ctx.emit(event);
        if self.policy == PermissionPolicy::Ask {
            self.pending.insert(id, Waiting::Question);
            return;
        }
        // Nobody is there to answer: dismiss it so the agent carries on.
        if let Err(e) = self.server.api.reject_question(&self.dir, &id).await {
            tracing::warn!(request_id = %id, error = %e, "Cannot dismiss an OpenCode question.");
        }
        self.ctx.emit(EventKind::QuestionResolved {
            request_id: RequestId::new(id),
            answers: None,
        });
    }

    async fn on_control(&mut self, control: Control) {
        let id = control.request_id().as_str().to_owned();
        let expected = match &control {
            Control::Permission { .. } => Waiting::Permission,
            Control::Answer { .. } | Control::DismissQuestion { .. } => Waiting::Question,
        };
        if self.pending.get(&id) != Some(&expected) {
            tracing::warn!(request_id = %id, "An answer arrived for a request this run is not waiting on; ignored.");
            return;
        }
        self.pending.remove(&id);
        self.last_progress = Instant::now();
        let api = &self.server.api;
        let sent = match &control {
            Control::Permission { decision, .. } => {
                api.reply_permission(&self.dir, &id, map::reply_word(*decision))
                    .await
            }
            Control::Answer { answers, .. } => api.reply_question(&self.dir, &id, answers).await,
            Control::DismissQuestion { .. } => api.reject_question(&self.dir, &id).await,
        };
        if let Err(e) = sent {
            tracing::warn!(request_id = %id, error = %e, "Cannot pass an answer on to OpenCode.");
        }
    }

    /// After a stream gap: emit what was missed, re-raise requests that were missed, and check
    /// whether the turn ended meanwhile.
    async fn catch_up(&mut self) -> Option<Outcome> {
        tracing::debug!(session = %self.session, "Reconciling an OpenCode session after a stream gap.");
        match self.turn_messages().await {
            Ok(messages) => {
                let signals = self.turn.reconcile(&messages);
                if let Some(done) = self.apply(signals).await {
                    return Some(done);
                }
            }
            Err(e) => tracing::warn!(error = %e, "Cannot read the OpenCode session to reconcile."),
        }
        // Sub-agents started during the gap were never seen being created.
        match self.server.api.children(&self.dir, &self.session).await {
            Ok(children) => {
                for child in children {
                    self.server.hub.adopt(&child, &self.session);
                }
            }
            Err(e) => tracing::debug!(error = %e, "Cannot list the session's sub-agents."),
        }
        let family: HashSet<String> = self.server.hub.family(&self.session).into_iter().collect();
        let api = &self.server.api;
        let (permissions, questions) = tokio::join!(
            api.pending(&self.dir, PendingKind::Permissions),
            api.pending(&self.dir, PendingKind::Questions)
        );
        let signals = self.turn.reconcile_requests(
            &permissions.unwrap_or_default(),
            &questions.unwrap_or_default(),
            &family,
        );
        if let Some(done) = self.apply(signals).await {
            return Some(done);
        }
        self.idle_seen = true;
        None
    }

    /// Whether the turn is over: OpenCode says idle and the message list agrees.
    async fn check_done(&mut self) -> Option<Outcome> {
        match self.server.api.is_idle(&self.dir, &self.session).await {
            Ok(true) => {}
            Ok(false) => {
                self.recheck = None;
                return None;
            }
            Err(e) => {
                tracing::debug!(error = %e, "Cannot read the session status; waiting for more events.");
                return None;
            }
        }
        let messages = match self.turn_messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "Cannot read the session; trying again shortly.");
                return self.schedule_recheck();
            }
        };
        let signals = self.turn.reconcile(&messages);
        if let Some(done) = self.apply(signals).await {
            return Some(done);
        }
        self.idle_seen = false;
        match self.turn.verdict(&messages) {
            Verdict::Done => Some(Ok(self.summary())),
            // Stopped by someone else (the OpenCode TUI, another client).
            Verdict::Aborted => Some(Err(self.cancelled())),
            Verdict::Failed { kind, message } => Some(Err(self.fail(kind, message))),
            Verdict::Running => self.schedule_recheck(),
        }
    }

    fn schedule_recheck(&mut self) -> Option<Outcome> {
        let n = self.recheck.map_or(0, |(_, n)| n) + 1;
        if n <= MAX_RECHECKS {
            self.recheck = Some((Instant::now() + RECHECK_PAUSE, n));
            return None;
        }
        self.recheck = None;
        if self.turn.has_user_message() {
            tracing::warn!(session = %self.session, "OpenCode is idle but the reply looks unfinished; taking it as it is.");
            Some(Ok(self.summary()))
        } else {
            Some(Err(self.fail(
                FailureKind::Protocol,
                "OpenCode went idle without taking the prompt".to_owned(),
            )))
        }
    }

    /// The messages of this turn and, for context, whatever came just before (oldest first).
    async fn turn_messages(&self) -> Result<Vec<Value>, OpencodeError> {
        let mut all: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_MESSAGE_PAGES {
            let (mut page, next) = self
                .server
                .api
                .messages(&self.dir, &self.session, cursor.as_deref())
                .await?;
            let reached = self.turn.page_reaches_prompt(&page);
            page.append(&mut all);
            all = page;
            match next {
                Some(next) if !reached => cursor = Some(next),
                _ => break,
            }
        }
        Ok(all)
    }

    async fn look_up_context_limit(&mut self) {
        if let Some((provider, model)) = self.turn.wants_context_limit() {
            let limit = self
                .server
                .context_limit(&self.dir, &provider, &model)
                .await;
            self.turn.set_context_limit(limit);
        }
    }

    /// Asks OpenCode to stop the turn and waits briefly for the session to go idle.
    async fn abort(&mut self) {
        if let Err(e) = self
            .server
            .api
            .abort(&self.dir, &self.session, ABORT_TIMEOUT)
            .await
        {
            tracing::debug!(error = %e, "OpenCode did not confirm the abort.");
        }
        let settle = Instant::now() + ABORT_SETTLE;
        loop {
            tokio::select! {
                msg = self.sub.rx.recv() => match msg {
                    Some(HubMsg::Event(e)) if is_idle_event(&e, &self.session) => return,
                    Some(_) => {}
                    None => return,
                },
                () = tokio::time::sleep_until(settle) => return,
                () = self.server.exited() => return,
            }
        }
    }

    fn summary(&self) -> RunSummary {
        RunSummary {
            summary: self.turn.summary(),
            runner_session_id: Some(self.session.clone()),
            exit_code: None,
        }
    }

    fn cancelled(&self) -> RunnerError {
        RunnerError::cancelled(Some(self.session.clone()))
    }

    fn fail(&self, kind: FailureKind, message: String) -> RunnerError {
        RunnerError::failed(kind, message).with_session(Some(self.session.clone()))
    }

    fn crashed(&self) -> RunnerError {
        self.fail(
            FailureKind::RunnerCrashed,
            format!(
                "the OpenCode server stopped while this job ran: {}. The job was not retried; the next job starts a fresh server",
                self.server.exit_reason()
            ),
        )
    }
}

fn is_idle_event(event: &Value, session: &str) -> bool {
    event["properties"]["sessionID"].as_str() == Some(session)
        && (event["type"] == "session.idle"
            || (event["type"] == "session.status"
                && event["properties"]["status"]["type"] == "idle"))
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn failure(e: &OpencodeError, session: Option<String>) -> RunnerError {
    RunnerError::failed(e.failure_kind(), e.to_string()).with_session(session)
}
