//! A message in a busy thread interrupts the running turn (nothing is dropped: the old job ends
//! as interrupted, the new one runs); a message ending in `. queue` waits its turn and is
//! acknowledged with its position; `/abort` stops the turn and the queue still runs.

use kimaki::core::{EventKind, JobId, JobState};
use pretty_assertions::assert_eq;
use serenity::model::id::MessageId;

use crate::support::discord_harness::{Kimaki, Options, QUICK};

fn job_of(message: MessageId) -> JobId {
    JobId::new(format!("discord-{message}"))
}

/// Waits until the job of `message` reached the runner.
async fn running(k: &Kimaki, message: MessageId) {
    k.queue()
        .wait_event(&job_of(message), QUICK, |e| {
            matches!(e, EventKind::Started { .. })
        })
        .await;
}

fn state(k: &Kimaki, message: MessageId) -> JobState {
    k.queue()
        .queue
        .get(&job_of(message))
        .unwrap()
        .unwrap()
        .state
}

#[tokio::test]
async fn a_new_message_interrupts_and_a_queued_one_waits_its_turn() {
    let k = Kimaki::start_with(Options {
        runner: "echo",
        ..Options::default()
    })
    .await;
    let alice = k.twin.user("alice");
    let first = alice.in_channel(k.channel).send("sleep:60000 first");
    let thread = k.thread_of(first).await;
    running(&k, first).await;
    k.twin.wait_typing(thread, QUICK).await;

    // Interrupt: the running turn stops, the new message runs at once.
    let second = alice.in_thread(thread).send("second");
    k.bot_message_after(thread, second, |m| m.content.starts_with("⬥ echo: second"))
        .await;
    assert_eq!(state(&k, first), JobState::Interrupted);
    assert!(
        !k.bot_texts(thread).iter().any(|t| t.contains("first")),
        "the interrupted turn printed nothing"
    );

    // Queue: acknowledged with its position, announced when it starts, run after the busy one.
    let third = alice.in_thread(thread).send("sleep:1000 third");
    running(&k, third).await;
    let fourth = alice.in_thread(thread).send("fourth. queue");
    let ack = k
        .bot_message_after(thread, fourth, |m| {
            m.content.starts_with("Queued at position")
        })
        .await;
    assert_eq!(
        ack.content,
        "Queued at position 1. Delete your message to remove it from the queue."
    );
    assert_eq!(
        ack.referenced,
        Some(fourth),
        "the acknowledgement replies to the message"
    );
    let r3 = k
        .bot_message_after(thread, ack.id, |m| {
            m.content.starts_with("⬥ echo: sleep:1000 third")
        })
        .await;
    let announce = k
        .bot_message_after(thread, ack.id, |m| m.content == "» **alice:** fourth.")
        .await;
    let r4 = k
        .bot_message_after(thread, ack.id, |m| m.content.starts_with("⬥ echo: fourth."))
        .await;
    assert!(r3.id < announce.id && announce.id < r4.id, "in order");
    assert_eq!(
        state(&k, third),
        JobState::Succeeded,
        "a queued message never interrupts"
    );

    // /abort stops the turn; the queued message still runs.
    let fifth = alice.in_thread(thread).send("sleep:60000 fifth");
    running(&k, fifth).await;
    let sixth = alice.in_thread(thread).send("sixth\nqueue");
    k.bot_message_after(thread, sixth, |m| {
        m.content.starts_with("Queued at position 1")
    })
    .await;
    let abort = alice.in_thread(thread).slash("abort", &[]);
    let ack = k.twin.wait_interaction_ack(abort, QUICK).await;
    assert_eq!(ack.response_type, 4);
    assert_eq!(
        ack.data.unwrap()["content"],
        "🛑 Stopped the current run. 1 queued message(s) will run next."
    );
    k.bot_message_after(thread, sixth, |m| m.content.starts_with("⬥ echo: sixth"))
        .await;
    assert_eq!(state(&k, fifth), JobState::Cancelled);

    // Every message ran or was stopped exactly once.
    assert_eq!(k.echo.runs.load(std::sync::atomic::Ordering::SeqCst), 6);
    k.finish().await;
}
