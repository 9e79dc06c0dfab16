//! Which reply a request gets, decided from the request alone: the marker `[[fake:<name>]]` in the
//! last user text that has one picks the scenario, and the tool results after that text give the
//! step. No state is kept between requests, so retries and resumed sessions replay the same way.

use std::time::Duration;

use serde_json::{json, Value};

const MARKER_OPEN: &str = "[[fake:";
const MARKER_CLOSE: &str = "]]";

/// The whole reply of the `text` scenario.
pub const TEXT_REPLY: &str = "FAKE: hello";
/// The reply to requests without a marker or without tools (titles, summaries).
pub const SIDE_CALL_REPLY: &str = "FAKE: side reply";
/// The shell command of the `tool` and `permission` scenarios.
pub const TOOL_COMMAND: &str = "echo hi > proof.txt && echo tool-ran-ok";
/// What the `write` scenario puts in the file named by its marker.
pub const WRITE_CONTENT: &str = "written by the fake LLM\n";
/// The question the `question` scenario asks, with its two option labels.
pub const QUESTION: &str = "Pick one";
pub const QUESTION_OPTIONS: [&str; 2] = ["Alpha", "Beta"];

/// `text` arrives in this many pieces, so clients must join deltas.
const TEXT_CHUNKS: usize = 5;
/// `slow` sends this many chunks, long enough to abort or interrupt in the middle.
pub const SLOW_CHUNKS: usize = 20;
pub const DEFAULT_SLOW_INTERVAL: Duration = Duration::from_millis(500);
/// `hang_mid` and `drop` send this many text chunks before stalling or closing.
pub const PARTIAL_CHUNKS: usize = 2;
/// `long` is streamed in pieces of this many bytes (ASCII only), so a fence is split mid-line.
const LONG_CHUNK_BYTES: usize = 120;
/// Tool arguments are streamed in this many fragments, so clients must join them.
const ARGUMENT_FRAGMENTS: usize = 3;

/// Shell tools, most specific first: OpenCode `bash`, Claude `Bash`, Codex `exec_command`/`shell`.
const SHELL_TOOLS: [&str; 4] = ["bash", "Bash", "exec_command", "shell"];
/// File-writing tools: OpenCode `write`, Claude `Write`, Codex `apply_patch`.
const WRITE_TOOLS: [&str; 3] = ["write", "Write", "apply_patch"];
/// Question tools: OpenCode `question`, Claude `AskUserQuestion`, Codex `request_user_input`.
const QUESTION_TOOLS: [&str; 3] = ["question", "AskUserQuestion", "request_user_input"];

/// A behaviour picked by a `[[fake:<name>]]` marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// [`TEXT_REPLY`] in five chunks.
    Text,
    /// Step 0: shell call running [`TOOL_COMMAND`]; then `FINAL: tool output was <output>`.
    Tool,
    /// Same replies as `Tool`; the runner is the one configured to ask.
    Permission,
    /// Step 0: the offered question tool asks [`QUESTION`]; then `FINAL: answer was <output>`.
    Question,
    /// [`SLOW_CHUNKS`] text chunks, `interval` apart (`slow` or `slow:<ms>`).
    Slow { interval: Duration },
    /// The HTTP status with an error body in the provider's format (`error:<status>`).
    Error { status: u16 },
    /// Accepts the request and never sends headers.
    Hang,
    /// Sends headers and [`PARTIAL_CHUNKS`] text chunks, then stalls.
    HangMid,
    /// Sends [`PARTIAL_CHUNKS`] text chunks, then closes the connection mid-stream.
    Drop,
    /// [`long_reply`] in many chunks.
    Long,
    /// Step 0: a write of [`WRITE_CONTENT`] to `file` (`write:<file>`); then `FINAL: wrote <file>`.
    Write { file: String },
    /// A marker this fake does not know; the reply says so.
    Unknown(String),
}

impl Scenario {
    /// Parses the text between `[[fake:` and `]]`.
    pub fn parse(spec: &str) -> Self {
        let (name, arg) = match spec.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (spec, None),
        };
        let parsed = match (name, arg) {
            ("text", None) => Some(Self::Text),
            ("tool", None) => Some(Self::Tool),
            ("permission", None) => Some(Self::Permission),
            ("question", None) => Some(Self::Question),
            ("slow", None) => Some(Self::Slow {
                interval: DEFAULT_SLOW_INTERVAL,
            }),
            ("slow", Some(ms)) => ms.parse().ok().map(|ms| Self::Slow {
                interval: Duration::from_millis(ms),
            }),
            ("error", Some(status)) => status
                .parse()
                .ok()
                .filter(|status| (400..=599).contains(status))
                .map(|status| Self::Error { status }),
            ("hang", None) => Some(Self::Hang),
            ("hang_mid", None) => Some(Self::HangMid),
            ("drop", None) => Some(Self::Drop),
            ("long", None) => Some(Self::Long),
            ("write", Some(file)) if !file.is_empty() => Some(Self::Write {
                file: file.to_string(),
            }),
            _ => None,
        };
        parsed.unwrap_or_else(|| Self::Unknown(spec.to_string()))
    }
}

/// The last marker in `text`, parsed.
pub fn find_marker(text: &str) -> Option<Scenario> {
    let start = text.rfind(MARKER_OPEN)? + MARKER_OPEN.len();
    let len = text[start..].find(MARKER_CLOSE)?;
    Some(Scenario::parse(&text[start..start + len]))
}

/// One conversation entry that matters for selection; everything else is dropped by the wire
/// modules when they build a [`Transcript`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    UserText(String),
    ToolResult(String),
}

/// A request reduced to what selection needs: user texts and tool results in order, and the names
/// of the offered tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    pub items: Vec<Item>,
    pub tools: Vec<String>,
}

/// The scenario and step of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// `None` when no user text carries a marker.
    pub scenario: Option<Scenario>,
    /// Tool results after the marked user text.
    pub step: usize,
    /// The last of those tool results.
    pub last_tool_output: Option<String>,
}

impl Transcript {
    /// The scenario of the last marked user text, and the tool results after it.
    pub fn select(&self) -> Selection {
        let marked = self
            .items
            .iter()
            .enumerate()
            .rev()
            .find_map(|(at, item)| match item {
                Item::UserText(text) => find_marker(text).map(|scenario| (at, scenario)),
                Item::ToolResult(_) => None,
            });
        let Some((at, scenario)) = marked else {
            return Selection {
                scenario: None,
                step: 0,
                last_tool_output: None,
            };
        };
        let outputs: Vec<&String> = self.items[at + 1..]
            .iter()
            .filter_map(|item| match item {
                Item::ToolResult(output) => Some(output),
                Item::UserText(_) => None,
            })
            .collect();
        Selection {
            scenario: Some(scenario),
            step: outputs.len(),
            last_tool_output: outputs.last().map(|output| output.to_string()),
        }
    }
}

/// What the fake does with a request, before it is encoded for one wire format.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A 200 answer, streamed or not.
    Output(Output),
    /// An HTTP error with the provider's error body.
    Error { status: u16, message: String },
    /// No answer until the server stops.
    Hang,
}

/// The assistant turn of a 200 answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Text(TextReply),
    ToolCall(ToolCall),
}

/// A text answer, in the chunks it is streamed in.
#[derive(Debug, Clone, PartialEq)]
pub struct TextReply {
    pub chunks: Vec<String>,
    /// Pause before every chunk but the first.
    pub interval: Duration,
    pub ending: Ending,
}

impl TextReply {
    /// The whole text.
    pub fn text(&self) -> String {
        self.chunks.concat()
    }
}

/// How a streamed reply ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Finish reason, usage and the closing events.
    Complete,
    /// Nothing more is sent until the server stops.
    Stall,
    /// The connection is closed without the closing events.
    Drop,
}

/// A call of one of the offered tools.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// A JSON object, as text.
    pub arguments: String,
}

impl ToolCall {
    fn new(name: &str, arguments: Value) -> Self {
        Self {
            name: name.to_string(),
            arguments: arguments.to_string(),
        }
    }

    /// `arguments` in a few pieces, for streaming.
    pub fn argument_fragments(&self) -> Vec<String> {
        split_evenly(&self.arguments, ARGUMENT_FRAGMENTS)
    }
}

/// Decides the reply to a request with this selection and these offered tools.
pub fn plan(selection: &Selection, tools: &[String]) -> Reply {
    let scenario = match &selection.scenario {
        Some(scenario) if !tools.is_empty() => scenario,
        _ => return Reply::Output(text_reply(SIDE_CALL_REPLY, 1)),
    };
    let tool_output = selection
        .last_tool_output
        .as_deref()
        .map(summarize_tool_output)
        .unwrap_or_default();
    let first_step = selection.step == 0;
    let output = match scenario {
        Scenario::Text => text_reply(TEXT_REPLY, TEXT_CHUNKS),
        Scenario::Tool | Scenario::Permission if first_step => shell_call(tools, TOOL_COMMAND),
        Scenario::Tool | Scenario::Permission => text_reply(
            &format!("FINAL: tool output was {tool_output}"),
            TEXT_CHUNKS,
        ),
        Scenario::Question if first_step => question_call(tools),
        Scenario::Question => text_reply(&format!("FINAL: answer was {tool_output}"), TEXT_CHUNKS),
        Scenario::Write { file } if first_step => write_call(tools, file),
        Scenario::Write { file } => text_reply(&format!("FINAL: wrote {file}"), TEXT_CHUNKS),
        Scenario::Slow { interval } => Output::Text(TextReply {
            chunks: (0..SLOW_CHUNKS).map(|n| format!("slow-{n:02} ")).collect(),
            interval: *interval,
            ending: Ending::Complete,
        }),
        Scenario::Error { status } => {
            return Reply::Error {
                status: *status,
                message: format!("fake LLM error scenario: HTTP {status}"),
            }
        }
        Scenario::Hang => return Reply::Hang,
        Scenario::HangMid => partial_text(Ending::Stall),
        Scenario::Drop => partial_text(Ending::Drop),
        Scenario::Long => {
            let long = long_reply();
            let chunks = long
                .as_bytes()
                .chunks(LONG_CHUNK_BYTES)
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                .collect();
            Output::Text(TextReply {
                chunks,
                interval: Duration::ZERO,
                ending: Ending::Complete,
            })
        }
        Scenario::Unknown(spec) => {
            text_reply(&format!("FAKE: unknown scenario `{spec}`"), TEXT_CHUNKS)
        }
    };
    Reply::Output(output)
}

fn text_reply(text: &str, chunks: usize) -> Output {
    Output::Text(TextReply {
        chunks: split_evenly(text, chunks),
        interval: Duration::ZERO,
        ending: Ending::Complete,
    })
}

fn partial_text(ending: Ending) -> Output {
    let mut chunks = split_evenly(TEXT_REPLY, TEXT_CHUNKS);
    chunks.truncate(PARTIAL_CHUNKS);
    Output::Text(TextReply {
        chunks,
        interval: Duration::ZERO,
        ending,
    })
}

fn offered<'a>(tools: &[String], wanted: &[&'a str]) -> Option<&'a str> {
    wanted
        .iter()
        .copied()
        .find(|name| tools.iter().any(|tool| tool == name))
}

fn no_tool(kind: &str, wanted: &[&str], tools: &[String]) -> Output {
    text_reply(
        &format!("FAKE: no {kind} tool offered (wanted one of {wanted:?}, got {tools:?})"),
        1,
    )
}

fn shell_call(tools: &[String], command: &str) -> Output {
    match offered(tools, &SHELL_TOOLS) {
        Some(name) => Output::ToolCall(ToolCall::new(name, shell_arguments(name, command))),
        None => no_tool("shell", &SHELL_TOOLS, tools),
    }
}

fn shell_arguments(name: &str, command: &str) -> Value {
    match name {
        "exec_command" => json!({ "cmd": command }),
        "shell" => json!({ "command": ["bash", "-lc", command] }),
        _ => json!({ "command": command, "description": "Run the fake LLM's command" }),
    }
}

fn write_call(tools: &[String], file: &str) -> Output {
    let Some(name) = offered(tools, &WRITE_TOOLS) else {
        let command = format!("printf '%s\\n' '{}' > '{file}'", WRITE_CONTENT.trim_end());
        return shell_call(tools, &command);
    };
    let arguments = match name {
        "write" => json!({ "filePath": file, "content": WRITE_CONTENT }),
        "Write" => json!({ "file_path": file, "content": WRITE_CONTENT }),
        _ => {
            let added: String = WRITE_CONTENT.lines().map(|l| format!("+{l}\n")).collect();
            let patch = format!("*** Begin Patch\n*** Add File: {file}\n{added}*** End Patch\n");
            json!({ "input": patch })
        }
    };
    Output::ToolCall(ToolCall::new(name, arguments))
}

fn question_call(tools: &[String]) -> Output {
    let Some(name) = offered(tools, &QUESTION_TOOLS) else {
        return no_tool("question", &QUESTION_TOOLS, tools);
    };
    let options: Vec<Value> = QUESTION_OPTIONS
        .iter()
        .map(|label| json!({ "label": label, "description": format!("Option {label}") }))
        .collect();
    let question = match name {
        "question" => json!({
            "question": QUESTION, "header": "Choice", "options": options, "multiple": false,
        }),
        "AskUserQuestion" => json!({
            "question": QUESTION, "header": "Choice", "options": options, "multiSelect": false,
        }),
        _ => {
            json!({ "id": "choice", "header": "Choice", "question": QUESTION, "options": options })
        }
    };
    Output::ToolCall(ToolCall::new(name, json!({ "questions": [question] })))
}

/// The useful part of a tool result: Codex wraps command output in a header ending `Output:`.
fn summarize_tool_output(output: &str) -> String {
    let body = output
        .rsplit_once("Output:\n")
        .map_or(output, |(_, body)| body);
    body.trim().to_string()
}

/// Splits `text` into `n` pieces of near-equal length on char boundaries (fewer if it is short).
fn split_evenly(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = n.clamp(1, chars.len().max(1));
    let (base, extra) = (chars.len() / n, chars.len() % n);
    let mut pieces = Vec::with_capacity(n);
    let mut at = 0;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        pieces.push(chars[at..at + len].iter().collect());
        at += len;
    }
    pieces
}

/// The reply of the `long` scenario: over 5,000 chars, several paragraphs, and a fenced code block
/// that straddles the 2,000-char mark (Discord's message limit).
pub fn long_reply() -> String {
    let mut out = String::from("# A long answer from the fake LLM\n\n");
    let mut paragraph = 1;
    let push_paragraphs = |out: &mut String, paragraph: &mut usize, until: usize| {
        while out.len() < until {
            out.push_str(&format!(
                "Paragraph {n}. This reply is long on purpose, so that whoever shows it has to \
                 split it into several messages. Each paragraph is numbered, and the words repeat \
                 in the same order every time, which keeps the text deterministic. Splitting \
                 should happen between paragraphs, never inside a word; this one ends here.\n\n",
                n = *paragraph
            ));
            *paragraph += 1;
        }
    };
    push_paragraphs(&mut out, &mut paragraph, 1_700);
    out.push_str("Here is the code:\n\n```rust\nfn main() {\n");
    for line in 0..24 {
        out.push_str(&format!(
            "    println!(\"line {line:02} of the fenced block\"); // keep the fence intact\n"
        ));
    }
    out.push_str("}\n```\n\n");
    push_paragraphs(&mut out, &mut paragraph, 5_300);
    out.push_str("END OF LONG REPLY");
    out
}
