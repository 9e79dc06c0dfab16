//! `VoiceTranscriber`, the core's `Transcriber`: read the saved recording (size cap), check and
//! decode it off the async threads (duration cap, corrupt or unsupported audio refused before any
//! network call), build the workspace context, run the provider chain, and turn errors into the
//! job `Failure` the user sees.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::codec::sniff::{sniff, AudioFormat};
use super::codec::{ogg_opus, resample, wav, Pcm, SPEECH_RATE};
use super::config::{ProviderConfig, VoiceConfig};
use super::context::{file_tree, vocabulary_hint, FILE_TREE_CAP, VOCABULARY_CAP};
use super::transcribe::{
    AudioClip, Chain, CommandProvider, GeminiProvider, OpenAiProvider, Provider, TranscribeError,
    TranscriptionContext,
};
use crate::core::events::Failure;
use crate::core::{Job, Transcriber, Transcript, VoiceInput};

/// A job's `meta` may list the agents a speaker can name (an array of strings).
pub const META_AGENTS: &str = "agents";

/// Connection set-up is bounded separately from the per-request deadline.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Voice messages → text, for the dispatcher.
pub struct VoiceTranscriber {
    chain: Chain,
    max_bytes: u64,
    max_duration: std::time::Duration,
    language: Option<String>,
}

impl VoiceTranscriber {
    /// Builds the providers `config` lists. Fails only if no HTTP client can be built.
    pub fn new(config: VoiceConfig) -> Result<Self, TranscribeError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("kimaki/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TranscribeError::Internal(format!("cannot build an HTTP client: {e}")))?;
        let providers: Vec<Arc<dyn Provider>> = config
            .providers
            .iter()
            .map(|p| -> Arc<dyn Provider> {
                match p.clone() {
                    ProviderConfig::Gemini(c) => Arc::new(GeminiProvider::new(c, client.clone())),
                    ProviderConfig::OpenAi(c) => Arc::new(OpenAiProvider::new(c, client.clone())),
                    ProviderConfig::Command(c) => Arc::new(CommandProvider::new(c)),
                    #[cfg(feature = "local-whisper")]
                    ProviderConfig::Local(c) => {
                        Arc::new(super::transcribe::local::LocalProvider::new(c))
                    }
                }
            })
            .collect();
        Ok(Self::with_chain(
            Chain::new(providers, config.retry),
            &config,
        ))
    }

    /// Around an already built chain (tests use scripted providers); limits from `config`.
    pub fn with_chain(chain: Chain, config: &VoiceConfig) -> Self {
        Self {
            chain,
            max_bytes: config.max_bytes,
            max_duration: config.max_duration,
            language: config.language.clone(),
        }
    }

    /// The whole pipeline, with this boundary's error type.
    pub async fn transcribe_voice(
        &self,
        job: &Job,
        voice: &VoiceInput,
    ) -> Result<Transcript, TranscribeError> {
        let started = Instant::now();
        let clip = self.load(voice).await?;
        let ctx = self.context(job, voice).await;
        let t = self.chain.transcribe(&clip, &ctx).await?;
        tracing::info!(
            provider = %t.source,
            format = clip.format.name(),
            bytes = clip.bytes.len(),
            audio_secs = clip.pcm16k.as_ref().map(|p| p.duration_secs()),
            chars = t.text.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Voice message transcribed."
        );
        Ok(Transcript {
            text: t.text,
            provider: t.source,
            queue_message: t.queue_message,
            agent: t.agent,
        })
    }

    /// Reads and checks the recording; decodes it to 16 kHz when the format allows.
    async fn load(&self, voice: &VoiceInput) -> Result<AudioClip, TranscribeError> {
        let path = &voice.audio.path;
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| TranscribeError::Read(format!("{}: {e}", voice.audio.filename)))?;
        if meta.len() > self.max_bytes {
            return Err(TranscribeError::TooLarge {
                size: meta.len(),
                limit: self.max_bytes,
            });
        }
        let bytes: Arc<[u8]> = tokio::fs::read(path)
            .await
            .map_err(|e| TranscribeError::Read(format!("{}: {e}", voice.audio.filename)))?
            .into();
        let decoded = {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || prepare(&bytes))
                .await
                .map_err(|e| {
                    TranscribeError::Internal(format!("the audio decoder task failed: {e}"))
                })??
        };
        let (format, pcm16k) = decoded;
        if let Some(pcm) = &pcm16k {
            let secs = pcm.duration_secs();
            if secs > self.max_duration.as_secs_f64() {
                return Err(TranscribeError::TooLong {
                    secs,
                    limit_secs: self.max_duration.as_secs(),
                });
            }
        }
        // The bytes decide, not the declared type: `prepare` refused anything unrecognised.
        Ok(AudioClip {
            bytes,
            format,
            mime: format.mime().to_owned(),
            filename: voice.audio.filename.clone(),
            pcm16k: pcm16k.map(Arc::new),
        })
    }

    /// The workspace's file tree and the vocabulary, built off the async threads.
    async fn context(&self, job: &Job, voice: &VoiceInput) -> TranscriptionContext {
        let workspace = job.workspace.clone();
        let conversation = voice.context.clone();
        let built = tokio::task::spawn_blocking(move || {
            let tree = file_tree(&workspace, FILE_TREE_CAP);
            let vocabulary = vocabulary_hint(&tree, &conversation, VOCABULARY_CAP);
            (tree.rendered, vocabulary)
        })
        .await;
        let (file_tree, vocabulary) = built.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "Cannot list the workspace for the transcriber; going on without it.");
            (String::new(), String::new())
        });
        let agents = job
            .meta
            .get(META_AGENTS)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        TranscriptionContext {
            file_tree,
            vocabulary,
            conversation: voice.context.clone(),
            agents,
            language: self.language.clone(),
        }
    }
}

/// The format, and 16 kHz mono when it can be decoded here. Ogg that is not Opus, empty files
/// and bytes that are no audio at all are refused; MP3/M4A/WebM/FLAC go to providers as they are.
fn prepare(bytes: &[u8]) -> Result<(AudioFormat, Option<Pcm>), TranscribeError> {
    let format = sniff(bytes);
    match format {
        AudioFormat::OggOpus => {
            let decoded = ogg_opus::decode(bytes, SPEECH_RATE)?;
            if decoded.truncated {
                tracing::warn!(
                    kept_secs = decoded.pcm.duration_secs(),
                    "The voice message is cut short; transcribing the part that arrived."
                );
            }
            Ok((format, Some(decoded.pcm)))
        }
        AudioFormat::Wav => {
            let pcm = wav::decode_wav(bytes)
                .map_err(|e| TranscribeError::UnsupportedAudio(e.to_string()))?;
            let pcm = resample::resample(&pcm, SPEECH_RATE)
                .map_err(|e| TranscribeError::UnsupportedAudio(e.to_string()))?;
            Ok((format, Some(pcm)))
        }
        AudioFormat::OggVorbis | AudioFormat::OggOther => {
            // Let the decoder name the codec and reject it.
            ogg_opus::decode(bytes, SPEECH_RATE)?;
            Err(TranscribeError::UnsupportedAudio("Ogg without Opus".into()))
        }
        AudioFormat::Mp3 | AudioFormat::Mp4 | AudioFormat::Flac | AudioFormat::WebM => {
            Ok((format, None))
        }
        AudioFormat::Unknown if bytes.is_empty() => Err(ogg_opus::DecodeError::Empty.into()),
        AudioFormat::Unknown => Err(TranscribeError::UnsupportedAudio(
            "the file is not a recognised audio format (expected an Ogg/Opus voice message)".into(),
        )),
    }
}

#[async_trait]
impl Transcriber for VoiceTranscriber {
    async fn transcribe(&self, job: &Job, voice: &VoiceInput) -> Result<Transcript, Failure> {
        self.transcribe_voice(job, voice)
            .await
            .map_err(|e| e.to_failure())
    }
}
