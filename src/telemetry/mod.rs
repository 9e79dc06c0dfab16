//! Logging and the machine-readable lifecycle stream. Logs go to `<data-dir>/kimaki.log` (reset
//! at each `start`) and stderr, never to stdout; stdout carries only SSE lifecycle lines (when it
//! is not a terminal) and `--json` output. Every log line is scrubbed of known secret values.
#![allow(clippy::print_stdout)]

mod redact;
pub mod sse;

use std::fs::File;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use redact::Redactor;

/// How chatty logs are.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// `RUST_LOG`, when set; wins over everything else.
    pub rust_log: Option<String>,
    /// The configured level (`KIMAKI_LOG_LEVEL`).
    pub level: String,
    /// `-v` count minus `-q` count.
    pub verbosity: i8,
    /// Whether to colour stderr.
    pub color: bool,
}

impl LogOptions {
    fn filter(&self) -> EnvFilter {
        if let Some(spec) = &self.rust_log {
            if let Ok(f) = EnvFilter::try_new(spec) {
                return f;
            }
        }
        const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
        let base = LEVELS.iter().position(|l| *l == self.level).unwrap_or(3) as i8;
        let idx = (base + self.verbosity).clamp(0, 5) as usize;
        let level = LEVELS[idx];
        // Dependencies are noisy at debug; keep them one notch quieter unless tracing.
        let deps = if level == "trace" { "debug" } else { "warn" };
        EnvFilter::new(format!("{deps},kimaki={level}"))
    }
}

/// Installs the global subscriber: stderr always, plus the log file when given. Returns `false`
/// if a subscriber was already installed (tests running in one process).
pub fn init(options: &LogOptions, log_file: Option<File>, redactor: Redactor) -> bool {
    let stderr_writer = RedactingWriter::new(redactor.clone(), StderrSink);
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(stderr_writer)
        .with_ansi(options.color && std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(options.filter());
    let file_layer = log_file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_writer(RedactingWriter::new(
                redactor,
                FileSink(Arc::new(Mutex::new(f))),
            ))
            .with_ansi(false)
            .with_filter(options.filter())
    });
    tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init()
        .is_ok()
}

/// Truncates (or creates) the log file with mode 0600; each `start` begins a fresh log.
pub fn reset_log_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

trait Sink: Clone + Send + Sync + 'static {
    fn write_line(&self, bytes: &[u8]);
}

#[derive(Clone)]
struct StderrSink;

impl Sink for StderrSink {
    fn write_line(&self, bytes: &[u8]) {
        use std::io::Write;
        let _ = std::io::stderr().lock().write_all(bytes);
    }
}

#[derive(Clone)]
struct FileSink(Arc<Mutex<File>>);

impl Sink for FileSink {
    fn write_line(&self, bytes: &[u8]) {
        use std::io::Write;
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = f.write_all(bytes);
    }
}

/// Buffers one formatted event and scrubs secrets from it before writing it out whole.
#[derive(Clone)]
struct RedactingWriter<S: Sink> {
    redactor: Redactor,
    sink: S,
}

impl<S: Sink> RedactingWriter<S> {
    fn new(redactor: Redactor, sink: S) -> Self {
        Self { redactor, sink }
    }
}

struct EventBuffer<S: Sink> {
    redactor: Redactor,
    sink: S,
    buf: Vec<u8>,
}

impl<S: Sink> std::io::Write for EventBuffer<S> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<S: Sink> Drop for EventBuffer<S> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let clean = self.redactor.scrub(&text);
        self.sink.write_line(clean.as_bytes());
    }
}

impl<'a, S: Sink> MakeWriter<'a> for RedactingWriter<S> {
    type Writer = EventBuffer<S>;
    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer {
            redactor: self.redactor.clone(),
            sink: self.sink.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}
