//! Pure translation between `codex app-server` JSON-RPC and kimaki: the client messages kimaki
//! sends, and the server's notifications and requests turned into `EventKind`s, permission asks,
//! questions and the turn's end. No I/O, no clocks; `map_tests.rs` covers it with recorded lines.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use crate::core::events::{
    EventKind, FailureKind, FileAction, PermissionDecision, Question, QuestionOption, RetryInfo,
    TextStream,
};
use crate::core::Attachment;

/// The warning Codex prints for every model it has no metadata for (always, with a custom
/// provider); it is not actionable, so it never reaches users.
const MODEL_METADATA_WARNING: &str = "Model metadata for";

/// Notifications kimaki never reads; opting out keeps them off the pipe. Command output deltas
/// stay on: kimaki does not show them (the completed item carries the output) but they prove a
/// long command is alive to the no-progress deadline.
const OPT_OUT_NOTIFICATIONS: [&str; 2] =
    ["account/rateLimits/updated", "remoteControl/status/changed"];

/// `KIMAKI_MODEL` is shared with OpenCode, which spells models `provider/model`; Codex wants the
/// bare model name for its own provider.
const MODEL_PREFIX: &str = "openai/";

/// The tool name kimaki reports for Codex shell commands and for patches.
pub(super) const SHELL_TOOL: &str = "bash";
pub(super) const PATCH_TOOL: &str = "apply_patch";

// ---------------------------------------------------------------------------------------------
// Client → server

pub(super) fn request(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub(super) fn notification(method: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": method})
}

pub(super) fn response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub(super) fn error_response(id: &Value, message: &str) -> Value {
    // -32601: method not found, the JSON-RPC code for "this client does not do that".
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": message}})
}

pub(super) fn initialize_params(version: &str) -> Value {
    json!({
        "clientInfo": {"name": "kimaki", "title": "kimaki", "version": version},
        "capabilities": {
            "experimentalApi": false,
            "requestAttestation": false,
            "optOutNotificationMethods": OPT_OUT_NOTIFICATIONS,
        },
    })
}

/// The model name Codex understands: `openai/gpt-5` → `gpt-5`; anything else as given.
pub(super) fn codex_model(model: &str) -> &str {
    model.strip_prefix(MODEL_PREFIX).unwrap_or(model)
}

/// Parameters of `thread/start`, or of `thread/resume` when `resume` names a thread.
pub(super) fn thread_params(
    cwd: &str,
    model: Option<&str>,
    sandbox: &str,
    resume: Option<&str>,
) -> Value {
    // Codex asks before anything outside its trusted set; kimaki answers per the job's policy.
    let mut p = json!({"cwd": cwd, "approvalPolicy": "untrusted", "sandbox": sandbox});
    if let Some(m) = model {
        p["model"] = json!(codex_model(m));
    }
    if let Some(id) = resume {
        p["threadId"] = json!(id);
        // The history stays on disk; kimaki only needs the thread to continue.
        p["excludeTurns"] = json!(true);
    }
    p
}

/// Parameters of `turn/start`: the prompt (with attachment paths listed) plus images as images.
pub(super) fn turn_start_params(
    thread_id: &str,
    prompt: &str,
    attachments: &[Attachment],
) -> Value {
    let mut input = vec![json!({
        "type": "text",
        "text": compose_prompt(prompt, attachments),
        "text_elements": [],
    })];
    for a in attachments.iter().filter(|a| is_image(a)) {
        input.push(json!({"type": "localImage", "path": a.path.display().to_string()}));
    }
    json!({"threadId": thread_id, "input": input})
}

pub(super) fn interrupt_params(thread_id: &str, turn_id: &str) -> Value {
    json!({"threadId": thread_id, "turnId": turn_id})
}

fn is_image(a: &Attachment) -> bool {
    a.mime.as_deref().is_some_and(|m| m.starts_with("image/"))
}

/// The prompt, followed by where each attachment was saved so the agent can open it.
pub(crate) fn compose_prompt(prompt: &str, attachments: &[Attachment]) -> String {
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
// Server → client

/// A JSON-RPC error, as Codex sent it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RpcError {
    pub message: String,
}

/// What one line from the server is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Incoming {
    Response {
        id: i64,
        result: Result<Value, RpcError>,
    },
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    Unknown,
}

pub(super) fn classify(v: &Value) -> Incoming {
    let method = v.get("method").and_then(Value::as_str);
    let id = v.get("id");
    match (method, id) {
        (Some(m), Some(id)) => Incoming::Request {
            id: id.clone(),
            method: m.to_owned(),
            params: v.get("params").cloned().unwrap_or(Value::Null),
        },
        (Some(m), None) => Incoming::Notification {
            method: m.to_owned(),
            params: v.get("params").cloned().unwrap_or(Value::Null),
        },
        (None, Some(id)) => {
            let Some(id) = id.as_i64() else {
                return Incoming::Unknown;
            };
            let result = match v.get("error") {
                Some(e) => Err(RpcError {
                    message: str_at(e, "message").unwrap_or("unknown error").to_owned(),
                }),
                None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            };
            Incoming::Response { id, result }
        }
        (None, None) => Incoming::Unknown,
    }
}

/// A server request kimaki has to answer.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ServerAsk {
    Permission {
        tool: String,
        title: Option<String>,
        input: Value,
        patterns: Vec<String>,
    },
    Question {
        /// Codex's question ids, in the order of `questions`.
        ids: Vec<String>,
        questions: Vec<Question>,
    },
    /// An MCP server wants input; kimaki has no way to show its form, so it declines.
    Elicitation,
    /// Anything else: answered with a JSON-RPC error.
    Unsupported,
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TurnEnd {
    Completed,
    Interrupted,
    Failed { kind: FailureKind, message: String },
}

/// What one notification means for the job.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Mapped {
    pub events: Vec<EventKind>,
    pub turn_started: Option<String>,
    pub turn_end: Option<TurnEnd>,
}

impl Mapped {
    fn events(events: Vec<EventKind>) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }
}

/// Token counts summed over the model calls of one turn.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Usage {
    input: u64,
    output: u64,
    cached: u64,
    calls: u32,
    last_input: u64,
    context_window: Option<u64>,
}

/// Per-turn translation state: which items streamed, which tool each item is, usage so far.
#[derive(Debug, Default)]
pub(super) struct Mapper {
    /// Items whose text arrived as deltas.
    streamed: HashSet<String>,
    /// Tool name per item id, for `ToolFinished`.
    tools: HashMap<String, String>,
    /// Proposed file changes per item id, for permission prompts.
    changes: HashMap<String, Value>,
    usage: Usage,
    retries: u32,
    last_text: Option<String>,
    model: Option<String>,
}

impl Mapper {
    pub fn new(model: Option<String>) -> Self {
        Self {
            model,
            ..Self::default()
        }
    }

    /// The final assistant text of the turn, for the job summary.
    pub fn summary(&self) -> Option<String> {
        self.last_text.clone()
    }

    /// One `Usage` event for the whole turn, if any model call reported tokens.
    pub fn usage_event(&self) -> Option<EventKind> {
        let u = self.usage;
        if u.calls == 0 {
            return None;
        }
        let context_percent = u
            .context_window
            .filter(|w| *w > 0)
            .map(|w| (u.last_input as f64 / w as f64 * 100.0).min(100.0));
        Some(EventKind::Usage {
            input_tokens: u.input,
            output_tokens: u.output,
            cached_tokens: u.cached,
            cost_usd: None,
            context_percent,
            model: self.model.clone(),
        })
    }

    pub fn notification(&mut self, method: &str, params: &Value) -> Mapped {
        match method {
            "turn/started" => Mapped {
                turn_started: str_at(&params["turn"], "id").map(str::to_owned),
                ..Mapped::default()
            },
            "item/started" => Mapped::events(self.item_started(&params["item"])),
            "item/completed" => Mapped::events(self.item_completed(&params["item"])),
            "item/agentMessage/delta" => Mapped::events(self.delta(params, TextStream::Assistant)),
            "item/reasoning/summaryTextDelta" => {
                Mapped::events(self.delta(params, TextStream::Reasoning))
            }
            "thread/tokenUsage/updated" => {
                self.add_usage(&params["tokenUsage"]);
                Mapped::default()
            }
            "error" => Mapped::events(self.error(params)),
            "warning" => {
                let message = str_at(params, "message").unwrap_or_default();
                if message.is_empty() || message.starts_with(MODEL_METADATA_WARNING) {
                    return Mapped::default();
                }
                Mapped::events(vec![status(message)])
            }
            "model/rerouted" => {
                let to = str_at(params, "toModel").unwrap_or("another model");
                Mapped::events(vec![status(&format!("Codex switched to {to}"))])
            }
            "turn/completed" => Mapped {
                turn_end: Some(turn_end(&params["turn"])),
                ..Mapped::default()
            },
            _ => Mapped::default(),
        }
    }

    fn delta(&mut self, params: &Value, stream: TextStream) -> Vec<EventKind> {
        let (Some(item), Some(delta)) = (str_at(params, "itemId"), str_at(params, "delta")) else {
            return Vec::new();
        };
        if delta.is_empty() {
            return Vec::new();
        }
        self.streamed.insert(item.to_owned());
        vec![EventKind::TextDelta {
            part_id: item.to_owned(),
            stream,
            delta: delta.to_owned(),
        }]
    }

    fn item_started(&mut self, item: &Value) -> Vec<EventKind> {
        let Some(id) = str_at(item, "id") else {
            return Vec::new();
        };
        let (name, input) = match str_at(item, "type").unwrap_or_default() {
            "commandExecution" => (
                SHELL_TOOL.to_owned(),
                json!({"command": item["command"], "cwd": item["cwd"]}),
            ),
            "fileChange" => {
                self.changes.insert(id.to_owned(), item["changes"].clone());
                (
                    PATCH_TOOL.to_owned(),
                    json!({"changes": change_summaries(&item["changes"])}),
                )
            }
            "mcpToolCall" => (
                format!(
                    "{}.{}",
                    str_at(item, "server").unwrap_or("mcp"),
                    str_at(item, "tool").unwrap_or("tool")
                ),
                item["arguments"].clone(),
            ),
            "dynamicToolCall" => (
                str_at(item, "tool").unwrap_or("tool").to_owned(),
                item["arguments"].clone(),
            ),
            "webSearch" => ("web_search".to_owned(), json!({"query": item["query"]})),
            _ => return Vec::new(),
        };
        self.tools.insert(id.to_owned(), name.clone());
        vec![EventKind::ToolStarted {
            call_id: id.to_owned(),
            name,
            input,
        }]
    }

    fn item_completed(&mut self, item: &Value) -> Vec<EventKind> {
        let Some(id) = str_at(item, "id") else {
            return Vec::new();
        };
        let kind = str_at(item, "type").unwrap_or_default();
        match kind {
            "agentMessage" => {
                let text = str_at(item, "text").unwrap_or_default().to_owned();
                self.streamed.remove(id);
                if text.is_empty() {
                    return Vec::new();
                }
                self.last_text = Some(text.clone());
                vec![EventKind::TextPart {
                    part_id: id.to_owned(),
                    stream: TextStream::Assistant,
                    text,
                }]
            }
            "reasoning" => {
                self.streamed.remove(id);
                let text = joined(&item["summary"]).or_else(|| joined(&item["content"]));
                text.map(|text| EventKind::TextPart {
                    part_id: id.to_owned(),
                    stream: TextStream::Reasoning,
                    text,
                })
                .into_iter()
                .collect()
            }
            "contextCompaction" => vec![status("Codex compacted the conversation context")],
            _ => self.tool_completed(id, kind, item),
        }
    }

    fn tool_completed(&mut self, id: &str, kind: &str, item: &Value) -> Vec<EventKind> {
        let Some(name) = self.tools.remove(id) else {
            return Vec::new();
        };
        let item_status = str_at(item, "status").unwrap_or_default();
        let ok = item_status == "completed";
        let mut events = Vec::new();
        let (output, is_error, exit_code) = match kind {
            "commandExecution" => {
                let exit_code = item["exitCode"]
                    .as_i64()
                    .and_then(|c| i32::try_from(c).ok());
                let output = match item_status {
                    "declined" => "declined: the command was not run".to_owned(),
                    _ => str_at(item, "aggregatedOutput")
                        .unwrap_or_default()
                        .to_owned(),
                };
                (output, !ok || exit_code.is_some_and(|c| c != 0), exit_code)
            }
            "fileChange" => {
                self.changes.remove(id);
                if ok {
                    events.extend(file_events(&item["changes"]));
                }
                let summary = change_summaries(&item["changes"]).join("\n");
                let output = match item_status {
                    "declined" => format!("declined: no files were changed\n{summary}"),
                    _ => summary,
                };
                (output, !ok, None)
            }
            "mcpToolCall" => {
                let output = match item["error"].get("message").and_then(Value::as_str) {
                    Some(e) => e.to_owned(),
                    None => joined_content(&item["result"]["content"]),
                };
                (output, !ok, None)
            }
            "dynamicToolCall" => (
                joined_content(&item["contentItems"]),
                !ok || item["success"] == json!(false),
                None,
            ),
            _ => (String::new(), !ok && !item_status.is_empty(), None),
        };
        let mut out = vec![EventKind::ToolFinished {
            call_id: id.to_owned(),
            name,
            output,
            is_error,
            exit_code,
        }];
        out.append(&mut events);
        out
    }

    fn add_usage(&mut self, usage: &Value) {
        let last = &usage["last"];
        let n = |k: &str| last[k].as_u64().unwrap_or(0);
        self.usage.input += n("inputTokens");
        self.usage.output += n("outputTokens");
        self.usage.cached += n("cachedInputTokens");
        self.usage.last_input = n("inputTokens");
        self.usage.calls += 1;
        if let Some(w) = usage["modelContextWindow"].as_u64() {
            self.usage.context_window = Some(w);
        }
    }

    fn error(&mut self, params: &Value) -> Vec<EventKind> {
        if params["willRetry"] != json!(true) {
            // A final error is repeated in `turn/completed`, which decides the outcome.
            return Vec::new();
        }
        self.retries += 1;
        let message = str_at(&params["error"], "message").unwrap_or("the model call failed");
        vec![EventKind::Status {
            message: format!("Model endpoint retrying ({}): {message}", self.retries),
            retry: Some(RetryInfo {
                attempt: self.retries,
                next_in_ms: None,
            }),
        }]
    }

    /// The ask behind a server request.
    pub fn server_ask(&self, method: &str, params: &Value) -> ServerAsk {
        match method {
            "item/commandExecution/requestApproval" | "execCommandApproval" => {
                let command = match &params["command"] {
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "),
                    v => v.as_str().unwrap_or_default().to_owned(),
                };
                ServerAsk::Permission {
                    tool: SHELL_TOOL.to_owned(),
                    title: Some(format!("Run `{command}`")),
                    input: json!({"command": command, "cwd": params["cwd"], "reason": params["reason"]}),
                    patterns: vec![command],
                }
            }
            "item/fileChange/requestApproval" | "applyPatchApproval" => {
                let changes = str_at(params, "itemId")
                    .and_then(|id| self.changes.get(id))
                    .or_else(|| params.get("fileChanges"))
                    .map(change_summaries)
                    .unwrap_or_default();
                let paths: Vec<String> = changes
                    .iter()
                    .filter_map(|c| c.split_once(' ').map(|(_, p)| p.to_owned()))
                    .collect();
                let title = if paths.is_empty() {
                    "Edit files".to_owned()
                } else {
                    format!("Edit {}", paths.join(", "))
                };
                ServerAsk::Permission {
                    tool: PATCH_TOOL.to_owned(),
                    title: Some(title),
                    input: json!({"changes": changes, "reason": params["reason"]}),
                    patterns: paths,
                }
            }
            "item/permissions/requestApproval" => ServerAsk::Permission {
                tool: "permissions".to_owned(),
                title: Some(
                    str_at(params, "reason")
                        .map(|r| format!("Grant extra permissions: {r}"))
                        .unwrap_or_else(|| "Grant extra permissions".to_owned()),
                ),
                input: params["permissions"].clone(),
                patterns: Vec::new(),
            },
            "item/tool/requestUserInput" => {
                let mut ids = Vec::new();
                let mut questions = Vec::new();
                for q in params["questions"].as_array().into_iter().flatten() {
                    ids.push(str_at(q, "id").unwrap_or_default().to_owned());
                    questions.push(Question {
                        question: str_at(q, "question").unwrap_or_default().to_owned(),
                        header: str_at(q, "header").map(str::to_owned),
                        options: q["options"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|o| QuestionOption {
                                label: str_at(o, "label").unwrap_or_default().to_owned(),
                                description: str_at(o, "description").map(str::to_owned),
                            })
                            .collect(),
                        multiple: false,
                    });
                }
                ServerAsk::Question { ids, questions }
            }
            "mcpServer/elicitation/request" => ServerAsk::Elicitation,
            _ => ServerAsk::Unsupported,
        }
    }
}

/// The `result` answering a permission request with `decision`.
pub(super) fn permission_result(
    method: &str,
    params: &Value,
    decision: PermissionDecision,
) -> Value {
    match method {
        "execCommandApproval" | "applyPatchApproval" => json!({"decision": match decision {
            PermissionDecision::Once => json!("approved"),
            PermissionDecision::Always => json!("approved_for_session"),
            PermissionDecision::Reject => json!({"denied": {"rejection": "The user denied this."}}),
        }}),
        "item/permissions/requestApproval" => {
            let (permissions, scope) = match decision {
                PermissionDecision::Once => (without_nulls(&params["permissions"]), "turn"),
                PermissionDecision::Always => (without_nulls(&params["permissions"]), "session"),
                PermissionDecision::Reject => (json!({}), "turn"),
            };
            json!({"permissions": permissions, "scope": scope})
        }
        // `decline` (not `cancel`) lets the agent continue and explain, which is what a person
        // who says no usually wants; a cancel of the whole job goes through `turn/interrupt`.
        _ => json!({"decision": match decision {
            PermissionDecision::Once => "accept",
            PermissionDecision::Always => "acceptForSession",
            PermissionDecision::Reject => "decline",
        }}),
    }
}

/// The `result` answering a permission request that will not be answered (the job is stopping).
pub(super) fn abandon_result(method: &str, params: &Value) -> Value {
    match method {
        "item/commandExecution/requestApproval" | "item/fileChange/requestApproval" => {
            json!({"decision": "cancel"})
        }
        "execCommandApproval" | "applyPatchApproval" => json!({"decision": "abort"}),
        _ => permission_result(method, params, PermissionDecision::Reject),
    }
}

/// The `result` answering `item/tool/requestUserInput`; `None` dismisses the questions.
pub(super) fn answers_result(ids: &[String], answers: Option<&[Vec<String>]>) -> Value {
    let mut map = serde_json::Map::new();
    if let Some(answers) = answers {
        for (id, chosen) in ids.iter().zip(answers) {
            map.insert(id.clone(), json!({"answers": chosen}));
        }
    }
    json!({"answers": map})
}

pub(super) fn elicitation_decline() -> Value {
    json!({"action": "decline", "content": null, "_meta": null})
}

/// The outcome in a `turn/completed` turn.
fn turn_end(turn: &Value) -> TurnEnd {
    match str_at(turn, "status").unwrap_or_default() {
        "completed" => TurnEnd::Completed,
        "interrupted" => TurnEnd::Interrupted,
        _ => {
            let (kind, message) = classify_error(&turn["error"]);
            TurnEnd::Failed { kind, message }
        }
    }
}

/// Classifies a Codex `TurnError` (`{message, codexErrorInfo}`).
pub(super) fn classify_error(error: &Value) -> (FailureKind, String) {
    let message = str_at(error, "message")
        .filter(|m| !m.is_empty())
        .unwrap_or("the Codex turn failed")
        .to_owned();
    let info = &error["codexErrorInfo"];
    let http_status = info
        .as_object()
        .and_then(|o| o.values().find_map(|v| v["httpStatusCode"].as_u64()));
    let kind = match (info, http_status) {
        (_, Some(401 | 403)) => FailureKind::Auth,
        (Value::String(s), _) if s == "unauthorized" => FailureKind::Auth,
        (_, Some(_)) => FailureKind::Api,
        (Value::Object(o), None)
            if [
                "httpConnectionFailed",
                "responseStreamConnectionFailed",
                "responseStreamDisconnected",
                "responseTooManyFailedAttempts",
            ]
            .iter()
            .any(|k| o.contains_key(*k)) =>
        {
            FailureKind::ModelUnreachable
        }
        _ if message.contains("401 Unauthorized") => FailureKind::Auth,
        _ => FailureKind::Api,
    };
    let message = match kind {
        FailureKind::Auth => format!("the model provider rejected Codex's credentials: {message}"),
        FailureKind::ModelUnreachable => {
            format!("Codex cannot reach the model endpoint: {message}")
        }
        _ => format!("the model provider returned an error to Codex: {message}"),
    };
    (kind, message)
}

fn status(message: &str) -> EventKind {
    EventKind::Status {
        message: message.to_owned(),
        retry: None,
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Non-empty strings of an array, joined by blank lines.
fn joined(v: &Value) -> Option<String> {
    let parts: Vec<&str> = v
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

/// The text items of MCP-style content, joined.
fn joined_content(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| str_at(c, "text"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `"<kind> <path>"` per change, for prompts and tool output.
fn change_summaries(changes: &Value) -> Vec<String> {
    match changes {
        Value::Array(list) => list
            .iter()
            .map(|c| {
                let kind = c["kind"]["type"]
                    .as_str()
                    .or_else(|| c["kind"].as_str())
                    .unwrap_or("update");
                format!("{kind} {}", str_at(c, "path").unwrap_or("?"))
            })
            .collect(),
        // The legacy request keys changes by path.
        Value::Object(map) => map.keys().map(|p| format!("update {p}")).collect(),
        _ => Vec::new(),
    }
}

fn file_events(changes: &Value) -> Vec<EventKind> {
    changes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let kind = c["kind"]["type"].as_str().or_else(|| c["kind"].as_str());
            let action = match kind {
                Some("add") => FileAction::Created,
                Some("delete") => FileAction::Deleted,
                _ => FileAction::Modified,
            };
            let path = c["kind"]["move_path"]
                .as_str()
                .or_else(|| str_at(c, "path"))?;
            Some(EventKind::FileChanged {
                path: path.to_owned(),
                action,
            })
        })
        .collect()
}

fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => json!({}),
    }
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
