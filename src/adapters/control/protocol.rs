//! The control socket's messages: one JSON request per line, one JSON reply per line, matched by
//! `id`. Replies to streaming calls (`follow`) are several lines with the same id, the last one
//! carrying `"done": true`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Longest accepted request line; anything larger is a client bug or abuse.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    #[serde(flatten)]
    pub call: Call,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Call {
    /// Uptime, version, adapters, queue.
    Status,
    /// Graceful shutdown, as on SIGTERM.
    Shutdown {
        #[serde(default)]
        reason: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code: `bad_request`, `unknown_method`, `unavailable`, …
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub fn ok(id: u64, result: serde_json::Value) -> Self {
        Self {
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: u64, code: &str, message: impl Into<String>) -> Self {
        Self {
            id,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code: code.to_owned(),
                message: message.into(),
            }),
        }
    }
}

/// One adapter's health.
pub type AdapterStatus = crate::core::ComponentStatus;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneStatus {
    pub lane: String,
    pub queued: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_job: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub queued: usize,
    pub running: usize,
    pub lanes: Vec<LaneStatus>,
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub pid: u32,
    pub version: String,
    pub data_dir: String,
    /// Unix milliseconds.
    pub started_at: i64,
    pub uptime_secs: u64,
    pub adapters: Vec<AdapterStatus>,
    pub queue: QueueStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
}

/// What the daemon behind the socket must provide.
#[async_trait]
pub trait ControlHandler: Send + Sync + 'static {
    async fn status(&self) -> StatusReport;
    async fn shutdown(&self, reason: String);
}
