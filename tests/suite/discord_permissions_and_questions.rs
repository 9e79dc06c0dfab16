//! Permission prompts (Accept, Accept Always, Deny, and the time-out) and questions (a choice
//! from the dropdown, or "Other" answered by typing): the click is acknowledged by editing the
//! prompt, the answer reaches the running job, and the agent's reply follows.

use std::time::Duration;

use pretty_assertions::assert_eq;
use serenity::model::id::{ChannelId, MessageId};

use crate::support::discord_harness::{Kimaki, Options, QUICK};
use crate::support::discord_twin::Message;

/// The `custom_id` of the enabled component on `m` whose id ends with `suffix`.
fn custom_id(m: &Message, suffix: &str) -> String {
    m.enabled_custom_ids()
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| id.ends_with(suffix))
        .unwrap_or_else(|| panic!("no component ending in {suffix} on {:?}", m.components))
}

async fn prompt_after(k: &Kimaki, thread: ChannelId, after: MessageId, head: &str) -> Message {
    k.bot_message_after(thread, after, |m| {
        m.content.starts_with(head) && !m.components.is_empty()
    })
    .await
}

#[tokio::test]
async fn permission_buttons_accept_once_always_and_deny() {
    let k = Kimaki::start().await;
    let alice = k.twin.user("alice");
    let first = alice.in_channel(k.channel).send("permission");
    let thread = k.thread_of(first).await;
    let cases = [
        ("once", "✅ **Accepted** by alice", "allowed once"),
        (
            "always",
            "✅ **Accepted always** by alice",
            "allowed always",
        ),
        ("reject", "❌ **Denied** by alice", "denied"),
    ];
    let mut asked = first;
    for (i, (choice, outcome, said)) in cases.into_iter().enumerate() {
        if i > 0 {
            asked = alice.in_thread(thread).send("permission");
        }
        let prompt = prompt_after(&k, thread, asked, "⚠️ **Permission Required**").await;
        assert!(
            prompt.content.contains("**Type:** `bash`"),
            "{}",
            prompt.content
        );
        let labels: Vec<String> = prompt.components[0]["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["label"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(labels, ["Accept", "Accept Always", "Deny"]);
        let click = alice
            .in_thread(thread)
            .click(prompt.id, &custom_id(&prompt, &format!(":{choice}")));
        let ack = k.twin.wait_interaction_ack(click, QUICK).await;
        assert_eq!(ack.response_type, 7, "the click edits the prompt");
        let edited = k.twin.message(prompt.id).unwrap();
        assert!(edited.components.is_empty(), "buttons removed");
        assert!(edited.content.ends_with(outcome), "{}", edited.content);
        k.bot_message_after(thread, prompt.id, |m| {
            m.content == format!("⬥ The user {said}.")
        })
        .await;
    }
    // The prompt edit went through the interaction only: no extra PATCH re-sent it.
    let patches_of_prompts = k
        .twin
        .rest_log()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains(&thread.to_string()))
        .count();
    assert_eq!(patches_of_prompts, 0, "{:#?}", k.twin.rest_log());
    k.finish().await;
}

#[tokio::test]
async fn an_unanswered_permission_is_denied_after_the_timeout() {
    let k = Kimaki::start_with(Options {
        tweak: Box::new(|c| c.timings.permission_timeout = Duration::from_millis(800)),
        ..Options::default()
    })
    .await;
    let asked = k
        .twin
        .user("alice")
        .in_channel(k.channel)
        .send("permission");
    let thread = k.thread_of(asked).await;
    let prompt = prompt_after(&k, thread, asked, "⚠️ **Permission Required**").await;
    k.bot_message_after(thread, prompt.id, |m| m.content == "⬥ The user denied.")
        .await;
    let edited = k
        .twin
        .wait_for("the prompt edited", QUICK, |s| {
            s.messages
                .get(&prompt.id)
                .filter(|m| m.components.is_empty())
                .cloned()
        })
        .await;
    assert!(
        edited.content.contains("⏱️ **Auto-denied**"),
        "{}",
        edited.content
    );
    k.finish().await;
}

#[tokio::test]
async fn a_question_is_answered_from_the_dropdown_or_by_typing_other() {
    let k = Kimaki::start().await;
    let alice = k.twin.user("alice");
    let first = alice.in_channel(k.channel).send("question");
    let thread = k.thread_of(first).await;

    let q = prompt_after(&k, thread, first, "❓ **Approach**").await;
    assert_eq!(q.content, "❓ **Approach**\nHow should I proceed?");
    let options: Vec<&str> = q.components[0]["components"][0]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["label"].as_str().unwrap())
        .collect();
    assert_eq!(options, ["Fast", "Careful", "Other"]);
    let pick = alice
        .in_thread(thread)
        .select(q.id, &custom_id(&q, ":0"), &["1"]);
    assert_eq!(
        k.twin.wait_interaction_ack(pick, QUICK).await.response_type,
        7
    );
    assert_eq!(
        k.twin.message(q.id).unwrap().content,
        "❓ **Approach**\nHow should I proceed?\n✅ Careful"
    );
    k.bot_message_after(thread, q.id, |m| m.content == "⬥ You chose: Careful.")
        .await;

    // "Other": the next message in the thread is the answer, not a new prompt.
    let second = alice.in_thread(thread).send("question");
    let q2 = prompt_after(&k, thread, second, "❓ **Approach**").await;
    let other = alice
        .in_thread(thread)
        .select(q2.id, &custom_id(&q2, ":0"), &["__other__"]);
    let ack = k.twin.wait_interaction_ack(other, QUICK).await;
    assert_eq!(ack.response_type, 4, "an ephemeral hint");
    let typed = alice.in_thread(thread).send("Blue, please");
    k.bot_message_after(thread, typed, |m| m.content == "⬥ You chose: Blue, please.")
        .await;
    let answered = k
        .twin
        .wait_for("the question edited", QUICK, |s| {
            s.messages
                .get(&q2.id)
                .filter(|m| m.components.is_empty())
                .cloned()
        })
        .await;
    assert!(
        answered.content.ends_with("✅ Blue, please"),
        "{}",
        answered.content
    );
    assert_eq!(
        k.script.prompts().len(),
        2,
        "the typed answer started no new run"
    );
    k.finish().await;
}
