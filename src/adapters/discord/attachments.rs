//! Attachments of a user message: downloaded at once (CDN links expire) with the adapter's own
//! client — status checked, the signed query string kept — into `<data-dir>/attachments/`.
//! Small text files are inlined into the prompt, images go to the runner as files, everything
//! else is listed with its local path.

use std::path::{Path, PathBuf};

use crate::core::Attachment;

use super::rest::Rest;

/// Text attachments up to this size are inlined into the prompt (or any named `prompt.md`).
pub const INLINE_TEXT_BYTES: u64 = 64 * 1024;

/// Nothing larger is downloaded (Discord's own per-file cap for boosted guilds is higher, but a
/// prompt never needs more).
const MAX_DOWNLOAD_BYTES: u64 = 25 * 1024 * 1024;

/// Attachments per message Discord allows.
const MAX_ATTACHMENTS: usize = 10;

/// Extensions treated as text when the content type says nothing useful.
const TEXT_EXTENSIONS: [&str; 28] = [
    "txt", "md", "json", "xml", "js", "ts", "tsx", "jsx", "yaml", "yml", "toml", "rs", "py", "go",
    "java", "c", "h", "cpp", "sh", "csv", "log", "ini", "cfg", "html", "css", "sql", "diff",
    "patch",
];

/// A file attached to a user message, as Discord describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub id: u64,
    pub filename: String,
    pub url: String,
    pub size: u64,
    pub content_type: Option<String>,
    /// Set on voice messages (Discord's recorder).
    pub duration_secs: Option<f64>,
}

/// Extensions of audio recordings (phones attach voice notes as plain files too).
const AUDIO_EXTENSIONS: [&str; 7] = ["m4a", "mp3", "mp4", "oga", "ogg", "opus", "wav"];

impl Incoming {
    /// Whether this is a spoken recording: by content type, duration or extension (Discord's
    /// voice flag alone is not trusted).
    pub fn is_audio(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("audio/"))
            || self.duration_secs.is_some()
            || AUDIO_EXTENSIONS.contains(&extension(&self.filename).as_str())
    }
}

/// A file saved on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub filename: String,
    pub mime: Option<String>,
    pub path: PathBuf,
    pub size: u64,
    /// The text, when it is small enough to inline.
    pub inline: Option<String>,
    pub is_image: bool,
    /// A spoken recording: transcribed into the prompt, not listed as a file.
    pub is_audio: bool,
}

fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether a file is text (by content type, else by extension).
pub fn is_text(filename: &str, mime: Option<&str>) -> bool {
    if let Some(m) = mime {
        let m = m.to_ascii_lowercase();
        if m.starts_with("text/")
            || ["json", "xml", "javascript", "typescript", "yaml", "toml"]
                .iter()
                .any(|k| m.contains(k))
        {
            return true;
        }
    }
    TEXT_EXTENSIONS.contains(&extension(filename).as_str())
}

/// Whether a file is an image or a PDF (passed to the runner as a file part).
pub fn is_image(filename: &str, mime: Option<&str>) -> bool {
    match mime {
        Some(m) => m.starts_with("image/") || m == "application/pdf",
        None => matches!(
            extension(filename).as_str(),
            "png" | "jpg" | "jpeg" | "gif" | "webp" | "pdf"
        ),
    }
}

/// A file name safe on any filesystem.
fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    let short: String = trimmed.chars().take(100).collect();
    if short.is_empty() {
        "file".to_owned()
    } else {
        short
    }
}

/// Downloads every attachment of message `message`; failures are returned by name.
pub async fn fetch_all(
    rest: &Rest,
    dir: &Path,
    message: u64,
    files: &[Incoming],
) -> (Vec<Saved>, Vec<(String, String)>) {
    let mut saved = Vec::new();
    let mut failed = Vec::new();
    if files.is_empty() {
        return (saved, failed);
    }
    if let Err(e) = tokio::fs::create_dir_all(dir).await {
        for f in files {
            failed.push((f.filename.clone(), e.to_string()));
        }
        return (saved, failed);
    }
    for f in files.iter().take(MAX_ATTACHMENTS) {
        if f.size > MAX_DOWNLOAD_BYTES {
            failed.push((f.filename.clone(), "it is larger than 25 MB".to_owned()));
            continue;
        }
        let bytes = match rest.download(&f.url, MAX_DOWNLOAD_BYTES).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %f.filename, error = %e, "Could not download an attachment.");
                failed.push((
                    f.filename.clone(),
                    "the link expired or the file is unavailable".to_owned(),
                ));
                continue;
            }
        };
        let path = dir.join(format!("{message}-{}-{}", f.id, safe_name(&f.filename)));
        if let Err(e) = tokio::fs::write(&path, &bytes).await {
            failed.push((f.filename.clone(), e.to_string()));
            continue;
        }
        let mime = f.content_type.clone();
        let text = is_text(&f.filename, mime.as_deref());
        let inline = (text
            && (bytes.len() as u64 <= INLINE_TEXT_BYTES || f.filename == "prompt.md"))
            .then(|| String::from_utf8_lossy(&bytes).into_owned());
        saved.push(Saved {
            filename: f.filename.clone(),
            is_image: is_image(&f.filename, mime.as_deref()),
            is_audio: f.is_audio(),
            mime,
            path,
            size: bytes.len() as u64,
            inline,
        });
    }
    (saved, failed)
}

fn attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// The prompt section describing the saved files.
pub fn prompt_section(saved: &[Saved]) -> String {
    let mut out = String::new();
    for s in saved.iter().filter(|s| !s.is_audio) {
        let head = format!(
            "<attachment filename=\"{}\" mime=\"{}\" size=\"{}\" path=\"{}\"",
            attr(&s.filename),
            attr(s.mime.as_deref().unwrap_or("application/octet-stream")),
            s.size,
            attr(&s.path.display().to_string())
        );
        match (&s.inline, s.is_image) {
            (Some(text), _) => {
                out.push_str(&format!("{head}>\n{text}\n</attachment>\n"));
            }
            (None, true) => out.push_str(&format!(
                "{head} /> (already included as a file, do not use the Read tool on it)\n"
            )),
            (None, false) => out.push_str(&format!(
                "{head} /> (too large to inline: read the local path)\n"
            )),
        }
    }
    out
}

/// The first spoken recording, for the core's transcription step.
pub fn recording(saved: &[Saved]) -> Option<Attachment> {
    saved.iter().find(|s| s.is_audio).map(|s| Attachment {
        path: s.path.clone(),
        filename: s.filename.clone(),
        mime: s.mime.clone(),
    })
}

/// Files handed to the runner itself (images and PDFs).
pub fn runner_files(saved: &[Saved]) -> Vec<Attachment> {
    saved
        .iter()
        .filter(|s| s.is_image)
        .map(|s| Attachment {
            path: s.path.clone(),
            filename: s.filename.clone(),
            mime: s.mime.clone(),
        })
        .collect()
}
