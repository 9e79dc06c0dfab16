//! The Discord twin: a fake Discord REST + Gateway + CDN server on `127.0.0.1:0` that real
//! serenity 0.12.5 talks to. It owns relational state, emits the dispatches Discord would emit,
//! injects faults, and records every request, frame and violation so teardown can fail loudly.
//! One twin per test; nothing here is global. It imports nothing from `kimaki`.
//!
//! # Layout
//! - `state`: the relational state and the dispatch emitter
//! - `model`: state → Discord JSON; `selfcheck`: that JSON → serenity's types
//! - `rest`: the `/api/v10` routes; `validate`: typed bodies and §11 limits
//! - `gateway`: the WebSocket (HELLO, IDENTIFY, RESUME replay, intents, faults)
//! - `interactions`: interaction creation, callbacks and webhook followups
//! - `actors`: simulated users; `cdn`: signed attachment links
//! - `faults`, `ratelimit`, `snowflake` (injectable clock), `transcript`
//! - `gateway_proxy`: a gateway proxy's onboarding routes (install URL → authorization)

mod actors;
mod cdn;
mod faults;
mod gateway;
mod gateway_proxy;
mod interactions;
mod model;
mod ratelimit;
mod rest;
mod selfcheck;
mod snowflake;
mod state;
mod transcript;
mod validate;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use serenity::async_trait;
use serenity::client::{Context, RawEventHandler};
use serenity::model::event::Event;
use serenity::model::id::{
    ApplicationId, AttachmentId, ChannelId, GuildId, InteractionId, MessageId, RoleId, UserId,
};
use tokio::sync::watch;

// The public surface for bot tests; a given test binary uses only part of it.
#[allow(unused_imports)]
pub use actors::{Actor, ActorIn, TwinFile};
#[allow(unused_imports)]
pub use faults::{FaultAction, RoutePattern};
#[allow(unused_imports)]
pub use gateway_proxy::{GatewayProxy, OnboardingStatus, ProxyOnboarding};
#[allow(unused_imports)]
pub use ratelimit::RateLimitProfile;
#[allow(unused_imports)]
pub use selfcheck::{check as selfcheck_payload, check_dispatch as selfcheck_dispatch};
#[allow(unused_imports)]
pub use snowflake::{iso_timestamp, snowflake_ms, ClockMode, DISCORD_EPOCH_MS, FROZEN_START_MS};
#[allow(unused_imports)]
pub use state::{
    channel_kind, intent, message_flag, permission, Attachment, Channel, Command, Emoji,
    Interaction, InteractionAck, InvalidRequestCounts, Member, Message, Reaction, RestBody,
    RestRecord, Role, State, ThreadMember, Typing, UploadedFile, User, Violation, ViolationKind,
    WsDirection, WsRecord,
};
#[allow(unused_imports)]
pub use validate::FormErrors;

use snowflake::TwinClock;
use state::Outgoing;

/// serenity's default intents plus MESSAGE_CONTENT: GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT.
pub const SERENITY_DEFAULT_INTENTS: u64 = 33281;

/// How a twin is seeded and how strict it is.
#[derive(Clone, Debug)]
pub struct TwinConfig {
    /// The bot's token; `None` derives a Discord-shaped one from the bot id.
    pub bot_token: Option<String>,
    pub bot_name: String,
    pub guild_name: String,
    /// Seed the optional `Kimaki` and `no-kimaki` roles.
    pub kimaki_roles: bool,
    /// MESSAGE_CONTENT is enabled in the (fake) developer portal.
    pub message_content_intent: bool,
    /// GUILD_MEMBERS is enabled in the (fake) developer portal.
    pub guild_members_intent: bool,
    /// HELLO's heartbeat interval (Discord: 41.25–45 s).
    pub heartbeat_interval: Duration,
    /// How long the bot has to answer an interaction callback.
    pub ack_deadline: Duration,
    /// How long an interaction token serves followups and `@original`.
    pub interaction_token_ttl: Duration,
    /// Per-file upload limit (unboosted guild: 10 MiB).
    pub attachment_size_limit: u64,
    /// How long a signed CDN link lives.
    pub attachment_link_ttl: Duration,
    pub rate_limits: RateLimitProfile,
    pub clock: ClockMode,
}

impl Default for TwinConfig {
    fn default() -> Self {
        Self {
            bot_token: None,
            bot_name: "kimaki-bot".into(),
            guild_name: "kimaki twin guild".into(),
            kimaki_roles: false,
            message_content_intent: true,
            guild_members_intent: false,
            heartbeat_interval: Duration::from_millis(45_000),
            ack_deadline: Duration::from_secs(3),
            interaction_token_ttl: Duration::from_secs(15 * 60),
            attachment_size_limit: 10 * 1024 * 1024,
            attachment_link_ttl: Duration::from_secs(24 * 3600),
            rate_limits: RateLimitProfile::Generous,
            clock: ClockMode::System,
        }
    }
}

/// State plus the wake-up signal shared by the server tasks and the test's handle.
pub(crate) struct Shared {
    pub clock: TwinClock,
    pub base_url: String,
    pub token: String,
    state: Mutex<State>,
    version: watch::Sender<u64>,
    pub stopped: AtomicBool,
    /// Gateway-proxy mode's onboardings (off unless started as a proxy).
    proxy: gateway_proxy::ProxyState,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread must not poison the twin for the server tasks.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Mutates state, wakes every waiter, and panics (after unlocking) on a self-check failure.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (r, panics) = {
            let mut st = self.lock();
            st.now_ms = self.clock.now_ms();
            let r = f(&mut st);
            (r, std::mem::take(&mut st.pending_panics))
        };
        self.version.send_modify(|v| *v += 1);
        if let Some(p) = panics.first() {
            panic!("discord twin: {p}");
        }
        r
    }

    /// Mutates state without waking anyone (gateway writers draining their outbox).
    pub fn with_quiet<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.lock();
        st.now_ms = self.clock.now_ms();
        f(&mut st)
    }

    /// Wakes every waiter without touching state.
    pub fn notify(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

/// A running twin. Dropping it stops the server and closes every gateway connection.
pub struct DiscordTwin {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for DiscordTwin {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.version.send_modify(|v| *v += 1);
        self.server.abort();
    }
}

/// Largest request body the twin reads (well above the 10 MiB upload limit, to answer 413).
const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;

impl DiscordTwin {
    /// Binds `127.0.0.1:0`, seeds the guild and starts serving.
    pub async fn start(cfg: TwinConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let base_url = format!("http://{addr}");
        let clock = TwinClock::new(cfg.clock);
        let state = State::new(cfg.clone(), base_url.clone(), clock.now_ms());
        let token = state.token.clone();
        let (version, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            clock,
            base_url,
            token,
            state: Mutex::new(state),
            version,
            stopped: AtomicBool::new(false),
            proxy: gateway_proxy::ProxyState::default(),
        });
        let app = axum::Router::new()
            .route("/gateway", axum::routing::get(gateway::upgrade))
            .route("/gateway/", axum::routing::get(gateway::upgrade))
            .route(
                "/kimaki/onboarding",
                axum::routing::post(gateway_proxy::create),
            )
            .route(
                "/kimaki/onboarding/{id}",
                axum::routing::get(gateway_proxy::poll),
            )
            .route(
                "/attachments/{channel}/{id}/{filename}",
                axum::routing::get(rest::cdn_download),
            )
            .fallback(rest::handle)
            .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BODY))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            // The server runs until the twin is dropped (which aborts this task).
            let _ = axum::serve(listener, app).await;
        });
        Self {
            shared,
            addr,
            server,
        }
    }

    // ----- addresses and identities -----

    /// `http://127.0.0.1:P`, for `HttpBuilder::proxy`.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:P/gateway`.
    pub fn gateway_url(&self) -> String {
        format!("ws://{}/gateway", self.addr)
    }

    pub fn bot_token(&self) -> String {
        self.shared.token.clone()
    }

    pub fn application_id(&self) -> ApplicationId {
        self.read(State::application_id)
    }

    pub fn bot_user_id(&self) -> UserId {
        self.read(|s| s.bot_id)
    }

    pub fn guild_id(&self) -> GuildId {
        self.read(|s| s.guild_id)
    }

    /// The id of a seeded or added user (`alice`, `bob`, the bot's name, …).
    pub fn user_id(&self, name: &str) -> UserId {
        self.read(|s| s.user_by_name(name).map(|u| u.id))
            .unwrap_or_else(|| panic!("the twin has no user named {name}"))
    }

    /// The id of a role by (case-insensitive) name, e.g. `Kimaki`.
    pub fn role_id(&self, name: &str) -> RoleId {
        self.read(|s| s.role_by_name(name).map(|r| r.id))
            .unwrap_or_else(|| panic!("the twin has no role named {name}"))
    }

    /// The bot's managed role.
    pub fn bot_role_id(&self) -> RoleId {
        self.read(|s| s.bot_role_id)
    }

    // ----- state setup (each emits what Discord would) -----

    /// Adds a guild member with the named roles (GUILD_MEMBER_ADD).
    pub fn add_user(&self, name: &str, roles: &[&str]) -> UserId {
        self.shared.with(|st| actors::add_user(st, name, roles))
    }

    pub fn create_text_channel(&self, name: &str, parent: Option<ChannelId>) -> ChannelId {
        self.shared
            .with(|st| st.create_channel(channel_kind::TEXT, name, parent, None))
    }

    pub fn create_category(&self, name: &str) -> ChannelId {
        self.shared
            .with(|st| st.create_channel(channel_kind::CATEGORY, name, None, None))
    }

    pub fn create_voice_channel(&self, name: &str, parent: Option<ChannelId>) -> ChannelId {
        self.shared
            .with(|st| st.create_channel(channel_kind::VOICE, name, parent, None))
    }

    /// A simulated user, by name.
    pub fn user(&self, name: &str) -> Actor {
        let id = self.user_id(name);
        Actor::new(self.shared.clone(), id)
    }

    /// Archives a thread as a moderator would (THREAD_UPDATE).
    pub fn archive_thread(&self, thread: ChannelId) {
        self.shared
            .with(|st| actors::set_thread_flags(st, thread, Some(true), None));
    }

    /// Locks (and archives) a thread (THREAD_UPDATE).
    pub fn lock_thread(&self, thread: ChannelId) {
        self.shared
            .with(|st| actors::set_thread_flags(st, thread, Some(true), Some(true)));
    }

    /// Renames a channel or thread as a user would (CHANNEL_UPDATE / THREAD_UPDATE).
    pub fn rename_channel(&self, channel: ChannelId, name: &str) {
        self.shared.with(|st| {
            if let Some(c) = st.channels.get_mut(&channel) {
                c.name = name.to_string();
            }
            st.emit_channel_update(channel);
        });
    }

    /// Deletes a channel or thread as a user would (CHANNEL_DELETE / THREAD_DELETE).
    pub fn delete_channel(&self, channel: ChannelId) {
        self.shared.with(|st| st.delete_channel(channel));
    }

    /// Gives a member a role (GUILD_MEMBER_UPDATE).
    pub fn grant_role(&self, user: UserId, role: RoleId) {
        self.shared
            .with(|st| actors::set_role(st, user, role, true));
    }

    /// Takes a role from a member (GUILD_MEMBER_UPDATE).
    pub fn revoke_role(&self, user: UserId, role: RoleId) {
        self.shared
            .with(|st| actors::set_role(st, user, role, false));
    }

    /// Denies `bits` to one member in one channel (CHANNEL_UPDATE); later 403s are expected.
    pub fn revoke_permission(&self, channel: ChannelId, user: UserId, bits: u64) {
        self.shared
            .with(|st| actors::deny_permission(st, channel, user, bits));
    }

    // ----- inspection -----

    /// Runs `f` on a consistent view of the state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.shared.with_quiet(|st| f(st))
    }

    /// Live messages of a channel or thread, oldest first (ephemeral ones included).
    pub fn messages(&self, channel: ChannelId) -> Vec<Message> {
        self.read(|s| s.messages_in(channel).into_iter().cloned().collect())
    }

    pub fn message(&self, id: MessageId) -> Option<Message> {
        self.read(|s| s.message(id).cloned())
    }

    pub fn channel(&self, id: ChannelId) -> Option<Channel> {
        self.read(|s| s.channel(id).cloned())
    }

    /// Live threads, oldest first.
    pub fn threads(&self) -> Vec<Channel> {
        self.read(|s| s.threads().into_iter().cloned().collect())
    }

    pub fn thread_members(&self, thread: ChannelId) -> Vec<UserId> {
        self.read(|s| {
            s.thread_members
                .iter()
                .filter(|m| m.thread_id == thread)
                .map(|m| m.user_id)
                .collect()
        })
    }

    pub fn reactions(&self, message: MessageId) -> Vec<Reaction> {
        self.read(|s| s.reactions_on(message).into_iter().cloned().collect())
    }

    /// Registered commands (global and guild).
    pub fn commands(&self) -> Vec<Command> {
        self.read(|s| s.commands.clone())
    }

    pub fn interaction(&self, id: InteractionId) -> Option<Interaction> {
        self.read(|s| s.interaction(id).cloned())
    }

    /// Typing pulses in a channel, oldest first.
    pub fn typing(&self, channel: ChannelId) -> Vec<Typing> {
        self.read(|s| {
            s.typing
                .iter()
                .filter(|t| t.channel_id == channel)
                .cloned()
                .collect()
        })
    }

    /// The stored bytes of an attachment.
    pub fn attachment(&self, id: AttachmentId) -> Option<Attachment> {
        self.read(|s| s.attachment(id).cloned())
    }

    /// Every REST and CDN request so far.
    pub fn rest_log(&self) -> Vec<RestRecord> {
        self.read(|s| s.rest_log.clone())
    }

    /// Every gateway frame so far, both directions.
    pub fn ws_log(&self) -> Vec<WsRecord> {
        self.read(|s| s.ws_log.clone())
    }

    /// Presence updates (op 3) the bot sent.
    pub fn presence_updates(&self) -> Vec<Value> {
        self.read(|s| s.presence_updates.clone())
    }

    /// How many 401, 403 and 429 answers the twin sent.
    pub fn invalid_request_counts(&self) -> InvalidRequestCounts {
        self.read(|s| s.invalid_requests)
    }

    /// A readable, id-normalized log of a channel for snapshots.
    pub fn transcript(&self, channel: ChannelId) -> String {
        self.read(|s| transcript::render(s, channel))
    }

    // ----- waits (wake on state change, panic on timeout) -----

    /// Waits until `f` returns `Some`, re-checking after every state change.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&State) -> Option<T>,
    ) -> T {
        let mut rx = self.shared.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(t) = self.read(&mut f) {
                return t;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("the discord twin stopped while waiting for {what}"),
                Err(_) => {
                    if let Some(t) = self.read(&mut f) {
                        return t;
                    }
                    let recent: Vec<String> = self.read(|s| {
                        s.rest_log
                            .iter()
                            .rev()
                            .take(8)
                            .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
                            .collect()
                    });
                    panic!("timed out after {timeout:?} waiting for {what}; latest requests: {recent:#?}");
                }
            }
        }
    }

    /// The first bot message in `channel` matching `pred`.
    pub async fn wait_bot_message(
        &self,
        channel: ChannelId,
        pred: impl Fn(&Message) -> bool,
        timeout: Duration,
    ) -> Message {
        self.wait_for(&format!("a bot message in {channel}"), timeout, |s| {
            s.messages_in(channel)
                .into_iter()
                .find(|m| m.author_id == s.bot_id && pred(m))
                .cloned()
        })
        .await
    }

    /// The first bot message posted after `after` in the same channel.
    pub async fn wait_bot_reply_after(&self, after: MessageId, timeout: Duration) -> Message {
        let channel = self
            .read(|s| s.messages.get(&after).map(|m| m.channel_id))
            .unwrap_or_else(|| panic!("no message {after}"));
        self.wait_bot_message(channel, |m| m.id > after, timeout)
            .await
    }

    /// The first live thread matching `pred`.
    pub async fn wait_thread(&self, pred: impl Fn(&Channel) -> bool, timeout: Duration) -> Channel {
        self.wait_for("a thread", timeout, |s| {
            s.threads().into_iter().find(|c| pred(c)).cloned()
        })
        .await
    }

    /// The bot's callback for an interaction.
    pub async fn wait_interaction_ack(
        &self,
        id: InteractionId,
        timeout: Duration,
    ) -> InteractionAck {
        self.wait_for(&format!("an ack of interaction {id}"), timeout, |s| {
            s.interaction(id).and_then(|i| i.ack.clone())
        })
        .await
    }

    /// The first bot typing pulse in `channel`.
    pub async fn wait_typing(&self, channel: ChannelId, timeout: Duration) -> Typing {
        self.wait_for(&format!("typing in {channel}"), timeout, |s| {
            s.typing
                .iter()
                .find(|t| t.channel_id == channel && t.user_id == s.bot_id)
                .cloned()
        })
        .await
    }

    /// The first REST request matching `pred`.
    pub async fn wait_rest(
        &self,
        pred: impl Fn(&RestRecord) -> bool,
        timeout: Duration,
    ) -> RestRecord {
        self.wait_for("a REST request", timeout, |s| {
            s.rest_log.iter().find(|r| pred(r)).cloned()
        })
        .await
    }

    /// Until `n` gateway connections have identified or resumed.
    pub async fn wait_gateway_connections(&self, n: usize, timeout: Duration) {
        self.wait_for(&format!("{n} gateway connection(s)"), timeout, |s| {
            (s.gateway_connection_count() >= n).then_some(())
        })
        .await;
    }

    /// The first gateway frame matching `pred`.
    pub async fn wait_ws(&self, pred: impl Fn(&WsRecord) -> bool, timeout: Duration) -> WsRecord {
        self.wait_for("a gateway frame", timeout, |s| {
            s.ws_log.iter().find(|r| pred(r)).cloned()
        })
        .await
    }

    // ----- faults -----

    /// The next `times` requests matching `route` get `status` (and, for 429, `retry_after`).
    pub fn fail_next(&self, route: &str, status: u16, retry_after: Option<f64>, times: u32) {
        self.push_fault(
            route,
            FaultAction::Status {
                status,
                retry_after,
                global: false,
            },
            times,
        );
    }

    /// Like `fail_next(route, 429, …)` with `global: true`.
    pub fn fail_next_global(&self, route: &str, retry_after: f64, times: u32) {
        self.push_fault(
            route,
            FaultAction::Status {
                status: 429,
                retry_after: Some(retry_after),
                global: true,
            },
            times,
        );
    }

    /// Holds the next `times` matching requests for `by` before serving them.
    pub fn delay(&self, route: &str, by: Duration, times: u32) {
        self.push_fault(route, FaultAction::Delay(by), times);
    }

    fn push_fault(&self, route: &str, action: FaultAction, times: u32) {
        self.shared.with(|st| {
            st.faults.rules.push(faults::FaultRule {
                pattern: RoutePattern::parse(route),
                action,
                remaining: times,
            })
        });
    }

    /// Injected error responses use an HTML body instead of JSON.
    pub fn html_error_body(&self, on: bool) {
        self.shared.with(|st| st.faults.html_error_body = on);
    }

    /// The next dispatch is delivered twice.
    pub fn duplicate_next_dispatch(&self) {
        self.shared
            .with(|st| st.faults.duplicate_next_dispatch = true);
    }

    /// Switches the rate-limit profile (resets the windows).
    pub fn set_rate_limits(&self, profile: RateLimitProfile) {
        self.shared.with(|st| st.limiter.set_profile(profile));
    }

    /// Kills a signed CDN link now.
    pub fn expire_attachment(&self, id: AttachmentId) {
        self.shared.with(|st| {
            if let Some(a) = st.attachments.get_mut(&id) {
                a.expired = true;
            }
        });
    }

    /// Moves twin time forward (interaction deadlines, token and link expiry, rate windows).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
        self.shared.with(|_| ());
    }

    /// Op 7 RECONNECT on every connection: serenity resumes on a new connection.
    pub fn reconnect(&self) {
        self.shared.with(|st| {
            gateway::push_all(st, |_| {
                vec![Outgoing::Text(gateway::op_frame(7, Value::Null))]
            })
        });
    }

    /// Op 9 INVALID_SESSION on every connection; `false` forgets the sessions (fresh IDENTIFY).
    pub fn invalid_session(&self, resumable: bool) {
        self.shared
            .with(|st| gateway::invalid_session(st, resumable));
    }

    /// Drops every gateway TCP connection without a close frame.
    pub fn drop_tcp(&self) {
        self.shared
            .with(|st| gateway::push_all(st, |_| vec![Outgoing::DropTcp]));
    }

    /// Closes every gateway connection with `code` (4006/4009 also forget the session).
    pub fn close(&self, code: u16) {
        self.shared.with(|st| gateway::close_all(st, code));
    }

    /// Forgets every session and drops the connections: RESUME then gets op 9 `false`.
    pub fn expire_sessions(&self) {
        self.shared.with(|st| {
            gateway::push_all(st, |_| vec![Outgoing::DropTcp]);
            st.sessions.clear();
        });
    }

    /// Stops answering heartbeats (serenity then reconnects after one interval).
    pub fn stop_acking_heartbeats(&self) {
        self.shared
            .with(|st| st.faults.stop_acking_heartbeats = true);
    }

    /// A server-sent op 1: serenity heartbeats at once.
    pub fn request_heartbeat(&self) {
        self.shared.with(|st| {
            gateway::push_all(st, |_| {
                vec![Outgoing::Text(gateway::op_frame(1, Value::Null))]
            })
        });
    }

    /// Sends a dispatch with an unknown name, skipping the self-check (the one sanctioned case).
    pub fn emit_unknown_dispatch(&self, name: &str, d: Value) {
        self.shared.with(|st| gateway::emit_unchecked(st, name, d));
    }

    // ----- teardown -----

    pub fn violations(&self) -> Vec<Violation> {
        self.read(|s| s.violations.clone())
    }

    /// Returns and clears the violations (for tests that provoke one on purpose).
    pub fn take_violations(&self) -> Vec<Violation> {
        self.shared.with(|s| std::mem::take(&mut s.violations))
    }

    /// Panics if anything failed the harness rules (§2).
    pub fn assert_clean(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "the discord twin recorded {} violation(s):\n{v:#?}",
            v.len()
        );
    }

    /// A `RawEventHandler` for the bot's client: any `Event::Unknown` whose name the twin emitted
    /// becomes a violation.
    pub fn unknown_event_guard(&self) -> UnknownEventGuard {
        UnknownEventGuard {
            shared: self.shared.clone(),
        }
    }

    /// Checks one serenity event by hand (for harnesses that inspect events themselves).
    pub fn check_bot_event(&self, ev: &Event) {
        record_unknown(&self.shared, ev);
    }
}

/// Registered on the bot's client; see [`DiscordTwin::unknown_event_guard`].
pub struct UnknownEventGuard {
    shared: Arc<Shared>,
}

fn record_unknown(shared: &Shared, ev: &Event) {
    if let Event::Unknown(u) = ev {
        shared.with(|st| {
            if st.emitted_dispatches.contains(&u.kind) {
                st.violation(
                    ViolationKind::UnknownEvent,
                    format!(
                        "the bot's serenity read dispatch {} as Event::Unknown",
                        u.kind
                    ),
                );
            }
        });
    }
}

#[async_trait]
impl RawEventHandler for UnknownEventGuard {
    async fn raw_event(&self, _ctx: Context, ev: Event) {
        record_unknown(&self.shared, &ev);
    }
}
