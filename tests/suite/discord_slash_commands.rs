//! The slash commands do what they say: `/new-session` starts a thread, `/queue` queues with its
//! position, `/verbosity` changes what the channel shows (at once), `/model` reaches the next
//! job, `/status` reports the session, `/resume` continues an old session in a new thread with
//! its last messages replayed, `/add-project` (with autocomplete) gives a folder a channel, and
//! `/create-new-project` makes a new git repository with its channel.

use kimaki::core::{JobId, LaneId};
use pretty_assertions::assert_eq;
use serde_json::json;
use serenity::model::id::{ChannelId, InteractionId};

use crate::support::discord_harness::{Kimaki, QUICK};
use crate::support::discord_twin::InteractionAck;

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

#[tokio::test]
async fn session_commands_start_queue_tune_and_report() {
    let k = Kimaki::start().await;
    let alice = k.twin.user("alice");

    // /new-session posts a starter message and runs the prompt in its thread.
    let started = alice
        .in_channel(k.channel)
        .slash("new-session", &[("prompt", json!("sleep:1500"))]);
    let text = deferred_text(&k, started).await;
    let thread_id: u64 = text
        .trim_start_matches("Started <#")
        .trim_end_matches(">.")
        .parse()
        .unwrap_or_else(|_| panic!("{text}"));
    let thread = ChannelId::new(thread_id);
    let starter = k
        .twin
        .message(serenity::model::id::MessageId::new(thread_id))
        .unwrap();
    assert_eq!(starter.content, "» **alice:** sleep:1500");

    // /queue while it runs: the position, then the queued message runs after.
    let queued = alice
        .in_thread(thread)
        .slash("queue", &[("message", json!("after it"))]);
    let a = ack(&k, queued).await;
    assert_eq!(a.response_type, 4);
    assert_eq!(content(&a), "Queued at position 1.\n» **alice:** after it");
    k.twin
        .wait_bot_message(thread, |m| m.content == "⬥ echo: after it", QUICK)
        .await;

    // /verbosity applies to the next render; /model reaches the next job.
    let v = alice
        .in_thread(thread)
        .slash("verbosity", &[("level", json!("tools-and-text"))]);
    assert!(content(&ack(&k, v).await).contains("**tools-and-text**"));
    let m = alice
        .in_thread(thread)
        .slash("model", &[("model", json!("fake/other-model"))]);
    assert_eq!(
        content(&ack(&k, m).await),
        "Model for this session: `fake/other-model` (from the next message)."
    );
    let tools = alice.in_thread(thread).send("tools");
    let lines = k
        .bot_message_after(thread, tools, |m| m.content.starts_with("┣ read"))
        .await;
    assert_eq!(
        lines.content,
        "┣ read *README.md*\n◼︎ edit *src/main.rs* (+2-1)"
    );
    let job = k
        .queue()
        .queue
        .get(&JobId::new(format!("discord-{tools}")))
        .unwrap()
        .unwrap();
    assert_eq!(job.job.model.as_deref(), Some("fake/other-model"));
    let footer = k
        .bot_message_after(thread, lines.id, |m| m.content.starts_with('*'))
        .await;
    assert!(
        footer.content.contains("fake/other-model"),
        "{}",
        footer.content
    );

    // /status reports the session, privately.
    let st = alice.in_thread(thread).slash("status", &[]);
    let a = ack(&k, st).await;
    let text = content(&a);
    assert!(text.contains("session `script-0`"), "{text}");
    assert!(text.contains("idle · 0 queued"), "{text}");
    assert_eq!(a.data.unwrap()["flags"], 64, "ephemeral");

    // /clear-queue outside a thread is refused politely.
    let cq = alice.in_channel(k.channel).slash("clear-queue", &[]);
    assert_eq!(content(&ack(&k, cq).await), "Use this in a session thread.");
    k.finish().await;
}

#[tokio::test]
async fn resume_continues_a_session_in_a_new_thread_with_a_replay() {
    let k = Kimaki::start().await;
    let alice = k.twin.user("alice");
    let first = alice.in_channel(k.channel).send("remember the plan");
    let old = k.thread_of(first).await;
    k.twin
        .wait_bot_message(old, |m| m.content.starts_with('*'), QUICK)
        .await;

    let ac = alice
        .in_channel(k.channel)
        .autocomplete("resume", "session", "plan");
    let a = ack(&k, ac).await;
    assert_eq!(a.response_type, 8);
    let choices = a.data.unwrap()["choices"].clone();
    assert_eq!(choices[0]["name"], "remember the plan");
    assert_eq!(choices[0]["value"], old.to_string());

    let resumed = alice
        .in_channel(k.channel)
        .slash("resume", &[("session", choices[0]["value"].clone())]);
    let text = deferred_text(&k, resumed).await;
    let new: u64 = text
        .trim_start_matches("Resumed in <#")
        .split('>')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{text}"));
    let new = ChannelId::new(new);
    assert_eq!(
        k.twin.channel(new).unwrap().name,
        "Resume: remember the plan"
    );
    let replay = k
        .twin
        .wait_bot_message(
            new,
            |m| m.content.contains("⬥ echo: remember the plan"),
            QUICK,
        )
        .await;
    let next = alice.in_thread(new).send("and now?");
    k.bot_message_after(new, next, |m| m.content == "⬥ echo: and now?")
        .await;
    assert!(replay.id < next);
    let lane = k
        .queue()
        .queue
        .lane(&LaneId::new(format!("discord:{old}")))
        .unwrap()
        .unwrap();
    assert_eq!(
        lane.runner_session_id.as_deref(),
        Some("script-0"),
        "the new thread continues the old session"
    );
    assert_eq!(k.script.prompts().len(), 2);
    k.finish().await;
}

#[tokio::test]
async fn add_project_offers_folders_and_creates_their_channel() {
    let k = Kimaki::start().await;
    std::fs::create_dir_all(k.dir.path().join("data/projects/api-server")).unwrap();
    let alice = k.twin.user("alice").in_channel(k.channel);
    let ac = alice.autocomplete("add-project", "project", "api");
    let choices = ack(&k, ac).await.data.unwrap()["choices"].clone();
    assert_eq!(choices[0]["value"], "dir:api-server");

    let add = alice.slash("add-project", &[("project", json!("dir:api-server"))]);
    let text = deferred_text(&k, add).await;
    let created = k
        .twin
        .wait_for("the new channel", QUICK, |s| {
            s.channels
                .values()
                .find(|c| c.name == "api-server" && !c.deleted)
                .map(|c| c.id)
        })
        .await;
    assert!(text.starts_with(&format!("📁 <#{created}> → `")), "{text}");
    let sent = k.twin.user("alice").in_channel(created).send("hi api");
    let thread = k.thread_of(sent).await;
    k.twin
        .wait_bot_message(thread, |m| m.content == "⬥ echo: hi api", QUICK)
        .await;

    // Paths outside the projects directory cannot be registered from Discord.
    let escape = alice.slash("add-project", &[("project", json!("dir:../../etc"))]);
    assert!(content(&ack(&k, escape).await).starts_with("Unknown project"));
    k.finish().await;
}

#[tokio::test]
async fn create_new_project_makes_a_repository_with_its_channel() {
    let k = Kimaki::start().await;
    let alice = k.twin.user("alice").in_channel(k.channel);
    let create = alice.slash("create-new-project", &[("name", json!("landing page"))]);
    let text = deferred_text(&k, create).await;
    let created = k
        .twin
        .wait_for("the new channel", QUICK, |s| {
            s.channels
                .values()
                .find(|c| c.name == "landing-page" && !c.deleted)
                .map(|c| c.id)
        })
        .await;
    assert!(text.starts_with(&format!("📁 <#{created}> → `")), "{text}");
    let dir = k.dir.path().join("data/projects/landing-page");
    let repo = git2::Repository::open(&dir).expect("a git repository");
    assert_eq!(repo.head().unwrap().shorthand().ok(), Some("main"));
    assert!(
        repo.head().unwrap().peel_to_commit().is_ok(),
        "one first commit"
    );

    let sent = k.twin.user("alice").in_channel(created).send("hi landing");
    let thread = k.thread_of(sent).await;
    k.twin
        .wait_bot_message(thread, |m| m.content == "⬥ echo: hi landing", QUICK)
        .await;

    // Taken, or unusable, names are refused without touching anything.
    let again = alice.slash("create-new-project", &[("name", json!("landing-page"))]);
    assert!(content(&ack(&k, again).await).contains("already exists"));
    let bad = alice.slash("create-new-project", &[("name", json!("../.."))]);
    assert!(
        content(&ack(&k, bad).await).contains("cannot be a project name"),
        "dots and slashes leave no name"
    );
    k.finish().await;
}

#[tokio::test]
async fn tasks_lists_this_projects_scheduled_sends_and_deletes_one() {
    use kimaki::core::tasks::{Schedule, TaskZone, Tasks};
    let k = Kimaki::start().await;
    let tasks = Tasks::new(k.queue().queue.store().clone());
    let now = kimaki::core::clock::now_ms();
    let cron = Schedule::Cron {
        expr: "0 9 * * 1".into(),
        tz: TaskZone::Utc,
    };
    let ours = crate::support::queue_harness::new_job(
        "cli:weekly",
        "echo",
        &k.project_dir,
        "Run the weekly test suite and summarize failures",
    );
    let ours = tasks
        .add(cron.clone(), ours, true, false, now)
        .await
        .unwrap();
    let elsewhere = k.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let theirs = crate::support::queue_harness::new_job("cli:x", "echo", &elsewhere, "not here");
    let theirs = tasks.add(cron, theirs, true, false, now).await.unwrap();

    let alice = k.twin.user("alice").in_channel(k.channel);
    let list = content(&ack(&k, alice.slash("tasks", &[])).await);
    assert!(list.contains(&ours.id), "{list}");
    assert!(
        list.contains("cron 0 9 * * 1: Run the weekly test suite"),
        "{list}"
    );
    assert!(list.contains("next <t:"), "{list}");
    assert!(
        !list.contains(&theirs.id),
        "only this project's tasks: {list}"
    );

    let ac = alice.autocomplete("tasks", "delete", "weekly");
    let choices = ack(&k, ac).await.data.unwrap()["choices"].clone();
    assert_eq!(choices[0]["value"], ours.id.as_str(), "{choices}");

    let refused = alice.slash("tasks", &[("delete", json!(theirs.id))]);
    assert!(content(&ack(&k, refused).await).starts_with("No task"));
    let deleted = alice.slash("tasks", &[("delete", json!(ours.id))]);
    assert!(content(&ack(&k, deleted).await).starts_with("🗑️ Deleted"));
    assert!(tasks.get(&ours.id).unwrap().is_none());
    assert!(tasks.get(&theirs.id).unwrap().is_some());
    let empty = content(&ack(&k, alice.slash("tasks", &[])).await);
    assert!(empty.starts_with("No scheduled tasks"), "{empty}");
    k.finish().await;
}
