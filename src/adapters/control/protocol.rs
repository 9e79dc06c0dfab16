//! The control socket's messages: one JSON request per line, one JSON reply per line, matched by
//! `id`. Replies to streaming calls (`follow`) are several lines with the same id, the last one
//! carrying `"done": true`.

use std::path::PathBuf;

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
    /// Shut down in order, then start again in place with the same arguments.
    Restart {
        #[serde(default)]
        reason: Option<String>,
    },
    /// Write a state dump (queue, lanes, sessions, adapters, memory) into the data dir.
    DumpState,
    /// Enqueue a prompt; answers with a `SendReceipt` once it is durable.
    Send(SendRequest),
    /// Stream a job's events after `after_seq` (several replies; the last has `more: false`).
    Follow {
        job_id: String,
        #[serde(default)]
        after_seq: u64,
    },
    /// Stop a job (queued: it never runs; running: it is cancelled).
    Cancel {
        job_id: String,
    },
    /// Store a scheduled send: `when` is an ISO-8601 UTC instant or a cron expression read in
    /// `tz` (`local` by default, `UTC`, or an offset like `+02:00`).
    ScheduleTask {
        send: SendRequest,
        when: String,
        #[serde(default)]
        tz: Option<String>,
        /// Fire even while the previous occurrence still runs.
        #[serde(default)]
        allow_concurrency: bool,
    },
    TaskList,
    TaskDelete {
        id: String,
    },
    /// Sessions (lanes), optionally only those of one project.
    SessionList {
        #[serde(default)]
        project: Option<String>,
    },
    /// Register a project directory.
    ProjectAdd {
        path: String,
        #[serde(default)]
        name: Option<String>,
    },
    ProjectList,
    /// Forget a project (by id, name or path); its files are untouched.
    ProjectRemove {
        key: String,
    },
}

/// Where a prompt goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendTarget {
    /// A new session in a registered project (by directory, name or id).
    Project(String),
    /// An existing session (lane), e.g. one a previous `send` printed.
    Session(String),
    /// A session with a caller-chosen name in a registered project: created on first use,
    /// continued afterwards.
    NamedSession { project: String, session: String },
    /// A new session in the project of a Discord channel (shown in a new thread there).
    Channel(String),
    /// The session of a Discord thread (shown in that thread).
    Thread(String),
}

/// A prompt from a local client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    pub target: SendTarget,
    pub prompt: String,
    /// Absolute paths of files to attach.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    #[serde(default)]
    pub runner: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    /// Interrupt a running job in the session instead of queueing behind it.
    #[serde(default)]
    pub interrupt: bool,
    #[serde(default)]
    pub source: Option<crate::core::JobSource>,
    /// Run the session in the git worktree of this name (created on first use, reused after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
    /// The name of the Discord thread a new session opens (default: from the prompt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Post the prompt as a notification: shown, kept as context for the session's next prompt,
    /// but no runner starts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notify_only: bool,
}

/// What the client is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReceipt {
    pub job_id: String,
    pub lane: String,
    pub workspace: String,
    pub position: u32,
    /// The Discord channel a new thread for this session opens in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discord_channel: Option<String>,
    /// The Discord thread that shows this session, when it exists already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discord_thread: Option<String>,
}

impl SendRequest {
    /// A plain prompt to a project.
    pub fn to_project(project: &str, prompt: &str) -> Self {
        Self {
            target: SendTarget::Project(project.to_owned()),
            prompt: prompt.to_owned(),
            files: Vec::new(),
            runner: None,
            model: None,
            agent: None,
            interrupt: false,
            source: None,
            worktree: None,
            name: None,
            notify_only: false,
        }
    }
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
    /// More replies to the same request follow (streaming calls).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
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
            more: false,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: u64, code: &str, message: impl Into<String>) -> Self {
        Self {
            id,
            ok: false,
            more: false,
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

/// One session as `session list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// The lane: `discord:<thread id>`, `cli:<id>`, `mesh:<id>`, …
    pub session: String,
    pub runner: String,
    pub workspace: String,
    /// The runner's own session id (continued by the next prompt).
    #[serde(default)]
    pub runner_session: Option<String>,
    /// `running`, `queued` or `idle`.
    pub state: String,
    pub queued: usize,
    #[serde(default)]
    pub running_job: Option<String>,
    /// Unix milliseconds.
    pub last_activity_at: i64,
    /// The Discord thread that shows this session, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discord_thread: Option<String>,
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
    /// The executable this process runs (restarts and upgrades exec it again).
    #[serde(default)]
    pub exe: String,
    pub adapters: Vec<AdapterStatus>,
    pub queue: QueueStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
}

/// A failed call, as the socket reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub code: &'static str,
    pub message: String,
}

impl CallError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What the daemon behind the socket must provide.
#[async_trait]
pub trait ControlHandler: Send + Sync + 'static {
    async fn status(&self) -> StatusReport;
    async fn shutdown(&self, reason: String);
    /// Any call other than status/shutdown/follow, answered with one JSON value.
    async fn call(&self, call: Call) -> Result<serde_json::Value, CallError>;
    /// Events of a job after `after_seq`, until its `Finished` event (then the channel closes).
    async fn follow(
        &self,
        job_id: String,
        after_seq: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<serde_json::Value>, CallError>;
}
