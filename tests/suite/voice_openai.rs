//! The OpenAI provider against the fake transcription server: the multipart fields, the
//! vocabulary prompt within 800 characters, and failure classification.

use std::time::Duration;

use kimaki::adapters::voice::transcribe::{
    OpenAiConfig, OpenAiProvider, Provider, TranscribeError, TranscriptionContext,
};
use kimaki::config::Secret;
use kimaki::core::FailureKind;

use crate::support::fake_transcriber::{clip_of, fixture, FakeTranscriber, Reply, Route};

const KEY: &str = "sk-proj-FakeKeyForTests0123456789";
const T: Duration = Duration::from_secs(10);

fn provider(fake: &FakeTranscriber) -> OpenAiProvider {
    OpenAiProvider::new(
        OpenAiConfig {
            base_url: fake.base_url(),
            api_key: Secret::new(KEY),
            model: "gpt-4o-mini-transcribe".into(),
            timeout: T,
        },
        reqwest::Client::new(),
    )
}

#[tokio::test]
async fn the_multipart_request_has_every_field() {
    let fake = FakeTranscriber::start().await;
    fake.script_openai([Reply::openai_text(
        "Run the tests in session_manager. Queue.",
    )]);
    let words: Vec<String> = (0..400).map(|i| format!("ident_{i}")).collect();
    let ctx = TranscriptionContext {
        vocabulary: words.join(", "),
        language: Some("en".into()),
        ..Default::default()
    };
    let t = provider(&fake)
        .transcribe(&clip_of("short.ogg"), &ctx)
        .await
        .unwrap();
    assert_eq!(t.text, "Run the tests in session_manager.");
    assert!(t.queue_message);
    assert_eq!(t.agent, None);
    assert_eq!(t.source, "openai/gpt-4o-mini-transcribe");

    let requests = fake.requests_to(Route::OpenAi);
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/v1/audio/transcriptions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
    let file = r.part("file").expect("file part");
    assert_eq!(file.filename.as_deref(), Some("voice-message.ogg"));
    assert_eq!(file.content_type.as_deref(), Some("audio/ogg"));
    assert_eq!(file.data, std::fs::read(fixture("short.ogg")).unwrap());
    assert_eq!(
        r.text_part("model").as_deref(),
        Some("gpt-4o-mini-transcribe")
    );
    assert_eq!(r.text_part("response_format").as_deref(), Some("json"));
    assert_eq!(r.text_part("language").as_deref(), Some("en"));
    let prompt = r.text_part("prompt").expect("prompt part");
    assert!(
        prompt.chars().count() <= 800,
        "{} chars",
        prompt.chars().count()
    );
    assert!(
        prompt.starts_with("Vocabulary: ident_0, ident_1, "),
        "{prompt}"
    );
    assert!(prompt.len() > 700, "the budget is used");
    fake.stop().await;
}

#[tokio::test]
async fn no_vocabulary_no_prompt() {
    let fake = FakeTranscriber::start().await;
    provider(&fake)
        .transcribe(&clip_of("short.ogg"), &TranscriptionContext::default())
        .await
        .unwrap();
    let r = &fake.requests()[0];
    assert!(r.part("prompt").is_none());
    assert!(r.part("language").is_none());
    fake.stop().await;
}

#[tokio::test]
async fn failures_are_classified_and_keep_the_key_out() {
    let fake = FakeTranscriber::start().await;
    fake.script_openai([
        Reply::openai_error(401, &format!("Incorrect API key provided: {KEY}")),
        Reply::openai_error(
            500,
            "The server had an error while processing your request.",
        ),
        Reply::openai_error(400, "Invalid file format."),
        Reply::json(200, serde_json::json!({ "transcript": "wrong field" })),
    ]);
    let clip = clip_of("short.ogg");
    let ctx = TranscriptionContext::default();

    let auth = provider(&fake).transcribe(&clip, &ctx).await.unwrap_err();
    assert!(
        matches!(auth, TranscribeError::Auth { status: 401, .. }),
        "{auth}"
    );
    assert_eq!(auth.to_failure().kind, FailureKind::Auth);
    assert!(!auth.to_string().contains(KEY) && auth.to_string().contains("OPENAI_API_KEY"));

    let server = provider(&fake).transcribe(&clip, &ctx).await.unwrap_err();
    assert!(server.is_retryable(), "{server}");

    let format = provider(&fake).transcribe(&clip, &ctx).await.unwrap_err();
    assert!(!format.is_retryable());
    assert_eq!(
        format.to_string(),
        "openai answered HTTP 400: Invalid file format."
    );

    let shape = provider(&fake).transcribe(&clip, &ctx).await.unwrap_err();
    assert!(matches!(shape, TranscribeError::Protocol { .. }), "{shape}");
    fake.stop().await;
}
