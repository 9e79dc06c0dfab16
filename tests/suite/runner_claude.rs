//! The Claude Code runner with the real `claude` binary (pinned 2.1.197) against the fake LLM,
//! through the real queue and dispatcher: text, tools, permissions (once, always, deny),
//! interrupt, abort, session continuity, classified failures and the no-progress deadline.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kimaki::adapters::claude::{ClaudeConfig, ClaudeRunner};
use kimaki::adapters::process::ChildEnv;
use kimaki::core::events::{PermissionDecision, TextStream};
use kimaki::core::{
    AnswerOutcome, Control, EnqueueMode, EventKind, Failure, FailureKind, JobEvent, JobId, Outcome,
    PermissionPolicy, RequestId, Runner,
};
use tempfile::TempDir;

use crate::support::fake_llm::{self, FakeLlm, Route};
use crate::support::queue_harness::{assistant_text, describe, new_job, outcome, QueueHarness};
use crate::support::runner_bins;
use crate::support::runner_contract::{assert_cancel_honoured, assert_event_contract};

/// One real Claude turn takes about 1.5 s; this bounds a loaded 2-core machine.
const TURN: Duration = Duration::from_secs(60);
/// Classified failures must arrive quickly: Claude is told not to retry.
const FAIL_FAST: Duration = Duration::from_secs(15);
/// The API key Claude sends; the fake accepts any value.
const FAKE_KEY: &str = "sk-fake-claude-key-123456";
const FINAL_TOOL_TEXT: &str = "FINAL: tool output was tool-ran-ok";

/// A temp git repo and HOME, the fake LLM, and a queue running one `ClaudeRunner`.
struct Claude {
    llm: FakeLlm,
    repo: TempDir,
    _home: TempDir,
    _store: TempDir,
    h: QueueHarness,
}

impl Claude {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut ClaudeConfig)) -> Self {
        let llm = FakeLlm::start().await;
        let home = runner_bins::isolated_home();
        let repo = git_repo(home.path()).await;
        let store = tempfile::tempdir().unwrap();
        let mut config = claude_config(&llm.base_url(), home.path(), store.path());
        tweak(&mut config);
        let runner: Arc<dyn Runner> = Arc::new(ClaudeRunner::new(config));
        let h = QueueHarness::start(&store.path().join("store"), vec![(runner, 4)]).await;
        Self {
            llm,
            repo,
            _home: home,
            _store: store,
            h,
        }
    }

    async fn enqueue(&self, lane: &str, prompt: &str, policy: PermissionPolicy) -> JobId {
        let mut job = new_job(lane, "claude", self.repo.path(), prompt);
        job.permission_policy = policy;
        self.h.enqueue(job).await
    }

    async fn run(&self, lane: &str, prompt: &str, policy: PermissionPolicy) -> Vec<JobEvent> {
        let id = self.enqueue(lane, prompt, policy).await;
        let events = self.h.wait_finished(&id, TURN).await;
        assert_event_contract(&events);
        events
    }

    fn proof(&self) -> Option<String> {
        std::fs::read_to_string(self.repo.path().join("proof.txt")).ok()
    }

    /// Bodies of the model calls that offered tools (the agent's turns), in order.
    fn turn_requests(&self) -> Vec<String> {
        self.llm
            .requests_to(Route::Messages)
            .into_iter()
            .filter(|r| !r.tools.is_empty())
            .map(|r| r.body.to_string())
            .collect()
    }

    async fn answer(&self, request_id: RequestId, decision: PermissionDecision) {
        let applied = self
            .h
            .queue
            .answer(Control::Permission {
                request_id,
                decision,
            })
            .await
            .expect("answer the permission request");
        assert!(matches!(applied, AnswerOutcome::Applied), "{applied:?}");
    }
}

/// Claude pointed at the fake with no retries, in an empty environment.
fn claude_config(base_url: &str, home: &Path, state: &Path) -> ClaudeConfig {
    let mut config = ClaudeConfig::new(
        runner_bins::claude_bin().display().to_string(),
        state.join("runners/claude"),
    );
    config.env = ChildEnv {
        inherit: false,
        remove: Vec::new(),
        vars: vec![
            (
                "PATH".into(),
                runner_bins::runner_path_env()
                    .to_string_lossy()
                    .into_owned(),
            ),
            ("HOME".into(), home.display().to_string()),
            // No `/v1`: Claude appends it.
            ("ANTHROPIC_BASE_URL".into(), base_url.to_owned()),
            ("ANTHROPIC_API_KEY".into(), FAKE_KEY.into()),
        ],
    };
    config.max_retries = Some(0);
    config.default_model = Some(fake_llm::MODEL.into());
    config
}

async fn git_repo(home: &Path) -> TempDir {
    let repo = tempfile::Builder::new()
        .prefix("kimaki-repo-")
        .tempdir()
        .unwrap();
    let status = tokio::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(repo.path())
        .env_clear()
        .env("PATH", runner_bins::runner_path_env())
        .env("HOME", home)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "git init failed");
    repo
}

/// A URL on 127.0.0.1 where nothing listens.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn started_session(events: &[JobEvent]) -> Option<String> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::Started {
            runner_session_id, ..
        } => runner_session_id.clone(),
        _ => None,
    })
}

fn failure(events: &[JobEvent]) -> Failure {
    match &events.last().unwrap().kind {
        EventKind::Finished {
            outcome: Outcome::Failed,
            error: Some(f),
            ..
        } => f.clone(),
        _ => panic!("not a failure:\n{}", describe(events)),
    }
}

fn summary(events: &[JobEvent]) -> Option<String> {
    match &events.last().unwrap().kind {
        EventKind::Finished { summary, .. } => summary.clone(),
        _ => None,
    }
}

fn permission_requests(events: &[JobEvent]) -> Vec<(RequestId, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PermissionRequested {
                request_id, tool, ..
            } => Some((request_id.clone(), tool.clone())),
            _ => None,
        })
        .collect()
}

/// Waits for the job's permission request and returns its id.
async fn permission_asked(c: &Claude, job: &JobId) -> RequestId {
    let ev =
        c.h.wait_event(job, TURN, |k| {
            matches!(k, EventKind::PermissionRequested { .. })
        })
        .await;
    match ev.kind {
        EventKind::PermissionRequested {
            request_id,
            tool,
            patterns,
            ..
        } => {
            assert_eq!(tool, "Bash");
            assert!(
                patterns.iter().any(|p| p.contains(fake_llm::TOOL_COMMAND)),
                "{patterns:?}"
            );
            request_id
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn claude_prompt_streams_text_with_usage_and_a_session() {
    let c = Claude::start().await;
    let events = c
        .run("l", "say hi [[fake:text]]", PermissionPolicy::Ask)
        .await;

    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(assistant_text(&events), fake_llm::TEXT_REPLY);
    assert_eq!(summary(&events).as_deref(), Some(fake_llm::TEXT_REPLY));
    let deltas = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::TextDelta {
                    stream: TextStream::Assistant,
                    ..
                }
            )
        })
        .count();
    assert!(deltas > 1, "text must stream:\n{}", describe(&events));
    assert!(started_session(&events).is_some(), "{}", describe(&events));
    let version = events.iter().find_map(|e| match &e.kind {
        EventKind::Started { runner_version, .. } => runner_version.clone(),
        _ => None,
    });
    assert_eq!(version.as_deref(), Some("2.1.197"));
    let usage = events.iter().find_map(|e| match &e.kind {
        EventKind::Usage {
            input_tokens,
            output_tokens,
            ..
        } => Some((*input_tokens, *output_tokens)),
        _ => None,
    });
    assert_eq!(
        usage,
        Some((fake_llm::INPUT_TOKENS, fake_llm::OUTPUT_TOKENS))
    );
    let request = &c.llm.requests_to(Route::Messages)[0];
    assert_eq!(request.header("x-api-key"), Some(FAKE_KEY));
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_tool_call_edits_a_file_in_the_repo() {
    let c = Claude::start().await;
    let events = c.run("l", "[[fake:tool]]", PermissionPolicy::Allow).await;

    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(c.proof().as_deref(), Some("hi\n"));
    let started = events.iter().find_map(|e| match &e.kind {
        EventKind::ToolStarted { call_id, name, .. } => Some((call_id.clone(), name.clone())),
        _ => None,
    });
    let (call_id, name) = started.expect("ToolStarted");
    assert_eq!(name, "Bash");
    let finished = events.iter().find_map(|e| match &e.kind {
        EventKind::ToolFinished {
            call_id: id,
            output,
            is_error,
            exit_code,
            ..
        } if *id == call_id => Some((output.clone(), *is_error, *exit_code)),
        _ => None,
    });
    assert_eq!(
        finished,
        Some(("tool-ran-ok".to_owned(), false, None)),
        "{}",
        describe(&events)
    );
    assert_eq!(assistant_text(&events), FINAL_TOOL_TEXT);
    assert!(
        permission_requests(&events).is_empty(),
        "policy allow asks nobody"
    );
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_permission_accepted_once_runs_the_command() {
    let c = Claude::start().await;
    let job = c
        .enqueue("l", "[[fake:permission]]", PermissionPolicy::Ask)
        .await;
    let request_id = permission_asked(&c, &job).await;
    assert_eq!(c.proof(), None, "nothing runs before the answer");
    c.answer(request_id, PermissionDecision::Once).await;

    let events = c.h.wait_finished(&job, TURN).await;
    assert_event_contract(&events);
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(c.proof().as_deref(), Some("hi\n"));
    assert_eq!(assistant_text(&events), FINAL_TOOL_TEXT);
    assert!(events
        .iter()
        .any(|e| matches!(e.kind, EventKind::PermissionResolved { .. })));
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_permission_always_is_not_asked_again_in_the_session() {
    let c = Claude::start().await;
    let first = c
        .enqueue("l", "[[fake:permission]]", PermissionPolicy::Ask)
        .await;
    let request_id = permission_asked(&c, &first).await;
    c.answer(request_id, PermissionDecision::Always).await;
    let first_events = c.h.wait_finished(&first, TURN).await;
    assert_event_contract(&first_events);
    assert_eq!(outcome(&first_events), Outcome::Succeeded);
    std::fs::remove_file(c.repo.path().join("proof.txt")).unwrap();

    // Same lane, so the same Claude session: Bash is already allowed.
    let events = c
        .run("l", "again [[fake:permission]]", PermissionPolicy::Ask)
        .await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert!(
        permission_requests(&events).is_empty(),
        "{}",
        describe(&events)
    );
    assert_eq!(c.proof().as_deref(), Some("hi\n"));
    assert_eq!(started_session(&events), started_session(&first_events));

    // Another lane is another session: it asks again.
    let other = c
        .enqueue("other", "[[fake:permission]]", PermissionPolicy::Ask)
        .await;
    let request_id = permission_asked(&c, &other).await;
    c.answer(request_id, PermissionDecision::Reject).await;
    let other_events = c.h.wait_finished(&other, TURN).await;
    assert_event_contract(&other_events);
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_permission_denied_continues_without_running_the_command() {
    let c = Claude::start().await;
    let job = c
        .enqueue("l", "[[fake:permission]]", PermissionPolicy::Ask)
        .await;
    let request_id = permission_asked(&c, &job).await;
    c.answer(request_id, PermissionDecision::Reject).await;

    let events = c.h.wait_finished(&job, TURN).await;
    assert_event_contract(&events);
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(c.proof(), None, "a denied command must not run");
    let tool_failed = events
        .iter()
        .any(|e| matches!(e.kind, EventKind::ToolFinished { is_error: true, .. }));
    assert!(tool_failed, "{}", describe(&events));
    // The agent was told and carried on with a final answer.
    let text = assistant_text(&events);
    assert!(
        text.starts_with("FINAL: tool output was") && text.contains("denied"),
        "{text}"
    );
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_deny_policy_rejects_without_asking() {
    let c = Claude::start().await;
    let events = c
        .run("l", "[[fake:permission]]", PermissionPolicy::Deny)
        .await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert!(permission_requests(&events).is_empty());
    assert_eq!(c.proof(), None);
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_interrupt_keeps_both_prompts_in_the_session() {
    let c = Claude::start().await;
    let first = c
        .enqueue(
            "l",
            "first prompt alpha-7 [[fake:slow]]",
            PermissionPolicy::Ask,
        )
        .await;
    c.h.wait_event(&first, TURN, |k| matches!(k, EventKind::TextDelta { .. }))
        .await;
    let mut job = new_job("l", "claude", c.repo.path(), "second prompt [[fake:text]]");
    job.permission_policy = PermissionPolicy::Ask;
    let second = c.h.enqueue_mode(job, EnqueueMode::Interrupt).await;

    let first_events = c.h.wait_finished(&first, TURN).await;
    assert_event_contract(&first_events);
    assert_eq!(outcome(&first_events), Outcome::Interrupted);
    let events = c.h.wait_finished(&second, TURN).await;
    assert_event_contract(&events);
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(assistant_text(&events), fake_llm::TEXT_REPLY);
    assert_eq!(started_session(&events), started_session(&first_events));
    let last = c.turn_requests().pop().unwrap();
    assert!(
        last.contains("alpha-7") && last.contains("second prompt"),
        "the second turn must carry the interrupted prompt: {last}"
    );
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_abort_stops_a_slow_run_within_two_seconds() {
    let c = Claude::start().await;
    let job = c.enqueue("l", "[[fake:slow]]", PermissionPolicy::Ask).await;
    c.h.wait_event(&job, TURN, |k| matches!(k, EventKind::TextDelta { .. }))
        .await;
    let events = assert_cancel_honoured(&c.h, &job, Duration::from_secs(2)).await;
    assert!(started_session(&events).is_some());
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_second_prompt_in_a_lane_continues_the_session() {
    let c = Claude::start().await;
    let first = c
        .run("l", "remember bravo-3 [[fake:text]]", PermissionPolicy::Ask)
        .await;
    let second = c
        .run("l", "what did I say? [[fake:text]]", PermissionPolicy::Ask)
        .await;
    assert_eq!(
        outcome(&second),
        Outcome::Succeeded,
        "{}",
        describe(&second)
    );
    assert!(started_session(&first).is_some());
    assert_eq!(started_session(&second), started_session(&first));
    let last = c.turn_requests().pop().unwrap();
    assert!(last.contains("bravo-3"), "history must be resumed: {last}");
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_401_is_classified_as_auth() {
    let c = Claude::start().await;
    let t0 = Instant::now();
    let events = c
        .run("l", "[[fake:error:401]]", PermissionPolicy::Ask)
        .await;
    let f = failure(&events);
    assert_eq!(f.kind, FailureKind::Auth, "{}", describe(&events));
    assert!(!f.retryable);
    assert!(!f.message.contains(FAKE_KEY), "{}", f.message);
    assert!(t0.elapsed() < FAIL_FAST, "took {:?}", t0.elapsed());
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_unreachable_endpoint_is_classified_quickly() {
    let url = closed_port_url();
    let c = Claude::start_with(|config| {
        for (k, v) in &mut config.env.vars {
            if k == "ANTHROPIC_BASE_URL" {
                *v = url.clone();
            }
        }
    })
    .await;
    let t0 = Instant::now();
    let events = c.run("l", "[[fake:text]]", PermissionPolicy::Ask).await;
    let f = failure(&events);
    assert_eq!(
        f.kind,
        FailureKind::ModelUnreachable,
        "{}",
        describe(&events)
    );
    assert!(f.retryable);
    assert!(t0.elapsed() < FAIL_FAST, "took {:?}", t0.elapsed());
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_hung_model_fails_on_the_no_progress_deadline() {
    let c = Claude::start_with(|config| {
        config.deadlines.no_progress = Duration::from_millis(1500);
    })
    .await;
    let events = c.run("l", "[[fake:hang]]", PermissionPolicy::Ask).await;
    let f = failure(&events);
    assert_eq!(f.kind, FailureKind::Timeout, "{}", describe(&events));
    c.h.shutdown().await;
}

#[tokio::test]
async fn claude_missing_binary_is_unavailable_with_the_install_command() {
    let store = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    let missing = ClaudeConfig::new("/nonexistent/bin/claude", store.path().join("claude"));
    let runner = Arc::new(ClaudeRunner::new(missing));
    let info = runner.probe().await;
    assert!(!info.available);
    assert!(info
        .reason
        .unwrap()
        .contains("npm install -g @anthropic-ai/claude-code@2.1.197"));

    let h = QueueHarness::start(&store.path().join("store"), vec![(runner, 1)]).await;
    let id = h.enqueue(new_job("l", "claude", repo.path(), "hi")).await;
    let events = h.wait_finished(&id, TURN).await;
    assert_event_contract(&events);
    let f = failure(&events);
    assert_eq!(f.kind, FailureKind::RunnerUnavailable);
    assert!(f.message.contains("npm install"), "{}", f.message);
    h.shutdown().await;

    let installed = ClaudeRunner::new(ClaudeConfig::new(
        runner_bins::claude_bin().display().to_string(),
        store.path().join("claude"),
    ));
    let info = installed.probe().await;
    assert!(info.available, "{info:?}");
    assert_eq!(info.version.as_deref(), Some("2.1.197"));
}
