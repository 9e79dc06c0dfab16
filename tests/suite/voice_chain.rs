//! The provider chain (order, retries with backoff, hand-over, combined failure) with scripted
//! providers, and `VoiceTranscriber`'s checks before any provider is called: size and duration
//! caps, corrupt or unsupported audio, the workspace context it passes on.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kimaki::adapters::voice::transcribe::{
    AudioClip, Chain, GeminiConfig, GeminiProvider, Provider, ProviderTranscript, RetryPolicy,
    TranscribeError, TranscriptionContext,
};
use kimaki::adapters::voice::{ProviderConfig, VoiceConfig, VoiceTranscriber};
use kimaki::config::Secret;
use kimaki::core::{
    Attachment, FailureKind, Job, JobId, JobSource, LaneId, PermissionPolicy, RunnerId,
    Transcriber, VoiceInput,
};

use crate::support::fake_transcriber::{clip_of, fixture, FakeTranscriber, DEFAULT_TEXT};

/// Answers from a script and counts its calls.
struct Scripted {
    name: &'static str,
    answers: Mutex<VecDeque<Result<&'static str, TranscribeError>>>,
    calls: Mutex<Vec<TranscriptionContext>>,
}

impl Scripted {
    fn new(name: &'static str, answers: Vec<Result<&'static str, TranscribeError>>) -> Arc<Self> {
        Arc::new(Self {
            name,
            answers: Mutex::new(answers.into()),
            calls: Mutex::new(Vec::new()),
        })
    }
    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

#[async_trait]
impl Provider for Scripted {
    fn name(&self) -> &'static str {
        self.name
    }
    async fn transcribe(
        &self,
        _clip: &AudioClip,
        ctx: &TranscriptionContext,
    ) -> Result<ProviderTranscript, TranscribeError> {
        self.calls.lock().unwrap().push(ctx.clone());
        let answer = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .expect("scripted answer");
        answer.map(|text| ProviderTranscript {
            text: text.into(),
            queue_message: false,
            agent: None,
            source: format!("{}/model", self.name),
        })
    }
}

fn unavailable() -> TranscribeError {
    TranscribeError::Status {
        provider: "x",
        status: 503,
        message: "overloaded".into(),
    }
}

fn bad_key() -> TranscribeError {
    TranscribeError::Auth {
        provider: "x",
        status: 401,
        setting: "GEMINI_API_KEY",
    }
}

/// Millisecond backoff: the policy is exercised without slowing the suite.
fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
    }
}

fn chain(providers: &[&Arc<Scripted>], retry: RetryPolicy) -> Chain {
    Chain::new(
        providers
            .iter()
            .map(|p| (*p).clone() as Arc<dyn Provider>)
            .collect(),
        retry,
    )
}

#[tokio::test]
async fn retryable_errors_are_retried_then_succeed() {
    let a = Scripted::new(
        "a",
        vec![Err(unavailable()), Err(unavailable()), Ok("third time")],
    );
    let b = Scripted::new("b", vec![]);
    let t = chain(&[&a, &b], quick(3))
        .transcribe(&clip_of("short.ogg"), &TranscriptionContext::default())
        .await
        .unwrap();
    assert_eq!(t.text, "third time");
    assert_eq!((a.calls(), b.calls()), (3, 0));
}

#[tokio::test]
async fn a_permanent_error_hands_over_without_retrying() {
    let a = Scripted::new("a", vec![Err(bad_key())]);
    let b = Scripted::new("b", vec![Ok("from b")]);
    let c = chain(&[&a, &b], quick(3));
    assert_eq!(c.names(), vec!["a", "b"]);
    let t = c
        .transcribe(&clip_of("short.ogg"), &TranscriptionContext::default())
        .await
        .unwrap();
    assert_eq!((t.text.as_str(), t.source.as_str()), ("from b", "b/model"));
    assert_eq!((a.calls(), b.calls()), (1, 1));
}

#[tokio::test]
async fn exhausted_retries_hand_over_and_all_failures_are_reported() {
    let a = Scripted::new("a", vec![Err(unavailable()), Err(unavailable())]);
    let b = Scripted::new("b", vec![Err(bad_key())]);
    let err = chain(&[&a, &b], quick(2))
        .transcribe(&clip_of("short.ogg"), &TranscriptionContext::default())
        .await
        .unwrap_err();
    assert_eq!((a.calls(), b.calls()), (2, 1));
    assert!(
        matches!(err, TranscribeError::AllFailed(ref all) if all.len() == 2),
        "{err}"
    );
    assert!(err.is_retryable(), "one provider may recover");
    assert_eq!(
        err.to_string(),
        "every transcription provider failed: a: x answered HTTP 503: overloaded; \
         b: x rejected the API key (HTTP 401); set a valid GEMINI_API_KEY (kimaki init)"
    );
    let failure = err.to_failure();
    assert_eq!(failure.kind, FailureKind::Api);
    assert!(failure.retryable);

    let only = Scripted::new("only", vec![Err(bad_key())]);
    let err = chain(&[&only], quick(3))
        .transcribe(&clip_of("short.ogg"), &TranscriptionContext::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TranscribeError::Auth { .. }),
        "one provider: its own error"
    );
}

fn job(workspace: &Path) -> Job {
    Job {
        id: JobId::new("job-voice"),
        lane: LaneId::new("discord:thread"),
        source: JobSource::Discord,
        workspace: workspace.to_owned(),
        runner: RunnerId::new("echo"),
        prompt: String::new(),
        attachments: Vec::new(),
        model: None,
        agent: None,
        permission_policy: PermissionPolicy::Ask,
        timeout_ms: None,
        reply_to: None,
        meta: serde_json::from_value(serde_json::json!({ "agents": ["build", "plan"] })).unwrap(),
        created_at: 0,
        voice: None,
        notify_only: false,
    }
}

fn voice(path: &Path) -> VoiceInput {
    VoiceInput {
        audio: Attachment {
            path: path.to_owned(),
            filename: "voice-message.ogg".into(),
            mime: Some("audio/ogg".into()),
        },
        preamble: "Voice message transcription from Discord user alice:".into(),
        context: vec!["bob: the bug is in parse_config".into()],
    }
}

fn transcriber_with(provider: &Arc<Scripted>, edit: impl Fn(&mut VoiceConfig)) -> VoiceTranscriber {
    let mut config = VoiceConfig::new(Vec::new());
    edit(&mut config);
    VoiceTranscriber::with_chain(chain(&[provider], quick(1)), &config)
}

#[tokio::test]
async fn bad_audio_and_limits_fail_before_any_provider_is_called() {
    let dir = tempfile::tempdir().unwrap();
    let p = Scripted::new("p", vec![]);
    let t = transcriber_with(&p, |_| {});
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (write("empty.ogg", b""), "the voice message cannot be decoded: the audio file is empty"),
        (
            write("garbage.ogg", &[7u8; 3_000]),
            "unsupported audio: the file is not a recognised audio format (expected an Ogg/Opus voice message)",
        ),
        (
            write("cut.ogg", &std::fs::read(fixture("short.ogg")).unwrap()[..100]),
            "the voice message cannot be decoded: the Ogg/Opus data is corrupt: the file ends in the middle of an Ogg page",
        ),
        (dir.path().join("missing.ogg"), "cannot read the voice message: voice-message.ogg: No such file or directory (os error 2)"),
    ];
    for (path, message) in cases {
        let failure = t
            .transcribe(&job(dir.path()), &voice(&path))
            .await
            .unwrap_err();
        assert_eq!(failure.message, message);
        assert!(!failure.retryable, "{message}");
    }

    let short = fixture("short.ogg");
    let small = transcriber_with(&p, |c| c.max_bytes = 40_000);
    let failure = small
        .transcribe(&job(dir.path()), &voice(&short))
        .await
        .unwrap_err();
    assert_eq!(
        failure.message,
        "the voice message is 43 KB; the limit is 39 KB"
    );
    let five_seconds = transcriber_with(&p, |c| c.max_duration = Duration::from_secs(5));
    let failure = five_seconds
        .transcribe(&job(dir.path()), &voice(&short))
        .await
        .unwrap_err();
    assert_eq!(
        failure.message,
        "the voice message lasts 11 s; the limit is 5 s"
    );
    assert_eq!(failure.kind, FailureKind::Protocol);
    assert_eq!(p.calls(), 0, "no provider saw bad input");
}

#[tokio::test]
async fn the_workspace_gives_the_file_tree_and_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    for f in [
        "src/main.rs",
        "src/session_manager.rs",
        "Cargo.toml",
        "target/debug/junk",
    ] {
        let p = repo.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "x").unwrap();
    }
    std::fs::write(repo.join(".gitignore"), "target/\n").unwrap();
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "src/main.rs", "Cargo.toml", ".gitignore"]);
    let p = Scripted::new("p", vec![Ok("ok")]);
    let t = transcriber_with(&p, |c| c.language = Some("en".into()));
    let got = t
        .transcribe(&job(&repo), &voice(&fixture("short.ogg")))
        .await
        .unwrap();
    assert_eq!(got.provider, "p/model");
    let ctx = p.calls.lock().unwrap()[0].clone();
    // Tracked and untracked-but-not-ignored files; ignored build output is left out.
    assert_eq!(
        ctx.file_tree,
        ".gitignore\nCargo.toml\nsrc/\n  main.rs\n  session_manager.rs\n"
    );
    assert_eq!(
        ctx.vocabulary,
        "parse_config, Cargo.toml, main.rs, session_manager.rs"
    );
    assert_eq!(ctx.conversation, vec!["bob: the bug is in parse_config"]);
    assert_eq!(ctx.agents, vec!["build", "plan"]);
    assert_eq!(ctx.language.as_deref(), Some("en"));
}

#[tokio::test]
async fn other_audio_formats_go_to_the_provider_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeTranscriber::start().await;
    let gemini = GeminiProvider::new(
        GeminiConfig {
            base_url: fake.base_url(),
            api_key: Secret::new("AIzaFakeKeyForTests0123456789"),
            models: vec!["gemini-2.5-flash".into()],
            timeout: Duration::from_secs(10),
        },
        reqwest::Client::new(),
    );
    let config = VoiceConfig::new(Vec::<ProviderConfig>::new());
    let t = VoiceTranscriber::with_chain(Chain::new(vec![Arc::new(gemini)], quick(1)), &config);
    let mut mp3 = b"ID3\x04\0\0\0\0\0\0".to_vec();
    mp3.extend(std::iter::repeat_n(0x55u8, 2_000));
    let path = dir.path().join("memo.mp3");
    std::fs::write(&path, &mp3).unwrap();
    let got = t.transcribe(&job(dir.path()), &voice(&path)).await.unwrap();
    assert_eq!(got.text, DEFAULT_TEXT);
    let (mime, data) = fake.requests()[0].inline_data();
    assert_eq!((mime.as_str(), data), ("audio/mpeg", mp3));
    fake.stop().await;
}
