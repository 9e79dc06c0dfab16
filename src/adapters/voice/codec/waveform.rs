//! The amplitude preview Discord draws on a voice message: one byte per 100 ms (at most 256
//! points), each the RMS of its bucket scaled to 0–255 against the loudest bucket.

use base64::Engine;

use super::{rms, Pcm};

/// Discord accepts at most this many points.
pub const MAX_POINTS: usize = 256;

/// Buckets per second of audio (one point per 100 ms).
const POINTS_PER_SECOND: f64 = 10.0;

/// The preview points of `pcm`.
pub fn waveform(pcm: &Pcm) -> Vec<u8> {
    let n = pcm.samples.len();
    if n == 0 {
        return Vec::new();
    }
    let wanted = (pcm.duration_secs() * POINTS_PER_SECOND).ceil() as usize;
    let points = wanted.clamp(1, MAX_POINTS);
    let levels: Vec<f64> = (0..points)
        .map(|i| rms(&pcm.samples[i * n / points..(i + 1) * n / points]))
        .collect();
    let loudest = levels.iter().copied().fold(0.0, f64::max);
    if loudest <= 0.0 {
        return vec![0; points];
    }
    levels
        .iter()
        .map(|l| (l / loudest * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// The preview as Discord's `waveform` attachment field (standard base64).
pub fn waveform_base64(pcm: &Pcm) -> String {
    base64::engine::general_purpose::STANDARD.encode(waveform(pcm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_per_100ms_scaled_to_the_loudest() {
        let mut samples = vec![0.1f32; 4_800];
        samples.extend(vec![0.4f32; 4_800]);
        let pcm = Pcm::new(48_000, samples);
        assert_eq!(waveform(&pcm), vec![64, 255]);
        assert_eq!(waveform_base64(&pcm), "QP8=");
    }

    #[test]
    fn long_clips_are_capped_and_silence_is_flat() {
        let pcm = Pcm::new(1_000, vec![0.2; 60_000]);
        assert_eq!(waveform(&pcm).len(), MAX_POINTS);
        assert_eq!(waveform(&Pcm::new(1_000, vec![0.0; 250])), vec![0, 0, 0]);
        assert!(waveform(&Pcm::new(1_000, Vec::new())).is_empty());
    }
}
