//! The Discord adapter: one bot per machine, built on serenity 0.12.5. Project channels map to
//! registered directories, threads to queue lanes; every message becomes a job in the core queue
//! and every job event is rendered back into its thread. Depends on `core`, `config` and `store`
//! only — never on another adapter — and nothing outside it names serenity.
//!
//! # Layout
//! - `config`: `DiscordConfig` (token, API base, access, defaults, timings).
//! - `client`: serenity's client, the gateway supervisor and the adapter's event loop.
//! - `inbound`: message → job (threads, queue/interrupt, attachments, `!`, backfill).
//! - `external`: sessions started outside Discord (`kimaki send`) shown in a thread the sink
//!   opens; `upload`: files posted to a thread from the command line.
//! - `sink`: job events → slots; `outbound`: per-channel workers that post, edit and retry.
//! - `render/`: pure text rendering (splitter, footer, tool lines, verbosity).
//! - `interactions`: buttons, selects, slash commands, autocomplete, permission time-outs.
//! - `commands`: the slash command definitions; `setup`: role, category, channels, commands.
//! - `worktrees`: sessions in git worktrees (`/new-worktree`, `⬦` threads, merge, list);
//!   `voice_retry`: the Retry button of a failed transcription.
//! - `gateway_proxy`: gateway mode's onboarding protocol and its saved state.
//! - `store`: the adapter's durable maps; `rest`: the classified REST calls; `access`: who may
//!   use the bot; `attachments`, `shell`: downloads and `!command`.

mod access;
mod attachments;
mod client;
mod commands;
mod config;
mod external;
mod gateway_proxy;
mod inbound;
mod interactions;
mod outbound;
pub mod render;
mod rest;
mod setup;
mod shell;
mod sink;
mod store;
mod upload;
mod voice_retry;
mod worktrees;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use client::Identity;
pub use config::{AccessConfig, DiscordConfig, DiscordTimings};
pub use external::{
    reply_in_new_thread, reply_in_thread, ChannelTarget, DiscordSessions, ThreadTarget,
};
pub use gateway_proxy::{
    install_url_with_callback, Authorization, CredentialCheck, GatewayProxy, GatewayProxyError,
    Onboarding, PollOutcome, SavedOnboarding, LONG_POLL,
};
pub use outbound::OutboundTimings;
pub use render::Verbosity;
pub use sink::ADAPTER;
pub use upload::{
    upload as upload_files, UploadError, UploadedMessage, MAX_FILES_PER_MESSAGE, MAX_MESSAGE_BYTES,
};

use crate::core::{EventBus, Health, JobQueue, QueueError, Workspaces, Worktrees};
use crate::store::{Store, StoreError};
use client::{Bot, Conn, Gw};

/// Outbound notices (gone channels) waiting for the adapter; rare, so a small buffer.
const NOTICES_CAPACITY: usize = 64;

/// How long shutdown waits for in-flight work (interaction answers, posts) before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// At shutdown, how long the output of jobs that already ended may take to reach Discord.
const EXIT_FLUSH: Duration = Duration::from_secs(3);

/// Everything the Discord adapter can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("Discord rejected the bot token (401 / close code 4004): reset it in the Developer Portal (Bot > Reset Token) and set KIMAKI_BOT_TOKEN")]
    TokenRejected,
    #[error("the gateway proxy refused kimaki's credential (the authorization was revoked or the bot removed from the server): run `kimaki start --gateway --restart-onboarding` and authorize the bot again")]
    CredentialRejected,
    #[error("Discord refused the gateway intents (close code 4014): enable MESSAGE CONTENT INTENT in the Developer Portal (Bot > Privileged Gateway Intents)")]
    MissingIntent,
    #[error("Discord API error: {0}")]
    Http(String),
    #[error("a Discord response could not be decoded: {0}")]
    Decode(String),
    #[error("Discord gateway error: {0}")]
    Gateway(String),
    #[error("Discord setup failed: {0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

pub type Result<T> = std::result::Result<T, DiscordError>;

impl DiscordError {
    /// Whether kimaki must stop using Discord until someone changes the configuration.
    pub fn is_fatal(&self) -> bool {
        match self {
            DiscordError::TokenRejected
            | DiscordError::CredentialRejected
            | DiscordError::MissingIntent => true,
            DiscordError::Http(_)
            | DiscordError::Decode(_)
            | DiscordError::Gateway(_)
            | DiscordError::Setup(_)
            | DiscordError::Store(_)
            | DiscordError::Queue(_) => false,
        }
    }
}

impl From<serenity::Error> for DiscordError {
    fn from(e: serenity::Error) -> Self {
        match e {
            serenity::Error::Json(j) => {
                tracing::error!(error = %j, "A Discord response could not be decoded.");
                DiscordError::Decode(j.to_string())
            }
            serenity::Error::Gateway(g) => DiscordError::Gateway(g.to_string()),
            other => DiscordError::Http(other.to_string()),
        }
    }
}

/// What the adapter plugs into.
#[derive(Clone)]
pub struct DiscordDeps {
    pub queue: JobQueue,
    pub workspaces: Workspaces,
    pub health: Health,
    pub store: Store,
    /// Creates, lists and merges the git worktrees sessions run in (`/new-worktree`, `⬦`).
    pub worktrees: Arc<dyn Worktrees>,
    /// Scheduled sends (`/tasks` lists and deletes them); the scheduler's own instance, so a
    /// deletion reaches it at once.
    pub tasks: crate::core::tasks::Tasks,
}

/// A running adapter.
pub struct DiscordHandle {
    cancel: CancellationToken,
    /// Gateway, message handling, interactions and time-outs (a child of `cancel`).
    intake: CancellationToken,
    tracker: TaskTracker,
    conn: watch::Receiver<Conn>,
    identity: Arc<std::sync::Mutex<Option<Identity>>>,
    health: Health,
    bus: EventBus,
    progress: watch::Receiver<sink::SinkProgress>,
}

impl DiscordHandle {
    /// Whether the gateway is connected and READY.
    pub fn is_ready(&self) -> bool {
        *self.conn.borrow() == Conn::Ready
    }

    /// The application and the guilds it serves, once READY was received.
    pub fn identity(&self) -> Option<Identity> {
        self.identity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Resolves when the adapter stops by itself: `Err` for a fatal refusal (token, intents).
    pub async fn stopped(&self) -> Result<()> {
        Self::stopped_on(self.conn.clone()).await
    }

    /// `stopped` as a future that owns what it needs, for a watcher task.
    pub fn stopped_owned(&self) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        Self::stopped_on(self.conn.clone())
    }

    async fn stopped_on(mut rx: watch::Receiver<Conn>) -> Result<()> {
        loop {
            match rx.borrow_and_update().clone() {
                Conn::Fatal(kind) => return Err(kind.error()),
                Conn::Stopped => return Ok(()),
                Conn::Connecting | Conn::Retrying | Conn::Ready => {}
            }
            if rx.changed().await.is_err() {
                return Ok(());
            }
        }
    }

    /// Shutdown step 1: closes the gateway and stops taking messages and clicks, while the
    /// output of jobs that are still finishing keeps being rendered.
    pub fn stop_intake(&self) {
        self.intake.cancel();
    }

    /// Stops everything: closes the gateway, then waits for in-flight work. Output not yet in
    /// Discord is rendered at the next start.
    pub async fn shutdown(self) {
        // Jobs have ended by now: give their last messages a moment to reach Discord, so a
        // restart does not leave a thread without its answer until the next start re-renders it.
        let head = self.bus.head().unwrap_or(0);
        let mut progress = self.progress.clone();
        let caught_up = tokio::time::timeout(
            EXIT_FLUSH,
            progress.wait_for(|p| p.cursor >= head && p.pending == 0),
        )
        .await;
        if !matches!(caught_up, Ok(Ok(_))) {
            tracing::info!(
                "Discord output still pending at exit; it is rendered at the next start."
            );
        }
        // The gateway supervisor closes the shard itself on cancel; a second `shutdown_all`
        // would wait out serenity's 5 s timeout for a shard that is already gone.
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("Discord tasks did not stop in time.");
        }
        self.health.set(client::HEALTH, "stopped", None);
    }
}

/// Starts the adapter: checks the token, starts rendering and the gateway, and waits (up to
/// `timings.ready_timeout`) for READY or a first failed attempt. A rejected token or missing
/// intent is returned as an error and never retried; a slow or unreachable Discord returns the
/// handle while it keeps connecting in the background.
pub async fn spawn(
    config: DiscordConfig,
    deps: DiscordDeps,
    shutdown: CancellationToken,
) -> Result<DiscordHandle> {
    let cancel = shutdown.child_token();
    let intake = cancel.child_token();
    let ready_timeout = config.timings.ready_timeout;
    let tracker = TaskTracker::new();
    let health = deps.health.clone();
    health.set(client::HEALTH, "starting", None);
    let reqwest_client = client::build_reqwest(&config)?;
    let http = Arc::new(client::build_http(&config, reqwest_client.clone()));
    let rest = rest::Rest::new(
        reqwest_client.clone(),
        config.api_base_or_default(),
        config.token.clone(),
    );

    // A rejected token is known before any gateway work.
    match http.get_current_user().await {
        Ok(me) => tracing::debug!(user = %me.name, "Discord token accepted."),
        Err(serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)))
            if r.status_code.as_u16() == 401 =>
        {
            let err = client::FatalKind::TokenRejected
                .for_mode(config.gateway_mode)
                .error();
            health.set(client::HEALTH, "failed", Some(err.to_string()));
            return Err(err);
        }
        Err(e) => {
            tracing::warn!(error = %DiscordError::from(e), "Could not check the Discord token yet; connecting anyway.")
        }
    }

    let dstore = store::DiscordStore::new(deps.store.clone());
    if let Err(e) = dstore.prune_seen(crate::core::clock::now_ms()) {
        tracing::warn!(error = %e, "Could not prune handled message ids.");
    }
    let (notices_tx, mut notices_rx) = mpsc::channel(NOTICES_CAPACITY);
    let outbound = outbound::Outbound::new(
        rest,
        dstore.clone(),
        config.timings.outbound.clone(),
        notices_tx,
        cancel.clone(),
        tracker.clone(),
    );
    let settings = Arc::new(client::ChannelSettings::new(
        dstore.clone(),
        config.default_verbosity,
    ));
    let timeout_minutes = (config.timings.permission_timeout.as_secs() / 60).max(1);
    let (progress_tx, progress) = watch::channel(sink::SinkProgress::default());
    let sink = sink::Sink::new(
        deps.queue.clone(),
        dstore.clone(),
        outbound.clone(),
        settings,
        timeout_minutes,
        progress_tx,
    );
    let bus = deps.queue.bus().clone();
    tracker.spawn(sink.run(cancel.clone()));

    let bot = Arc::new(Bot::new(
        config,
        deps.queue,
        deps.workspaces,
        deps.worktrees,
        deps.tasks,
        health.clone(),
        dstore,
        outbound,
        http,
        intake.clone(),
        tracker.clone(),
    ));
    let conn = bot.conn.subscribe();
    let identity = bot.identity.clone();
    let (gw_tx, gw_rx) = mpsc::channel::<Gw>(client::GATEWAY_EVENTS_CAPACITY);
    tracker.spawn(client::run_events(bot.clone(), gw_rx));
    tracker.spawn(client::supervise(bot.clone(), gw_tx, reqwest_client));
    tracker.spawn(interactions::run_timeouts(bot.clone()));
    tracker.spawn(client::run_sync(bot.clone()));
    {
        let bot = bot.clone();
        let cancel = intake.clone();
        tracker.spawn(async move {
            loop {
                let notice = tokio::select! {
                    _ = cancel.cancelled() => return,
                    n = notices_rx.recv() => match n { Some(n) => n, None => return },
                };
                match notice {
                    outbound::OutboundNotice::ChannelGone(c) => {
                        setup::on_channel_deleted(&bot, c).await;
                    }
                }
            }
        });
    }
    drop(bot);

    let handle = DiscordHandle {
        cancel,
        intake,
        tracker,
        conn,
        identity,
        health,
        bus,
        progress,
    };
    let mut rx = handle.conn.clone();
    let waited = tokio::time::timeout(
        ready_timeout,
        // A failed first attempt returns too: the rest of kimaki should not wait out an outage.
        rx.wait_for(|c| {
            matches!(
                c,
                Conn::Ready | Conn::Retrying | Conn::Fatal(_) | Conn::Stopped
            )
        }),
    )
    .await;
    let fatal = match waited {
        Ok(Ok(state)) => match &*state {
            Conn::Fatal(kind) => Some(*kind),
            _ => None,
        },
        _ => None,
    };
    if let Some(kind) = fatal {
        handle.shutdown().await;
        return Err(kind.error());
    }
    Ok(handle)
}
