//! `kimaki send` with Discord configured: the prompt goes straight into the queue, and the session
//! is shown in Discord — `--channel` (and `--project`) in a new thread the bot opens in the
//! project channel, `--thread` in that thread, continuing its runner session; a message typed in
//! the thread continues it too. Sends made while kimaki is stopped are shown when it starts. A
//! project added while kimaki runs gets its channel at once.

use std::time::Duration;

use nix::sys::signal::Signal;
use serenity::all::{ChannelId, MessageId};

use crate::support::discord_twin::{channel_kind, DiscordTwin, TwinConfig};
use crate::support::fake_llm::{FakeLlm, TEXT_REPLY};
use crate::support::kimaki_bin::Kimaki;

const WAIT: Duration = Duration::from_secs(60);

async fn project_channel(twin: &DiscordTwin, name: &str, timeout: Duration) -> ChannelId {
    twin.wait_for(&format!("the #{name} channel"), timeout, |s| {
        s.channels
            .values()
            .find(|c| c.kind == channel_kind::TEXT && c.name == name && !c.deleted)
            .map(|c| c.id)
    })
    .await
}

/// The runner session of a lane, from `kimaki session list --json`.
fn runner_session(k: &Kimaki, lane: &str) -> Option<String> {
    let list = k.run(&["session", "list", "--json"]).json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["session"] == lane)
        .and_then(|s| s["runner_session"].as_str().map(str::to_owned))
}

fn lanes(k: &Kimaki) -> Vec<String> {
    let list = k.run(&["session", "list", "--json"]).json();
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["session"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn send_to_a_channel_opens_a_thread_and_send_to_the_thread_continues_its_session() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(FakeLlm::start());
    let twin = rt.block_on(DiscordTwin::start(TwinConfig::default()));
    let (k, _project) = Kimaki::new().with_fake_codex(&llm);
    let k = k.with_discord_twin(&twin);
    let mut d = k.start(&[]);
    d.wait_ready();
    let channel = rt.block_on(project_channel(&twin, "project", WAIT));

    let out = k.run(&[
        "send",
        "--channel",
        &channel.to_string(),
        "--prompt",
        "[[fake:text]] say hello from the CLI",
        "--json",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let receipt = out.json();
    let lane = receipt["lane"].as_str().unwrap().to_owned();
    assert_eq!(receipt["discord_channel"], channel.to_string(), "{receipt}");

    // The bot posts the prompt in the channel and starts the thread from that message.
    let thread = rt.block_on(twin.wait_thread(|t| t.parent_id == Some(channel), WAIT));
    assert_eq!(thread.name, "[[fake:text]] say hello from the CLI");
    // The receipt names the thread once Discord confirmed it (a CI job can link to it), and so
    // does the session list.
    assert_eq!(
        receipt["discord_thread"],
        thread.id.to_string(),
        "{receipt}"
    );
    let list = k.run(&["session", "list", "--json"]).json();
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session"] == lane.as_str())
        .unwrap();
    assert_eq!(listed["discord_thread"], thread.id.to_string(), "{list}");
    let starter = twin
        .message(MessageId::new(thread.id.get()))
        .expect("the thread starts from a message");
    assert_eq!(starter.channel_id, channel);
    assert_eq!(starter.author_id, twin.bot_user_id());
    assert_eq!(
        starter.content,
        "» **kimaki-cli:** [[fake:text]] say hello from the CLI"
    );
    // The reply and its footer render in the thread, as for a Discord message.
    rt.block_on(twin.wait_bot_message(thread.id, |m| m.content.contains(TEXT_REPLY), WAIT));
    rt.block_on(twin.wait_bot_message(thread.id, |m| m.content.starts_with("*project ⋅ "), WAIT));
    let first_session = runner_session(&k, &lane).expect("the runner session is recorded");

    // `--thread` continues the same lane and runner session; its prompt is shown in the thread.
    let out = k.run(&[
        "send",
        "--thread",
        &thread.id.to_string(),
        "--prompt",
        "[[fake:text]] and once more",
        "--wait",
        "--json",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    rt.block_on(twin.wait_bot_message(
        thread.id,
        |m| m.content == "» **kimaki-cli:** [[fake:text]] and once more",
        WAIT,
    ));
    let replies = rt.block_on(twin.wait_for("a second reply", WAIT, |s| {
        let n = s
            .messages_in(thread.id)
            .into_iter()
            .filter(|m| m.author_id == s.bot_id && m.content.contains(TEXT_REPLY))
            .count();
        (n >= 2).then_some(n)
    }));
    assert_eq!(replies, 2);
    assert_eq!(
        runner_session(&k, &lane).as_deref(),
        Some(first_session.as_str()),
        "the thread's runner session is continued"
    );

    // A message typed in the thread continues the same session too.
    let alice = twin.user("alice");
    alice
        .in_thread(thread.id)
        .send("[[fake:text]] from Discord now");
    rt.block_on(twin.wait_for("a third reply", WAIT, |s| {
        let n = s
            .messages_in(thread.id)
            .into_iter()
            .filter(|m| m.author_id == s.bot_id && m.content.contains(TEXT_REPLY))
            .count();
        (n >= 3).then_some(())
    }));
    assert_eq!(lanes(&k), vec![lane.clone()], "one session for the thread");
    assert_eq!(
        runner_session(&k, &lane).as_deref(),
        Some(first_session.as_str())
    );
    // Only one thread was opened.
    let threads = twin
        .threads()
        .into_iter()
        .filter(|t| t.parent_id == Some(channel))
        .count();
    assert_eq!(threads, 1);

    // Unknown targets are refused clearly.
    let out = k.run(&["send", "--thread", "42", "--prompt", "hi"]);
    assert_eq!(out.code(), 64, "{}", out.all());
    assert!(out.stderr.contains("thread 42"), "{}", out.stderr);
    let out = k.run(&["send", "--channel", "42", "--prompt", "hi"]);
    assert_eq!(out.code(), 64, "{}", out.all());
    assert!(out.stderr.contains("channel 42"), "{}", out.stderr);

    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
    assert!(!k.log().contains(&twin.bot_token()));
    twin.assert_clean();
}

#[test]
fn sends_made_while_kimaki_is_stopped_are_shown_when_it_starts() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(FakeLlm::start());
    let twin = rt.block_on(DiscordTwin::start(TwinConfig::default()));
    let (k, project) = Kimaki::new().with_fake_codex(&llm);
    let k = k.with_discord_twin(&twin);

    // A first run creates the project channel; then kimaki stops.
    let mut d = k.start(&[]);
    d.wait_ready();
    let channel = rt.block_on(project_channel(&twin, "project", WAIT));
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());

    // Both forms work from the store alone.
    let out = k.run(&[
        "send",
        "--channel",
        &channel.to_string(),
        "--prompt",
        "[[fake:text]] queued by channel",
        "--name",
        "Nightly check",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stdout.contains("new thread"), "{}", out.stdout);
    let out = k.run(&[
        "send",
        "--project",
        project.to_str().unwrap(),
        "--prompt",
        "[[fake:text]] queued by project",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(
        twin.threads().is_empty(),
        "nothing reaches Discord while kimaki is stopped"
    );

    let mut d = k.start(&[]);
    d.wait_ready();
    let named = rt.block_on(twin.wait_thread(|t| t.name == "Nightly check", WAIT));
    let by_project =
        rt.block_on(twin.wait_thread(|t| t.name == "[[fake:text]] queued by project", WAIT));
    for thread in [&named, &by_project] {
        assert_eq!(thread.parent_id, Some(channel));
        rt.block_on(twin.wait_bot_message(thread.id, |m| m.content.contains(TEXT_REPLY), WAIT));
    }
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
    twin.assert_clean();
}

#[test]
fn a_project_added_while_kimaki_runs_gets_its_channel_at_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twin = rt.block_on(DiscordTwin::start(TwinConfig::default()));
    let k = Kimaki::new().with_discord_twin(&twin);
    let first = k.home.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    let out = k.run(&["project", "add", first.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let mut d = k.start(&[]);
    d.wait_ready();
    // The start-up setup is over once the registered project has its channel.
    rt.block_on(project_channel(&twin, "first", WAIT));
    let dir = k.home.path().join("Late Project");
    std::fs::create_dir_all(&dir).unwrap();
    let out = k.run(&["project", "add", dir.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.all());
    // Well before the periodic channel sync (60 s) would find it.
    let channel = rt.block_on(project_channel(
        &twin,
        "late-project",
        Duration::from_secs(15),
    ));
    // `send --channel` resolves the new channel to the project.
    let out = k.run(&[
        "send",
        "--channel",
        &channel.to_string(),
        "--prompt",
        "hello",
        "--json",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let canonical = std::fs::canonicalize(&dir).unwrap();
    assert_eq!(out.json()["workspace"], canonical.display().to_string());
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
}

/// `--notify-only`: a thread to read now, no agent run; a reply in the thread starts the session
/// with the notification as context.
#[test]
fn a_notification_opens_a_thread_and_the_reply_starts_a_session_with_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(FakeLlm::start());
    let twin = rt.block_on(DiscordTwin::start(TwinConfig::default()));
    let (k, _project) = Kimaki::new().with_fake_codex(&llm);
    let k = k.with_discord_twin(&twin);
    let mut d = k.start(&[]);
    d.wait_ready();
    let channel = rt.block_on(project_channel(&twin, "project", WAIT));

    let out = k.run(&[
        "send",
        "--channel",
        &channel.to_string(),
        "--prompt",
        "User cancelled subscription #4411",
        "--notify-only",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stdout.contains("Posted notification"), "{}", out.all());
    let thread = rt.block_on(twin.wait_thread(|t| t.parent_id == Some(channel), WAIT));
    assert_eq!(thread.name, "User cancelled subscription #4411");
    let starter = twin.message(MessageId::new(thread.id.get())).unwrap();
    assert_eq!(
        starter.content,
        "» **kimaki-cli:** User cancelled subscription #4411"
    );
    // A prompt too long for one message arrives whole, as `prompt.md`.
    let long = format!("Incident report: {}the end", "details ".repeat(600));
    let out = k.run(&[
        "send",
        "--channel",
        &channel.to_string(),
        "--prompt",
        &long,
        "--notify-only",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let long_thread = rt.block_on(twin.wait_thread(
        |t| t.parent_id == Some(channel) && t.name.starts_with("Incident report"),
        WAIT,
    ));
    let starter = twin.message(MessageId::new(long_thread.id.get())).unwrap();
    assert!(
        starter
            .content
            .ends_with("(the whole prompt is attached as prompt.md: 4824 characters)*"),
        "{}",
        starter.content
    );
    let file = twin.attachment(starter.attachments[0]).unwrap();
    assert_eq!(file.filename, "prompt.md");
    assert_eq!(String::from_utf8(file.bytes.to_vec()).unwrap(), long.trim());

    // `--wait` makes no sense for it.
    let refused = k.run(&[
        "send",
        "--channel",
        &channel.to_string(),
        "--prompt",
        "x",
        "--notify-only",
        "--wait",
    ]);
    assert_ne!(refused.code(), 0, "{}", refused.all());

    twin.user("alice")
        .in_thread(thread.id)
        .send("[[fake:text]] what happened with that customer?");
    rt.block_on(twin.wait_bot_message(thread.id, |m| m.content.contains(TEXT_REPLY), WAIT));
    let asked: Vec<_> = llm
        .requests()
        .into_iter()
        .filter(|r| {
            r.body
                .to_string()
                .contains("what happened with that customer")
        })
        .collect();
    assert!(!asked.is_empty());
    assert!(
        asked[0]
            .body
            .to_string()
            .contains("<notification>\\nUser cancelled subscription #4411\\n</notification>"),
        "the notification is the session's context: {}",
        asked[0].body
    );
    assert!(
        !llm.requests().iter().any(|r| !r
            .body
            .to_string()
            .contains("what happened with that customer")
            && r.body.to_string().contains("User cancelled subscription")),
        "no run was started for the notification alone"
    );

    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
    twin.assert_clean();
}
