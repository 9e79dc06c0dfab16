//! The data directory and every file kimaki keeps in it. One running instance per data dir.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the data dir: it holds secrets, the store and the control socket.
pub const DATA_DIR_MODE: u32 = 0o700;

/// Name of the data dir under the home directory when none is given.
const DEFAULT_DIR_NAME: &str = ".kimaki";

/// Unix socket paths are limited to 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot find the home directory; pass --data-dir or set KIMAKI_DATA_DIR")]
    NoHome,
    #[error("cannot create the data directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("{path} exists and is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "the data directory path is too long for a control socket ({len} bytes, limit {MAX_SOCKET_PATH}): {path}; choose a shorter --data-dir"
    )]
    PathTooLong { path: PathBuf, len: usize },
}

/// `<data-dir>` and the paths inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The given directory, or `~/.kimaki`. Relative paths are made absolute so that the control
    /// socket and logs do not depend on the working directory.
    pub fn resolve(given: Option<&Path>) -> Result<Self, DataDirError> {
        let root = match given {
            Some(p) => absolute(p),
            None => directories::BaseDirs::new()
                .ok_or(DataDirError::NoHome)?
                .home_dir()
                .join(DEFAULT_DIR_NAME),
        };
        Ok(Self { root })
    }

    /// Creates the directory (mode 0700) if needed and tightens a looser mode on one we own.
    pub fn ensure(&self) -> Result<(), DataDirError> {
        let create_err = |source| DataDirError::Create {
            path: self.root.clone(),
            source,
        };
        match fs::metadata(&self.root) {
            Ok(m) if !m.is_dir() => {
                return Err(DataDirError::NotADirectory {
                    path: self.root.clone(),
                })
            }
            Ok(m) => {
                if m.permissions().mode() & 0o077 != 0 {
                    fs::set_permissions(&self.root, fs::Permissions::from_mode(DATA_DIR_MODE))
                        .map_err(create_err)?;
                }
            }
            Err(_) => fs::DirBuilder::new()
                .recursive(true)
                .mode(DATA_DIR_MODE)
                .create(&self.root)
                .map_err(create_err)?,
        }
        let socket_len = self.socket().as_os_str().len();
        if socket_len > MAX_SOCKET_PATH {
            return Err(DataDirError::PathTooLong {
                path: self.root.clone(),
                len: socket_len,
            });
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }
    pub fn config_env(&self) -> PathBuf {
        self.root.join("config.env")
    }
    pub fn log_file(&self) -> PathBuf {
        self.root.join("kimaki.log")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("kimaki.lock")
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("kimaki.sock")
    }
    /// Gateway-mode onboarding: the pending install or the proxy credential (mode 0600).
    pub fn gateway_onboarding(&self) -> PathBuf {
        self.root.join("gateway.json")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }
    pub fn attachments_dir(&self) -> PathBuf {
        self.root.join("attachments")
    }
    pub fn default_projects_dir(&self) -> PathBuf {
        self.root.join("projects")
    }
    /// Private state that runners need (their HOME-like directories, server logs).
    pub fn runners_dir(&self) -> PathBuf {
        self.root.join("runners")
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_owned();
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(p))
        .unwrap_or_else(|_| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_creates_private_dir_and_tightens_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let dd = DataDir::resolve(Some(&tmp.path().join("a/b"))).unwrap();
        dd.ensure().unwrap();
        let mode = fs::metadata(dd.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(dd.root(), fs::Permissions::from_mode(0o755)).unwrap();
        dd.ensure().unwrap();
        let mode = fs::metadata(dd.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn rejects_a_file_and_an_overlong_path() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(
            DataDir::resolve(Some(&file)).unwrap().ensure(),
            Err(DataDirError::NotADirectory { .. })
        ));
        let long = tmp.path().join("x".repeat(120));
        assert!(matches!(
            DataDir::resolve(Some(&long)).unwrap().ensure(),
            Err(DataDirError::PathTooLong { .. })
        ));
    }
}
