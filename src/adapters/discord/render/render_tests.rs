use pretty_assertions::assert_eq;
use serde_json::json;

use super::split::{split_chunks, Chunk};
use super::*;

/// A small deterministic generator (no crate needed): xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn word(r: &mut Rng) -> String {
    let words = [
        "fix",
        "the",
        "build",
        "é",
        "naïve",
        "😀",
        "parser",
        "`code`",
        "**bold**",
        "x",
        "longer",
        "configuration",
    ];
    r.pick(&words).to_owned()
}

fn paragraph(r: &mut Rng, words: u64) -> String {
    (0..words).map(|_| word(r)).collect::<Vec<_>>().join(" ")
}

/// Random markdown: paragraphs, headings, lists, fences of several kinds, huge lines, tables.
fn document(r: &mut Rng) -> String {
    let mut out = String::new();
    let blocks = 1 + r.below(25);
    for _ in 0..blocks {
        match r.below(9) {
            0 => out.push_str(&format!("# {}\n", paragraph(r, 3))),
            1 => {
                for _ in 0..1 + r.below(6) {
                    let n = 1 + r.below(12);
                    out.push_str(&format!("- {}\n", paragraph(r, n)));
                }
            }
            2 | 3 => {
                let (open, close) = match r.below(4) {
                    0 => ("```rust".to_owned(), "```"),
                    1 => ("~~~py".to_owned(), "~~~"),
                    2 => ("````".to_owned(), "````"),
                    _ => ("```".to_owned(), "```"),
                };
                out.push_str(&open);
                out.push('\n');
                for _ in 0..r.below(80) {
                    let indent = " ".repeat(r.below(8) as usize);
                    let n = r.below(10);
                    out.push_str(&format!("{indent}{}\n", paragraph(r, n)));
                }
                if r.below(8) == 0 {
                    // A very long line inside code.
                    out.push_str(&"z".repeat(1500 + r.below(3000) as usize));
                    out.push('\n');
                }
                out.push_str(close);
                out.push('\n');
            }
            4 => {
                let n = 300 + r.below(400);
                out.push_str(&paragraph(r, n));
                out.push('\n');
            }
            5 => {
                out.push_str(&"y".repeat(100 + r.below(4500) as usize));
                out.push('\n');
            }
            6 => out.push('\n'),
            7 => out.push_str("| a | b |\n|---|---|\n| 1 | 2 |\n"),
            _ => {
                let n = 1 + r.below(30);
                out.push_str(&paragraph(r, n));
                out.push('\n');
            }
        }
    }
    if r.below(4) == 0 {
        // Streaming text can end inside an open fence.
        out.push_str("```js\nlet x = 1;\n");
    }
    out
}

/// Fence state after `text`: `Some((marker, len))` when a fence is open.
fn open_fence_after(text: &str, mut state: Option<(char, usize)>) -> Option<(char, usize)> {
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let indent = body.len() - body.trim_start_matches(' ').len();
        if indent > 3 {
            continue;
        }
        let rest = &body[indent..];
        let Some(marker) = rest.chars().next().filter(|c| *c == '`' || *c == '~') else {
            continue;
        };
        let len = rest.chars().take_while(|c| *c == marker).count();
        let info = &rest[len..];
        if len < 3 || (marker == '`' && info.contains('`')) {
            continue;
        }
        state = match state {
            None => Some((marker, len)),
            Some((m, n)) if m == marker && len >= n && info.trim().is_empty() => None,
            s => s,
        };
    }
    state
}

fn check_properties(input: &str, limit: usize) -> Vec<Chunk> {
    let chunks = split_chunks(input, limit);
    let joined: String = chunks.iter().map(Chunk::original).collect();
    assert_eq!(joined, input, "concatenation minus added fences = input");
    let mut input_state = None;
    for (i, c) in chunks.iter().enumerate() {
        let n = c.text.chars().count();
        let pathological = c.original().lines().any(|l| l.chars().count() > limit)
            && (c.original().starts_with("```") || c.original().starts_with("~~~"));
        assert!(
            n <= limit || pathological,
            "chunk {i} has {n} > {limit} chars"
        );
        // The fence open at the start of this chunk (in the input) is what it reopens.
        if let Some((m, len)) = input_state {
            let prefix = &c.text[..c.added_prefix];
            assert!(
                prefix.starts_with(&std::iter::repeat_n(m, len).collect::<String>()),
                "chunk {i} reopens the fence with its language: {prefix:?}"
            );
        } else {
            assert_eq!(
                c.added_prefix, 0,
                "chunk {i} reopened a fence that was not open"
            );
        }
        input_state = open_fence_after(c.original(), input_state);
        let last = i + 1 == chunks.len();
        let balanced = open_fence_after(&c.text, None).is_none();
        assert!(
            balanced || (last && input_state.is_some()),
            "chunk {i} has unbalanced fences:\n{}",
            c.text
        );
    }
    chunks
}

#[test]
fn the_splitter_holds_its_properties_on_random_markdown() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..400 {
        let doc = document(&mut r);
        let limit = match case % 4 {
            0 => DISCORD_LIMIT,
            1 => TARGET_LIMIT,
            2 => 64 + r.below(300) as usize,
            _ => 500 + r.below(1500) as usize,
        };
        check_properties(&doc, limit);
    }
}

#[test]
fn short_text_is_one_chunk_and_empty_text_none() {
    assert_eq!(split_message("hello", DISCORD_LIMIT), vec!["hello"]);
    assert!(split_message("", DISCORD_LIMIT).is_empty());
    assert!(split_message("\n\n", DISCORD_LIMIT).is_empty());
}

#[test]
fn a_cut_inside_a_fence_closes_and_reopens_it_with_its_language() {
    let mut text = String::from("Here is the file:\n```rust\n");
    for i in 0..30 {
        text.push_str(&format!("let value_{i} = compute({i});\n"));
    }
    text.push_str("```\nDone.\n");
    let chunks = split_message(&text, 400);
    assert!(chunks.len() >= 3, "{chunks:#?}");
    for c in &chunks[1..chunks.len() - 1] {
        assert!(c.starts_with("```rust\n"), "{c}");
        assert!(c.ends_with("```"), "{c}");
    }
    assert!(chunks[0].starts_with("Here is the file:\n```rust\n"));
    assert!(chunks.last().unwrap().ends_with("Done."));
}

#[test]
fn cuts_prefer_headings_and_blank_lines() {
    let para = "word ".repeat(70);
    let text = format!("{para}\n{para}\n\n## Next part\n{para}\n");
    let chunks = split_message(&text, 800);
    assert!(chunks[1].starts_with("## Next part"), "{chunks:#?}");
}

#[test]
fn long_lines_split_at_spaces_outside_code() {
    let text = "abcde ".repeat(700);
    let chunks = split_message(&text, DISCORD_LIMIT);
    assert!(chunks.len() >= 3);
    for c in &chunks[..chunks.len() - 1] {
        assert!(
            c.ends_with("abcde"),
            "cut at a space: {:?}",
            &c[c.len() - 10..]
        );
    }
}

#[test]
fn tables_become_aligned_code_and_deep_headings_are_capped() {
    let md = "#### Deep\n| name | size |\n|:---|---:|\n| a.rs | 10 |\n| lib.rs | 2000 |\ntext\n";
    assert_eq!(
        prepare_markdown(md),
        "### Deep\n```\nname    size\n------  ----\na.rs    10\nlib.rs  2000\n```\ntext\n"
    );
    assert_eq!(
        prepare_markdown("```\n| a | b |\n|---|---|\n```\n"),
        "```\n| a | b |\n|---|---|\n```\n"
    );
}

#[test]
fn a_five_thousand_character_reply_with_code_matches_its_snapshot() {
    let mut reply = String::from("I refactored the parser. Here is the new module:\n\n```rust\n");
    for i in 0..70 {
        reply.push_str(&format!(
            "pub fn parse_field_{i:02}(input: &str) -> Option<u32> {{ input.trim().parse().ok() }}\n"
        ));
    }
    reply.push_str("```\n\n## Notes\n\n");
    for i in 0..12 {
        reply.push_str(&format!(
            "- Step {i}: every parser now trims its input before parsing, so stray spaces no longer fail.\n"
        ));
    }
    assert!(reply.chars().count() > 5000, "{}", reply.chars().count());
    let chunks = text_chunks(&reply, false);
    let rendered = chunks.join("\n=== message ===\n");
    if std::env::var_os("KIMAKI_UPDATE_SNAPSHOTS").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/adapters/discord/render/snapshots/long_reply.txt"
        );
        std::fs::write(path, format!("{rendered}\n")).unwrap();
        return;
    }
    let expected = include_str!("snapshots/long_reply.txt");
    assert_eq!(rendered, expected.trim_end_matches('\n'));
    for c in &chunks {
        assert!(c.chars().count() <= DISCORD_LIMIT);
    }
}

#[test]
fn streaming_text_closes_a_fence_left_open_for_display() {
    let chunks = text_chunks("Here:\n```py\nprint(1)\n", true);
    assert_eq!(chunks, vec!["⬥ Here:\n```py\nprint(1)\n```"]);
}

#[test]
fn text_gets_a_bullet_unless_it_opens_with_markdown() {
    assert_eq!(format_text("Done."), "⬥ Done.");
    assert_eq!(format_text("# Title\nbody"), "# Title\nbody");
    assert_eq!(format_text("- item"), "- item");
    assert_eq!(format_text("1. first"), "1. first");
    assert_eq!(format_text("```\ncode\n```"), "```\ncode\n```");
}

#[test]
fn verbosity_names_parse_both_spellings() {
    assert_eq!(Verbosity::parse("text_only"), Some(Verbosity::TextOnly));
    assert_eq!(
        Verbosity::parse("Tools-And-Text"),
        Some(Verbosity::ToolsAndText)
    );
    assert_eq!(Verbosity::parse("loud"), None);
    assert_eq!(Verbosity::default(), Verbosity::TextAndEssentialTools);
}

/// The tool calls of one turn, as three runners name them.
fn sample_tools() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("read", json!({"filePath": "src/lib.rs"})),
        ("grep", json!({"pattern": "fn main"})),
        ("bash", json!({"command": "ls -la"})),
        (
            "bash",
            json!({"command": "cargo test", "description": "Run tests"}),
        ),
        (
            "edit",
            json!({"filePath": "src/lib.rs", "oldString": "a\nb", "newString": "a\nb\nc"}),
        ),
        (
            "Write",
            json!({"file_path": "notes.md", "content": "one\ntwo\n"}),
        ),
        (
            "apply_patch",
            json!({"changes": ["update src/a.rs", "add src/b.rs"]}),
        ),
        (
            "todowrite",
            json!({"todos": [{"content": "plan", "status": "completed"}, {"content": "write tests", "status": "in_progress"}]}),
        ),
        (
            "task",
            json!({"subagent_type": "explore", "description": "Find callers"}),
        ),
        ("question", json!({"questions": []})),
        (
            "Bash",
            json!({"command": format!("echo {}", "x".repeat(120)), "description": "Print a long line"}),
        ),
    ]
}

fn shown_at(v: Verbosity) -> String {
    sample_tools()
        .into_iter()
        .filter_map(|(n, i)| tool_line(n, &i))
        .filter(|l| v.shows_tool(l.essential))
        .map(|l| l.text)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn tool_lines_per_verbosity_match_their_snapshots() {
    assert_eq!(shown_at(Verbosity::TextOnly), "");
    assert_eq!(
        shown_at(Verbosity::TextAndEssentialTools),
        "┣ bash `cargo test`\n\
         ◼︎ edit *src/lib.rs* (+3-2)\n\
         ◼︎ Write *notes.md* (2 lines)\n\
         ◼︎ apply_patch *src/a.rs*, *src/b.rs*\n\
         ⒉ **write tests**\n\
         ┣ explore **Find callers**"
    );
    assert_eq!(
        shown_at(Verbosity::ToolsAndText),
        "┣ read *src/lib.rs*\n\
         ┣ grep *fn main*\n\
         ┣ bash `ls -la`\n\
         ┣ bash `cargo test`\n\
         ◼︎ edit *src/lib.rs* (+3-2)\n\
         ◼︎ Write *notes.md* (2 lines)\n\
         ◼︎ apply_patch *src/a.rs*, *src/b.rs*\n\
         ⒉ **write tests**\n\
         ┣ explore **Find callers**\n\
         ┣ Bash Print a long line"
    );
    assert_eq!(tool_error_line("bash"), "⨯ bash error");
}

#[test]
fn only_side_effect_free_commands_are_pure() {
    for pure in ["ls", "git status", "cat a | grep b", "rg foo"] {
        assert!(tools::is_pure_command(pure), "{pure}");
    }
    for not in [
        "rm -rf x",
        "ls > out",
        "git push",
        "cargo test",
        "ls; rm x",
        "echo $(id)",
    ] {
        assert!(!tools::is_pure_command(not), "{not}");
    }
}

#[test]
fn footers_match_their_snapshots() {
    let full = FooterInfo {
        folder: "my-app".into(),
        branch: Some("main".into()),
        duration_ms: Some(4_230),
        context_percent: Some(12.4),
        model: Some("openai/gpt-5".into()),
        agent: Some("plan".into()),
    };
    assert_eq!(
        footer(&full),
        "*my-app ⋅ main ⋅ 4.2s ⋅ 12% ⋅ openai/gpt-5 ⋅ **plan***"
    );
    let minimal = FooterInfo {
        folder: "a-very-long-project-folder-name-indeed".into(),
        agent: Some("build".into()),
        duration_ms: Some(65_000),
        ..FooterInfo::default()
    };
    assert_eq!(
        footer(&minimal),
        "*a-very-long-project-folder-na… ⋅ 1m 05s*"
    );
    assert_eq!(format_duration(850), "850ms");
    assert_eq!(format_duration(7_380_000), "2h 03m");
}

#[test]
fn permission_prompts_and_outcomes() {
    let patterns = vec!["ls *".to_owned()];
    let prompt = permission_text("bash", Some("run `ls`"), &patterns, None);
    assert_eq!(
        prompt,
        "⚠️ **Permission Required**\n**Type:** `bash`\n**Action:** run `ls`\n**Patterns:** `ls *`"
    );
    let accepted = permission_text(
        "bash",
        None,
        &[],
        Some(&PermissionOutcome::Always {
            by: Some("alice".into()),
        }),
    );
    assert_eq!(
        accepted,
        "⚠️ **Permission Required**\n**Type:** `bash`\n\n✅ **Accepted always** by alice"
    );
    let timed_out = permission_text(
        "edit",
        None,
        &[],
        Some(&PermissionOutcome::TimedOut { minutes: 10 }),
    );
    assert!(timed_out.ends_with("no answer within 10 min (the agent was told you are away)"));
}

#[test]
fn questions_show_their_answers() {
    assert_eq!(
        question_text(Some("Style"), "Tabs or spaces?", None),
        "❓ **Style**\nTabs or spaces?"
    );
    assert_eq!(
        question_text(None, "Proceed?", Some(&["Yes".to_owned()])),
        "❓ **Proceed?**\n✅ Yes"
    );
}

#[test]
fn shell_output_is_fenced_stripped_and_truncated() {
    assert_eq!(
        shell_result(
            "ls",
            Some(0),
            false,
            "\u{1b}[1;34mREADME.md\u{1b}[0m\nsrc\n"
        ),
        "`ls` exited with 0\n```\nREADME.md\nsrc\n```"
    );
    let big = "line\n".repeat(1000);
    let out = shell_result("yes", Some(1), false, &big);
    assert!(
        out.chars().count() <= GENERATED_LIMIT,
        "{}",
        out.chars().count()
    );
    assert!(out.ends_with("... truncated\n```"));
    assert_eq!(
        shell_result("sleep 9", None, true, ""),
        "`sleep 9` timed out\n*(no output)*"
    );
}

#[test]
fn errors_are_cut_to_four_hundred_characters() {
    let e = error_text("opencode", &"bad ".repeat(200));
    assert!(e.starts_with("✗ opencode session error: bad"));
    assert_eq!(e.chars().count(), 400);
}
