//! What helps a transcriber spell the project's words: the workspace's file tree (`git ls-files`
//! when it is a repository, else a bounded walk) and a short vocabulary hint made of file names
//! and identifiers from the conversation. Blocking (it runs git and reads directories): call it
//! from `spawn_blocking`.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};

/// The file tree sent to Gemini is cut at this size: ≈16k tokens, a fraction of the context and
/// of the per-request cost, and enough for most repositories' interesting part.
pub const FILE_TREE_CAP: usize = 64 * 1024;

/// OpenAI's `prompt` is a vocabulary hint, not instructions; whisper-1 keeps only ≈224 tokens.
pub const VOCABULARY_CAP: usize = 800;

/// The walk of a directory that is not a git repository stops after this many files.
const WALK_MAX_FILES: usize = 20_000;

/// …and does not descend deeper than this.
const WALK_MAX_DEPTH: usize = 8;

/// Directories a walk skips: build output and dependencies, never what a person talks about.
const SKIPPED_DIRS: [&str; 9] = [
    "node_modules",
    "target",
    "dist",
    "build",
    "vendor",
    "__pycache__",
    "venv",
    "coverage",
    "out",
];

/// Room kept at the end of a cut tree for the "… (N more files)" note.
const NOTE_RESERVE: usize = 32;

/// Identifiers shorter than this are ordinary words, not vocabulary.
const MIN_IDENTIFIER_LEN: usize = 3;

/// The workspace's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileTree {
    /// Relative paths, sorted.
    pub paths: Vec<String>,
    /// The paths drawn as an indented tree, cut at the cap.
    pub rendered: String,
}

/// The files of `dir`, rendered within `cap` bytes. Empty when `dir` is not a directory.
pub fn file_tree(dir: &Path, cap: usize) -> FileTree {
    if !dir.is_dir() {
        return FileTree::default();
    }
    let mut paths = git_files(dir).unwrap_or_else(|| walk(dir));
    paths.sort();
    paths.dedup();
    let rendered = render_tree(&paths, cap);
    FileTree { paths, rendered }
}

/// Tracked plus untracked-but-not-ignored files, or `None` outside a repository (or without git).
fn git_files(dir: &Path) -> Option<Vec<String>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        out.stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
    )
}

/// A breadth-first walk that skips hidden entries and build/dependency directories.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::from([(root.to_owned(), 0usize)]);
    while let Some((dir, depth)) = queue.pop_front() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                if depth + 1 < WALK_MAX_DEPTH && !SKIPPED_DIRS.contains(&name.as_ref()) {
                    queue.push_back((path, depth + 1));
                }
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
                if out.len() >= WALK_MAX_FILES {
                    return out;
                }
            }
        }
    }
    out
}

/// Sorted paths as an indented tree (`dir/` lines, then their entries two spaces deeper), cut at
/// `cap` bytes with a note of how many files were left out.
pub fn render_tree(paths: &[String], cap: usize) -> String {
    let mut out = String::new();
    let mut open: Vec<&str> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((file, dirs)) = parts.split_last() else {
            continue;
        };
        let common = open.iter().zip(dirs).take_while(|(a, b)| a == b).count();
        open.truncate(common);
        let mut lines = String::new();
        for dir in &dirs[common..] {
            lines.push_str(&"  ".repeat(open.len()));
            lines.push_str(dir);
            lines.push_str("/\n");
            open.push(dir);
        }
        lines.push_str(&"  ".repeat(open.len()));
        lines.push_str(file);
        lines.push('\n');
        let last = i + 1 == paths.len();
        let room = if last {
            cap
        } else {
            cap.saturating_sub(NOTE_RESERVE)
        };
        if out.len() + lines.len() > room {
            let note = format!("… ({} more files)\n", paths.len() - i);
            if out.len() + note.len() <= cap {
                out.push_str(&note);
            }
            break;
        }
        out.push_str(&lines);
    }
    out
}

/// Words a recogniser should spell as written: identifiers from the conversation first (they are
/// what people just talked about), then file names, shallow paths before deep ones; comma
/// separated within `cap` bytes.
pub fn vocabulary_hint(tree: &FileTree, conversation: &[String], cap: usize) -> String {
    let mut seen = HashSet::new();
    let mut words: Vec<String> = Vec::new();
    let mut add = |w: &str, words: &mut Vec<String>| {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
        if w.len() >= MIN_IDENTIFIER_LEN && seen.insert(w.to_owned()) {
            words.push(w.to_owned());
        }
    };
    for line in conversation {
        for token in line.split(|c: char| c.is_whitespace() || "()[]{}<>,;:'\"`=".contains(c)) {
            if looks_like_identifier(token) {
                add(token.rsplit('/').next().unwrap_or(token), &mut words);
            }
        }
    }
    let mut by_depth: Vec<&String> = tree.paths.iter().collect();
    by_depth.sort_by_key(|p| p.matches('/').count());
    for path in by_depth {
        // Dotfiles are configuration nobody dictates by name.
        if let Some(name) = path.rsplit('/').next().filter(|n| !n.starts_with('.')) {
            add(name, &mut words);
        }
    }
    let mut out = String::new();
    for w in words {
        let extra = if out.is_empty() { w.len() } else { w.len() + 2 };
        if out.len() + extra > cap {
            break;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&w);
    }
    out
}

/// `snake_case`, `camelCase`, `PascalCase`, `file.ext` or `a/path`: not an everyday word.
fn looks_like_identifier(token: &str) -> bool {
    let t = token.trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
    if t.len() < MIN_IDENTIFIER_LEN || !t.chars().next().is_some_and(char::is_alphabetic) {
        return false;
    }
    let inner_upper =
        t.chars().skip(1).any(char::is_uppercase) && t.chars().any(char::is_lowercase);
    t.contains('_') || t.contains('/') || inner_upper || (t.contains('.') && !t.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn renders_an_indented_tree() {
        let p = paths(&[
            "Cargo.toml",
            "src/config/load.rs",
            "src/config/mod.rs",
            "src/main.rs",
            "tests/all.rs",
        ]);
        assert_eq!(
            render_tree(&p, 10_000),
            "Cargo.toml\nsrc/\n  config/\n    load.rs\n    mod.rs\n  main.rs\ntests/\n  all.rs\n"
        );
    }

    #[test]
    fn the_tree_is_cut_at_the_cap_with_a_note() {
        let p: Vec<String> = (0..1_000).map(|i| format!("file_{i:04}.rs")).collect();
        let out = render_tree(&p, 200);
        assert!(out.len() <= 200, "{}", out.len());
        assert!(out.ends_with("more files)\n"), "{out}");
        assert!(out.starts_with("file_0000.rs\n"));
    }

    #[test]
    fn vocabulary_prefers_conversation_identifiers_then_shallow_files() {
        let tree = FileTree {
            paths: paths(&["src/deep/session_manager.rs", "main.rs", "README.md"]),
            rendered: String::new(),
        };
        let conversation = paths(&[
            "alice: rename parse_config in LoadSettings please",
            "bob: ok the end.",
        ]);
        let hint = vocabulary_hint(&tree, &conversation, VOCABULARY_CAP);
        assert_eq!(
            hint,
            "parse_config, LoadSettings, main.rs, README.md, session_manager.rs"
        );
        let short = vocabulary_hint(&tree, &conversation, 30);
        assert_eq!(short, "parse_config, LoadSettings");
    }

    #[test]
    fn a_plain_directory_is_walked_without_hidden_or_build_dirs() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "a.rs",
            "src/b.rs",
            ".hidden/c.rs",
            "node_modules/x/d.js",
            "src/.e.rs",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let tree = file_tree(dir.path(), FILE_TREE_CAP);
        assert_eq!(tree.paths, paths(&["a.rs", "src/b.rs"]));
        assert_eq!(tree.rendered, "a.rs\nsrc/\n  b.rs\n");
        assert_eq!(
            file_tree(&dir.path().join("missing"), FILE_TREE_CAP),
            FileTree::default()
        );
    }
}
