//! The outbound layer absorbs a 429 storm on one thread — waiting at least `retry_after` and
//! sending nothing else to that route meanwhile — while another thread is not blocked; 5xx
//! answers (even with an HTML body) are retried, and a retry never posts twice.

use pretty_assertions::assert_eq;

use crate::support::discord_harness::{Kimaki, QUICK};

/// The twin's injected `retry_after`, in seconds.
const RETRY_AFTER: f64 = 0.4;

#[tokio::test]
async fn a_429_storm_is_absorbed_without_blocking_another_thread() {
    let k = Kimaki::start().await;
    let alice = k.twin.user("alice");
    let a0 = alice.in_channel(k.channel).send("first");
    let a = k.thread_of(a0).await;
    k.twin
        .wait_bot_message(a, |m| m.content.starts_with('*'), QUICK)
        .await;

    let route = format!("POST /channels/{a}/messages");
    k.twin.fail_next(&route, 429, Some(RETRY_AFTER), 3);
    let in_a = alice.in_thread(a).send("second in A");
    let b0 = alice.in_channel(k.channel).send("in B");
    let b = k.thread_of(b0).await;
    let reply_b = k
        .twin
        .wait_bot_message(b, |m| m.content == "⬥ echo: in B", QUICK)
        .await;
    let reply_a = k
        .bot_message_after(a, in_a, |m| m.content == "⬥ echo: second in A")
        .await;
    assert!(
        reply_b.id < reply_a.id,
        "thread B was answered while A waited"
    );

    let path = format!("/api/v10/channels/{a}/messages");
    let posts: Vec<(u16, u64)> = k
        .twin
        .rest_log()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .skip_while(|r| r.status != 429)
        .map(|r| (r.status, r.at_ms))
        .collect();
    let statuses: Vec<u16> = posts.iter().map(|p| p.0).take(4).collect();
    assert_eq!(
        statuses,
        [429, 429, 429, 200],
        "nothing else was sent to the route meanwhile"
    );
    for w in posts.windows(2).take(3) {
        let gap = w[1].1 - w[0].1;
        assert!(
            gap as f64 >= RETRY_AFTER * 1000.0 - 5.0,
            "waited only {gap} ms"
        );
    }
    assert_eq!(k.twin.invalid_request_counts().rate_limited, 3);
    let replies = k
        .bot_texts(a)
        .into_iter()
        .filter(|t| t == "⬥ echo: second in A")
        .count();
    assert_eq!(replies, 1);
    k.finish().await;
}

#[tokio::test]
async fn server_errors_are_retried_and_never_duplicate_a_message() {
    let k = Kimaki::start().await;
    let alice = k.twin.user("alice");
    let first = alice.in_channel(k.channel).send("first");
    let thread = k.thread_of(first).await;
    k.twin
        .wait_bot_message(thread, |m| m.content.starts_with('*'), QUICK)
        .await;
    k.twin.html_error_body(true);
    k.twin
        .fail_next(&format!("POST /channels/{thread}/messages"), 502, None, 2);
    k.twin
        .fail_next(&format!("POST /channels/{thread}/messages"), 503, None, 1);
    let again = alice.in_thread(thread).send("again");
    k.bot_message_after(thread, again, |m| m.content.starts_with('*'))
        .await;
    let echoes = k
        .bot_texts(thread)
        .into_iter()
        .filter(|t| t == "⬥ echo: again")
        .count();
    assert_eq!(echoes, 1);
    k.twin.html_error_body(false);
    k.finish().await;
}
