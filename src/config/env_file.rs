//! `config.env`: KEY=VALUE lines with comments, read leniently and written atomically (temp file,
//! fsync, rename) with mode 0600, keeping the user's comments and order.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File mode for anything that may hold a secret.
pub const SECRET_FILE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// Comments, blank lines and lines we could not parse are kept verbatim.
    Verbatim(String),
    Entry {
        key: String,
        value: String,
    },
}

/// A line that is neither a comment nor KEY=VALUE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub line_no: usize,
    pub text: String,
}

/// The parsed contents of a config.env file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    lines: Vec<Line>,
    malformed: Vec<Malformed>,
}

impl EnvFile {
    /// Reads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, EnvFileError> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(EnvFileError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(text: &str) -> Self {
        let mut file = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                file.lines.push(Line::Verbatim(raw.to_owned()));
                continue;
            }
            let body = trimmed.strip_prefix("export ").unwrap_or(trimmed);
            match body.split_once('=') {
                Some((k, v)) if is_valid_key(k.trim()) => file.lines.push(Line::Entry {
                    key: k.trim().to_owned(),
                    value: unquote(v.trim()),
                }),
                _ => {
                    file.malformed.push(Malformed {
                        line_no: i + 1,
                        text: raw.to_owned(),
                    });
                    file.lines.push(Line::Verbatim(raw.to_owned()));
                }
            }
        }
        file
    }

    /// The value of `key`; when a key appears twice the last one wins, as in a shell.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines.iter().rev().find_map(|l| match l {
            Line::Entry { key: k, value } if k == key => Some(value.as_str()),
            _ => None,
        })
    }

    /// Every key with its value, in file order (duplicates included).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry { key, value } => Some((key.as_str(), value.as_str())),
            Line::Verbatim(_) => None,
        })
    }

    pub fn malformed(&self) -> &[Malformed] {
        &self.malformed
    }

    /// Sets `key`, replacing its last occurrence in place or appending it.
    pub fn set(&mut self, key: &str, value: &str) {
        let existing = self
            .lines
            .iter_mut()
            .rev()
            .find(|l| matches!(l, Line::Entry { key: k, .. } if k == key));
        match existing {
            Some(Line::Entry { value: v, .. }) => *v = value.to_owned(),
            _ => self.lines.push(Line::Entry {
                key: key.to_owned(),
                value: value.to_owned(),
            }),
        }
    }

    /// Removes every occurrence of `key`.
    pub fn remove(&mut self, key: &str) {
        self.lines
            .retain(|l| !matches!(l, Line::Entry { key: k, .. } if k == key));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Verbatim(text) => out.push_str(text),
                Line::Entry { key, value } => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(&quote(value));
                }
            }
            out.push('\n');
        }
        out
    }

    /// Writes the file atomically with mode 0600: a crash leaves either the old or the new file.
    pub fn save(&self, path: &Path) -> Result<(), EnvFileError> {
        write_private_file(path, self.render().as_bytes())
    }
}

/// Atomically replaces `path` with `bytes`, readable by the owner only.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), EnvFileError> {
    let err = |source| EnvFileError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(SECRET_FILE_MODE)
            .open(&tmp)?;
        // The mode above applies only to new files; a leftover temp file keeps its old mode.
        f.set_permissions(fs::Permissions::from_mode(SECRET_FILE_MODE))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

fn is_valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with(|c: char| c.is_ascii_digit())
}

fn unquote(v: &str) -> String {
    let bytes = v.as_bytes();
    if bytes.len() >= 2 {
        let (first, last) = (bytes[0], bytes[bytes.len() - 1]);
        if (first == b'"' && last == b'"') || (first == b'\'' && last == b'\'') {
            let inner = &v[1..v.len() - 1];
            return if first == b'"' {
                inner.replace("\\\"", "\"").replace("\\\\", "\\")
            } else {
                inner.to_owned()
            };
        }
    }
    v.to_owned()
}

fn quote(v: &str) -> String {
    let needs = v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || "\"'#$`\\".contains(c));
    if !needs || v.is_empty() {
        return v.to_owned();
    }
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn parses_comments_quotes_exports_and_duplicates() {
        let f =
            EnvFile::parse("# comment\n\nA=1\nexport B=\"two words\"\nC='x#y'\nA=3\nnot a line\n");
        assert_eq!(f.get("A"), Some("3"));
        assert_eq!(f.get("B"), Some("two words"));
        assert_eq!(f.get("C"), Some("x#y"));
        assert_eq!(f.malformed().len(), 1);
        assert_eq!(f.malformed()[0].line_no, 7);
    }

    #[test]
    fn set_keeps_comments_and_order() {
        let mut f = EnvFile::parse("# keep me\nA=1\nB=2\n");
        f.set("A", "new value");
        f.set("Z", "26");
        f.remove("B");
        assert_eq!(f.render(), "# keep me\nA=\"new value\"\nZ=26\n");
        assert_eq!(EnvFile::parse(&f.render()).get("A"), Some("new value"));
    }

    #[test]
    fn quoting_round_trips() {
        for v in [
            "plain",
            "with space",
            "quote\"inside",
            "back\\slash",
            "$HOME",
            "",
        ] {
            let mut f = EnvFile::default();
            f.set("K", v);
            assert_eq!(EnvFile::parse(&f.render()).get("K"), Some(v), "{v:?}");
        }
    }

    #[test]
    fn save_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.env");
        let mut f = EnvFile::default();
        f.set("A", "1");
        f.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(EnvFile::load(&path).unwrap().get("A"), Some("1"));
    }
}
