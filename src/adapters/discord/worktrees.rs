//! Sessions in git worktrees, from Discord: `/new-worktree`, a channel message starting with `⬦`,
//! and channels whose every new session gets its own worktree; `/merge-worktree` and `/worktrees`.
//! The git work goes through the core's `Worktrees` (the same `open_or_create` that
//! `kimaki send --worktree` uses). A worktree that cannot be made is reported once in its thread,
//! which stays usable: later messages run in the main checkout.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serenity::all::{CommandInteraction, CreateInteractionResponse};

use super::client::Bot;
use super::inbound::{self, InboundMessage};
use super::interactions::{
    ephemeral, finish_deferred, log_failure, opt_bool, opt_str, post_starter, start_thread, Place,
    NOT_A_PROJECT,
};
use super::render;
use super::store::{ChannelRecord, ThreadRecord, WorktreeRecord, WorktreeState};
use crate::core::worktrees::{
    self as core_worktrees, workspace_in, MergeKind, MergeReport, WorktreeError, WorktreeInfo,
};
use crate::core::{clock, EnqueueMode};

/// A channel message starting with this asks for a worktree; worktree threads carry it too.
pub const PREFIX: &str = "⬦";

/// The reaction on the starter message of a worktree session, percent-encoded for the route.
const TREE_REACTION: &str = "%F0%9F%8C%B3";

/// Thread names are cut to this (Discord allows 100).
const THREAD_NAME_CHARS: usize = 80;

/// A generated name that is taken gets `-2`, `-3`, … up to this many tries.
const UNIQUE_NAME_TRIES: usize = 9;

/// Files listed in a refusal before the rest are counted.
const LISTED_FILES: usize = 20;

/// Short commit ids as git shows them.
const SHORT_SHA: usize = 7;

/// What a new thread's worktree should be.
pub enum Wanted {
    /// A new worktree named after this title (made unique if taken).
    New(String),
    /// Exactly this worktree: reused when it exists (made by kimaki or not), else created from
    /// `base` (or the project's HEAD).
    Named { name: String, base: Option<String> },
}

/// `⬦ fix the login` → `Some("fix the login")`.
pub fn requested(text: &str) -> Option<&str> {
    text.trim_start().strip_prefix(PREFIX).map(str::trim)
}

/// `⬦ <title>`, cut to the thread name limit.
pub fn thread_title(title: &str) -> String {
    let title = title.trim();
    let title = if title.is_empty() { "worktree" } else { title };
    render::truncate_chars(&format!("{PREFIX} {title}"), THREAD_NAME_CHARS)
}

/// Whether new sessions of this channel go into worktrees, by the channel's setting.
pub fn auto_for(bot: &Bot, channel: u64) -> bool {
    bot.store.auto_worktrees(channel).unwrap_or(false)
}

/// The directory a thread's jobs run in: its worktree when it has a ready one, else the project.
/// A worktree left pending by a crash is opened again now.
pub async fn session_dir(bot: &Bot, thread: u64, project: &ChannelRecord) -> PathBuf {
    let main = PathBuf::from(&project.directory);
    let Ok(Some(record)) = bot.store.thread_worktree(thread) else {
        return main;
    };
    match record.state {
        WorktreeState::Ready => record.workspace.map(PathBuf::from).unwrap_or(main),
        WorktreeState::Failed => main,
        WorktreeState::Pending => {
            let wanted = Wanted::Named {
                name: record.name,
                base: None,
            };
            open_for_thread(bot, thread, project, wanted)
                .await
                .unwrap_or(main)
        }
    }
}

/// Creates (or reuses) the worktree of a new thread whose starter message is `thread` in the
/// project channel: reacts 🌳 on the starter, records the outcome, and says it in the thread.
/// Returns the session's directory, or `None` when it failed (the thread was told why).
pub async fn open_for_thread(
    bot: &Bot,
    thread: u64,
    project: &ChannelRecord,
    wanted: Wanted,
) -> Option<PathBuf> {
    let first_name = match &wanted {
        Wanted::New(title) => core_worktrees::auto_name(title),
        Wanted::Named { name, .. } => name.clone(),
    };
    let mut record = WorktreeRecord {
        name: first_name.clone(),
        state: WorktreeState::Pending,
        workspace: None,
        error: None,
    };
    if let Err(e) = bot.store.put_thread_worktree(thread, &record).await {
        tracing::warn!(thread, error = %e, "Could not record a pending worktree.");
    }
    react_tree(bot, project.channel_id, thread).await;
    let dir = Path::new(&project.directory);
    match open(bot, dir, wanted, &first_name).await {
        Ok((opened, text)) => {
            record.name = opened.name;
            record.state = WorktreeState::Ready;
            record.workspace = Some(opened.workspace.display().to_string());
            let _ = bot.store.put_thread_worktree(thread, &record).await;
            bot.notice(thread, format!("wt/{thread}/ready"), text, None)
                .await;
            Some(opened.workspace)
        }
        Err(e) => {
            tracing::info!(thread, error = %e, "A worktree could not be created.");
            record.state = WorktreeState::Failed;
            record.error = Some(e.to_string());
            let _ = bot.store.put_thread_worktree(thread, &record).await;
            let text = format!(
                "❌ **Worktree `{}` could not be created:** {}\nNothing ran. This thread stays usable: your next message here runs in the main checkout (`{}`).",
                record.name,
                e,
                project.directory
            );
            bot.notice(
                thread,
                format!("wt/{thread}/failed"),
                render::truncate_chars(&text, render::GENERATED_LIMIT),
                None,
            )
            .await;
            None
        }
    }
}

struct Opened {
    name: String,
    workspace: PathBuf,
}

async fn open(
    bot: &Bot,
    dir: &Path,
    wanted: Wanted,
    first_name: &str,
) -> Result<(Opened, String), WorktreeError> {
    let root = bot.worktrees.git_root(dir).await?;
    let (name, base) = match wanted {
        Wanted::Named { name, base: None } => {
            let opened = bot.worktrees.open_or_create(dir, &name).await?;
            let text = match &opened.created {
                Some(base) => created_text(&opened.worktree, base),
                None => format!(
                    "🌳 Working in the existing worktree `{}`{} at `{}`.",
                    opened.worktree.name,
                    branch_suffix(&opened.worktree),
                    opened.worktree.path.display()
                ),
            };
            let worktree = Opened {
                name: opened.worktree.name,
                workspace: opened.workspace,
            };
            return Ok((worktree, text));
        }
        Wanted::Named {
            name,
            base: Some(base),
        } => (core_worktrees::sanitize_name(&name)?, Some(base)),
        Wanted::New(_) => (core_worktrees::sanitize_name(first_name)?, None),
    };
    // A new worktree: a taken generated name moves on to `-2`, `-3`, …; an explicit one is
    // refused as taken.
    let generated = base.is_none();
    let taken: HashSet<String> = if generated {
        bot.worktrees
            .list(dir)
            .await?
            .into_iter()
            .map(|w| w.name)
            .collect()
    } else {
        HashSet::new()
    };
    let mut last = None;
    for n in 1..=UNIQUE_NAME_TRIES {
        let candidate = if n == 1 {
            name.clone()
        } else {
            format!("{name}-{n}")
        };
        if taken.contains(&candidate) {
            continue;
        }
        match bot.worktrees.create(dir, &candidate, base.as_deref()).await {
            Ok(made) => {
                let text = created_text(&made.worktree, &made.base);
                let workspace = workspace_in(&made.worktree.path, &root, dir);
                let worktree = Opened {
                    name: made.worktree.name,
                    workspace,
                };
                return Ok((worktree, text));
            }
            Err(e @ WorktreeError::NameTaken { .. }) if generated => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| WorktreeError::NameTaken {
        name,
        reason: "every numbered variant is taken too".into(),
    }))
}

fn short(sha: &str) -> &str {
    sha.get(..SHORT_SHA).unwrap_or(sha)
}

fn branch_suffix(w: &WorktreeInfo) -> String {
    w.branch
        .as_deref()
        .map(|b| format!(" (branch `{b}`)"))
        .unwrap_or_default()
}

fn created_text(w: &WorktreeInfo, base: &core_worktrees::BaseCommit) -> String {
    let mut text = format!(
        "🌳 **Worktree `{}`** created{} at `{}`\nBase: `{}` `{}` {}",
        w.name,
        branch_suffix(w),
        w.path.display(),
        base.reference,
        short(&base.commit),
        base.summary
    );
    if let Some(note) = &base.note {
        text.push_str(&format!("\n⚠️ {note}"));
    }
    render::truncate_chars(&text, render::GENERATED_LIMIT)
}

/// 🌳 on the message that started a worktree session (best effort).
async fn react_tree(bot: &Bot, channel: u64, message: u64) {
    let path = format!("/channels/{channel}/messages/{message}/reactions/{TREE_REACTION}/@me");
    if let Err(e) = bot.rest.call(Method::PUT, &path, None).await {
        tracing::debug!(message, error = %e, "Could not react to a worktree starter.");
    }
}

// ----- slash commands -------------------------------------------------------------------------

/// `/new-worktree name [prompt] [base]`: a new thread whose session works in worktree `name`
/// (reused when it exists, whoever made it).
pub async fn new_worktree(bot: &Bot, c: &CommandInteraction, place: Place) {
    let respond = |text: String| async move {
        if let Err(e) = c.create_response(&bot.http, ephemeral(text)).await {
            log_failure("new-worktree", e);
        }
    };
    let (Place::Thread(_, project) | Place::Channel(project)) = place else {
        return respond(NOT_A_PROJECT.into()).await;
    };
    let raw = opt_str(c, "name").unwrap_or("");
    let name = match core_worktrees::sanitize_name(raw) {
        Ok(n) => n,
        Err(e) => return respond(format!("❌ {e}")).await,
    };
    // Checked before anything is posted, so a project without git leaves no dead thread.
    if let Err(e) = bot.worktrees.git_root(Path::new(&project.directory)).await {
        return respond(format!("❌ {e}")).await;
    }
    if let Err(e) = c.defer_ephemeral(&bot.http).await {
        log_failure("defer", e);
        return;
    }
    let prompt = opt_str(c, "prompt").map(str::to_owned);
    let base = opt_str(c, "base").map(str::to_owned);
    let mut starter_text = format!("🌳 **New worktree:** `{name}`");
    if let Some(p) = &prompt {
        starter_text.push_str(&format!("\n» **{}:** {p}", c.user.name.replace('*', "")));
    }
    let key = format!("i/{}/starter", c.id);
    let Some(starter) = post_starter(bot, project.channel_id, &key, &starter_text).await else {
        finish_deferred(bot, c, "❌ Could not post in the channel.".into()).await;
        return;
    };
    let title = thread_title(&name);
    if !start_thread(bot, project.channel_id, starter, &title, c.user.id.get()).await {
        finish_deferred(bot, c, "❌ Could not start a thread.".into()).await;
        return;
    }
    let lock = bot.thread_lock(starter);
    let _serial = lock.lock().await;
    let now = clock::now_ms();
    let thread = ThreadRecord {
        thread_id: starter,
        channel_id: project.channel_id,
        guild_id: project.guild_id,
        lane: format!("discord:{starter}"),
        title,
        created_at: now,
        last_activity_at: now,
        model: None,
        agent: None,
    };
    let _ = bot.store.put_thread(&thread).await;
    let _ = bot.store.mark_seen(starter, now);
    let wanted = Wanted::Named { name, base };
    if open_for_thread(bot, starter, &project, wanted)
        .await
        .is_none()
    {
        let text = format!("❌ <#{starter}>: the worktree could not be created; the thread says why and stays usable.");
        finish_deferred(bot, c, text).await;
        return;
    }
    let Some(prompt) = prompt else {
        finish_deferred(
            bot,
            c,
            format!("Opened <#{starter}>: messages there run in the worktree."),
        )
        .await;
        return;
    };
    let m = InboundMessage {
        id: starter,
        channel_id: project.channel_id,
        guild_id: Some(project.guild_id),
        author_id: c.user.id.get(),
        author_name: c.user.name.clone(),
        ..InboundMessage::default()
    };
    let text = match inbound::enqueue(
        bot,
        &m,
        &thread,
        &project,
        &prompt,
        EnqueueMode::Queue,
        false,
    )
    .await
    {
        Some(_) => format!("Started <#{starter}> in the worktree."),
        None => format!(
            "❌ Opened <#{starter}>, but the prompt could not be queued; send it there again."
        ),
    };
    finish_deferred(bot, c, text).await;
}

/// `/merge-worktree [into]` in a worktree thread.
pub async fn merge_worktree(bot: &Bot, c: &CommandInteraction, place: Place) {
    let respond = |text: String| async move {
        if let Err(e) = c.create_response(&bot.http, ephemeral(text)).await {
            log_failure("merge-worktree", e);
        }
    };
    let Place::Thread(thread, project) = place else {
        return respond(NOT_A_WORKTREE_THREAD.into()).await;
    };
    let record = bot.store.thread_worktree(thread.thread_id).ok().flatten();
    let Some(record) = record.filter(|r| r.state == WorktreeState::Ready) else {
        return respond(NOT_A_WORKTREE_THREAD.into()).await;
    };
    // Merging can take longer than the 3 s an interaction answer may take.
    if let Err(e) = c.defer(&bot.http).await {
        log_failure("defer", e);
        return;
    }
    let into = opt_str(c, "into");
    let result = bot
        .worktrees
        .merge(Path::new(&project.directory), &record.name, into)
        .await;
    let text = match result {
        Ok(report) => merged_text(&report),
        Err(e) => merge_refused_text(&e),
    };
    finish_deferred(bot, c, text).await;
}

const NOT_A_WORKTREE_THREAD: &str =
    "Use this in a worktree thread (one started with `/new-worktree` or a `⬦` message).";

fn merged_text(r: &MergeReport) -> String {
    match r.kind {
        MergeKind::UpToDate => format!(
            "`{}` already contains everything on `{}`; nothing to merge.",
            r.target, r.source
        ),
        MergeKind::FastForward => format!(
            "✅ Merged `{}` into `{}` (fast-forward, {} commit(s)); `{}` is now at `{}`.",
            r.source,
            r.target,
            r.commits,
            r.target,
            short(&r.head)
        ),
        MergeKind::MergeCommit => format!(
            "✅ Merged `{}` into `{}` with a merge commit ({} commit(s)); `{}` is now at `{}`.",
            r.source,
            r.target,
            r.commits,
            r.target,
            short(&r.head)
        ),
    }
}

fn file_list(files: &[String]) -> String {
    let mut out: Vec<String> = files
        .iter()
        .take(LISTED_FILES)
        .map(|f| format!("• `{}`", f.replace('`', "'")))
        .collect();
    if files.len() > LISTED_FILES {
        out.push(format!("… and {} more", files.len() - LISTED_FILES));
    }
    out.join("\n")
}

/// Why a merge was refused, with the files in the way listed one per line.
fn merge_refused_text(e: &WorktreeError) -> String {
    let text = match e {
        WorktreeError::Conflicts {
            source_ref,
            target,
            files,
        } => format!(
            "❌ **Not merged:** `{source_ref}` conflicts with `{target}` in:\n{}\nNothing was changed. Merge `{target}` into the worktree here (ask the agent to resolve the conflicts), then run `/merge-worktree` again.",
            file_list(files)
        ),
        WorktreeError::DirtyWorktree { path, files } => format!(
            "❌ **Not merged:** `{}` has uncommitted changes:\n{}\nCommit or stash them first (the agent can do it), then run `/merge-worktree` again.",
            path.display(),
            file_list(files)
        ),
        other => format!("❌ **Not merged:** {other}"),
    };
    render::truncate_chars(&text, render::GENERATED_LIMIT)
}

/// `/worktrees [auto]`: every worktree of the project's repository (made by kimaki or not), with
/// the threads working in them; `auto` turns worktrees for every new session on or off.
pub async fn list_worktrees(
    bot: &Bot,
    c: &CommandInteraction,
    place: Place,
) -> CreateInteractionResponse {
    let (Place::Thread(_, project) | Place::Channel(project)) = place else {
        return ephemeral(NOT_A_PROJECT);
    };
    let dir = Path::new(&project.directory);
    let listed = bot.worktrees.list(dir).await;
    let mut text = String::new();
    if let Some(on) = opt_bool(c, "auto") {
        if on {
            if let Err(e) = &listed {
                return ephemeral(format!("❌ Cannot turn on worktrees for new sessions: {e}"));
            }
        }
        if let Err(e) = bot.store.set_auto_worktrees(project.channel_id, on).await {
            return ephemeral(format!("Could not save it: {e}"));
        }
        text.push_str(&if on {
            format!(
                "🌳 New sessions in <#{}> now start in their own worktree.\n",
                project.channel_id
            )
        } else {
            format!(
                "New sessions in <#{}> now start in the main checkout.\n",
                project.channel_id
            )
        });
    }
    let worktrees = match listed {
        Ok(w) => w,
        Err(e) => {
            text.push_str(&format!("❌ {e}"));
            return ephemeral(text);
        }
    };
    let threads = bot.store.thread_worktrees().unwrap_or_default();
    text.push_str(&format!(
        "**Worktrees of `{}`** (new sessions in worktrees: {})\n",
        project.directory,
        if auto_for(bot, project.channel_id) {
            "on"
        } else {
            "off"
        }
    ));
    for w in &worktrees {
        text.push_str(&worktree_line(w, &threads));
        text.push('\n');
    }
    ephemeral(text)
}

fn worktree_line(w: &WorktreeInfo, threads: &[(u64, WorktreeRecord)]) -> String {
    let mut parts = vec![format!("`{}`", w.name)];
    if w.is_main {
        parts.push("main checkout".into());
    }
    parts.push(match &w.branch {
        Some(b) => format!("`{b}`"),
        None => "detached".into(),
    });
    if let Some(head) = &w.head {
        parts.push(format!("`{}`", short(head)));
    }
    if !w.is_main {
        let linked: Vec<String> = threads
            .iter()
            .filter(|(_, r)| {
                r.state == WorktreeState::Ready
                    && r.workspace
                        .as_deref()
                        .is_some_and(|d| Path::new(d).starts_with(&w.path))
            })
            .map(|(t, _)| format!("<#{t}>"))
            .collect();
        if !linked.is_empty() {
            parts.push(linked.join(" "));
        }
        if !w.created_by_kimaki {
            parts.push("made outside kimaki".into());
        }
    }
    if w.locked {
        parts.push("locked".into());
    }
    if w.prunable {
        parts.push("directory gone".into());
    }
    format!("• {}", parts.join(" · "))
}

/// Autocomplete for `/new-worktree name`: the project's existing worktrees (a session may start
/// in any of them).
pub async fn existing_names(bot: &Bot, place: &Place) -> Vec<(String, String)> {
    let (Place::Thread(_, project) | Place::Channel(project)) = place else {
        return Vec::new();
    };
    let Ok(list) = bot.worktrees.list(Path::new(&project.directory)).await else {
        return Vec::new();
    };
    list.into_iter()
        .filter(|w| !w.is_main && !w.prunable)
        .map(|w| {
            let label = match &w.branch {
                Some(b) => format!("{} (existing, {b})", w.name),
                None => format!("{} (existing)", w.name),
            };
            (label, w.name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_asks_for_a_worktree() {
        assert_eq!(requested("⬦ fix login"), Some("fix login"));
        assert_eq!(requested("  ⬦fix"), Some("fix"));
        assert_eq!(requested("fix ⬦"), None);
        assert_eq!(thread_title("fix login"), "⬦ fix login");
        assert_eq!(thread_title(" "), "⬦ worktree");
    }

    #[test]
    fn refusals_list_the_files() {
        let e = WorktreeError::Conflicts {
            source_ref: "opencode/x".into(),
            target: "main".into(),
            files: vec!["a.rs".into(), "b.rs".into()],
        };
        let text = merge_refused_text(&e);
        assert!(text.contains("• `a.rs`\n• `b.rs`"), "{text}");
        let many: Vec<String> = (0..25).map(|i| format!("f{i}")).collect();
        let listed = file_list(&many);
        assert!(listed.ends_with("… and 5 more"), "{listed}");
    }
}
