//! A message in a project channel becomes a thread and a session; the reply and its footer are
//! rendered there; a reply in the thread continues the same session; setup is idempotent across
//! a restart; a 5,000-character reply with a code block is split without breaking the fence.

use kimaki::adapters::discord::render::{text_chunks, DISCORD_LIMIT};
use kimaki::core::LaneId;
use pretty_assertions::assert_eq;
use serenity::model::id::ChannelId;

use crate::support::discord_harness::{long_reply, Kimaki, PROJECT, QUICK};
use crate::support::discord_twin::{channel_kind, RestRecord};

fn puts_of_commands(log: &[RestRecord]) -> usize {
    log.iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/commands"))
        .count()
}

#[tokio::test]
async fn a_channel_message_starts_a_thread_and_the_reply_ends_with_a_footer() {
    let mut k = Kimaki::start().await;

    // Setup: the Kimaki role, category and project channel, and a small command set.
    let category = k.twin.read(|s| {
        s.channels
            .values()
            .find(|c| c.kind == channel_kind::CATEGORY && c.name == "Kimaki")
            .map(|c| c.id)
    });
    let channel = k.twin.channel(k.channel).unwrap();
    assert_eq!(
        channel.parent_id, category,
        "the channel sits in the Kimaki category"
    );
    assert!(channel.topic.unwrap_or_default().starts_with("📁 "));
    assert!(k.twin.read(|s| s.role_by_name("Kimaki").is_some()));
    let commands: Vec<String> = k.twin.commands().into_iter().map(|c| c.name).collect();
    for name in [
        "new-session",
        "resume",
        "abort",
        "queue",
        "model",
        "agent",
        "verbosity",
        "add-project",
        "status",
    ] {
        assert!(
            commands.contains(&name.to_owned()),
            "/{name} registered: {commands:?}"
        );
    }
    assert!(commands.len() < 20, "far below the 100-command budget");

    let alice = k.twin.user("alice");
    let mention = format!("<@{}>", k.twin.bot_user_id());
    let sent = alice
        .in_channel(k.channel)
        .send(&format!("{mention}  fix the   build"));
    let thread = k.thread_of(sent).await;
    assert_eq!(thread.get(), sent.get(), "thread id = message id");
    let t = k.twin.channel(thread).unwrap();
    assert_eq!(
        t.name, "fix the build",
        "mentions stripped, whitespace collapsed"
    );
    assert_eq!(t.auto_archive_duration, 1440);

    let reply = k
        .twin
        .wait_bot_message(thread, |m| m.content == "⬥ echo: fix the   build", QUICK)
        .await;
    let footer = k
        .bot_message_after(thread, reply.id, |m| m.content.starts_with('*'))
        .await;
    assert!(
        footer.content.starts_with(&format!("*{PROJECT} ⋅ ")),
        "{}",
        footer.content
    );
    const SUPPRESS_NOTIFICATIONS: u64 = 1 << 12;
    assert_eq!(
        reply.flags & SUPPRESS_NOTIFICATIONS,
        SUPPRESS_NOTIFICATIONS,
        "output is silent"
    );
    assert_eq!(
        footer.flags & SUPPRESS_NOTIFICATIONS,
        0,
        "the footer notifies"
    );
    assert!(
        k.twin.thread_members(thread).contains(&alice.id()),
        "the author joins the thread"
    );

    // Every POST carried a nonce with enforce_nonce, and allowed_mentions.
    for r in k
        .twin
        .rest_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
    {
        let crate::support::discord_twin::RestBody::Json(body) = &r.body else {
            panic!("JSON body expected: {r:?}");
        };
        assert!(body["nonce"].is_string(), "{body}");
        assert_eq!(body["enforce_nonce"], true);
        assert!(body["allowed_mentions"].is_object());
    }

    // A reply in the thread continues the same runner session.
    let again = alice.in_thread(thread).send("and the tests");
    let second = k
        .bot_message_after(thread, again, |m| m.content == "⬥ echo: and the tests")
        .await;
    k.bot_message_after(thread, second.id, |m| m.content.starts_with('*'))
        .await;
    let lane = k
        .queue()
        .queue
        .lane(&LaneId::new(format!("discord:{thread}")))
        .unwrap()
        .unwrap();
    assert_eq!(lane.runner_session_id.as_deref(), Some("script-0"));

    // Idempotent setup: a restart creates nothing new and registers commands only once.
    let channels_before = k
        .twin
        .read(|s| s.channels.values().filter(|c| !c.is_thread()).count());
    assert_eq!(puts_of_commands(&k.twin.rest_log()), 1);
    k.restart().await;
    k.twin.wait_gateway_connections(1, QUICK).await;
    let resumed_turn = alice.in_thread(thread).send("after the restart");
    k.bot_message_after(thread, resumed_turn, |m| {
        m.content == "⬥ echo: after the restart"
    })
    .await;
    let channels_after = k
        .twin
        .read(|s| s.channels.values().filter(|c| !c.is_thread()).count());
    assert_eq!(channels_after, channels_before);
    assert_eq!(
        puts_of_commands(&k.twin.rest_log()),
        1,
        "same hash: no second PUT"
    );
    let texts = k.bot_texts(thread);
    let mut unique = texts.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        texts.len(),
        "nothing posted twice: {texts:#?}"
    );
    k.finish().await;
}

#[tokio::test]
async fn a_long_reply_with_a_code_block_is_split_without_breaking_the_fence() {
    let k = Kimaki::start().await;
    let sent = k.twin.user("alice").in_channel(k.channel).send("long");
    let thread = k.thread_of(sent).await;
    let footer = k
        .twin
        .wait_bot_message(
            thread,
            |m| m.content.starts_with(&format!("*{PROJECT}")),
            QUICK,
        )
        .await;
    let expected = text_chunks(&long_reply(), false);
    assert!(expected.len() >= 3, "the reply needs several messages");
    let bot = k.twin.bot_user_id();
    let shown: Vec<String> = k
        .twin
        .messages(thread)
        .into_iter()
        .filter(|m| m.author_id == bot && m.id < footer.id)
        .map(|m| m.content)
        .collect();
    assert_eq!(
        shown, expected,
        "final messages are the split reply, in order"
    );
    for (i, m) in shown.iter().enumerate() {
        assert!(m.chars().count() <= DISCORD_LIMIT);
        assert_eq!(
            m.matches("```").count() % 2,
            0,
            "fences balanced in message {i}"
        );
        if i > 0 {
            assert!(
                m.starts_with("```rust\n"),
                "message {i} reopens the rust fence"
            );
        }
    }
    assert!(footer.content.contains("fake-model"), "{}", footer.content);
    k.finish().await;
}

/// Channels created by setup, for tests that look for one by name.
pub fn channel_named(k: &Kimaki, name: &str) -> Option<ChannelId> {
    k.twin.read(|s| {
        s.channels
            .values()
            .find(|c| c.name == name && !c.deleted)
            .map(|c| c.id)
    })
}

#[tokio::test]
async fn attachments_are_inlined_or_passed_and_a_dead_link_is_reported() {
    use crate::support::discord_twin::TwinFile;
    use kimaki::core::JobId;

    let k = Kimaki::start().await;
    let files = vec![
        TwinFile::text("notes.txt", "remember the cache"),
        TwinFile::new("shot.png", "image/png", vec![0x89, b'P', b'N', b'G']),
    ];
    let sent = k
        .twin
        .user("alice")
        .in_channel(k.channel)
        .send_files("see attached", files);
    let thread = k.thread_of(sent).await;
    k.twin
        .wait_bot_message(thread, |m| m.content == "⬥ echo: see attached", QUICK)
        .await;
    let prompt = k.script.prompts().pop().unwrap();
    assert!(
        prompt.contains(
            "<attachment filename=\"notes.txt\" mime=\"text/plain; charset=utf-8\" size=\"18\""
        ) && prompt.contains(">\nremember the cache\n</attachment>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("shot.png") && prompt.contains("do not use the Read tool"),
        "{prompt}"
    );
    let job = k
        .queue()
        .queue
        .get(&JobId::new(format!("discord-{sent}")))
        .unwrap()
        .unwrap();
    assert_eq!(
        job.job.attachments.len(),
        1,
        "the image goes to the runner as a file"
    );
    let saved = std::fs::read(&job.job.attachments[0].path).unwrap();
    assert_eq!(saved, [0x89, b'P', b'N', b'G']);
    k.finish().await;

    // A link that expired before the download: the user is told, the text still runs. (The
    // thread creation is held for a moment so the link dies before the bot fetches it.)
    let k = Kimaki::start().await;
    k.twin.delay(
        "POST /channels/{c}/messages/{m}/threads",
        std::time::Duration::from_millis(500),
        1,
    );
    let sent = k
        .twin
        .user("alice")
        .in_channel(k.channel)
        .send_files("with a dead link", vec![TwinFile::text("gone.txt", "x")]);
    let attachment = k.twin.message(sent).unwrap().attachments[0];
    k.twin.expire_attachment(attachment);
    let thread = k.thread_of(sent).await;
    let warning = k
        .twin
        .wait_bot_message(
            thread,
            |m| m.content.starts_with("⚠️ Could not fetch"),
            QUICK,
        )
        .await;
    assert_eq!(
        warning.content,
        "⚠️ Could not fetch `gone.txt`: the link expired or the file is unavailable."
    );
    k.twin
        .wait_bot_message(thread, |m| m.content == "⬥ echo: with a dead link", QUICK)
        .await;
    k.finish().await;
}

/// Shutting down while a job is finishing: its reply and footer reach Discord before kimaki
/// exits (not only at the next start).
#[tokio::test]
async fn a_job_that_ends_during_shutdown_still_gets_its_reply_out() {
    let mut k = Kimaki::start().await;
    let sent = k
        .twin
        .user("alice")
        .in_channel(k.channel)
        .send("sleep:300 finishing touches");
    let thread = k.thread_of(sent).await;
    // Queued (durably handled), so the shutdown's drain lets it finish; a Discord hiccup (one
    // 500, retried after a pause) makes its reply still pending when the queue has stopped.
    k.wait_handled(sent).await;
    k.twin
        .fail_next(&format!("POST /channels/{thread}/messages"), 500, None, 1);
    k.stop().await;
    let messages: Vec<String> = k
        .twin
        .messages(thread)
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("echo: sleep:300 finishing touches")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with(&format!("*{PROJECT} ⋅ "))),
        "the footer too: {messages:?}"
    );
    k.twin.assert_clean();
}
