//! Mono f32 → an Ogg/Opus voice message as Discord records them: 48 kHz mono, ≈32 kbps VoIP
//! mode, 20 ms frames, `OpusHead` and `OpusTags` on their own pages, page granules = samples so
//! far + pre-skip, the last frame padded with silence and the stream closed with an end page.

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use super::ogg_opus::OpusHead;
use super::{waveform, Pcm, OPUS_RATE};

/// Discord's own voice messages are ≈32 kbps.
pub const DEFAULT_BITRATE: i32 = 32_000;

/// Frames per second at 20 ms per frame.
const FRAMES_PER_SECOND: u32 = 50;

/// Flush a page every second of audio, like opusenc, so a cut file loses at most one second.
const PACKETS_PER_PAGE: usize = 50;

/// A lone logical stream needs no unique serial; a fixed one keeps output reproducible.
const STREAM_SERIAL: u32 = 0x6b69_6d61;

/// Upper bound for one encoded packet (libopus never exceeds 1275 bytes per frame).
const MAX_PACKET_BYTES: usize = 1_500;

/// Written in `OpusTags` as the encoder name.
const VENDOR: &str = "kimaki";

/// Rates the Opus encoder accepts.
const ENCODE_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode an empty recording")]
    Empty,
    #[error("Opus cannot encode at {0} Hz (8, 12, 16, 24 or 48 kHz only)")]
    Rate(u32),
    #[error("Opus encoder: {0}")]
    Opus(#[from] opus::Error),
    #[error("Ogg writer: {0}")]
    Io(#[from] std::io::Error),
}

/// What a voice-message upload needs besides the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceMessage {
    pub ogg: Vec<u8>,
    pub duration_secs: f64,
    /// Discord's `waveform` field (base64).
    pub waveform: String,
}

/// Encodes `pcm` as a voice message at the default bitrate, with its preview.
pub fn encode_voice_message(pcm: &Pcm) -> Result<VoiceMessage, EncodeError> {
    Ok(VoiceMessage {
        ogg: encode_ogg_opus(pcm, DEFAULT_BITRATE)?,
        duration_secs: pcm.duration_secs(),
        waveform: waveform::waveform_base64(pcm),
    })
}

/// Encodes `pcm` (at a rate Opus accepts) as mono Ogg/Opus at `bitrate` bits per second.
pub fn encode_ogg_opus(pcm: &Pcm, bitrate: i32) -> Result<Vec<u8>, EncodeError> {
    if pcm.samples.is_empty() {
        return Err(EncodeError::Empty);
    }
    if !ENCODE_RATES.contains(&pcm.rate) {
        return Err(EncodeError::Rate(pcm.rate));
    }
    let mut encoder = opus::Encoder::new(pcm.rate, opus::Channels::Mono, opus::Application::Voip)?;
    encoder.set_bitrate(opus::Bitrate::Bits(bitrate))?;
    let to_48k = |n: u64| n * u64::from(OPUS_RATE / pcm.rate);
    // The encoder's look-ahead is reported at its own rate; pre-skip is always at 48 kHz.
    let lookahead = usize::try_from(encoder.get_lookahead()?).unwrap_or(0);
    let pre_skip = u16::try_from(to_48k(lookahead as u64)).unwrap_or(u16::MAX);

    let mut writer = PacketWriter::new(Vec::new());
    let head = OpusHead::new(1, pre_skip, pcm.rate);
    writer.write_packet(
        head.to_bytes(),
        STREAM_SERIAL,
        PacketWriteEndInfo::EndPage,
        0,
    )?;
    writer.write_packet(opus_tags(), STREAM_SERIAL, PacketWriteEndInfo::EndPage, 0)?;

    let frame = (pcm.rate / FRAMES_PER_SECOND) as usize;
    let n = pcm.samples.len();
    // Encode until the look-ahead is flushed too, or the tail of the audio never comes out.
    let frames = (n + lookahead).div_ceil(frame);
    let end_granule = u64::from(pre_skip) + to_48k(n as u64);
    let mut input = vec![0f32; frame];
    let mut packet = vec![0u8; MAX_PACKET_BYTES];
    for i in 0..frames {
        let start = (i * frame).min(n);
        let end = ((i + 1) * frame).min(n);
        input.fill(0.0);
        input[..end - start].copy_from_slice(&pcm.samples[start..end]);
        let len = encoder.encode_float(&input, &mut packet)?;
        let last = i + 1 == frames;
        let granule = if last {
            end_granule
        } else {
            u64::from(pre_skip) + to_48k(((i + 1) * frame) as u64)
        };
        let end_info = if last {
            PacketWriteEndInfo::EndStream
        } else if (i + 1) % PACKETS_PER_PAGE == 0 {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        writer.write_packet(packet[..len].to_vec(), STREAM_SERIAL, end_info, granule)?;
    }
    Ok(writer.into_inner())
}

/// The comment header: vendor string and no user comments (RFC 7845 §5.2).
fn opus_tags() -> Vec<u8> {
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
    tags.extend_from_slice(VENDOR.as_bytes());
    tags.extend_from_slice(&0u32.to_le_bytes());
    tags
}

#[cfg(test)]
mod tests {
    use super::super::ogg_opus::decode;
    use super::*;

    #[test]
    fn round_trip_keeps_the_exact_length() {
        for n in [1usize, 959, 960, 48_000, 48_123] {
            let samples: Vec<f32> = (0..n).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
            let ogg = encode_ogg_opus(&Pcm::new(48_000, samples), DEFAULT_BITRATE).unwrap();
            let back = decode(&ogg, 48_000).unwrap();
            assert_eq!(back.pcm.samples.len(), n);
            assert!(!back.truncated);
            if n >= 3 {
                assert_eq!(decode(&ogg, 16_000).unwrap().pcm.samples.len(), n / 3);
            }
        }
    }

    #[test]
    fn refuses_empty_input_and_odd_rates() {
        assert!(matches!(
            encode_ogg_opus(&Pcm::new(48_000, Vec::new()), DEFAULT_BITRATE),
            Err(EncodeError::Empty)
        ));
        assert!(matches!(
            encode_ogg_opus(&Pcm::new(44_100, vec![0.0; 10]), DEFAULT_BITRATE),
            Err(EncodeError::Rate(44_100))
        ));
    }

    #[test]
    fn voice_message_has_duration_and_waveform() {
        let msg = encode_voice_message(&Pcm::new(48_000, vec![0.2; 24_000])).unwrap();
        assert!((msg.duration_secs - 0.5).abs() < 1e-9);
        assert_eq!(msg.waveform, "//////8=");
        assert!(msg.ogg.starts_with(b"OggS"));
    }
}
