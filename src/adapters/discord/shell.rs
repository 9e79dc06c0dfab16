//! `!command`: `sh -c` in the project directory, in its own process group, killed (the whole
//! group) when it outlives its timeout. Output is capped while it is read, so a runaway command
//! cannot exhaust memory.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Output kept per stream (the reply shows at most 1900 characters anyway).
const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// After the kill, the pipes close at once; do not wait for them forever.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellOutcome {
    /// `None` when a signal ended it.
    pub exit: Option<i32>,
    pub timed_out: bool,
    /// stdout, then stderr.
    pub output: String,
}

async fn read_capped(mut pipe: impl tokio::io::AsyncRead + Unpin, into: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut out = into.lock().unwrap_or_else(|p| p.into_inner());
                let room = MAX_OUTPUT_BYTES.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Runs `command` with `sh -c` in `dir`.
pub async fn run(command: &str, dir: &Path, timeout: Duration) -> std::io::Result<ShellOutcome> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let mut readers = tokio::task::JoinSet::new();
    if let Some(p) = child.stdout.take() {
        readers.spawn(read_capped(p, out.clone()));
    }
    if let Some(p) = child.stderr.take() {
        readers.spawn(read_capped(p, err.clone()));
    }
    let (exit, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status?.code(), false),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                // The group: `sh` and everything it started.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait().await;
            (None, true)
        }
    };
    let _ = tokio::time::timeout(DRAIN_AFTER_KILL, async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    let mut output =
        String::from_utf8_lossy(&out.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    let stderr =
        String::from_utf8_lossy(&err.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    if !stderr.is_empty() {
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str(&stderr);
    }
    Ok(ShellOutcome {
        exit,
        timed_out,
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_exit_code_and_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "x").unwrap();
        let ok = run(
            "ls; echo oops >&2; exit 3",
            dir.path(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(
            ok,
            ShellOutcome {
                exit: Some(3),
                timed_out: false,
                output: "a.txt\noops\n".into()
            }
        );
        let started = std::time::Instant::now();
        let slow = run(
            "sleep 30; echo never",
            dir.path(),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        assert!(slow.timed_out);
        assert!(!slow.output.contains("never"));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
