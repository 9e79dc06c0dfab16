//! `LocalProvider`: Whisper through CTranslate2 (ct2rs' low-level bindings), int8 on the CPU.
//! The model is loaded on first use, off the async threads, and kept for every later message.
//! Long recordings are cut at pauses (`split`), each piece gets Whisper's own spectrogram
//! (`features`) and the decoder prompt the model was trained with, and the texts are joined.
//!
//! ct2rs' high-level `Whisper` is not used: it cuts fixed 30 s windows, pads them in the mel
//! domain and always prompts with a language and a task token, which English-only models were
//! never trained on; tiny.en then answered whole chunks with bare timestamp tokens.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use ct2rs::sys::{ComputeType, Config, Device, StorageView, Whisper, WhisperOptions};
use ct2rs::tokenizers::hf;
use ct2rs::Tokenizer as _;
use tokio::sync::OnceCell;

use super::features::{MelFrontEnd, N_FRAMES};
use super::{model_dir, split, LocalConfig, PROVIDER};
use crate::adapters::voice::codec::{rms, SPEECH_RATE};
use crate::adapters::voice::transcribe::{
    spoken_queue_request, AudioClip, Provider, ProviderTranscript, TranscribeError,
    TranscriptionContext,
};

/// Pieces quieter than this (≈ −70 dBFS) hold no speech; Whisper invents text for silence.
const SILENCE_RMS: f64 = 3e-4;

const START_OF_PREVIOUS: &str = "<|startofprev|>";
const START_OF_TRANSCRIPT: &str = "<|startoftranscript|>";

/// Whisper reads the "previous text" slot as context, so names from the project there are
/// spelled as in the project. Kept short: a long prompt makes a tiny model echo it.
const MAX_VOCABULARY_TOKENS: usize = 64;
const TRANSCRIBE: &str = "<|transcribe|>";
const NO_TIMESTAMPS: &str = "<|notimestamps|>";

/// A loaded model with what it needs around it.
struct Engine {
    whisper: Whisper,
    tokenizer: hf::Tokenizer,
    front_end: MelFrontEnd,
}

pub struct LocalProvider {
    config: LocalConfig,
    engine: OnceCell<Arc<Engine>>,
}

impl LocalProvider {
    pub fn new(config: LocalConfig) -> Self {
        Self {
            config,
            engine: OnceCell::new(),
        }
    }

    /// The loaded model; the first call loads it (about a second for tiny.en). A failed load
    /// is not remembered, so fixing the directory needs no restart.
    async fn engine(&self) -> Result<Arc<Engine>, TranscribeError> {
        self.engine
            .get_or_try_init(|| {
                let dir = self.config.model_dir.clone();
                let threads = self.config.effective_threads();
                async move {
                    tokio::task::spawn_blocking(move || load(&dir, threads))
                        .await
                        .map_err(|e| {
                            TranscribeError::Internal(format!(
                                "the Whisper loader task failed: {e}"
                            ))
                        })?
                }
            })
            .await
            .cloned()
    }
}

fn load(dir: &Path, threads: usize) -> Result<Arc<Engine>, TranscribeError> {
    let started = Instant::now();
    model_dir::check(dir)?;
    let unusable =
        |e: anyhow::Error| TranscribeError::LocalModel(format!("{}: {e:#}", dir.display()));
    let config = Config {
        device: Device::CPU,
        // int8 is faster than float32 on CPUs and needs ≈150 MB less memory.
        compute_type: ComputeType::INT8,
        num_threads_per_replica: threads,
        ..Config::default()
    };
    let whisper = Whisper::new(dir, config).map_err(unusable)?;
    let tokenizer = hf::Tokenizer::new(dir).map_err(unusable)?;
    let front_end = MelFrontEnd::new(whisper.n_mels());
    tracing::info!(
        dir = %dir.display(),
        threads,
        multilingual = whisper.is_multilingual(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Whisper model loaded."
    );
    Ok(Arc::new(Engine {
        whisper,
        tokenizer,
        front_end,
    }))
}

impl Engine {
    /// The decoder prompt: the project's names as previous text, then the start. English-only
    /// models know only "start, no timestamps"; multilingual ones get the language when it is
    /// configured, or predict it themselves.
    fn prompt(&self, language: Option<&str>, vocabulary: &str) -> Vec<String> {
        let mut prompt = self.previous_text(vocabulary);
        prompt.push(START_OF_TRANSCRIPT.to_owned());
        if self.whisper.is_multilingual() {
            match language {
                Some(lang) => {
                    prompt.push(format!("<|{lang}|>"));
                    prompt.push(TRANSCRIBE.to_owned());
                    prompt.push(NO_TIMESTAMPS.to_owned());
                }
                None => return prompt,
            }
        } else {
            prompt.push(NO_TIMESTAMPS.to_owned());
        }
        prompt
    }

    /// `<|startofprev|>` and as many of the vocabulary's names (whole ones, in order) as fit in
    /// `MAX_VOCABULARY_TOKENS`; nothing when there are none.
    fn previous_text(&self, vocabulary: &str) -> Vec<String> {
        let mut kept: Vec<String> = Vec::new();
        let mut text = String::new();
        for name in vocabulary
            .split(", ")
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let candidate = if text.is_empty() {
                format!(" {name}")
            } else {
                format!("{text}, {name}")
            };
            let Ok(tokens) = self.tokenizer.encode(&candidate) else {
                break;
            };
            let tokens: Vec<String> = tokens
                .into_iter()
                .filter(|t| !(t.starts_with("<|") && t.ends_with("|>")))
                .collect();
            if tokens.len() > MAX_VOCABULARY_TOKENS {
                break;
            }
            text = candidate;
            kept = tokens;
        }
        if kept.is_empty() {
            return Vec::new();
        }
        let mut prompt = vec![START_OF_PREVIOUS.to_owned()];
        prompt.extend(kept);
        prompt
    }

    /// One piece of at most 30 s.
    fn transcribe_piece(
        &self,
        piece: &[f32],
        prompt: &[String],
    ) -> Result<String, TranscribeError> {
        let failed = |e: anyhow::Error| TranscribeError::LocalFailed(format!("{e:#}"));
        let n_mels = self.front_end.n_mels();
        let mut features = self.front_end.log_mel(piece);
        let view =
            StorageView::new(&[1, n_mels, N_FRAMES], &mut features, Device::CPU).map_err(failed)?;
        let results = self
            .whisper
            .generate(&view, &[prompt.to_vec()], &WhisperOptions::default())
            .map_err(failed)?;
        let tokens: Vec<String> = results
            .into_iter()
            .next()
            .and_then(|r| r.sequences.into_iter().next())
            .unwrap_or_default()
            .into_iter()
            // Language, task and timestamp tokens are not text.
            .filter(|t| !(t.starts_with("<|") && t.ends_with("|>")))
            .collect();
        let text = self.tokenizer.decode(tokens).map_err(failed)?;
        Ok(text.trim().to_owned())
    }

    /// Every piece of `samples` in turn, texts joined by spaces.
    fn transcribe(
        &self,
        samples: &[f32],
        language: Option<&str>,
        vocabulary: &str,
        cancelled: &AtomicBool,
    ) -> Result<String, TranscribeError> {
        let prompt = self.prompt(language, vocabulary);
        let mut parts: Vec<String> = Vec::new();
        for range in split::chunk_ranges(samples, SPEECH_RATE) {
            if cancelled.load(Ordering::Relaxed) {
                return Err(TranscribeError::Internal("cancelled".into()));
            }
            let piece = &samples[range];
            if rms(piece) < SILENCE_RMS {
                continue;
            }
            let text = self.transcribe_piece(piece, &prompt)?;
            if !text.is_empty() {
                parts.push(text);
            }
        }
        Ok(parts.join(" "))
    }
}

/// The model dir's name (`whisper-tiny.en`), for the record.
fn model_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || "whisper".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Set when the caller gave up (timeout, cancelled job): the blocking decoder stops after the
/// piece it is working on instead of finishing the whole recording for nobody.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn transcribe(
        &self,
        clip: &AudioClip,
        ctx: &TranscriptionContext,
    ) -> Result<ProviderTranscript, TranscribeError> {
        let Some(pcm) = clip.pcm16k.clone() else {
            return Err(TranscribeError::UnsupportedAudio(format!(
                "the built-in Whisper reads Ogg/Opus and WAV, not {}",
                clip.format.name()
            )));
        };
        let timeout = self.config.timeout;
        let run = async {
            let engine = self.engine().await?;
            let language = ctx.language.clone();
            let vocabulary = ctx.vocabulary.clone();
            let cancelled = Arc::new(AtomicBool::new(false));
            let _cancel = CancelOnDrop(cancelled.clone());
            let started = Instant::now();
            let text = tokio::task::spawn_blocking(move || {
                engine.transcribe(&pcm.samples, language.as_deref(), &vocabulary, &cancelled)
            })
            .await
            .map_err(|e| TranscribeError::Internal(format!("the Whisper task failed: {e}")))??;
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Whisper decoded the recording."
            );
            Ok::<_, TranscribeError>(text)
        };
        let text =
            tokio::time::timeout(timeout, run)
                .await
                .map_err(|_| TranscribeError::Timeout {
                    provider: PROVIDER,
                    after: timeout,
                })??;
        if text.trim().is_empty() {
            return Err(TranscribeError::Empty { provider: PROVIDER });
        }
        let (text, queue_message) = spoken_queue_request(&text);
        Ok(ProviderTranscript {
            text,
            queue_message,
            agent: None,
            source: format!("{PROVIDER}/{}", model_name(&self.config.model_dir)),
        })
    }
}
