//! Pure translation between Claude Code's stream-json (plus its control protocol) and kimaki:
//! the messages kimaki writes to stdin, and every stdout line turned into `EventKind`s, permission
//! prompts and the turn's end. No I/O; whether a file exists is asked through a closure.
//! `map_tests.rs` covers it with recorded lines.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::core::events::{
    EventKind, FailureKind, FileAction, PermissionDecision, RetryInfo, TextStream,
};
use crate::core::Attachment;

/// Claude marks the assistant messages it makes up itself (API error texts) with this model; the
/// error reaches users through the job's failure instead.
const SYNTHETIC_MODEL: &str = "<synthetic>";

/// What Claude says when `--resume` names a session it does not have.
const SESSION_MISSING: &str = "No conversation found";

/// Substrings of Claude's error text when the model endpoint cannot be reached at all.
const UNREACHABLE_HINTS: [&str; 6] = [
    "Unable to connect",
    "ConnectionRefused",
    "ECONNREFUSED",
    "Connection error",
    "fetch failed",
    "timed out",
];

/// Tools that write the file named by their `file_path` (or `notebook_path`).
const FILE_TOOLS: [&str; 4] = ["Write", "Edit", "MultiEdit", "NotebookEdit"];

/// `KIMAKI_MODEL` is shared with OpenCode, which spells models `provider/model`; Claude wants the
/// bare model name.
const MODEL_PREFIX: &str = "anthropic/";

/// What kimaki tells Claude when a person (or the policy) says no.
const DENY_MESSAGE: &str = "The user denied this action.";

// ---------------------------------------------------------------------------------------------
// kimaki → Claude

/// The model name Claude understands: `anthropic/claude-x` → `claude-x`; anything else as given.
pub(super) fn claude_model(model: &str) -> &str {
    model.strip_prefix(MODEL_PREFIX).unwrap_or(model)
}

pub(super) fn control_request(request_id: &str, subtype: &str) -> Value {
    json!({"type": "control_request", "request_id": request_id, "request": {"subtype": subtype}})
}

pub(super) fn user_message(text: &str) -> Value {
    json!({
        "type": "user",
        "message": {"role": "user", "content": text},
        "parent_tool_use_id": null,
        "session_id": "",
    })
}

/// The answer to a `can_use_tool` request.
pub(super) fn permission_response(
    request_id: &str,
    decision: PermissionDecision,
    input: &Value,
) -> Value {
    let response = match decision {
        PermissionDecision::Once | PermissionDecision::Always => {
            json!({"behavior": "allow", "updatedInput": input})
        }
        PermissionDecision::Reject => json!({"behavior": "deny", "message": DENY_MESSAGE}),
    };
    json!({
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": response},
    })
}

pub(super) fn control_error(request_id: &str, message: &str) -> Value {
    json!({
        "type": "control_response",
        "response": {"subtype": "error", "request_id": request_id, "error": message},
    })
}

/// The prompt, followed by where each attachment was saved so Claude can `Read` it (its Read
/// tool opens images too).
pub(super) fn compose_prompt(prompt: &str, attachments: &[Attachment]) -> String {
    if attachments.is_empty() {
        return prompt.to_owned();
    }
    let mut out = format!("{prompt}\n\nAttached files (saved on this machine):\n");
    for a in attachments {
        let mime = a.mime.as_deref().unwrap_or("unknown type");
        out.push_str(&format!(
            "- {} ({}, {mime})\n",
            a.path.display(),
            a.filename
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Claude → kimaki

/// What one stdout line is, before the event mapping.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Incoming {
    /// The answer to one of kimaki's control requests.
    ControlResponse {
        request_id: String,
        error: Option<String>,
    },
    /// Claude asks whether it may use a tool.
    CanUseTool(PermissionAsk),
    /// Another control request (hooks, MCP); kimaki answers with an error.
    OtherControl { request_id: String, subtype: String },
    /// Everything else: conversation output, for [`Mapper::line`].
    Output,
}

/// A `can_use_tool` request.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PermissionAsk {
    pub request_id: String,
    pub tool: String,
    pub title: Option<String>,
    pub input: Value,
    pub patterns: Vec<String>,
}

pub(super) fn classify(v: &Value) -> Incoming {
    match str_at(v, "type") {
        Some("control_response") => {
            let r = &v["response"];
            Incoming::ControlResponse {
                request_id: str_at(r, "request_id").unwrap_or_default().to_owned(),
                error: (str_at(r, "subtype") == Some("error"))
                    .then(|| str_at(r, "error").unwrap_or("error").to_owned()),
            }
        }
        Some("control_request") => {
            let request_id = str_at(v, "request_id").unwrap_or_default().to_owned();
            let r = &v["request"];
            match str_at(r, "subtype") {
                Some("can_use_tool") => Incoming::CanUseTool(permission_ask(request_id, r)),
                other => Incoming::OtherControl {
                    request_id,
                    subtype: other.unwrap_or("unknown").to_owned(),
                },
            }
        }
        _ => Incoming::Output,
    }
}

fn permission_ask(request_id: String, r: &Value) -> PermissionAsk {
    let tool = str_at(r, "tool_name").unwrap_or("tool").to_owned();
    let input = r["input"].clone();
    let command = str_at(&input, "command");
    let file = str_at(&input, "file_path").or_else(|| str_at(&input, "notebook_path"));
    let (title, patterns) = match (command, file) {
        (Some(c), _) => (Some(format!("Run `{c}`")), vec![c.to_owned()]),
        (None, Some(f)) => (Some(format!("Edit {f}")), vec![f.to_owned()]),
        (None, None) => (
            str_at(r, "description")
                .or_else(|| str_at(r, "display_name"))
                .map(str::to_owned),
            Vec::new(),
        ),
    };
    PermissionAsk {
        request_id,
        tool,
        title,
        input,
        patterns,
    }
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TurnEnd {
    Completed,
    Interrupted,
    /// `--resume` named a session Claude does not have.
    SessionMissing,
    Failed {
        kind: FailureKind,
        message: String,
    },
}

/// What one output line means for the job.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Mapped {
    pub events: Vec<EventKind>,
    /// The session id, the first time `system/init` names it.
    pub session_started: Option<String>,
    pub turn_end: Option<TurnEnd>,
}

/// A tool call between its `tool_use` and its `tool_result`.
#[derive(Debug, Clone)]
struct ToolCall {
    name: String,
    /// The file it writes and what writing it does, for file tools.
    file: Option<(String, FileAction)>,
}

/// Per-job translation state.
#[derive(Debug, Default)]
pub(super) struct Mapper {
    session_id: Option<String>,
    model: Option<String>,
    /// Text (and thinking) blocks seen in `assistant` lines, per message id: Claude sends one
    /// line per block, and the n-th text block of a message is the n-th streamed one.
    text_blocks: HashMap<String, (usize, usize)>,
    /// The message being streamed, its block ordinals, and the part of each block index.
    streaming: Option<String>,
    stream_ordinals: (usize, usize),
    stream_parts: HashMap<u64, (String, TextStream)>,
    tools: HashMap<String, ToolCall>,
    last_text: Option<String>,
    /// The final text `result` reported, preferred for the summary.
    result_text: Option<String>,
}

impl Mapper {
    pub fn new(model: Option<String>) -> Self {
        Self {
            model,
            ..Self::default()
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The final assistant text, for the job summary.
    pub fn summary(&self) -> Option<String> {
        self.result_text.clone().or_else(|| self.last_text.clone())
    }

    /// Maps one output line. `file_exists` tells whether a path exists before a file tool runs.
    pub fn line(&mut self, v: &Value, file_exists: &dyn Fn(&Path) -> bool) -> Mapped {
        // Sub-agent traffic (the Task tool) stays inside its tool call.
        if !v["parent_tool_use_id"].is_null() {
            return Mapped::default();
        }
        match str_at(v, "type") {
            Some("system") => self.system(v),
            Some("stream_event") => Mapped {
                events: self.stream_event(&v["event"]),
                ..Mapped::default()
            },
            Some("assistant") => Mapped {
                events: self.assistant(&v["message"], file_exists),
                ..Mapped::default()
            },
            Some("user") => Mapped {
                events: self.tool_results(&v["message"]),
                ..Mapped::default()
            },
            Some("result") => self.result(v),
            _ => Mapped::default(),
        }
    }

    fn system(&mut self, v: &Value) -> Mapped {
        match str_at(v, "subtype") {
            Some("init") => {
                if let Some(m) = str_at(v, "model") {
                    self.model = Some(m.to_owned());
                }
                let id = str_at(v, "session_id").map(str::to_owned);
                let first = self.session_id.is_none();
                if let Some(id) = &id {
                    self.session_id = Some(id.clone());
                }
                Mapped {
                    session_started: if first { id } else { None },
                    ..Mapped::default()
                }
            }
            Some("api_retry") => {
                let attempt = v["attempt"]
                    .as_u64()
                    .and_then(|a| u32::try_from(a).ok())
                    .unwrap_or(1);
                let of = v["max_retries"]
                    .as_u64()
                    .map(|m| format!("/{m}"))
                    .unwrap_or_default();
                let cause = match (&v["error_status"], str_at(v, "error")) {
                    (Value::Number(n), _) => format!(": HTTP {n}"),
                    (_, Some(e)) => format!(": {e}"),
                    _ => String::new(),
                };
                Mapped {
                    events: vec![EventKind::Status {
                        message: format!("Model endpoint retrying ({attempt}{of}){cause}"),
                        retry: Some(RetryInfo {
                            attempt,
                            next_in_ms: v["retry_delay_ms"].as_u64(),
                        }),
                    }],
                    ..Mapped::default()
                }
            }
            Some("compact_boundary") => Mapped {
                events: vec![EventKind::Status {
                    message: "Claude compacted the conversation context".to_owned(),
                    retry: None,
                }],
                ..Mapped::default()
            },
            _ => Mapped::default(),
        }
    }

    fn stream_event(&mut self, e: &Value) -> Vec<EventKind> {
        match str_at(e, "type") {
            Some("message_start") => {
                self.streaming = str_at(&e["message"], "id").map(str::to_owned);
                self.stream_ordinals = (0, 0);
                self.stream_parts.clear();
                Vec::new()
            }
            Some("content_block_start") => {
                let (Some(msg), Some(index)) = (&self.streaming, e["index"].as_u64()) else {
                    return Vec::new();
                };
                let part = match str_at(&e["content_block"], "type") {
                    Some("text") => {
                        let n = self.stream_ordinals.0;
                        self.stream_ordinals.0 += 1;
                        (text_part_id(msg, n), TextStream::Assistant)
                    }
                    Some("thinking") => {
                        let n = self.stream_ordinals.1;
                        self.stream_ordinals.1 += 1;
                        (thinking_part_id(msg, n), TextStream::Reasoning)
                    }
                    _ => return Vec::new(),
                };
                self.stream_parts.insert(index, part);
                Vec::new()
            }
            Some("content_block_delta") => {
                let Some((part_id, stream)) =
                    e["index"].as_u64().and_then(|i| self.stream_parts.get(&i))
                else {
                    return Vec::new();
                };
                let d = &e["delta"];
                let delta = match str_at(d, "type") {
                    Some("text_delta") => str_at(d, "text"),
                    Some("thinking_delta") => str_at(d, "thinking"),
                    _ => None,
                };
                match delta.filter(|t| !t.is_empty()) {
                    Some(delta) => vec![EventKind::TextDelta {
                        part_id: part_id.clone(),
                        stream: *stream,
                        delta: delta.to_owned(),
                    }],
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    fn assistant(&mut self, m: &Value, file_exists: &dyn Fn(&Path) -> bool) -> Vec<EventKind> {
        if str_at(m, "model") == Some(SYNTHETIC_MODEL) {
            return Vec::new();
        }
        let msg = str_at(m, "id").unwrap_or("message").to_owned();
        let mut out = Vec::new();
        for block in m["content"].as_array().into_iter().flatten() {
            match str_at(block, "type") {
                Some("text") => {
                    let text = str_at(block, "text").unwrap_or_default();
                    let counts = self.text_blocks.entry(msg.clone()).or_default();
                    let n = counts.0;
                    counts.0 += 1;
                    if text.is_empty() {
                        continue;
                    }
                    self.last_text = Some(text.to_owned());
                    out.push(EventKind::TextPart {
                        part_id: text_part_id(&msg, n),
                        stream: TextStream::Assistant,
                        text: text.to_owned(),
                    });
                }
                Some("thinking") => {
                    let text = str_at(block, "thinking").unwrap_or_default();
                    let counts = self.text_blocks.entry(msg.clone()).or_default();
                    let n = counts.1;
                    counts.1 += 1;
                    if text.is_empty() {
                        continue;
                    }
                    out.push(EventKind::TextPart {
                        part_id: thinking_part_id(&msg, n),
                        stream: TextStream::Reasoning,
                        text: text.to_owned(),
                    });
                }
                Some("tool_use") => {
                    let Some(id) = str_at(block, "id") else {
                        continue;
                    };
                    let name = str_at(block, "name").unwrap_or("tool").to_owned();
                    let input = block["input"].clone();
                    let file = FILE_TOOLS
                        .contains(&name.as_str())
                        .then(|| {
                            str_at(&input, "file_path").or_else(|| str_at(&input, "notebook_path"))
                        })
                        .flatten()
                        .map(|p| {
                            let action = if name == "Write" && !file_exists(Path::new(p)) {
                                FileAction::Created
                            } else {
                                FileAction::Modified
                            };
                            (p.to_owned(), action)
                        });
                    self.tools.insert(
                        id.to_owned(),
                        ToolCall {
                            name: name.clone(),
                            file,
                        },
                    );
                    out.push(EventKind::ToolStarted {
                        call_id: id.to_owned(),
                        name,
                        input,
                    });
                }
                _ => {}
            }
        }
        out
    }

    fn tool_results(&mut self, m: &Value) -> Vec<EventKind> {
        let mut out = Vec::new();
        for block in m["content"].as_array().into_iter().flatten() {
            if str_at(block, "type") != Some("tool_result") {
                continue;
            }
            let Some(id) = str_at(block, "tool_use_id") else {
                continue;
            };
            let call = self.tools.remove(id);
            let is_error = block["is_error"] == json!(true);
            out.push(EventKind::ToolFinished {
                call_id: id.to_owned(),
                name: call
                    .as_ref()
                    .map_or_else(|| "tool".to_owned(), |c| c.name.clone()),
                output: content_text(&block["content"]),
                is_error,
                exit_code: None,
            });
            if let Some((path, action)) = call.and_then(|c| c.file).filter(|_| !is_error) {
                out.push(EventKind::FileChanged { path, action });
            }
        }
        out
    }

    fn result(&mut self, v: &Value) -> Mapped {
        if let Some(id) = str_at(v, "session_id") {
            self.session_id.get_or_insert_with(|| id.to_owned());
        }
        let mut events = Vec::new();
        if let Some(usage) = self.usage(v) {
            events.push(usage);
        }
        let end = if v["is_error"] != json!(true) {
            if let Some(text) = str_at(v, "result").filter(|t| !t.is_empty()) {
                self.result_text = Some(text.to_owned());
            }
            TurnEnd::Completed
        } else {
            classify_failure(v)
        };
        Mapped {
            events,
            session_started: None,
            turn_end: Some(end),
        }
    }

    fn usage(&self, v: &Value) -> Option<EventKind> {
        let u = v.get("usage").filter(|u| u.is_object())?;
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        let cached = n("cache_read_input_tokens");
        let input = n("input_tokens") + n("cache_creation_input_tokens") + cached;
        let output = n("output_tokens");
        let cost = v["total_cost_usd"].as_f64();
        if input == 0 && output == 0 && cost.unwrap_or(0.0) == 0.0 {
            return None;
        }
        Some(EventKind::Usage {
            input_tokens: input,
            output_tokens: output,
            cached_tokens: cached,
            cost_usd: cost,
            context_percent: None,
            model: self.model.clone(),
        })
    }
}

/// Classifies a `result` with `is_error: true` (Claude's `subtype` can say "success" even then).
pub(super) fn classify_failure(v: &Value) -> TurnEnd {
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if errors.iter().any(|e| e.contains(SESSION_MISSING)) {
        return TurnEnd::SessionMissing;
    }
    if str_at(v, "terminal_reason").is_some_and(|r| r.starts_with("aborted")) {
        return TurnEnd::Interrupted;
    }
    let text = str_at(v, "result")
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .or_else(|| (!errors.is_empty()).then(|| errors.join("; ")))
        .unwrap_or_else(|| {
            format!(
                "Claude Code ended the turn with an error ({})",
                str_at(v, "subtype").unwrap_or("unknown")
            )
        });
    let (kind, message) = match v["api_error_status"].as_u64() {
        Some(401 | 403) => (
            FailureKind::Auth,
            format!("the model provider rejected Claude Code's credentials: {text}"),
        ),
        Some(_) => (
            FailureKind::Api,
            format!("the model provider returned an error to Claude Code: {text}"),
        ),
        None if UNREACHABLE_HINTS.iter().any(|h| text.contains(h)) => (
            FailureKind::ModelUnreachable,
            format!("Claude Code cannot reach the model endpoint: {text}"),
        ),
        None if text.contains("Failed to authenticate") => (
            FailureKind::Auth,
            format!("the model provider rejected Claude Code's credentials: {text}"),
        ),
        None => (FailureKind::Api, format!("Claude Code failed: {text}")),
    };
    TurnEnd::Failed { kind, message }
}

fn text_part_id(msg: &str, n: usize) -> String {
    format!("{msg}:t{n}")
}

fn thinking_part_id(msg: &str, n: usize) -> String {
    format!("{msg}:r{n}")
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A tool result's content: a string, or the text of each block.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| str_at(b, "text"))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
