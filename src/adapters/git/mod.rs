//! Git worktrees through libgit2 (`git2`, no network transports): the implementation of the
//! core's `Worktrees`. Every call opens the repository afresh on a blocking thread, so nothing
//! is cached between calls and changes made with the `git` CLI are always seen.
//! Imports only `core` and git2; no other adapter.

mod repo;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::core::worktrees::{
    CreatedWorktree, MergeReport, RemoveOptions, RemovedWorktree, Result, WorktreeError,
    WorktreeInfo, Worktrees,
};

/// Worktrees of local git repositories.
#[derive(Debug, Clone, Copy, Default)]
pub struct GitWorktrees;

impl GitWorktrees {
    pub fn new() -> Self {
        Self
    }
}

/// Runs git work off the async threads: libgit2 calls block on disk (checkout, status walks).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| WorktreeError::Git(format!("the git task did not finish: {e}")))?
}

#[async_trait]
impl Worktrees for GitWorktrees {
    async fn git_root(&self, path: &Path) -> Result<PathBuf> {
        let path = path.to_owned();
        blocking(move || repo::git_root(&path)).await
    }

    async fn init(&self, dir: &Path) -> Result<()> {
        let dir = dir.to_owned();
        blocking(move || repo::init(&dir)).await
    }

    async fn create(
        &self,
        project: &Path,
        name: &str,
        base: Option<&str>,
    ) -> Result<CreatedWorktree> {
        let (project, name, base) = (project.to_owned(), name.to_owned(), base.map(str::to_owned));
        let created = blocking(move || repo::create(&project, &name, base.as_deref())).await?;
        tracing::info!(
            worktree = %created.worktree.name,
            path = %created.worktree.path.display(),
            base = %created.base.reference,
            commit = %created.base.commit,
            note = created.base.note.as_deref().unwrap_or(""),
            "Worktree created."
        );
        Ok(created)
    }

    async fn list(&self, project: &Path) -> Result<Vec<WorktreeInfo>> {
        let project = project.to_owned();
        blocking(move || repo::list(&project)).await
    }

    async fn merge(&self, project: &Path, name: &str, target: Option<&str>) -> Result<MergeReport> {
        let (project, name, target) = (
            project.to_owned(),
            name.to_owned(),
            target.map(str::to_owned),
        );
        let report = blocking(move || repo::merge(&project, &name, target.as_deref())).await?;
        tracing::info!(
            source = %report.source,
            target = %report.target,
            kind = ?report.kind,
            commits = report.commits,
            head = %report.head,
            "Worktree merged."
        );
        Ok(report)
    }

    async fn remove(
        &self,
        project: &Path,
        name: &str,
        options: RemoveOptions,
    ) -> Result<RemovedWorktree> {
        let (project, name) = (project.to_owned(), name.to_owned());
        let removed = blocking(move || repo::remove(&project, &name, options)).await?;
        tracing::info!(
            worktree = %removed.worktree.name,
            deleted_branch = ?removed.deleted_branch,
            "Worktree removed."
        );
        Ok(removed)
    }
}
