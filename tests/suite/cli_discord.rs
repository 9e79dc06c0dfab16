//! `kimaki start` with a bot token: the real binary connects to Discord (the twin), says which
//! app and guild it serves in its `ready` event, sets up the project channel, answers a channel
//! message in a new thread with the real Codex runner, and a refused token is reported without
//! taking the rest of kimaki down.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::discord_twin::{channel_kind, DiscordTwin, TwinConfig};
use crate::support::fake_llm::{FakeLlm, TEXT_REPLY};
use crate::support::kimaki_bin::Kimaki;

const WAIT: Duration = Duration::from_secs(60);

/// `kimaki status --json`, and its Discord adapter entry.
fn discord_status(k: &Kimaki) -> (serde_json::Value, serde_json::Value) {
    let status = k.run(&["status", "--json"]).json();
    let discord = status["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "discord")
        .cloned()
        .unwrap_or_else(|| panic!("status lists Discord: {status}"));
    (status, discord)
}

#[test]
fn start_connects_to_discord_and_answers_in_a_thread() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(FakeLlm::start());
    let twin = rt.block_on(DiscordTwin::start(TwinConfig::default()));
    let (k, _project) = Kimaki::new().with_fake_codex(&llm);
    let k = k.with_discord_twin(&twin);

    let mut d = k.start(&[]);
    let ready = d.wait_ready();
    assert_eq!(
        ready["app_id"],
        twin.application_id().to_string(),
        "{ready}"
    );
    assert_eq!(
        ready["guild_ids"],
        serde_json::json!([twin.guild_id().to_string()])
    );
    let (status, discord) = discord_status(&k);
    assert_eq!(discord["state"], "connected", "{status}");

    // The registered project got its channel under the Kimaki category.
    let channel = rt.block_on(twin.wait_for("the project channel", WAIT, |s| {
        s.channels
            .values()
            .find(|c| c.kind == channel_kind::TEXT && c.name == "project")
            .map(|c| c.id)
    }));

    let alice = twin.user("alice");
    let sent = alice.in_channel(channel).send("[[fake:text]] say hello");
    let thread = rt.block_on(twin.wait_thread(|t| t.id.get() == sent.get(), WAIT));
    let reply =
        rt.block_on(twin.wait_bot_message(thread.id, |m| m.content.contains(TEXT_REPLY), WAIT));
    assert!(reply.content.contains(TEXT_REPLY), "{}", reply.content);
    rt.block_on(twin.wait_bot_message(thread.id, |m| m.content.starts_with("*project ⋅ "), WAIT));

    // The session's context use, as the runner reported it for the last run.
    let asked = alice.in_thread(thread.id).slash("context-usage", &[]);
    let ack = rt.block_on(twin.wait_interaction_ack(asked, WAIT));
    let text = ack.data.as_ref().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.starts_with("Context: ") && text.contains(" 20 input, 10 output, "),
        "{text}"
    );
    assert!(!text.contains("no usage reported"), "{text}");

    // An ordered stop leaves nothing behind and exits 0.
    d.signal(Signal::SIGTERM);
    let code = d.wait_exit(WAIT);
    assert!(code.success(), "{}", d.output());
    assert!(
        !k.log().contains(&twin.bot_token()),
        "the bot token never appears in the log"
    );
    twin.assert_clean();
}

#[test]
fn a_refused_token_is_reported_and_kimaki_keeps_serving_the_cli() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twin = rt.block_on(DiscordTwin::start(TwinConfig::default()));
    let wrong = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GWrong.wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww";
    let k = Kimaki::new()
        .with_env("KIMAKI_BOT_TOKEN", wrong)
        .with_env("KIMAKI_DISCORD_API_URL", &twin.api_base());

    let mut d = k.start(&[]);
    let error = d.wait_event("error", WAIT);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("rejected the bot token") && message.contains("Reset Token"),
        "the error says what to fix: {error}"
    );
    assert!(!message.contains("wwwwwwww"), "no token in the error");
    d.wait_ready();
    let (status, discord) = discord_status(&k);
    assert_eq!(discord["state"], "failed", "{status}");
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
    assert!(!k.log().contains("wwwwwwww"));
    assert!(!d.output().contains("wwwwwwww"));
}

#[test]
fn an_unreachable_discord_does_not_hold_up_the_rest_of_kimaki() {
    // A closed loopback port: every connection attempt is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let k = Kimaki::new()
        .with_env(
            "KIMAKI_BOT_TOKEN",
            "MTIzNDU2Nzg5MDEyMzQ1Njc4.GTwin0.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
        )
        .with_env("KIMAKI_DISCORD_API_URL", &url);
    let started = std::time::Instant::now();
    let mut d = k.start(&[]);
    let ready = d.wait_event("ready", Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ready came after {:?}",
        started.elapsed()
    );
    assert!(ready.get("app_id").is_none(), "not connected: {ready}");
    let (status, discord) = discord_status(&k);
    // It keeps trying: between attempts it waits, and says so.
    assert!(
        discord["state"] == "backoff" || discord["state"] == "connecting",
        "{status}"
    );
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
}
