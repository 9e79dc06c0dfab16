//! Git worktrees: created next to the project on `opencode/<name>` with the base commit reported,
//! listed with ones made by hand, merged back (fast-forward, merge commit, refused on conflicts or
//! uncommitted changes with both checkouts untouched), removed; `kimaki send --worktree` and
//! `kimaki worktree` with and without a running kimaki. Real repositories in temp dirs; git runs
//! with no global or system config.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kimaki::adapters::git::GitWorktrees;
use kimaki::core::worktrees::{MergeKind, RemoveOptions, WorktreeError, Worktrees};
use kimaki::core::{JobId, JobQueue};
use kimaki::store::Store;
use nix::sys::signal::Signal;
use pretty_assertions::assert_eq;

use crate::support::kimaki_bin::Kimaki;

/// `git` in `dir`, isolated from the machine's configuration, with a fixed identity.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository at `<dir>/project` on `main` with one commit; the identity is in the repository's
/// own config, where libgit2 finds it for merge commits.
fn init_project(dir: &Path) -> PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    git(&project, &["init", "-q", "-b", "main"]);
    git(&project, &["config", "user.name", "Test"]);
    git(&project, &["config", "user.email", "test@example.com"]);
    commit_file(&project, "shared.txt", "one\ntwo\nthree\n", "initial");
    project
}

fn commit_file(dir: &Path, file: &str, content: &str, message: &str) -> String {
    std::fs::write(dir.join(file), content).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    head(dir)
}

fn head(dir: &Path) -> String {
    git(dir, &["rev-parse", "HEAD"])
}

fn status(dir: &Path) -> String {
    git(dir, &["status", "--porcelain"])
}

struct Repo {
    _tmp: tempfile::TempDir,
    /// The canonical temp dir: the project and `.worktrees` sit side by side in it.
    root: PathBuf,
    project: PathBuf,
}

fn repo() -> Repo {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let project = init_project(&root);
    Repo {
        _tmp: tmp,
        root,
        project,
    }
}

#[tokio::test]
async fn create_puts_branch_and_directory_next_to_the_project_and_reports_the_base() {
    let r = repo();
    let wt = GitWorktrees::new();
    let start = head(&r.project);
    assert_eq!(wt.git_root(&r.project).await.unwrap(), r.project);

    let made = wt.create(&r.project, "login", None).await.unwrap();
    let dir = r.root.join(".worktrees").join("login");
    assert_eq!(made.worktree.path, dir);
    assert_eq!(made.worktree.name, "login");
    assert_eq!(made.worktree.branch.as_deref(), Some("opencode/login"));
    assert_eq!(made.worktree.head.as_deref(), Some(start.as_str()));
    assert!(made.worktree.created_by_kimaki && !made.worktree.is_main);
    assert_eq!(
        (made.base.reference.as_str(), made.base.commit.as_str()),
        ("main", start.as_str())
    );
    assert_eq!(made.base.summary, "initial");
    assert_eq!(made.base.note, None);
    assert_eq!(
        std::fs::read_to_string(dir.join("shared.txt")).unwrap(),
        "one\ntwo\nthree\n"
    );
    assert_eq!(git(&dir, &["branch", "--show-current"]), "opencode/login");
    assert_eq!(status(&dir), "", "the new checkout is clean");
    assert_eq!(status(&r.project), "", "the main checkout is untouched");

    // Spaces become dashes; the branch follows the cleaned name.
    let spaced = wt.create(&r.project, "fix the bug", None).await.unwrap();
    assert_eq!(spaced.worktree.name, "fix-the-bug");
    assert_eq!(
        spaced.worktree.branch.as_deref(),
        Some("opencode/fix-the-bug")
    );

    // An explicit base branch, validated.
    let older = start.clone();
    let newer = commit_file(&r.project, "later.txt", "x", "later");
    git(&r.project, &["branch", "release", &older]);
    let from_release = wt
        .create(&r.project, "hotfix", Some("release"))
        .await
        .unwrap();
    assert_eq!(from_release.base.reference, "release");
    assert_eq!(from_release.base.commit, older);
    assert!(!from_release.worktree.path.join("later.txt").exists());
    let e = wt
        .create(&r.project, "nope", Some("no-such-branch"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WorktreeError::BaseNotFound { base, .. } if base == "no-such-branch"),
        "{e:?}"
    );
    assert!(e.to_string().contains("no-such-branch"), "{e}");
    assert!(!r.root.join(".worktrees/nope").exists());

    // A stale local branch whose upstream is strictly ahead starts from the upstream, and says so.
    git(
        &r.project,
        &["update-ref", "refs/remotes/origin/release", &newer],
    );
    let fresh = wt
        .create(&r.project, "fresh", Some("release"))
        .await
        .unwrap();
    assert_eq!(fresh.base.reference, "origin/release");
    assert_eq!(fresh.base.commit, newer);
    let note = fresh.base.note.unwrap();
    assert!(
        note.contains("release is 1 commit(s) behind origin/release"),
        "{note}"
    );

    // Diverged: stays on the local branch, with a note.
    git(&r.project, &["checkout", "-q", "release"]);
    commit_file(&r.project, "own.txt", "own", "own work");
    let local = head(&r.project);
    let diverged = wt.create(&r.project, "diverged", None).await.unwrap();
    assert_eq!(diverged.base.reference, "release");
    assert_eq!(diverged.base.commit, local);
    assert!(diverged.base.note.unwrap().contains("diverged"));

    // Uncommitted changes stay in the main checkout, and the report says so.
    std::fs::write(r.project.join("shared.txt"), "edited\n").unwrap();
    let dirty = wt.create(&r.project, "from-dirty", None).await.unwrap();
    assert!(dirty.base.note.unwrap().contains("uncommitted change"));
    assert_eq!(
        std::fs::read_to_string(dirty.worktree.path.join("shared.txt")).unwrap(),
        "one\ntwo\nthree\n"
    );
}

#[tokio::test]
async fn a_repository_without_commits_or_a_plain_directory_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let wt = GitWorktrees::new();

    let plain = root.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let e = wt.create(&plain, "x", None).await.unwrap_err();
    assert_eq!(
        e,
        WorktreeError::NotAGitRepo {
            path: plain.clone()
        }
    );
    assert!(e.to_string().contains("not inside a git repository"), "{e}");
    assert!(matches!(
        wt.git_root(&plain).await,
        Err(WorktreeError::NotAGitRepo { .. })
    ));
    assert!(matches!(
        wt.list(&plain).await,
        Err(WorktreeError::NotAGitRepo { .. })
    ));
    assert!(!root.join(".worktrees").exists());

    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    git(&empty, &["init", "-q", "-b", "main"]);
    let e = wt.create(&empty, "x", None).await.unwrap_err();
    assert!(
        matches!(&e, WorktreeError::BaseNotFound { base, .. } if base == "HEAD"),
        "{e:?}"
    );
    assert!(e.to_string().contains("no commits yet"), "{e}");
    // The unborn main checkout is still listed, with its branch.
    let all = wt.list(&empty).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].branch.as_deref(), Some("main"));
    assert_eq!(all[0].head, None);
}

#[tokio::test]
async fn taken_and_invalid_names_are_refused_with_the_reason() {
    let r = repo();
    let wt = GitWorktrees::new();
    wt.create(&r.project, "login", None).await.unwrap();

    let e = wt.create(&r.project, "login", None).await.unwrap_err();
    assert!(
        matches!(&e, WorktreeError::NameTaken { name, .. } if name == "login"),
        "{e:?}"
    );
    assert!(e.to_string().contains("exists at"), "{e}");

    git(&r.project, &["branch", "opencode/kept"]);
    let e = wt.create(&r.project, "kept", None).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("the branch opencode/kept already exists"),
        "{e}"
    );
    assert!(!r.root.join(".worktrees/kept").exists());

    std::fs::create_dir_all(r.root.join(".worktrees/occupied")).unwrap();
    let e = wt.create(&r.project, "occupied", None).await.unwrap_err();
    assert!(matches!(e, WorktreeError::NameTaken { .. }), "{e:?}");
    assert_eq!(
        git(&r.project, &["branch", "--list", "opencode/occupied"]),
        ""
    );

    for bad in ["", "..", "///", "name.lock"] {
        let e = wt.create(&r.project, bad, None).await.unwrap_err();
        assert!(
            matches!(&e, WorktreeError::BadName { name, .. } if name == bad),
            "{bad:?}: {e:?}"
        );
    }
    assert_eq!(
        git(&r.project, &["branch", "--list", "opencode/*"])
            .lines()
            .count(),
        2,
        "only login and kept exist"
    );
}

#[tokio::test]
async fn list_includes_worktrees_made_outside_kimaki_and_sessions_can_use_them() {
    let r = repo();
    let wt = GitWorktrees::new();
    wt.create(&r.project, "ours", None).await.unwrap();
    git(
        &r.project,
        &["worktree", "add", "-q", "../by-hand", "-b", "feature"],
    );
    git(
        &r.project,
        &["worktree", "add", "-q", "--detach", "../detached"],
    );

    let all = wt.list(&r.project).await.unwrap();
    let summary: Vec<(String, Option<String>, bool, bool)> = all
        .iter()
        .map(|w| {
            (
                w.name.clone(),
                w.branch.clone(),
                w.is_main,
                w.created_by_kimaki,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("project".to_owned(), Some("main".to_owned()), true, false),
            (
                "by-hand".to_owned(),
                Some("feature".to_owned()),
                false,
                false
            ),
            ("detached".to_owned(), None, false, false),
            (
                "ours".to_owned(),
                Some("opencode/ours".to_owned()),
                false,
                true
            ),
        ]
    );
    assert_eq!(all[0].path, r.project);
    assert_eq!(all[1].path, r.root.join("by-hand"));
    assert!(all
        .iter()
        .all(|w| w.head.as_deref() == Some(head(&r.project).as_str())));

    // The same list from inside a worktree.
    let from_inside = wt.list(&r.root.join("by-hand")).await.unwrap();
    assert_eq!(from_inside, all);

    // A session may start in a worktree kimaki did not make: it is reused, not recreated.
    let opened = wt.open_or_create(&r.project, "by-hand").await.unwrap();
    assert_eq!(opened.workspace, r.root.join("by-hand"));
    assert_eq!(opened.created, None);
    let new = wt.open_or_create(&r.project, "fresh one").await.unwrap();
    assert_eq!(new.workspace, r.root.join(".worktrees/fresh-one"));
    assert!(new.created.is_some());
    let again = wt.open_or_create(&r.project, "fresh one").await.unwrap();
    assert_eq!((again.workspace, again.created), (new.workspace, None));

    // A project in a subdirectory of its repository works in the same subdirectory.
    std::fs::create_dir_all(r.project.join("app")).unwrap();
    commit_file(&r.project, "app/main.rs", "fn main() {}\n", "app");
    let sub = wt
        .open_or_create(&r.project.join("app"), "sub")
        .await
        .unwrap();
    assert_eq!(sub.workspace, r.root.join(".worktrees/sub/app"));
    assert!(sub.workspace.join("main.rs").is_file());

    // A worktree whose directory vanished is reported, not silently recreated.
    std::fs::remove_dir_all(r.root.join("detached")).unwrap();
    let gone = wt.list(&r.project).await.unwrap();
    assert!(gone.iter().any(|w| w.name == "detached" && w.prunable));
    let e = wt.open_or_create(&r.project, "detached").await.unwrap_err();
    assert!(matches!(e, WorktreeError::MissingDirectory { .. }), "{e:?}");
    let removed = wt
        .remove(&r.project, "detached", RemoveOptions::default())
        .await
        .unwrap();
    assert_eq!(removed.worktree.name, "detached");
    assert!(!wt
        .list(&r.project)
        .await
        .unwrap()
        .iter()
        .any(|w| w.name == "detached"));
}

#[tokio::test]
async fn merge_fast_forwards_when_main_did_not_move() {
    let r = repo();
    let wt = GitWorktrees::new();
    let dir = wt
        .create(&r.project, "ff", None)
        .await
        .unwrap()
        .worktree
        .path;
    commit_file(&dir, "feature.txt", "new\n", "feature part 1");
    let tip = commit_file(&dir, "feature2.txt", "more\n", "feature part 2");

    let report = wt.merge(&r.project, "ff", None).await.unwrap();
    assert_eq!(report.kind, MergeKind::FastForward);
    assert_eq!(
        (report.source.as_str(), report.target.as_str()),
        ("opencode/ff", "main")
    );
    assert_eq!(report.commits, 2);
    assert_eq!(report.head, tip);
    assert_eq!(head(&r.project), tip);
    assert_eq!(
        std::fs::read_to_string(r.project.join("feature.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(status(&r.project), "", "files and index follow the branch");
    assert_eq!(status(&dir), "");

    let again = wt.merge(&r.project, "ff", None).await.unwrap();
    assert_eq!(
        (again.kind, again.commits, again.head),
        (MergeKind::UpToDate, 0, tip)
    );
}

#[tokio::test]
async fn merge_makes_a_merge_commit_when_main_moved_on() {
    let r = repo();
    let wt = GitWorktrees::new();
    let dir = wt
        .create(&r.project, "mc", None)
        .await
        .unwrap()
        .worktree
        .path;
    let theirs = commit_file(&dir, "feature.txt", "feature\n", "feature");
    let ours = commit_file(&r.project, "main.txt", "main\n", "main moved on");

    let report = wt.merge(&r.project, "mc", None).await.unwrap();
    assert_eq!(report.kind, MergeKind::MergeCommit);
    assert_eq!(report.commits, 1);
    assert_eq!(head(&r.project), report.head);
    let parents = git(&r.project, &["log", "-1", "--format=%P"]);
    assert_eq!(parents, format!("{ours} {theirs}"));
    assert_eq!(
        git(&r.project, &["log", "-1", "--format=%s"]),
        "Merge branch 'opencode/mc' into main"
    );
    assert!(r.project.join("feature.txt").is_file() && r.project.join("main.txt").is_file());
    assert_eq!(status(&r.project), "");
    assert_eq!(head(&dir), theirs, "the worktree keeps its own branch");

    // Into another branch, not checked out anywhere: only the branch moves.
    git(&r.project, &["branch", "stable", &ours]);
    commit_file(&dir, "more.txt", "more\n", "more");
    let into = wt.merge(&r.project, "mc", Some("stable")).await.unwrap();
    assert_eq!(
        (into.kind, into.target.as_str()),
        (MergeKind::MergeCommit, "stable")
    );
    assert_eq!(git(&r.project, &["rev-parse", "stable"]), into.head);
    assert_eq!(head(&r.project), report.head, "main did not move");
    let e = wt.merge(&r.project, "mc", Some("nope")).await.unwrap_err();
    assert!(matches!(e, WorktreeError::TargetNotFound { .. }), "{e:?}");
    let e = wt.merge(&r.project, "unknown", None).await.unwrap_err();
    assert_eq!(
        e,
        WorktreeError::NotFound {
            name: "unknown".to_owned()
        }
    );
}

#[tokio::test]
async fn a_conflicting_merge_is_refused_with_the_files_and_changes_nothing() {
    let r = repo();
    let wt = GitWorktrees::new();
    let dir = wt
        .create(&r.project, "clash", None)
        .await
        .unwrap()
        .worktree
        .path;
    commit_file(
        &dir,
        "shared.txt",
        "one\nTWO (worktree)\nthree\n",
        "worktree edit",
    );
    commit_file(&dir, "other.txt", "from worktree\n", "add other");
    commit_file(
        &r.project,
        "shared.txt",
        "one\nTWO (main)\nthree\n",
        "main edit",
    );
    commit_file(&r.project, "other.txt", "from main\n", "add other too");
    let (main_before, wt_before) = (head(&r.project), head(&dir));

    let e = wt.merge(&r.project, "clash", None).await.unwrap_err();
    assert_eq!(
        e,
        WorktreeError::Conflicts {
            source_ref: "opencode/clash".to_owned(),
            target: "main".to_owned(),
            files: vec!["other.txt".to_owned(), "shared.txt".to_owned()],
        }
    );
    let text = e.to_string();
    assert!(
        text.contains("other.txt, shared.txt") && text.contains("nothing was changed"),
        "{text}"
    );

    assert_eq!((head(&r.project), head(&dir)), (main_before, wt_before));
    assert_eq!(
        (status(&r.project), status(&dir)),
        (String::new(), String::new())
    );
    assert_eq!(
        std::fs::read_to_string(r.project.join("shared.txt")).unwrap(),
        "one\nTWO (main)\nthree\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("shared.txt")).unwrap(),
        "one\nTWO (worktree)\nthree\n"
    );
    assert!(!r.project.join(".git/MERGE_HEAD").exists());
}

#[tokio::test]
async fn uncommitted_changes_block_merge_and_remove() {
    let r = repo();
    let wt = GitWorktrees::new();
    let dir = wt
        .create(&r.project, "wip", None)
        .await
        .unwrap()
        .worktree
        .path;
    commit_file(&dir, "done.txt", "done\n", "done");
    std::fs::write(dir.join("shared.txt"), "edited, not committed\n").unwrap();
    std::fs::write(dir.join("new.txt"), "untracked\n").unwrap();
    let main_before = head(&r.project);

    let e = wt.merge(&r.project, "wip", None).await.unwrap_err();
    assert_eq!(
        e,
        WorktreeError::DirtyWorktree {
            path: dir.clone(),
            files: vec!["new.txt".to_owned(), "shared.txt".to_owned()],
        }
    );
    assert!(
        e.to_string()
            .contains("uncommitted changes (new.txt, shared.txt)"),
        "{e}"
    );
    assert_eq!(head(&r.project), main_before);

    let e = wt
        .remove(&r.project, "wip", RemoveOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, WorktreeError::DirtyWorktree { .. }), "{e:?}");
    assert!(dir.join("new.txt").is_file(), "nothing was removed");

    // A dirty main checkout blocks the merge too; untracked files there do not.
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "everything"]);
    std::fs::write(r.project.join("shared.txt"), "main edit in progress\n").unwrap();
    let e = wt.merge(&r.project, "wip", None).await.unwrap_err();
    assert!(
        matches!(&e, WorktreeError::DirtyWorktree { path, files } if *path == r.project && files == &["shared.txt"]),
        "{e:?}"
    );
    git(&r.project, &["checkout", "--", "shared.txt"]);
    std::fs::write(r.project.join("notes.txt"), "mine\n").unwrap();
    let merged = wt.merge(&r.project, "wip", None).await.unwrap();
    assert_eq!(merged.kind, MergeKind::FastForward);
    assert_eq!(
        std::fs::read_to_string(r.project.join("notes.txt")).unwrap(),
        "mine\n"
    );

    // An untracked file the merge would overwrite refuses it before anything moves.
    commit_file(&dir, "notes.txt", "theirs\n", "notes");
    let before = head(&r.project);
    let e = wt.merge(&r.project, "wip", None).await.unwrap_err();
    assert!(
        matches!(&e, WorktreeError::DirtyWorktree { files, .. } if files == &["notes.txt"]),
        "{e:?}"
    );
    assert_eq!(head(&r.project), before);
    assert_eq!(
        std::fs::read_to_string(r.project.join("notes.txt")).unwrap(),
        "mine\n"
    );
    std::fs::remove_file(r.project.join("notes.txt")).unwrap();

    // Deleting an unmerged branch needs force; a merged one goes with the worktree.
    let e = wt
        .remove(
            &r.project,
            "wip",
            RemoveOptions {
                delete_branch: true,
                force: false,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WorktreeError::Unmerged { branch, commits: 1, .. } if branch == "opencode/wip"),
        "{e:?}"
    );
    wt.merge(&r.project, "wip", None).await.unwrap();
    let removed = wt
        .remove(
            &r.project,
            "wip",
            RemoveOptions {
                delete_branch: true,
                force: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(removed.deleted_branch.as_deref(), Some("opencode/wip"));
    assert!(!dir.exists());
    assert_eq!(git(&r.project, &["branch", "--list", "opencode/wip"]), "");
    assert_eq!(
        git(&r.project, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
}

/// The real binary: `send --worktree` with and without a daemon, and `kimaki worktree` with
/// `--json`.
#[test]
fn send_worktree_and_the_worktree_command() {
    let k = Kimaki::new();
    let home = std::fs::canonicalize(k.home.path()).unwrap();
    let project = init_project(&home);
    let p = project.to_str().unwrap();
    let plain = home.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    for dir in [p, plain.to_str().unwrap()] {
        let out = k.run(&["project", "add", dir]);
        assert_eq!(out.code(), 0, "{}", out.all());
    }

    // Not running: the job is stored with the worktree as its directory.
    let out = k.run(&[
        "send",
        "--project",
        p,
        "--prompt",
        "hello",
        "--worktree",
        "feat",
        "--json",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let receipt = out.json();
    let feat = home.join(".worktrees/feat");
    assert_eq!(receipt["workspace"], feat.to_str().unwrap());
    let first_job = receipt["job_id"].as_str().unwrap().to_owned();
    assert_eq!(git(&feat, &["branch", "--show-current"]), "opencode/feat");
    // Reused by the next send; the human output says where it works.
    let out = k.run(&[
        "send",
        "--project",
        p,
        "--prompt",
        "again",
        "--worktree",
        "feat",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(
        out.stdout
            .contains(&format!("It works in {}", feat.display())),
        "{}",
        out.stdout
    );

    // A directory that is not a git repository: a clear error, nothing enqueued.
    let out = k.run(&[
        "send",
        "--project",
        "plain",
        "--prompt",
        "x",
        "--worktree",
        "w",
    ]);
    assert_eq!(out.code(), 64, "{}", out.all());
    assert!(
        out.stderr.contains("is not inside a git repository"),
        "{}",
        out.stderr
    );

    let out = k.run(&["worktree", "create", "--project", p, "second", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let created = out.json();
    assert_eq!(created["base"]["reference"], "main");
    assert_eq!(created["base"]["commit"], head(&project).as_str());
    assert_eq!(created["worktree"]["branch"], "opencode/second");
    let out = k.run(&["worktree", "create", "--project", p, "second"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(
        out.stderr.contains("the worktree name `second` is taken"),
        "{}",
        out.stderr
    );
    let out = k.run(&["worktree", "create", "--project", "plain", "x"]);
    assert_eq!(out.code(), 64, "{}", out.all());
    let out = k.run(&["worktree", "list", "--project", "unknown"]);
    assert_eq!(out.code(), 64, "{}", out.all());
    assert!(
        out.stderr.contains("not a registered project"),
        "{}",
        out.stderr
    );

    git(
        &project,
        &["worktree", "add", "-q", "../outside", "-b", "outside"],
    );
    let list = k.run(&["worktree", "list", "--project", "project", "--json"]);
    assert_eq!(list.code(), 0, "{}", list.all());
    let rows: Vec<(String, String, bool, bool)> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_owned(),
                w["path"].as_str().unwrap().to_owned(),
                w["is_main"].as_bool().unwrap(),
                w["created_by_kimaki"].as_bool().unwrap(),
            )
        })
        .collect();
    let at = |rel: &str| home.join(rel).display().to_string();
    assert_eq!(
        rows,
        vec![
            ("project".to_owned(), at("project"), true, false),
            ("feat".to_owned(), at(".worktrees/feat"), false, true),
            ("outside".to_owned(), at("outside"), false, false),
            ("second".to_owned(), at(".worktrees/second"), false, true),
        ]
    );

    // Merge and remove from the command line.
    let tip = commit_file(&feat, "feature.txt", "f\n", "feature");
    let out = k.run(&["worktree", "merge", "--project", p, "feat", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["kind"], "fast_forward");
    assert_eq!(head(&project), tip);
    commit_file(&project, "shared.txt", "main\n", "main");
    commit_file(
        &home.join(".worktrees/second"),
        "shared.txt",
        "second\n",
        "second",
    );
    let out = k.run(&["worktree", "merge", "--project", p, "second"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(
        out.stderr.contains("conflicts in shared.txt"),
        "{}",
        out.stderr
    );
    let out = k.run(&["worktree", "remove", "--project", p, "outside", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["worktree"]["name"], "outside");
    assert!(!home.join("outside").exists());

    // What the store holds: two jobs, both in the worktree, none for the plain directory.
    {
        let queue = JobQueue::new(Store::open(&k.path("store")).unwrap());
        assert_eq!(queue.queued_total(), 2);
        let job = queue.get(&JobId::new(first_job)).unwrap().unwrap().job;
        assert_eq!(job.workspace, feat);
        assert!(queue.lanes().unwrap().iter().all(|l| l.workspace == feat));
    }

    // Running: the daemon resolves the worktree for `send`, and `worktree list` asks it where the
    // project is.
    let mut d = k.start(&[]);
    d.wait_ready();
    let out = k.run(&[
        "send",
        "--project",
        p,
        "--prompt",
        "live",
        "--worktree",
        "live",
        "--json",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["workspace"], at(".worktrees/live").as_str());
    let out = k.run(&[
        "send",
        "--project",
        "plain",
        "--prompt",
        "x",
        "--worktree",
        "w",
    ]);
    assert_eq!(out.code(), 64, "{}", out.all());
    assert!(
        out.stderr.contains("is not inside a git repository"),
        "{}",
        out.stderr
    );
    let list = k.run(&["worktree", "list", "--project", p, "--json"]);
    assert_eq!(list.code(), 0, "{}", list.all());
    let names: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["project", "feat", "live", "second"]);
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
