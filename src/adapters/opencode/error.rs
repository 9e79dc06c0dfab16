//! The OpenCode adapter's one error type, classified into a `FailureKind` at the runner boundary.

use std::time::Duration;

use crate::core::events::FailureKind;

pub(super) type Result<T> = std::result::Result<T, OpencodeError>;

#[derive(Debug, thiserror::Error)]
pub(super) enum OpencodeError {
    #[error("OpenCode is not installed or cannot be run ({program}: {source}); install it with `{install}` or point OPENCODE_BIN at it")]
    Missing {
        program: String,
        install: &'static str,
        source: std::io::Error,
    },
    #[error("cannot prepare the OpenCode state directory {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("the OpenCode server did not become ready within {timeout:?}{tail}")]
    BootTimeout { timeout: Duration, tail: String },
    #[error("the OpenCode server exited while starting ({status}){tail}")]
    BootExited { status: String, tail: String },
    #[error("kimaki is shutting down")]
    ShuttingDown,
    #[error("OpenCode did not answer {what} within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    #[error("OpenCode answered {what} with HTTP {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
    #[error("cannot reach the OpenCode server for {what}: {source}")]
    Transport {
        what: String,
        source: reqwest::Error,
    },
    #[error("OpenCode sent an unexpected answer to {what}: {detail}")]
    Decode { what: String, detail: String },
    #[error("cannot find a free local port for the OpenCode server: {0}")]
    Port(std::io::Error),
    #[error("the OpenCode server start-up task failed: {0}")]
    Task(String),
}

impl OpencodeError {
    /// How a job that hit this error is reported.
    pub(super) fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Missing { .. } | Self::BootExited { .. } | Self::ShuttingDown => {
                FailureKind::RunnerUnavailable
            }
            Self::BootTimeout { .. } | Self::Timeout { .. } => FailureKind::Timeout,
            Self::Transport { .. } => FailureKind::RunnerCrashed,
            Self::Status { .. } | Self::Decode { .. } => FailureKind::Protocol,
            Self::StateDir { .. } | Self::Port(_) | Self::Task(_) => FailureKind::Internal,
        }
    }

    pub(super) fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
    }
}
