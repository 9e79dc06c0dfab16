//! `LocalProvider`: Whisper through ct2rs (CTranslate2), int8 on the CPU. The model is loaded on
//! first use, off the async threads, and kept for every later message. Long recordings are cut
//! at pauses (see `split`) and each piece is decoded on its own, because ct2rs' own 30 s windows
//! lost the second half of a minute-long clip.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use ct2rs::{ComputeType, Config, Whisper, WhisperOptions};
use tokio::sync::OnceCell;

use super::{model_dir, split, LocalConfig, PROVIDER};
use crate::adapters::voice::codec::{rms, SPEECH_RATE};
use crate::adapters::voice::transcribe::{
    spoken_queue_request, AudioClip, Provider, ProviderTranscript, TranscribeError,
    TranscriptionContext,
};

/// Pieces quieter than this (≈ −70 dBFS) hold no speech; Whisper invents text for silence.
const SILENCE_RMS: f64 = 3e-4;

/// What English-only models (`*.en`) are told; they know no other language.
const ENGLISH: &str = "en";

pub struct LocalProvider {
    config: LocalConfig,
    model: OnceCell<Arc<Whisper>>,
}

impl LocalProvider {
    pub fn new(config: LocalConfig) -> Self {
        Self {
            config,
            model: OnceCell::new(),
        }
    }

    /// The loaded model; the first call loads it (a second or two for tiny.en). A failed load
    /// is not remembered, so fixing the directory needs no restart.
    async fn model(&self) -> Result<Arc<Whisper>, TranscribeError> {
        self.model
            .get_or_try_init(|| {
                let dir = self.config.model_dir.clone();
                let scratch = self.config.scratch_dir.clone();
                let threads = self.config.effective_threads();
                async move {
                    tokio::task::spawn_blocking(move || load(dir, &scratch, threads))
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

fn load(
    dir: PathBuf,
    scratch: &std::path::Path,
    threads: usize,
) -> Result<Arc<Whisper>, TranscribeError> {
    let started = Instant::now();
    let path = model_dir::prepare(&dir, scratch)?;
    let config = Config {
        compute_type: ComputeType::INT8,
        num_threads_per_replica: threads,
        ..Config::default()
    };
    let whisper = Whisper::new(&path, config)
        .map_err(|e| TranscribeError::LocalModel(format!("{}: {e:#}", dir.display())))?;
    tracing::info!(
        dir = %dir.display(),
        threads,
        multilingual = whisper.is_multilingual(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Whisper model loaded."
    );
    Ok(Arc::new(whisper))
}

/// The model dir's name (`tiny.en`), for the record.
fn model_name(dir: &std::path::Path) -> String {
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

/// Decodes each piece of `samples` in turn and joins the texts.
fn transcribe_blocking(
    whisper: &Whisper,
    samples: &[f32],
    language: Option<&str>,
    cancelled: &AtomicBool,
) -> Result<String, TranscribeError> {
    let options = WhisperOptions::default();
    let mut parts: Vec<String> = Vec::new();
    for range in split::chunk_ranges(samples, SPEECH_RATE) {
        if cancelled.load(Ordering::Relaxed) {
            return Err(TranscribeError::Internal("cancelled".into()));
        }
        let piece = &samples[range];
        if rms(piece) < SILENCE_RMS {
            continue;
        }
        let texts = whisper
            .generate(piece, language, false, &options)
            .map_err(|e| TranscribeError::LocalFailed(format!("{e:#}")))?;
        parts.extend(
            texts
                .into_iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        );
    }
    Ok(parts.join(" "))
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
            let whisper = self.model().await?;
            let language = if whisper.is_multilingual() {
                ctx.language.clone()
            } else {
                Some(ENGLISH.to_owned())
            };
            let cancelled = Arc::new(AtomicBool::new(false));
            let _cancel = CancelOnDrop(cancelled.clone());
            let started = Instant::now();
            let text = tokio::task::spawn_blocking(move || {
                transcribe_blocking(&whisper, &pcm.samples, language.as_deref(), &cancelled)
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
