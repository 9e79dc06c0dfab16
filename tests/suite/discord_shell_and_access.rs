//! Who the bot answers: `no-kimaki` blocks even the owner, people without the rights are told
//! once how to get them, the `Kimaki` role admits, user-made threads are left alone, and mention
//! mode ignores unmentioned channel messages. `!command` runs in the project directory only when
//! the shell capability is on, and obeys the same rules.

use std::time::Duration;

use pretty_assertions::assert_eq;

use crate::support::discord_harness::{Kimaki, Options, QUICK};
use crate::support::discord_twin::TwinConfig;

#[tokio::test]
async fn blocked_refused_and_allowed_users_and_user_made_threads() {
    let k = Kimaki::start_with(Options {
        twin: TwinConfig {
            kimaki_roles: true,
            ..TwinConfig::default()
        },
        ..Options::default()
    })
    .await;
    let ch = k.channel;
    // carol has the Kimaki role *and* no-kimaki: blocked.
    k.twin.add_user("carol", &["Kimaki", "no-kimaki"]);
    let carol = k.twin.user("carol").in_channel(ch);
    let blocked = carol.send("please run");
    let refusal = k.bot_message_after(ch, blocked, |_| true).await;
    assert_eq!(refusal.referenced, Some(blocked));
    assert!(
        refusal.content.contains("**no-kimaki**"),
        "{}",
        refusal.content
    );
    // bob has no rights: told once per channel, then silence.
    let bob = k.twin.user("bob").in_channel(ch);
    let first = bob.send("hello?");
    let told = k
        .bot_message_after(ch, first, |m| m.referenced == Some(first))
        .await;
    assert!(
        told.content.contains("give you the **Kimaki** role"),
        "{}",
        told.content
    );
    let again = [bob.send("hello again?"), carol.send("and again")];
    // dave has the role: allowed (his reply proves the others were processed before it).
    k.twin.add_user("dave", &["Kimaki"]);
    let allowed = k.twin.user("dave").in_channel(ch).send("dave's task");
    let thread = k.thread_of(allowed).await;
    k.twin
        .wait_bot_message(thread, |m| m.content == "⬥ echo: dave's task", QUICK)
        .await;
    for m in again {
        k.wait_handled(m).await;
    }
    let bot = k.twin.bot_user_id();
    let in_channel: Vec<String> = k
        .twin
        .messages(ch)
        .into_iter()
        .filter(|m| m.author_id == bot)
        .map(|m| m.content)
        .collect();
    assert_eq!(in_channel.len(), 2, "one refusal per user: {in_channel:#?}");
    assert_eq!(k.twin.threads().len(), 1, "no thread for refused users");

    // A thread alice made herself is left alone.
    let own = k
        .twin
        .user("alice")
        .in_channel(ch)
        .create_thread("my notes");
    let note = k.twin.user("alice").in_thread(own).send("just notes");
    // A later message elsewhere that is answered shows the note was seen and skipped.
    let probe = k.twin.user("alice").in_thread(thread).send("probe");
    k.bot_message_after(thread, probe, |m| m.content == "⬥ echo: probe")
        .await;
    assert!(
        k.twin.messages(own).iter().all(|m| m.author_id != bot),
        "{note}"
    );
    assert!(
        !k.handled(note),
        "a thread without a session is not the bot's"
    );
    k.finish().await;
}

#[tokio::test]
async fn mention_mode_ignores_channel_messages_without_a_mention() {
    let k = Kimaki::start().await;
    let alice = k.twin.user("alice").in_channel(k.channel);
    let on = alice.slash("mention-mode", &[("enabled", serde_json::json!(true))]);
    assert_eq!(
        k.twin.wait_interaction_ack(on, QUICK).await.response_type,
        4
    );
    let ignored = alice.send("no mention here");
    let mentioned = alice.send(&format!("<@{}> with a mention", k.twin.bot_user_id()));
    let thread = k.thread_of(mentioned).await;
    k.twin
        .wait_bot_message(thread, |m| m.content == "⬥ echo: with a mention", QUICK)
        .await;
    k.wait_handled(ignored).await;
    assert!(k
        .twin
        .channel(serenity::model::id::ChannelId::new(ignored.get()))
        .is_none());
    k.finish().await;
}

#[tokio::test]
async fn bang_commands_run_in_the_project_directory_when_enabled() {
    let k = Kimaki::start_with(Options {
        tweak: Box::new(|c| {
            c.shell_enabled = true;
            c.timings.shell_timeout = Duration::from_millis(500);
        }),
        ..Options::default()
    })
    .await;
    let alice = k.twin.user("alice");
    let ls = alice.in_channel(k.channel).send("!ls");
    let done = k
        .bot_message_after(k.channel, ls, |m| m.content.starts_with("`ls` exited"))
        .await;
    assert_eq!(done.content, "`ls` exited with 0\n```\nREADME.md\n```");
    assert_eq!(done.referenced, Some(ls));

    // In a session thread too; a command that hangs is killed at the time-out.
    let start = alice.in_channel(k.channel).send("hello");
    let thread = k.thread_of(start).await;
    let hang = alice.in_thread(thread).send("!sleep 30; echo never");
    let killed = k
        .bot_message_after(thread, hang, |m| m.content.contains("timed out"))
        .await;
    assert_eq!(
        killed.content,
        "`sleep 30; echo never` timed out\n*(no output)*"
    );
    // bob may not use the bot at all, so not the shell either.
    let bob = k.twin.user("bob").in_thread(thread).send("!ls");
    let refused = k
        .bot_message_after(thread, bob, |m| m.referenced == Some(bob))
        .await;
    assert!(
        refused.content.contains("Kimaki** role"),
        "{}",
        refused.content
    );
    assert_eq!(
        k.script.prompts().len(),
        1,
        "`!` commands never reach the agent"
    );
    k.finish().await;
}

#[tokio::test]
async fn bang_commands_are_refused_when_the_capability_is_off() {
    let k = Kimaki::start().await;
    let ls = k.twin.user("alice").in_channel(k.channel).send("!ls");
    let reply = k.bot_message_after(k.channel, ls, |_| true).await;
    assert!(
        reply.content.contains("Shell commands are off"),
        "{}",
        reply.content
    );
    k.finish().await;
}
