//! Exit codes, errors as the CLI reports them, and small helpers for human and JSON output.

/// Process exit codes (following sysexits.h where one fits).
pub mod exit {
    pub const OK: u8 = 0;
    /// Something checked failed (doctor found problems, a job failed).
    pub const FAILURE: u8 = 1;
    /// `status`: kimaki is not running (as `systemctl status` does).
    pub const NOT_RUNNING: u8 = 3;
    /// Bad flags or values.
    pub const USAGE: u8 = 64;
    /// Another instance holds the data dir, or a needed service is unavailable.
    pub const UNAVAILABLE: u8 = 69;
    /// The store or another file kimaki keeps is unreadable.
    pub const DATA: u8 = 65;
    /// The configuration is invalid.
    pub const CONFIG: u8 = 78;
}

/// An error on its way to the user: the message, an optional hint, the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Prints a JSON value on one line of stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(exit::FAILURE, format!("cannot encode output: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Symbols for check results; plain ASCII when the terminal asks for no colour or unicode.
pub struct Marks {
    pub pass: &'static str,
    pub fail: &'static str,
    pub warn: &'static str,
    pub skip: &'static str,
}

pub const MARKS: Marks = Marks {
    pass: "✓",
    fail: "✗",
    warn: "!",
    skip: "-",
};

/// "3 s", "4 min", "2 h 5 min", "3 d"
pub fn human_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
        _ => format!("{} d {} h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes as f64 >= 1024.0 * MIB {
        format!("{:.1} GiB", bytes as f64 / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}
