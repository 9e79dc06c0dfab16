//! Transcribes one Ogg/Opus or WAV file with the built-in Whisper, the way the `local` provider
//! does for a voice message, and prints the time to load the model and to decode. For
//! measuring; needs the `local-whisper` feature.
//!
//! ```sh
//! cargo run --release --features local-whisper --example whisper_transcribe -- \
//!     <model-dir> tests/fixtures/voice/long60.ogg [threads]
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kimaki::adapters::voice::codec::sniff::{sniff, AudioFormat};
use kimaki::adapters::voice::codec::{ogg_opus, resample, wav, SPEECH_RATE};
use kimaki::adapters::voice::transcribe::local::{LocalConfig, LocalProvider};
use kimaki::adapters::voice::transcribe::{AudioClip, Provider, TranscriptionContext};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(model_dir), Some(file)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: whisper_transcribe <model-dir> <audio.ogg|audio.wav> [threads]");
    };
    let threads = args.next().map(|t| t.parse()).transpose()?.unwrap_or(0);

    let bytes = std::fs::read(&file)?;
    let format = sniff(&bytes);
    let pcm = match format {
        AudioFormat::OggOpus => ogg_opus::decode(&bytes, SPEECH_RATE)?.pcm,
        AudioFormat::Wav => resample::resample(&wav::decode_wav(&bytes)?, SPEECH_RATE)?,
        other => anyhow::bail!("{file}: {} is not supported here", other.name()),
    };
    let secs = pcm.duration_secs();
    let clip = AudioClip {
        bytes: bytes.into(),
        format,
        mime: format.mime().to_owned(),
        filename: file.clone(),
        pcm16k: Some(Arc::new(pcm)),
    };
    let provider = LocalProvider::new(LocalConfig {
        model_dir: PathBuf::from(model_dir),
        threads,
        timeout: Duration::from_secs(3600),
    });
    let ctx = TranscriptionContext::default();

    // The first call loads the model; a silent second clip would be skipped, so time a real one.
    let started = Instant::now();
    let first = provider.transcribe(&clip, &ctx).await?;
    let first_elapsed = started.elapsed();
    let started = Instant::now();
    let second = provider.transcribe(&clip, &ctx).await?;
    let warm = started.elapsed();

    eprintln!(
        "{file}: {secs:.1} s of audio; first call (model load + decode) {:.2} s, \
         warm decode {:.2} s = {:.1}× real time",
        first_elapsed.as_secs_f64(),
        warm.as_secs_f64(),
        secs / warm.as_secs_f64()
    );
    if first.text != second.text {
        eprintln!("note: the two runs differ");
    }
    println!("{}", second.text);
    Ok(())
}
