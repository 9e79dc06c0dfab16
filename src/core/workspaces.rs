//! Registered project directories ("workspaces"). Work may only run inside one: a Discord channel,
//! a mesh dispatch or an API call names a workspace (or a path inside one), never an arbitrary
//! directory. Each has a stable id that is safe to share; the absolute path never leaves the
//! machine.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::store::{self, Batch, Store, Tree};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// `ws_<ULID>`, made once when the directory is registered.
    pub id: String,
    /// Display name (the directory's name unless given).
    pub name: String,
    /// Canonical absolute path.
    pub path: PathBuf,
    pub added_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{0} does not exist or is not a directory")]
    NotADirectory(PathBuf),
    #[error("{path} is inside the project {parent} ({parent_path}); add that project instead or remove it first")]
    Nested {
        path: PathBuf,
        parent: String,
        parent_path: PathBuf,
    },
    #[error("{path} contains the project {child} ({child_path}); remove that project first")]
    Contains {
        path: PathBuf,
        child: String,
        child_path: PathBuf,
    },
    #[error("no project with id or name `{0}`")]
    Unknown(String),
    #[error("the path `{0}` leaves its project directory")]
    Escapes(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Store-backed registry; cheap to clone. Clones share one change revision, so every holder of
/// a clone sees additions and removals made through any other.
#[derive(Clone)]
pub struct Workspaces {
    store: Store,
    revision: Arc<watch::Sender<u64>>,
}

impl Workspaces {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            revision: Arc::new(watch::channel(0).0),
        }
    }

    /// A revision that increases whenever a workspace is added or removed through this registry
    /// (or a clone of it), for sinks that advertise the list (the mesh link).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    pub fn list(&self) -> Result<Vec<Workspace>, WorkspaceError> {
        let mut all: Vec<Workspace> = self
            .store
            .scan_all::<Workspace>(Tree::Workspaces)?
            .into_iter()
            .map(|(_, w)| w)
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.path.cmp(&b.path)));
        Ok(all)
    }

    pub fn get(&self, id: &str) -> Result<Option<Workspace>, WorkspaceError> {
        Ok(self.store.get(Tree::Workspaces, id)?)
    }

    /// By id, by name, or by path.
    pub fn find(&self, key: &str) -> Result<Option<Workspace>, WorkspaceError> {
        if let Some(w) = self.get(key)? {
            return Ok(Some(w));
        }
        let canonical = std::fs::canonicalize(key).ok();
        Ok(self
            .list()?
            .into_iter()
            .find(|w| w.name == key || Some(&w.path) == canonical.as_ref()))
    }

    /// Registers `dir` (canonicalised). Adding the same directory again returns the existing
    /// entry; a directory inside (or around) another project is refused.
    pub async fn add(&self, dir: &Path, name: Option<&str>) -> Result<Workspace, WorkspaceError> {
        let path = std::fs::canonicalize(dir)
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| WorkspaceError::NotADirectory(dir.to_owned()))?;
        for w in self.list()? {
            if w.path == path {
                return Ok(w);
            }
            if path.starts_with(&w.path) {
                return Err(WorkspaceError::Nested {
                    path,
                    parent: w.name,
                    parent_path: w.path,
                });
            }
            if w.path.starts_with(&path) {
                return Err(WorkspaceError::Contains {
                    path,
                    child: w.name,
                    child_path: w.path,
                });
            }
        }
        let name = name
            .map(str::to_owned)
            .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "root".to_owned());
        let ws = Workspace {
            id: format!("ws_{}", ulid::Ulid::new()),
            name,
            path,
            added_at: super::clock::now_ms(),
        };
        let mut batch = Batch::new();
        batch.put(Tree::Workspaces, &ws.id, &ws)?;
        self.store.commit(batch).await?;
        self.revision.send_modify(|r| *r += 1);
        Ok(ws)
    }

    pub async fn remove(&self, key: &str) -> Result<Workspace, WorkspaceError> {
        let ws = self
            .find(key)?
            .ok_or_else(|| WorkspaceError::Unknown(key.to_owned()))?;
        let mut batch = Batch::new();
        batch.delete(Tree::Workspaces, &ws.id);
        self.store.commit(batch).await?;
        self.revision.send_modify(|r| *r += 1);
        Ok(ws)
    }

    /// The workspace that contains `path`, if any.
    pub fn containing(&self, path: &Path) -> Result<Option<Workspace>, WorkspaceError> {
        let Ok(canonical) = std::fs::canonicalize(path) else {
            return Ok(None);
        };
        Ok(self
            .list()?
            .into_iter()
            .find(|w| canonical.starts_with(&w.path)))
    }
}

/// Resolves `relative` inside `root`, refusing anything that could leave it (`..`, absolute
/// paths, symlinks pointing outside).
pub fn resolve_inside(root: &Path, relative: &str) -> Result<PathBuf, WorkspaceError> {
    let rel = Path::new(relative);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(WorkspaceError::Escapes(relative.to_owned()));
    }
    let joined = root.join(rel);
    // Symlinks are checked on the real path when it exists.
    match std::fs::canonicalize(&joined) {
        Ok(real) if real.starts_with(root) => Ok(real),
        Ok(_) => Err(WorkspaceError::Escapes(relative.to_owned())),
        Err(_) => Ok(joined),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn add_list_nested_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s")).unwrap();
        let ws = Workspaces::new(store);
        let a = dir.path().join("a");
        std::fs::create_dir_all(a.join("sub")).unwrap();
        let added = ws.add(&a, None).await.unwrap();
        assert_eq!(added.name, "a");
        assert!(added.id.starts_with("ws_"));
        assert_eq!(ws.add(&a, None).await.unwrap(), added, "idempotent");
        assert!(matches!(
            ws.add(&a.join("sub"), None).await,
            Err(WorkspaceError::Nested { .. })
        ));
        assert!(matches!(
            ws.add(dir.path(), None).await,
            Err(WorkspaceError::Contains { .. })
        ));
        assert!(matches!(
            ws.add(&dir.path().join("missing"), None).await,
            Err(WorkspaceError::NotADirectory(_))
        ));
        assert_eq!(ws.find("a").unwrap().unwrap().id, added.id);
        assert_eq!(ws.containing(&a.join("sub")).unwrap().unwrap().id, added.id);
        ws.remove(&added.id).await.unwrap();
        assert!(ws.list().unwrap().is_empty());
    }

    #[test]
    fn paths_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("src")).unwrap();
        assert!(resolve_inside(&root, "src").is_ok());
        assert!(resolve_inside(&root, "../etc").is_err());
        assert!(resolve_inside(&root, "/etc").is_err());
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        assert!(resolve_inside(&root, "link").is_err());
    }
}
