//! A voice message whose transcription fails (here: Gemini's quota) shows the error with a
//! **Retry** button; the recording is kept, so a click — even after kimaki restarted — transcribes
//! it again in its lane, shows the transcript and runs the agent on it. A second click does not
//! queue it twice; a corrupt recording offers no retry.

use std::sync::Arc;
use std::time::Duration;

use kimaki::adapters::voice::transcribe::{GeminiConfig, RetryPolicy};
use kimaki::adapters::voice::{ProviderConfig, VoiceConfig, VoiceTranscriber};
use kimaki::config::Secret;
use kimaki::core::Transcriber;
use pretty_assertions::assert_eq;

use crate::support::discord_harness::{Kimaki, Options, QUICK};
use crate::support::fake_transcriber::{fixture, FakeTranscriber, Reply, DEFAULT_TEXT};

/// The real transcriber against the fake Gemini: one model and one attempt, so each
/// transcription is exactly one request.
fn transcriber(fake: &FakeTranscriber) -> Arc<dyn Transcriber> {
    let mut config = VoiceConfig::new(vec![ProviderConfig::Gemini(GeminiConfig {
        base_url: fake.base_url(),
        api_key: Secret::new("AIzaFakeKeyForTests0123456789"),
        models: vec!["gemini-2.5-flash".into()],
        timeout: Duration::from_secs(10),
    })]);
    config.retry = RetryPolicy {
        attempts: 1,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(5),
    };
    Arc::new(VoiceTranscriber::new(config).unwrap())
}

fn ack_text(a: &crate::support::discord_twin::InteractionAck) -> String {
    a.data
        .as_ref()
        .and_then(|d| d["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_failed_transcription_is_retried_from_its_button_after_a_restart() {
    let fake = FakeTranscriber::start().await;
    fake.script_gemini([Reply::gemini_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for this project",
    )]);
    let mut k = Kimaki::start_with(Options {
        transcriber: Some(transcriber(&fake)),
        ..Options::default()
    })
    .await;
    let alice = k.twin.user("alice");
    let sent = alice
        .in_channel(k.channel)
        .send_voice(std::fs::read(fixture("short.ogg")).unwrap(), 1.0);
    let thread = k.thread_of(sent).await;
    let failed = k
        .twin
        .wait_bot_message(thread, |m| m.content.starts_with('✗'), QUICK)
        .await;
    assert!(
        failed
            .content
            .starts_with("✗ Could not transcribe the voice message: "),
        "{}",
        failed.content
    );
    assert!(failed.content.contains("Retry"), "{}", failed.content);
    let retry = format!("voice-retry:discord-{sent}");
    assert_eq!(
        failed.components[0]["components"][0]["custom_id"], retry,
        "{:?}",
        failed.components
    );
    assert!(k.script.prompts().is_empty(), "nothing ran");

    // The recording survives a restart; the click queues it again.
    k.restart().await;
    let click = alice.in_thread(thread).click(failed.id, &retry);
    let a = k.twin.wait_interaction_ack(click, QUICK).await;
    assert_eq!(
        ack_text(&a),
        "🔁 **alice** asked to transcribe the voice message again."
    );
    let shown = k
        .twin
        .wait_bot_message(thread, |m| m.content.starts_with("📝"), QUICK)
        .await;
    assert_eq!(
        shown.content,
        format!("📝 **Transcribed message:** {DEFAULT_TEXT}")
    );
    k.bot_message_after(thread, shown.id, |m| {
        m.content == "⬥ echo: Voice message transcription from Discord user alice:"
    })
    .await;
    let prompt = k.script.prompts().pop().unwrap();
    assert!(prompt.contains(DEFAULT_TEXT), "{prompt}");

    // Clicking again does not run it twice.
    let again = alice.in_thread(thread).click(failed.id, &retry);
    let a = k.twin.wait_interaction_ack(again, QUICK).await;
    assert_eq!(ack_text(&a), "This voice message is already being retried.");
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(k.script.prompts().len(), 1);
    k.finish().await;
    fake.stop().await;
}

#[tokio::test]
async fn a_corrupt_recording_offers_no_retry() {
    let fake = FakeTranscriber::start().await;
    let k = Kimaki::start_with(Options {
        transcriber: Some(transcriber(&fake)),
        ..Options::default()
    })
    .await;
    let sent = k
        .twin
        .user("alice")
        .in_channel(k.channel)
        .send_voice(b"OggS not really opus".to_vec(), 1.0);
    let thread = k.thread_of(sent).await;
    let failed = k
        .twin
        .wait_bot_message(thread, |m| m.content.starts_with('✗'), QUICK)
        .await;
    assert!(failed.components.is_empty(), "{:?}", failed.components);
    assert!(fake.requests().is_empty());
    k.finish().await;
    fake.stop().await;
}
