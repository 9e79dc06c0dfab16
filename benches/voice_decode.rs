//! Voice pipeline benchmark: decode and resample a 60 s voice note. Prints named figures (ms per
//! clip, × real time, and peak RSS per stage measured in a fresh process), asserts nothing. Run with
//! `cargo bench --bench voice_decode`; results and the command are recorded in docs/voice.md.
//!
//! The 60 s clip is made at run time from tests/fixtures/voice/short.ogg: decoded, looped to
//! exactly 60.000 s and encoded like a Discord voice message (48 kHz mono, 32 kbps), so the
//! benchmark needs no tools and no large committed file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kimaki::adapters::voice::codec::ogg_opus::decode;
use kimaki::adapters::voice::codec::ogg_writer::{encode_ogg_opus, DEFAULT_BITRATE};
use kimaki::adapters::voice::codec::resample::resample;
use kimaki::adapters::voice::codec::wav::encode_wav;
use kimaki::adapters::voice::codec::Pcm;

const CLIP_SECS: f64 = 60.0;
const RUNS: usize = 20;

/// Stages measured for peak memory, each in a fresh process.
const RSS_STAGES: [&str; 4] = [
    "decode_48k",
    "decode_16k",
    "pipeline_48k_resample_wav",
    "pipeline_16k_wav",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rss-stage") {
        return rss_child(&args[i + 1], &args[i + 2]);
    }
    println!(
        "voice_decode benchmark (release build, {} CPUs, {RUNS} runs per stage, median)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let short = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/voice/short.ogg"),
    )
    .unwrap();
    let ogg = long_clip(&short);
    println!(
        "clip                         {:.3} s, {} bytes Ogg/Opus",
        CLIP_SECS,
        ogg.len()
    );
    let baseline = vm_hwm_kib();

    let at48 = stage("decode_48k", || decode(&ogg, 48_000).unwrap().pcm);
    assert_eq!(at48.samples.len(), 2_880_000);
    let at16 = stage("decode_16k", || decode(&ogg, 16_000).unwrap().pcm);
    assert_eq!(at16.samples.len(), 960_000);
    let down = stage("resample_48k_to_16k", || resample(&at48, 16_000).unwrap());
    assert_eq!(down.samples.len(), 960_000);
    stage("wav_encode_16k", || encode_wav(&down).unwrap());
    stage("pipeline_48k_resample_wav", || {
        let pcm = decode(&ogg, 48_000).unwrap().pcm;
        encode_wav(&resample(&pcm, 16_000).unwrap()).unwrap()
    });
    stage("pipeline_16k_wav", || {
        encode_wav(&decode(&ogg, 16_000).unwrap().pcm).unwrap()
    });
    stage("encode_voice_message_48k", || {
        encode_ogg_opus(&at48, DEFAULT_BITRATE).unwrap()
    });
    println!(
        "peak_rss_this_process        {:.1} MiB (before the stages: {:.1} MiB)",
        vm_hwm_kib() as f64 / 1024.0,
        baseline as f64 / 1024.0
    );

    // Peak memory per stage, each in a fresh process that reads the clip from a file: a freed
    // buffer of an earlier stage would otherwise hide the next stage's peak.
    let clip_path =
        std::env::temp_dir().join(format!("kimaki-voice-bench-{}.ogg", std::process::id()));
    std::fs::write(&clip_path, &ogg).unwrap();
    let exe = std::env::current_exe().unwrap();
    for name in RSS_STAGES {
        let out = std::process::Command::new(&exe)
            .arg("--rss-stage")
            .arg(name)
            .arg(&clip_path)
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    let _ = std::fs::remove_file(&clip_path);
}

/// One stage once, in this fresh process; prints the peak RSS and the part of it the stage added.
fn rss_child(name: &str, clip: &str) {
    let ogg = std::fs::read(clip).unwrap();
    let before = vm_hwm_kib();
    let kept = match name {
        "decode_48k" => decode(&ogg, 48_000).unwrap().pcm.samples.len(),
        "decode_16k" => decode(&ogg, 16_000).unwrap().pcm.samples.len(),
        "pipeline_48k_resample_wav" => {
            let pcm = decode(&ogg, 48_000).unwrap().pcm;
            encode_wav(&resample(&pcm, 16_000).unwrap()).unwrap().len()
        }
        "pipeline_16k_wav" => encode_wav(&decode(&ogg, 16_000).unwrap().pcm)
            .unwrap()
            .len(),
        other => panic!("unknown stage {other}"),
    };
    let peak = vm_hwm_kib();
    println!(
        "peak_rss_{name:<27} {:>5.1} MiB  (+{:.1} MiB over the loaded process and clip; output {kept})",
        peak as f64 / 1024.0,
        peak.saturating_sub(before) as f64 / 1024.0,
    );
}

/// Runs `f` once to warm up, then RUNS times; prints the median time and × real time.
fn stage<T>(name: &str, mut f: impl FnMut() -> T) -> T {
    let first = f();
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let out = f();
        times.push(t0.elapsed());
        drop(out);
    }
    times.sort();
    let median = times[RUNS / 2];
    let ms = median.as_secs_f64() * 1_000.0;
    println!(
        "{name:<28} {ms:>7.1} ms  {:>6.0}× real time  (min {:.1} ms, max {:.1} ms)",
        CLIP_SECS / median.as_secs_f64(),
        times[0].as_secs_f64() * 1_000.0,
        times[RUNS - 1].as_secs_f64() * 1_000.0,
    );
    first
}

/// short.ogg decoded, looped to exactly 60 s and encoded as a voice message.
fn long_clip(short: &[u8]) -> Vec<u8> {
    let speech = decode(short, 48_000).unwrap().pcm.samples;
    let n = (48_000.0 * CLIP_SECS) as usize;
    let samples: Vec<f32> = speech.iter().copied().cycle().take(n).collect();
    encode_ogg_opus(&Pcm::new(48_000, samples), DEFAULT_BITRATE).unwrap()
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn vm_hwm_kib() -> u64 {
    status_kib("VmHWM:")
}
