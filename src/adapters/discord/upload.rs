//! Files posted to a thread from the command line (`kimaki upload-to-discord`), as multipart
//! messages through the REST API with the configured bot token. Needs no running kimaki. Every
//! file is checked before anything is sent, so a file over the limit posts nothing; files are
//! grouped into as few messages as Discord's per-message limits allow.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::config::DiscordConfig;
use super::rest::{Rest, RestError};

/// Discord's default upload limit per message (and so per file) for a bot in a server without
/// boosts: 10 MiB.
pub const MAX_MESSAGE_BYTES: u64 = 10 * 1024 * 1024;

/// Attachments per message.
pub const MAX_FILES_PER_MESSAGE: usize = 10;

/// One upload may take a while on a slow link; it still must not hang.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// 429 and 5xx are retried this many times per message.
const ATTEMPTS: u32 = 5;
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(15);

/// A posted message and the files it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadedMessage {
    pub message_id: String,
    pub files: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0} is not a Discord thread id")]
    BadThread(String),
    #[error("no files given")]
    NoFiles,
    #[error("cannot upload {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("cannot upload {path}: {size} bytes is over Discord's upload limit of {limit} bytes ({limit_mib} MiB) per message; nothing was uploaded")]
    TooLarge {
        path: String,
        size: u64,
        limit: u64,
        limit_mib: u64,
    },
    #[error("Discord refused the upload of {files}: {error}{uploaded}")]
    Rest {
        files: String,
        error: RestError,
        /// Which earlier messages did go out.
        uploaded: String,
    },
    #[error("could not set up the HTTP client: {0}")]
    Client(String),
}

/// A checked file: its path, name and size.
#[derive(Debug, Clone)]
struct Checked {
    path: PathBuf,
    name: String,
    size: u64,
}

/// Uploads `files` to `thread`, at most ten files and 10 MiB per message.
pub async fn upload(
    config: &DiscordConfig,
    thread: &str,
    files: &[PathBuf],
) -> Result<Vec<UploadedMessage>, UploadError> {
    let thread_id = thread
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| UploadError::BadThread(thread.to_owned()))?;
    let checked = check(files, MAX_MESSAGE_BYTES)?;
    let mut builder = reqwest::Client::builder().timeout(UPLOAD_TIMEOUT);
    if config.api_base.is_some() {
        builder = builder.no_proxy();
    }
    let http = builder
        .build()
        .map_err(|e| UploadError::Client(e.to_string()))?;
    let rest = Rest::new(http, config.api_base_or_default(), config.token.clone());
    let mut out: Vec<UploadedMessage> = Vec::new();
    for batch in batches(&checked, MAX_FILES_PER_MESSAGE, MAX_MESSAGE_BYTES) {
        let names: Vec<String> = batch.iter().map(|c| c.name.clone()).collect();
        let fail = |error: RestError, out: &[UploadedMessage]| UploadError::Rest {
            files: names.join(", "),
            error,
            uploaded: if out.is_empty() {
                String::new()
            } else {
                format!(
                    " (already uploaded: {})",
                    out.iter()
                        .flat_map(|m| m.files.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        };
        let mut parts = Vec::new();
        for c in &batch {
            let bytes = std::fs::read(&c.path).map_err(|e| UploadError::Unreadable {
                path: c.path.display().to_string(),
                reason: e.to_string(),
            })?;
            parts.push((c.name.clone(), bytes));
        }
        let path = format!("/channels/{thread_id}/messages");
        let mut attempt = 0;
        let reply = loop {
            attempt += 1;
            let err = match rest.post_multipart(&path, form(&parts)).await {
                Ok(r) => break r,
                Err(e) => e,
            };
            if !err.is_retryable() || attempt >= ATTEMPTS {
                return Err(fail(err, &out));
            }
            let wait = match &err {
                RestError::RateLimited { retry_after, .. } => *retry_after,
                _ => RETRY_BASE.saturating_mul(1 << attempt).min(RETRY_MAX),
            };
            tokio::time::sleep(wait).await;
        };
        let message_id = reply
            .body
            .as_ref()
            .and_then(|b| b.get("id"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        out.push(UploadedMessage {
            message_id,
            files: names,
        });
    }
    Ok(out)
}

fn form(parts: &[(String, Vec<u8>)]) -> reqwest::multipart::Form {
    let attachments: Vec<_> = parts
        .iter()
        .enumerate()
        .map(|(i, (name, _))| json!({"id": i, "filename": name}))
        .collect();
    let payload = json!({
        "attachments": attachments,
        "allowed_mentions": {"parse": []},
    });
    let mut f = reqwest::multipart::Form::new().text("payload_json", payload.to_string());
    for (i, (name, bytes)) in parts.iter().enumerate() {
        // No content type: Discord derives it from the file name.
        let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone());
        f = f.part(format!("files[{i}]"), part);
    }
    f
}

/// Every file exists, is a regular file and fits in one message; checked before any upload.
fn check(files: &[PathBuf], limit: u64) -> Result<Vec<Checked>, UploadError> {
    if files.is_empty() {
        return Err(UploadError::NoFiles);
    }
    let mut out = Vec::new();
    for f in files {
        let unreadable = |reason: String| UploadError::Unreadable {
            path: f.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(f).map_err(|e| {
            unreadable(match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_owned(),
                _ => e.to_string(),
            })
        })?;
        if !meta.is_file() {
            return Err(unreadable("not a regular file".to_owned()));
        }
        if meta.len() > limit {
            return Err(UploadError::TooLarge {
                path: f.display().to_string(),
                size: meta.len(),
                limit,
                limit_mib: limit / 1024 / 1024,
            });
        }
        out.push(Checked {
            path: f.clone(),
            name: file_name(f),
            size: meta.len(),
        });
    }
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned())
}

/// Groups files in order into messages of at most `max_files` files and `max_bytes` bytes.
fn batches(files: &[Checked], max_files: usize, max_bytes: u64) -> Vec<Vec<Checked>> {
    let mut out: Vec<Vec<Checked>> = Vec::new();
    let mut current: Vec<Checked> = Vec::new();
    let mut bytes = 0u64;
    for f in files {
        if !current.is_empty() && (current.len() >= max_files || bytes + f.size > max_bytes) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += f.size;
        current.push(f.clone());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64) -> Checked {
        Checked {
            path: PathBuf::from(name),
            name: name.to_owned(),
            size,
        }
    }

    #[test]
    fn files_are_grouped_by_count_and_size() {
        let files: Vec<Checked> = (0..12).map(|i| file(&format!("f{i}"), 1)).collect();
        let b = batches(&files, 10, 100);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 2]);
        let files = vec![file("a", 60), file("b", 60), file("c", 30), file("d", 100)];
        let b = batches(&files, 10, 100);
        let names: Vec<Vec<&str>> = b
            .iter()
            .map(|m| m.iter().map(|c| c.name.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["a"], vec!["b", "c"], vec!["d"]]);
    }

    #[test]
    fn a_missing_or_oversized_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.txt");
        let e = check(std::slice::from_ref(&missing), 10).unwrap_err();
        assert!(e.to_string().contains("nope.txt"), "{e}");
        assert!(e.to_string().contains("no such file"), "{e}");
        let big = dir.path().join("big.bin");
        std::fs::write(&big, vec![0u8; 11]).unwrap();
        let e = check(&[big], 10).unwrap_err();
        assert!(
            matches!(
                e,
                UploadError::TooLarge {
                    size: 11,
                    limit: 10,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("big.bin"), "{e}");
    }
}
