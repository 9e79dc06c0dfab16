//! Whisper's input: the log-mel spectrogram of one 30 s window, computed as OpenAI's reference
//! does it (audio zero-padded to 30 s, centred STFT with reflect padding, periodic Hann, 400-point
//! FFT every 10 ms, Slaney mel filters, log10 floored 8 below the window's peak, scaled by
//! (x + 4) / 4). ct2rs' own front end pads in the mel domain and floors each frame on its own,
//! which made tiny.en answer some chunks with nothing but timestamp tokens.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Samples per second Whisper expects.
pub const SAMPLE_RATE: u32 = 16_000;
/// FFT size (25 ms).
pub const N_FFT: usize = 400;
/// Hop between frames (10 ms).
pub const HOP: usize = 160;
/// One window: 30 s.
pub const N_SAMPLES: usize = 480_000;
/// Frames per window.
pub const N_FRAMES: usize = N_SAMPLES / HOP;
/// Frequency bins of a real FFT of `N_FFT` points.
const N_BINS: usize = N_FFT / 2 + 1;

/// Below the window's loudest value, everything is clamped to this many decades down.
const DYNAMIC_RANGE_DECADES: f32 = 8.0;
/// log10 floor for empty bins.
const MIN_POWER: f32 = 1e-10;

/// The mel filter bank and FFT plan, built once per model.
pub struct MelFrontEnd {
    n_mels: usize,
    /// `n_mels` rows of `N_BINS` weights.
    filters: Vec<f32>,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl MelFrontEnd {
    /// `n_mels` is the model's (80 for most Whisper models, 128 for large-v3).
    pub fn new(n_mels: usize) -> Self {
        let window = (0..N_FFT)
            .map(|n| {
                let phase = std::f32::consts::TAU * n as f32 / N_FFT as f32;
                0.5 - 0.5 * phase.cos()
            })
            .collect();
        Self {
            n_mels,
            filters: slaney_filters(SAMPLE_RATE, N_FFT, n_mels),
            window,
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT),
        }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Features of up to 30 s of 16 kHz audio (longer input is cut), row-major
    /// `[n_mels][N_FRAMES]`, ready for a `[1, n_mels, N_FRAMES]` tensor.
    pub fn log_mel(&self, samples: &[f32]) -> Vec<f32> {
        let audio = &samples[..samples.len().min(N_SAMPLES)];
        let padded = centred(audio);
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f32; N_BINS];
        let mut out = vec![0.0f32; self.n_mels * N_FRAMES];
        for frame in 0..N_FRAMES {
            let start = frame * HOP;
            for ((x, s), w) in input
                .iter_mut()
                .zip(&padded[start..start + N_FFT])
                .zip(&self.window)
            {
                *x = s * w;
            }
            // Lengths come from the plan itself, so this cannot fail.
            let _ = self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch);
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for (m, row) in self.filters.chunks_exact(N_BINS).enumerate() {
                let energy: f32 = row.iter().zip(&power).map(|(f, p)| f * p).sum();
                out[m * N_FRAMES + frame] = energy.max(MIN_POWER).log10();
            }
        }
        let peak = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let floor = peak - DYNAMIC_RANGE_DECADES;
        for v in &mut out {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        out
    }
}

/// The window's audio zero-padded to 30 s, with `N_FFT / 2` reflected samples on each side so
/// frame `t` is centred on sample `t · HOP`.
fn centred(audio: &[f32]) -> Vec<f32> {
    let half = N_FFT / 2;
    let mut body = audio.to_vec();
    body.resize(N_SAMPLES, 0.0);
    let mut out = Vec::with_capacity(N_SAMPLES + N_FFT);
    out.extend((1..=half).rev().map(|i| body[i]));
    out.extend_from_slice(&body);
    out.extend((1..=half).map(|i| body[N_SAMPLES - 1 - i]));
    out
}

/// Hz → mel on the Slaney scale: linear below 1 kHz, logarithmic above.
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if hz < MIN_LOG_HZ {
        hz / F_SP
    } else {
        min_log_mel + (hz / MIN_LOG_HZ).ln() / log_step
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if mel < min_log_mel {
        mel * F_SP
    } else {
        MIN_LOG_HZ * (log_step * (mel - min_log_mel)).exp()
    }
}

/// Triangular filters evenly spaced in mel from 0 Hz to Nyquist, each normalised to unit area
/// (Slaney), as Whisper was trained with. Row-major `[n_mels][n_fft / 2 + 1]`.
fn slaney_filters(rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let nyquist = f64::from(rate) / 2.0;
    let top = hz_to_mel(nyquist);
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(top * i as f64 / (n_mels + 1) as f64))
        .collect();
    let bin_hz = |k: usize| k as f64 * f64::from(rate) / n_fft as f64;
    let mut filters = vec![0.0f32; n_mels * bins];
    for m in 0..n_mels {
        let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
        let area_norm = 2.0 / (hi - lo);
        for k in 0..bins {
            let f = bin_hz(k);
            let rising = (f - lo) / (mid - lo);
            let falling = (hi - f) / (hi - mid);
            let weight = rising.min(falling).max(0.0);
            filters[m * bins + k] = (weight * area_norm) as f32;
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mel_scale_round_trips() {
        for hz in [0.0, 440.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6, "{hz}");
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-9);
    }

    #[test]
    fn filters_cover_the_band_once_each() {
        let f = slaney_filters(SAMPLE_RATE, N_FFT, 80);
        assert_eq!(f.len(), 80 * N_BINS);
        for row in f.chunks_exact(N_BINS) {
            assert!(row.iter().all(|w| *w >= 0.0));
            assert!(row.iter().any(|w| *w > 0.0), "every filter sees some bin");
        }
        // The lowest filter peaks on a low bin, the highest on a high one.
        let peak = |row: &[f32]| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap()
        };
        assert!(peak(&f[..N_BINS]) <= 2);
        assert!(peak(&f[79 * N_BINS..]) >= 180);
    }

    #[test]
    fn silence_is_the_floor_and_a_tone_lands_in_its_band() {
        let front = MelFrontEnd::new(80);
        let silent = front.log_mel(&[]);
        assert_eq!(silent.len(), 80 * N_FRAMES);
        // log10(1e-10) = -10 → (-10 + 4) / 4.
        assert!(silent.iter().all(|v| (*v + 1.5).abs() < 1e-6));

        // One second of 1 kHz, then the zero padding.
        let tone: Vec<f32> = (0..16_000)
            .map(|i| 0.5 * (std::f32::consts::TAU * 1000.0 * i as f32 / 16_000.0).sin())
            .collect();
        let mel = front.log_mel(&tone);
        let at = |m: usize, t: usize| mel[m * N_FRAMES + t];
        let loudest = (0..80)
            .max_by(|&a, &b| at(a, 50).total_cmp(&at(b, 50)))
            .unwrap();
        let hz = mel_to_hz(hz_to_mel(8000.0) * (loudest + 1) as f64 / 81.0);
        assert!((800.0..1250.0).contains(&hz), "band centre {hz} Hz");
        // Peak scaled to (log10(peak) + 4) / 4, the padding 8 decades below it.
        let peak = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!((at(0, 2000) - (peak - 2.0)).abs() < 1e-5);
    }

    #[test]
    fn the_window_is_centred_with_reflection() {
        let audio: Vec<f32> = (0..N_SAMPLES).map(|i| i as f32).collect();
        let c = centred(&audio);
        assert_eq!(c.len(), N_SAMPLES + N_FFT);
        assert_eq!(c[N_FFT / 2], 0.0);
        assert_eq!(c[N_FFT / 2 - 1], 1.0);
        assert_eq!(c[0], (N_FFT / 2) as f32);
        assert_eq!(c[c.len() - 1], (N_SAMPLES - 1 - N_FFT / 2) as f32);
    }
}
