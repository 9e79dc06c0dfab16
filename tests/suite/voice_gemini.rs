//! The Gemini provider against the fake transcription server: request shape (path, key header,
//! inline audio, forced function call), answer parsing, model fallback on 429, the one WAV retry
//! on a format 400, and how each failure is classified.

use std::time::Duration;

use kimaki::adapters::voice::codec::wav::decode_wav;
use kimaki::adapters::voice::transcribe::{
    GeminiConfig, GeminiProvider, Provider, TranscribeError, TranscriptionContext,
};
use kimaki::config::Secret;
use kimaki::core::FailureKind;

use crate::support::fake_transcriber::{clip_of, fixture, FakeTranscriber, Reply, Route};

const KEY: &str = "AIzaFakeKeyForTests0123456789";
const MODELS: [&str; 2] = ["gemini-2.5-flash", "gemini-2.5-flash-lite"];

fn provider(fake: &FakeTranscriber, timeout: Duration) -> GeminiProvider {
    GeminiProvider::new(
        GeminiConfig {
            base_url: fake.base_url(),
            api_key: Secret::new(KEY),
            models: MODELS.iter().map(|m| m.to_string()).collect(),
            timeout,
        },
        reqwest::Client::new(),
    )
}

fn context() -> TranscriptionContext {
    TranscriptionContext {
        file_tree: "src/\n  main.rs\n  session_manager.rs\n".into(),
        vocabulary: "main.rs, session_manager.rs".into(),
        conversation: vec!["alice: look at parse_config".into()],
        agents: vec!["build".into(), "plan".into()],
        language: None,
    }
}

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_request_carries_the_audio_the_key_header_and_a_forced_call() {
    let fake = FakeTranscriber::start().await;
    fake.script_gemini([Reply::gemini_call(
        "Rename parse_config.",
        true,
        Some("plan"),
    )]);
    let t = provider(&fake, T)
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap();
    assert_eq!(t.text, "Rename parse_config.");
    assert!(t.queue_message);
    assert_eq!(t.agent.as_deref(), Some("plan"));
    assert_eq!(t.source, "gemini/gemini-2.5-flash");

    let requests = fake.requests_to(Route::Gemini);
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(r.query, None, "the key never goes in the URL");
    assert_eq!(r.header("x-goog-api-key"), Some(KEY));
    let (mime, data) = r.inline_data();
    assert_eq!(mime, "audio/ogg");
    assert_eq!(
        data,
        std::fs::read(fixture("short.ogg")).unwrap(),
        "the original bytes, unchanged"
    );
    assert_eq!(r.json["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
    assert_eq!(
        r.json["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"][0],
        "transcriptionResult"
    );
    let decl = &r.json["tools"][0]["functionDeclarations"][0];
    assert_eq!(decl["name"], "transcriptionResult");
    assert_eq!(decl["parameters"]["required"][0], "transcription");
    assert_eq!(
        r.json["generationConfig"]["thinkingConfig"]["thinkingBudget"],
        1024
    );
    let prompt = r.prompt();
    assert!(prompt.contains("[inaudible audio]"));
    assert!(prompt.contains("<file_tree>\nsrc/\n  main.rs\n  session_manager.rs\n</file_tree>"));
    assert!(prompt.contains("<conversation>\nalice: look at parse_config\n</conversation>"));
    assert!(prompt.contains("<agents>\nbuild\nplan\n</agents>"));
    fake.stop().await;
}

#[tokio::test]
async fn a_text_answer_is_used_without_its_thoughts() {
    let fake = FakeTranscriber::start().await;
    fake.script_gemini([Reply::gemini_text(
        &[
            ("The user says to run tests", true),
            ("Run cargo test. ", false),
            ("Queue.", false),
        ],
        "STOP",
    )]);
    let t = provider(&fake, T)
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap();
    assert_eq!(t.text, "Run cargo test.");
    assert!(
        t.queue_message,
        "a spoken trailing \"queue\" is honoured in text answers"
    );
    assert_eq!(t.agent, None);
    fake.stop().await;
}

#[tokio::test]
async fn a_rate_limited_model_hands_over_to_the_next() {
    let fake = FakeTranscriber::start().await;
    fake.script_gemini([
        Reply::gemini_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for gemini-2.5-flash",
        ),
        Reply::gemini_call("from the lite model", false, None),
    ]);
    let t = provider(&fake, T)
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap();
    assert_eq!(t.text, "from the lite model");
    assert_eq!(t.source, "gemini/gemini-2.5-flash-lite");
    let models: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.model().to_owned())
        .collect();
    assert_eq!(models, MODELS);

    // Every model limited: a retryable error for the chain's backoff.
    fake.script_gemini([
        Reply::gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"),
        Reply::gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"),
    ]);
    let err = provider(&fake, T)
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap_err();
    assert!(err.is_rate_limited() && err.is_retryable(), "{err}");
    assert_eq!(
        err.to_string(),
        "gemini answered HTTP 429: RESOURCE_EXHAUSTED: Quota exceeded"
    );
    assert_eq!(fake.requests().len(), 4);
    fake.stop().await;
}

#[tokio::test]
async fn a_format_rejection_is_retried_exactly_once_as_wav() {
    let fake = FakeTranscriber::start().await;
    let rejection =
        Reply::gemini_error(400, "INVALID_ARGUMENT", "Unsupported MIME type: audio/ogg");
    fake.script_gemini([
        rejection.clone(),
        Reply::gemini_call("via wav", false, None),
    ]);
    let t = provider(&fake, T)
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap();
    assert_eq!(t.text, "via wav");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].inline_data().0, "audio/ogg");
    let (mime, wav) = requests[1].inline_data();
    assert_eq!(mime, "audio/wav");
    let pcm = decode_wav(&wav).unwrap();
    assert_eq!(
        (pcm.rate, pcm.samples.len()),
        (16_000, 171_121),
        "the whole clip at 16 kHz"
    );
    assert_eq!(requests[1].model(), "gemini-2.5-flash", "same model");

    // Rejected again: permanent, and no third attempt.
    fake.script_gemini([rejection.clone(), rejection]);
    let err = provider(&fake, T)
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TranscribeError::Status { status: 400, .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(fake.requests().len(), 4);

    // An unrelated 400 is not retried at all.
    fake.script_gemini([Reply::gemini_error(
        400,
        "INVALID_ARGUMENT",
        "Request contains an invalid argument.",
    )]);
    provider(&fake, T)
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap_err();
    assert_eq!(fake.requests().len(), 5);
    fake.stop().await;
}

#[tokio::test]
async fn a_rejected_key_is_permanent_and_never_shown() {
    let fake = FakeTranscriber::start().await;
    fake.script_gemini([Reply::gemini_error(
        401,
        "UNAUTHENTICATED",
        &format!("bad key {KEY}"),
    )]);
    let err = provider(&fake, T)
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TranscribeError::Auth { status: 401, .. }),
        "{err}"
    );
    let failure = err.to_failure();
    assert_eq!(failure.kind, FailureKind::Auth);
    assert!(!failure.retryable);
    assert!(!failure.message.contains(KEY) && !format!("{err:?}").contains(KEY));
    assert!(
        failure.message.contains("GEMINI_API_KEY"),
        "{}",
        failure.message
    );
    assert_eq!(fake.requests().len(), 1, "no model fallback for a bad key");

    // Google reports an invalid key as 400 API_KEY_INVALID.
    fake.script_gemini([Reply::gemini_error(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
    )]);
    let err = provider(&fake, T)
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TranscribeError::Auth { status: 400, .. }),
        "{err}"
    );
    fake.stop().await;
}

#[tokio::test]
async fn blocked_answers() {
    let fake = FakeTranscriber::start().await;
    fake.script_gemini([
        Reply::json(200, serde_json::json!({ "candidates": [] })),
        Reply::json(
            200,
            serde_json::json!({ "promptFeedback": { "blockReason": "PROHIBITED_CONTENT" } }),
        ),
    ]);
    for reason in ["no candidates in the answer", "PROHIBITED_CONTENT"] {
        let err = provider(&fake, T)
            .transcribe(&clip_of("short.ogg"), &context())
            .await
            .unwrap_err();
        match &err {
            TranscribeError::Blocked { reason: r, .. } => assert_eq!(r, reason),
            other => panic!("{other:?}"),
        }
        assert!(!err.is_retryable());
    }
    fake.stop().await;
}

#[tokio::test]
async fn max_tokens_keeps_the_text_so_far() {
    let fake = FakeTranscriber::start().await;
    fake.script_gemini([Reply::gemini_text(
        &[("Please open the file main.rs and", false)],
        "MAX_TOKENS",
    )]);
    let t = provider(&fake, T)
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap();
    assert_eq!(t.text, "Please open the file main.rs and");
    fake.stop().await;
}

#[tokio::test]
async fn a_silent_server_times_out_retryably() {
    let fake = FakeTranscriber::start().await;
    fake.script_gemini([Reply::hang()]);
    let err = provider(&fake, Duration::from_millis(300))
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap_err();
    assert!(matches!(err, TranscribeError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.to_failure().kind, FailureKind::Timeout);
    fake.stop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_retryable() {
    let fake = FakeTranscriber::start().await;
    let base = fake.base_url();
    fake.stop().await;
    let p = GeminiProvider::new(
        GeminiConfig {
            base_url: base,
            api_key: Secret::new(KEY),
            models: vec!["gemini-2.5-flash".into()],
            timeout: T,
        },
        reqwest::Client::new(),
    );
    let err = p
        .transcribe(&clip_of("short.ogg"), &context())
        .await
        .unwrap_err();
    assert!(matches!(err, TranscribeError::Connect { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.to_failure().kind, FailureKind::ModelUnreachable);
    assert!(!err.to_string().contains(KEY));
}
