//! The `data` of each `job.event` type, and the enums inside it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::RequestId;
use crate::inventory::RunnerKind;
use crate::job_state::JobState;

/// `started` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StartedData {
    /// The runner that will run the job.
    pub runner: RunnerKind,
    /// Its version.
    pub runner_version: String,
}

/// `output` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct OutputData {
    /// Which stream the text belongs to.
    pub stream: OutputStream,
    /// At most `MAX_OUTPUT_TEXT_BYTES`.
    pub text: String,
}

/// `output.stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// The model's answer.
    Assistant,
    /// The model's reasoning.
    Reasoning,
    /// The runner process's standard output.
    Stdout,
    /// The runner process's standard error.
    Stderr,
    /// A stream this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `tool` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ToolData {
    /// Pairs a `call` with its `result`.
    pub call_id: String,
    /// The tool's name as the runner reports it.
    pub name: String,
    /// Call or result.
    pub phase: ToolPhase,
    /// The tool's input, with `call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The tool's output, with `result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Whether the tool failed, with `result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

/// `tool.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ToolPhase {
    /// The runner called the tool.
    Call,
    /// The tool returned.
    Result,
    /// A phase this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `file` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    /// Relative to the workspace root; absolute paths never leave the machine.
    pub path: String,
    /// What happened to it.
    pub action: FileAction,
}

/// `file.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    /// A new file.
    Created,
    /// An existing file changed.
    Modified,
    /// The file is gone.
    Deleted,
    /// An action this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `phase` of a `permission` or `question` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RequestPhase {
    /// The runner is waiting for an answer (feature `interactive`).
    Asked,
    /// The request was answered, by a person, the policy or a timeout.
    Resolved,
    /// A phase this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `permission` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PermissionData {
    /// Answered by `job.input` with this `requestId`.
    pub request_id: RequestId,
    /// Asked or resolved.
    pub phase: RequestPhase,
    /// The tool that wants permission.
    pub tool: String,
    /// A one-line summary for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What the tool would do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// Patterns an `always` grant would cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Vec<String>>,
    /// How it was resolved, with `resolved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<PermissionResolution>,
}

/// `permission.resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PermissionResolution {
    /// Granted for this request.
    Once,
    /// Granted for the rest of the job.
    Always,
    /// Refused.
    Reject,
    /// Nobody answered in time.
    Timeout,
    /// A resolution this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// `question` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct QuestionData {
    /// Answered by `job.input` with this `requestId`.
    pub request_id: RequestId,
    /// Asked or resolved.
    pub phase: RequestPhase,
    /// The questions, with `asked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questions: Option<Vec<Question>>,
    /// One list of chosen labels per question, with `resolved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<Vec<String>>>,
}

/// One question of a `question` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Question {
    /// The question text.
    pub question: String,
    /// A short heading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The choices offered.
    pub options: Vec<QuestionOption>,
    /// Whether several choices may be picked.
    pub multiple: bool,
}

/// One choice of a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct QuestionOption {
    /// What is shown and sent back as the answer.
    pub label: String,
    /// More detail for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `status` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatusData {
    /// What changed, for people (`runner launched`, `retrying`, `output truncated`).
    pub message: String,
    /// Fraction done, from 0.0 to 1.0, when the runner knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// The runner's process id, once launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The runner's own session id; `spec.resumeSession` of a later job continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_session_id: Option<String>,
}

impl StatusData {
    /// `message` when output was cut because the outbox reached its cap.
    pub const OUTPUT_TRUNCATED: &'static str = "output truncated";
}

/// `usage` data. Counts are for the whole job so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageData {
    /// Prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Prompt tokens served from cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    /// Cost in US dollars, when the runner reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The model used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `cancelling` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CancellingData {
    /// Why: a `job.cancel` reason, or `orphaned`.
    pub reason: String,
}

/// `finished` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FinishedData {
    /// How the job ended.
    pub outcome: JobOutcome,
    /// Why, when it did not succeed (`user`, `lease_revoked`, `orphaned`, `agent_restart`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The runner process's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The runner's error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The final answer, or a short summary of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl FinishedData {
    /// `reason` when the job was killed because the mesh revoked its lease.
    pub const REASON_LEASE_REVOKED: &'static str = "lease_revoked";
    /// `reason` when the job was killed after `orphanTimeoutMs` without a link.
    pub const REASON_ORPHANED: &'static str = "orphaned";
    /// `reason` when the agent restarted and found the job's process gone.
    pub const REASON_AGENT_RESTART: &'static str = "agent_restart";
}

/// `finished.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// The runner finished its turn.
    Succeeded,
    /// The runner failed or crashed.
    Failed,
    /// Stopped by a cancel.
    Cancelled,
    /// Stopped by the deadline or `timeoutMs`.
    TimedOut,
    /// An outcome this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

impl JobOutcome {
    /// The terminal state a job takes when it finishes this way; `None` for `Unknown`.
    pub fn job_state(self) -> Option<JobState> {
        match self {
            Self::Succeeded => Some(JobState::Succeeded),
            Self::Failed => Some(JobState::Failed),
            Self::Cancelled => Some(JobState::Cancelled),
            Self::TimedOut => Some(JobState::TimedOut),
            Self::Unknown => None,
        }
    }
}
