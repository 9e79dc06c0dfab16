//! Pure core ⇄ wire translation: runner ids, inventory, dispatch → queue fields, `EventKind` →
//! `job.event` types, and fitting an event under the size limit. No I/O, no clock, no store.
//!
//! Runner ids: kimaki's `claude` is `claude-code` on the wire; `opencode` and `codex` are the
//! same; any other kimaki runner `name` is the extension runner `x-name`.

use std::collections::HashSet;
use std::path::Path;

use mesh_protocol::job_event::MAX_OUTPUT_TEXT_BYTES;
use mesh_protocol::{
    CancellingData, FileAction, FileData, FinishedData, InputReply, JobEvent, JobOutcome,
    OutputData, OutputStream, PermissionData, PermissionDecision, PermissionPolicy,
    PermissionResolution, Question, QuestionData, QuestionOption, RequestId, RequestPhase, Runner,
    RunnerKind, StatusData, ToolData, ToolPhase, UsageData,
};
use serde_json::Value;

use crate::core::events::{self, TextStream};
use crate::core::{CancelReason, Control, EventKind, Outcome, RunnerId, RunnerInfo};

/// Prefix of extension runner ids on the wire.
const EXTENSION_PREFIX: &str = "x-";
/// kimaki's Claude runner id.
const CLAUDE: &str = "claude";
/// What stands in for text cut to fit a limit.
const CUT_MARKER: &str = "\n…[truncated]…\n";
/// Room left for the `job.event` envelope (ids, seq, ts, type) inside `maxEventBytes`.
const ENVELOPE_SLACK: usize = 1024;

/// The wire id of a kimaki runner.
pub fn runner_to_wire(id: &RunnerId) -> RunnerKind {
    match id.as_str() {
        CLAUDE => RunnerKind::ClaudeCode,
        "opencode" => RunnerKind::OpenCode,
        "codex" => RunnerKind::Codex,
        other => RunnerKind::Other(format!("{EXTENSION_PREFIX}{other}")),
    }
}

/// The kimaki runner a wire id names; `None` for a name no kimaki runner could have.
pub fn runner_from_wire(kind: &RunnerKind) -> Option<RunnerId> {
    match kind {
        RunnerKind::ClaudeCode => Some(RunnerId::new(CLAUDE)),
        RunnerKind::OpenCode => Some(RunnerId::new("opencode")),
        RunnerKind::Codex => Some(RunnerId::new("codex")),
        RunnerKind::Other(name) => name
            .strip_prefix(EXTENSION_PREFIX)
            .filter(|n| !n.is_empty())
            .map(RunnerId::new),
    }
}

/// `hello.runners[]` entry for a probed runner.
pub fn runner_info_to_wire(info: &RunnerInfo) -> Runner {
    Runner {
        id: runner_to_wire(&info.id),
        version: info.version.clone().unwrap_or_else(|| "unknown".to_owned()),
        available: info.available,
        reason: if info.available {
            None
        } else {
            info.reason.clone()
        },
        models: None,
    }
}

/// The queue's permission policy for a dispatch. Without the `interactive` feature nobody can
/// answer, so `ask` becomes a refusal (§7).
pub fn permission_policy(
    wire: Option<PermissionPolicy>,
    interactive: bool,
) -> crate::core::PermissionPolicy {
    use crate::core::PermissionPolicy as Core;
    match wire {
        Some(PermissionPolicy::Allow) => Core::Allow,
        Some(PermissionPolicy::Deny) | Some(PermissionPolicy::Unknown) => Core::Deny,
        Some(PermissionPolicy::Ask) | None if interactive => Core::Ask,
        Some(PermissionPolicy::Ask) | None => Core::Deny,
    }
}

/// The queue's answer for a `job.input`.
pub fn control_from_wire(request_id: &RequestId, reply: &InputReply) -> Control {
    let request_id = crate::core::RequestId::new(request_id.as_str());
    match reply {
        InputReply::Permission(p) => Control::Permission {
            request_id,
            decision: match p.decision {
                PermissionDecision::Once => events::PermissionDecision::Once,
                PermissionDecision::Always => events::PermissionDecision::Always,
                // An unknown decision is a refusal: never grant what was not understood.
                PermissionDecision::Reject | PermissionDecision::Unknown => {
                    events::PermissionDecision::Reject
                }
            },
        },
        InputReply::Question(q) => Control::Answer {
            request_id,
            answers: q.answers.clone(),
        },
    }
}

/// A `job.cancel` reason as the text carried in `cancelling` and `finished.reason`.
pub fn cancel_reason_text(reason: mesh_protocol::CancelReason) -> &'static str {
    match reason {
        mesh_protocol::CancelReason::User => "user",
        mesh_protocol::CancelReason::Timeout => "timeout",
        mesh_protocol::CancelReason::LeaseRevoked => "lease_revoked",
        mesh_protocol::CancelReason::Shutdown => "shutdown",
        mesh_protocol::CancelReason::Unknown => "cancelled",
    }
}

/// Per-job facts the event mapping needs.
#[derive(Debug, Default)]
pub struct MapCtx<'a> {
    /// Parts whose text already went out as deltas; their final `TextPart` is not repeated.
    pub streamed_parts: Option<&'a mut Vec<String>>,
    /// The coordinator's cancel reason, which wins over the core's wording.
    pub cancel_reason: Option<&'a str>,
    /// The workspace root, to make file paths relative; never sent.
    pub workspace_root: Option<&'a Path>,
}

/// The wire events for one core event (none for queue-only facts).
pub fn event_to_wire(kind: &EventKind, ctx: &mut MapCtx<'_>) -> Vec<JobEvent> {
    match kind {
        EventKind::Queued { .. } => Vec::new(),
        EventKind::Started {
            runner_session_id,
            pid,
            ..
        } => vec![JobEvent::Status(StatusData {
            message: "runner launched".to_owned(),
            progress: None,
            pid: *pid,
            runner_session_id: runner_session_id.clone(),
        })],
        EventKind::TextDelta {
            part_id,
            stream,
            delta,
        } => {
            if let Some(parts) = ctx.streamed_parts.as_deref_mut() {
                if !parts.iter().any(|p| p == part_id) {
                    parts.push(part_id.clone());
                }
            }
            output(*stream, delta)
        }
        EventKind::TextPart {
            part_id,
            stream,
            text,
        } => {
            let streamed = ctx
                .streamed_parts
                .as_deref()
                .is_some_and(|parts| parts.iter().any(|p| p == part_id));
            if streamed {
                Vec::new()
            } else {
                output(*stream, text)
            }
        }
        EventKind::ToolStarted {
            call_id,
            name,
            input,
        } => vec![JobEvent::Tool(ToolData {
            call_id: call_id.clone(),
            name: name.clone(),
            phase: ToolPhase::Call,
            input: Some(input.clone()),
            output: None,
            is_error: None,
        })],
        EventKind::ToolFinished {
            call_id,
            name,
            output,
            is_error,
            ..
        } => vec![JobEvent::Tool(ToolData {
            call_id: call_id.clone(),
            name: name.clone(),
            phase: ToolPhase::Result,
            input: None,
            output: Some(Value::String(output.clone())),
            is_error: Some(*is_error),
        })],
        EventKind::FileChanged { path, action } => vec![JobEvent::File(FileData {
            path: relative_path(path, ctx.workspace_root),
            action: match action {
                events::FileAction::Created => FileAction::Created,
                events::FileAction::Modified => FileAction::Modified,
                events::FileAction::Deleted => FileAction::Deleted,
            },
        })],
        EventKind::PermissionRequested {
            request_id,
            tool,
            title,
            input,
            patterns,
        } => vec![JobEvent::Permission(PermissionData {
            request_id: RequestId::new(request_id.as_str()),
            phase: RequestPhase::Asked,
            tool: tool.clone(),
            title: title.clone(),
            input: Some(input.clone()).filter(|v| !v.is_null()),
            patterns: Some(patterns.clone()).filter(|p| !p.is_empty()),
            resolution: None,
        })],
        EventKind::PermissionResolved {
            request_id,
            resolution,
        } => {
            vec![JobEvent::Permission(PermissionData {
                request_id: RequestId::new(request_id.as_str()),
                phase: RequestPhase::Resolved,
                // The core does not repeat the tool on resolution; the request id links them.
                tool: String::new(),
                title: None,
                input: None,
                patterns: None,
                resolution: Some(match resolution {
                    events::PermissionResolution::Once => PermissionResolution::Once,
                    events::PermissionResolution::Always => PermissionResolution::Always,
                    events::PermissionResolution::Reject => PermissionResolution::Reject,
                    events::PermissionResolution::Timeout => PermissionResolution::Timeout,
                }),
            })]
        }
        EventKind::QuestionAsked {
            request_id,
            questions,
        } => {
            vec![JobEvent::Question(QuestionData {
                request_id: RequestId::new(request_id.as_str()),
                phase: RequestPhase::Asked,
                questions: Some(
                    questions
                        .iter()
                        .map(|q| Question {
                            question: q.question.clone(),
                            header: q.header.clone(),
                            options: q
                                .options
                                .iter()
                                .map(|o| QuestionOption {
                                    label: o.label.clone(),
                                    description: o.description.clone(),
                                })
                                .collect(),
                            multiple: q.multiple,
                        })
                        .collect(),
                ),
                answers: None,
            })]
        }
        EventKind::QuestionResolved {
            request_id,
            answers,
        } => {
            vec![JobEvent::Question(QuestionData {
                request_id: RequestId::new(request_id.as_str()),
                phase: RequestPhase::Resolved,
                questions: None,
                answers: answers.clone(),
            })]
        }
        EventKind::Usage {
            input_tokens,
            output_tokens,
            cached_tokens,
            cost_usd,
            model,
            ..
        } => vec![JobEvent::Usage(UsageData {
            input_tokens: Some(*input_tokens),
            output_tokens: Some(*output_tokens),
            cached_tokens: Some(*cached_tokens),
            cost_usd: *cost_usd,
            model: model.clone(),
        })],
        // The prompt came from a voice note; the text is already the job's prompt.
        EventKind::Transcribed { provider, .. } => vec![JobEvent::Status(StatusData {
            message: format!("voice message transcribed ({provider})"),
            progress: None,
            pid: None,
            runner_session_id: None,
        })],
        EventKind::Status { message, .. } => vec![JobEvent::Status(StatusData {
            message: message.clone(),
            progress: None,
            pid: None,
            runner_session_id: None,
        })],
        EventKind::Cancelling { reason } => vec![JobEvent::Cancelling(CancellingData {
            reason: ctx
                .cancel_reason
                .map(str::to_owned)
                .unwrap_or_else(|| core_cancel_text(reason)),
        })],
        EventKind::Finished {
            outcome,
            summary,
            error,
            reason,
            exit_code,
            ..
        } => vec![JobEvent::Finished(finished(
            *outcome,
            summary.clone(),
            error.as_ref().map(|f| f.message.clone()),
            reason.clone(),
            *exit_code,
            ctx.cancel_reason,
        ))],
    }
}

fn finished(
    outcome: Outcome,
    summary: Option<String>,
    error: Option<String>,
    reason: Option<String>,
    exit_code: Option<i32>,
    cancel_reason: Option<&str>,
) -> FinishedData {
    let (outcome, reason, error) = match outcome {
        Outcome::Succeeded => (JobOutcome::Succeeded, None, error),
        Outcome::Failed => (JobOutcome::Failed, reason, error),
        Outcome::TimedOut => (JobOutcome::TimedOut, reason, error),
        // The coordinator's reason (`user`, `lease_revoked`, `orphaned`, …) is the one it knows.
        Outcome::Cancelled => (
            JobOutcome::Cancelled,
            cancel_reason.map(str::to_owned).or(reason),
            error,
        ),
        // The job was running when kimaki stopped (restart, crash or shutdown) and is never
        // re-run: rule 7 of the protocol; the core's wording goes into `error`.
        Outcome::Interrupted => (
            JobOutcome::Failed,
            Some(FinishedData::REASON_AGENT_RESTART.to_owned()),
            error.or(reason),
        ),
    };
    FinishedData {
        outcome,
        reason,
        exit_code,
        error,
        summary,
    }
}

/// A `finished` for a job the adapter ends itself (never launched, forgotten, …).
pub fn finished_event(outcome: JobOutcome, reason: &str) -> JobEvent {
    JobEvent::Finished(FinishedData {
        outcome,
        reason: Some(reason.to_owned()),
        exit_code: None,
        error: None,
        summary: None,
    })
}

/// A `cancelling` the adapter emits itself (the job had not been launched, so the core has no
/// running job to report it).
pub fn cancelling_event(reason: &str) -> JobEvent {
    JobEvent::Cancelling(CancellingData {
        reason: reason.to_owned(),
    })
}

fn core_cancel_text(reason: &CancelReason) -> String {
    match reason {
        CancelReason::User => "user".to_owned(),
        CancelReason::Interrupted { .. } => "interrupted".to_owned(),
        CancelReason::Shutdown => "shutdown".to_owned(),
        CancelReason::TimedOut => "timeout".to_owned(),
        CancelReason::Revoked { reason } => reason.clone(),
    }
}

fn output(stream: TextStream, text: &str) -> Vec<JobEvent> {
    if text.is_empty() {
        return Vec::new();
    }
    vec![JobEvent::Output(OutputData {
        stream: match stream {
            TextStream::Assistant => OutputStream::Assistant,
            TextStream::Reasoning => OutputStream::Reasoning,
        },
        text: text.to_owned(),
    })]
}

/// Workspace-relative path; an absolute path outside the workspace keeps only its file name.
fn relative_path(path: &str, root: Option<&Path>) -> String {
    let p = Path::new(path);
    if !p.is_absolute() {
        return path.to_owned();
    }
    if let Some(rel) = root.and_then(|r| p.strip_prefix(r).ok()) {
        return rel.to_string_lossy().into_owned();
    }
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Splits or trims `event` so each piece, encoded with its envelope, stays within
/// `max_event_bytes` and every `output.text` within 32 KiB (§1, §10). Output is split (nothing
/// lost); other types have their largest free-text fields cut in the middle. Never returns an
/// empty list.
pub fn fit_event(event: JobEvent, max_event_bytes: usize) -> Vec<JobEvent> {
    let budget = max_event_bytes.saturating_sub(ENVELOPE_SLACK).max(256);
    match event {
        JobEvent::Output(out) => split_text(&out.text, MAX_OUTPUT_TEXT_BYTES.min(budget))
            .into_iter()
            .map(|text| {
                JobEvent::Output(OutputData {
                    stream: out.stream,
                    text,
                })
            })
            .collect(),
        other if encoded_len(&other) <= budget => vec![other],
        JobEvent::Tool(mut tool) => {
            let share = budget / 2;
            tool.input = tool.input.map(|v| cut_value(v, share));
            tool.output = tool.output.map(|v| cut_value(v, share));
            vec![ensure_fits(JobEvent::Tool(tool), budget)]
        }
        JobEvent::Permission(mut p) => {
            p.input = p.input.map(|v| cut_value(v, budget / 2));
            p.title = p.title.map(|t| cut_middle(&t, budget / 8));
            vec![ensure_fits(JobEvent::Permission(p), budget)]
        }
        JobEvent::Finished(mut f) => {
            let share = budget / 3;
            f.summary = f.summary.map(|s| cut_middle(&s, share));
            f.error = f.error.map(|s| cut_middle(&s, share));
            f.reason = f.reason.map(|s| cut_middle(&s, share / 4));
            vec![JobEvent::Finished(f)]
        }
        JobEvent::Status(mut s) => {
            s.message = cut_middle(&s.message, budget / 2);
            vec![ensure_fits(JobEvent::Status(s), budget)]
        }
        other => vec![ensure_fits(other, budget)],
    }
}

/// `event` as exactly one event within `max_event_bytes` (its seq is already fixed): output is
/// cut in the middle instead of split.
pub fn fit_single(event: JobEvent, max_event_bytes: usize) -> JobEvent {
    let budget = max_event_bytes.saturating_sub(ENVELOPE_SLACK).max(256);
    match event {
        JobEvent::Output(out) => JobEvent::Output(OutputData {
            stream: out.stream,
            text: cut_middle(&out.text, MAX_OUTPUT_TEXT_BYTES.min(budget)),
        }),
        other => fit_event(other, max_event_bytes)
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                ensure_fits(
                    JobEvent::Unknown {
                        event_type: "x-dropped".into(),
                        data: Value::Null,
                    },
                    budget,
                )
            }),
    }
}

/// Last resort for an event that is still too large: a `status` saying what was dropped.
/// `finished` never gets here (it is cut field by field instead).
fn ensure_fits(event: JobEvent, budget: usize) -> JobEvent {
    let size = encoded_len(&event);
    if size <= budget {
        return event;
    }
    JobEvent::Status(StatusData {
        message: format!(
            "a `{}` event of {size} bytes was too large to send and was dropped",
            event.event_type()
        ),
        progress: None,
        pid: None,
        runner_session_id: None,
    })
}

fn encoded_len(event: &JobEvent) -> usize {
    serde_json::to_vec(event).map_or(usize::MAX, |v| v.len())
}

/// A JSON value cut to about `max` encoded bytes: strings are cut in the middle, anything else
/// becomes its (cut) JSON text.
fn cut_value(value: Value, max: usize) -> Value {
    let size = serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len());
    if size <= max {
        return value;
    }
    let text = match value {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Value::String(cut_middle(&text, max / 2))
}

/// `text` with its middle replaced by a marker so that it is at most about `max` bytes (escaped).
pub fn cut_middle(text: &str, max: usize) -> String {
    if escaped_len(text) <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(CUT_MARKER.len()) / 2;
    let head = prefix_within(text, keep);
    let tail = suffix_within(text, keep);
    format!("{head}{CUT_MARKER}{tail}")
}

/// Splits text into pieces of at most `max` bytes, both raw and JSON-escaped (a control
/// character escapes to six bytes), on character boundaries.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let max = max.max(8);
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut escaped = 0usize;
    for ch in text.chars() {
        let cost = escaped_char_len(ch);
        if !current.is_empty() && (escaped + cost > max || current.len() + ch.len_utf8() > max) {
            pieces.push(std::mem::take(&mut current));
            escaped = 0;
        }
        current.push(ch);
        escaped += cost;
    }
    if !current.is_empty() || pieces.is_empty() {
        pieces.push(current);
    }
    pieces
}

fn escaped_char_len(ch: char) -> usize {
    match ch {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn escaped_len(text: &str) -> usize {
    text.chars().map(escaped_char_len).sum()
}

fn prefix_within(text: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, ch) in text.char_indices() {
        used += escaped_char_len(ch);
        if used > max {
            return &text[..i];
        }
    }
    text
}

fn suffix_within(text: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, ch) in text.char_indices().rev() {
        used += escaped_char_len(ch);
        if used > max {
            return &text[i + ch.len_utf8()..];
        }
    }
    text
}

/// Appends `extra` to an unsent `output` of the same stream when the result still fits; the
/// coalesced text replaces the earlier event (§10).
pub fn coalesce(earlier: &JobEvent, extra: &JobEvent, max_event_bytes: usize) -> Option<JobEvent> {
    let (JobEvent::Output(a), JobEvent::Output(b)) = (earlier, extra) else {
        return None;
    };
    if a.stream != b.stream {
        return None;
    }
    let budget = MAX_OUTPUT_TEXT_BYTES.min(max_event_bytes.saturating_sub(ENVELOPE_SLACK));
    let text = format!("{}{}", a.text, b.text);
    if text.len() > budget || escaped_len(&text) > budget {
        return None;
    }
    Some(JobEvent::Output(OutputData {
        stream: a.stream,
        text,
    }))
}

/// Features both sides support, as `welcome.features` says; missing means none.
pub fn has_feature(features: &[String], feature: &str) -> bool {
    features.iter().any(|f| f == feature)
}

/// Deduplicates a list while keeping order (endpoint lists from config and `welcome`).
pub fn dedup_keep_order(items: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty() && seen.insert(i.clone()))
        .collect()
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
