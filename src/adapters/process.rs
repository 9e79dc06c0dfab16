//! Process plumbing shared by the runner adapters that drive a CLI over stdio: spawn it in its own
//! process group with a filtered environment, read its stdout as JSON lines (each capped in
//! length), keep the tail of its stderr (secrets scrubbed) plus a per-job log file, and stop it
//! gracefully: close stdin → SIGTERM to the group → SIGKILL. Protocol-level interrupts belong to
//! each adapter; this module knows nothing about any runner's wire format or about `core`.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Lines in flight between the stdout reader and the runner loop; when the loop falls behind, the
/// full channel stops the reader, and the pipe then slows the child down instead of memory growing.
const LINE_CHANNEL_CAPACITY: usize = 256;

/// A single JSON line larger than this is dropped (and reported): a file dump in a tool result
/// can be a few MB, anything beyond this is runaway output that must not exhaust memory.
pub const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;

/// stderr lines kept for failure messages; enough for a stack trace, short enough for a chat.
const STDERR_TAIL_LINES: usize = 20;

/// Each kept stderr line is cut to this many bytes.
const STDERR_LINE_MAX: usize = 500;

/// A per-job stderr log stops growing at this size; the tail in memory still follows.
const STDERR_LOG_MAX_BYTES: u64 = 1024 * 1024;

/// Per-job stderr logs kept in a runner's log directory; older ones are pruned at spawn.
const STDERR_LOGS_KEPT: usize = 100;

/// A line written to stdin that the child does not take within this long means it is wedged.
const STDIN_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// After SIGKILL, reaping is immediate unless the kernel is in trouble; do not wait forever.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);

/// Secrets shorter than this are not scrubbed: replacing every "1" or "ok" would garble messages
/// without protecting anything.
const MIN_SECRET_LEN: usize = 6;

/// Token prefixes scrubbed wherever they appear, even when kimaki was not told the value.
const SECRET_PREFIXES: [&str; 3] = ["sk-", "sk_", "Bearer "];

/// A prefixed token needs at least this many more characters to count as a credential (real keys
/// have dozens), so prose like "risk-free" or "sk-1" stays readable.
const MIN_TOKEN_TAIL: usize = 8;

/// What replaces a secret in text that leaves kimaki.
const REDACTED: &str = "[redacted]";

/// Failures of the process plumbing itself.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("cannot write to the runner's stdin: {0}")]
    Write(#[source] io::Error),
    #[error("the runner did not read its stdin within {STDIN_WRITE_TIMEOUT:?}")]
    WriteTimeout,
    #[error("the runner's stdin is already closed")]
    StdinClosed,
}

pub type Result<T> = std::result::Result<T, ProcessError>;

/// Which environment a runner process gets.
#[derive(Clone, Default)]
pub struct ChildEnv {
    /// Start from kimaki's own environment (minus `KIMAKI_*` and `MESH_*`, so kimaki's secrets
    /// never reach a child); otherwise start empty.
    pub inherit: bool,
    /// Inherited variables to drop (kimaki's own; from the settings' environment snapshot).
    pub remove: Vec<String>,
    /// Set on top, in order (later wins).
    pub vars: Vec<(String, String)>,
}

impl std::fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values can be API keys: show names only.
        let names: Vec<&str> = self.vars.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ChildEnv")
            .field("inherit", &self.inherit)
            .field("vars", &names)
            .finish()
    }
}

impl ChildEnv {
    fn apply(&self, cmd: &mut Command) {
        if self.inherit {
            for name in &self.remove {
                cmd.env_remove(name);
            }
        } else {
            cmd.env_clear();
        }
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
    }

    /// Values of the explicitly set variables whose names suggest credentials.
    pub fn secret_values(&self) -> Vec<String> {
        self.vars
            .iter()
            .filter(|(k, _)| looks_secret(k))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The value a variable will have in the child, when this environment sets it explicitly.
    pub fn explicit(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Values that must never be shown: a redacting `Debug` keeps them out of logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(pub Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

/// Whether a variable name usually holds a credential.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD"]
        .iter()
        .any(|w| upper.contains(w))
}

/// How to start one runner process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: ChildEnv,
    /// Where to keep this process's full stderr (capped), if anywhere.
    pub stderr_log: Option<PathBuf>,
}

/// One line of the child's stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Json(serde_json::Value),
    /// Not JSON (a banner, a warning printed to stdout); kept for diagnostics.
    Text(String),
    /// A line over [`MAX_LINE_BYTES`], dropped; the number is its length.
    TooLong(usize),
}

/// A runner CLI speaking JSON lines on stdio, in its own process group.
pub struct JsonlProcess {
    child: Child,
    pid: Option<u32>,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Line>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_done: Option<tokio::task::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl JsonlProcess {
    /// Starts the process: stdin, stdout and stderr piped; own process group; killed on drop.
    pub fn spawn(spec: &ProcessSpec) -> Result<Self> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .current_dir(&spec.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a stop reaches the tools it started too.
            .process_group(0)
            .kill_on_drop(true);
        spec.env.apply(&mut cmd);
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: spec.program.display().to_string(),
            source,
        })?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel(LINE_CHANNEL_CAPACITY);
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(read_json_lines(stdout, tx, MAX_LINE_BYTES));
        }
        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
        let stderr_done = child.stderr.take().map(|pipe| {
            tokio::spawn(collect_stderr(
                pipe,
                stderr.clone(),
                spec.stderr_log.clone(),
            ))
        });
        Ok(Self {
            child,
            pid,
            stdin,
            lines,
            stderr,
            stderr_done,
            status: None,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Writes one JSON value as a line.
    pub async fn send(&mut self, value: &serde_json::Value) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or(ProcessError::StdinClosed)?;
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        let write = async {
            stdin.write_all(&line).await?;
            stdin.flush().await
        };
        match tokio::time::timeout(STDIN_WRITE_TIMEOUT, write).await {
            Ok(r) => r.map_err(ProcessError::Write),
            Err(_) => Err(ProcessError::WriteTimeout),
        }
    }

    /// The next stdout line; `None` once stdout is closed (the process is exiting).
    pub async fn next_line(&mut self) -> Option<Line> {
        self.lines.recv().await
    }

    /// Closes stdin: the polite way to tell a stdio server to finish.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `signal` to the whole process group.
    pub fn signal_group(&self, signal: Signal) {
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            // ESRCH (already gone) is the expected race here.
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.status {
            return Some(s);
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.status = Some(status);
                Some(status)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Cannot wait for a runner process.");
                None
            }
            Err(_) => None,
        }
    }

    /// Stops the process: closes stdin and waits `exit_grace`, then SIGTERM to the group and waits
    /// `term_grace`, then SIGKILL. Leftover members of the group are killed once the leader is gone.
    pub async fn stop(&mut self, exit_grace: Duration, term_grace: Duration) -> Option<ExitStatus> {
        self.close_stdin();
        let mut status = self.wait_exit(exit_grace).await;
        if status.is_none() {
            self.signal_group(Signal::SIGTERM);
            status = self.wait_exit(term_grace).await;
        }
        if status.is_none() {
            self.signal_group(Signal::SIGKILL);
            status = self.wait_exit(REAP_TIMEOUT).await;
        }
        // Tools the runner started and left behind die with it.
        self.signal_group(Signal::SIGKILL);
        self.drain_stderr().await;
        status
    }

    /// Lets the stderr collector finish reading what the exited process wrote.
    async fn drain_stderr(&mut self) {
        if let Some(task) = self.stderr_done.take() {
            // Bounded: a grandchild holding the pipe open must not hold up the job.
            if tokio::time::timeout(Duration::from_millis(200), task)
                .await
                .is_err()
            {
                tracing::debug!("Runner stderr still open after exit; not waiting for it.");
            }
        }
    }

    /// The last stderr lines, with `secrets` and token-looking words scrubbed.
    pub fn stderr_tail(&self, secrets: &[String]) -> String {
        let lines = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let joined = lines.iter().cloned().collect::<Vec<_>>().join("\n");
        redact(&joined, secrets)
    }
}

impl Drop for JsonlProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            // The run future was dropped mid-job (the dispatcher gave up on it): `kill_on_drop`
            // only reaches the leader, so the group goes too.
            self.signal_group(Signal::SIGKILL);
        }
    }
}

/// Reads `reader` line by line, parses each as JSON, and sends it on; lines over `max` bytes are
/// dropped and reported by length. Ends at EOF, on a read error, or when the receiver is gone.
async fn read_json_lines(reader: impl AsyncRead + Unpin, tx: mpsc::Sender<Line>, max: usize) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut buf: Vec<u8> = Vec::new();
    // Bytes of the current line dropped because it outgrew `max`.
    let mut dropped = 0usize;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "Runner stdout read failed.");
                break;
            }
        };
        if chunk.is_empty() {
            if !buf.is_empty() || dropped > 0 {
                let _ = tx.send(finish_line(&mut buf, &mut dropped)).await;
            }
            break;
        }
        let (take, newline) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if dropped == 0 && buf.len() + take <= max {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            dropped += buf.len() + take;
            buf.clear();
        }
        reader.consume(take + usize::from(newline));
        if newline {
            let line = finish_line(&mut buf, &mut dropped);
            let blank = matches!(&line, Line::Text(t) if t.trim().is_empty());
            if !blank && tx.send(line).await.is_err() {
                break;
            }
        }
    }
}

fn finish_line(buf: &mut Vec<u8>, dropped: &mut usize) -> Line {
    if *dropped > 0 {
        let len = *dropped;
        *dropped = 0;
        buf.clear();
        return Line::TooLong(len);
    }
    let bytes = std::mem::take(buf);
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => Line::Json(v),
        Err(_) => Line::Text(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// Keeps the last [`STDERR_TAIL_LINES`] lines, and writes everything to `log` (capped).
async fn collect_stderr(
    pipe: impl AsyncRead + Unpin,
    tail: Arc<Mutex<VecDeque<String>>>,
    log: Option<PathBuf>,
) {
    let mut file = match &log {
        Some(path) => open_log(path).await,
        None => None,
    };
    let mut written: u64 = 0;
    let mut lines = BufReader::new(pipe).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "Runner stderr read failed.");
                break;
            }
        };
        if let Some(f) = file.as_mut() {
            if written < STDERR_LOG_MAX_BYTES {
                written += line.len() as u64 + 1;
                if f.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                    file = None;
                }
            }
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            continue;
        }
        tracing::debug!(line = %truncate(trimmed, STDERR_LINE_MAX), "Runner stderr.");
        let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(truncate(trimmed, STDERR_LINE_MAX).to_owned());
    }
    if let Some(f) = file.as_mut() {
        let _ = f.flush().await;
    }
}

async fn open_log(path: &Path) -> Option<tokio::fs::File> {
    if let Some(dir) = path.parent() {
        if let Err(e) = tokio::fs::create_dir_all(dir).await {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot create the runner log directory.");
            return None;
        }
    }
    match tokio::fs::File::create(path).await {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Cannot create a runner log file.");
            None
        }
    }
}

/// Deletes all but the newest [`STDERR_LOGS_KEPT`] `*.log` files in `dir`.
pub async fn prune_logs(dir: PathBuf) {
    let pruned = tokio::task::spawn_blocking(move || -> io::Result<()> {
        let mut logs: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let modified = entry
                    .metadata()?
                    .modified()
                    .unwrap_or(std::time::UNIX_EPOCH);
                logs.push((modified, path));
            }
        }
        logs.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        for (_, path) in logs.into_iter().skip(STDERR_LOGS_KEPT) {
            std::fs::remove_file(path)?;
        }
        Ok(())
    })
    .await;
    match pruned {
        Ok(Ok(())) => {}
        // A missing directory just means no logs yet.
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "Cannot prune runner logs."),
        Err(e) => tracing::debug!(error = %e, "Runner log pruning panicked."),
    }
}

/// `s` cut to at most `max` bytes, on a char boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `text` with every known secret value, and every word that starts like an API token, replaced.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
        out = out.replace(s.as_str(), REDACTED);
    }
    for prefix in SECRET_PREFIXES {
        out = redact_after(&out, prefix);
    }
    out
}

/// Replaces the token that follows each occurrence of `prefix` at the start of a word (up to
/// whitespace or a quote), when it is long enough to be a credential.
fn redact_after(text: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let at_word_start = out
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '-' && c != '_');
        let token = &after[prefix.len()..];
        let len = token
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '}' | ')'))
            .unwrap_or(token.len());
        if at_word_start && len >= MIN_TOKEN_TAIL {
            out.push_str(REDACTED);
        } else {
            out.push_str(&after[..prefix.len() + len]);
        }
        rest = &token[len..];
    }
    out.push_str(rest);
    out
}

/// How long a runner may take at each stage before kimaki steps in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From spawn until the runner answers its handshake.
    pub boot: Duration,
    /// Without any output from the runner (paused while a permission or question waits for a
    /// person) before the turn is stopped and failed as timed out.
    pub no_progress: Duration,
    /// After a protocol interrupt, how long the runner has to end the turn on its own.
    pub interrupt_grace: Duration,
    /// After stdin is closed, how long the runner has to exit before SIGTERM.
    pub exit_grace: Duration,
    /// After SIGTERM, how long before SIGKILL.
    pub term_grace: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            // Claude answers `initialize` in ~1.2 s and Codex in ~0.5 s when idle; a loaded
            // 2-core machine is several times slower.
            boot: Duration::from_secs(30),
            // Long tool runs are normal; ten silent minutes are not.
            no_progress: Duration::from_secs(10 * 60),
            // Both runners end an interrupted turn within ~50 ms; leave room for a busy machine
            // while keeping a cancel well under two seconds.
            interrupt_grace: Duration::from_millis(800),
            exit_grace: Duration::from_millis(500),
            term_grace: Duration::from_millis(300),
        }
    }
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
