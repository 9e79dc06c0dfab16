//! Pure rendering of agent output for Discord: the markdown-aware splitter, text bullets, tool
//! lines per verbosity, the completion footer, error, permission, question and shell texts.
//! Imports nothing from kimaki (only std, serde_json and tracing): every function is a plain
//! string transformation, unit- and snapshot-tested in `render_tests.rs`.

pub mod split;
pub mod tools;

pub use split::{close_open_fence, prepare_markdown, split_message, DISCORD_LIMIT, TARGET_LIMIT};
pub use tools::{tool_error_line, tool_line, ToolLine};

/// Generated text (errors, shell output, notices) keeps this margin under the 2000 limit.
pub const GENERATED_LIMIT: usize = 1900;

/// An error message shown in a thread is cut to this many characters.
const ERROR_CHARS: usize = 400;

/// Footer fields (folder, branch, agent) are cut to this many characters.
const FOOTER_FIELD_CHARS: usize = 30;

/// Model ids are longer (`provider/model-date`); still bounded.
const FOOTER_MODEL_CHARS: usize = 60;

/// Agents every runner starts with; the footer names only a chosen one.
const DEFAULT_AGENTS: [&str; 2] = ["default", "build"];

/// A question's header and text limits (Discord: 2000 per message; leave room for the rest).
const QUESTION_HEADER_CHARS: usize = 200;
const QUESTION_TEXT_CHARS: usize = 1700;

/// How much of each channel's output appears in its threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Verbosity {
    /// Text, questions, permissions, errors and the footer.
    TextOnly,
    /// Text plus tools that change something (the default).
    #[default]
    TextAndEssentialTools,
    /// Everything, including read-only tools and reasoning.
    ToolsAndText,
}

impl Verbosity {
    pub const ALL: [Verbosity; 3] = [
        Verbosity::TextOnly,
        Verbosity::TextAndEssentialTools,
        Verbosity::ToolsAndText,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verbosity::TextOnly => "text-only",
            Verbosity::TextAndEssentialTools => "text-and-essential-tools",
            Verbosity::ToolsAndText => "tools-and-text",
        }
    }

    /// Accepts the dashed names and Kimaki's underscored ones.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether a tool line with this essentialness is shown.
    pub fn shows_tool(self, essential: bool) -> bool {
        match self {
            Verbosity::TextOnly => false,
            Verbosity::TextAndEssentialTools => essential,
            Verbosity::ToolsAndText => true,
        }
    }

    /// Whether reasoning shows as a `┣ thinking` line.
    pub fn shows_reasoning(self) -> bool {
        self == Verbosity::ToolsAndText
    }
}

/// Cuts `s` to at most `max` characters, ending with `…` when it was cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Whether text starts with block markdown that a bullet would break.
fn starts_with_markdown(text: &str) -> bool {
    let t = text.trim_start();
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    t.starts_with('#')
        || t.starts_with("```")
        || t.starts_with("~~~")
        || t.starts_with("- ")
        || t.starts_with("* ")
        || t.starts_with("> ")
        || t.starts_with('|')
        || (digits > 0 && t[digits..].starts_with(". "))
}

/// An assistant text part: `⬥ text`, or the text itself when it opens with block markdown.
pub fn format_text(text: &str) -> String {
    let text = prepare_markdown(text.trim_matches('\n'));
    if starts_with_markdown(&text) {
        text
    } else {
        format!("⬥ {text}")
    }
}

/// A reasoning part (only its presence is shown).
pub const THINKING_LINE: &str = "┣ thinking";

/// The chunks of a text part as posted: formatted, split, and (while streaming) with a fence
/// the partial text left open closed for display.
pub fn text_chunks(text: &str, streaming: bool) -> Vec<String> {
    let formatted = format_text(text);
    let mut chunks = split_message(&formatted, TARGET_LIMIT);
    if streaming {
        if let Some(last) = chunks.last_mut() {
            *last = close_open_fence(last);
        }
    }
    chunks
}

/// Human duration: `850ms`, `4.2s`, `1m 05s`, `2h 03m`.
pub fn format_duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// What the completion footer shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FooterInfo {
    /// The project folder's name.
    pub folder: String,
    pub branch: Option<String>,
    pub duration_ms: Option<u64>,
    /// Share of the context window in use, 0–100.
    pub context_percent: Option<f64>,
    pub model: Option<String>,
    /// Shown (bold) only when it is not the default agent.
    pub agent: Option<String>,
}

/// `*folder ⋅ branch ⋅ duration ⋅ ctx % ⋅ model ⋅ **agent***`; absent fields are left out.
pub fn footer(info: &FooterInfo) -> String {
    // Asterisks inside a field would end the italics early.
    let clean = |s: &str, max: usize| truncate_chars(&s.replace('*', ""), max);
    let mut parts: Vec<String> = vec![clean(&info.folder, FOOTER_FIELD_CHARS)];
    if let Some(b) = info.branch.as_deref().filter(|b| !b.is_empty()) {
        parts.push(clean(b, FOOTER_FIELD_CHARS));
    }
    if let Some(d) = info.duration_ms {
        parts.push(format_duration(d));
    }
    if let Some(p) = info.context_percent {
        parts.push(format!("{}%", p.round().clamp(0.0, 100.0) as u32));
    }
    if let Some(m) = info.model.as_deref().filter(|m| !m.is_empty()) {
        parts.push(clean(m, FOOTER_MODEL_CHARS));
    }
    if let Some(a) = info
        .agent
        .as_deref()
        .filter(|a| !a.is_empty() && !DEFAULT_AGENTS.contains(a))
    {
        parts.push(format!("**{}**", clean(a, FOOTER_FIELD_CHARS)));
    }
    format!("*{}*", parts.join(" ⋅ "))
}

/// `✗ <runner> session error: <message>`, cut to 400 characters.
pub fn error_text(runner: &str, message: &str) -> String {
    truncate_chars(
        &format!("✗ {runner} session error: {}", message.trim()),
        ERROR_CHARS,
    )
}

/// How a permission prompt ended, for its edited message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionOutcome {
    Once {
        by: Option<String>,
    },
    Always {
        by: Option<String>,
    },
    Denied {
        by: Option<String>,
    },
    /// Nobody answered in time.
    TimedOut {
        minutes: u64,
    },
    /// A new message in the thread replaced it.
    Dismissed,
}

/// The permission prompt; with an outcome, the text the message is edited to.
pub fn permission_text(
    tool: &str,
    title: Option<&str>,
    patterns: &[String],
    outcome: Option<&PermissionOutcome>,
) -> String {
    let mut text = String::from("⚠️ **Permission Required**\n");
    text.push_str(&format!("**Type:** `{}`\n", tool.replace('`', "'")));
    if let Some(t) = title.filter(|t| !t.trim().is_empty()) {
        text.push_str(&format!("**Action:** {}\n", truncate_chars(t.trim(), 500)));
    }
    if !patterns.is_empty() {
        let shown: Vec<String> = patterns
            .iter()
            .take(10)
            .map(|p| format!("`{}`", truncate_chars(&p.replace('`', "'"), 200)))
            .collect();
        text.push_str(&format!("**Patterns:** {}\n", shown.join(", ")));
    }
    let by = |who: &Option<String>| who.as_ref().map(|w| format!(" by {w}")).unwrap_or_default();
    if let Some(o) = outcome {
        text.push('\n');
        text.push_str(&match o {
            PermissionOutcome::Once { by: w } => format!("✅ **Accepted**{}", by(w)),
            PermissionOutcome::Always { by: w } => format!("✅ **Accepted always**{}", by(w)),
            PermissionOutcome::Denied { by: w } => format!("❌ **Denied**{}", by(w)),
            PermissionOutcome::TimedOut { minutes } => format!(
                "⏱️ **Auto-denied**: no answer within {minutes} min (the agent was told you are away)"
            ),
            PermissionOutcome::Dismissed => {
                "⬦ Permission dismissed - user sent a new message.".to_owned()
            }
        });
    }
    truncate_chars(text.trim_end(), GENERATED_LIMIT)
}

/// One question's message: header and text; with answers, what was chosen.
pub fn question_text(header: Option<&str>, question: &str, answered: Option<&[String]>) -> String {
    let mut text = String::from("❓ ");
    match header.filter(|h| !h.trim().is_empty()) {
        Some(h) => text.push_str(&format!(
            "**{}**\n{}",
            truncate_chars(h.trim(), QUESTION_HEADER_CHARS),
            truncate_chars(question.trim(), QUESTION_TEXT_CHARS)
        )),
        None => text.push_str(&format!(
            "**{}**",
            truncate_chars(question.trim(), QUESTION_TEXT_CHARS)
        )),
    }
    if let Some(a) = answered {
        let shown = if a.is_empty() {
            "(dismissed)".to_owned()
        } else {
            a.join(", ")
        };
        text.push_str(&format!("\n✅ {}", truncate_chars(&shown, 200)));
    }
    text
}

/// Removes ANSI escape sequences (colours, cursor moves) from command output.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                // CSI: parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                chars.next();
                // OSC: until BEL or ESC \.
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {
                chars.next();
            }
        }
    }
    out
}

/// `!cmd` output: "`cmd` exited with N" and the output in a code block, within 1900 characters.
pub fn shell_result(command: &str, exit: Option<i32>, timed_out: bool, output: &str) -> String {
    let command = truncate_chars(&command.replace('`', "'"), 200);
    let head = match (timed_out, exit) {
        (true, _) => format!("`{command}` timed out"),
        (false, Some(code)) => format!("`{command}` exited with {code}"),
        (false, None) => format!("`{command}` was killed by a signal"),
    };
    let body = strip_ansi(output).replace("```", "'''");
    let body = body.trim_end();
    if body.is_empty() {
        return format!("{head}\n*(no output)*");
    }
    const NOTE: &str = "\n... truncated";
    let frame = head.chars().count() + "\n```\n".len() + "\n```".len();
    let room = GENERATED_LIMIT.saturating_sub(frame);
    let shown = if body.chars().count() > room {
        let keep = room.saturating_sub(NOTE.chars().count());
        let mut s: String = body.chars().take(keep).collect();
        s.push_str(NOTE);
        s
    } else {
        body.to_owned()
    };
    format!("{head}\n```\n{shown}\n```")
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
