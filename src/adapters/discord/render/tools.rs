//! One line per tool call: `┣ <tool> <summary>`, `◼︎` for tools that change files, and which
//! calls count as "essential" for the default verbosity. Tool names differ between runners
//! (OpenCode `read`, Claude Code `Read`, Codex `apply_patch`); they are matched case-insensitively.

use serde_json::Value;

/// A bash command up to this long is shown inline; longer ones show their description.
const INLINE_COMMAND_CHARS: usize = 100;

/// A summary (a path, a pattern, a title) is cut to this many characters.
const SUMMARY_CHARS: usize = 200;

/// The rendered line and whether the default verbosity shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolLine {
    pub text: String,
    /// Changes something or matters to the reader (not a read-only look-around).
    pub essential: bool,
}

/// Tools with their own UI (buttons, selects, uploads): never shown as a line.
const HIDDEN: [&str; 4] = [
    "question",
    "action_buttons",
    "file_upload",
    "askuserquestion",
];

/// Read-only look-arounds that only `tools-and-text` shows.
const LOOK_AROUND: [&str; 9] = [
    "read",
    "glob",
    "grep",
    "list",
    "ls",
    "todoread",
    "describe_media",
    "web_search",
    "websearch",
];

/// Tools that change files.
const FILE_CHANGING: [&str; 6] = [
    "edit",
    "write",
    "multiedit",
    "apply_patch",
    "patch",
    "notebookedit",
];

/// Commands that only look (side-effect free) when run without redirection or chaining.
const PURE_COMMANDS: [&str; 18] = [
    "ls", "cat", "pwd", "echo", "head", "tail", "wc", "grep", "rg", "find", "tree", "which",
    "file", "stat", "du", "df", "env", "date",
];

/// Read-only git subcommands.
const PURE_GIT: [&str; 6] = ["status", "log", "diff", "show", "branch", "remote"];

fn normalized(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

fn str_field<'a>(input: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| input.get(*k).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
}

fn cut(s: &str, max: usize) -> String {
    super::truncate_chars(s, max)
}

fn file_name(input: &Value) -> Option<String> {
    str_field(
        input,
        &["filePath", "file_path", "path", "filename", "notebook_path"],
    )
    .map(|p| cut(p, SUMMARY_CHARS))
}

fn line_count(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        s.lines().count()
    }
}

/// Whether a shell command only reads: a known pure command, no redirection, no chaining.
pub fn is_pure_command(command: &str) -> bool {
    let c = command.trim();
    if c.is_empty() || c.contains(['>', ';', '&', '`', '$']) || c.contains("| tee") {
        return false;
    }
    c.split('|').all(|stage| {
        let mut words = stage.split_whitespace();
        match words.next() {
            Some("git") => words.next().is_some_and(|sub| PURE_GIT.contains(&sub)),
            Some(cmd) => PURE_COMMANDS.contains(&cmd),
            None => false,
        }
    })
}

/// The line for a started tool call, or `None` for tools that have their own UI.
pub fn tool_line(name: &str, input: &Value) -> Option<ToolLine> {
    let n = normalized(name);
    if HIDDEN.contains(&n.as_str()) {
        return None;
    }
    let shown = if name.is_empty() { "tool" } else { name };
    if FILE_CHANGING.contains(&n.as_str()) {
        return Some(ToolLine {
            text: format!("◼︎ {shown} {}", file_change_summary(&n, input))
                .trim_end()
                .to_owned(),
            essential: true,
        });
    }
    match n.as_str() {
        "bash" | "shell" | "command" | "exec" => {
            let command = str_field(input, &["command", "cmd"]).unwrap_or("");
            let first = command.lines().next().unwrap_or("");
            let summary =
                if command.chars().count() <= INLINE_COMMAND_CHARS && !command.contains('\n') {
                    format!("`{}`", command.replace('`', "'"))
                } else if let Some(d) = str_field(input, &["description"]) {
                    cut(d, SUMMARY_CHARS)
                } else {
                    format!("`{}…`", cut(first, INLINE_COMMAND_CHARS).replace('`', "'"))
                };
            Some(ToolLine {
                text: format!("┣ {shown} {summary}"),
                essential: !is_pure_command(command),
            })
        }
        "todowrite" => Some(ToolLine {
            text: todo_line(input),
            essential: true,
        }),
        "task" | "agent" => {
            let agent = str_field(input, &["subagent_type", "agent"]).unwrap_or("task");
            let title = str_field(input, &["description", "title", "prompt"]).unwrap_or("");
            Some(ToolLine {
                text: format!("┣ {agent} **{}**", cut(title, SUMMARY_CHARS)).replace(" ****", ""),
                essential: true,
            })
        }
        _ => {
            let summary = file_name(input)
                .or_else(|| {
                    str_field(input, &["pattern", "query", "url", "name", "description"])
                        .map(|s| cut(s, SUMMARY_CHARS))
                })
                .map(|s| format!(" *{s}*"))
                .unwrap_or_default();
            Some(ToolLine {
                text: format!("┣ {shown}{summary}"),
                essential: !LOOK_AROUND.contains(&n.as_str()),
            })
        }
    }
}

fn file_change_summary(n: &str, input: &Value) -> String {
    if let Some(changes) = input.get("changes").and_then(Value::as_array) {
        // Codex: one entry per file ("update src/a.rs").
        let files: Vec<String> = changes
            .iter()
            .filter_map(Value::as_str)
            .map(|c| c.split_once(' ').map_or(c, |(_, p)| p).to_owned())
            .collect();
        return files
            .iter()
            .map(|f| format!("*{}*", cut(f, SUMMARY_CHARS)))
            .collect::<Vec<_>>()
            .join(", ");
    }
    let Some(file) = file_name(input) else {
        return String::new();
    };
    match n {
        "edit" => {
            let old = str_field(input, &["oldString", "old_string"]).unwrap_or("");
            let new = str_field(input, &["newString", "new_string"]).unwrap_or("");
            format!("*{file}* (+{}-{})", line_count(new), line_count(old))
        }
        "write" => {
            let content = str_field(input, &["content"]).unwrap_or("");
            format!("*{file}* ({} lines)", line_count(content))
        }
        _ => format!("*{file}*"),
    }
}

/// `todowrite` shows the item in progress: `⒈ **text**`.
fn todo_line(input: &Value) -> String {
    const NUMBERS: [&str; 10] = ["⒈", "⒉", "⒊", "⒋", "⒌", "⒍", "⒎", "⒏", "⒐", "⒑"];
    let todos = input
        .get("todos")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let current = todos
        .iter()
        .enumerate()
        .find(|(_, t)| t.get("status").and_then(Value::as_str) == Some("in_progress"));
    match current {
        Some((i, t)) => {
            let text = str_field(t, &["content", "activeForm", "text"]).unwrap_or("");
            let n = NUMBERS.get(i).copied().unwrap_or("•");
            format!("{n} **{}**", cut(text, SUMMARY_CHARS))
        }
        None => format!("┣ todo list ({} items)", todos.len()),
    }
}

/// The line for a tool call that failed.
pub fn tool_error_line(name: &str) -> String {
    format!("⨯ {} error", if name.is_empty() { "tool" } else { name })
}
