//! The command provider with fake transcriber scripts: the program gets a 16 kHz WAV (by `{wav}`
//! or as the last argument), its stdout is the text, the file is removed afterwards; failures,
//! timeouts (the whole process group is killed) and a missing program are reported clearly.

use std::path::Path;
use std::time::Duration;

use kimaki::adapters::voice::codec::wav::decode_wav;
use kimaki::adapters::voice::transcribe::{
    CommandConfig, CommandProvider, Provider, TranscribeError, TranscriptionContext,
};
use kimaki::core::FailureKind;

use crate::support::fake_transcriber::clip_of;
use crate::support::poll;

fn script(dir: &Path, body: &str) -> String {
    let path = dir.join("stt.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    path.display().to_string()
}

fn provider(dir: &Path, argv: Vec<String>, timeout: Duration) -> CommandProvider {
    CommandProvider::new(CommandConfig {
        argv,
        timeout,
        scratch_dir: dir.join("scratch"),
        env_remove: Vec::new(),
    })
}

#[tokio::test]
async fn the_program_reads_a_16k_wav_and_prints_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("got.wav");
    let stt = script(
        dir.path(),
        &format!(
            "cp \"$1\" {}\necho '  Please open main.rs.  '",
            out.display()
        ),
    );
    let t = provider(dir.path(), vec!["sh".into(), stt], Duration::from_secs(10))
        .transcribe(&clip_of("short.ogg"), &TranscriptionContext::default())
        .await
        .unwrap();
    assert_eq!(t.text, "Please open main.rs.");
    assert_eq!(t.source, "command/sh");
    let pcm = decode_wav(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!((pcm.rate, pcm.samples.len()), (16_000, 171_121));
    let left: Vec<_> = std::fs::read_dir(dir.path().join("scratch"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "the temporary WAV is removed");
}

#[tokio::test]
async fn the_wav_placeholder_sets_where_the_path_goes() {
    let dir = tempfile::tempdir().unwrap();
    let args = dir.path().join("args");
    let stt = script(
        dir.path(),
        &format!("echo \"$@\" > {}\necho ok", args.display()),
    );
    let argv = vec![
        "sh".into(),
        stt,
        "--in".into(),
        "{wav}".into(),
        "--lang".into(),
        "en".into(),
    ];
    provider(dir.path(), argv, Duration::from_secs(10))
        .transcribe(&clip_of("short.ogg"), &TranscriptionContext::default())
        .await
        .unwrap();
    let recorded = std::fs::read_to_string(args).unwrap();
    let words: Vec<&str> = recorded.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{recorded}");
    assert_eq!(words[0], "--in");
    assert!(words[1].starts_with(&dir.path().join("scratch").display().to_string()));
    assert!(words[1].ends_with(".wav"));
    assert_eq!(&words[2..], ["--lang", "en"]);
}

#[tokio::test]
async fn a_failing_program_reports_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let stt = script(
        dir.path(),
        "echo 'loading model' >&2\necho 'model not found: tiny.en' >&2\nexit 3",
    );
    let err = provider(dir.path(), vec!["sh".into(), stt], Duration::from_secs(10))
        .transcribe(&clip_of("short.ogg"), &TranscriptionContext::default())
        .await
        .unwrap_err();
    assert!(matches!(err, TranscribeError::CommandFailed(_)), "{err}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("exit status: 3") && text.contains("model not found: tiny.en"),
        "{text}"
    );
}

#[tokio::test]
async fn a_hung_program_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let stt = script(
        dir.path(),
        &format!("sleep 60 &\necho $! > {}\nwait", pid_file.display()),
    );
    let err = provider(
        dir.path(),
        vec!["sh".into(), stt],
        Duration::from_millis(500),
    )
    .transcribe(&clip_of("short.ogg"), &TranscriptionContext::default())
    .await
    .unwrap_err();
    assert!(matches!(err, TranscribeError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.to_failure().kind, FailureKind::Timeout);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    poll::until(
        "the script's child to be killed",
        Duration::from_secs(5),
        || {
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"));
            (!alive).then_some(())
        },
    );
}

#[tokio::test]
async fn a_missing_program_or_undecodable_audio() {
    let dir = tempfile::tempdir().unwrap();
    let err = provider(
        dir.path(),
        vec!["/nonexistent/stt".into()],
        Duration::from_secs(10),
    )
    .transcribe(&clip_of("short.ogg"), &TranscriptionContext::default())
    .await
    .unwrap_err();
    assert!(matches!(err, TranscribeError::CommandMissing(_)), "{err}");
    assert_eq!(err.to_failure().kind, FailureKind::RunnerUnavailable);

    let mut mp3 = clip_of("short.ogg");
    mp3.pcm16k = None;
    mp3.format = kimaki::adapters::voice::codec::sniff::AudioFormat::Mp3;
    let err = provider(dir.path(), vec!["true".into()], Duration::from_secs(10))
        .transcribe(&mp3, &TranscriptionContext::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported audio: MP3 audio cannot be converted to WAV here"
    );
}
