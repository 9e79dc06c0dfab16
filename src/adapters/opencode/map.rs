//! Pure translation of OpenCode's wire shapes (event payloads, message lists, errors) into
//! kimaki's `EventKind`s, plus the per-turn bookkeeping that keeps emission idempotent: every part
//! id, tool call, usage step and file is emitted once, whether it arrived live, twice, or only in
//! the message list read after a stream gap. No I/O and no clock: callers pass the time.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::{json, Value};

use crate::core::events::{
    EventKind, FailureKind, FileAction, PermissionResolution, Question, QuestionOption, RetryInfo,
    TextStream,
};
use crate::core::job::Attachment;
use crate::core::RequestId;

/// Tool output kept per call: enough for a person to see what happened, without holding a
/// multi-megabyte `cat` in every event.
pub(super) const TOOL_OUTPUT_LIMIT: usize = 32 * 1024;

/// What one OpenCode event (or one reconcile pass) means for the run that owns the session.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Signal {
    /// Forward as is.
    Emit(EventKind),
    /// A permission request; `event` is the `PermissionRequested` to emit.
    PermissionAsked { id: String, event: EventKind },
    /// Someone answered a permission request.
    PermissionReplied {
        id: String,
        resolution: PermissionResolution,
    },
    /// A question; `event` is the `QuestionAsked` to emit.
    QuestionAsked { id: String, event: EventKind },
    /// Someone answered (`Some`) or dismissed (`None`) a question.
    QuestionResolved {
        id: String,
        answers: Option<Vec<Vec<String>>>,
    },
    /// The model endpoint failed and OpenCode will try again.
    Retry {
        attempt: u32,
        message: String,
        next_in_ms: Option<u64>,
    },
    /// The session reported idle (it can do so twice per turn, and late for an earlier turn).
    Idle,
}

/// How a finished (or failed) turn ended, judged from the message list.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    /// Still working, or not started on our prompt yet.
    Running,
    Done,
    /// Aborted (by kimaki or by someone else).
    Aborted,
    Failed {
        kind: FailureKind,
        message: String,
    },
}

/// An OpenCode error object classified.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ErrorClass {
    Aborted,
    Failed { kind: FailureKind, message: String },
}

#[derive(Debug, Clone)]
struct TextTrack {
    stream: TextStream,
    /// Bytes already sent as deltas.
    streamed: usize,
    /// No more deltas: after a gap, queued deltas may repeat text the catch-up already sent; the
    /// final `TextPart` replaces everything anyway.
    frozen: bool,
    final_sent: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct ToolTrack {
    started: bool,
    finished: bool,
}

/// One prompt's worth of OpenCode activity in one session, and what has been emitted for it.
#[derive(Debug)]
pub(super) struct Turn {
    session_id: String,
    /// Unix ms just before the prompt was sent: our user message is the first one created after.
    sent_at_ms: i64,
    user_message: Option<String>,
    /// Assistant messages answering our user message.
    ours: HashSet<String>,
    texts: HashMap<String, TextTrack>,
    tools: HashMap<String, ToolTrack>,
    usage_steps: HashSet<String>,
    files: HashSet<String>,
    requests: HashSet<String>,
    summary: Option<String>,
    /// A `session.error` seen after our prompt was taken.
    error: Option<Value>,
    model: Option<(String, String)>,
    context_limit: Option<u64>,
    context_limit_asked: bool,
}

impl Turn {
    pub(super) fn new(session_id: impl Into<String>, sent_at_ms: i64) -> Self {
        Self {
            session_id: session_id.into(),
            sent_at_ms,
            user_message: None,
            ours: HashSet::new(),
            texts: HashMap::new(),
            tools: HashMap::new(),
            usage_steps: HashSet::new(),
            files: HashSet::new(),
            requests: HashSet::new(),
            summary: None,
            error: None,
            model: None,
            context_limit: None,
            context_limit_asked: false,
        }
    }

    /// The final assistant text of the turn so far.
    pub(super) fn summary(&self) -> Option<String> {
        self.summary.clone()
    }

    pub(super) fn has_user_message(&self) -> bool {
        self.user_message.is_some()
    }

    /// The model whose context window should be looked up, once.
    pub(super) fn wants_context_limit(&mut self) -> Option<(String, String)> {
        if self.context_limit_asked {
            return None;
        }
        let model = self.model.clone()?;
        self.context_limit_asked = true;
        Some(model)
    }

    pub(super) fn set_context_limit(&mut self, limit: Option<u64>) {
        self.context_limit = limit.filter(|l| *l > 0);
    }

    /// Translates one event payload (`{type, properties}`) routed to this session or one of its
    /// sub-agent sessions.
    pub(super) fn on_event(&mut self, payload: &Value, now_ms: i64) -> Vec<Signal> {
        let kind = payload["type"].as_str().unwrap_or_default();
        let props = &payload["properties"];
        let own = props["sessionID"].as_str() == Some(self.session_id.as_str());
        let mut out = Vec::new();
        match kind {
            // Sub-agents ask through their own sessions; their questions still need an answer.
            "permission.asked" => self.permission_asked(props, &mut out),
            "permission.replied" => {
                if let (Some(id), Some(resolution)) = (
                    props["requestID"].as_str(),
                    props["reply"].as_str().and_then(resolution_of_reply),
                ) {
                    out.push(Signal::PermissionReplied {
                        id: id.to_owned(),
                        resolution,
                    });
                }
            }
            "question.asked" => self.question_asked(props, &mut out),
            "question.replied" => {
                if let Some(id) = props["requestID"].as_str() {
                    out.push(Signal::QuestionResolved {
                        id: id.to_owned(),
                        answers: Some(answers_of(&props["answers"])),
                    });
                }
            }
            "question.rejected" => {
                if let Some(id) = props["requestID"].as_str() {
                    out.push(Signal::QuestionResolved {
                        id: id.to_owned(),
                        answers: None,
                    });
                }
            }
            _ if !own => {}
            "message.updated" => self.message_updated(&props["info"]),
            "message.part.updated" => self.part_updated(&props["part"], false, &mut out),
            "message.part.delta" => self.part_delta(props, &mut out),
            "session.status" => match props["status"]["type"].as_str() {
                Some("idle") => out.push(Signal::Idle),
                Some("retry") => {
                    let status = &props["status"];
                    let next_in_ms = status["next"]
                        .as_i64()
                        .map(|next| u64::try_from(next - now_ms).unwrap_or(0));
                    out.push(Signal::Retry {
                        attempt: status["attempt"]
                            .as_u64()
                            .and_then(|a| u32::try_from(a).ok())
                            .unwrap_or(1),
                        message: status["message"].as_str().unwrap_or_default().to_owned(),
                        next_in_ms,
                    });
                }
                _ => {}
            },
            "session.idle" => out.push(Signal::Idle),
            // An error before our prompt was taken belongs to an earlier turn (a late abort).
            "session.error" if self.user_message.is_some() && props["error"].is_object() => {
                self.error = Some(props["error"].clone());
            }
            _ => {}
        }
        out
    }

    /// Emits whatever the message list shows that was not emitted yet. `messages` is
    /// `GET /session/{id}/message` (oldest first); parts still streaming get their missing text
    /// as one delta and no further deltas.
    pub(super) fn reconcile(&mut self, messages: &[Value]) -> Vec<Signal> {
        let mut out = Vec::new();
        for message in messages {
            let info = &message["info"];
            self.message_updated(info);
            let Some(id) = info["id"].as_str() else {
                continue;
            };
            if !self.ours.contains(id) {
                continue;
            }
            for part in message["parts"].as_array().into_iter().flatten() {
                self.part_updated(part, true, &mut out);
            }
        }
        out
    }

    /// Re-raises requests that are pending in OpenCode but were never seen live (lost in a gap).
    /// `permissions` and `questions` are `GET /permission` and `GET /question`; `sessions` are
    /// the ids that count as this run's (its session and its sub-agents').
    pub(super) fn reconcile_requests(
        &mut self,
        permissions: &[Value],
        questions: &[Value],
        sessions: &HashSet<String>,
    ) -> Vec<Signal> {
        let mut out = Vec::new();
        let mine = |r: &Value| {
            r["sessionID"]
                .as_str()
                .is_some_and(|s| sessions.contains(s))
        };
        for p in permissions.iter().filter(|p| mine(p)) {
            self.permission_asked(p, &mut out);
        }
        for q in questions.iter().filter(|q| mine(q)) {
            self.question_asked(q, &mut out);
        }
        out
    }

    /// Whether a page of the message list (newest last) reaches back to our prompt, so older
    /// pages are not needed.
    pub(super) fn page_reaches_prompt(&self, page: &[Value]) -> bool {
        page.iter().map(|m| &m["info"]).any(|info| {
            info["id"]
                .as_str()
                .is_some_and(|id| self.user_message.as_deref() == Some(id))
                || info["time"]["created"]
                    .as_f64()
                    .is_some_and(|c| c < self.sent_at_ms as f64)
        })
    }

    /// Judges the turn from the message list, given that the session is idle.
    pub(super) fn verdict(&self, messages: &[Value]) -> Verdict {
        let Some(user) = &self.user_message else {
            return Verdict::Running;
        };
        let last = messages.iter().map(|m| &m["info"]).rev().find(|info| {
            info["role"] == "assistant" && info["parentID"].as_str() == Some(user.as_str())
        });
        let error = last
            .map(|info| &info["error"])
            .filter(|e| e.is_object())
            .or(self.error.as_ref());
        if let Some(error) = error {
            return match classify_error(error) {
                ErrorClass::Aborted => Verdict::Aborted,
                ErrorClass::Failed { kind, message } => Verdict::Failed { kind, message },
            };
        }
        match last {
            Some(info) if info["time"]["completed"].is_number() => Verdict::Done,
            _ => Verdict::Running,
        }
    }

    fn message_updated(&mut self, info: &Value) {
        let Some(id) = info["id"].as_str() else {
            return;
        };
        match info["role"].as_str() {
            Some("user") => {
                let created = info["time"]["created"].as_f64().unwrap_or(0.0);
                // Same clock, same machine: OpenCode stamps the message after our request left.
                let after_prompt = created >= self.sent_at_ms as f64;
                if self.user_message.is_none() && after_prompt {
                    self.user_message = Some(id.to_owned());
                }
            }
            Some("assistant") => {
                let parent = info["parentID"].as_str();
                if parent.is_some() && parent == self.user_message.as_deref() {
                    self.ours.insert(id.to_owned());
                    if let (Some(p), Some(m)) =
                        (info["providerID"].as_str(), info["modelID"].as_str())
                    {
                        self.model = Some((p.to_owned(), m.to_owned()));
                    }
                }
            }
            _ => {}
        }
    }

    fn part_updated(&mut self, part: &Value, catch_up: bool, out: &mut Vec<Signal>) {
        let (Some(id), Some(message)) = (part["id"].as_str(), part["messageID"].as_str()) else {
            return;
        };
        if !self.ours.contains(message) {
            return;
        }
        match part["type"].as_str() {
            Some("text") => self.text_part(id, TextStream::Assistant, part, catch_up, out),
            Some("reasoning") => self.text_part(id, TextStream::Reasoning, part, catch_up, out),
            Some("tool") => self.tool_part(id, part, out),
            Some("step-finish") if self.usage_steps.insert(id.to_owned()) => {
                out.push(Signal::Emit(self.usage_of(part)));
            }
            // With snapshots on, OpenCode lists every file a step changed, shell edits included.
            Some("patch") => {
                for file in part["files"].as_array().into_iter().flatten() {
                    if let Some(path) = file.as_str() {
                        self.file_changed(path, FileAction::Modified, out);
                    }
                }
            }
            _ => {}
        }
    }

    fn text_part(
        &mut self,
        id: &str,
        stream: TextStream,
        part: &Value,
        catch_up: bool,
        out: &mut Vec<Signal>,
    ) {
        if part["synthetic"] == true || part["ignored"] == true {
            return;
        }
        let text = part["text"].as_str().unwrap_or_default();
        let is_final = part["time"]["end"].is_number();
        let track = self.texts.entry(id.to_owned()).or_insert(TextTrack {
            stream,
            streamed: 0,
            frozen: false,
            final_sent: false,
        });
        if track.final_sent {
            return;
        }
        if is_final {
            track.final_sent = true;
            out.push(Signal::Emit(EventKind::TextPart {
                part_id: id.to_owned(),
                stream,
                text: text.to_owned(),
            }));
            if stream == TextStream::Assistant && !text.trim().is_empty() {
                self.summary = Some(text.to_owned());
            }
            return;
        }
        if !track.frozen && text.len() > track.streamed && text.is_char_boundary(track.streamed) {
            out.push(Signal::Emit(EventKind::TextDelta {
                part_id: id.to_owned(),
                stream,
                delta: text[track.streamed..].to_owned(),
            }));
            track.streamed = text.len();
        }
        if catch_up {
            track.frozen = true;
        }
    }

    fn part_delta(&mut self, props: &Value, out: &mut Vec<Signal>) {
        if props["field"].as_str() != Some("text") {
            return;
        }
        let (Some(id), Some(delta)) = (props["partID"].as_str(), props["delta"].as_str()) else {
            return;
        };
        // Unknown parts (their creation was lost in a gap) wait for the final text.
        let Some(track) = self.texts.get_mut(id) else {
            return;
        };
        if track.frozen || track.final_sent || delta.is_empty() {
            return;
        }
        track.streamed += delta.len();
        out.push(Signal::Emit(EventKind::TextDelta {
            part_id: id.to_owned(),
            stream: track.stream,
            delta: delta.to_owned(),
        }));
    }

    fn tool_part(&mut self, id: &str, part: &Value, out: &mut Vec<Signal>) {
        let state = &part["state"];
        let status = state["status"].as_str().unwrap_or_default();
        if !matches!(status, "running" | "completed" | "error") {
            return;
        }
        let call_id = part["callID"].as_str().unwrap_or(id).to_owned();
        let name = part["tool"].as_str().unwrap_or("tool").to_owned();
        let track = self.tools.entry(id.to_owned()).or_default();
        if !track.started {
            track.started = true;
            out.push(Signal::Emit(EventKind::ToolStarted {
                call_id: call_id.clone(),
                name: name.clone(),
                input: state["input"].clone(),
            }));
        }
        if status == "running" || track.finished {
            return;
        }
        track.finished = true;
        let is_error = status == "error";
        let output = if is_error {
            state["error"].as_str().unwrap_or("the tool failed")
        } else {
            state["output"].as_str().unwrap_or_default()
        };
        let exit_code = state["metadata"]["exit"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok());
        out.push(Signal::Emit(EventKind::ToolFinished {
            call_id,
            name: name.clone(),
            output: truncate(output, TOOL_OUTPUT_LIMIT),
            is_error,
            exit_code,
        }));
        if !is_error {
            if let Some((path, action)) = file_change_of(&name, state) {
                self.file_changed(&path, action, out);
            }
        }
    }

    fn file_changed(&mut self, path: &str, action: FileAction, out: &mut Vec<Signal>) {
        if self.files.insert(path.to_owned()) {
            out.push(Signal::Emit(EventKind::FileChanged {
                path: path.to_owned(),
                action,
            }));
        }
    }

    fn usage_of(&self, part: &Value) -> EventKind {
        let tokens = &part["tokens"];
        let n = |v: &Value| v.as_f64().map_or(0, |f| f.max(0.0).round() as u64);
        let input = n(&tokens["input"]);
        let output = n(&tokens["output"]);
        let reasoning = n(&tokens["reasoning"]);
        let cache_read = n(&tokens["cache"]["read"]);
        let cache_write = n(&tokens["cache"]["write"]);
        // The step's whole request (prompt, cache and reply) is what occupies the window.
        let in_window = input + output + reasoning + cache_read + cache_write;
        let context_percent = self
            .context_limit
            .map(|limit| (in_window as f64 * 100.0 / limit as f64).min(100.0));
        EventKind::Usage {
            input_tokens: input,
            output_tokens: output + reasoning,
            cached_tokens: cache_read,
            cost_usd: part["cost"].as_f64().filter(|c| *c > 0.0),
            context_percent,
            model: self.model.as_ref().map(|(p, m)| format!("{p}/{m}")),
        }
    }

    fn permission_asked(&mut self, request: &Value, out: &mut Vec<Signal>) {
        let Some(id) = request["id"].as_str() else {
            return;
        };
        if !self.requests.insert(id.to_owned()) {
            return;
        }
        out.push(Signal::PermissionAsked {
            id: id.to_owned(),
            event: permission_event(request),
        });
    }

    fn question_asked(&mut self, request: &Value, out: &mut Vec<Signal>) {
        let Some(id) = request["id"].as_str() else {
            return;
        };
        if !self.requests.insert(id.to_owned()) {
            return;
        }
        out.push(Signal::QuestionAsked {
            id: id.to_owned(),
            event: EventKind::QuestionAsked {
                request_id: RequestId::new(id),
                questions: questions_of(&request["questions"]),
            },
        });
    }
}

/// `PermissionRequested` for an OpenCode permission request (`permission.asked` properties or a
/// `GET /permission` entry).
pub(super) fn permission_event(request: &Value) -> EventKind {
    let tool = request["permission"].as_str().unwrap_or("tool").to_owned();
    let patterns: Vec<String> = request["patterns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    let metadata = &request["metadata"];
    let title = permission_title(&tool, metadata, &patterns);
    EventKind::PermissionRequested {
        request_id: RequestId::new(request["id"].as_str().unwrap_or_default()),
        tool,
        title,
        input: metadata.clone(),
        patterns,
    }
}

fn permission_title(tool: &str, metadata: &Value, patterns: &[String]) -> Option<String> {
    let field = |key: &str| metadata[key].as_str().filter(|s| !s.is_empty());
    match tool {
        "bash" => field("command").map(|c| format!("run `{c}`")),
        "edit" | "write" => field("filepath")
            .or_else(|| field("filePath"))
            .map(|p| format!("edit `{p}`")),
        "webfetch" => field("url").map(|u| format!("fetch {u}")),
        _ => None,
    }
    .or_else(|| (!patterns.is_empty()).then(|| format!("use `{tool}` on {}", patterns.join(", "))))
}

fn questions_of(questions: &Value) -> Vec<Question> {
    questions
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| Question {
            question: q["question"].as_str().unwrap_or_default().to_owned(),
            header: q["header"]
                .as_str()
                .filter(|h| !h.is_empty())
                .map(str::to_owned),
            options: q["options"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| QuestionOption {
                    label: o["label"].as_str().unwrap_or_default().to_owned(),
                    description: o["description"]
                        .as_str()
                        .filter(|d| !d.is_empty())
                        .map(str::to_owned),
                })
                .collect(),
            multiple: q["multiple"].as_bool().unwrap_or(false),
        })
        .collect()
}

fn answers_of(answers: &Value) -> Vec<Vec<String>> {
    answers
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            a.as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .collect()
}

fn resolution_of_reply(reply: &str) -> Option<PermissionResolution> {
    match reply {
        "once" => Some(PermissionResolution::Once),
        "always" => Some(PermissionResolution::Always),
        "reject" => Some(PermissionResolution::Reject),
        _ => None,
    }
}

/// OpenCode's word for a decision (`POST /permission/{id}/reply`).
pub(super) fn reply_word(decision: crate::core::events::PermissionDecision) -> &'static str {
    use crate::core::events::PermissionDecision;
    match decision {
        PermissionDecision::Once => "once",
        PermissionDecision::Always => "always",
        PermissionDecision::Reject => "reject",
    }
}

/// The file a completed `write`/`edit` call changed.
fn file_change_of(tool: &str, state: &Value) -> Option<(String, FileAction)> {
    let metadata = &state["metadata"];
    let path = metadata["filepath"]
        .as_str()
        .or_else(|| metadata["filediff"]["file"].as_str())
        .or_else(|| state["input"]["filePath"].as_str())?
        .to_owned();
    match tool {
        "write" if metadata["exists"] == false => Some((path, FileAction::Created)),
        "write" | "edit" | "multiedit" => Some((path, FileAction::Modified)),
        _ => None,
    }
}

/// Classifies an OpenCode error object (`{name, data: {message, statusCode?, …}}`).
pub(super) fn classify_error(error: &Value) -> ErrorClass {
    let name = error["name"].as_str().unwrap_or("UnknownError");
    let message = error["data"]["message"]
        .as_str()
        .filter(|m| !m.is_empty())
        .unwrap_or(name);
    let status = error["data"]["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok());
    let (kind, text) = match (name, status) {
        ("MessageAbortedError", _) => return ErrorClass::Aborted,
        ("ProviderAuthError", _) | ("APIError", Some(401 | 403)) => (
            FailureKind::Auth,
            format!("the model provider rejected the credentials: {message}"),
        ),
        ("APIError", Some(s)) if s >= 500 || s == 429 => (
            FailureKind::ModelUnreachable,
            format!("the model endpoint failed (HTTP {s}): {message}"),
        ),
        ("APIError", Some(s)) => (
            FailureKind::Api,
            format!("the model provider rejected the request (HTTP {s}): {message}"),
        ),
        ("ContextOverflowError", _) => (
            FailureKind::Api,
            format!("the conversation no longer fits the model's context window: {message}"),
        ),
        ("MessageOutputLengthError", _) => (
            FailureKind::Api,
            format!("the reply hit the model's output limit: {message}"),
        ),
        _ => (
            FailureKind::Api,
            format!("OpenCode reported {name}: {message}"),
        ),
    };
    ErrorClass::Failed {
        kind,
        message: truncate(&text, ERROR_MESSAGE_LIMIT),
    }
}

/// Error text kept in a failure; provider bodies can be whole HTML pages.
const ERROR_MESSAGE_LIMIT: usize = 2_000;

/// Splits `provider/model` (model ids may themselves contain `/`).
pub(super) fn parse_model(model: &str) -> Option<(String, String)> {
    let (provider, id) = model.trim().split_once('/')?;
    (!provider.is_empty() && !id.is_empty()).then(|| (provider.to_owned(), id.to_owned()))
}

/// The body of `POST /session/{id}/prompt_async`. The model and agent are only sent when the job
/// or kimaki's config names them, so the project's own `opencode.json` decides otherwise.
pub(super) fn prompt_body(
    prompt: &str,
    attachments: &[Attachment],
    model: Option<&(String, String)>,
    agent: Option<&str>,
) -> Value {
    let mut parts = Vec::with_capacity(1 + attachments.len());
    if !prompt.trim().is_empty() {
        parts.push(json!({ "type": "text", "text": prompt }));
    }
    for a in attachments {
        let mime = a
            .mime
            .clone()
            .unwrap_or_else(|| guess_mime(&a.path).to_owned());
        parts.push(json!({
            "type": "file", "mime": mime, "filename": a.filename, "url": file_url(&a.path),
        }));
    }
    let mut body = json!({ "parts": parts });
    if let Some((provider, id)) = model {
        body["model"] = json!({ "providerID": provider, "modelID": id });
    }
    if let Some(agent) = agent {
        body["agent"] = json!(agent);
    }
    body
}

/// A `file://` URL for an absolute path, percent-encoding everything but unreserved characters.
pub(super) fn file_url(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// A MIME type from the file extension, for attachments that came without one.
pub(super) fn guess_mime(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "txt" | "md" | "markdown" | "log" | "csv" | "toml" | "yaml" | "yml" | "rs" | "ts"
        | "tsx" | "js" | "jsx" | "py" | "go" | "java" | "c" | "h" | "cpp" | "sh" | "html"
        | "css" | "xml" | "sql" | "diff" | "patch" => "text/plain",
        _ => "application/octet-stream",
    }
}

/// A `Status` for a model retry.
pub(super) fn retry_status(attempt: u32, message: &str, next_in_ms: Option<u64>) -> EventKind {
    let detail = if message.is_empty() {
        String::new()
    } else {
        format!(": {}", truncate(message, ERROR_MESSAGE_LIMIT))
    };
    EventKind::Status {
        message: format!("model endpoint retrying ({attempt}){detail}"),
        retry: Some(RetryInfo {
            attempt,
            next_in_ms,
        }),
    }
}

/// `text` cut to at most `limit` bytes on a char boundary, marked when cut.
pub(super) fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (truncated, {} bytes in all)", &text[..end], text.len())
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
