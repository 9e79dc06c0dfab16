//! 16-bit PCM WAV in and out (hound). Providers that want raw audio get a 16 kHz mono WAV; WAV
//! attachments are read back as mono.

use std::io::Cursor;

use hound::{SampleFormat, WavSpec, WavWriter};

use super::Pcm;

/// Full scale of a 16-bit sample.
const I16_SCALE: f32 = 32_768.0;

#[derive(Debug, thiserror::Error)]
#[error("WAV: {0}")]
pub struct WavError(String);

impl From<hound::Error> for WavError {
    fn from(e: hound::Error) -> Self {
        Self(e.to_string())
    }
}

/// `pcm` as a 16-bit mono WAV file (samples clipped to full scale).
pub fn encode_wav(pcm: &Pcm) -> Result<Vec<u8>, WavError> {
    let spec = WavSpec {
        channels: 1,
        sample_rate: pcm.rate,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let mut bytes = Vec::with_capacity(44 + pcm.samples.len() * 2);
    {
        let mut writer = WavWriter::new(Cursor::new(&mut bytes), spec)?;
        let mut samples = writer.get_i16_writer(
            u32::try_from(pcm.samples.len())
                .map_err(|_| WavError("too many samples for one WAV file".into()))?,
        );
        for &s in &pcm.samples {
            samples.write_sample(to_i16(s));
        }
        samples.flush()?;
        writer.finalize()?;
    }
    Ok(bytes)
}

/// A WAV file (integer or float samples, any channel count) as mono, channels averaged.
pub fn decode_wav(bytes: &[u8]) -> Result<Pcm, WavError> {
    let reader = hound::WavReader::new(Cursor::new(bytes))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        SampleFormat::Float => reader.into_samples::<f32>().collect::<Result<_, _>>()?,
        SampleFormat::Int => {
            let scale = 2f32.powi(i32::from(spec.bits_per_sample) - 1);
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 / scale))
                .collect::<Result<_, _>>()?
        }
    };
    let samples = if channels == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(channels)
            .map(|f| f.iter().sum::<f32>() / channels as f32)
            .collect()
    };
    Ok(Pcm::new(spec.sample_rate, samples))
}

fn to_i16(s: f32) -> i16 {
    (s * I16_SCALE)
        .round()
        .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_length_and_values() {
        let pcm = Pcm::new(16_000, vec![0.0, 0.5, -0.5, 1.5, -1.5]);
        let bytes = encode_wav(&pcm).unwrap();
        assert_eq!(bytes.len(), 44 + 10);
        let back = decode_wav(&bytes).unwrap();
        assert_eq!(back.rate, 16_000);
        assert_eq!(back.samples.len(), 5);
        assert!((back.samples[1] - 0.5).abs() < 1e-4);
        assert!((back.samples[3] - 1.0).abs() < 1e-3, "clipped");
        assert!((back.samples[4] + 1.0).abs() < 1e-3, "clipped");
        assert!(decode_wav(b"not a wav").is_err());
    }
}
