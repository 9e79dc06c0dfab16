//! Ogg/Opus → mono f32 at a chosen rate, following RFC 7845: the `OpusHead` fields (pre-skip,
//! output gain, channel mapping), granule positions counted at 48 kHz whatever the decode rate,
//! the end trimmed to the last granule and the start to the pre-skip. A file cut short keeps the
//! audio decoded so far; anything that is not Ogg/Opus is rejected with a clear error.

use std::io::Cursor;

use ogg::reading::OggReadError;
use ogg::PacketReader;

use super::sniff::ogg_codec_name;
use super::{Pcm, OPUS_RATE};

/// The largest Opus frame: 120 ms at 48 kHz, per channel.
const MAX_FRAME_SAMPLES: usize = 5_760;

/// `OpusHead` is at least this long for mapping family 0 (RFC 7845 §5.1).
const HEAD_MIN_LEN: usize = 19;

/// Offset of the channel mapping table for families other than 0.
const HEAD_MAPPING_OFFSET: usize = 21;

/// Versions whose major part (high nibble) is 0 are compatible (RFC 7845 §5.1).
const HEAD_MAX_COMPATIBLE_VERSION: u8 = 15;

/// Q7.8 output gain to a linear factor: 10^(gain / (256 · 20)).
const GAIN_Q78_DB_DIVISOR: f64 = 5_120.0;

/// Rates libopus can decode to directly.
pub const DECODE_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the audio file is empty")]
    Empty,
    #[error("the file is not Ogg audio (expected an Ogg/Opus voice message)")]
    NotOgg,
    #[error("the Ogg file holds {codec}, not Opus")]
    NotOpus { codec: &'static str },
    #[error("unsupported Opus stream: {0}")]
    Unsupported(String),
    #[error("the Ogg/Opus data is corrupt: {0}")]
    Corrupt(String),
    #[error("the Ogg/Opus stream holds no audio")]
    NoAudio,
    #[error("Opus cannot decode at {0} Hz (8, 12, 16, 24 or 48 kHz only)")]
    Rate(u32),
}

/// The identification header (RFC 7845 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusHead {
    pub version: u8,
    pub channels: u8,
    /// Samples (at 48 kHz) to drop from the start of the decoded output.
    pub pre_skip: u16,
    /// The rate of the original input; informational only, never used to resample.
    pub input_rate: u32,
    /// Q7.8 dB, applied on output.
    pub output_gain: i16,
    pub mapping_family: u8,
    /// For mapping families other than 0.
    pub stream_count: u8,
    pub coupled_count: u8,
    pub mapping: Vec<u8>,
}

impl OpusHead {
    /// A family-0 head for `channels` (1 or 2).
    pub fn new(channels: u8, pre_skip: u16, input_rate: u32) -> Self {
        Self {
            version: 1,
            channels,
            pre_skip,
            input_rate,
            output_gain: 0,
            mapping_family: 0,
            stream_count: 1,
            coupled_count: channels.saturating_sub(1),
            mapping: Vec::new(),
        }
    }

    pub fn parse(packet: &[u8]) -> Result<Self, DecodeError> {
        if !packet.starts_with(b"OpusHead") {
            return Err(DecodeError::NotOpus {
                codec: ogg_codec_name(packet),
            });
        }
        if packet.len() < HEAD_MIN_LEN {
            return Err(DecodeError::Corrupt(
                "the OpusHead header is too short".into(),
            ));
        }
        let u16_at = |i: usize| u16::from_le_bytes([packet[i], packet[i + 1]]);
        let version = packet[8];
        if version > HEAD_MAX_COMPATIBLE_VERSION {
            return Err(DecodeError::Unsupported(format!(
                "OpusHead version {version}"
            )));
        }
        let channels = packet[9];
        if channels == 0 {
            return Err(DecodeError::Corrupt("OpusHead declares 0 channels".into()));
        }
        let mut head = Self {
            version,
            channels,
            pre_skip: u16_at(10),
            input_rate: u32::from_le_bytes([packet[12], packet[13], packet[14], packet[15]]),
            output_gain: i16::from_le_bytes([packet[16], packet[17]]),
            mapping_family: packet[18],
            stream_count: 1,
            coupled_count: channels.saturating_sub(1),
            mapping: Vec::new(),
        };
        if head.mapping_family != 0 {
            let table_end = HEAD_MAPPING_OFFSET + usize::from(channels);
            if packet.len() < table_end {
                return Err(DecodeError::Corrupt(
                    "the OpusHead channel mapping table is cut short".into(),
                ));
            }
            head.stream_count = packet[19];
            head.coupled_count = packet[20];
            head.mapping = packet[HEAD_MAPPING_OFFSET..table_end].to_vec();
        }
        Ok(head)
    }

    /// The serialized header (family 0 only writes the 19 fixed bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_MAPPING_OFFSET + self.mapping.len());
        out.extend_from_slice(b"OpusHead");
        out.push(self.version);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_le_bytes());
        out.extend_from_slice(&self.input_rate.to_le_bytes());
        out.extend_from_slice(&self.output_gain.to_le_bytes());
        out.push(self.mapping_family);
        if self.mapping_family != 0 {
            out.push(self.stream_count);
            out.push(self.coupled_count);
            out.extend_from_slice(&self.mapping);
        }
        out
    }

    /// The channel layout a single libopus decoder handles: family 0 (mono or stereo), or family 1
    /// with one stream and the identity order. Everything else needs a multistream decoder.
    fn decoder_channels(&self) -> Result<opus::Channels, DecodeError> {
        let simple = match self.mapping_family {
            0 => true,
            1 => {
                self.stream_count == 1
                    && self.coupled_count == self.channels - 1
                    && self
                        .mapping
                        .iter()
                        .enumerate()
                        .all(|(i, &m)| usize::from(m) == i)
            }
            _ => false,
        };
        match (simple, self.channels) {
            (true, 1) => Ok(opus::Channels::Mono),
            (true, 2) => Ok(opus::Channels::Stereo),
            _ => Err(DecodeError::Unsupported(format!(
                "{} channels with mapping family {} (only mono and stereo voice recordings are supported)",
                self.channels, self.mapping_family
            ))),
        }
    }

    /// The output gain as a linear factor.
    pub fn gain_factor(&self) -> f32 {
        10f64.powf(f64::from(self.output_gain) / GAIN_Q78_DB_DIVISOR) as f32
    }
}

/// A decoded stream.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub pcm: Pcm,
    pub head: OpusHead,
    /// The file ended mid-page or was damaged after some audio: `pcm` holds what came before.
    pub truncated: bool,
}

/// Decodes Ogg/Opus `bytes` to mono at `rate` (one of [`DECODE_RATES`]).
pub fn decode(bytes: &[u8], rate: u32) -> Result<Decoded, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if !bytes.starts_with(b"OggS") {
        return Err(DecodeError::NotOgg);
    }
    if !DECODE_RATES.contains(&rate) {
        return Err(DecodeError::Rate(rate));
    }
    let mut reader = PacketReader::new(Cursor::new(bytes));
    let first = match reader.read_packet() {
        Ok(Some(p)) => p,
        Ok(None) => return Err(DecodeError::NoAudio),
        Err(e) => return Err(DecodeError::Corrupt(describe(&e))),
    };
    let head = OpusHead::parse(&first.data)?;
    let channels = head.decoder_channels()?;
    let ch = channels as usize;
    let serial = first.stream_serial();
    let mut decoder = opus::Decoder::new(rate, channels)
        .map_err(|e| DecodeError::Corrupt(format!("cannot start the Opus decoder: {e}")))?;

    let mut buf = vec![0f32; MAX_FRAME_SAMPLES * ch];
    let mut out: Vec<f32> = Vec::with_capacity(estimate_samples(bytes.len(), rate));
    let mut last_granule: Option<u64> = None;
    let mut audio_packets = 0usize;
    let mut seen_tags = false;
    let mut truncated = false;
    loop {
        let packet = match reader.read_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A voice note cut off in transit still carries what was said before the cut.
            Err(_) if audio_packets > 0 => {
                truncated = true;
                break;
            }
            Err(e) => return Err(DecodeError::Corrupt(describe(&e))),
        };
        if packet.stream_serial() != serial || packet.data.is_empty() {
            continue;
        }
        if !seen_tags {
            seen_tags = true;
            if packet.data.starts_with(b"OpusTags") {
                continue;
            }
        }
        let n = match decoder.decode_float(&packet.data, &mut buf, false) {
            Ok(n) => n,
            Err(_) if audio_packets > 0 => {
                truncated = true;
                break;
            }
            Err(e) => return Err(DecodeError::Corrupt(format!("bad Opus packet: {e}"))),
        };
        audio_packets += 1;
        push_mono(&mut out, &buf[..n * ch], ch);
        if packet.last_in_page() {
            last_granule = Some(packet.absgp_page());
        }
        if packet.last_in_stream() {
            break;
        }
    }
    if audio_packets == 0 {
        return Err(DecodeError::NoAudio);
    }

    let scale = |at_48k: u64| -> usize {
        usize::try_from(at_48k.saturating_mul(u64::from(rate)) / u64::from(OPUS_RATE))
            .unwrap_or(usize::MAX)
    };
    // The last page's granule marks where the audio really ends (the encoder padded the final
    // frame); the pre-skip is the encoder's start-up delay. Both are counted at 48 kHz.
    if let Some(granule) = last_granule.filter(|&g| g != u64::MAX) {
        out.truncate(scale(granule));
    }
    let skip = scale(u64::from(head.pre_skip)).min(out.len());
    out.drain(..skip);
    if out.is_empty() {
        return Err(DecodeError::NoAudio);
    }
    if head.output_gain != 0 {
        let factor = head.gain_factor();
        out.iter_mut().for_each(|s| *s *= factor);
    }
    Ok(Decoded {
        pcm: Pcm::new(rate, out),
        head,
        truncated,
    })
}

/// Appends interleaved `frames` as mono: stereo is averaged, `(l + r) / 2`.
fn push_mono(out: &mut Vec<f32>, frames: &[f32], channels: usize) {
    if channels == 1 {
        out.extend_from_slice(frames);
    } else {
        out.extend(
            frames
                .chunks_exact(channels)
                .map(|f| f.iter().sum::<f32>() / channels as f32),
        );
    }
}

/// A generous guess of the decoded length, so the output vector rarely reallocates: voice
/// messages are ≈32 kbps, so 4 000 bytes per second (lower bitrates merely reallocate).
fn estimate_samples(byte_len: usize, rate: u32) -> usize {
    const BYTES_PER_SECOND: usize = 4_000;
    const MAX_PREALLOCATED_SECONDS: usize = 3_600;
    (byte_len / BYTES_PER_SECOND + 1).min(MAX_PREALLOCATED_SECONDS) * rate as usize
}

fn describe(e: &OggReadError) -> String {
    match e {
        OggReadError::NoCapturePatternFound => "no Ogg page where one was expected".into(),
        OggReadError::InvalidStreamStructVer(v) => format!("unknown Ogg stream version {v}"),
        OggReadError::HashMismatch(..) => "an Ogg page fails its checksum".into(),
        OggReadError::ReadError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends in the middle of an Ogg page".into()
        }
        OggReadError::ReadError(io) => io.to_string(),
        OggReadError::InvalidData => "invalid Ogg page structure".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_bytes(channels: u8, family: u8, extra: &[u8]) -> Vec<u8> {
        let mut h = b"OpusHead".to_vec();
        h.extend_from_slice(&[
            1, channels, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0x05, 0x06, family,
        ]);
        h.extend_from_slice(extra);
        h
    }

    #[test]
    fn parses_the_identification_header() {
        let head = OpusHead::parse(&head_bytes(1, 0, &[])).unwrap();
        assert_eq!(head.channels, 1);
        assert_eq!(head.pre_skip, 312);
        assert_eq!(head.input_rate, 48_000);
        assert_eq!(head.output_gain, 0x0605);
        assert_eq!(head.to_bytes(), head_bytes(1, 0, &[]));
        assert_eq!(head.decoder_channels().unwrap(), opus::Channels::Mono);
    }

    #[test]
    fn mapping_families() {
        let fam1_stereo = OpusHead::parse(&head_bytes(2, 1, &[1, 1, 0, 1])).unwrap();
        assert_eq!(
            fam1_stereo.decoder_channels().unwrap(),
            opus::Channels::Stereo
        );
        let surround = OpusHead::parse(&head_bytes(6, 1, &[4, 2, 0, 4, 1, 2, 3, 5])).unwrap();
        assert!(matches!(
            surround.decoder_channels(),
            Err(DecodeError::Unsupported(_))
        ));
        let ambisonic = OpusHead::parse(&head_bytes(1, 2, &[1, 0, 0])).unwrap();
        assert!(matches!(
            ambisonic.decoder_channels(),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            OpusHead::parse(&head_bytes(2, 1, &[1])),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(matches!(
            OpusHead::parse(b"OpusHead\x01"),
            Err(DecodeError::Corrupt(_))
        ));
        let mut future = head_bytes(1, 0, &[]);
        future[8] = 0x10;
        assert!(matches!(
            OpusHead::parse(&future),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            OpusHead::parse(b"\x01vorbis\0\0\0\0"),
            Err(DecodeError::NotOpus { codec: "Vorbis" })
        ));
    }

    #[test]
    fn gain_is_q7_8_decibels() {
        let mut head = OpusHead::new(1, 312, 48_000);
        head.output_gain = 1541; // +6.02 dB
        assert!((head.gain_factor() - 2.0).abs() < 1e-3);
        head.output_gain = -1541;
        assert!((head.gain_factor() - 0.5).abs() < 1e-3);
    }

    #[test]
    fn stereo_is_averaged() {
        let mut out = Vec::new();
        push_mono(&mut out, &[1.0, 0.0, 0.5, 0.5, -1.0, 1.0], 2);
        assert_eq!(out, vec![0.5, 0.5, 0.0]);
    }

    #[test]
    fn rejects_what_is_not_ogg_opus() {
        assert!(matches!(decode(b"", 16_000), Err(DecodeError::Empty)));
        assert!(matches!(
            decode(b"RIFF....WAVE", 16_000),
            Err(DecodeError::NotOgg)
        ));
        assert!(matches!(
            decode(b"OggS", 44_100),
            Err(DecodeError::Rate(44_100))
        ));
        assert!(matches!(
            decode(b"OggS\0garbage that is not a page", 16_000),
            Err(DecodeError::Corrupt(_))
        ));
    }
}
