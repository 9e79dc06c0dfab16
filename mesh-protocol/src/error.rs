//! The wire `Error` object and its codes: what the mesh says went wrong, and whether to retry.
//!
//! This is data on the wire, not this crate's failure type (see `codec` for `DecodeError` and
//! `EncodeError`). Unknown codes are kept verbatim so they can be logged; act on `retryable`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

open_string_enum! {
    /// `Error.code`. Unknown codes are kept in `Unknown` with their spelling.
    pub enum ErrorCode {
        /// Bad or revoked token: stop, show it in local health, retry at most hourly.
        AuthInvalid = "AUTH_INVALID",
        /// Token expired: retry with the newest persisted token, else treat as `AUTH_INVALID`.
        AuthExpired = "AUTH_EXPIRED",
        /// No common protocol version (`details.supported`): stop, ask for an upgrade, retry hourly.
        ProtocolUnsupported = "PROTOCOL_UNSUPPORTED",
        /// `connEpoch` too old (`details.currentEpoch`): retry at once with `currentEpoch + 1`.
        SessionStale = "SESSION_STALE",
        /// A newer link owns the gateway (`details.instanceId` says whose).
        SessionSuperseded = "SESSION_SUPERSEDED",
        /// The coordinator is shutting down: try the next endpoint.
        Draining = "DRAINING",
        /// Too many connects or messages: wait `retryAfterMs`.
        RateLimited = "RATE_LIMITED",
        /// Schema violation (`details.path`): log, never resend unchanged.
        BadRequest = "BAD_REQUEST",
        /// Over a size limit: split and resend.
        PayloadTooLarge = "PAYLOAD_TOO_LARGE",
        /// No such job: drop local state.
        UnknownJob = "UNKNOWN_JOB",
        /// The lease is gone: never launch; if running, kill.
        LeaseExpired = "LEASE_EXPIRED",
        /// Another lease is active for the job: never launch; if running, kill.
        LeaseConflict = "LEASE_CONFLICT",
        /// `job.ack rejected`: no free slot.
        CapacityExceeded = "CAPACITY_EXCEEDED",
        /// `job.ack rejected`: the runner is missing or unavailable.
        RunnerUnavailable = "RUNNER_UNAVAILABLE",
        /// `job.ack rejected`: no workspace with that id.
        WorkspaceUnknown = "WORKSPACE_UNKNOWN",
        /// Coordinator bug: retry with backoff.
        Internal = "INTERNAL",
    }
    other = Unknown;
}

/// The wire `Error` object: `{code, message, retryable, retryAfterMs?, fatal?, details?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct WireError {
    /// What went wrong, machine-readable.
    pub code: ErrorCode,
    /// What went wrong, for people and logs.
    pub message: String,
    /// Whether the same request may succeed later; the rule for codes the receiver does not know.
    pub retryable: bool,
    /// How long to wait before retrying, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u32>,
    /// The sender closes the link right after this error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatal: Option<bool>,
    /// Code-specific facts (`supported`, `currentEpoch`, `instanceId`, `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Map<String, Value>>,
}

impl WireError {
    /// An error with no retry hint, not fatal, without details.
    pub fn new(code: ErrorCode, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            code,
            message: message.into(),
            retryable,
            retry_after_ms: None,
            fatal: None,
            details: None,
        }
    }

    /// Whether the link is about to be closed by the sender.
    pub fn is_fatal(&self) -> bool {
        self.fatal.unwrap_or(false)
    }

    /// `retryAfterMs` as a duration.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
    }

    /// One entry of `details`.
    pub fn detail(&self, key: &str) -> Option<&Value> {
        self.details.as_ref().and_then(|details| details.get(key))
    }

    /// `details.currentEpoch` of a `SESSION_STALE` rejection.
    pub fn current_epoch(&self) -> Option<u64> {
        self.detail("currentEpoch").and_then(Value::as_u64)
    }

    /// `details.instanceId` of a `SESSION_SUPERSEDED` error: the process that now owns the gateway.
    pub fn superseding_instance_id(&self) -> Option<&str> {
        self.detail("instanceId").and_then(Value::as_str)
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}
