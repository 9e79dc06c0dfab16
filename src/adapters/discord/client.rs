//! The gateway side: builds serenity's client against the configured API, forwards the dispatches
//! the adapter acts on into its own event loop (so every task it starts is tracked and ends at
//! shutdown), and supervises the connection. serenity resumes and re-identifies by itself;
//! `client.start()` returns only on shutdown or a fatal close (4004 token, 4014 intents), which is
//! reported once and never retried. Other start failures retry with capped backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use reqwest::Method;
use serenity::all::{
    Cache, ChannelId, ClientBuilder, Context, EventHandler, GatewayIntents, GuildChannel, GuildId,
    Http, HttpBuilder, Interaction, Message, MessageId, PartialGuildChannel, Ready, ResumedEvent,
    UserId,
};
use serenity::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::access::{self, Access, Subject};
use super::config::DiscordConfig;
use super::outbound::{ChannelOp, Outbound, Slot};
use super::render::Verbosity;
use super::rest::Rest;
use super::sink::VerbositySource;
use super::store::DiscordStore;
use super::{inbound, interactions, setup, DiscordError};
use crate::core::{Health, JobQueue, Workspaces, Worktrees};

/// Dispatches in flight from serenity's handler tasks to the adapter's loop; a burst after a
/// RESUME replays at most a few hundred.
pub(super) const GATEWAY_EVENTS_CAPACITY: usize = 1024;

/// Message ids remembered in memory as claimed (the store remembers them across restarts).
const CLAIMED_REMEMBERED: usize = 10_000;

/// Retry of a failed client start: first delay and cap.
const RESTART_BASE: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(60);

/// The health component name.
pub const HEALTH: &str = "discord";

/// What the gateway handler forwards.
pub(super) enum Gw {
    Ready(Box<Ready>),
    GuildCreate(u64),
    Message(Box<Message>),
    MessageDelete { channel: u64, message: u64 },
    Interaction(Box<Interaction>),
    ChannelDelete(u64),
    ThreadDelete(u64),
    Resumed,
}

struct Handler {
    tx: mpsc::Sender<Gw>,
}

impl Handler {
    async fn forward(&self, ev: Gw) {
        // Closed only during shutdown, when nothing should be handled any more.
        let _ = self.tx.send(ev).await;
    }
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        self.forward(Gw::Ready(Box::new(ready))).await;
    }

    async fn guild_create(&self, _ctx: Context, guild: serenity::all::Guild, _new: Option<bool>) {
        self.forward(Gw::GuildCreate(guild.id.get())).await;
    }

    async fn resume(&self, _ctx: Context, _: ResumedEvent) {
        self.forward(Gw::Resumed).await;
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        self.forward(Gw::Message(Box::new(msg))).await;
    }

    async fn message_delete(
        &self,
        _ctx: Context,
        channel: ChannelId,
        message: MessageId,
        _guild: Option<GuildId>,
    ) {
        self.forward(Gw::MessageDelete {
            channel: channel.get(),
            message: message.get(),
        })
        .await;
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        self.forward(Gw::Interaction(Box::new(interaction))).await;
    }

    async fn channel_delete(
        &self,
        _ctx: Context,
        channel: GuildChannel,
        _messages: Option<Vec<Message>>,
    ) {
        self.forward(Gw::ChannelDelete(channel.id.get())).await;
    }

    async fn thread_delete(
        &self,
        _ctx: Context,
        thread: PartialGuildChannel,
        _full: Option<GuildChannel>,
    ) {
        self.forward(Gw::ThreadDelete(thread.id.get())).await;
    }
}

/// A configured raw handler, shared across client rebuilds.
struct SharedRaw(Arc<dyn serenity::client::RawEventHandler>);

#[async_trait]
impl serenity::client::RawEventHandler for SharedRaw {
    async fn raw_event(&self, ctx: Context, ev: serenity::model::event::Event) {
        self.0.raw_event(ctx, ev).await;
    }
}

/// Where the connection stands, for `spawn` and the handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Conn {
    Connecting,
    /// An attempt failed (Discord unreachable or the connection dropped); retrying with backoff.
    Retrying,
    Ready,
    Fatal(FatalKind),
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FatalKind {
    TokenRejected,
    /// Gateway mode: the proxy refused the onboarded credential.
    CredentialRejected,
    MissingIntent,
}

impl FatalKind {
    pub(super) fn error(self) -> DiscordError {
        match self {
            FatalKind::TokenRejected => DiscordError::TokenRejected,
            FatalKind::CredentialRejected => DiscordError::CredentialRejected,
            FatalKind::MissingIntent => DiscordError::MissingIntent,
        }
    }

    /// Through the gateway proxy there is no bot token to fix: the credential is what failed.
    pub(super) fn for_mode(self, gateway_mode: bool) -> Self {
        match self {
            FatalKind::TokenRejected if gateway_mode => FatalKind::CredentialRejected,
            other => other,
        }
    }
}

/// Per-channel settings with the configured defaults applied.
pub(super) struct ChannelSettings {
    store: DiscordStore,
    default_verbosity: Verbosity,
}

impl VerbositySource for ChannelSettings {
    fn verbosity(&self, project_channel: u64) -> Verbosity {
        self.store
            .channel(project_channel)
            .ok()
            .flatten()
            .and_then(|c| c.verbosity)
            .and_then(|v| Verbosity::parse(&v))
            .unwrap_or(self.default_verbosity)
    }
}

impl ChannelSettings {
    pub(super) fn new(store: DiscordStore, default_verbosity: Verbosity) -> Self {
        Self {
            store,
            default_verbosity,
        }
    }
}

/// Ids claimed for handling in this process (the store keeps them across restarts).
#[derive(Default)]
struct Claims {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

/// The adapter's shared state; the event loop and every task it starts hold an `Arc`.
pub(super) struct Bot {
    pub config: DiscordConfig,
    pub queue: JobQueue,
    pub workspaces: Workspaces,
    pub worktrees: Arc<dyn Worktrees>,
    pub tasks: crate::core::tasks::Tasks,
    pub health: Health,
    pub store: DiscordStore,
    pub outbound: Outbound,
    pub rest: Rest,
    pub http: Arc<Http>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    cache: RwLock<Option<Arc<Cache>>>,
    bot_id: AtomicU64,
    thread_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    claims: Mutex<Claims>,
    refusals: Mutex<HashMap<(u64, u64), Instant>>,
    /// Project channels are created one at a time (see `setup::ensure_project_channel`).
    pub(super) channel_setup: tokio::sync::Mutex<()>,
    pub(super) conn: watch::Sender<Conn>,
    pub(super) identity: Arc<Mutex<Option<Identity>>>,
}

/// Who the bot is, as READY told it (for kimaki's own `ready` lifecycle event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub application_id: u64,
    pub guild_ids: Vec<u64>,
}

impl Bot {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        config: DiscordConfig,
        queue: JobQueue,
        workspaces: Workspaces,
        worktrees: Arc<dyn Worktrees>,
        tasks: crate::core::tasks::Tasks,
        health: Health,
        store: DiscordStore,
        outbound: Outbound,
        http: Arc<Http>,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        let rest = outbound.rest().clone();
        let (conn, _) = watch::channel(Conn::Connecting);
        Self {
            config,
            queue,
            workspaces,
            worktrees,
            tasks,
            health,
            store,
            outbound,
            rest,
            http,
            cancel,
            tracker,
            cache: RwLock::new(None),
            bot_id: AtomicU64::new(0),
            thread_locks: Mutex::new(HashMap::new()),
            claims: Mutex::new(Claims::default()),
            refusals: Mutex::new(HashMap::new()),
            channel_setup: tokio::sync::Mutex::new(()),
            conn,
            identity: Arc::default(),
        }
    }

    pub fn bot_id(&self) -> u64 {
        self.bot_id.load(Ordering::SeqCst)
    }

    pub fn set_bot_id(&self, id: u64) {
        self.bot_id.store(id, Ordering::SeqCst);
    }

    pub fn cache(&self) -> Option<Arc<Cache>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_cache(&self, cache: Arc<Cache>) {
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Some(cache);
    }

    /// Serializes the handling of one thread's messages (arrival order within a thread).
    pub fn thread_lock(&self, thread: u64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.thread_locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget locks nobody holds, so the map tracks only busy threads.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(thread).or_default().clone()
    }

    /// Claims a message for handling exactly once (in this process and across restarts).
    pub fn claim(&self, message: u64) -> bool {
        {
            let mut c = self.claims.lock().unwrap_or_else(|p| p.into_inner());
            if !c.set.insert(message) {
                return false;
            }
            c.order.push_back(message);
            if c.order.len() > CLAIMED_REMEMBERED {
                if let Some(old) = c.order.pop_front() {
                    c.set.remove(&old);
                }
            }
        }
        !self.store.seen(message).unwrap_or(false)
    }

    /// Whether a refusal may be sent to `user` in `channel` now (once per cooldown).
    pub fn may_refuse(&self, user: u64, channel: u64) -> bool {
        let now = Instant::now();
        let cooldown = self.config.timings.refusal_cooldown;
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|_, at| now.duration_since(*at) < cooldown);
        match r.get(&(user, channel)) {
            Some(_) => false,
            None => {
                r.insert((user, channel), now);
                true
            }
        }
    }

    /// The access facts about a guild member, from the cache (REST when it misses).
    pub async fn subject(
        &self,
        guild: u64,
        user: u64,
        is_bot: bool,
        roles_hint: Option<Vec<u64>>,
    ) -> Subject {
        let gid = GuildId::new(guild.max(1));
        let mut owner = None;
        let mut roles: HashMap<u64, (String, u64)> = HashMap::new();
        let mut member_roles = roles_hint;
        if let Some(cache) = self.cache() {
            if let Some(g) = cache.guild(gid) {
                owner = Some(g.owner_id.get());
                for (id, r) in &g.roles {
                    roles.insert(id.get(), (r.name.clone(), r.permissions.bits()));
                }
                if member_roles.is_none() {
                    member_roles = g
                        .members
                        .get(&UserId::new(user.max(1)))
                        .map(|m| m.roles.iter().map(|r| r.get()).collect());
                }
            }
        }
        if owner.is_none() {
            if let Ok(g) = gid.to_partial_guild(&self.http).await {
                owner = Some(g.owner_id.get());
                for (id, r) in &g.roles {
                    roles.insert(id.get(), (r.name.clone(), r.permissions.bits()));
                }
            }
        }
        if member_roles.is_none() {
            member_roles = gid
                .member(&self.http, UserId::new(user.max(1)))
                .await
                .ok()
                .map(|m| m.roles.iter().map(|r| r.get()).collect());
        }
        let member_roles = member_roles.unwrap_or_default();
        // `@everyone` has the guild's id.
        let mut permissions = roles.get(&guild).map_or(0, |(_, p)| *p);
        let mut role_names = Vec::new();
        for r in &member_roles {
            if let Some((name, perms)) = roles.get(r) {
                permissions |= perms;
                role_names.push(name.clone());
            }
        }
        Subject {
            user_id: user,
            is_bot,
            is_owner: owner == Some(user),
            role_names,
            permissions,
        }
    }

    pub fn decide(&self, who: &Subject) -> Access {
        access::decide(&self.config.access, who)
    }

    /// Posts a one-off message (a reply to `reply_to` when given) through the outbound layer.
    pub async fn notice(&self, channel: u64, key: String, text: String, reply_to: Option<u64>) {
        let mut slot = Slot::new(key, text);
        slot.reply_to = reply_to;
        self.outbound.send(channel, ChannelOp::Upsert(slot)).await;
    }

    /// The name of the role users are told to ask for.
    pub fn role_to_ask_for(&self) -> String {
        self.config
            .access
            .allowed_roles
            .first()
            .cloned()
            .unwrap_or_else(|| "Kimaki".to_owned())
    }

    fn on_ready(&self, ready: &Ready) {
        self.set_bot_id(ready.user.id.get());
        self.http.set_application_id(ready.application.id);
        let mut guild_ids: Vec<u64> = ready
            .guilds
            .iter()
            .map(|g| g.id.get())
            .filter(|g| self.serves_guild(*g))
            .collect();
        guild_ids.sort_unstable();
        *self.identity.lock().unwrap_or_else(|p| p.into_inner()) = Some(Identity {
            application_id: ready.application.id.get(),
            guild_ids,
        });
        self.health.set(
            HEALTH,
            "connected",
            Some(format!(
                "as {} in {} guild(s)",
                ready.user.name,
                ready.guilds.len()
            )),
        );
        self.conn.send_replace(Conn::Ready);
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "Discord gateway ready.");
    }

    /// Whether this guild is one the adapter serves.
    pub fn serves_guild(&self, guild: u64) -> bool {
        self.config.guild_id.is_none_or(|g| g == guild)
    }
}

/// The serenity HTTP client for the configured API (one constructor for every use).
pub(super) fn build_http(config: &DiscordConfig, client: reqwest::Client) -> Http {
    let mut b = HttpBuilder::new(config.token.expose()).client(client);
    if let Some(base) = &config.api_base {
        // serenity ignores the base URL while its own rate limiter is on.
        b = b.proxy(base.clone()).ratelimiter_disabled(true);
    }
    if let Some(app) = config.application_id() {
        b = b.application_id(serenity::all::ApplicationId::new(app.max(1)));
    }
    b.build()
}

/// The reqwest client every Discord call uses: a request deadline, and no environment proxy
/// when the API base is explicit (a test server or a proxy already in the URL).
pub(super) fn build_reqwest(config: &DiscordConfig) -> Result<reqwest::Client, DiscordError> {
    // rustls with built-in roots: reqwest's native-tls default (switched on by the mesh link's
    // Socket.IO crate) parses the system CA bundle at every build, ~150 ms and MiBs at start-up.
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(config.timings.request_timeout);
    if config.api_base.is_some() {
        b = b.no_proxy();
    }
    b.build().map_err(|e| DiscordError::Http(e.to_string()))
}

fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGES | GatewayIntents::MESSAGE_CONTENT
}

fn classify_start_error(e: &serenity::Error) -> Option<FatalKind> {
    use serenity::gateway::GatewayError as G;
    match e {
        serenity::Error::Gateway(G::InvalidAuthentication) => Some(FatalKind::TokenRejected),
        serenity::Error::Gateway(G::DisallowedGatewayIntents | G::InvalidGatewayIntents) => {
            Some(FatalKind::MissingIntent)
        }
        _ => None,
    }
}

/// Runs the gateway connection until shutdown or a fatal close.
pub(super) async fn supervise(
    bot: Arc<Bot>,
    tx: mpsc::Sender<Gw>,
    reqwest_client: reqwest::Client,
) {
    let mut failures: u32 = 0;
    loop {
        if bot.cancel.is_cancelled() {
            break;
        }
        bot.health.set(HEALTH, "connecting", None);
        let mut builder = ClientBuilder::new_with_http(
            build_http(&bot.config, reqwest_client.clone()),
            intents(),
        )
        .event_handler(Handler { tx: tx.clone() });
        if let Some(raw) = &bot.config.raw_event_handler {
            builder = builder.raw_event_handler(SharedRaw(raw.clone()));
        }
        let result = match builder.await {
            Ok(mut client) => {
                if bot.config.api_base.is_some() {
                    // serenity falls back to Discord's public gateway if its GET /gateway fails;
                    // with an explicit API base that must never happen.
                    match fetch_gateway_url(&bot.rest).await {
                        Some(url) => *client.ws_url.lock().await = url,
                        None => {
                            failures += 1;
                            bot.conn.send_replace(Conn::Retrying);
                            if !wait_before_retry(&bot, failures).await {
                                break;
                            }
                            continue;
                        }
                    }
                }
                bot.set_cache(client.cache.clone());
                let manager = client.shard_manager.clone();
                let start = client.start();
                tokio::pin!(start);
                tokio::select! {
                    r = &mut start => r,
                    _ = bot.cancel.cancelled() => {
                        manager.shutdown_all().await;
                        let _ = tokio::time::timeout(Duration::from_secs(5), start).await;
                        Ok(())
                    }
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => break,
            Err(e) => {
                if let Some(fatal) = classify_start_error(&e) {
                    let fatal = fatal.for_mode(bot.config.gateway_mode);
                    let err = fatal.error();
                    tracing::error!(error = %err, "Discord refused the bot; not reconnecting.");
                    bot.health.set(HEALTH, "failed", Some(err.to_string()));
                    bot.conn.send_replace(Conn::Fatal(fatal));
                    return;
                }
                failures += 1;
                bot.conn.send_replace(Conn::Retrying);
                tracing::warn!(error = %e, attempt = failures, "The Discord connection ended; reconnecting.");
                if !wait_before_retry(&bot, failures).await {
                    break;
                }
            }
        }
    }
    bot.health.set(HEALTH, "stopped", None);
    bot.conn.send_replace(Conn::Stopped);
}

async fn fetch_gateway_url(rest: &Rest) -> Option<String> {
    match rest.call(Method::GET, "/gateway", None).await {
        Ok(r) => r
            .body
            .as_ref()
            .and_then(|b| b.get("url"))
            .and_then(|u| u.as_str())
            .map(str::to_owned),
        Err(e) => {
            tracing::warn!(error = %e, "Could not fetch the gateway URL.");
            None
        }
    }
}

/// Capped exponential backoff with jitter; false when cancelled meanwhile.
async fn wait_before_retry(bot: &Bot, failures: u32) -> bool {
    let exp = RESTART_BASE
        .saturating_mul(1 << failures.min(6))
        .min(RESTART_MAX);
    let jitter = Duration::from_millis(rand::random::<u64>() % 500);
    bot.health.set(
        HEALTH,
        "backoff",
        Some(format!("retrying in {}s", (exp + jitter).as_secs())),
    );
    tokio::select! {
        _ = bot.cancel.cancelled() => false,
        _ = tokio::time::sleep(exp + jitter) => true,
    }
}

/// The adapter's event loop: one tracked task per dispatch.
pub(super) async fn run_events(bot: Arc<Bot>, mut rx: mpsc::Receiver<Gw>) {
    loop {
        let ev = tokio::select! {
            _ = bot.cancel.cancelled() => break,
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        let b = bot.clone();
        match ev {
            Gw::Ready(ready) => bot.on_ready(&ready),
            Gw::Resumed => {
                bot.health.set(HEALTH, "connected", Some("resumed".into()));
            }
            Gw::GuildCreate(guild) => {
                bot.tracker.spawn(async move {
                    if !b.serves_guild(guild) {
                        return;
                    }
                    if let Err(e) = setup::setup_guild(&b, guild).await {
                        tracing::error!(guild, error = %e, "Discord setup failed; retrying at the next sync.");
                    }
                    inbound::backfill_guild(&b, guild).await;
                });
            }
            Gw::Message(msg) => {
                bot.tracker.spawn(async move {
                    inbound::on_message(&b, inbound::InboundMessage::from_serenity(&msg), false)
                        .await;
                });
            }
            Gw::MessageDelete { channel, message } => {
                bot.tracker.spawn(async move {
                    inbound::on_message_delete(&b, channel, message).await;
                });
            }
            Gw::Interaction(i) => {
                bot.tracker.spawn(async move {
                    interactions::handle(&b, *i).await;
                });
            }
            Gw::ChannelDelete(channel) => {
                bot.tracker.spawn(async move {
                    setup::on_channel_deleted(&b, channel).await;
                });
            }
            Gw::ThreadDelete(thread) => {
                bot.tracker.spawn(async move {
                    inbound::on_thread_deleted(&b, thread).await;
                });
            }
        }
    }
}

/// Periodic work: projects registered while running get channels.
pub(super) async fn run_sync(bot: Arc<Bot>) {
    let mut tick = tokio::time::interval(bot.config.timings.channel_sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // A project added while kimaki runs (`kimaki project add`) gets its channel at once, not at
    // the next tick.
    let mut projects = bot.workspaces.subscribe();
    let mut watching = true;
    loop {
        tokio::select! {
            _ = bot.cancel.cancelled() => return,
            _ = tick.tick() => {}
            changed = projects.changed(), if watching => {
                // The registry cannot go away while the bot holds it; should it, the tick stays.
                watching = changed.is_ok();
            }
        }
        if *bot.conn.borrow() != Conn::Ready {
            continue;
        }
        let guilds: Vec<u64> = bot
            .cache()
            .map(|c| c.guilds().into_iter().map(|g| g.get()).collect())
            .unwrap_or_default();
        for g in guilds.into_iter().filter(|g| bot.serves_guild(*g)) {
            // Only ask Discord when a registered project has no channel yet.
            if !setup::has_unmapped_projects(&bot, g) {
                continue;
            }
            if let Err(e) = setup::sync_channels(&bot, g).await {
                tracing::warn!(guild = g, error = %e, "Channel sync failed.");
            }
        }
    }
}
