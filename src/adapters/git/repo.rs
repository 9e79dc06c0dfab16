//! The blocking git2 work behind `GitWorktrees`. Each function opens the repository containing
//! `project`, and works on its common repository so every worktree is reachable from any of them.

use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{
    Branch, BranchType, CheckoutNotificationType, Commit, ErrorCode, Oid, Repository, Signature,
    StatusOptions, WorktreeAddOptions, WorktreeLockStatus, WorktreePruneOptions,
};

use crate::core::worktrees::{
    branch_for, sanitize_name, BaseCommit, CreatedWorktree, MergeKind, MergeReport, RemoveOptions,
    RemovedWorktree, Result, WorktreeError, WorktreeInfo, WORKTREES_DIR,
};

/// Written into a worktree's git admin directory (`.git/worktrees/<name>/`) when kimaki creates
/// it. That directory is git's private record of the worktree, so the marker never shows in a
/// checkout, and `git worktree remove`/`prune` deletes it along with the record.
const CREATED_MARKER: &str = "kimaki-created";

/// Upstream tried for a base branch that has none configured.
const DEFAULT_REMOTE: &str = "origin";

/// Who signs a merge commit when the repository has no `user.name`/`user.email`.
const FALLBACK_SIGNATURE: (&str, &str) = ("kimaki", "kimaki@localhost");

/// Inside this adapter a git2 error is just a git failure; the user-facing cases (not a repo,
/// name taken, conflicts, …) are detected explicitly before git would fail on them.
impl From<git2::Error> for WorktreeError {
    fn from(e: git2::Error) -> Self {
        WorktreeError::Git(e.message().to_owned())
    }
}

/// The repository containing `path`, refusing bare repositories (they have no checkout).
fn open(path: &Path) -> Result<Repository> {
    let not_a_repo = || WorktreeError::NotAGitRepo {
        path: path.to_owned(),
    };
    let repo = Repository::discover(path).map_err(|e| match e.code() {
        ErrorCode::NotFound => not_a_repo(),
        _ => e.into(),
    })?;
    if repo.is_bare() {
        return Err(not_a_repo());
    }
    Ok(repo)
}

/// A new repository in `dir` whose `main` branch holds one empty commit.
pub fn init(dir: &Path) -> Result<()> {
    let mut options = git2::RepositoryInitOptions::new();
    options.initial_head("main").no_reinit(true);
    let repo = Repository::init_opts(dir, &options)?;
    let tree = repo.find_tree(repo.index()?.write_tree()?)?;
    let sig = signature(&repo)?;
    repo.commit(Some("HEAD"), &sig, &sig, "Start the project", &tree, &[])?;
    Ok(())
}

/// The repository of the main checkout (the one holding `.git`), from any of its worktrees.
fn main_of(repo: Repository) -> Result<Repository> {
    if repo.is_worktree() {
        Ok(Repository::open(repo.commondir())?)
    } else {
        Ok(repo)
    }
}

/// Canonical when it exists (git2 hands out paths with a trailing `/` and without resolving
/// symlinks); as given otherwise.
fn clean(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.components().collect())
}

fn workdir(repo: &Repository) -> Result<PathBuf> {
    repo.workdir()
        .map(clean)
        .ok_or_else(|| WorktreeError::NotAGitRepo {
            path: repo.path().to_owned(),
        })
}

pub(super) fn git_root(path: &Path) -> Result<PathBuf> {
    workdir(&open(path)?)
}

/// `<main checkout>/../.worktrees/<name>`
fn worktree_dir(main: &Repository, name: &str) -> Result<PathBuf> {
    let root = workdir(main)?;
    let parent = root.parent().ok_or_else(|| {
        WorktreeError::Git(format!(
            "{} has no parent directory for {WORKTREES_DIR}",
            root.display()
        ))
    })?;
    Ok(parent.join(WORKTREES_DIR).join(name))
}

pub(super) fn create(
    project: &Path,
    raw_name: &str,
    base: Option<&str>,
) -> Result<CreatedWorktree> {
    let name = sanitize_name(raw_name)?;
    let repo = open(project)?;
    let branch_name = branch_for(&name);
    if !Branch::name_is_valid(&branch_name)? {
        return Err(WorktreeError::BadName {
            name: raw_name.to_owned(),
            reason: format!("git does not accept the branch name {branch_name}"),
        });
    }
    let mut base = resolve_base(&repo, base)?;
    let dirty = changed_files(&repo, false)?;
    if !dirty.is_empty() {
        base.note = Some(join_notes(
            base.note.take(),
            format!(
                "{} uncommitted change(s) in {} stay there; the worktree starts from the commit",
                dirty.len(),
                workdir(&repo)?.display()
            ),
        ));
    }
    let main = main_of(repo)?;
    let taken = |reason: String| WorktreeError::NameTaken {
        name: name.clone(),
        reason,
    };
    if let Ok(existing) = main.find_worktree(&name) {
        return Err(taken(format!(
            "a worktree of that name exists at {}",
            clean(existing.path()).display()
        )));
    }
    if main.find_branch(&branch_name, BranchType::Local).is_ok() {
        return Err(taken(format!(
            "the branch {branch_name} already exists (`git branch -d {branch_name}` if it is no longer needed)"
        )));
    }
    let dir = worktree_dir(&main, &name)?;
    if dir.exists() {
        return Err(taken(format!("{} already exists", dir.display())));
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| WorktreeError::Git(format!("cannot create {}: {e}", parent.display())))?;
    }
    let base_commit = main.find_commit(Oid::from_str(&base.commit)?)?;
    let mut branch = main.branch(&branch_name, &base_commit, false)?;
    let added = {
        let mut opts = WorktreeAddOptions::new();
        opts.reference(Some(branch.get()));
        main.worktree(&name, &dir, Some(&opts))
    };
    let worktree = match added {
        Ok(w) => w,
        Err(e) => {
            // Leave nothing behind: the branch was made only for this worktree.
            if let Err(undo) = branch.delete() {
                tracing::warn!(branch = %branch_name, error = %undo, "Could not delete the branch of a failed worktree.");
            }
            return Err(e.into());
        }
    };
    let marker = Repository::open_from_worktree(&worktree)?
        .path()
        .join(CREATED_MARKER);
    if let Err(e) = std::fs::write(&marker, b"created by kimaki\n") {
        tracing::warn!(path = %marker.display(), error = %e, "Could not mark the worktree as kimaki's.");
    }
    Ok(CreatedWorktree {
        worktree: describe_linked(&main, &name)?,
        base,
    })
}

fn join_notes(first: Option<String>, second: String) -> String {
    match first {
        Some(first) => format!("{first}; {second}"),
        None => second,
    }
}

/// The base commit: the project's HEAD, or a validated local or remote-tracking branch. A local
/// branch whose upstream (configured, else `origin/<branch>`) is strictly ahead is replaced by
/// the upstream, so a worktree never starts from a stale local branch unnoticed.
fn resolve_base(repo: &Repository, requested: Option<&str>) -> Result<BaseCommit> {
    let (reference, local) = match requested {
        None => {
            let head = repo.head().map_err(|e| match e.code() {
                ErrorCode::UnbornBranch | ErrorCode::NotFound => WorktreeError::BaseNotFound {
                    base: "HEAD".to_owned(),
                    reason: "the repository has no commits yet; commit once first".to_owned(),
                },
                _ => e.into(),
            })?;
            if head.is_branch() {
                let name = head.shorthand()?.to_owned();
                (name, Some(Branch::wrap(head)))
            } else {
                ("HEAD".to_owned(), None)
            }
        }
        Some(b) => {
            let b = b.trim();
            if let Ok(branch) = repo.find_branch(b, BranchType::Local) {
                (b.to_owned(), Some(branch))
            } else if repo.find_branch(b, BranchType::Remote).is_ok() {
                (b.to_owned(), None)
            } else {
                return Err(WorktreeError::BaseNotFound {
                    base: b.to_owned(),
                    reason: "no local or remote-tracking branch has that name".to_owned(),
                });
            }
        }
    };
    let commit = match &local {
        Some(branch) => branch.get().peel_to_commit()?,
        None => repo.revparse_single(&reference)?.peel_to_commit()?,
    };
    let mut base = describe_commit(&reference, &commit, None)?;
    let Some(branch) = local else {
        return Ok(base);
    };
    let upstream = branch.upstream().ok().or_else(|| {
        repo.find_branch(&format!("{DEFAULT_REMOTE}/{reference}"), BranchType::Remote)
            .ok()
    });
    let Some(upstream) = upstream else {
        return Ok(base);
    };
    let up_name = upstream.get().shorthand()?.to_owned();
    let up_commit = upstream.get().peel_to_commit()?;
    if up_commit.id() == commit.id() {
        return Ok(base);
    }
    let (ahead, behind) = repo.graph_ahead_behind(commit.id(), up_commit.id())?;
    if ahead == 0 && behind > 0 {
        let note = format!(
            "{reference} is {behind} commit(s) behind {up_name}; started from {up_name} instead"
        );
        base = describe_commit(&up_name, &up_commit, Some(note))?;
    } else if ahead > 0 && behind > 0 {
        base.note = Some(format!(
            "{reference} and {up_name} have diverged ({ahead} and {behind} commit(s) of their own); started from the local {reference}"
        ));
    }
    Ok(base)
}

fn describe_commit(
    reference: &str,
    commit: &Commit<'_>,
    note: Option<String>,
) -> Result<BaseCommit> {
    Ok(BaseCommit {
        reference: reference.to_owned(),
        commit: commit.id().to_string(),
        summary: commit
            .summary()
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned(),
        note,
    })
}

pub(super) fn list(project: &Path) -> Result<Vec<WorktreeInfo>> {
    let main = main_of(open(project)?)?;
    let mut out = vec![describe_main(&main)?];
    for name in worktree_names(&main)? {
        out.push(describe_linked(&main, &name)?);
    }
    Ok(out)
}

/// Names of the linked worktrees, sorted (a name that is not UTF-8 cannot be opened by name and
/// is skipped).
fn worktree_names(main: &Repository) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for name in main.worktrees()?.iter() {
        if let Some(name) = name? {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Branch and commit of a checkout's HEAD; the branch is known even before the first commit.
fn head_of(repo: &Repository) -> (Option<String>, Option<String>) {
    match repo.head() {
        Ok(head) => (
            head.is_branch()
                .then(|| head.shorthand().ok().map(str::to_owned))
                .flatten(),
            head.target().map(|o| o.to_string()),
        ),
        Err(_) => {
            let unborn = repo.find_reference("HEAD").ok().and_then(|r| {
                r.symbolic_target()
                    .ok()
                    .flatten()
                    .and_then(|t| t.strip_prefix("refs/heads/"))
                    .map(str::to_owned)
            });
            (unborn, None)
        }
    }
}

fn describe_main(main: &Repository) -> Result<WorktreeInfo> {
    let path = workdir(main)?;
    let (branch, head) = head_of(main);
    Ok(WorktreeInfo {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path,
        branch,
        head,
        is_main: true,
        locked: false,
        prunable: false,
        created_by_kimaki: false,
    })
}

fn describe_linked(main: &Repository, name: &str) -> Result<WorktreeInfo> {
    let wt = main.find_worktree(name)?;
    let locked = !matches!(wt.is_locked()?, WorktreeLockStatus::Unlocked);
    let prunable = wt.validate().is_err() || !wt.path().is_dir();
    let (branch, head) = if prunable {
        (None, None)
    } else {
        head_of(&Repository::open_from_worktree(&wt)?)
    };
    let created_by_kimaki = main
        .commondir()
        .join("worktrees")
        .join(name)
        .join(CREATED_MARKER)
        .is_file();
    Ok(WorktreeInfo {
        name: name.to_owned(),
        path: clean(wt.path()),
        branch,
        head,
        is_main: false,
        locked,
        prunable,
        created_by_kimaki,
    })
}

/// A linked worktree by its name as typed or as `create` would have sanitised it.
fn find_linked(main: &Repository, name: &str) -> Result<WorktreeInfo> {
    let names = worktree_names(main)?;
    let sanitized = sanitize_name(name).ok();
    let wanted = names
        .iter()
        .find(|n| *n == name)
        .or_else(|| names.iter().find(|n| Some(*n) == sanitized.as_ref()))
        .ok_or_else(|| WorktreeError::NotFound {
            name: name.to_owned(),
        })?;
    describe_linked(main, wanted)
}

/// Paths with uncommitted changes; untracked files count only when asked (they are work that a
/// merge would leave behind, but in a merge target they are harmless unless in the way).
fn changed_files(repo: &Repository, untracked: bool) -> Result<Vec<String>> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(untracked)
        .recurse_untracked_dirs(untracked)
        .include_ignored(false);
    let statuses = repo.statuses(Some(&mut opts))?;
    let mut files: Vec<String> = statuses
        .iter()
        .filter(|s| !s.status().is_empty() && !s.status().is_ignored())
        .map(|s| String::from_utf8_lossy(s.path_bytes()).into_owned())
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

fn refuse_if_dirty(repo: &Repository, untracked: bool) -> Result<()> {
    let files = changed_files(repo, untracked)?;
    if files.is_empty() {
        Ok(())
    } else {
        Err(WorktreeError::DirtyWorktree {
            path: workdir(repo)?,
            files,
        })
    }
}

/// The checkout (main or linked) whose HEAD is `refs/heads/<branch>`, if any: after the branch
/// moves, its files must move too.
fn checkout_holding(main: &Repository, branch: &str) -> Result<Option<Repository>> {
    let full = format!("refs/heads/{branch}");
    let holds = |repo: &Repository| {
        repo.find_reference("HEAD")
            .ok()
            .and_then(|h| h.symbolic_target().ok().flatten().map(|t| t == full))
            .unwrap_or(false)
    };
    let main_again = Repository::open(main.path())?;
    if holds(&main_again) {
        return Ok(Some(main_again));
    }
    for name in worktree_names(main)? {
        let Ok(wt) = main.find_worktree(&name) else {
            continue;
        };
        if wt.validate().is_err() {
            continue;
        }
        let repo = Repository::open_from_worktree(&wt)?;
        if holds(&repo) {
            return Ok(Some(repo));
        }
    }
    Ok(None)
}

fn signature(repo: &Repository) -> Result<Signature<'static>> {
    match repo.signature() {
        Ok(s) => Ok(s),
        Err(_) => Ok(Signature::now(FALLBACK_SIGNATURE.0, FALLBACK_SIGNATURE.1)?),
    }
}

/// Commits reachable from `tip` but not from `base`.
fn count_new(repo: &Repository, tip: Oid, base: Oid) -> Result<usize> {
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    walk.hide(base)?;
    let mut n = 0;
    for oid in walk {
        oid?;
        n += 1;
    }
    Ok(n)
}

pub(super) fn merge(project: &Path, name: &str, target: Option<&str>) -> Result<MergeReport> {
    let main = main_of(open(project)?)?;
    let info = find_linked(&main, name)?;
    if info.prunable {
        return Err(WorktreeError::MissingDirectory {
            name: info.name,
            path: info.path,
        });
    }
    let wt_repo = Repository::open_from_worktree(&main.find_worktree(&info.name)?)?;
    let source = info
        .branch
        .clone()
        .unwrap_or_else(|| format!("HEAD of {}", info.name));
    // Looked up again through `main`: libgit2 silently drops commit parents that belong to
    // another repository handle, even one of the same repository.
    let source_commit = main.find_commit(wt_repo.head()?.peel_to_commit()?.id())?;
    refuse_if_dirty(&wt_repo, true)?;

    let target = match target {
        Some(t) => {
            let t = t.trim();
            main.find_branch(t, BranchType::Local)
                .map_err(|_| WorktreeError::TargetNotFound {
                    target: t.to_owned(),
                    reason: "no local branch has that name".to_owned(),
                })?;
            t.to_owned()
        }
        None => head_of(&main)
            .0
            .ok_or_else(|| WorktreeError::TargetNotFound {
                target: "HEAD".to_owned(),
                reason: "the main checkout is not on a branch; name the branch to merge into"
                    .to_owned(),
            })?,
    };
    if info.branch.as_deref() == Some(target.as_str()) {
        return Err(WorktreeError::TargetNotFound {
            target,
            reason: format!("it is the branch of worktree {} itself", info.name),
        });
    }
    let holder = checkout_holding(&main, &target)?;
    if let Some(holder) = &holder {
        refuse_if_dirty(holder, false)?;
    }
    let target_ref = format!("refs/heads/{target}");
    let target_commit = main.find_reference(&target_ref)?.peel_to_commit()?;
    let (ours, theirs) = (target_commit.id(), source_commit.id());
    if ours == theirs || main.graph_descendant_of(ours, theirs)? {
        return Ok(MergeReport {
            kind: MergeKind::UpToDate,
            source,
            target,
            commits: 0,
            head: ours.to_string(),
        });
    }
    let commits = count_new(&main, theirs, ours)?;
    let (kind, new_head) = if main.graph_descendant_of(theirs, ours)? {
        (MergeKind::FastForward, theirs)
    } else {
        // Merged in memory: a conflict is found before any checkout or ref is touched.
        let mut index = main.merge_commits(&target_commit, &source_commit, None)?;
        if index.has_conflicts() {
            let mut files: Vec<String> = Vec::new();
            for conflict in index.conflicts()? {
                let conflict = conflict?;
                let entry = conflict.our.or(conflict.their).or(conflict.ancestor);
                if let Some(entry) = entry {
                    files.push(String::from_utf8_lossy(&entry.path).into_owned());
                }
            }
            files.sort();
            files.dedup();
            return Err(WorktreeError::Conflicts {
                source_ref: source,
                target,
                files,
            });
        }
        let tree = main.find_tree(index.write_tree_to(&main)?)?;
        let sig = signature(&main)?;
        let message = format!("Merge branch '{source}' into {target}");
        let commit = main.commit(
            None,
            &sig,
            &sig,
            &message,
            &tree,
            &[&target_commit, &source_commit],
        )?;
        (MergeKind::MergeCommit, commit)
    };
    let reflog = format!("kimaki: merge {source} into {target} ({kind:?})");
    match holder {
        Some(holder) => {
            // Files first (a safe checkout refuses before writing anything), then the branch.
            let new_commit = holder.find_commit(new_head)?;
            let mut blocked: Vec<String> = Vec::new();
            let result = {
                let mut checkout = CheckoutBuilder::new();
                checkout
                    .safe()
                    .notify_on(CheckoutNotificationType::CONFLICT)
                    .notify(|_, path, _, _, _| {
                        if let Some(p) = path {
                            blocked.push(p.display().to_string());
                        }
                        true
                    });
                holder.checkout_tree(new_commit.as_object(), Some(&mut checkout))
            };
            if let Err(e) = result {
                if e.code() == ErrorCode::Conflict || !blocked.is_empty() {
                    blocked.sort();
                    return Err(WorktreeError::DirtyWorktree {
                        path: workdir(&holder)?,
                        files: blocked,
                    });
                }
                return Err(e.into());
            }
            holder
                .find_reference(&target_ref)?
                .set_target(new_head, &reflog)?;
        }
        None => {
            main.find_reference(&target_ref)?
                .set_target(new_head, &reflog)?;
        }
    }
    Ok(MergeReport {
        kind,
        source,
        target,
        commits,
        head: new_head.to_string(),
    })
}

pub(super) fn remove(
    project: &Path,
    name: &str,
    options: RemoveOptions,
) -> Result<RemovedWorktree> {
    let main = main_of(open(project)?)?;
    let info = find_linked(&main, name)?;
    let wt = main.find_worktree(&info.name)?;
    if !info.prunable && !options.force {
        refuse_if_dirty(&Repository::open_from_worktree(&wt)?, true)?;
    }
    if info.locked && !options.force {
        return Err(WorktreeError::Git(format!(
            "worktree {} is locked (`git worktree unlock {}` first, or force)",
            info.name,
            info.path.display()
        )));
    }
    let branch = info.branch.clone().filter(|_| options.delete_branch);
    if let (Some(branch), false) = (&branch, options.force) {
        let tip = main
            .find_branch(branch, BranchType::Local)?
            .get()
            .peel_to_commit()?
            .id();
        let (target, into) = match main.head() {
            Ok(h) => (
                h.shorthand().unwrap_or("HEAD").to_owned(),
                h.peel_to_commit()?.id(),
            ),
            Err(e) => return Err(e.into()),
        };
        let commits = count_new(&main, tip, into)?;
        if commits > 0 {
            return Err(WorktreeError::Unmerged {
                branch: branch.clone(),
                target,
                commits,
            });
        }
    }
    let mut prune = WorktreePruneOptions::new();
    prune.valid(true).working_tree(true).locked(options.force);
    wt.prune(Some(&mut prune))?;
    if let Some(branch) = &branch {
        main.find_branch(branch, BranchType::Local)?.delete()?;
    }
    Ok(RemovedWorktree {
        worktree: info,
        deleted_branch: branch,
    })
}
