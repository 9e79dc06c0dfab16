//! Worktrees from Discord: `/new-worktree` opens a `⬦` thread whose session runs in
//! `../.worktrees/<name>` on `opencode/<name>` (🌳 on the starter), `/merge-worktree` merges it
//! back or lists the files in the way, `/worktrees` lists every worktree (also ones made with
//! `git worktree add`) and switches a channel to a worktree per session, and a project that is
//! not a git repository (or an unknown base) gets a clear message while the thread keeps
//! answering.

use std::path::{Path, PathBuf};
use std::process::Command;

use pretty_assertions::assert_eq;
use serde_json::json;
use serenity::model::id::{ChannelId, InteractionId, MessageId};

use crate::support::discord_harness::{Kimaki, Options, QUICK};
use crate::support::discord_twin::InteractionAck;

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

fn commit_file(dir: &Path, file: &str, content: &str, message: &str) {
    std::fs::write(dir.join(file), content).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
}

/// The project as a repository on `main` with one commit.
fn git_project() -> Options {
    Options {
        prepare: Box::new(|dir| {
            git(dir, &["init", "-q", "-b", "main"]);
            git(dir, &["config", "user.name", "Test"]);
            git(dir, &["config", "user.email", "test@example.com"]);
            commit_file(dir, "shared.txt", "one\ntwo\nthree\n", "initial");
        }),
        ..Options::default()
    }
}

fn project(k: &Kimaki) -> PathBuf {
    std::fs::canonicalize(&k.project_dir).unwrap()
}

/// Where kimaki puts worktree `name` of the project.
fn worktree_dir(k: &Kimaki, name: &str) -> PathBuf {
    project(k).parent().unwrap().join(".worktrees").join(name)
}

async fn ack(k: &Kimaki, id: InteractionId) -> InteractionAck {
    k.twin.wait_interaction_ack(id, QUICK).await
}

fn content(a: &InteractionAck) -> String {
    a.data
        .as_ref()
        .and_then(|d| d["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The text of a deferred reply once it was edited.
async fn deferred_text(k: &Kimaki, id: InteractionId) -> String {
    assert_eq!(ack(k, id).await.response_type, 5, "deferred");
    k.twin
        .wait_for("the deferred reply", QUICK, |s| {
            let m = s.interaction(id)?.original_message?;
            let m = s.message(m)?;
            (!m.content.is_empty()).then(|| m.content.clone())
        })
        .await
}

/// `<#123>` in a reply → the channel.
fn channel_in(text: &str) -> ChannelId {
    let start = text
        .find("<#")
        .unwrap_or_else(|| panic!("no channel in {text}"))
        + 2;
    let end = start + text[start..].find('>').unwrap();
    ChannelId::new(text[start..end].parse().unwrap())
}

async fn reply(k: &Kimaki, thread: ChannelId, text: &str) -> String {
    k.twin
        .wait_bot_message(thread, |m| m.content == text, QUICK)
        .await
        .content
}

#[tokio::test]
async fn new_worktree_runs_the_session_in_its_own_checkout_and_merges_back() {
    let k = Kimaki::start_with(git_project()).await;
    let alice = k.twin.user("alice");
    let started = alice.in_channel(k.channel).slash(
        "new-worktree",
        &[("name", json!("feature-x")), ("prompt", json!("hello"))],
    );
    let text = deferred_text(&k, started).await;
    assert!(text.starts_with("Started <#"), "{text}");
    let thread = channel_in(&text);
    assert_eq!(k.twin.channel(thread).unwrap().name, "⬦ feature-x");
    let starter = MessageId::new(thread.get());
    let reactions: Vec<String> = k
        .twin
        .reactions(starter)
        .into_iter()
        .map(|r| r.emoji.name)
        .collect();
    assert_eq!(reactions, vec!["🌳".to_owned()]);

    let ready = k
        .twin
        .wait_bot_message(thread, |m| m.content.starts_with("🌳"), QUICK)
        .await;
    let dir = worktree_dir(&k, "feature-x");
    assert!(
        ready.content.starts_with(&format!(
            "🌳 **Worktree `feature-x`** created (branch `opencode/feature-x`) at `{}`\nBase: `main` ",
            dir.display()
        )),
        "{}",
        ready.content
    );
    reply(&k, thread, "⬥ echo: hello").await;
    assert_eq!(
        k.script.dirs(),
        vec![dir.clone()],
        "the runner ran in the worktree"
    );
    assert_eq!(
        git(&dir, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "opencode/feature-x"
    );

    // The agent's commit goes into main by fast-forward.
    commit_file(&dir, "feature.txt", "new\n", "add feature");
    let merged = alice.in_thread(thread).slash("merge-worktree", &[]);
    let text = deferred_text(&k, merged).await;
    assert!(
        text.starts_with("✅ Merged `opencode/feature-x` into `main` (fast-forward, 1 commit(s))"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(project(&k).join("feature.txt")).unwrap(),
        "new\n"
    );

    // Both sides change the same line: refused, the file named, nothing changed.
    commit_file(
        &project(&k),
        "shared.txt",
        "one\nmain\nthree\n",
        "main edit",
    );
    commit_file(
        &dir,
        "shared.txt",
        "one\nworktree\nthree\n",
        "worktree edit",
    );
    let main_before = git(&project(&k), &["rev-parse", "HEAD"]);
    let refused = alice.in_thread(thread).slash("merge-worktree", &[]);
    let text = deferred_text(&k, refused).await;
    assert!(
        text.starts_with(
            "❌ **Not merged:** `opencode/feature-x` conflicts with `main` in:\n• `shared.txt`\n"
        ),
        "{text}"
    );
    assert_eq!(git(&project(&k), &["rev-parse", "HEAD"]), main_before);

    // The thread goes on, still in the worktree.
    alice.in_thread(thread).send("still here");
    reply(&k, thread, "⬥ echo: still here").await;
    assert_eq!(k.script.dirs().last(), Some(&dir));

    // Outside a worktree thread the command says where it works.
    let plain = alice.in_channel(k.channel).slash("merge-worktree", &[]);
    assert!(content(&ack(&k, plain).await).starts_with("Use this in a worktree thread"));
    k.finish().await;
}

#[tokio::test]
async fn worktrees_lists_foreign_ones_sessions_reuse_them_and_channels_go_auto() {
    let k = Kimaki::start_with(git_project()).await;
    let alice = k.twin.user("alice");
    let manual = project(&k).parent().unwrap().join("manual");
    git(
        &project(&k),
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "manual-branch",
            manual.to_str().unwrap(),
        ],
    );

    let listed = alice.in_channel(k.channel).slash("worktrees", &[]);
    let text = content(&ack(&k, listed).await);
    assert!(text.contains("(new sessions in worktrees: off)"), "{text}");
    assert!(
        text.contains("• `my-app` · main checkout · `main` · `"),
        "{text}"
    );
    assert!(
        text.contains("• `manual` · `manual-branch` · `") && text.contains("· made outside kimaki"),
        "{text}"
    );

    // Autocomplete offers it; a session can start in it.
    let ac = alice
        .in_channel(k.channel)
        .autocomplete("new-worktree", "name", "man");
    let values: Vec<String> = ack(&k, ac).await.data.unwrap()["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap().to_owned())
        .collect();
    assert!(values.contains(&"manual".to_owned()), "{values:?}");
    let started = alice.in_channel(k.channel).slash(
        "new-worktree",
        &[("name", json!("manual")), ("prompt", json!("in manual"))],
    );
    let thread = channel_in(&deferred_text(&k, started).await);
    k.twin
        .wait_bot_message(
            thread,
            |m| {
                m.content
                    .starts_with("🌳 Working in the existing worktree `manual`")
            },
            QUICK,
        )
        .await;
    reply(&k, thread, "⬥ echo: in manual").await;
    assert_eq!(k.script.dirs(), vec![manual.clone()]);

    // An unknown base: the thread says so once, runs nothing, and answers the next message.
    let based = alice.in_channel(k.channel).slash(
        "new-worktree",
        &[
            ("name", json!("from-nowhere")),
            ("prompt", json!("never runs")),
            ("base", json!("no-such-branch")),
        ],
    );
    let text = deferred_text(&k, based).await;
    assert!(text.contains("could not be created"), "{text}");
    let failed_thread = channel_in(&text);
    let failed = k
        .twin
        .wait_bot_message(failed_thread, |m| m.content.starts_with('❌'), QUICK)
        .await;
    assert!(
        failed.content.contains("base `no-such-branch` not found"),
        "{}",
        failed.content
    );
    alice.in_thread(failed_thread).send("then here");
    reply(&k, failed_thread, "⬥ echo: then here").await;
    assert_eq!(k.script.dirs().last(), Some(&project(&k)));
    assert!(!k
        .script
        .prompts()
        .iter()
        .any(|p| p.starts_with("never runs")));

    // A channel in auto mode gives every new session a worktree of its own.
    let auto = alice
        .in_channel(k.channel)
        .slash("worktrees", &[("auto", json!(true))]);
    let text = content(&ack(&k, auto).await);
    assert!(text.contains("now start in their own worktree"), "{text}");
    assert!(text.contains("(new sessions in worktrees: on)"), "{text}");
    for expected in ["fix-the-bug", "fix-the-bug-2"] {
        let sent = alice.in_channel(k.channel).send("fix the bug");
        let thread = k.thread_of(sent).await;
        assert_eq!(k.twin.channel(thread).unwrap().name, "⬦ fix the bug");
        reply(&k, thread, "⬥ echo: fix the bug").await;
        assert_eq!(k.script.dirs().last(), Some(&worktree_dir(&k, expected)));
    }
    k.finish().await;
}

#[tokio::test]
async fn a_project_without_git_gets_a_clear_message_and_the_thread_keeps_answering() {
    let k = Kimaki::start().await;
    let alice = k.twin.user("alice");

    // The command checks before it opens anything.
    let asked = alice
        .in_channel(k.channel)
        .slash("new-worktree", &[("name", json!("x"))]);
    let text = content(&ack(&k, asked).await);
    assert!(text.contains("is not inside a git repository"), "{text}");
    assert!(k.twin.threads().is_empty());
    let bad = alice
        .in_channel(k.channel)
        .slash("new-worktree", &[("name", json!("///"))]);
    assert!(content(&ack(&k, bad).await).contains("cannot be a worktree name"));
    let auto = alice
        .in_channel(k.channel)
        .slash("worktrees", &[("auto", json!(true))]);
    assert!(content(&ack(&k, auto).await).starts_with("❌ Cannot turn on worktrees"));

    // A `⬦` message opens its thread, says why there is no worktree, and runs nothing.
    let sent = alice.in_channel(k.channel).send("⬦ try it");
    let thread = k.thread_of(sent).await;
    assert_eq!(k.twin.channel(thread).unwrap().name, "⬦ try it");
    let failed = k
        .twin
        .wait_bot_message(thread, |m| m.content.starts_with('❌'), QUICK)
        .await;
    assert!(
        failed
            .content
            .starts_with("❌ **Worktree `try-it` could not be created:** "),
        "{}",
        failed.content
    );
    assert!(failed.content.contains("not inside a git repository"));
    assert!(failed
        .content
        .contains("your next message here runs in the main checkout"));

    // The next message is answered, in the main checkout.
    alice.in_thread(thread).send("next");
    reply(&k, thread, "⬥ echo: next").await;
    assert_eq!(k.script.dirs(), vec![project(&k)]);
    assert_eq!(
        k.bot_texts(thread)
            .iter()
            .filter(|t| t.starts_with('❌'))
            .count(),
        1,
        "the failure is told once"
    );
    k.finish().await;
}
