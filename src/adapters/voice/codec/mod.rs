//! Pure audio code: Ogg/Opus in and out, rate conversion, WAV and Discord's waveform preview.
//! Everything works on [`Pcm`] values in memory. Imports nothing from kimaki, does no I/O, no
//! logging and no async: callers run it in `spawn_blocking` and decide what to report.
//!
//! # Layout
//! - `sniff`: what kind of audio file some bytes are (by magic, never by name).
//! - `ogg_opus`: Ogg/Opus → mono f32 at a chosen rate (RFC 7845: pre-skip, gain, granule trim).
//! - `ogg_writer`: mono f32 → an Ogg/Opus voice message.
//! - `resample`: fixed-ratio rate conversion (rubato's synchronous FFT resampler).
//! - `wav`: 16-bit WAV in and out.
//! - `waveform`: the amplitude preview Discord shows on a voice message.

pub mod ogg_opus;
pub mod ogg_writer;
pub mod resample;
pub mod sniff;
pub mod wav;
pub mod waveform;

/// The rate Opus always counts granule positions and pre-skip in (RFC 7845 §4), and the rate
/// Discord's voice messages are recorded at.
pub const OPUS_RATE: u32 = 48_000;

/// The rate speech recognisers want (Whisper, and the WAV fallback sent to cloud providers).
pub const SPEECH_RATE: u32 = 16_000;

/// Mono audio: `samples` are f32 in [-1, 1] at `rate` Hz.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pcm {
    pub rate: u32,
    pub samples: Vec<f32>,
}

impl Pcm {
    pub fn new(rate: u32, samples: Vec<f32>) -> Self {
        Self { rate, samples }
    }

    pub fn duration_secs(&self) -> f64 {
        if self.rate == 0 {
            return 0.0;
        }
        self.samples.len() as f64 / f64::from(self.rate)
    }

    /// Root-mean-square level in dB relative to full scale (−∞ for silence).
    pub fn rms_dbfs(&self) -> f64 {
        20.0 * rms(&self.samples).log10()
    }
}

/// Root mean square of `samples` (0 for none).
pub fn rms(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}
