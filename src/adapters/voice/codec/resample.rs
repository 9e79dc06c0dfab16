//! Fixed-ratio rate conversion with rubato's synchronous FFT resampler. `process_all` removes the
//! resampler's start-up delay, so the output is aligned with the input and exactly
//! `ceil(n · to / from)` samples long. For transcription, decoding Opus straight at 16 kHz is
//! cheaper; this is for inputs that arrive at another rate (WAV files, live voice later).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::Pcm;

/// Input frames per FFT chunk: rubato's recommended size; larger chunks only add latency.
const CHUNK_FRAMES: usize = 1_024;

#[derive(Debug, thiserror::Error)]
#[error("cannot resample from {from} Hz to {to} Hz: {detail}")]
pub struct ResampleError {
    pub from: u32,
    pub to: u32,
    pub detail: String,
}

/// `pcm` converted to `to` Hz.
pub fn resample(pcm: &Pcm, to: u32) -> Result<Pcm, ResampleError> {
    if pcm.rate == to {
        return Ok(pcm.clone());
    }
    let err = |detail: String| ResampleError {
        from: pcm.rate,
        to,
        detail,
    };
    if pcm.rate == 0 || to == 0 {
        return Err(err("rates must be positive".into()));
    }
    let n = pcm.samples.len();
    if n == 0 {
        return Ok(Pcm::new(to, Vec::new()));
    }
    let mut resampler = Fft::<f32>::new(
        pcm.rate as usize,
        to as usize,
        CHUNK_FRAMES,
        1,
        FixedSync::Both,
    )
    .map_err(|e| err(e.to_string()))?;
    let input = InterleavedSlice::new(&pcm.samples, 1, n).map_err(|e| err(e.to_string()))?;
    let output = resampler
        .process_all(&input, n, None)
        .map_err(|e| err(e.to_string()))?;
    Ok(Pcm::new(to, output.take_data()))
}

/// The length `resample` produces for `n` samples.
pub fn resampled_len(n: usize, from: u32, to: u32) -> usize {
    let num = n as u128 * u128::from(to);
    let den = u128::from(from.max(1));
    usize::try_from(num.div_ceil(den)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_exact() {
        for (n, from, to) in [
            (48_000, 48_000, 16_000),
            (1_001, 48_000, 16_000),
            (7, 16_000, 48_000),
        ] {
            let pcm = Pcm::new(from, vec![0.1; n]);
            let out = resample(&pcm, to).unwrap();
            assert_eq!(
                out.samples.len(),
                resampled_len(n, from, to),
                "{n} {from}->{to}"
            );
            assert_eq!(out.rate, to);
        }
        assert_eq!(resampled_len(513_363, 48_000, 16_000), 171_121);
    }

    #[test]
    fn same_rate_and_empty_input() {
        let pcm = Pcm::new(16_000, vec![0.5; 10]);
        assert_eq!(resample(&pcm, 16_000).unwrap(), pcm);
        assert!(resample(&Pcm::new(48_000, Vec::new()), 16_000)
            .unwrap()
            .samples
            .is_empty());
        assert!(resample(&Pcm::new(0, vec![0.0]), 16_000).is_err());
    }
}
