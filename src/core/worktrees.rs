//! Git worktrees as the core sees them: a session may work in its own checkout of the project,
//! on the branch `opencode/<name>`, in `<project>/../.worktrees/<name>`, and be merged back later.
//! The core only names the operations and their data; the git implementation is an adapter, so
//! nothing here touches a repository.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Branches of worktrees kimaki creates live under this prefix (users and tools expect it).
pub const BRANCH_PREFIX: &str = "opencode/";

/// Worktrees kimaki creates go into this directory next to the project's main checkout.
pub const WORKTREES_DIR: &str = ".worktrees";

/// Longest explicit name accepted; a branch and a directory are made from it.
pub const MAX_NAME_CHARS: usize = 64;

/// Generated names longer than this lose their inner vowels, then are cut, so thread titles and
/// branch names stay readable at a glance.
const AUTO_NAME_CHARS: usize = 20;

/// Used when a title has nothing a name can be made from.
const FALLBACK_AUTO_NAME: &str = "session";

/// Files named in an error message before the rest are summarised as "and N more".
const MAX_LISTED_FILES: usize = 20;

pub type Result<T> = std::result::Result<T, WorktreeError>;

/// One checkout of a repository: the main one or a linked worktree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeInfo {
    /// The worktree's name in git (for the main checkout: its directory's name).
    pub name: String,
    /// The checkout's top directory.
    pub path: PathBuf,
    /// The checked-out branch; `None` when the HEAD is detached (or unreadable).
    pub branch: Option<String>,
    /// The commit checked out; `None` before the first commit or when the directory is gone.
    pub head: Option<String>,
    pub is_main: bool,
    /// Locked with `git worktree lock`: it is never pruned or removed without force.
    pub locked: bool,
    /// Registered in git, but its directory is gone.
    pub prunable: bool,
    /// Made by kimaki (as opposed to `git worktree add` by hand or another tool).
    pub created_by_kimaki: bool,
}

/// The commit a new worktree starts from, and why that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseCommit {
    /// What the base was resolved from: a branch (`main`, `origin/main`) or `HEAD` when detached.
    pub reference: String,
    /// Full commit id.
    pub commit: String,
    /// The commit's first line.
    pub summary: String,
    /// Worth telling the user: the base was moved to a newer upstream, the local branch diverged
    /// from its upstream, or uncommitted changes stay behind in the main checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A worktree that was just created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedWorktree {
    pub worktree: WorktreeInfo,
    pub base: BaseCommit,
}

/// A worktree to run a session in, created if needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenedWorktree {
    pub worktree: WorktreeInfo,
    /// Where the session works: the project's own directory inside the worktree (the worktree's
    /// top unless the project is a subdirectory of its repository).
    pub workspace: PathBuf,
    /// Set when this call created the worktree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<BaseCommit>,
}

/// How a worktree's branch went into its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeKind {
    /// The target only moved forward; no new commit.
    FastForward,
    /// Both had new commits; a merge commit joins them.
    MergeCommit,
    /// The target already contains everything; nothing changed.
    UpToDate,
}

/// The result of merging a worktree back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeReport {
    pub kind: MergeKind,
    /// The worktree's branch (or `HEAD of <name>` when it is detached).
    pub source: String,
    /// The branch merged into.
    pub target: String,
    /// Commits of the worktree that the target did not have before.
    pub commits: usize,
    /// The target's commit afterwards.
    pub head: String,
}

/// What `remove` may do beyond removing a clean worktree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveOptions {
    /// Also delete the worktree's branch (refused while it has unmerged commits, unless `force`).
    pub delete_branch: bool,
    /// Remove even with uncommitted changes, a lock, or unmerged commits on a deleted branch.
    pub force: bool,
}

/// A worktree that was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedWorktree {
    /// As it was before removal.
    pub worktree: WorktreeInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorktreeError {
    #[error("{} is not inside a git repository; run `git init` there (and commit once) to use worktrees, or work in the main checkout", path.display())]
    NotAGitRepo { path: PathBuf },
    #[error("{} has uncommitted changes ({}); commit or stash them first", path.display(), list_files(files))]
    DirtyWorktree { path: PathBuf, files: Vec<String> },
    #[error("the worktree name `{name}` is taken: {reason}")]
    NameTaken { name: String, reason: String },
    #[error("`{name}` cannot be a worktree name: {reason}")]
    BadName { name: String, reason: String },
    #[error("base `{base}` not found: {reason}")]
    BaseNotFound { base: String, reason: String },
    #[error("cannot merge into `{target}`: {reason}")]
    TargetNotFound { target: String, reason: String },
    #[error("merging {source_ref} into {target} conflicts in {}; nothing was changed — resolve it in the worktree (merge {target} there first), then merge again", list_files(files))]
    Conflicts {
        source_ref: String,
        target: String,
        files: Vec<String>,
    },
    #[error("no worktree named `{name}`; `kimaki worktree list` shows them")]
    NotFound { name: String },
    #[error("worktree `{name}` is registered but its directory {} is gone; remove it with `kimaki worktree remove`", path.display())]
    MissingDirectory { name: String, path: PathBuf },
    #[error("{branch} has {commits} commit(s) that {target} does not; merge it first, or force")]
    Unmerged {
        branch: String,
        target: String,
        commits: usize,
    },
    #[error("git: {0}")]
    Git(String),
}

/// "a.rs, b.rs and 3 more"
fn list_files(files: &[String]) -> String {
    let shown = files
        .iter()
        .take(MAX_LISTED_FILES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match files.len().saturating_sub(MAX_LISTED_FILES) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Creating, listing, merging and removing git worktrees of a project. `project` is any directory
/// inside a checkout (the main one or a worktree); all worktrees of its repository are reachable
/// from it, including ones kimaki did not create.
#[async_trait]
pub trait Worktrees: Send + Sync {
    /// The top of the checkout containing `path`, or `NotAGitRepo`. Cheap: check it before
    /// promising anyone a worktree.
    async fn git_root(&self, path: &Path) -> Result<PathBuf>;

    /// Makes the empty directory `dir` a repository on `main` with one empty commit, so a new
    /// project can have worktrees at once.
    async fn init(&self, dir: &Path) -> Result<()>;

    /// A new worktree `name` on a new branch `opencode/<name>`, starting from the project's
    /// HEAD or from the local or remote-tracking branch `base` (moved to its upstream when that
    /// is strictly ahead). The report names the base commit.
    async fn create(
        &self,
        project: &Path,
        name: &str,
        base: Option<&str>,
    ) -> Result<CreatedWorktree>;

    /// The main checkout first, then every linked worktree by name.
    async fn list(&self, project: &Path) -> Result<Vec<WorktreeInfo>>;

    /// Merges worktree `name`'s HEAD into `target` (default: the branch of the main checkout),
    /// fast-forward when possible, else with a merge commit. Refused, with nothing changed, when
    /// either checkout has uncommitted changes or the merge conflicts.
    async fn merge(&self, project: &Path, name: &str, target: Option<&str>) -> Result<MergeReport>;

    /// Removes worktree `name` (its directory and git's record of it).
    async fn remove(
        &self,
        project: &Path,
        name: &str,
        options: RemoveOptions,
    ) -> Result<RemovedWorktree>;

    /// The worktree `name` to run a session of `project` in: an existing one of that name (made
    /// by kimaki or not), else a new one from the project's HEAD.
    async fn open_or_create(&self, project: &Path, name: &str) -> Result<OpenedWorktree> {
        let root = self.git_root(project).await?;
        let existing = self.list(project).await?.into_iter().find(|w| {
            !w.is_main && (w.name == name || sanitize_name(name).is_ok_and(|n| n == w.name))
        });
        let (worktree, created) = match existing {
            Some(w) if w.prunable => {
                return Err(WorktreeError::MissingDirectory {
                    name: w.name,
                    path: w.path,
                })
            }
            Some(w) => (w, None),
            None => {
                let made = self.create(project, name, None).await?;
                (made.worktree, Some(made.base))
            }
        };
        Ok(OpenedWorktree {
            workspace: workspace_in(&worktree.path, &root, project),
            worktree,
            created,
        })
    }
}

/// Where a session of `project` works inside a worktree: the same place relative to the top of
/// the checkout (`checkout_root`, from `Worktrees::git_root`), so a project in a subdirectory of
/// its repository stays in that subdirectory.
pub fn workspace_in(worktree: &Path, checkout_root: &Path, project: &Path) -> PathBuf {
    match project.strip_prefix(checkout_root) {
        // `join("")` would add a trailing slash, and lanes compare directories exactly.
        Ok(inside) if !inside.as_os_str().is_empty() => worktree.join(inside),
        _ => worktree.to_owned(),
    }
}

/// The name to use for a user-given worktree name: kept as typed where git allows it, with runs
/// of spaces, slashes and other characters a branch or directory cannot hold turned into `-`.
/// Refused when nothing usable is left, when it is too long, or when git would reject it.
pub fn sanitize_name(raw: &str) -> Result<String> {
    let bad = |reason: &str| WorktreeError::BadName {
        name: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let mut out = String::with_capacity(raw.len());
    for c in raw.trim().chars() {
        let keep = c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
        let c = if keep { c } else { '-' };
        // Collapse "--" (from replaced runs) and ".." (never valid in a ref).
        if (c == '-' || c == '.') && out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    let name = out.trim_matches(|c| c == '-' || c == '.');
    if name.is_empty() {
        return Err(bad("it needs at least one letter or digit"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(bad(&format!(
            "it is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.ends_with(".lock") {
        return Err(bad("git reserves names ending in `.lock`"));
    }
    Ok(name.to_owned())
}

/// A short name made from a title (a thread name or a prompt): lowercase ASCII words joined by
/// `-`. Past 20 characters the vowels inside words go, then whole words from the end, so the name
/// never stops mid-word unless its first word alone is too long.
pub fn auto_name(title: &str) -> String {
    let words: Vec<String> = title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let full = words.join("-");
    // ASCII only from here on, so byte lengths are character counts.
    if full.len() <= AUTO_NAME_CHARS {
        return if full.is_empty() {
            FALLBACK_AUTO_NAME.to_owned()
        } else {
            full
        };
    }
    let mut name = String::new();
    for word in &words {
        let mut chars = word.chars();
        let first = chars.next().map(String::from).unwrap_or_default();
        let short = first + &chars.filter(|c| !"aeiou".contains(*c)).collect::<String>();
        let sep = usize::from(!name.is_empty());
        if name.len() + sep + short.len() > AUTO_NAME_CHARS {
            if name.is_empty() {
                name = short.chars().take(AUTO_NAME_CHARS).collect();
            }
            break;
        }
        if sep == 1 {
            name.push('-');
        }
        name.push_str(&short);
    }
    name
}

/// The branch kimaki creates for worktree `name`.
pub fn branch_for(name: &str) -> String {
    format!("{BRANCH_PREFIX}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn names_are_kept_where_git_allows_them() {
        assert_eq!(sanitize_name("fix-auth").unwrap(), "fix-auth");
        assert_eq!(sanitize_name("Fix_Auth.v2").unwrap(), "Fix_Auth.v2");
        assert_eq!(sanitize_name("  fix auth  bug ").unwrap(), "fix-auth-bug");
        assert_eq!(sanitize_name("feature/login").unwrap(), "feature-login");
        assert_eq!(
            sanitize_name("a:b?c*d[e]~f^g\\h").unwrap(),
            "a-b-c-d-e-f-g-h"
        );
        assert_eq!(sanitize_name("..hidden..name..").unwrap(), "hidden.name");
        assert_eq!(sanitize_name("-x-").unwrap(), "x");
        assert_eq!(sanitize_name("a@{b}").unwrap(), "a-b");
        assert_eq!(sanitize_name("café").unwrap(), "café");
    }

    #[test]
    fn unusable_names_are_refused_with_a_reason() {
        for raw in ["", "   ", "..", "///", "-", "@{}"] {
            let e = sanitize_name(raw).unwrap_err();
            assert!(
                matches!(&e, WorktreeError::BadName { name, .. } if name == raw),
                "{raw:?}: {e:?}"
            );
            assert!(e.to_string().contains("letter or digit"), "{e}");
        }
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        assert!(sanitize_name(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than 64"));
        assert_eq!(sanitize_name(&long[1..]).unwrap(), long[1..]);
        assert!(sanitize_name("branch.lock")
            .unwrap_err()
            .to_string()
            .contains(".lock"));
    }

    #[test]
    fn auto_names_are_short_and_readable() {
        assert_eq!(auto_name("Fix the login bug"), "fix-the-login-bug");
        assert_eq!(
            auto_name("Refactor authentication middleware"),
            "rfctr-athntctn"
        );
        assert_eq!(
            auto_name("Please refactor the authentication layer"),
            "pls-rfctr-th"
        );
        assert_eq!(auto_name("Make it work"), "make-it-work");
        assert_eq!(auto_name("🌳 !!"), "session");
        assert_eq!(auto_name(&"x".repeat(30)), "x".repeat(20));
        assert_eq!(auto_name(&"word ".repeat(40)), "wrd-wrd-wrd-wrd-wrd");
        assert!(sanitize_name(&auto_name("Über café: résumé/parse")).is_ok());
    }

    #[test]
    fn workspaces_keep_the_project_subdirectory() {
        let wt = Path::new("/r/.worktrees/x");
        assert_eq!(workspace_in(wt, Path::new("/r/p"), Path::new("/r/p")), wt);
        assert_eq!(
            workspace_in(wt, Path::new("/r/p"), Path::new("/r/p/app/web")),
            Path::new("/r/.worktrees/x/app/web")
        );
        assert_eq!(
            workspace_in(wt, Path::new("/r/p"), Path::new("/elsewhere")),
            wt
        );
    }

    #[test]
    fn branch_and_messages() {
        assert_eq!(branch_for("x"), "opencode/x");
        let files: Vec<String> = (0..23).map(|i| format!("f{i}")).collect();
        let e = WorktreeError::Conflicts {
            source_ref: "opencode/x".into(),
            target: "main".into(),
            files,
        };
        let text = e.to_string();
        assert!(text.contains("f0, f1"), "{text}");
        assert!(text.contains("f19 and 3 more"), "{text}");
        assert!(!text.contains("f20"), "{text}");
    }
}
