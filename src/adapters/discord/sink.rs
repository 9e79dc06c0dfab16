//! The sink: follows the core's event bus and turns the events of every job that replies to
//! Discord into slots for the outbound workers.
//!
//! Each job's view is a fold over its events, and its slots are a pure function of that view, so
//! a replay (after a lag, a reconnect or a restart) renders the same slots and the outbound layer
//! changes nothing that Discord already shows. Jobs still being rendered are listed in the store;
//! at start-up they are rebuilt from their stored events, whatever the saved cursor says.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::external::{self, ExternalFlags, OpenError, OpenThread};
use super::outbound::{ChannelOp, Outbound, Slot};
use super::render::{self, PermissionOutcome, Verbosity};
use super::store::DiscordStore;
use super::voice_retry;
use crate::core::events::{
    CancelReason, EventKind, Outcome, PermissionResolution, Question, TextStream,
};
use crate::core::{clock, JobEvent, JobId, JobQueue, JobRecord};

/// The `ReplyTo::adapter` value of jobs this adapter renders.
pub const ADAPTER: &str = "discord";

/// The saved cursor is written at most this often (replays are idempotent, so losing the last
/// second of it costs only a few no-op comparisons).
const CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Remembered ids of jobs that do not reply to Discord, so their events cost one lookup each.
const FOREIGN_JOBS_REMEMBERED: usize = 1024;

/// A text part is cut to this many characters (a runaway reply must not exhaust memory); the
/// rest is summarised in a note.
const MAX_PART_CHARS: usize = 100_000;

/// Retry notices (`⬦ … retrying in Xs`) appear at most this often per job.
const RETRY_NOTICE_SPACING_MS: i64 = 10_000;

/// A tool output estimated above this many tokens gets a notice.
const LARGE_TOOL_OUTPUT_TOKENS: usize = 3000;

/// Rough characters per token for that estimate.
const CHARS_PER_TOKEN: usize = 4;

/// A queued message is announced with this much of its text when it starts.
const ANNOUNCE_CHARS: usize = 150;

/// The notice key of a voice message's transcript (shown at every verbosity).
const TRANSCRIPT_NOTICE: &str = "transcript";

/// Select menus hold at most 25 options; one is "Other".
const MAX_QUESTION_OPTIONS: usize = 24;

/// A thread that could not be opened for a transient reason is tried again after this long.
const REOPEN_AFTER: Duration = Duration::from_secs(30);

/// Where a job's output goes, as this adapter writes `ReplyTo::address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub guild: String,
    /// The project channel.
    pub channel: String,
    pub thread: String,
    /// The user message that asked (replies point at it).
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    /// `queue` when the user asked to queue it (then its position is announced).
    #[serde(default)]
    pub mode: Option<String>,
}

impl Address {
    pub fn thread_id(&self) -> Option<u64> {
        self.thread.parse().ok()
    }

    pub fn channel_id(&self) -> Option<u64> {
        self.channel.parse().ok()
    }

    pub fn message_id(&self) -> Option<u64> {
        self.message.as_deref().and_then(|m| m.parse().ok())
    }

    pub fn of(record: &JobRecord) -> Option<Self> {
        let r = record
            .job
            .reply_to
            .as_ref()
            .filter(|r| r.adapter == ADAPTER)?;
        serde_json::from_value(r.address.clone()).ok()
    }
}

/// Slot keys, shared with the interaction handlers that edit prompts directly.
pub mod keys {
    pub fn permission(job: &str, request: &str) -> String {
        format!("{job}/p/{request}")
    }
    pub fn question(job: &str, request: &str, index: usize) -> String {
        format!("{job}/q/{request}/{index}")
    }
    pub fn job_prefix(job: &str) -> String {
        format!("{job}/")
    }
}

/// `custom_id`s of the components the sink renders.
pub mod custom_id {
    /// `perm:<request>:<once|always|reject>` (≤ 100 characters: request ids are short).
    pub fn permission(request: &str, choice: &str) -> String {
        format!("perm:{request}:{choice}")
    }
    /// `q:<request>:<question index>`.
    pub fn question(request: &str, index: usize) -> String {
        format!("q:{request}:{index}")
    }
    /// The select value for "Other" (type the answer in the thread).
    pub const OTHER: &str = "__other__";
}

/// Permission buttons: Accept (green), Accept Always (blue), Deny (red).
pub fn permission_buttons(request: &str) -> Value {
    json!([{"type": 1, "components": [
        {"type": 2, "style": 3, "label": "Accept", "custom_id": custom_id::permission(request, "once")},
        {"type": 2, "style": 1, "label": "Accept Always", "custom_id": custom_id::permission(request, "always")},
        {"type": 2, "style": 4, "label": "Deny", "custom_id": custom_id::permission(request, "reject")},
    ]}])
}

/// A question's select menu: up to 24 options plus "Other".
pub fn question_select(request: &str, index: usize, q: &Question) -> Value {
    let mut options: Vec<Value> = q
        .options
        .iter()
        .take(MAX_QUESTION_OPTIONS)
        .enumerate()
        .map(|(i, o)| {
            let mut opt = json!({
                "label": render::truncate_chars(&o.label, 100),
                "value": i.to_string(),
            });
            if let Some(d) = o.description.as_deref().filter(|d| !d.is_empty()) {
                opt["description"] = json!(render::truncate_chars(d, 100));
            }
            opt
        })
        .collect();
    options.push(json!({
        "label": "Other",
        "value": custom_id::OTHER,
        "description": "Type your answer in the thread",
    }));
    let max = if q.multiple { options.len() } else { 1 };
    json!([{"type": 1, "components": [{
        "type": 3,
        "custom_id": custom_id::question(request, index),
        "placeholder": "Choose an answer",
        "min_values": 1,
        "max_values": max,
        "options": options,
    }]}])
}

/// Text shown for a permission's outcome.
pub fn permission_outcome(
    resolution: Option<PermissionResolution>,
    answer: Option<&super::store::AnswerRecord>,
    timeout_minutes: u64,
) -> Option<PermissionOutcome> {
    let by = answer.and_then(|a| a.by.clone());
    if let Some(a) = answer {
        match a.outcome.as_str() {
            "timeout" => {
                return Some(PermissionOutcome::TimedOut {
                    minutes: timeout_minutes,
                })
            }
            "dismissed" => return Some(PermissionOutcome::Dismissed),
            _ => {}
        }
    }
    let choice = resolution.map(|r| match r {
        PermissionResolution::Once => "once",
        PermissionResolution::Always => "always",
        PermissionResolution::Reject => "reject",
        PermissionResolution::Timeout => "timeout",
    });
    match choice.or(answer.map(|a| a.outcome.as_str()))? {
        "once" => Some(PermissionOutcome::Once { by }),
        "always" => Some(PermissionOutcome::Always { by }),
        "timeout" => Some(PermissionOutcome::TimedOut {
            minutes: timeout_minutes,
        }),
        _ => Some(PermissionOutcome::Denied { by }),
    }
}

#[derive(Debug, Clone)]
enum Item {
    Text {
        part_id: String,
        stream: TextStream,
        text: String,
        done: bool,
    },
    Tool {
        call_id: String,
        name: String,
        input: Value,
        error: bool,
    },
    Permission {
        request_id: String,
        tool: String,
        title: Option<String>,
        patterns: Vec<String>,
        resolved: Option<PermissionResolution>,
    },
    Question {
        request_id: String,
        questions: Vec<Question>,
        /// `Some(None)` = dismissed.
        resolved: Option<Option<Vec<Vec<String>>>>,
    },
    Notice {
        key: String,
        text: String,
    },
}

#[derive(Debug, Clone)]
struct Finish {
    outcome: Outcome,
    error: Option<String>,
    reason: Option<String>,
    duration_ms: Option<u64>,
    notify: bool,
    /// A failed transcription the user may retry (the recording is kept).
    voice_retry: bool,
}

/// One job's output, folded from its events.
#[derive(Debug, Clone)]
struct JobView {
    job_id: String,
    lane: String,
    thread: u64,
    project_channel: u64,
    address: Address,
    /// What a job from outside Discord needs: a thread opened first, its prompt shown.
    flags: ExternalFlags,
    /// The thread is being opened; nothing is sent until it exists.
    awaiting_thread: bool,
    /// `» **kimaki-cli:** …`, shown first for a prompt that did not come from Discord.
    echo: Option<String>,
    runner: String,
    workspace: PathBuf,
    model: Option<String>,
    agent: Option<String>,
    prompt_preview: String,
    queued_position: Option<u32>,
    started: bool,
    items: Vec<Item>,
    context_percent: Option<f64>,
    usage_model: Option<String>,
    finished: Option<Finish>,
    interrupted_by_message: bool,
    last_seq: u64,
    last_retry_notice_at: Option<i64>,
    /// Text chunks each part rendered last time (to delete surplus ones).
    chunks: HashMap<String, usize>,
    /// Hash of each slot as last handed to the outbound layer.
    sent: HashMap<String, u64>,
    typing: bool,
    /// A spoken prompt not transcribed yet.
    voice_pending: bool,
}

impl JobView {
    fn new(record: &JobRecord, address: Address) -> Self {
        // The user's words, not the composed prompt (which carries tags and attachments).
        let preview: String = record
            .job
            .meta
            .get("discord_text")
            .and_then(|v| v.as_str())
            .unwrap_or(&record.job.prompt)
            .chars()
            .take(ANNOUNCE_CHARS)
            .collect();
        let flags = record
            .job
            .reply_to
            .as_ref()
            .map(|r| ExternalFlags::of(&r.address))
            .unwrap_or_default();
        let echo = flags.echo.then(|| {
            let author = address.author.as_deref().unwrap_or(external::CLI_AUTHOR);
            external::prompt_text(author, &record.job.prompt)
        });
        Self {
            flags,
            awaiting_thread: false,
            echo,
            job_id: record.job.id.to_string(),
            lane: record.job.lane.to_string(),
            thread: address.thread_id().unwrap_or(0),
            project_channel: address.channel_id().unwrap_or(0),
            runner: record.job.runner.to_string(),
            workspace: record.job.workspace.clone(),
            model: record.job.model.clone(),
            agent: record.job.agent.clone(),
            prompt_preview: preview,
            queued_position: None,
            started: false,
            items: Vec::new(),
            context_percent: None,
            usage_model: None,
            finished: None,
            interrupted_by_message: false,
            last_seq: 0,
            last_retry_notice_at: None,
            chunks: HashMap::new(),
            sent: HashMap::new(),
            typing: false,
            voice_pending: record.job.voice.is_some(),
            address,
        }
    }

    /// The text of a part, created empty at its first appearance.
    fn text_item(&mut self, part_id: &str, stream: TextStream) -> Option<&mut String> {
        let exists = self.items.iter().any(
            |i| matches!(i, Item::Text { part_id: p, stream: s, .. } if p == part_id && *s == stream),
        );
        if !exists {
            self.items.push(Item::Text {
                part_id: part_id.to_owned(),
                stream,
                text: String::new(),
                done: false,
            });
        }
        self.items.iter_mut().find_map(|i| match i {
            Item::Text {
                part_id: p,
                stream: s,
                text,
                ..
            } if p == part_id && *s == stream => Some(text),
            _ => None,
        })
    }

    /// Folds one event in. Returns false for an event already applied.
    fn apply(&mut self, ev: &JobEvent, lane_context_step: &mut u32) -> bool {
        if ev.seq <= self.last_seq {
            return false;
        }
        self.last_seq = ev.seq;
        if matches!(ev.kind, EventKind::Transcribed { .. }) {
            self.voice_pending = false;
        }
        match &ev.kind {
            EventKind::Queued { position } => self.queued_position = Some(*position),
            EventKind::Started { .. } => self.started = true,
            EventKind::TextDelta {
                part_id,
                stream,
                delta,
            } => {
                if let Some(text) = self.text_item(part_id, *stream) {
                    if text.len() < MAX_PART_CHARS {
                        text.push_str(delta);
                    }
                }
            }
            EventKind::TextPart {
                part_id,
                stream,
                text,
            } => {
                if let Some(t) = self.text_item(part_id, *stream) {
                    *t = cap_part(text);
                }
                if let Some(Item::Text { done, .. }) = self.items.iter_mut().find(
                    |i| matches!(i, Item::Text { part_id: p, stream: s, .. } if p == part_id && s == stream),
                ) {
                    *done = true;
                }
            }
            EventKind::ToolStarted {
                call_id,
                name,
                input,
            } => self.items.push(Item::Tool {
                call_id: call_id.clone(),
                name: name.clone(),
                input: input.clone(),
                error: false,
            }),
            EventKind::ToolFinished {
                call_id,
                name,
                output,
                is_error,
                ..
            } => {
                if let Some(Item::Tool { error, .. }) = self
                    .items
                    .iter_mut()
                    .find(|i| matches!(i, Item::Tool { call_id: c, .. } if c == call_id))
                {
                    *error = *is_error;
                }
                let tokens = output.chars().count() / CHARS_PER_TOKEN;
                if tokens >= LARGE_TOOL_OUTPUT_TOKENS {
                    self.items.push(Item::Notice {
                        key: format!("big-{call_id}"),
                        text: format!("⬦ {name} returned {}k tokens", tokens / 1000),
                    });
                }
            }
            EventKind::PermissionRequested {
                request_id,
                tool,
                title,
                patterns,
                ..
            } => self.items.push(Item::Permission {
                request_id: request_id.to_string(),
                tool: tool.clone(),
                title: title.clone(),
                patterns: patterns.clone(),
                resolved: None,
            }),
            EventKind::PermissionResolved {
                request_id,
                resolution,
            } => {
                for i in &mut self.items {
                    if let Item::Permission {
                        request_id: r,
                        resolved,
                        ..
                    } = i
                    {
                        if r == request_id.as_str() {
                            *resolved = Some(*resolution);
                        }
                    }
                }
            }
            EventKind::QuestionAsked {
                request_id,
                questions,
            } => self.items.push(Item::Question {
                request_id: request_id.to_string(),
                questions: questions.clone(),
                resolved: None,
            }),
            EventKind::QuestionResolved {
                request_id,
                answers,
            } => {
                for i in &mut self.items {
                    if let Item::Question {
                        request_id: r,
                        resolved,
                        ..
                    } = i
                    {
                        if r == request_id.as_str() {
                            *resolved = Some(answers.clone());
                        }
                    }
                }
            }
            EventKind::Usage {
                context_percent,
                model,
                ..
            } => {
                if let Some(p) = context_percent {
                    self.context_percent = Some(*p);
                    let step = (p / 10.0).floor().clamp(0.0, 10.0) as u32;
                    if step > *lane_context_step {
                        *lane_context_step = step;
                        if step >= 1 {
                            self.items.push(Item::Notice {
                                key: format!("ctx-{step}"),
                                text: format!("⬦ context usage {}%", step * 10),
                            });
                        }
                    }
                }
                if let Some(m) = model {
                    self.usage_model = Some(m.clone());
                }
            }
            EventKind::Status {
                message,
                retry: Some(r),
            } => {
                let due = self
                    .last_retry_notice_at
                    .is_none_or(|t| ev.at - t >= RETRY_NOTICE_SPACING_MS);
                if due {
                    self.last_retry_notice_at = Some(ev.at);
                    let wait = r
                        .next_in_ms
                        .map(|ms| format!(" - retrying in {}s", ms.div_ceil(1000)))
                        .unwrap_or_default();
                    self.items.push(Item::Notice {
                        key: format!("retry-{}", ev.seq),
                        text: render::truncate_chars(
                            &format!("⬦ {}{wait} (attempt #{})", message.trim(), r.attempt),
                            render::GENERATED_LIMIT,
                        ),
                    });
                }
            }
            EventKind::Status { retry: None, .. } | EventKind::FileChanged { .. } => {}
            EventKind::Transcribed { text, .. } => self.items.push(Item::Notice {
                key: TRANSCRIPT_NOTICE.to_owned(),
                text: render::truncate_chars(
                    &format!("📝 **Transcribed message:** {}", text.trim()),
                    render::GENERATED_LIMIT,
                ),
            }),
            EventKind::Cancelling { reason } => {
                if matches!(reason, CancelReason::Interrupted { .. }) {
                    self.interrupted_by_message = true;
                }
            }
            EventKind::Finished {
                outcome,
                error,
                reason,
                duration_ms,
                ..
            } => {
                if reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("interrupted by a new message"))
                {
                    self.interrupted_by_message = true;
                }
                self.finished = Some(Finish {
                    outcome: *outcome,
                    error: error.as_ref().map(|e| e.message.clone()),
                    reason: reason.clone(),
                    duration_ms: *duration_ms,
                    notify: true,
                    voice_retry: self.voice_pending
                        && error
                            .as_ref()
                            .is_some_and(|e| voice_retry::offers_retry(e.kind)),
                });
            }
        }
        true
    }

    /// Whether anything the user reads was rendered (the footer needs some output).
    fn has_visible_output(&self, verbosity: Verbosity) -> bool {
        self.items.iter().any(|i| match i {
            Item::Text {
                stream: TextStream::Assistant,
                text,
                ..
            } => !text.trim().is_empty(),
            Item::Tool { name, input, .. } => {
                render::tool_line(name, input).is_some_and(|l| verbosity.shows_tool(l.essential))
            }
            Item::Permission { .. } | Item::Question { .. } => true,
            _ => false,
        })
    }

    fn awaiting_answer(&self) -> bool {
        self.items.iter().any(|i| match i {
            Item::Permission { resolved, .. } => resolved.is_none(),
            Item::Question { resolved, .. } => resolved.is_none(),
            _ => false,
        })
    }

    /// The slots this view shows now (in display order) and the keys of surplus chunks.
    fn slots(&mut self, ctx: &RenderCtx<'_>) -> (Vec<Slot>, Vec<String>) {
        let job = self.job_id.clone();
        let mut out: Vec<Slot> = Vec::new();
        let mut deletes: Vec<String> = Vec::new();
        let reply_to = self.address.message_id();
        if let Some(echo) = &self.echo {
            out.push(Slot::new(format!("{job}/prompt"), echo.clone()));
        }
        if self.address.mode.as_deref() == Some("queue") {
            if let Some(pos) = self.queued_position.filter(|p| *p > 0) {
                let mut s = Slot::new(
                    format!("{job}/queued"),
                    format!(
                        "Queued at position {pos}. Delete your message to remove it from the queue."
                    ),
                );
                s.reply_to = reply_to;
                out.push(s);
                if self.started {
                    let who = self.address.author.clone().unwrap_or_else(|| "user".into());
                    out.push(Slot::new(
                        format!("{job}/announce"),
                        format!(
                            "» **{}:** {}",
                            who.replace('*', ""),
                            render::truncate_chars(self.prompt_preview.trim(), ANNOUNCE_CHARS)
                        ),
                    ));
                }
            }
        }
        let mut group: Option<(String, Vec<String>)> = None;
        let flush = |group: &mut Option<(String, Vec<String>)>, out: &mut Vec<Slot>| {
            if let Some((key, lines)) = group.take() {
                out.push(Slot::new(key, lines.join("\n")));
            }
        };
        let push_line = |group: &mut Option<(String, Vec<String>)>,
                         out: &mut Vec<Slot>,
                         key: String,
                         line: String| {
            let fits = group.as_ref().is_some_and(|(_, lines)| {
                lines.iter().map(|l| l.chars().count() + 1).sum::<usize>() + line.chars().count()
                    <= render::TARGET_LIMIT
            });
            if !fits {
                if let Some((k, lines)) = group.take() {
                    out.push(Slot::new(k, lines.join("\n")));
                }
                *group = Some((key, Vec::new()));
            }
            if let Some((_, lines)) = group.as_mut() {
                lines.push(render::truncate_chars(&line, render::TARGET_LIMIT));
            }
        };
        let mut chunk_counts: HashMap<String, usize> = HashMap::new();
        for item in &self.items {
            match item {
                Item::Text {
                    part_id,
                    stream: TextStream::Assistant,
                    text,
                    done,
                } => {
                    if text.trim().is_empty() {
                        continue;
                    }
                    flush(&mut group, &mut out);
                    let chunks = render::text_chunks(text, !done);
                    let n = chunks.len();
                    for (i, c) in chunks.into_iter().enumerate() {
                        let mut s = Slot::new(format!("{job}/t/{part_id}/{i}"), c);
                        s.streaming = !done && i + 1 == n;
                        out.push(s);
                    }
                    chunk_counts.insert(part_id.clone(), n);
                }
                Item::Text {
                    part_id,
                    stream: TextStream::Reasoning,
                    ..
                } => {
                    if ctx.verbosity.shows_reasoning() {
                        push_line(
                            &mut group,
                            &mut out,
                            format!("{job}/g/r-{part_id}"),
                            render::THINKING_LINE.to_owned(),
                        );
                    }
                }
                Item::Tool {
                    call_id,
                    name,
                    input,
                    error,
                } => {
                    let Some(line) = render::tool_line(name, input) else {
                        continue;
                    };
                    let shown = if *error {
                        ctx.verbosity != Verbosity::TextOnly
                    } else {
                        ctx.verbosity.shows_tool(line.essential)
                    };
                    if shown {
                        let text = if *error {
                            render::tool_error_line(name)
                        } else {
                            line.text
                        };
                        push_line(&mut group, &mut out, format!("{job}/g/{call_id}"), text);
                    }
                }
                Item::Permission {
                    request_id,
                    tool,
                    title,
                    patterns,
                    resolved,
                } => {
                    flush(&mut group, &mut out);
                    let answer = ctx.store.answer(request_id).ok().flatten();
                    let outcome =
                        permission_outcome(*resolved, answer.as_ref(), ctx.timeout_minutes);
                    let mut s = Slot::new(
                        keys::permission(&job, request_id),
                        render::permission_text(tool, title.as_deref(), patterns, outcome.as_ref()),
                    );
                    s.notify = true;
                    s.components = outcome.is_none().then(|| permission_buttons(request_id));
                    out.push(s);
                }
                Item::Question {
                    request_id,
                    questions,
                    resolved,
                } => {
                    flush(&mut group, &mut out);
                    let answer = ctx.store.answer(request_id).ok().flatten();
                    let final_answers: Option<Option<Vec<Vec<String>>>> = resolved
                        .clone()
                        .or_else(|| answer.as_ref().map(|a| a.answers.clone()));
                    let progress = ctx.store.question_progress(request_id).unwrap_or_default();
                    for (i, q) in questions.iter().enumerate() {
                        let chosen: Option<Vec<String>> = match &final_answers {
                            Some(Some(all)) => Some(all.get(i).cloned().unwrap_or_default()),
                            Some(None) => Some(Vec::new()),
                            None => progress.answers.get(i).cloned().flatten(),
                        };
                        let mut s = Slot::new(
                            keys::question(&job, request_id, i),
                            render::question_text(
                                q.header.as_deref(),
                                &q.question,
                                chosen.as_deref(),
                            ),
                        );
                        s.notify = true;
                        s.components = chosen.is_none().then(|| question_select(request_id, i, q));
                        out.push(s);
                    }
                }
                Item::Notice { key, text } => {
                    let always = key.starts_with("retry-") || key == TRANSCRIPT_NOTICE;
                    if ctx.verbosity != Verbosity::TextOnly || always {
                        flush(&mut group, &mut out);
                        out.push(Slot::new(format!("{job}/n/{key}"), text.clone()));
                    }
                }
            }
        }
        flush(&mut group, &mut out);
        for (part, n) in &chunk_counts {
            let before = self.chunks.get(part).copied().unwrap_or(0);
            for i in *n..before {
                deletes.push(format!("{job}/t/{part}/{i}"));
            }
        }
        self.chunks = chunk_counts;
        if let Some(f) = &self.finished {
            match f.outcome {
                Outcome::Failed | Outcome::TimedOut => {
                    let msg = f
                        .error
                        .clone()
                        .or_else(|| f.reason.clone())
                        .unwrap_or_else(|| "the run failed".into());
                    let mut s =
                        Slot::new(format!("{job}/e"), render::error_text(&self.runner, &msg));
                    if f.voice_retry {
                        s.content = voice_retry::failure_text(&msg);
                        s.components = Some(voice_retry::button(&job));
                    }
                    s.notify = true;
                    out.push(s);
                }
                Outcome::Succeeded if self.has_visible_output(ctx.verbosity) => {
                    let info = render::FooterInfo {
                        folder: self
                            .workspace
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        branch: git_branch(&self.workspace),
                        duration_ms: f.duration_ms,
                        context_percent: self.context_percent,
                        model: self.usage_model.clone().or_else(|| self.model.clone()),
                        agent: self.agent.clone(),
                    };
                    let mut s = Slot::new(format!("{job}/f"), render::footer(&info));
                    s.notify = f.notify;
                    out.push(s);
                }
                Outcome::Interrupted if !self.interrupted_by_message => {
                    let why = f
                        .reason
                        .clone()
                        .unwrap_or_else(|| "it was interrupted".into());
                    out.push(Slot::new(format!("{job}/x"), format!("⬦ Stopped: {why}")));
                }
                _ => {}
            }
        }
        (out, deletes)
    }
}

fn cap_part(text: &str) -> String {
    if text.len() <= MAX_PART_CHARS {
        return text.to_owned();
    }
    let mut cut = MAX_PART_CHARS;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n\n*(reply cut: {} more characters)*",
        &text[..cut],
        text.len() - cut
    )
}

/// The checked-out branch, read from `.git/HEAD` (no git process on the render path).
fn git_branch(dir: &std::path::Path) -> Option<String> {
    let git = dir.join(".git");
    let head_path = if git.is_file() {
        // A worktree: `.git` is a file pointing at the real git dir.
        let pointer = std::fs::read_to_string(&git).ok()?;
        let gitdir = PathBuf::from(pointer.trim().strip_prefix("gitdir:")?.trim());
        // git writes an absolute path, but a relative one is valid too (relative to `dir`).
        dir.join(gitdir).join("HEAD")
    } else {
        git.join("HEAD")
    };
    let head = std::fs::read_to_string(head_path).ok()?;
    let head = head.trim();
    match head.strip_prefix("ref: refs/heads/") {
        Some(b) => Some(b.to_owned()),
        None => Some(head.chars().take(8).collect()),
    }
}

/// What rendering needs besides the view.
struct RenderCtx<'a> {
    verbosity: Verbosity,
    store: &'a DiscordStore,
    timeout_minutes: u64,
}

/// Per-channel verbosity lookup (the project channel's setting, else the default).
pub trait VerbositySource: Send + Sync {
    fn verbosity(&self, project_channel: u64) -> Verbosity;
}

/// The running sink.
pub struct Sink {
    queue: JobQueue,
    store: DiscordStore,
    outbound: Outbound,
    settings: std::sync::Arc<dyn VerbositySource>,
    timeout_minutes: u64,
    views: HashMap<String, JobView>,
    foreign: HashSet<String>,
    foreign_order: std::collections::VecDeque<String>,
    lane_context: HashMap<String, u32>,
    finishing: tokio::task::JoinSet<(String, bool)>,
    /// Threads being opened for jobs from outside Discord, one task per lane.
    opening: tokio::task::JoinSet<(OpenThread, Result<u64, OpenError>)>,
    opening_lanes: HashSet<String>,
    cancel: CancellationToken,
    progress: watch::Sender<SinkProgress>,
}

/// How far rendering got, so shutdown can wait for what is already on the bus to be in Discord.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkProgress {
    /// The bus cursor of the last event handled.
    pub cursor: u64,
    /// Finished jobs whose last messages are not confirmed in Discord yet, plus threads being
    /// opened.
    pub pending: usize,
}

impl Sink {
    pub fn new(
        queue: JobQueue,
        store: DiscordStore,
        outbound: Outbound,
        settings: std::sync::Arc<dyn VerbositySource>,
        timeout_minutes: u64,
        progress: watch::Sender<SinkProgress>,
    ) -> Self {
        Self {
            progress,
            queue,
            store,
            outbound,
            settings,
            timeout_minutes,
            views: HashMap::new(),
            foreign: HashSet::new(),
            foreign_order: std::collections::VecDeque::new(),
            lane_context: HashMap::new(),
            finishing: tokio::task::JoinSet::new(),
            opening: tokio::task::JoinSet::new(),
            opening_lanes: HashSet::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// Re-renders jobs left unfinished by the last run, then follows the bus until cancelled.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.cancel = cancel.clone();
        match self.store.rendering_jobs() {
            Ok(jobs) => {
                for job in jobs {
                    if let Err(e) = self.rebuild(&JobId::new(job.clone())).await {
                        tracing::warn!(job_id = %job, error = %e, "Could not re-render a job; dropping it.");
                        let _ = self.store.set_rendering(&job, false, clock::now_ms());
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "Could not list jobs to re-render."),
        }
        let start = self.store.cursor().unwrap_or(0);
        let mut sub = self.queue.bus().subscribe(start);
        let mut saved = start;
        let mut save_tick = tokio::time::interval(CURSOR_SAVE_INTERVAL);
        save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                ev = sub.next() => match ev {
                    Some(ev) => self.on_event(&ev.event).await,
                    None => break,
                },
                Some(opened) = self.opening.join_next(), if !self.opening.is_empty() => {
                    if let Ok((spec, result)) = opened {
                        self.on_opened(spec, result).await;
                    }
                }
                Some(done) = self.finishing.join_next(), if !self.finishing.is_empty() => {
                    // Not delivered (shutdown): the job stays listed and is re-rendered at start.
                    if let Ok((job, true)) = done {
                        self.finished_rendering(&job);
                    }
                }
                _ = save_tick.tick() => {
                    let c = sub.cursor();
                    if c != saved {
                        if let Err(e) = self.store.set_cursor(c) {
                            tracing::warn!(error = %e, "Could not save the event cursor.");
                        }
                        saved = c;
                    }
                }
            }
            let now = SinkProgress {
                cursor: sub.cursor(),
                pending: self.finishing.len() + self.opening.len(),
            };
            self.progress.send_if_modified(|p| {
                let changed = *p != now;
                *p = now;
                changed
            });
        }
        let _ = self.store.set_cursor(sub.cursor());
    }

    fn remember_foreign(&mut self, job: &str) {
        if self.foreign.insert(job.to_owned()) {
            self.foreign_order.push_back(job.to_owned());
            if self.foreign_order.len() > FOREIGN_JOBS_REMEMBERED {
                if let Some(old) = self.foreign_order.pop_front() {
                    self.foreign.remove(&old);
                }
            }
        }
    }

    async fn on_event(&mut self, ev: &JobEvent) {
        let job = ev.job_id.as_str();
        if self.foreign.contains(job) {
            return;
        }
        if !self.views.contains_key(job) {
            match self.rebuild(&ev.job_id).await {
                Ok(true) => {}
                Ok(false) => self.remember_foreign(job),
                Err(e) => {
                    tracing::warn!(job_id = %job, error = %e, "Could not read a job to render it.")
                }
            }
            return;
        }
        let Some(view) = self.views.get_mut(job) else {
            return;
        };
        let step = self.lane_context.entry(view.lane.clone()).or_insert(0);
        if view.apply(ev, step) {
            if ev.kind.is_terminal() {
                self.finalize_notify(job);
            }
            self.render(job).await;
        }
    }

    /// Builds a view from the job's stored events; `Ok(false)` if the job is not Discord's.
    async fn rebuild(&mut self, id: &JobId) -> Result<bool, crate::core::QueueError> {
        let Some(record) = self.queue.get(id)? else {
            return Ok(false);
        };
        let (address, mirrored) = match Address::of(&record) {
            Some(a) => (a, None),
            None => match external::mirror_address(&self.store, &record) {
                Some((a, flags)) => (a, Some(flags)),
                None => return Ok(false),
            },
        };
        let mut view = JobView::new(&record, address);
        if let Some(flags) = mirrored {
            view.flags = flags;
        }
        if view.flags.create_thread && view.thread == 0 {
            self.place(&mut view, &record);
        }
        let events = self.queue.bus().job_events(id, 0)?;
        let step = self.lane_context.entry(view.lane.clone()).or_insert(0);
        let mut terminal = false;
        for ev in &events {
            view.apply(ev, step);
            terminal |= ev.kind.is_terminal();
        }
        let job = id.to_string();
        if !terminal {
            if let Err(e) = self.store.set_rendering(&job, true, clock::now_ms()) {
                tracing::warn!(job_id = %job, error = %e, "Could not mark a job as rendering.");
            }
        }
        self.views.insert(job.clone(), view);
        if terminal {
            // Rebuilt after the fact: keep the entry until its slots are in Discord.
            let _ = self.store.set_rendering(&job, true, clock::now_ms());
            self.finalize_notify(&job);
        }
        self.render(&job).await;
        Ok(true)
    }

    /// A footer notifies unless the lane's next job starts right away.
    fn finalize_notify(&mut self, job: &str) {
        let Some(view) = self.views.get_mut(job) else {
            return;
        };
        let queued = self
            .queue
            .queued_in_lane(&crate::core::LaneId::new(view.lane.clone()))
            .map(|q| !q.is_empty())
            .unwrap_or(false);
        if let Some(f) = view.finished.as_mut() {
            f.notify = !queued;
        }
    }

    async fn render(&mut self, job: &str) {
        let Some(view) = self.views.get_mut(job) else {
            return;
        };
        if view.awaiting_thread {
            // Rendered in full once the thread exists.
            return;
        }
        let verbosity = self.settings.verbosity(view.project_channel);
        let ctx = RenderCtx {
            verbosity,
            store: &self.store,
            timeout_minutes: self.timeout_minutes,
        };
        let (slots, deletes) = view.slots(&ctx);
        let channel = view.thread;
        let mut ops: Vec<ChannelOp> = Vec::new();
        for s in slots {
            let h = s.hash() ^ u64::from(s.streaming);
            if view.sent.get(&s.key) != Some(&h) {
                view.sent.insert(s.key.clone(), h);
                ops.push(ChannelOp::Upsert(s));
            }
        }
        for d in deletes {
            view.sent.remove(&d);
            ops.push(ChannelOp::Delete(d));
        }
        let typing = view.started && view.finished.is_none() && !view.awaiting_answer();
        if typing != view.typing {
            view.typing = typing;
            ops.push(ChannelOp::Typing(typing));
        }
        let finished = view.finished.is_some();
        if channel == 0 {
            // An address without a thread: nothing can be shown.
            ops.clear();
        }
        for op in ops {
            self.outbound.send(channel, op).await;
        }
        if finished && channel != 0 {
            let outbound = self.outbound.clone();
            let prefix = keys::job_prefix(job);
            let job = job.to_owned();
            self.finishing.spawn(async move {
                let delivered = outbound.flushed(channel, prefix).await;
                (job, delivered)
            });
        } else if channel == 0 {
            self.finished_rendering(job);
        }
    }

    /// Puts a job that asks for a new thread into its lane's thread: the one already opened for
    /// the lane, or one this sink opens now (the job waits for it).
    fn place(&mut self, view: &mut JobView, record: &JobRecord) {
        match self.store.lane_thread(&view.lane) {
            Ok(Some(t)) => {
                view.thread = t.thread_id;
                view.address.thread = t.thread_id.to_string();
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(lane = %view.lane, error = %e, "Could not look up a lane's thread.")
            }
        }
        view.awaiting_thread = true;
        let spec = OpenThread {
            lane: view.lane.clone(),
            guild: view.address.guild.parse().unwrap_or(0),
            channel: view.project_channel,
            title: view
                .flags
                .title
                .clone()
                .unwrap_or_else(|| external::thread_name(&record.job.prompt)),
            author: view
                .address
                .author
                .clone()
                .unwrap_or_else(|| external::CLI_AUTHOR.to_owned()),
            prompt: record.job.prompt.clone(),
        };
        self.open(spec, Duration::ZERO);
    }

    fn open(&mut self, spec: OpenThread, after: Duration) {
        if !self.opening_lanes.insert(spec.lane.clone()) {
            return;
        }
        let rest = self.outbound.rest().clone();
        let store = self.store.clone();
        let cancel = self.cancel.clone();
        self.opening.spawn(async move {
            if !after.is_zero() {
                tokio::select! {
                    _ = cancel.cancelled() => return (spec, Err(OpenError::Stopped)),
                    _ = tokio::time::sleep(after) => {}
                }
            }
            let result = external::open_thread(&rest, &store, &spec, &cancel).await;
            (spec, result)
        });
    }

    async fn on_opened(&mut self, spec: OpenThread, result: Result<u64, OpenError>) {
        self.opening_lanes.remove(&spec.lane);
        let waiting: Vec<String> = self
            .views
            .iter()
            .filter(|(_, v)| v.awaiting_thread && v.lane == spec.lane)
            .map(|(k, _)| k.clone())
            .collect();
        let thread = match result {
            Ok(t) => t,
            Err(OpenError::Stopped) => return,
            Err(e) if e.is_transient() => {
                tracing::warn!(lane = %spec.lane, error = %e, "Could not open a thread yet; trying again.");
                self.open(spec, REOPEN_AFTER);
                return;
            }
            Err(e) => {
                // Discord refused (a deleted channel, missing permissions): the session runs,
                // but cannot be shown.
                tracing::error!(lane = %spec.lane, channel = spec.channel, error = %e, "Could not open a thread for a session; its output is not shown in Discord.");
                0
            }
        };
        for job in waiting {
            if let Some(v) = self.views.get_mut(&job) {
                v.awaiting_thread = false;
                v.thread = thread;
                v.address.thread = thread.to_string();
            }
            self.render(&job).await;
        }
    }

    fn finished_rendering(&mut self, job: &str) {
        let Some(view) = self.views.get(job) else {
            return;
        };
        if view.finished.is_none() {
            return;
        }
        self.views.remove(job);
        if let Err(e) = self.store.set_rendering(job, false, clock::now_ms()) {
            tracing::warn!(job_id = %job, error = %e, "Could not mark a job as rendered.");
        }
    }
}

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
