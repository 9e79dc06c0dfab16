//! Voice jobs through the real queue and dispatcher, with the real `VoiceTranscriber` (Gemini
//! provider against the fake server) and the echo runner: the transcript event, the prompt the
//! runner gets, lane order kept while transcribing, and a corrupt recording failing only its own
//! job.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kimaki::adapters::voice::transcribe::{GeminiConfig, RetryPolicy};
use kimaki::adapters::voice::{ProviderConfig, VoiceConfig, VoiceTranscriber};
use kimaki::config::Secret;
use kimaki::core::{
    Attachment, EventKind, FailureKind, JobSource, NewJob, Outcome, Runner, Transcriber, VoiceInput,
};

use crate::support::echo_runner::EchoRunner;
use crate::support::fake_transcriber::{fixture, FakeTranscriber, Reply, DEFAULT_TEXT};
use crate::support::queue_harness::{new_job, outcome, QueueHarness};

const T: Duration = Duration::from_secs(20);
const LANE: &str = "discord:thread-1";
const PREAMBLE: &str = "Voice message transcription from Discord user alice:";

fn transcriber(fake: &FakeTranscriber) -> Arc<dyn Transcriber> {
    let mut config = VoiceConfig::new(vec![ProviderConfig::Gemini(GeminiConfig {
        base_url: fake.base_url(),
        api_key: Secret::new("AIzaFakeKeyForTests0123456789"),
        models: vec!["gemini-2.5-flash".into(), "gemini-2.5-flash-lite".into()],
        timeout: Duration::from_secs(10),
    })]);
    config.retry = RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(5),
    };
    Arc::new(VoiceTranscriber::new(config).unwrap())
}

/// A voice job as the Discord adapter will enqueue it: the recording saved locally.
fn voice_job(workspace: &Path, recording: &Path) -> NewJob {
    let mut job = new_job(LANE, "echo", workspace, "");
    job.source = JobSource::Discord;
    job.voice = Some(VoiceInput {
        audio: Attachment {
            path: recording.to_owned(),
            filename: "voice-message.ogg".into(),
            mime: Some("audio/ogg".into()),
        },
        preamble: PREAMBLE.into(),
        context: vec!["alice: the parser is slow".into()],
    });
    job
}

#[tokio::test]
async fn a_voice_note_becomes_the_prompt_and_keeps_its_place_in_the_lane() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("voice-message.ogg");
    std::fs::copy(fixture("short.ogg"), &recording).unwrap();
    let fake = FakeTranscriber::start().await;
    let echo = EchoRunner::new();
    let h = QueueHarness::start_with_transcriber(
        &dir.path().join("store"),
        vec![(echo.clone() as Arc<dyn Runner>, 4)],
        transcriber(&fake),
    )
    .await;

    // Hold the transcription: the text job behind the voice note must wait for it.
    fake.hold();
    let voice = h.enqueue(voice_job(dir.path(), &recording)).await;
    let text = h
        .enqueue(new_job(LANE, "echo", dir.path(), "and then run the tests"))
        .await;
    fake.wait_for_requests(1, T).await;
    h.wait_event(
        &voice,
        T,
        |k| matches!(k, EventKind::Status { message, .. } if message.contains("Transcribing")),
    )
    .await;
    assert!(
        echo.prompts().is_empty(),
        "nothing ran while the voice note was transcribed"
    );
    fake.release();

    let events = h.wait_finished(&voice, T).await;
    assert_eq!(outcome(&events), Outcome::Succeeded);
    let transcribed = events.iter().find_map(|e| match &e.kind {
        EventKind::Transcribed { text, provider } => Some((text.clone(), provider.clone())),
        _ => None,
    });
    assert_eq!(
        transcribed,
        Some((
            DEFAULT_TEXT.to_owned(),
            "gemini/gemini-2.5-flash".to_owned()
        ))
    );
    assert_eq!(
        outcome(&h.wait_finished(&text, T).await),
        Outcome::Succeeded
    );
    assert_eq!(
        echo.prompts(),
        vec![
            format!("{PREAMBLE}\n{DEFAULT_TEXT}"),
            "and then run the tests".to_owned()
        ]
    );
    // The workspace and the conversation reached the provider.
    let prompt = fake.requests()[0].prompt();
    assert!(
        prompt.contains("<file_tree>") && prompt.contains("voice-message.ogg"),
        "{prompt}"
    );
    assert!(prompt.contains("alice: the parser is slow"));
    h.shutdown().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_corrupt_recording_fails_its_job_and_the_lane_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("voice-message.ogg");
    std::fs::write(&recording, b"OggS\0this is not a real page at all").unwrap();
    let fake = FakeTranscriber::start().await;
    let echo = EchoRunner::new();
    let h = QueueHarness::start_with_transcriber(
        &dir.path().join("store"),
        vec![(echo.clone() as Arc<dyn Runner>, 4)],
        transcriber(&fake),
    )
    .await;
    let voice = h.enqueue(voice_job(dir.path(), &recording)).await;
    let text = h
        .enqueue(new_job(LANE, "echo", dir.path(), "next message"))
        .await;

    let events = h.wait_finished(&voice, T).await;
    assert_eq!(outcome(&events), Outcome::Failed);
    let Some(EventKind::Finished {
        error: Some(failure),
        ..
    }) = events.last().map(|e| &e.kind)
    else {
        panic!("no failure in {:?}", events.last());
    };
    assert_eq!(failure.kind, FailureKind::Protocol);
    assert!(!failure.retryable);
    assert!(
        failure
            .message
            .starts_with("the voice message cannot be decoded: the Ogg/Opus data is corrupt"),
        "{}",
        failure.message
    );
    assert_eq!(
        outcome(&h.wait_finished(&text, T).await),
        Outcome::Succeeded
    );
    assert_eq!(echo.prompts(), vec!["next message"]);
    assert!(fake.requests().is_empty(), "no provider was called");
    h.shutdown().await;
    fake.stop().await;
}

#[tokio::test]
async fn an_inaudible_note_is_dropped_and_a_provider_outage_fails_retryably() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("voice-message.ogg");
    std::fs::copy(fixture("short.ogg"), &recording).unwrap();
    let fake = FakeTranscriber::start().await;
    let echo = EchoRunner::new();
    let h = QueueHarness::start_with_transcriber(
        &dir.path().join("store"),
        vec![(echo.clone() as Arc<dyn Runner>, 4)],
        transcriber(&fake),
    )
    .await;
    fake.script_gemini([Reply::gemini_call("[inaudible audio]", false, None)]);
    let quiet = h.enqueue(voice_job(dir.path(), &recording)).await;
    let events = h.wait_finished(&quiet, T).await;
    assert_eq!(
        outcome(&events),
        Outcome::Cancelled,
        "nothing to do, not an error"
    );
    assert!(echo.prompts().is_empty());

    // Two attempts per the retry policy; a 503 is no rate limit, so the model stays the same.
    let unavailable = Reply::gemini_error(503, "UNAVAILABLE", "The model is overloaded.");
    fake.script_gemini(std::iter::repeat_n(unavailable, 2));
    let down = h.enqueue(voice_job(dir.path(), &recording)).await;
    let events = h.wait_finished(&down, T).await;
    assert_eq!(outcome(&events), Outcome::Failed);
    let Some(EventKind::Finished {
        error: Some(failure),
        ..
    }) = events.last().map(|e| &e.kind)
    else {
        panic!("no failure");
    };
    assert_eq!(
        failure.message,
        "gemini answered HTTP 503: UNAVAILABLE: The model is overloaded."
    );
    assert!(failure.retryable, "the Retry button makes sense");
    assert_eq!(fake.requests().len(), 3);
    h.shutdown().await;
    fake.stop().await;
}
