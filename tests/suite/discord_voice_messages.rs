//! A voice message in a project channel starts a "Voice Message" thread; the recording is
//! downloaded and handed to the core's transcription step, the transcript is shown, and the
//! agent runs on it. Without a transcription provider the thread says how to add one.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kimaki::core::events::{Failure, FailureKind};
use kimaki::core::{Job, Transcriber, Transcript, VoiceInput};
use pretty_assertions::assert_eq;

use crate::support::discord_harness::{Kimaki, Options, QUICK};

/// Hears "please fix the build" in any recording, and keeps what it was given.
#[derive(Default)]
struct FakeTranscriber {
    heard: Mutex<Vec<(Vec<u8>, String)>>,
}

#[async_trait]
impl Transcriber for FakeTranscriber {
    async fn transcribe(&self, _job: &Job, voice: &VoiceInput) -> Result<Transcript, Failure> {
        let bytes = std::fs::read(&voice.audio.path)
            .map_err(|e| Failure::new(FailureKind::Internal, e.to_string()))?;
        self.heard
            .lock()
            .unwrap()
            .push((bytes, voice.preamble.clone()));
        Ok(Transcript {
            text: "please fix the build".into(),
            provider: "fake".into(),
            queue_message: false,
            agent: None,
        })
    }
}

#[tokio::test]
async fn a_voice_message_is_transcribed_shown_and_run() {
    let transcriber = Arc::new(FakeTranscriber::default());
    let k = Kimaki::start_with(Options {
        transcriber: Some(transcriber.clone()),
        ..Options::default()
    })
    .await;
    let sent = k
        .twin
        .user("alice")
        .in_channel(k.channel)
        .send_voice(b"OggS fake opus".to_vec(), 2.5);
    let thread = k.thread_of(sent).await;
    assert_eq!(k.twin.channel(thread).unwrap().name, "Voice Message");
    let shown = k
        .twin
        .wait_bot_message(thread, |m| m.content.starts_with("📝"), QUICK)
        .await;
    assert_eq!(
        shown.content,
        "📝 **Transcribed message:** please fix the build"
    );
    k.bot_message_after(thread, shown.id, |m| {
        m.content == "⬥ echo: Voice message transcription from Discord user alice:"
    })
    .await;
    let prompt = k.script.prompts().pop().unwrap();
    assert!(prompt.contains("\nplease fix the build\n"), "{prompt}");
    assert!(
        !prompt.contains("voice-message.ogg"),
        "the recording is not listed as a file"
    );
    let heard = transcriber.heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 1);
    assert_eq!(heard[0].0, b"OggS fake opus");
    k.finish().await;
}

#[tokio::test]
async fn without_a_transcription_provider_the_thread_says_how_to_add_one() {
    let k = Kimaki::start().await;
    let sent = k
        .twin
        .user("alice")
        .in_channel(k.channel)
        .send_voice(b"OggS fake opus".to_vec(), 1.0);
    let thread = k.thread_of(sent).await;
    let error = k
        .twin
        .wait_bot_message(thread, |m| m.content.starts_with('✗'), QUICK)
        .await;
    assert!(
        error.content.contains("GEMINI_API_KEY"),
        "{}",
        error.content
    );
    k.finish().await;
}
