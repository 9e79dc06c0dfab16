//! kimaki's Discord side in process: the real queue and dispatcher (`QueueHarness`) plus the real
//! Discord adapter (`discord::spawn`, real serenity) pointed at a Discord twin, over one temp data
//! dir with one registered project (`my-app`). It can stop and restart kimaki against the same
//! twin and store, as a process restart would.
//!
//! `ScriptRunner` is a test runner driven by the first line of the prompt (the adapter appends a
//! `<discord-user …/>` tag, so matching the whole prompt would never work):
//! `permission`, `question`, `long`, `tools`, `sleep:<ms>`, otherwise it echoes the first line.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kimaki::adapters::discord::{self, DiscordConfig, DiscordDeps, DiscordHandle};
use kimaki::adapters::git::GitWorktrees;
use kimaki::config::{DataDir, Secret};
use kimaki::core::events::{PermissionDecision, Question, QuestionOption, TextStream};
use kimaki::core::{
    Control, EventKind, Health, RequestId, RunContext, RunRequest, RunSummary, Runner, RunnerError,
    RunnerId, RunnerInfo, Transcriber, Workspaces,
};
use serenity::model::id::{ChannelId, MessageId};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::discord_twin::{channel_kind, DiscordTwin, Message, TwinConfig};
use super::echo_runner::EchoRunner;
use super::queue_harness::QueueHarness;

/// Anything on loopback that normally takes milliseconds, with room for a loaded 2-core box.
pub const QUICK: Duration = Duration::from_secs(20);

/// The registered project's directory name (and so its channel name).
pub const PROJECT: &str = "my-app";

/// The text `ScriptRunner` answers `long` with: > 5,000 characters around a Rust code block.
pub fn long_reply() -> String {
    let mut s = String::from("Here is the whole module:\n\n```rust\n");
    for i in 0..80 {
        s.push_str(&format!(
            "fn handler_{i:02}(req: &Request) -> Response {{ Response::ok(req.id + {i}) }}\n"
        ));
    }
    s.push_str("```\n\nEvery handler now answers with its request id.");
    s
}

/// A runner scripted by the prompt's first line (see the module docs).
#[derive(Default)]
pub struct ScriptRunner {
    runs: AtomicUsize,
    prompts: Mutex<Vec<String>>,
    dirs: Mutex<Vec<PathBuf>>,
}

impl ScriptRunner {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Prompts in the order they reached the runner.
    pub fn prompts(&self) -> Vec<String> {
        self.prompts.lock().unwrap().clone()
    }

    /// The working directory of each run, in the same order.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.lock().unwrap().clone()
    }
}

fn text(ctx: &RunContext, part: &str, t: &str) {
    ctx.emit(EventKind::TextPart {
        part_id: part.into(),
        stream: TextStream::Assistant,
        text: t.into(),
    });
}

#[async_trait]
impl Runner for ScriptRunner {
    fn id(&self) -> RunnerId {
        RunnerId::new("script")
    }

    async fn probe(&self) -> RunnerInfo {
        RunnerInfo {
            id: self.id(),
            available: true,
            version: Some("1".into()),
            reason: None,
            program: None,
        }
    }

    async fn run(&self, req: RunRequest, mut ctx: RunContext) -> Result<RunSummary, RunnerError> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        self.prompts.lock().unwrap().push(req.prompt.clone());
        self.dirs.lock().unwrap().push(req.cwd.clone());
        let session = req.session.clone().unwrap_or_else(|| format!("script-{n}"));
        ctx.emit(EventKind::Started {
            runner: "script".into(),
            runner_version: Some("1".into()),
            runner_session_id: Some(session.clone()),
            pid: None,
        });
        let first = req.prompt.lines().next().unwrap_or("").trim().to_owned();
        let done = |summary: &str| {
            Ok(RunSummary {
                summary: Some(summary.into()),
                runner_session_id: Some(session.clone()),
                exit_code: None,
            })
        };
        if let Some(ms) = first
            .strip_prefix("sleep:")
            .and_then(|s| s.parse::<u64>().ok())
        {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                _ = ctx.cancel.cancelled() => return Err(RunnerError::cancelled(Some(session))),
            }
        }
        match first.as_str() {
            "permission" => {
                let request_id = RequestId::new(format!("per_{n}"));
                ctx.emit(EventKind::PermissionRequested {
                    request_id: request_id.clone(),
                    tool: "bash".into(),
                    title: Some("run `ls`".into()),
                    input: serde_json::json!({"command": "ls"}),
                    patterns: vec!["ls".into()],
                });
                let answer = tokio::select! {
                    c = ctx.controls.recv() => c,
                    _ = ctx.cancel.cancelled() => return Err(RunnerError::cancelled(Some(session))),
                };
                let said = match answer {
                    Some(Control::Permission {
                        decision: PermissionDecision::Once,
                        ..
                    }) => "allowed once",
                    Some(Control::Permission {
                        decision: PermissionDecision::Always,
                        ..
                    }) => "allowed always",
                    Some(Control::Permission {
                        decision: PermissionDecision::Reject,
                        ..
                    }) => "denied",
                    _ => "no answer",
                };
                text(&ctx, "p1", &format!("The user {said}."));
                done(said)
            }
            "question" => {
                let request_id = RequestId::new(format!("que_{n}"));
                let option = |l: &str| QuestionOption {
                    label: l.into(),
                    description: None,
                };
                ctx.emit(EventKind::QuestionAsked {
                    request_id,
                    questions: vec![Question {
                        question: "How should I proceed?".into(),
                        header: Some("Approach".into()),
                        options: vec![option("Fast"), option("Careful")],
                        multiple: false,
                    }],
                });
                let answer = tokio::select! {
                    c = ctx.controls.recv() => c,
                    _ = ctx.cancel.cancelled() => return Err(RunnerError::cancelled(Some(session))),
                };
                let said = match answer {
                    Some(Control::Answer { answers, .. }) => answers
                        .iter()
                        .map(|a| a.join("+"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => "nothing".into(),
                };
                text(&ctx, "p1", &format!("You chose: {said}."));
                done(&said)
            }
            "long" => {
                let reply = long_reply();
                // Streamed in pieces, as a model would.
                let chars: Vec<char> = reply.chars().collect();
                for piece in chars.chunks(700) {
                    ctx.emit(EventKind::TextDelta {
                        part_id: "p1".into(),
                        stream: TextStream::Assistant,
                        delta: piece.iter().collect(),
                    });
                }
                text(&ctx, "p1", &reply);
                ctx.emit(EventKind::Usage {
                    input_tokens: 100,
                    output_tokens: 900,
                    cached_tokens: 0,
                    cost_usd: None,
                    context_percent: Some(4.0),
                    model: Some("fake-model".into()),
                });
                done("long")
            }
            "tools" => {
                ctx.emit(EventKind::ToolStarted {
                    call_id: "c1".into(),
                    name: "read".into(),
                    input: serde_json::json!({"filePath": "README.md"}),
                });
                ctx.emit(EventKind::ToolStarted {
                    call_id: "c2".into(),
                    name: "edit".into(),
                    input: serde_json::json!({"filePath": "src/main.rs", "oldString": "a", "newString": "b\nc"}),
                });
                text(&ctx, "p1", "Edited main.rs.");
                done("tools")
            }
            other => {
                let reply = format!("echo: {other}");
                ctx.emit(EventKind::TextDelta {
                    part_id: "p1".into(),
                    stream: TextStream::Assistant,
                    delta: reply.clone(),
                });
                text(&ctx, "p1", &reply);
                done(&reply)
            }
        }
    }
}

/// How to start kimaki for a test.
pub struct Options {
    pub twin: TwinConfig,
    /// The runner sessions use: `script` (default), `echo`, or one of `extra_runners`.
    pub runner: &'static str,
    /// Runners besides `script` and `echo` (a real runner for end-to-end tests).
    pub extra_runners: Vec<Arc<dyn Runner>>,
    /// Transcribes voice jobs (none: voice messages fail with a clear error).
    pub transcriber: Option<Arc<dyn Transcriber>>,
    /// Prepares the project directory before it is registered (git init, project config).
    pub prepare: Box<dyn Fn(&Path) + Send + Sync>,
    pub tweak: Box<dyn Fn(&mut DiscordConfig) + Send + Sync>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            twin: TwinConfig::default(),
            runner: "script",
            extra_runners: Vec::new(),
            transcriber: None,
            prepare: Box::new(|_| {}),
            tweak: Box::new(|_| {}),
        }
    }
}

/// kimaki (queue + dispatcher + Discord adapter) against a twin.
pub struct Kimaki {
    pub twin: DiscordTwin,
    pub dir: TempDir,
    pub project_dir: PathBuf,
    /// The project's channel, once setup created it.
    pub channel: ChannelId,
    pub script: Arc<ScriptRunner>,
    pub echo: Arc<EchoRunner>,
    runner: &'static str,
    extra_runners: Vec<Arc<dyn Runner>>,
    transcriber: Option<Arc<dyn Transcriber>>,
    tweak: Box<dyn Fn(&mut DiscordConfig) + Send + Sync>,
    queue: Option<QueueHarness>,
    handle: Option<DiscordHandle>,
    health: Health,
}

/// The adapter's configuration for a twin: its API, short timings, the unknown-event guard.
pub fn test_config(twin: &DiscordTwin, data: &Path, runner: &str) -> DiscordConfig {
    let data_dir = DataDir::resolve(Some(data)).unwrap();
    let mut c = DiscordConfig::new(Secret::new(twin.bot_token()), &data_dir);
    c.api_base = Some(twin.api_base());
    c.guild_id = Some(twin.guild_id().get());
    c.runner = runner.into();
    c.raw_event_handler = Some(Arc::new(twin.unknown_event_guard()));
    c.timings.request_timeout = Duration::from_secs(5);
    c.timings.ready_timeout = QUICK;
    c.timings.outbound.edit_interval = Duration::from_millis(150);
    c.timings.outbound.retry_base = Duration::from_millis(50);
    c.timings.outbound.retry_max = Duration::from_millis(500);
    c
}

impl Kimaki {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(o: Options) -> Self {
        if let Ok(filter) = std::env::var("KIMAKI_TEST_LOG") {
            // Opt-in logs for debugging a test: KIMAKI_TEST_LOG=kimaki=debug.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let twin = DiscordTwin::start(o.twin).await;
        let dir = tempfile::tempdir().unwrap();
        let project_dir = dir.path().join("projects").join(PROJECT);
        std::fs::create_dir_all(&project_dir).unwrap();
        std::fs::write(project_dir.join("README.md"), "# my-app\n").unwrap();
        (o.prepare)(&project_dir);
        let mut k = Self {
            twin,
            project_dir,
            dir,
            channel: ChannelId::new(1),
            script: ScriptRunner::new(),
            echo: EchoRunner::new(),
            runner: o.runner,
            extra_runners: o.extra_runners,
            transcriber: o.transcriber,
            tweak: o.tweak,
            queue: None,
            handle: None,
            health: Health::default(),
        };
        k.boot(true).await;
        k.channel = k.wait_project_channel().await;
        k
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn boot(&mut self, register: bool) {
        let mut runners: Vec<(Arc<dyn Runner>, usize)> = vec![
            (self.script.clone() as Arc<dyn Runner>, 4),
            (self.echo.clone() as Arc<dyn Runner>, 4),
        ];
        runners.extend(self.extra_runners.iter().map(|r| (r.clone(), 4)));
        let store = self.data().join("store");
        let queue = match &self.transcriber {
            Some(t) => QueueHarness::start_with_transcriber(&store, runners, t.clone()).await,
            None => QueueHarness::start(&store, runners).await,
        };
        let workspaces = Workspaces::new(queue.queue.store().clone());
        if register {
            workspaces.add(&self.project_dir, None).await.unwrap();
        }
        let mut config = test_config(&self.twin, &self.data(), self.runner);
        (self.tweak)(&mut config);
        let deps = DiscordDeps {
            queue: queue.queue.clone(),
            workspaces,
            health: self.health.clone(),
            store: queue.queue.store().clone(),
            worktrees: Arc::new(GitWorktrees::new()),
            tasks: kimaki::core::tasks::Tasks::new(queue.queue.store().clone()),
        };
        let handle = discord::spawn(config, deps, CancellationToken::new())
            .await
            .expect("the Discord adapter starts");
        self.queue = Some(queue);
        self.handle = Some(handle);
    }

    async fn wait_project_channel(&self) -> ChannelId {
        self.twin
            .wait_for("the project channel", QUICK, |s| {
                s.channels
                    .values()
                    .find(|c| c.name == PROJECT && c.kind == channel_kind::TEXT && !c.deleted)
                    .map(|c| c.id)
            })
            .await
    }

    pub fn queue(&self) -> &QueueHarness {
        self.queue.as_ref().expect("kimaki is running")
    }

    pub fn handle(&self) -> &DiscordHandle {
        self.handle.as_ref().expect("kimaki is running")
    }

    /// The runtime's ordered shutdown: stop Discord intake, drain the queue (rendering goes on),
    /// then stop the adapter.
    pub async fn stop(&mut self) {
        if let Some(h) = &self.handle {
            h.stop_intake();
        }
        if let Some(q) = self.queue.take() {
            q.shutdown().await;
        }
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }

    /// Stops and starts kimaki again over the same data dir and twin.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.boot(false).await;
    }

    /// Stops kimaki and checks the twin recorded no violation.
    pub async fn finish(mut self) {
        self.stop().await;
        self.twin.assert_clean();
    }

    /// The first bot message in `channel` after `after` matching `pred`.
    pub async fn bot_message_after(
        &self,
        channel: ChannelId,
        after: MessageId,
        pred: impl Fn(&Message) -> bool,
    ) -> Message {
        self.twin
            .wait_bot_message(channel, |m| m.id > after && pred(m), QUICK)
            .await
    }

    /// The thread the bot created from a channel message (thread id = message id).
    pub async fn thread_of(&self, message: MessageId) -> ChannelId {
        let id = ChannelId::new(message.get());
        self.twin.wait_thread(|t| t.id == id, QUICK).await.id
    }

    /// Whether the adapter has finished handling a user message (its durable "handled" mark).
    pub fn handled(&self, message: MessageId) -> bool {
        let key = format!("discord/seen/{message}");
        self.queue()
            .queue
            .store()
            .get::<i64>(kimaki::store::Tree::Adapter, key.as_bytes())
            .unwrap()
            .is_some()
    }

    /// Until the adapter has handled `message`. The store has no change signal, so this polls it
    /// (bounded by `QUICK`); use it only to prove that something did *not* happen.
    pub async fn wait_handled(&self, message: MessageId) {
        let polled = tokio::time::timeout(QUICK, async {
            while !self.handled(message) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(polled.is_ok(), "message {message} was never handled");
    }

    /// Bot messages in a channel, oldest first.
    pub fn bot_texts(&self, channel: ChannelId) -> Vec<String> {
        let bot = self.twin.bot_user_id();
        self.twin
            .messages(channel)
            .into_iter()
            .filter(|m| m.author_id == bot)
            .map(|m| m.content)
            .collect()
    }
}
