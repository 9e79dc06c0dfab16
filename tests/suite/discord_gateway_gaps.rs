//! Gateway outages lose nothing and answer each message once: a dropped connection resumes and
//! the missed dispatches are replayed; after a fresh IDENTIFY (the session is gone, Discord
//! drops its buffer) the adapter reads each channel's history since the last message it saw; a
//! dispatch delivered twice is handled once. Re-identifying costs serenity ~5 s, so this is the
//! suite's one slow test.

use std::time::Duration;

use pretty_assertions::assert_eq;
use serenity::model::id::{ChannelId, MessageId};

use crate::support::discord_harness::Kimaki;
use crate::support::discord_twin::WsDirection;

/// serenity waits out a 5 s shard shutdown before it identifies again.
const REIDENTIFY: Duration = Duration::from_secs(40);

fn count(k: &Kimaki, channel: ChannelId, text: &str) -> usize {
    k.bot_texts(channel).iter().filter(|t| *t == text).count()
}

async fn answered(k: &Kimaki, channel: ChannelId, after: MessageId, text: &str) {
    k.twin
        .wait_bot_message(channel, |m| m.id > after && m.content == text, REIDENTIFY)
        .await;
}

#[tokio::test]
async fn messages_sent_during_gateway_gaps_are_answered_exactly_once() {
    let k = Kimaki::start().await;
    let alice = k.twin.user("alice");
    let first = alice.in_channel(k.channel).send("hello");
    let a = k.thread_of(first).await;
    answered(&k, a, first, "⬥ echo: hello").await;

    // 1. Dropped TCP: serenity resumes and the twin replays what was sent meanwhile.
    k.twin.drop_tcp();
    let during_a = alice.in_thread(a).send("during the drop");
    let during_b = alice
        .in_channel(k.channel)
        .send("new topic during the drop");
    answered(&k, a, during_a, "⬥ echo: during the drop").await;
    let b = k.thread_of(during_b).await;
    answered(&k, b, during_b, "⬥ echo: new topic during the drop").await;
    let resumes = k.twin.ws_log().iter().filter(|f| f.op == Some(6)).count();
    assert_eq!(resumes, 1);

    // 2. The session is lost: a fresh IDENTIFY, and the backfill reads the history.
    k.twin.invalid_session(false);
    let lost_a = alice.in_thread(a).send("while re-identifying");
    let lost_c = alice
        .in_channel(k.channel)
        .send("channel while re-identifying");
    answered(&k, a, lost_a, "⬥ echo: while re-identifying").await;
    let c = k.thread_of(lost_c).await;
    answered(&k, c, lost_c, "⬥ echo: channel while re-identifying").await;
    let identifies = k
        .twin
        .ws_log()
        .iter()
        .filter(|f| f.direction == WsDirection::FromBot && f.op == Some(2))
        .count();
    assert_eq!(identifies, 2, "one fresh IDENTIFY");

    // 3. A dispatch delivered twice is handled once.
    k.twin.duplicate_next_dispatch();
    let twice = alice.in_thread(a).send("delivered twice");
    answered(&k, a, twice, "⬥ echo: delivered twice").await;
    let probe = alice.in_thread(a).send("probe");
    answered(&k, a, probe, "⬥ echo: probe").await;

    for (ch, text) in [
        (a, "⬥ echo: hello"),
        (a, "⬥ echo: during the drop"),
        (b, "⬥ echo: new topic during the drop"),
        (a, "⬥ echo: while re-identifying"),
        (c, "⬥ echo: channel while re-identifying"),
        (a, "⬥ echo: delivered twice"),
    ] {
        assert_eq!(count(&k, ch, text), 1, "{text}");
    }
    assert_eq!(k.script.prompts().len(), 7, "{:#?}", k.script.prompts());
    k.finish().await;
}
