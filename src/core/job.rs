//! A job — one prompt for one runner in one lane — and its persisted state machine.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ids::{JobId, LaneId, RunnerId};

/// Who asked for the work. Informational: the flow is the same for every source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobSource {
    Discord,
    Mesh,
    Cli,
    Scheduler,
    Voice,
    Api,
}

/// Where results go, opaque to the core: only the adapter that wrote it reads `address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub adapter: String,
    pub address: serde_json::Value,
}

/// A file that comes with the prompt, already saved on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub path: PathBuf,
    pub filename: String,
    pub mime: Option<String>,
}

/// What a runner may do without asking when nobody can answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionPolicy {
    /// Raise a permission request and wait for an answer (Discord buttons, mesh input).
    #[default]
    Ask,
    /// Approve every request.
    Allow,
    /// Reject every request.
    Deny,
}

/// How a new job joins a busy lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnqueueMode {
    /// Wait behind the jobs already in the lane.
    #[default]
    Queue,
    /// Abort the lane's running job and run this one next. Nothing is dropped: the aborted
    /// prompt stays in the session (or is carried into this job if it never reached the runner).
    Interrupt,
}

/// A request for work, before the queue accepts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJob {
    /// Set by sources that own the id (a mesh coordinator); otherwise generated.
    pub id: Option<JobId>,
    pub lane: LaneId,
    pub source: JobSource,
    /// The directory the runner works in.
    pub workspace: PathBuf,
    pub runner: RunnerId,
    pub prompt: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub permission_policy: PermissionPolicy,
    /// Overall deadline for the run.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub reply_to: Option<ReplyTo>,
    /// Free-form metadata for sinks (author name, message id, …).
    #[serde(default)]
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// Accepted and durable, but not to be started until `JobQueue::release` (a mesh job waits
    /// until the coordinator confirmed it, so it can never run on two agents). A held job keeps
    /// its place and blocks its lane.
    #[serde(default)]
    pub held: bool,
    /// The prompt arrives as audio: it is transcribed right before the run, so the job keeps its
    /// place in the lane (a voice note followed by a text message runs in that order).
    #[serde(default)]
    pub voice: Option<VoiceInput>,
    /// A notification, not a request: it is shown where the session is shown and kept as
    /// context for the session's next prompt, but no runner starts (`kimaki send --notify-only`).
    #[serde(default)]
    pub notify_only: bool,
}

/// A spoken prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceInput {
    /// The recording, saved on this machine when the message arrived (kept until transcribed).
    pub audio: Attachment,
    /// Put before the transcript in the prompt, e.g. who spoke and where.
    pub preamble: String,
    /// Recent conversation lines that help the transcriber spell names and paths.
    #[serde(default)]
    pub context: Vec<String>,
}

/// An accepted job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub lane: LaneId,
    pub source: JobSource,
    pub workspace: PathBuf,
    pub runner: RunnerId,
    pub prompt: String,
    pub attachments: Vec<Attachment>,
    pub model: Option<String>,
    pub agent: Option<String>,
    pub permission_policy: PermissionPolicy,
    pub timeout_ms: Option<u64>,
    pub reply_to: Option<ReplyTo>,
    pub meta: serde_json::Map<String, serde_json::Value>,
    pub created_at: i64,
    /// Set until the recording has been transcribed into `prompt`.
    #[serde(default)]
    pub voice: Option<VoiceInput>,
    /// See `NewJob::notify_only`.
    #[serde(default)]
    pub notify_only: bool,
}

/// The persisted state machine:
/// `Queued → Leased → Running → Succeeded | Failed | Cancelled | Interrupted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Durable and waiting in its lane.
    Queued,
    /// Taken by the dispatcher and handed to a runner; from here on it is never re-run
    /// automatically.
    Leased,
    /// The runner reported that it started.
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Stopped by a new message, a shutdown or a crash; kept, never silently re-run.
    Interrupted,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::Interrupted
        )
    }

    /// Whether the state machine allows `self → next`.
    pub fn can_become(self, next: JobState) -> bool {
        use JobState::*;
        match (self, next) {
            (Queued, Leased) => true,
            // A queued job can be cancelled before it ever runs.
            (Queued, Cancelled) => true,
            (Leased, Running) => true,
            (Leased | Running, Succeeded | Failed | Cancelled | Interrupted) => true,
            _ => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Leased => "leased",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job with its state, as the `jobs` tree holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: Job,
    pub state: JobState,
    /// Position key in the lane queue (monotonic across restarts).
    pub order: u64,
    /// Whether it was enqueued ahead of queued jobs (`EnqueueMode::Interrupt`).
    pub front: bool,
    /// The highest event sequence number written for this job.
    pub last_seq: u64,
    pub updated_at: i64,
    /// Why it ended, for terminal states.
    #[serde(default)]
    pub reason: Option<String>,
    /// See `NewJob::held`.
    #[serde(default)]
    pub held: bool,
}

/// A lane's persisted state: which runner session it continues and its per-lane choices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneRecord {
    pub lane: LaneId,
    pub runner: RunnerId,
    pub workspace: PathBuf,
    /// The runner's own session id; the next job in the lane continues it.
    pub runner_session_id: Option<String>,
    pub created_at: i64,
    pub last_activity_at: i64,
    /// Prompts of jobs that were interrupted before the runner saw them; prepended to the next
    /// job so no message is lost.
    #[serde(default)]
    pub carry_over: Vec<String>,
    /// Notifications posted in the conversation since its last run; given to the next job as
    /// context.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The last job that ran in the lane (its events tell the session's context usage).
    #[serde(default)]
    pub last_job: Option<JobId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine() {
        use JobState::*;
        assert!(Queued.can_become(Leased));
        assert!(Leased.can_become(Running));
        assert!(Running.can_become(Interrupted));
        assert!(Leased.can_become(Failed));
        assert!(!Running.can_become(Queued));
        assert!(!Succeeded.can_become(Running));
        assert!(!Queued.can_become(Running));
        for s in [Succeeded, Failed, Cancelled, Interrupted] {
            assert!(s.is_terminal());
        }
    }
}
