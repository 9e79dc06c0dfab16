//! `kimaki worktree create|list|merge|remove`: git worktrees of a registered project. Worktrees
//! live in the repository, not in kimaki's store, so the git work runs in this process whether or
//! not kimaki is running; a running kimaki is only asked where the project is.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::backend::{control_failure, Backend};
use super::output::{exit, print_json, Failure};
use super::GlobalArgs;
use crate::adapters::control::Call;
use crate::adapters::git::GitWorktrees;
use crate::config::Loaded;
use crate::core::worktrees::{MergeKind, RemoveOptions, WorktreeError, Worktrees};
use crate::core::Workspace;

/// Commit ids are shown this long to people (JSON carries them whole).
const SHORT_COMMIT: usize = 10;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kimaki worktree create --project api login              branch opencode/login in ../.worktrees/login
  kimaki worktree create --project api fix --base origin/main
  kimaki worktree list --project api --json              every worktree, also ones made with `git worktree add`
  kimaki worktree merge --project api login              into the main checkout's branch
  kimaki worktree remove --project api login --delete-branch

Sessions run in a worktree with `kimaki send --project api --worktree login --prompt …`.")]
pub struct WorktreeArgs {
    #[command(subcommand)]
    pub command: WorktreeCommand,
}

/// Options every worktree command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// A registered project (its directory, name or id).
    #[arg(long, short = 'P')]
    pub project: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum WorktreeCommand {
    /// Create worktree NAME: a new branch opencode/NAME checked out in ../.worktrees/NAME next to
    /// the project, starting from its HEAD (or --base). Prints the base commit.
    Create {
        #[command(flatten)]
        common: Common,
        name: String,
        /// Start from this local or remote-tracking branch instead of HEAD (a local branch whose
        /// upstream is strictly ahead starts from the upstream).
        #[arg(long, value_name = "BRANCH")]
        base: Option<String>,
    },
    /// List every worktree of the project's repository, the main checkout first.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Merge worktree NAME into the main checkout's branch (or --into): fast-forward when
    /// possible, else a merge commit. Refused with uncommitted changes or conflicts.
    Merge {
        #[command(flatten)]
        common: Common,
        name: String,
        /// The local branch to merge into.
        #[arg(long, value_name = "BRANCH")]
        into: Option<String>,
    },
    /// Remove worktree NAME (its directory and git's record of it).
    Remove {
        #[command(flatten)]
        common: Common,
        name: String,
        /// Delete its branch too (refused while it has unmerged commits, unless --force).
        #[arg(long)]
        delete_branch: bool,
        /// Remove even with uncommitted changes, a lock, or unmerged commits.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(_global: &GlobalArgs, args: WorktreeArgs, loaded: Loaded) -> Result<u8, Failure> {
    let rt = super::runtime()?;
    rt.block_on(async move {
        let git = GitWorktrees::new();
        match args.command {
            WorktreeCommand::Create { common, name, base } => {
                let project = project_dir(&loaded, &common.project).await?;
                let made = git
                    .create(&project, &name, base.as_deref())
                    .await
                    .map_err(worktree_failure)?;
                if common.json {
                    return print_json(&made).map(|_| exit::OK);
                }
                let w = &made.worktree;
                println!(
                    "Created worktree {} at {} (branch {}).",
                    w.name,
                    w.path.display(),
                    w.branch.as_deref().unwrap_or("-")
                );
                println!(
                    "Base: {} @ {} {}",
                    made.base.reference,
                    short(&made.base.commit),
                    made.base.summary
                );
                if let Some(note) = &made.base.note {
                    println!("Note: {note}.");
                }
                println!(
                    "Start a session there: kimaki send --project {} --worktree {} --prompt …",
                    common.project, w.name
                );
            }
            WorktreeCommand::List { common } => {
                let project = project_dir(&loaded, &common.project).await?;
                let all = git.list(&project).await.map_err(worktree_failure)?;
                if common.json {
                    return print_json(&all).map(|_| exit::OK);
                }
                for w in &all {
                    let mut tags = Vec::new();
                    if w.is_main {
                        tags.push("main");
                    }
                    if w.created_by_kimaki {
                        tags.push("kimaki");
                    }
                    if w.locked {
                        tags.push("locked");
                    }
                    if w.prunable {
                        tags.push("missing");
                    }
                    println!(
                        "{:<24} {:<32} {:<10} {}  {}",
                        w.name,
                        w.branch.as_deref().unwrap_or("(detached)"),
                        w.head.as_deref().map(short).unwrap_or("-"),
                        w.path.display(),
                        tags.join(",")
                    );
                }
            }
            WorktreeCommand::Merge { common, name, into } => {
                let project = project_dir(&loaded, &common.project).await?;
                let report = git
                    .merge(&project, &name, into.as_deref())
                    .await
                    .map_err(worktree_failure)?;
                if common.json {
                    return print_json(&report).map(|_| exit::OK);
                }
                match report.kind {
                    MergeKind::UpToDate => println!(
                        "{} already contains {}; nothing to merge.",
                        report.target, report.source
                    ),
                    MergeKind::FastForward => println!(
                        "Fast-forwarded {} to {} ({} commit(s) from {}).",
                        report.target,
                        short(&report.head),
                        report.commits,
                        report.source
                    ),
                    MergeKind::MergeCommit => println!(
                        "Merged {} into {} with merge commit {} ({} commit(s)).",
                        report.source,
                        report.target,
                        short(&report.head),
                        report.commits
                    ),
                }
            }
            WorktreeCommand::Remove {
                common,
                name,
                delete_branch,
                force,
            } => {
                let project = project_dir(&loaded, &common.project).await?;
                let options = RemoveOptions {
                    delete_branch,
                    force,
                };
                let removed = git
                    .remove(&project, &name, options)
                    .await
                    .map_err(worktree_failure)?;
                if common.json {
                    return print_json(&removed).map(|_| exit::OK);
                }
                let w = &removed.worktree;
                match &removed.deleted_branch {
                    Some(b) => println!(
                        "Removed worktree {} ({}) and its branch {b}.",
                        w.name,
                        w.path.display()
                    ),
                    None => println!("Removed worktree {} ({}).", w.name, w.path.display()),
                }
            }
        }
        Ok(exit::OK)
    })
}

fn short(commit: &str) -> &str {
    commit.get(..SHORT_COMMIT).unwrap_or(commit)
}

/// The registered project's directory, from the running kimaki or straight from the store (the
/// store and its lock are released before any git work starts).
async fn project_dir(loaded: &Loaded, key: &str) -> Result<PathBuf, Failure> {
    let canonical = std::fs::canonicalize(key).ok();
    let found = match Backend::connect(loaded).await? {
        Backend::Daemon(c) => {
            let all: Vec<Workspace> = c.call(Call::ProjectList).await.map_err(control_failure)?;
            all.into_iter()
                .find(|w| w.id == key || w.name == key || Some(&w.path) == canonical.as_ref())
        }
        Backend::Direct(d) => d
            .workspaces
            .find(key)
            .map_err(|e| Failure::new(exit::DATA, e.to_string()))?,
    };
    found.map(|w| w.path).ok_or_else(|| {
        Failure::new(exit::USAGE, format!("{key} is not a registered project"))
            .hint(format!("add it with `kimaki project add {key}`"))
    })
}

fn worktree_failure(e: WorktreeError) -> Failure {
    let code = match &e {
        WorktreeError::NotAGitRepo { .. }
        | WorktreeError::BadName { .. }
        | WorktreeError::BaseNotFound { .. }
        | WorktreeError::TargetNotFound { .. }
        | WorktreeError::NotFound { .. } => exit::USAGE,
        WorktreeError::NameTaken { .. }
        | WorktreeError::DirtyWorktree { .. }
        | WorktreeError::Conflicts { .. }
        | WorktreeError::MissingDirectory { .. }
        | WorktreeError::Unmerged { .. }
        | WorktreeError::Git(_) => exit::FAILURE,
    };
    Failure::new(code, e.to_string())
}
