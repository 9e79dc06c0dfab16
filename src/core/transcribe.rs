//! The hook that turns a spoken prompt into text, right before its job runs. The core knows only
//! this trait; the voice adapter implements it and the runtime plugs it into the dispatcher.

use async_trait::async_trait;

use super::events::Failure;
use super::job::{Job, VoiceInput};

/// What a transcriber understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    pub text: String,
    /// Which provider (and model) produced it, for the record.
    pub provider: String,
    /// The speaker asked to queue the message instead of interrupting.
    pub queue_message: bool,
    /// The speaker named an agent.
    pub agent: Option<String>,
}

#[async_trait]
pub trait Transcriber: Send + Sync + 'static {
    /// Transcribes `voice` for `job` (its workspace gives the vocabulary: file names, symbols).
    async fn transcribe(&self, job: &Job, voice: &VoiceInput) -> Result<Transcript, Failure>;
}
