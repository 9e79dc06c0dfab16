//! The OpenCode runner against the real `opencode` (the pinned version) and the fake LLM, through
//! the real queue and dispatcher. Most scenarios share one runner, so one server, as production
//! does; each works in its own lane (and its own repository where the project config matters),
//! and they run at the same time. Every job's events end with the event contract and are checked
//! for repeated or lost text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kimaki::adapters::opencode::{OpencodeConfig, OpencodeRunner};
use kimaki::core::events::{
    FailureKind, FileAction, PermissionDecision, PermissionResolution, TextStream,
};
use kimaki::core::{
    AnswerOutcome, Attachment, Control, EnqueueMode, EventKind, JobEvent, JobId, Outcome,
    PermissionPolicy, Runner,
};
use serde_json::{json, Value};

use crate::support::fake_llm::{
    FakeLlm, Route, Scenario, QUESTION_OPTIONS, SLOW_CHUNKS, TEXT_REPLY,
};
use crate::support::queue_harness::{assistant_text, describe, new_job, outcome, QueueHarness};
use crate::support::runner_bins;
use crate::support::runner_contract::{assert_cancel_honoured, assert_event_contract};

/// A first prompt boots the server (3–10 s) and an OpenCode instance for the directory; on two
/// busy cores with many scenarios at once that takes a while.
const FIRST_TURN: Duration = Duration::from_secs(120);
/// An event of a run already under way.
const SOON: Duration = Duration::from_secs(60);
/// kimaki's promise for a cancel.
const CANCEL_BOUND: Duration = Duration::from_secs(2);
/// Scenarios that run at once in the shared runner.
const MAX_JOBS: usize = 16;
/// Twice the longest silence seen from a healthy server: a dozen first prompts at once on two busy
/// cores keep its single event loop quiet for up to ~10 s. The `hang` scenario proves it fires.
const NO_PROGRESS: Duration = Duration::from_secs(20);
/// Requests to the fake LLM looked at while waiting for a particular one.
const MAX_WAITED_REQUESTS: usize = 20;
/// The project config that makes OpenCode ask before running shell commands.
const ASK_FOR_BASH: &str = r#"{"permission":{"bash":"ask"}}"#;

/// The fake LLM, the shared runner and the queue, with their temp directories.
struct World {
    llm: FakeLlm,
    runner: Arc<OpencodeRunner>,
    h: QueueHarness,
    root: tempfile::TempDir,
    _home: tempfile::TempDir,
}

impl World {
    async fn start(configure: impl FnOnce(&mut OpencodeConfig)) -> Self {
        let llm = FakeLlm::start().await;
        let root = tempfile::Builder::new()
            .prefix("kimaki-opencode-")
            .tempdir()
            .unwrap();
        let home = runner_bins::isolated_home();
        let mut config = test_config(&llm, home.path(), &root.path().join("state"));
        configure(&mut config);
        let runner = Arc::new(OpencodeRunner::new(config));
        let h = QueueHarness::start(
            &root.path().join("store"),
            vec![(runner.clone() as Arc<dyn Runner>, MAX_JOBS)],
        )
        .await;
        Self {
            llm,
            runner,
            h,
            root,
            _home: home,
        }
    }

    /// A fresh git repository; `project_config` becomes its `opencode.json`.
    fn repo(&self, name: &str, project_config: Option<&str>) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", runner_bins::runner_path_env())
            .env("HOME", self._home.path())
            .status()
            .unwrap();
        assert!(status.success(), "git init failed");
        if let Some(config) = project_config {
            std::fs::write(dir.join("opencode.json"), config).unwrap();
        }
        dir
    }

    async fn run(&self, lane: &str, repo: &Path, prompt: &str) -> JobId {
        self.h
            .enqueue(new_job(lane, "opencode", repo, prompt))
            .await
    }

    async fn finish(&self, job: &JobId, within: Duration) -> Vec<JobEvent> {
        let events = self.h.wait_finished(job, within).await;
        assert_event_contract(&events);
        assert_no_repeats(&events);
        events
    }

    /// Waits for the first event of `job` that `pick` maps to a value.
    async fn wait_for<T>(&self, job: &JobId, pick: impl Fn(&EventKind) -> Option<T>) -> T {
        let ev = self
            .h
            .wait_event(job, FIRST_TURN, |k| pick(k).is_some())
            .await;
        pick(&ev.kind).unwrap()
    }

    async fn answer(&self, control: Control) {
        let applied = self.h.queue.answer(control).await.unwrap();
        assert_eq!(applied, AnswerOutcome::Applied);
    }

    /// The user texts of every chat request the fake LLM received that mentions `marker`.
    fn user_texts_of_requests_with(&self, marker: &str) -> Vec<Vec<String>> {
        self.llm
            .requests_to(Route::ChatCompletions)
            .iter()
            .map(|r| user_texts(&r.body))
            .filter(|texts| texts.iter().any(|t| t.contains(marker)))
            .collect()
    }
}

fn test_config(llm: &FakeLlm, home: &Path, state: &Path) -> OpencodeConfig {
    let mut config = OpencodeConfig::new(runner_bins::opencode_bin(), state);
    config.inherit_env = false;
    let path = runner_bins::runner_path_env().into_string().unwrap();
    let dir = |sub: &str| home.join(sub).to_string_lossy().into_owned();
    config.env = vec![
        ("PATH".into(), path),
        ("HOME".into(), home.to_string_lossy().into_owned()),
        ("XDG_CONFIG_HOME".into(), dir(".config")),
        ("XDG_DATA_HOME".into(), dir(".local/share")),
        ("XDG_CACHE_HOME".into(), dir(".cache")),
        ("XDG_STATE_HOME".into(), dir(".local/state")),
        ("OPENCODE_CONFIG_CONTENT".into(), fake_provider_config(llm)),
    ];
    for switch in [
        "OPENCODE_DISABLE_AUTOUPDATE",
        "OPENCODE_DISABLE_MODELS_FETCH",
        "OPENCODE_DISABLE_LSP_DOWNLOAD",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS",
        "OPENCODE_DISABLE_CLAUDE_CODE",
        "OPENCODE_DISABLE_SHARE",
        "OPENCODE_DISABLE_EXTERNAL_SKILLS",
    ] {
        config.env.push((switch.into(), "1".into()));
    }
    config.no_progress_timeout = NO_PROGRESS;
    // Fail fast on the first model retry, so `error:500` ends in ~2 s instead of ~8 s.
    config.model_retry_limit = 1;
    config
}

/// The fake LLM as OpenCode's only provider (no permission settings: projects decide those).
fn fake_provider_config(llm: &FakeLlm) -> String {
    json!({
        "autoupdate": false, "share": "disabled", "snapshot": false,
        "enabled_providers": ["fake"], "model": "fake/fake-model", "small_model": "fake/fake-model",
        "provider": { "fake": {
            "npm": "@ai-sdk/openai-compatible", "name": "Fake LLM",
            "options": { "baseURL": format!("{}/v1", llm.base_url()), "apiKey": "sk-fake" },
            "models": { "fake-model": {
                "name": "Fake Model", "tool_call": true,
                "limit": { "context": 100_000, "output": 4_096 },
            } },
        } },
    })
    .to_string()
}

fn user_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| match &m["content"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// Text is never sent twice: each part's deltas form a prefix of its final text, which comes at
/// most once; each tool call starts and finishes at most once.
fn assert_no_repeats(events: &[JobEvent]) {
    let mut streamed: HashMap<&str, String> = HashMap::new();
    let mut finals: HashMap<&str, usize> = HashMap::new();
    let mut tools: HashMap<(&str, bool), usize> = HashMap::new();
    for e in events {
        match &e.kind {
            EventKind::TextDelta { part_id, delta, .. } => {
                assert!(
                    !finals.contains_key(part_id.as_str()),
                    "delta after the final text of {part_id}:\n{}",
                    describe(events)
                );
                streamed.entry(part_id).or_default().push_str(delta);
            }
            EventKind::TextPart { part_id, text, .. } => {
                *finals.entry(part_id).or_default() += 1;
                let sent = streamed.get(part_id.as_str()).map_or("", String::as_str);
                assert!(
                    text.starts_with(sent),
                    "deltas of {part_id} ({sent:?}) are not a prefix of its text ({text:?}):\n{}",
                    describe(events)
                );
            }
            EventKind::ToolStarted { call_id, .. } => {
                *tools.entry((call_id, true)).or_default() += 1
            }
            EventKind::ToolFinished { call_id, .. } => {
                *tools.entry((call_id, false)).or_default() += 1
            }
            _ => {}
        }
    }
    assert!(
        finals.values().chain(tools.values()).all(|n| *n == 1),
        "something was emitted twice:\n{}",
        describe(events)
    );
}

fn started(events: &[JobEvent]) -> (String, Option<u32>, Option<String>) {
    events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Started {
                runner_session_id,
                pid,
                runner_version,
                ..
            } => Some((
                runner_session_id.clone().unwrap(),
                *pid,
                runner_version.clone(),
            )),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Started:\n{}", describe(events)))
}

fn failure(events: &[JobEvent]) -> (FailureKind, String) {
    match &events.last().unwrap().kind {
        EventKind::Finished {
            outcome: Outcome::Failed,
            error: Some(error),
            ..
        } => (error.kind, error.message.clone()),
        other => panic!("not a failure: {other:?}\n{}", describe(events)),
    }
}

fn summary(events: &[JobEvent]) -> Option<String> {
    match &events.last().unwrap().kind {
        EventKind::Finished { summary, .. } => summary.clone(),
        _ => None,
    }
}

fn count(events: &[JobEvent], pred: impl Fn(&EventKind) -> bool) -> usize {
    events.iter().filter(|e| pred(&e.kind)).count()
}

fn permission_request(k: &EventKind) -> Option<kimaki::core::RequestId> {
    match k {
        EventKind::PermissionRequested { request_id, .. } => Some(request_id.clone()),
        _ => None,
    }
}

fn is_delta(k: &EventKind) -> bool {
    matches!(k, EventKind::TextDelta { .. })
}

const FINAL_TOOL_TEXT: &str = "FINAL: tool output was tool-ran-ok";

// ---- scenarios of the shared runner ----------------------------------------------------------

/// A prompt's text comes back, and the next prompt of the lane continues the same session: the
/// model sees the first prompt again.
async fn text_then_the_same_session(w: &World, repo: &Path) {
    let first = w.run("text", repo, "remember-apple [[fake:text]]").await;
    let events = w.finish(&first, FIRST_TURN).await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(assistant_text(&events), TEXT_REPLY);
    assert_eq!(summary(&events).as_deref(), Some(TEXT_REPLY));
    let (session, pid, version) = started(&events);
    assert!(session.starts_with("ses_") && pid.is_some());
    assert_eq!(version.as_deref(), Some("1.18.33"));
    assert!(
        count(&events, |k| matches!(
            k,
            EventKind::Usage {
                context_percent: Some(_),
                model: Some(_),
                ..
            }
        )) >= 1,
        "usage with the context share:\n{}",
        describe(&events)
    );

    // The second turn brings a file along.
    let attached = repo.join("attached-note.txt");
    std::fs::write(&attached, "attached-secret-word\n").unwrap();
    let mut job = new_job("text", "opencode", repo, "second-turn [[fake:text]]");
    job.attachments = vec![Attachment {
        path: attached,
        filename: "attached-note.txt".into(),
        mime: Some("text/plain".into()),
    }];
    let second = w.h.enqueue(job).await;
    let events = w.finish(&second, SOON).await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(
        started(&events).0,
        session,
        "the lane continues its session"
    );
    let seen = w.user_texts_of_requests_with("second-turn");
    assert!(
        seen.iter()
            .any(|texts| texts.iter().any(|t| t.contains("remember-apple"))),
        "the model saw the first prompt again: {seen:?}"
    );
    assert!(
        w.llm
            .requests_to(Route::ChatCompletions)
            .iter()
            .any(|r| r.body.to_string().contains("attached-secret-word")),
        "the attachment reached the model"
    );
}

/// A tool call runs a shell command in the repository, then a write tool creates a file.
async fn tool_edits_files(w: &World, repo: &Path) {
    let job = w.run("tool", repo, "[[fake:tool]]").await;
    let events = w.finish(&job, FIRST_TURN).await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("proof.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        count(
            &events,
            |k| matches!(k, EventKind::ToolStarted { name, .. } if name == "bash")
        ),
        1
    );
    assert_eq!(
        count(
            &events,
            |k| matches!(k, EventKind::ToolFinished { output, is_error: false, exit_code: Some(0), .. } if output.contains("tool-ran-ok"))
        ),
        1,
        "{}",
        describe(&events)
    );
    assert_eq!(assistant_text(&events), FINAL_TOOL_TEXT);

    let job = w.run("tool", repo, "[[fake:write:notes.txt]]").await;
    let events = w.finish(&job, SOON).await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert!(std::fs::read_to_string(repo.join("notes.txt")).is_ok());
    assert_eq!(
        count(
            &events,
            |k| matches!(k, EventKind::FileChanged { path, action: FileAction::Created } if path.ends_with("notes.txt"))
        ),
        1,
        "{}",
        describe(&events)
    );
}

/// The project's own `opencode.json` asks before shell commands; kimaki raises the request and
/// passes the answer on.
async fn permission_answered(w: &World, name: &str, decision: PermissionDecision) {
    let repo = w.repo(name, Some(ASK_FOR_BASH));
    let job = w.run(name, &repo, "[[fake:permission]]").await;
    let request_id = w.wait_for(&job, permission_request).await;
    assert!(
        !repo.join("proof.txt").exists(),
        "nothing runs before the answer"
    );
    w.answer(Control::Permission {
        request_id,
        decision,
    })
    .await;
    let events = w.finish(&job, SOON).await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(
        count(&events, |k| matches!(
            k,
            EventKind::PermissionResolved { .. }
        )),
        1
    );
    let proof = repo.join("proof.txt");
    match decision {
        PermissionDecision::Reject => {
            assert!(!proof.exists(), "a denied command must not run");
            assert_eq!(
                count(&events, |k| matches!(
                    k,
                    EventKind::ToolFinished { is_error: true, .. }
                )),
                1,
                "{}",
                describe(&events)
            );
        }
        PermissionDecision::Once | PermissionDecision::Always => {
            assert_eq!(std::fs::read_to_string(&proof).unwrap(), "hi\n");
            assert_eq!(assistant_text(&events), FINAL_TOOL_TEXT);
        }
    }
    if decision == PermissionDecision::Reject {
        // A job whose policy is `Deny` is refused without anyone answering.
        let mut job = new_job(name, "opencode", &repo, "denied [[fake:permission]]");
        job.permission_policy = PermissionPolicy::Deny;
        let job = w.h.enqueue(job).await;
        let events = w.finish(&job, SOON).await;
        assert_eq!(
            outcome(&events),
            Outcome::Succeeded,
            "{}",
            describe(&events)
        );
        assert_eq!(
            count(&events, |k| matches!(
                k,
                EventKind::PermissionResolved {
                    resolution: PermissionResolution::Reject,
                    ..
                }
            )),
            1,
            "{}",
            describe(&events)
        );
        assert!(!proof.exists(), "a denied command must not run");
    }
    if decision == PermissionDecision::Always {
        // Approved for good: the next matching command in the session runs without asking.
        std::fs::remove_file(&proof).unwrap();
        let job = w.run(name, &repo, "again [[fake:permission]]").await;
        let events = w.finish(&job, SOON).await;
        assert_eq!(
            outcome(&events),
            Outcome::Succeeded,
            "{}",
            describe(&events)
        );
        assert_eq!(count(&events, |k| permission_request(k).is_some()), 0);
        assert_eq!(std::fs::read_to_string(&proof).unwrap(), "hi\n");
    }
}

/// A job whose policy is `Allow` is approved without anyone answering.
async fn policy_allow_approves_by_itself(w: &World) {
    let repo = w.repo("policy-allow", Some(ASK_FOR_BASH));
    let mut job = new_job("policy-allow", "opencode", &repo, "[[fake:permission]]");
    job.permission_policy = PermissionPolicy::Allow;
    let job = w.h.enqueue(job).await;
    let events = w.finish(&job, FIRST_TURN).await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(count(&events, |k| permission_request(k).is_some()), 1);
    assert_eq!(
        count(&events, |k| matches!(
            k,
            EventKind::PermissionResolved {
                resolution: PermissionResolution::Once,
                ..
            }
        )),
        1
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("proof.txt")).unwrap(),
        "hi\n"
    );
}

/// A question is raised with its options; the answer reaches the model.
async fn question_answered(w: &World, repo: &Path) {
    let job = w.run("question", repo, "[[fake:question]]").await;
    let (request_id, labels) = w
        .wait_for(&job, |k| match k {
            EventKind::QuestionAsked {
                request_id,
                questions,
            } => Some((
                request_id.clone(),
                questions[0]
                    .options
                    .iter()
                    .map(|o| o.label.clone())
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        })
        .await;
    assert_eq!(labels, QUESTION_OPTIONS);
    w.answer(Control::Answer {
        request_id,
        answers: vec![vec!["Beta".into()]],
    })
    .await;
    let events = w.finish(&job, SOON).await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    let text = assistant_text(&events);
    assert!(
        text.starts_with("FINAL: answer was") && text.contains("Beta"),
        "{text}"
    );

    // Dismissed instead: OpenCode is told, and the job ends without an answer.
    let job = w.run("question", repo, "again [[fake:question]]").await;
    let request_id = w
        .wait_for(&job, |k| match k {
            EventKind::QuestionAsked { request_id, .. } => Some(request_id.clone()),
            _ => None,
        })
        .await;
    w.answer(Control::DismissQuestion { request_id }).await;
    let events = w.finish(&job, SOON).await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(
        count(&events, |k| matches!(
            k,
            EventKind::QuestionResolved { answers: None, .. }
        )),
        1
    );
    assert_eq!(
        count(
            &events,
            |k| matches!(k, EventKind::ToolFinished { name, is_error: true, .. } if name == "question")
        ),
        1,
        "{}",
        describe(&events)
    );
}

/// HTTP 400 from the model fails the job as an API error at once; HTTP 500 (which OpenCode
/// retries forever) fails it as unreachable after kimaki's retry limit, with a retry status.
async fn model_errors_are_classified(w: &World, repo: &Path) {
    let bad = w.run("error-400", repo, "[[fake:error:400]]").await;
    let down = w.run("error-500", repo, "[[fake:error:500]]").await;
    let events = w.finish(&bad, FIRST_TURN).await;
    let (kind, message) = failure(&events);
    assert_eq!(kind, FailureKind::Api);
    assert!(message.contains("400"), "{message}");
    let events = w.finish(&down, FIRST_TURN).await;
    let (kind, message) = failure(&events);
    assert_eq!(kind, FailureKind::ModelUnreachable, "{message}");
    assert!(
        count(&events, |k| matches!(
            k,
            EventKind::Status { retry: Some(_), .. }
        )) >= 1,
        "{}",
        describe(&events)
    );
}

/// A new message interrupts a running one; the session keeps both prompts.
async fn interrupt_keeps_both_prompts(w: &World, repo: &Path) {
    let first = w
        .run("interrupt", repo, "first-words-kept [[fake:slow]]")
        .await;
    w.wait_for(&first, |k| is_delta(k).then_some(())).await;
    let second =
        w.h.enqueue_mode(
            new_job(
                "interrupt",
                "opencode",
                repo,
                "after-the-interrupt [[fake:text]]",
            ),
            EnqueueMode::Interrupt,
        )
        .await;
    let events = w.finish(&first, SOON).await;
    assert_eq!(
        outcome(&events),
        Outcome::Interrupted,
        "{}",
        describe(&events)
    );
    let session = started(&events).0;
    let events = w.finish(&second, SOON).await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert_eq!(started(&events).0, session);
    assert_eq!(assistant_text(&events), TEXT_REPLY);
    let seen = w.user_texts_of_requests_with("after-the-interrupt");
    assert!(
        seen.iter()
            .any(|t| t.iter().any(|t| t.contains("first-words-kept"))),
        "the interrupted prompt stays in the session: {seen:?}"
    );
}

/// Abort stops a slow run within kimaki's bound.
async fn abort_is_prompt(w: &World, repo: &Path) {
    let job = w.run("abort", repo, "[[fake:slow]]").await;
    w.wait_for(&job, |k| is_delta(k).then_some(())).await;
    let events = assert_cancel_honoured(&w.h, &job, CANCEL_BOUND).await;
    assert_no_repeats(&events);
}

/// An event-stream outage loses nothing and repeats nothing: the reply ends while the stream is
/// down, so the text and the end of the turn are only found by reconciling from the message list.
async fn stream_outage_is_reconciled(w: &World, repo: &Path) {
    let job = w.run("gap", repo, "[[fake:slow:100]]").await;
    w.h.wait_event(
        &job,
        FIRST_TURN,
        |k| matches!(k, EventKind::TextDelta { delta, .. } if delta.contains("slow-01")),
    )
    .await;
    // The reply needs ~2 s more; the stream stays down longer than that.
    let outage = Duration::from_secs(4);
    let cut = Instant::now();
    assert!(w.runner.drop_event_stream(outage).await);
    let events = w.finish(&job, SOON).await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    assert!(
        cut.elapsed() >= outage,
        "the turn cannot end before the stream is back"
    );
    let expected: String = (0..SLOW_CHUNKS).map(|n| format!("slow-{n:02} ")).collect();
    assert_eq!(assistant_text(&events).trim_end(), expected.trim_end());
    assert_eq!(
        count(&events, |k| matches!(
            k,
            EventKind::TextPart {
                stream: TextStream::Assistant,
                ..
            }
        )),
        1,
        "{}",
        describe(&events)
    );
}

/// A model that never answers trips the no-progress deadline. Started first and alone, so its
/// silence overlaps the other scenarios.
async fn start_silent_job(w: &World, repo: &Path) -> JobId {
    let job = w.run("hang", repo, "[[fake:hang]]").await;
    let mut seen = 0;
    for _ in 0..MAX_WAITED_REQUESTS {
        let requests = w.llm.wait_for_requests(seen + 1, FIRST_TURN).await;
        if requests.iter().any(|r| r.scenario == Some(Scenario::Hang)) {
            return job;
        }
        seen = requests.len();
    }
    panic!("the model never got the hanging request");
}

async fn silence_times_out(w: &World, job: JobId) {
    let events = w.finish(&job, FIRST_TURN).await;
    let (kind, message) = failure(&events);
    assert_eq!(kind, FailureKind::Timeout, "{message}");
    assert!(message.contains("no progress"), "{message}");
}

async fn probe_reports_the_pinned_version(w: &World) {
    let info = w.runner.probe().await;
    assert!(info.available, "{info:?}");
    assert_eq!(info.version.as_deref(), Some("1.18.33"));
    assert_eq!(info.reason, None, "the pinned version is the tested one");
}

/// Killing the server mid-job fails that job with a clear reason; the next job of the lane gets
/// a fresh server and continues the session.
async fn server_crash_fails_the_job_and_the_next_one_recovers(w: &World, repo: &Path) -> u32 {
    let job = w.run("crash", repo, "before-the-crash [[fake:slow]]").await;
    w.wait_for(&job, |k| is_delta(k).then_some(())).await;
    let (session, pid, _) = started(&w.h.events(&job));
    let pid = pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let events = w.finish(&job, SOON).await;
    let (kind, message) = failure(&events);
    assert_eq!(kind, FailureKind::RunnerCrashed);
    assert!(
        message.contains("OpenCode server stopped") && message.contains("signal 9"),
        "{message}"
    );

    let next = w.run("crash", repo, "[[fake:text]]").await;
    let events = w.finish(&next, FIRST_TURN).await;
    assert_eq!(
        outcome(&events),
        Outcome::Succeeded,
        "{}",
        describe(&events)
    );
    let (next_session, next_pid, _) = started(&events);
    assert_ne!(next_pid, Some(pid), "a fresh server");
    assert_eq!(next_session, session, "the session survives the restart");
    assert_eq!(assistant_text(&events), TEXT_REPLY);
    next_pid.unwrap()
}

/// Runs a scenario and reports how long it took (the file's wall time is budgeted).
async fn timed(name: &str, t0: Instant, scenario: impl std::future::Future<Output = ()>) {
    scenario.await;
    eprintln!("opencode: {name} done after {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_runner_drives_the_real_cli() {
    let t0 = Instant::now();
    let w = World::start(|_| {}).await;
    let shared = w.repo("shared", None);
    let silent = start_silent_job(&w, &shared).await;
    eprintln!(
        "opencode: server up, silent job waiting after {:?}",
        t0.elapsed()
    );
    tokio::join!(
        timed(
            "probe_reports_the_pinned_version",
            t0,
            probe_reports_the_pinned_version(&w)
        ),
        timed(
            "text_then_the_same_session",
            t0,
            text_then_the_same_session(&w, &shared)
        ),
        timed("tool_edits_files", t0, tool_edits_files(&w, &shared)),
        timed(
            "permission_once",
            t0,
            permission_answered(&w, "permission-once", PermissionDecision::Once)
        ),
        timed(
            "permission_always",
            t0,
            permission_answered(&w, "permission-always", PermissionDecision::Always)
        ),
        timed(
            "permission_reject",
            t0,
            permission_answered(&w, "permission-reject", PermissionDecision::Reject)
        ),
        timed(
            "policy_allow_approves_by_itself",
            t0,
            policy_allow_approves_by_itself(&w)
        ),
        timed("question_answered", t0, question_answered(&w, &shared)),
        timed(
            "model_errors_are_classified",
            t0,
            model_errors_are_classified(&w, &shared)
        ),
        timed(
            "interrupt_keeps_both_prompts",
            t0,
            interrupt_keeps_both_prompts(&w, &shared)
        ),
        timed("abort_is_prompt", t0, abort_is_prompt(&w, &shared)),
        timed("silence_times_out", t0, silence_times_out(&w, silent)),
    );
    eprintln!("opencode scenarios: {:?}", t0.elapsed());
    // Alone: the outage cuts the stream every run shares, and a part that was streaming during a
    // gap gets no more live deltas (only its final text), which would starve the scenarios
    // above that wait for a delta before interrupting or aborting.
    stream_outage_is_reconciled(&w, &shared).await;
    eprintln!("opencode stream outage: {:?}", t0.elapsed());
    let pid = server_crash_fails_the_job_and_the_next_one_recovers(&w, &shared).await;
    eprintln!("opencode crash and restart: {:?}", t0.elapsed());

    // Shutting down stops the server.
    w.h.shutdown().await;
    let gone = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        None,
    );
    assert_eq!(
        gone,
        Err(nix::errno::Errno::ESRCH),
        "the server outlived shutdown"
    );
}

/// A missing program fails the job as unavailable, with the install command, and `probe` says so;
/// a malformed model name fails before the program is even looked for.
#[tokio::test]
async fn a_missing_opencode_fails_with_the_install_hint() {
    let root = tempfile::tempdir().unwrap();
    let runner = Arc::new(OpencodeRunner::new(OpencodeConfig::new(
        root.path().join("no-such-opencode"),
        root.path().join("state"),
    )));
    let info = runner.probe().await;
    assert!(!info.available);
    assert!(
        info.reason
            .as_deref()
            .unwrap()
            .contains("npm install -g opencode-ai@1.18.33"),
        "{info:?}"
    );
    let h = QueueHarness::start(
        &root.path().join("store"),
        vec![(runner as Arc<dyn Runner>, 1)],
    )
    .await;
    // A model that is not `provider/model` is refused before anything starts.
    let mut job = new_job("bad-model", "opencode", root.path(), "hello");
    job.model = Some("gpt-4o".into());
    let job = h.enqueue(job).await;
    let events = h.wait_finished(&job, SOON).await;
    assert_event_contract(&events);
    let (kind, message) = failure(&events);
    assert_eq!(kind, FailureKind::Api);
    assert!(message.contains("provider/model"), "{message}");

    let job = h
        .enqueue(new_job("missing", "opencode", root.path(), "hello"))
        .await;
    let events = h.wait_finished(&job, SOON).await;
    assert_event_contract(&events);
    let (kind, message) = failure(&events);
    assert_eq!(kind, FailureKind::RunnerUnavailable);
    assert!(
        message.contains("npm install -g opencode-ai@1.18.33"),
        "{message}"
    );
    h.shutdown().await;
}
