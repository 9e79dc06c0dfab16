//! The built-in offline transcriber: Whisper (CTranslate2 format, e.g. tiny.en) run in-process
//! through ct2rs. The engine needs the `local-whisper` cargo feature (CTranslate2 is C++ and
//! takes long to build); the settings, the model-dir check, the chunking and the spectrogram
//! are plain Rust and compiled in every build, so they are tested everywhere.
//!
//! # Layout
//! - `split`: where a long recording is cut into ≤ 30 s chunks (quietest 100 ms).
//! - `features`: Whisper's log-mel spectrogram of one chunk.
//! - `model_dir`: checks the configured directory before the loader sees it.
//! - `engine` (feature `local-whisper`): `LocalProvider`, the model loaded once and reused.

pub mod features;
pub mod model_dir;
pub mod split;

#[cfg(feature = "local-whisper")]
mod engine;

#[cfg(feature = "local-whisper")]
pub use engine::LocalProvider;

use std::path::PathBuf;
use std::time::Duration;

pub const PROVIDER: &str = "local";

/// More threads than this barely speed up a tiny model and take cores from the agents.
const MAX_AUTO_THREADS: usize = 4;

#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The CTranslate2 Whisper model (model.bin, config.json, tokenizer.json, vocabulary).
    pub model_dir: PathBuf,
    /// Inference threads; 0 picks one per core, at most four.
    pub threads: usize,
    /// One transcription, model loading included.
    pub timeout: Duration,
}

impl LocalConfig {
    /// The thread count to give CTranslate2.
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_AUTO_THREADS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_default_to_the_cores() {
        let mut c = LocalConfig {
            model_dir: PathBuf::from("/m"),
            threads: 3,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(c.effective_threads(), 3);
        c.threads = 0;
        assert!((1..=MAX_AUTO_THREADS).contains(&c.effective_threads()));
    }
}
