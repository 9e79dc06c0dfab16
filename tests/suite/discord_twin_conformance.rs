//! Conformance of the Discord twin with real serenity 0.12.5: every behaviour the bot relies on
//! is exercised through serenity's own gateway and HTTP clients, pointed at the twin.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::json;
use serenity::all::{
    ActionRowComponent, AutoArchiveDuration, ButtonStyle, Client, ClientBuilder, CommandOptionType,
    ComponentInteractionDataKind, Context, CreateActionRow, CreateAttachment,
    CreateAutocompleteResponse, CreateButton, CreateCommand, CreateCommandOption, CreateInputText,
    CreateInteractionResponse, CreateInteractionResponseFollowup, CreateInteractionResponseMessage,
    CreateMessage, CreateModal, CreateSelectMenu, CreateSelectMenuKind, CreateSelectMenuOption,
    CreateThread, EditInteractionResponse, EventHandler, GatewayIntents, GuildChannel, Http,
    HttpBuilder, InputTextStyle, Interaction, Message, Nonce, Reaction, ReactionType, Ready,
    ResumedEvent, ShardManager, TypingStartEvent,
};
use serenity::async_trait;
use serenity::model::id::GuildId;
use tokio::sync::watch;

use crate::support::discord_twin::{
    message_flag, permission, selfcheck_dispatch, selfcheck_payload, DiscordTwin, RateLimitProfile,
    RestBody, TwinConfig, TwinFile, ViolationKind, WsDirection,
};

/// Generous bound for anything that normally takes milliseconds on loopback.
const QUICK: Duration = Duration::from_secs(10);
/// serenity waits out a 5 s shard shutdown before a fresh IDENTIFY.
const REIDENTIFY: Duration = Duration::from_secs(20);

/// What the in-test handler saw, in order.
#[derive(Clone, Debug)]
enum Seen {
    Ready(String),
    CacheReady(Vec<GuildId>),
    Resumed,
    Message(Box<Message>),
    Interaction(Box<Interaction>),
    ThreadCreate(Box<GuildChannel>),
    ReactionAdd(Box<Reaction>),
    Typing(Box<TypingStartEvent>),
}

struct Recorder {
    seen: watch::Sender<Vec<Seen>>,
}

impl Recorder {
    fn push(&self, s: Seen) {
        self.seen.send_modify(|v| v.push(s));
    }
}

#[async_trait]
impl EventHandler for Recorder {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        self.push(Seen::Ready(ready.session_id));
    }

    async fn cache_ready(&self, _ctx: Context, guilds: Vec<GuildId>) {
        self.push(Seen::CacheReady(guilds));
    }

    async fn resume(&self, _ctx: Context, _: ResumedEvent) {
        self.push(Seen::Resumed);
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        self.push(Seen::Message(Box::new(msg)));
    }

    async fn interaction_create(&self, _ctx: Context, i: Interaction) {
        self.push(Seen::Interaction(Box::new(i)));
    }

    async fn thread_create(&self, _ctx: Context, thread: GuildChannel) {
        self.push(Seen::ThreadCreate(Box::new(thread)));
    }

    async fn reaction_add(&self, _ctx: Context, r: Reaction) {
        self.push(Seen::ReactionAdd(Box::new(r)));
    }

    async fn typing_start(&self, _ctx: Context, e: TypingStartEvent) {
        self.push(Seen::Typing(Box::new(e)));
    }
}

/// A real serenity client connected to the twin.
struct Bot {
    http: Arc<Http>,
    cache: Arc<serenity::cache::Cache>,
    seen: watch::Receiver<Vec<Seen>>,
    shards: Arc<ShardManager>,
    run: tokio::task::JoinHandle<serenity::Result<()>>,
}

const BOT_INTENTS: GatewayIntents = GatewayIntents::GUILDS
    .union(GatewayIntents::GUILD_MESSAGES)
    .union(GatewayIntents::MESSAGE_CONTENT)
    .union(GatewayIntents::GUILD_MESSAGE_REACTIONS)
    .union(GatewayIntents::GUILD_MESSAGE_TYPING);

fn twin_http(twin: &DiscordTwin) -> Http {
    HttpBuilder::new(twin.bot_token())
        .proxy(twin.api_base())
        .ratelimiter_disabled(true)
        .client(
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("reqwest client"),
        )
        .build()
}

async fn build_client(
    twin: &DiscordTwin,
    intents: GatewayIntents,
) -> (Client, watch::Receiver<Vec<Seen>>) {
    let (tx, rx) = watch::channel(Vec::new());
    let client = ClientBuilder::new_with_http(twin_http(twin), intents)
        .event_handler(Recorder { seen: tx })
        .raw_event_handler(twin.unknown_event_guard())
        .await
        .expect("serenity client");
    (client, rx)
}

impl Bot {
    async fn start(twin: &DiscordTwin) -> Self {
        let (mut client, seen) = build_client(twin, BOT_INTENTS).await;
        let bot = Self {
            http: client.http.clone(),
            cache: client.cache.clone(),
            shards: client.shard_manager.clone(),
            seen,
            run: tokio::spawn(async move { client.start().await }),
        };
        bot.wait("cache_ready", |s| matches!(s, Seen::CacheReady(_)))
            .await;
        bot
    }

    /// The first event (at or after `from`) matching `pred`.
    async fn wait_from(&self, from: usize, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        let mut rx = self.seen.clone();
        let found =
            tokio::time::timeout(QUICK, rx.wait_for(|v| v.iter().skip(from).any(&pred))).await;
        let v = found
            .unwrap_or_else(|_| panic!("the bot never saw {what}"))
            .expect("recorder alive");
        v.iter()
            .skip(from)
            .find(|s| pred(s))
            .cloned()
            .expect("matched")
    }

    async fn wait(&self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        self.wait_from(0, what, pred).await
    }

    async fn wait_message(&self, what: &str, pred: impl Fn(&Message) -> bool) -> Message {
        match self
            .wait(what, |s| matches!(s, Seen::Message(m) if pred(m)))
            .await
        {
            Seen::Message(m) => *m,
            _ => unreachable!(),
        }
    }

    async fn wait_interaction(&self, id: serenity::model::id::InteractionId) -> Interaction {
        let what = format!("interaction {id}");
        match self
            .wait(&what, |s| matches!(s, Seen::Interaction(i) if i.id() == id))
            .await
        {
            Seen::Interaction(i) => *i,
            _ => unreachable!(),
        }
    }

    fn count(&self, pred: impl Fn(&Seen) -> bool) -> usize {
        self.seen.borrow().iter().filter(|s| pred(s)).count()
    }

    fn len(&self) -> usize {
        self.seen.borrow().len()
    }

    async fn stop(self) {
        self.shards.shutdown_all().await;
        let _ = tokio::time::timeout(QUICK, self.run).await;
    }
}

fn api_error(e: &serenity::Error) -> (u16, isize) {
    match e {
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)) => {
            (r.status_code.as_u16(), r.error.code)
        }
        other => panic!("expected an unsuccessful request, got {other:?}"),
    }
}

#[tokio::test]
async fn serenity_fetches_the_gateway_url_and_fills_its_cache_from_ready() {
    let twin = DiscordTwin::start(TwinConfig {
        kimaki_roles: true,
        ..TwinConfig::default()
    })
    .await;
    let general = twin.create_text_channel("general", None);
    let bot = Bot::start(&twin).await;

    let gateway_calls = twin
        .rest_log()
        .iter()
        .filter(|r| r.path == "/api/v10/gateway")
        .count();
    assert_eq!(gateway_calls, 1, "ClientBuilder calls GET /gateway once");
    let identify = twin
        .wait_ws(
            |f| f.direction == WsDirection::FromBot && f.op == Some(2),
            QUICK,
        )
        .await;
    let d: serde_json::Value = serde_json::from_str(&identify.text).unwrap();
    assert_eq!(d["d"]["intents"], json!(BOT_INTENTS.bits()));
    let sent: Vec<String> = twin
        .ws_log()
        .iter()
        .filter_map(|f| f.t.clone())
        .take(2)
        .collect();
    assert_eq!(sent, ["READY", "GUILD_CREATE"]);

    let guild = bot
        .cache
        .guild(twin.guild_id())
        .map(|g| g.clone())
        .expect("guild cached");
    assert_eq!(guild.owner_id, twin.user_id("alice"));
    assert!(guild.channels.contains_key(&general));
    assert!(guild.roles.contains_key(&twin.role_id("Kimaki")));
    assert_eq!(guild.members.len(), 3);
    assert_eq!(bot.cache.current_user().id, twin.bot_user_id());
    assert_eq!(bot.http.application_id(), Some(twin.application_id()));

    // Every REST answer carries parseable rate-limit headers.
    let me = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/api/v10/users/@me", twin.api_base()))
        .header("Authorization", format!("Bot {}", twin.bot_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-reset-after",
    ] {
        let v = me.headers()[h].to_str().unwrap();
        assert!(v.parse::<f64>().is_ok(), "{h}: {v}");
    }
    assert!(!me.headers()["x-ratelimit-bucket"].is_empty());

    bot.stop().await;
    twin.assert_clean();
}

#[tokio::test]
async fn a_user_message_reaches_the_handler_and_json_and_multipart_replies_are_stored() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let bot = Bot::start(&twin).await;

    let text = format!("hello <@{}>", twin.bot_user_id());
    let sent = twin.user("alice").in_channel(ch).send(&text);
    let msg = bot.wait_message("alice's message", |m| m.id == sent).await;
    assert_eq!(msg.content, text);
    assert_eq!(
        msg.guild_id,
        Some(twin.guild_id()),
        "gateway messages carry guild_id"
    );
    assert!(
        msg.member.is_some(),
        "gateway messages carry a partial member"
    );
    assert_eq!(
        msg.mentions.iter().map(|u| u.id).collect::<Vec<_>>(),
        [twin.bot_user_id()]
    );

    // JSON reply with a nonce; a retry with the same nonce creates nothing.
    let reply = || {
        CreateMessage::new()
            .content("on it")
            .reference_message(&msg)
            .nonce(Nonce::String("n-1".into()))
            .enforce_nonce(true)
    };
    let first = ch.send_message(&bot.http, reply()).await.expect("reply");
    let again = ch
        .send_message(&bot.http, reply())
        .await
        .expect("retried reply");
    assert_eq!(first.id, again.id, "enforce_nonce deduplicates");
    let stored = twin.wait_bot_reply_after(sent, QUICK).await;
    assert_eq!(
        (stored.id, stored.kind, stored.referenced),
        (first.id, 19, Some(sent))
    );
    assert_eq!(first.referenced_message.as_ref().map(|m| m.id), Some(sent));

    // Multipart upload: bytes, filename and content type are stored and served by the CDN.
    let upload = CreateMessage::new()
        .content("here")
        .add_file(CreateAttachment::bytes(b"fn main() {}".to_vec(), "main.rs"));
    let with_file = ch.send_message(&bot.http, upload).await.expect("upload");
    let att = &with_file.attachments[0];
    assert_eq!((att.filename.as_str(), att.size), ("main.rs", 12));
    assert!(
        att.url.contains("?ex=") && att.url.contains("&hm="),
        "{}",
        att.url
    );
    let rec = twin
        .rest_log()
        .into_iter()
        .rfind(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .unwrap();
    match rec.body {
        RestBody::Multipart {
            payload_json,
            files,
        } => {
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].field, "files[0]");
            assert_eq!(
                payload_json.unwrap()["attachments"][0]["filename"],
                "main.rs"
            );
        }
        other => panic!("expected multipart, got {other:?}"),
    }
    let blob = twin.attachment(att.id).expect("stored");
    assert_eq!(blob.bytes.as_slice(), b"fn main() {}");

    // The bot's own messages come back over the gateway.
    bot.wait_message("the bot's own upload", |m| m.id == with_file.id)
        .await;
    let transcript = twin.transcript(ch);
    assert!(
        transcript
            .starts_with("--- from: alice\nhello <@<id1>>\n--- from: bot\n(reply to <id2>)\non it"),
        "{transcript}"
    );
    assert!(transcript.contains("[attachment: main.rs]"), "{transcript}");

    bot.stop().await;
    twin.assert_clean();
}

#[tokio::test]
async fn a_thread_from_a_message_shares_its_id_and_a_second_one_gets_160004() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let bot = Bot::start(&twin).await;
    let alice = twin.user("alice");
    let starter = alice.in_channel(ch).send("fix the build");
    bot.wait_message("starter", |m| m.id == starter).await;

    let create =
        || CreateThread::new("fix the build").auto_archive_duration(AutoArchiveDuration::OneDay);
    let thread = ch
        .create_thread_from_message(&bot.http, starter, create())
        .await
        .expect("thread");
    assert_eq!(thread.id.get(), starter.get(), "thread id = message id");
    assert_eq!(thread.parent_id, Some(ch));
    let err = ch
        .create_thread_from_message(&bot.http, starter, create())
        .await
        .unwrap_err();
    assert_eq!(api_error(&err), (400, 160004));

    bot.wait(
        "THREAD_CREATE",
        |s| matches!(s, Seen::ThreadCreate(t) if t.id == thread.id),
    )
    .await;
    let stored = twin.message(starter).unwrap();
    assert_eq!(
        stored.flags & message_flag::HAS_THREAD,
        message_flag::HAS_THREAD
    );
    assert_eq!(twin.thread_members(thread.id), [twin.bot_user_id()]);
    let fetched = ch.message(&bot.http, starter).await.expect("GET message");
    assert_eq!(fetched.thread.map(|t| t.id), Some(thread.id));

    // A user posting in the thread reaches the handler; archived threads refuse edits.
    let in_thread = alice.in_thread(thread.id).send("and the tests");
    bot.wait_message("thread message", |m| {
        m.id == in_thread && m.channel_id == thread.id
    })
    .await;
    let mine = thread
        .id
        .say(&bot.http, "working")
        .await
        .expect("post in thread");
    twin.archive_thread(thread.id);
    let err = thread
        .id
        .edit_message(
            &bot.http,
            mine.id,
            serenity::all::EditMessage::new().content("x"),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(&err), (400, 50083));
    alice.in_thread(thread.id).send("still there?");
    assert!(
        !twin.channel(thread.id).unwrap().archived,
        "a new message unarchives the thread"
    );

    bot.stop().await;
    twin.assert_clean();
}

#[tokio::test]
async fn a_slash_command_is_deferred_followed_up_and_its_original_edited() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let bot = Bot::start(&twin).await;
    let commands = vec![
        CreateCommand::new("queue")
            .description("Queue a message")
            .add_option(
                CreateCommandOption::new(CommandOptionType::String, "message", "What to send")
                    .required(true),
            ),
        CreateCommand::new("agent")
            .description("Pick an agent")
            .add_option(
                CreateCommandOption::new(CommandOptionType::String, "name", "Agent")
                    .set_autocomplete(true),
            ),
    ];
    let registered = twin
        .guild_id()
        .set_commands(&bot.http, commands)
        .await
        .expect("bulk PUT");
    assert_eq!(registered.len(), 2);
    let alice = twin.user("alice").in_channel(ch);

    // Deferred (type 5), then a followup and an @original edit.
    let id = alice.slash("queue", &[("message", json!("run the tests"))]);
    let Interaction::Command(cmd) = bot.wait_interaction(id).await else {
        panic!("not a command")
    };
    assert_eq!(cmd.data.name, "queue");
    assert_eq!(cmd.data.options[0].value.as_str(), Some("run the tests"));
    assert_eq!(
        cmd.user.id,
        twin.user_id("alice"),
        "member.user fills user when guild_id is present"
    );
    cmd.defer(&bot.http).await.expect("defer");
    assert_eq!(twin.wait_interaction_ack(id, QUICK).await.response_type, 5);
    let err = cmd.defer(&bot.http).await.unwrap_err();
    assert_eq!(api_error(&err), (400, 40060));
    let followup = cmd
        .create_followup(
            &bot.http,
            CreateInteractionResponseFollowup::new().content("Queued at position 1"),
        )
        .await
        .expect("followup");
    assert_eq!(
        followup.webhook_id.map(|w| w.get()),
        Some(twin.application_id().get())
    );
    let original = cmd
        .edit_response(
            &bot.http,
            EditInteractionResponse::new().content("» **alice:** run the tests"),
        )
        .await
        .expect("edit @original");
    let stored = twin.message(original.id).unwrap();
    assert_eq!(stored.content, "» **alice:** run the tests");
    assert_eq!(
        stored.flags & message_flag::LOADING,
        0,
        "editing @original clears LOADING"
    );
    assert_eq!(twin.interaction(id).unwrap().followups, [followup.id]);

    // An ephemeral type-4 reply is stored but not dispatched.
    bot.wait_message("the followup", |m| m.id == followup.id)
        .await;
    let before = bot.count(|s| matches!(s, Seen::Message(_)));
    let id2 = alice.slash("queue", &[("message", json!("secret"))]);
    let Interaction::Command(cmd2) = bot.wait_interaction(id2).await else {
        panic!("not a command")
    };
    let reply = CreateInteractionResponseMessage::new()
        .content("only you")
        .ephemeral(true);
    cmd2.create_response(&bot.http, CreateInteractionResponse::Message(reply))
        .await
        .expect("respond");
    let eph = twin
        .wait_bot_message(ch, |m| m.content == "only you", QUICK)
        .await;
    assert_eq!(eph.ephemeral_to, Some(twin.user_id("alice")));

    // Autocomplete gets type 8 with at most 25 choices.
    let id3 = alice.autocomplete("agent", "name", "bu");
    let Interaction::Autocomplete(ac) = bot.wait_interaction(id3).await else {
        panic!("not autocomplete")
    };
    assert_eq!(ac.data.autocomplete().map(|o| o.value), Some("bu"));
    let choices = CreateAutocompleteResponse::new().add_string_choice("build", "build");
    ac.create_response(&bot.http, CreateInteractionResponse::Autocomplete(choices))
        .await
        .expect("choices");
    assert_eq!(twin.wait_interaction_ack(id3, QUICK).await.response_type, 8);
    // Dispatches arrive in order: once this one is seen, an ephemeral one would have been too.
    let sentinel = alice.send("sentinel");
    bot.wait_message("sentinel", |m| m.id == sentinel).await;
    assert_eq!(
        bot.count(|s| matches!(s, Seen::Message(_))),
        before + 1,
        "no MESSAGE_CREATE for ephemeral replies"
    );

    bot.stop().await;
    twin.assert_clean();
}

#[tokio::test]
async fn a_click_and_a_select_on_a_stored_message_reach_the_bot() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let bot = Bot::start(&twin).await;
    let buttons = CreateActionRow::Buttons(vec![
        CreateButton::new("perm:1:once")
            .label("Accept")
            .style(ButtonStyle::Success),
        CreateButton::new("perm:1:reject")
            .label("Deny")
            .style(ButtonStyle::Danger),
    ]);
    let options = vec![
        CreateSelectMenuOption::new("Fast", "fast"),
        CreateSelectMenuOption::new("Careful", "careful"),
    ];
    let select = CreateActionRow::SelectMenu(CreateSelectMenu::new(
        "question:1",
        CreateSelectMenuKind::String { options },
    ));
    let prompt = ch
        .send_message(
            &bot.http,
            CreateMessage::new()
                .content("⚠️ **Permission Required**")
                .components(vec![buttons, select]),
        )
        .await
        .expect("prompt");
    let alice = twin.user("alice").in_channel(ch);

    let click = alice.click(prompt.id, "perm:1:once");
    let Interaction::Component(c) = bot.wait_interaction(click).await else {
        panic!("not a component")
    };
    assert_eq!(c.data.custom_id, "perm:1:once");
    assert_eq!(
        c.message.id, prompt.id,
        "component interactions carry the stored message"
    );
    let pick = alice.select(prompt.id, "question:1", &["careful"]);
    let Interaction::Component(s) = bot.wait_interaction(pick).await else {
        panic!("not a component")
    };
    match &s.data.kind {
        ComponentInteractionDataKind::StringSelect { values } => {
            assert_eq!(values, &["careful".to_string()])
        }
        other => panic!("unexpected {other:?}"),
    }

    // Type 7 edits the message and removes the buttons; a later click is impossible.
    let update = CreateInteractionResponseMessage::new()
        .content("✅ Accepted")
        .components(vec![]);
    c.create_response(&bot.http, CreateInteractionResponse::UpdateMessage(update))
        .await
        .expect("update");
    let stored = twin.message(prompt.id).unwrap();
    assert_eq!(
        (stored.content.as_str(), stored.components.len()),
        ("✅ Accepted", 0)
    );
    let late =
        std::panic::catch_unwind(AssertUnwindSafe(|| alice.click(prompt.id, "perm:1:reject")));
    assert!(late.is_err(), "clicking a removed button fails the test");
    let v = twin.take_violations();
    assert_eq!(
        v.iter().map(|v| v.kind.clone()).collect::<Vec<_>>(),
        [ViolationKind::ImpossibleUserAction]
    );
    s.create_response(&bot.http, CreateInteractionResponse::Acknowledge)
        .await
        .expect("deferred update");
    assert_eq!(
        twin.wait_interaction_ack(pick, QUICK).await.response_type,
        6
    );

    bot.stop().await;
    twin.assert_clean();
}

#[tokio::test]
async fn a_bulk_command_put_with_one_bad_command_rejects_all_of_them() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let http = twin_http(&twin);
    // Without READY, a bare `Http` does not know its application id.
    http.set_application_id(twin.application_id());
    let good = CreateCommand::new("abort").description("Abort the turn");
    let bad = CreateCommand::new("Queue").description("x".repeat(101));
    let err = twin
        .guild_id()
        .set_commands(&http, vec![good.clone(), bad])
        .await
        .unwrap_err();
    assert_eq!(api_error(&err), (400, 50035));
    let serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)) = &err else {
        unreachable!()
    };
    let mut paths: Vec<&str> = r.error.errors.iter().map(|e| e.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["1.description", "1.name"]);
    assert!(twin.commands().is_empty(), "nothing registered");
    let v = twin.take_violations();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, ViolationKind::InvalidRequest);

    let dupes = twin
        .guild_id()
        .set_commands(&http, vec![good.clone(), good.clone()])
        .await
        .unwrap_err();
    assert_eq!(api_error(&dupes), (400, 50035));
    twin.take_violations();

    let ok = twin
        .guild_id()
        .set_commands(&http, vec![good])
        .await
        .expect("valid PUT");
    assert_eq!(ok[0].name, "abort");
    assert_eq!(twin.commands()[0].id, ok[0].id);
    let again = twin
        .guild_id()
        .set_commands(
            &http,
            vec![CreateCommand::new("abort").description("Abort")],
        )
        .await
        .unwrap();
    assert_eq!(again[0].id, ok[0].id, "ids survive a re-registration");
    twin.assert_clean();
}

#[tokio::test]
async fn an_injected_429_is_an_error_with_the_ratelimiter_disabled_and_is_counted() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let http = twin_http(&twin);
    twin.fail_next(&format!("POST /channels/{ch}/messages"), 429, Some(0.25), 1);
    let err = ch.say(&http, "hello").await.unwrap_err();
    assert_eq!(api_error(&err).0, 429);
    let rec = twin.rest_log().pop().unwrap();
    assert!(rec.injected);
    assert_eq!(twin.invalid_request_counts().rate_limited, 1);
    assert!(twin.messages(ch).is_empty(), "a 429 changes nothing");
    ch.say(&http, "hello")
        .await
        .expect("no retry needed after the fault");

    twin.fail_next("POST /channels/{c}/messages", 503, None, 1);
    twin.html_error_body(true);
    let err = ch.say(&http, "again").await.unwrap_err();
    assert_eq!(
        api_error(&err),
        (503, -1),
        "a non-JSON error body is still an UnsuccessfulRequest"
    );
    twin.html_error_body(false);

    // The realistic profile allows 5 messages per 5 s per channel, then answers 429.
    twin.set_rate_limits(RateLimitProfile::Realistic);
    let other = twin.create_text_channel("other", None);
    for i in 0..5 {
        ch.say(&http, format!("burst {i}"))
            .await
            .expect("within the limit");
    }
    let err = ch.say(&http, "one too many").await.unwrap_err();
    assert_eq!(api_error(&err).0, 429);
    let limited = twin.rest_log().pop().unwrap();
    assert!(!limited.injected);
    other
        .say(&http, "other channels are not blocked")
        .await
        .expect("separate bucket");
    assert_eq!(twin.invalid_request_counts().rate_limited, 2);

    // A permission the test revoked gives Discord's 403 50013, counted but expected.
    twin.set_rate_limits(RateLimitProfile::Generous);
    twin.revoke_permission(other, twin.bot_user_id(), permission::SEND_MESSAGES);
    let err = other.say(&http, "no longer allowed").await.unwrap_err();
    assert_eq!(api_error(&err), (403, 50013));
    assert_eq!(twin.invalid_request_counts().forbidden, 1);
    twin.assert_clean();
}

#[tokio::test]
async fn voice_messages_and_modal_submissions_reach_the_bot() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let bot = Bot::start(&twin).await;
    let alice = twin.user("alice").in_channel(ch);

    let voice = alice.send_voice(b"OggS fake opus".to_vec(), 2.5);
    let msg = bot.wait_message("voice message", |m| m.id == voice).await;
    assert_eq!(msg.content, "");
    assert!(msg
        .flags
        .is_some_and(|f| f.bits() & message_flag::IS_VOICE_MESSAGE != 0));
    let att = &msg.attachments[0];
    assert_eq!(att.filename, "voice-message.ogg");
    assert_eq!(att.content_type.as_deref(), Some("audio/ogg"));
    assert_eq!(att.duration_secs, Some(2.5));
    assert_eq!(
        att.waveform.as_ref().map(Vec::len),
        Some(25),
        "one sample per 100 ms"
    );

    let login = CreateCommand::new("login").description("Connect a provider");
    twin.guild_id()
        .set_commands(&bot.http, vec![login])
        .await
        .expect("register");
    let id = alice.slash("login", &[]);
    let Interaction::Command(cmd) = bot.wait_interaction(id).await else {
        panic!("not a command")
    };
    let input = CreateInputText::new(InputTextStyle::Short, "API key", "key");
    let modal = CreateModal::new("login:openai", "OpenAI API key")
        .components(vec![CreateActionRow::InputText(input)]);
    cmd.create_response(&bot.http, CreateInteractionResponse::Modal(modal))
        .await
        .expect("open modal");
    assert_eq!(twin.wait_interaction_ack(id, QUICK).await.response_type, 9);
    let submit = alice.submit_modal(id, &[("key", "sk-test")]);
    let Interaction::Modal(m) = bot.wait_interaction(submit).await else {
        panic!("not a modal submit")
    };
    assert_eq!(m.data.custom_id, "login:openai");
    let value = match &m.data.components[0].components[0] {
        ActionRowComponent::InputText(t) => t.value.clone(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(value.as_deref(), Some("sk-test"));
    let reply = CreateInteractionResponseMessage::new()
        .content("Key saved")
        .ephemeral(true);
    m.create_response(&bot.http, CreateInteractionResponse::Message(reply))
        .await
        .expect("answer the submit");

    bot.stop().await;
    twin.assert_clean();
}

#[tokio::test]
async fn without_message_content_guild_text_is_blank_unless_the_bot_is_mentioned() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let (mut client, seen) =
        build_client(&twin, BOT_INTENTS - GatewayIntents::MESSAGE_CONTENT).await;
    let bot = Bot {
        http: client.http.clone(),
        cache: client.cache.clone(),
        shards: client.shard_manager.clone(),
        seen,
        run: tokio::spawn(async move { client.start().await }),
    };
    bot.wait("cache_ready", |s| matches!(s, Seen::CacheReady(_)))
        .await;
    let alice = twin.user("alice").in_channel(ch);
    let plain = alice.send("secret plans");
    let mention = format!("<@{}> look", twin.bot_user_id());
    let pinged = alice.send(&mention);
    assert_eq!(
        bot.wait_message("plain", |m| m.id == plain).await.content,
        ""
    );
    assert_eq!(
        bot.wait_message("mention", |m| m.id == pinged)
            .await
            .content,
        mention
    );
    let own = ch.say(&bot.http, "mine").await.expect("post");
    assert_eq!(
        bot.wait_message("own", |m| m.id == own.id).await.content,
        "mine"
    );
    assert_eq!(
        twin.message(plain).unwrap().content,
        "secret plans",
        "REST keeps the content"
    );
    bot.stop().await;
    twin.assert_clean();
}

#[tokio::test]
async fn resumable_gateway_faults_resume_and_replay_missed_dispatches() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let bot = Bot::start(&twin).await;
    let alice = twin.user("alice").in_channel(ch);
    let resumes = |twin: &DiscordTwin| twin.ws_log().iter().filter(|f| f.op == Some(6)).count();

    // Dropped TCP: the dispatches emitted meanwhile are replayed after RESUME, once each.
    twin.drop_tcp();
    let m1 = alice.send("first while down");
    let m2 = alice.send("second while down");
    bot.wait("Resumed", |s| matches!(s, Seen::Resumed)).await;
    bot.wait_message("m1", |m| m.id == m1).await;
    bot.wait_message("m2", |m| m.id == m2).await;
    assert_eq!(resumes(&twin), 1);
    assert_eq!(
        bot.count(|s| matches!(s, Seen::Message(m) if m.id == m1 || m.id == m2)),
        2
    );
    assert_eq!(
        bot.count(|s| matches!(s, Seen::Ready(_))),
        1,
        "no fresh IDENTIFY"
    );

    // Op 7, op 9 true and a resumable close code all resume too.
    for (i, fault) in ["reconnect", "invalid_session(true)", "close(4000)"]
        .into_iter()
        .enumerate()
    {
        let from = bot.len();
        match fault {
            "reconnect" => twin.reconnect(),
            "invalid_session(true)" => twin.invalid_session(true),
            _ => twin.close(4000),
        }
        let m = alice.send(&format!("after {fault}"));
        bot.wait_from(from, &format!("Resumed after {fault}"), |s| {
            matches!(s, Seen::Resumed)
        })
        .await;
        bot.wait_message(&format!("message after {fault}"), |x| x.id == m)
            .await;
        assert_eq!(resumes(&twin), 2 + i, "{fault}");
    }

    // A duplicated dispatch is delivered twice.
    twin.duplicate_next_dispatch();
    let dup = alice.send("twice");
    let mut rx = bot.seen.clone();
    let both = tokio::time::timeout(
        QUICK,
        rx.wait_for(|v| {
            v.iter()
                .filter(|s| matches!(s, Seen::Message(m) if m.id == dup))
                .count()
                == 2
        }),
    )
    .await;
    assert!(both.is_ok(), "the duplicate arrives");

    bot.stop().await;
    twin.assert_clean();
}

#[tokio::test]
async fn non_resumable_faults_force_a_fresh_identify_and_drop_the_buffer() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let bot = Bot::start(&twin).await;
    let alice = twin.user("alice").in_channel(ch);

    // Each case costs serenity's 5 s shard shutdown; keep them all in this one test.
    for (round, fault) in ["invalid_session(false)", "expire_sessions"]
        .into_iter()
        .enumerate()
    {
        let from = bot.len();
        match fault {
            "invalid_session(false)" => twin.invalid_session(false),
            _ => twin.expire_sessions(),
        }
        let lost = alice.send(&format!("sent while the session is gone ({fault})"));
        let mut rx = bot.seen.clone();
        let ready = tokio::time::timeout(
            REIDENTIFY,
            rx.wait_for(|v| v.iter().skip(from).any(|s| matches!(s, Seen::Ready(_)))),
        )
        .await
        .is_ok();
        assert!(ready, "no fresh READY after {fault}");
        let identifies = twin
            .ws_log()
            .iter()
            .filter(|f| f.direction == WsDirection::FromBot && f.op == Some(2))
            .count();
        assert_eq!(identifies, 2 + round, "{fault}");
        let after = alice.send(&format!("after the new session ({fault})"));
        bot.wait_message("message after re-identify", |m| m.id == after)
            .await;
        assert_eq!(
            bot.count(|s| matches!(s, Seen::Message(m) if m.id == lost)),
            0,
            "Discord drops the old buffer ({fault})"
        );
        let history = ch
            .messages(
                &bot.http,
                serenity::all::GetMessages::new().after(lost.get() - 1),
            )
            .await
            .expect("history");
        assert!(
            history.iter().any(|m| m.id == lost),
            "the gap is reconciled over REST"
        );
    }
    let refused_resumes = twin
        .ws_log()
        .iter()
        .filter(|f| f.direction == WsDirection::ToBot && f.op == Some(9))
        .count();
    assert_eq!(
        refused_resumes, 2,
        "op 9 once per case (expired RESUME answered with op 9 false)"
    );

    bot.stop().await;
    twin.assert_clean();
}

#[tokio::test]
async fn disallowed_intents_and_a_rejected_token_are_fatal() {
    let twin = DiscordTwin::start(TwinConfig {
        message_content_intent: false,
        ..TwinConfig::default()
    })
    .await;
    let (mut client, _seen) = build_client(&twin, BOT_INTENTS).await;
    let res = tokio::time::timeout(QUICK, client.start())
        .await
        .expect("start returns");
    assert!(res.is_err(), "4014 is fatal");
    let closed = twin
        .ws_log()
        .iter()
        .any(|f| f.direction == WsDirection::FromBot && f.op == Some(2));
    assert!(closed, "the bot identified before the close");

    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let http = HttpBuilder::new("wrong.token.value")
        .proxy(twin.api_base())
        .ratelimiter_disabled(true)
        .client(reqwest::Client::builder().no_proxy().build().unwrap())
        .build();
    let err = http.get_current_user().await.unwrap_err();
    assert_eq!(api_error(&err).0, 401);
    let (tx, _rx) = watch::channel(Vec::new());
    let mut client = ClientBuilder::new_with_http(http, BOT_INTENTS)
        .event_handler(Recorder { seen: tx })
        .await
        .expect("client");
    // GET /gateway failed with 401, so serenity fell back to wss://gateway.discord.gg.
    assert!(client.ws_url.lock().await.contains("discord.gg"));
    *client.ws_url.lock().await = twin.gateway_url();
    let res = tokio::time::timeout(QUICK, client.start())
        .await
        .expect("start returns");
    assert!(res.is_err(), "4004 is fatal");
    assert_eq!(twin.invalid_request_counts().unauthorized, 2);
    let kinds: Vec<ViolationKind> = twin.take_violations().into_iter().map(|v| v.kind).collect();
    assert_eq!(
        kinds,
        [
            ViolationKind::UnexpectedAuthFailure,
            ViolationKind::UnexpectedAuthFailure
        ]
    );
    twin.assert_clean();
}

#[tokio::test]
async fn typing_and_reactions_round_trip() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let bot = Bot::start(&twin).await;
    let msg = twin.user("alice").in_channel(ch).send("react to me");
    let m = bot.wait_message("message", |m| m.id == msg).await;

    ch.broadcast_typing(&bot.http).await.expect("typing");
    let typing = twin.wait_typing(ch, QUICK).await;
    assert_eq!(typing.user_id, twin.bot_user_id());
    m.react(&bot.http, ReactionType::Unicode("👀".into()))
        .await
        .expect("react");
    let r = twin.reactions(msg);
    assert_eq!((r.len(), r[0].emoji.name.as_str()), (1, "👀"));
    ch.delete_reaction(&bot.http, msg, None, ReactionType::Unicode("👀".into()))
        .await
        .expect("unreact");
    assert!(twin.reactions(msg).is_empty());

    twin.user("bob").in_channel(ch).react(msg, "🚀");
    bot.wait(
        "reaction_add",
        |s| matches!(s, Seen::ReactionAdd(r) if r.emoji.unicode_eq("🚀")),
    )
    .await;
    twin.user("bob").in_channel(ch).typing();
    bot.wait(
        "typing_start",
        |s| matches!(s, Seen::Typing(t) if t.user_id == twin.user_id("bob")),
    )
    .await;

    bot.stop().await;
    twin.assert_clean();
}

#[tokio::test]
async fn cdn_links_are_signed_and_expire() {
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let bot = Bot::start(&twin).await;
    let files = vec![
        TwinFile::text("prompt.md", "# do it"),
        TwinFile::new("shot.png", "image/png", vec![0x89, b'P', b'N', b'G']),
    ];
    let sent = twin
        .user("alice")
        .in_channel(ch)
        .send_files("see attached", files);
    let msg = bot.wait_message("upload", |m| m.id == sent).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let md = &msg.attachments[0];
    let resp = client.get(&md.url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"# do it");

    let tampered = md.url.replace("&hm=", "&hm=0");
    assert_eq!(client.get(&tampered).send().await.unwrap().status(), 404);
    let unsigned = md.url.split('?').next().unwrap().to_string();
    assert_eq!(
        client.get(&unsigned).send().await.unwrap().status(),
        404,
        "the query string is required"
    );

    twin.expire_attachment(md.id);
    let gone = client.get(&md.url).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(
        gone.text().await.unwrap(),
        "This content is no longer available."
    );

    let png = &msg.attachments[1];
    assert_eq!(client.get(&png.url).send().await.unwrap().status(), 200);
    twin.advance_clock(Duration::from_secs(25 * 3600));
    assert_eq!(
        client.get(&png.url).send().await.unwrap().status(),
        404,
        "links expire after 24 h"
    );

    bot.stop().await;
    twin.assert_clean();
}

#[tokio::test]
async fn a_dispatch_serenity_cannot_read_is_caught() {
    // Twin side: a payload missing a field serenity needs is rejected with its JSON path.
    let role = json!({"id": "1", "name": "x", "color": 0, "hoist": false, "icon": null,
                      "unicode_emoji": null, "position": 0, "permissions": "0",
                      "managed": false, "mentionable": false, "flags": 0});
    let err = selfcheck_payload::<serenity::model::guild::Role>("Role", &role).unwrap_err();
    assert!(err.contains("colors"), "{err}");
    let err = selfcheck_dispatch(
        "TYPING_START",
        &json!({"channel_id": "1", "user_id": "2", "timestamp": "soon"}),
    )
    .unwrap_err();
    assert!(err.contains("`timestamp`"), "{err}");

    // Bot side: an emitted dispatch name that serenity reads as Event::Unknown is a violation.
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let ch = twin.create_text_channel("project", None);
    let bot = Bot::start(&twin).await;
    let ok = twin.user("alice").in_channel(ch).send("normal");
    bot.wait_message("normal", |m| m.id == ok).await;
    twin.emit_unknown_dispatch(
        "MESSAGE_CREATE",
        json!({"id": "1", "channel_id": ch.to_string()}),
    );
    let v = twin
        .wait_for("an UnknownEvent violation", QUICK, |s| {
            s.violations
                .iter()
                .find(|v| v.kind == ViolationKind::UnknownEvent)
                .cloned()
        })
        .await;
    assert!(v.detail.contains("MESSAGE_CREATE"));
    twin.take_violations();
    // A name the twin never emitted (sent on purpose) is allowed.
    twin.emit_unknown_dispatch("GUILD_TELEPORT", json!({}));
    let after = twin.user("alice").in_channel(ch).send("still alive");
    bot.wait_message("after unknown", |m| m.id == after).await;

    bot.stop().await;
    twin.assert_clean();
}
