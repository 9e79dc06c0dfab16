//! kimaki restarts while a permission prompt waits: the prompt keeps its buttons, the click after
//! the restart is accepted (the answer continues the session in a follow-up run), and nothing
//! rendered before the restart is posted again.

use pretty_assertions::assert_eq;

use crate::support::discord_harness::{Kimaki, QUICK};

#[tokio::test]
async fn a_click_after_a_restart_is_accepted_and_the_session_continues() {
    let mut k = Kimaki::start().await;
    let alice = k.twin.user("alice");
    let asked = alice.in_channel(k.channel).send("permission");
    let thread = k.thread_of(asked).await;
    let prompt = k
        .bot_message_after(thread, asked, |m| {
            m.content.starts_with("⚠️ **Permission Required**") && !m.components.is_empty()
        })
        .await;

    k.restart().await;
    k.twin.wait_gateway_connections(1, QUICK).await;
    // The run that asked was stopped by the restart; the prompt still offers its buttons.
    k.bot_message_after(thread, prompt.id, |m| m.content.starts_with("⬦ Stopped:"))
        .await;
    assert!(!k.twin.message(prompt.id).unwrap().components.is_empty());

    let click = alice.in_thread(thread).click(prompt.id, "perm:per_0:once");
    let ack = k.twin.wait_interaction_ack(click, QUICK).await;
    assert_eq!(ack.response_type, 7);
    let edited = k.twin.message(prompt.id).unwrap();
    assert!(
        edited.content.ends_with("✅ **Accepted** by alice"),
        "{}",
        edited.content
    );
    assert!(edited.components.is_empty());
    let reply = k
        .bot_message_after(thread, prompt.id, |m| {
            m.content.starts_with(
                "⬥ echo: You asked for permission to run `ls`. The user allowed it once.",
            )
        })
        .await;
    k.bot_message_after(thread, reply.id, |m| m.content.starts_with('*'))
        .await;
    let prompts = k.script.prompts();
    assert_eq!(
        prompts.len(),
        2,
        "one run before, one continuation after: {prompts:#?}"
    );

    let texts = k.bot_texts(thread);
    let prompts_posted = texts
        .iter()
        .filter(|t| t.starts_with("⚠️ **Permission Required**"))
        .count();
    assert_eq!(
        prompts_posted, 1,
        "the prompt was not posted again: {texts:#?}"
    );
    k.finish().await;
}
