//! The Ogg/Opus decoder against the fixtures in tests/fixtures/voice (made offline by
//! generate.sh with espeak-ng, sox and opusenc): exact sample counts prove the pre-skip and
//! granule trim, correlation at lag 0 and SNR against opusdec + sox prove the audio itself.
//! Also: output gain, cut files, non-Opus input, the voice-message writer, resampling.

use kimaki::adapters::voice::codec::ogg_opus::{decode, DecodeError, OpusHead};
use kimaki::adapters::voice::codec::ogg_writer::{encode_ogg_opus, encode_voice_message};
use kimaki::adapters::voice::codec::resample::{resample, resampled_len};
use kimaki::adapters::voice::codec::wav::decode_wav;
use kimaki::adapters::voice::codec::waveform::waveform;
use kimaki::adapters::voice::codec::{rms, Pcm};
use ogg::writing::PacketWriteEndInfo;

use crate::support::fake_transcriber::fixture;

/// `short.ogg` at 48 kHz: equal to the espeak source (`soxi`) and `opusinfo`'s 10.695 s.
const SHORT_SAMPLES_48K: usize = 513_363;
/// …and at 16 kHz, equal to `ref_16k.wav`.
const SHORT_SAMPLES_16K: usize = 171_121;
/// The pre-skip opusenc (libopus) writes.
const OPUSENC_PRE_SKIP: u16 = 312;
/// Lags searched around 0 when checking alignment.
const MAX_LAG: i64 = 40;
/// Margin for libopus float differences across CPUs; measured values are ≈10 dB higher.
const MIN_SNR_DB: f64 = 40.0;
/// Comparing two different encodings (or decode rates) of the same audio, the peak may sit a few
/// 48 kHz samples off: SILK's internal resamplers differ from CELT's by well under 0.1 ms. A
/// pre-skip mistake would be 312 samples off.
const CODEC_LAG_48K: i64 = 5;
/// The same at 16 kHz.
const CODEC_LAG_16K: i64 = 2;

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn reference(name: &str) -> Pcm {
    decode_wav(&read(name)).unwrap()
}

/// Normalised cross-correlation of `a` and `b` with `b` shifted by `lag`, over `len` samples.
fn correlation(a: &[f32], b: &[f32], lag: i64, len: usize) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..len {
        let j = i as i64 + lag;
        if j < 0 || j as usize >= b.len() || i >= a.len() {
            continue;
        }
        let (x, y) = (f64::from(a[i]), f64::from(b[j as usize]));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// The lag in ±MAX_LAG with the highest correlation, and that correlation.
fn best_lag(a: &[f32], b: &[f32]) -> (i64, f64) {
    let len = a.len().min(b.len());
    (-MAX_LAG..=MAX_LAG)
        .map(|lag| (lag, correlation(a, b, lag, len)))
        .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best })
}

/// Signal-to-noise ratio of `ours` against `reference`, in dB, over the shorter length.
fn snr_db(reference: &[f32], ours: &[f32]) -> f64 {
    let len = reference.len().min(ours.len());
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for i in 0..len {
        let (r, o) = (f64::from(reference[i]), f64::from(ours[i]));
        signal += r * r;
        noise += (r - o) * (r - o);
    }
    10.0 * (signal / noise).log10()
}

/// Power of `freq` in `samples` (Goertzel).
fn goertzel(samples: &[f32], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Rewrites an Ogg/Opus file packet by packet with a different `OpusHead` (a byte patch would
/// break the page checksum, and no encoder writes an output gain).
fn remux_with_head(bytes: &[u8], edit: impl Fn(&mut OpusHead)) -> Vec<u8> {
    let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes));
    let mut writer = ogg::PacketWriter::new(Vec::new());
    let mut first = true;
    while let Some(p) = reader.read_packet().unwrap() {
        let data = if first {
            let mut head = OpusHead::parse(&p.data).unwrap();
            edit(&mut head);
            head.to_bytes()
        } else {
            p.data.clone()
        };
        let end = if p.last_in_stream() {
            PacketWriteEndInfo::EndStream
        } else if p.last_in_page() {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        writer
            .write_packet(data, p.stream_serial(), end, p.absgp_page())
            .unwrap();
        first = false;
    }
    writer.into_inner()
}

fn sine(freq: f64, rate: u32, secs: f64, amplitude: f32) -> Pcm {
    let n = (f64::from(rate) * secs) as usize;
    Pcm::new(
        rate,
        (0..n)
            .map(|i| {
                amplitude
                    * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32
            })
            .collect(),
    )
}

#[test]
fn mono_voice_message_matches_opusdec_sample_for_sample() {
    let bytes = read("short.ogg");
    let at48 = decode(&bytes, 48_000).unwrap();
    assert_eq!(at48.head.pre_skip, OPUSENC_PRE_SKIP);
    assert_eq!(at48.head.channels, 1);
    assert!(!at48.truncated);
    assert_eq!(at48.pcm.samples.len(), SHORT_SAMPLES_48K);

    let reference = reference("ref_16k.wav");
    assert_eq!(reference.samples.len(), SHORT_SAMPLES_16K);
    // The same path as the reference (48 kHz decode, then a good resampler): near identical.
    let resampled = resample(&at48.pcm, 16_000).unwrap();
    assert_eq!(resampled.samples.len(), SHORT_SAMPLES_16K);
    let (lag, corr) = best_lag(&reference.samples, &resampled.samples);
    let snr = snr_db(&reference.samples, &resampled.samples);
    eprintln!(
        "48k+rubato vs ref: lag {lag} corr {corr:.6} snr {snr:.1} dB, rms {:.2} dBFS",
        resampled.rms_dbfs()
    );
    assert_eq!(lag, 0);
    assert!(snr >= MIN_SNR_DB, "SNR {snr:.1} dB");
    assert!((resampled.rms_dbfs() - reference.rms_dbfs()).abs() < 0.1);

    // Decoding straight at 16 kHz (the transcription path) is aligned and as long.
    let at16 = decode(&bytes, 16_000).unwrap();
    assert_eq!(at16.pcm.samples.len(), SHORT_SAMPLES_16K);
    let (lag, corr) = best_lag(&reference.samples, &at16.pcm.samples);
    let snr = snr_db(&reference.samples, &at16.pcm.samples);
    eprintln!(
        "direct 16k vs ref: lag {lag} corr {corr:.6} snr {snr:.1} dB, rms {:.2} dBFS",
        at16.pcm.rms_dbfs()
    );
    assert!(lag.abs() <= CODEC_LAG_16K, "lag {lag}");
    assert!(corr > 0.97, "corr {corr}");
}

#[test]
fn every_opus_rate_gives_the_exact_length() {
    let bytes = read("short.ogg");
    for (rate, expected) in [
        (8_000, 85_560),
        (12_000, 128_340),
        (24_000, 256_681),
        (48_000, SHORT_SAMPLES_48K),
    ] {
        let pcm = decode(&bytes, rate).unwrap().pcm;
        assert_eq!((rate, pcm.samples.len()), (rate, expected));
    }
}

#[test]
fn stereo_is_mixed_to_mono() {
    let bytes = read("short_stereo.ogg");
    let decoded = decode(&bytes, 48_000).unwrap();
    assert_eq!(decoded.head.channels, 2);
    assert_eq!(decoded.pcm.samples.len(), SHORT_SAMPLES_48K);
    let ours = resample(&decoded.pcm, 16_000).unwrap();
    // ref_stereo_16k.wav holds the first 3 s of opusdec's decode with both channels averaged.
    let reference = reference("ref_stereo_16k.wav");
    assert_eq!(reference.samples.len(), 48_000);
    let (lag, corr) = best_lag(&reference.samples, &ours.samples);
    let snr = snr_db(&reference.samples, &ours.samples);
    eprintln!("stereo: lag {lag} corr {corr:.6} snr {snr:.1} dB");
    assert_eq!(lag, 0);
    assert!(snr >= MIN_SNR_DB, "SNR {snr:.1} dB");
    // Left is the speech, right the speech at half level: the mix is ¾ of the mono file.
    let mono = decode(&read("short.ogg"), 48_000).unwrap().pcm;
    let ratio = decoded.pcm.rms_dbfs() - mono.rms_dbfs();
    eprintln!("stereo mix vs mono: {ratio:.2} dB");
    assert!(
        (ratio - 20.0 * 0.75f64.log10()).abs() < 0.5,
        "{ratio:.2} dB"
    );
}

#[test]
fn a_lower_bitrate_keeps_length_and_alignment() {
    let decoded = decode(&read("short_16kbps.ogg"), 16_000).unwrap();
    assert_eq!(decoded.pcm.samples.len(), SHORT_SAMPLES_16K);
    let reference = reference("ref_16k.wav");
    let (lag, corr) = best_lag(&reference.samples, &decoded.pcm.samples);
    eprintln!("16 kbps: lag {lag} corr {corr:.6}");
    assert!(lag.abs() <= CODEC_LAG_16K, "lag {lag}");
    // Codec loss only: two different encodings of the same speech.
    assert!(corr > 0.9, "corr {corr}");
}

#[test]
fn output_gain_is_applied() {
    let bytes = read("short.ogg");
    let plain = decode(&bytes, 16_000).unwrap().pcm;
    let louder = decode(&remux_with_head(&bytes, |h| h.output_gain = 1541), 16_000).unwrap();
    assert_eq!(louder.head.output_gain, 1541);
    assert_eq!(louder.pcm.samples.len(), plain.samples.len());
    let ratio = rms(&louder.pcm.samples) / rms(&plain.samples);
    assert!(
        (ratio - 2.0).abs() < 0.01,
        "+6.02 dB doubles the level: {ratio}"
    );
    let quieter = decode(&remux_with_head(&bytes, |h| h.output_gain = -1541), 16_000).unwrap();
    let ratio = rms(&quieter.pcm.samples) / rms(&plain.samples);
    assert!((ratio - 0.5).abs() < 0.005, "{ratio}");
}

#[test]
fn a_cut_file_keeps_the_audio_before_the_cut() {
    let bytes = read("short.ogg");
    let full = decode(&bytes, 16_000).unwrap().pcm;
    let cut = decode(&bytes[..20_000], 16_000).unwrap();
    assert!(cut.truncated);
    let n = cut.pcm.samples.len();
    eprintln!("cut at 20000 bytes: {:.2} s", cut.pcm.duration_secs());
    assert!(n > 16_000 * 3 && n < full.samples.len(), "{n}");
    assert_eq!(cut.pcm.samples[..], full.samples[..n]);
}

#[test]
fn what_is_not_ogg_opus_is_refused_clearly() {
    assert!(matches!(decode(b"", 16_000), Err(DecodeError::Empty)));
    let garbage: Vec<u8> = (0..4_096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let err = decode(&garbage, 16_000).unwrap_err();
    assert!(matches!(err, DecodeError::NotOgg), "{err}");
    assert_eq!(
        err.to_string(),
        "the file is not Ogg audio (expected an Ogg/Opus voice message)"
    );

    let mut vorbis = ogg::PacketWriter::new(Vec::new());
    vorbis
        .write_packet(
            b"\x01vorbis\0\0\0\0\x01\x44\xac\0\0".to_vec(),
            7,
            PacketWriteEndInfo::EndPage,
            0,
        )
        .unwrap();
    vorbis
        .write_packet(b"\x03vorbis".to_vec(), 7, PacketWriteEndInfo::EndStream, 0)
        .unwrap();
    let err = decode(&vorbis.into_inner(), 16_000).unwrap_err();
    assert_eq!(err.to_string(), "the Ogg file holds Vorbis, not Opus");

    let mut corrupt = read("short.ogg");
    corrupt.truncate(200);
    corrupt[60] ^= 0xFF;
    let err = decode(&corrupt, 16_000).unwrap_err();
    assert!(matches!(err, DecodeError::Corrupt(_)), "{err}");

    let bytes = read("short.ogg");
    let err = decode(&bytes[..bytes_of_first_two_pages(&bytes)], 16_000).unwrap_err();
    assert!(matches!(err, DecodeError::NoAudio), "{err}");
}

/// The length of the `OpusHead` and `OpusTags` pages.
fn bytes_of_first_two_pages(bytes: &[u8]) -> usize {
    let mut at = 0;
    for _ in 0..2 {
        let segments = bytes[at + 26] as usize;
        let body: usize = bytes[at + 27..at + 27 + segments]
            .iter()
            .map(|&b| b as usize)
            .sum();
        at += 27 + segments + body;
    }
    at
}

#[test]
fn the_voice_message_writer_round_trips_a_tone() {
    let tone = sine(440.0, 48_000, 1.5, 0.5);
    let msg = encode_voice_message(&tone).unwrap();
    assert!((msg.duration_secs - 1.5).abs() < 1e-9);
    assert_eq!(waveform(&tone).len(), 15);
    let back = decode(&msg.ogg, 48_000).unwrap();
    assert_eq!(back.head.pre_skip, OPUSENC_PRE_SKIP);
    assert_eq!(back.pcm.samples.len(), tone.samples.len());
    let power = |f| goertzel(&back.pcm.samples, 48_000, f);
    let p440 = power(440.0);
    for other in [220.0, 330.0, 550.0, 880.0, 1_000.0] {
        assert!(p440 > 100.0 * power(other), "440 Hz dominates {other} Hz");
    }
    let (lag, corr) = best_lag(&tone.samples, &back.pcm.samples);
    eprintln!("tone: lag {lag} corr {corr:.4}");
    assert!(lag.abs() <= CODEC_LAG_48K, "lag {lag}");
    assert!(corr > 0.95, "corr {corr}");
}

#[test]
fn re_encoding_speech_at_other_bitrates_keeps_length_and_alignment() {
    let speech = decode(&read("short.ogg"), 48_000).unwrap().pcm;
    for (bitrate, min_corr) in [(16_000, 0.9), (24_000, 0.9), (96_000, 0.95)] {
        let ogg = encode_ogg_opus(&speech, bitrate).unwrap();
        let back = decode(&ogg, 48_000).unwrap().pcm;
        assert_eq!(back.samples.len(), SHORT_SAMPLES_48K, "{bitrate}");
        let (lag, corr) = best_lag(&speech.samples, &back.samples);
        eprintln!(
            "re-encode {bitrate}: {} bytes, lag {lag} corr {corr:.4}",
            ogg.len()
        );
        assert!(lag.abs() <= CODEC_LAG_48K, "{bitrate}: lag {lag}");
        assert!(corr > min_corr, "{bitrate}: corr {corr}");
    }
}

#[test]
fn resampling_is_aligned_and_exactly_as_long() {
    // A tone resampled must equal the same tone generated at the target rate, sample for sample.
    for (from, to) in [(48_000, 16_000), (16_000, 48_000), (48_000, 24_000)] {
        let input = sine(440.0, from, 1.0, 0.5);
        let expected = sine(440.0, to, 1.0, 0.5);
        let out = resample(&input, to).unwrap();
        assert_eq!(out.samples.len(), expected.samples.len(), "{from}->{to}");
        let (lag, _) = best_lag(&expected.samples, &out.samples);
        let snr = snr_db(&expected.samples, &out.samples);
        eprintln!("tone {from}->{to}: lag {lag} snr {snr:.1} dB");
        assert_eq!(lag, 0, "{from}->{to}");
        assert!(snr > MIN_SNR_DB, "{from}->{to}: SNR {snr:.1} dB");
    }
    for n in [1, 2, 3, 1_023, 1_024, 1_025, 100_001] {
        let pcm = Pcm::new(48_000, vec![0.25; n]);
        assert_eq!(
            resample(&pcm, 16_000).unwrap().samples.len(),
            n.div_ceil(3),
            "{n}"
        );
    }
    let at48 = decode(&read("short.ogg"), 48_000).unwrap().pcm;
    let down = resample(&at48, 16_000).unwrap();
    assert_eq!(
        down.samples.len(),
        resampled_len(at48.samples.len(), 48_000, 16_000)
    );
    assert_eq!(down.samples.len(), SHORT_SAMPLES_16K);
}

#[test]
fn the_waveform_of_a_voice_message() {
    let pcm = decode(&read("short.ogg"), 48_000).unwrap().pcm;
    let points = waveform(&pcm);
    assert_eq!(points.len(), 107, "one point per 100 ms of 10.695 s");
    assert_eq!(points.iter().copied().max(), Some(255));
    assert!(points.iter().any(|&p| p < 64), "pauses show as low points");
}
