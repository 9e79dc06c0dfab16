//! The mesh link: one outbound Socket.IO connection to a mesh coordinator (mesh-protocol v1).
//! Dispatches become held jobs in the core queue (written ahead, released once the coordinator
//! confirmed `started`); the jobs' events go back through a durable outbox, exactly once and in
//! order. Depends on `core`, `store`, `config` and the `mesh-protocol` crate; never on another
//! adapter.
//!
//! # Layout
//! - `config`: `MeshConfig` (endpoints, identity, timing knobs).
//! - `link`: the `MeshLink` trait and `RustSocketioLink` (the `rust_socketio` guardrails).
//! - `session`: the supervisor: endpoint choice, backoff, hello/welcome, heartbeat, watchdog.
//! - `dispatch`: dispatch, cancel and input handling (agent rules 1–9).
//! - `outbox`: the durable `mesh/` keys: identity, job table, outbox.
//! - `reconnect`: backoff windows and endpoint order (pure).
//! - `map`: core ⇄ wire translation (pure).
//! - `observe`: local jobs (Discord, CLI, schedule) shown to the mesh (`job.observed`).

mod config;
mod dispatch;
mod link;
mod map;
mod observe;
mod outbox;
mod reconnect;
mod session;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::core::{Health, JobQueue, QueueError, RunnerSet, Workspaces};
use crate::store::{Store, StoreError};

pub use config::MeshConfig;
pub use link::{Inbound, LinkError, LinkFactory, MeshLink, RustSocketioLink};

/// Name of the component in `Health` (`mesh`), also the `ReplyTo.adapter` of mesh jobs.
pub const COMPONENT: &str = "mesh";

/// What the mesh link needs from the rest of kimaki.
#[derive(Clone)]
pub struct MeshDeps {
    pub queue: JobQueue,
    pub workspaces: Workspaces,
    pub runners: Arc<RunnerSet>,
    pub health: Health,
    pub store: Store,
}

/// Why the mesh link could not do something.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("cannot encode `{event}`: {detail}")]
    Encode { event: String, detail: String },
}

pub type Result<T> = std::result::Result<T, MeshError>;

/// Where the link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// An attempt is in progress (connect, then hello → welcome).
    Connecting,
    /// `welcome` received; the link is live.
    Connected,
    /// Waiting before the next attempt.
    Backoff,
    /// The coordinator refused the token (or the protocol version); retrying slowly.
    AuthFailed,
    /// Shut down.
    Stopped,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Backoff => "backoff",
            LinkState::AuthFailed => "auth_failed",
            LinkState::Stopped => "stopped",
        }
    }
}

/// A snapshot of the link, for health, the runtime and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshStatus {
    pub state: LinkState,
    /// The endpoint of the current (or last) attempt.
    pub endpoint: Option<String>,
    pub last_error: Option<String>,
    pub gateway_id: String,
    pub instance_id: String,
    /// Connection attempts since start.
    pub attempts: u64,
    /// `welcome`s received since start.
    pub sessions: u64,
    pub session_id: Option<String>,
    /// Inbound payloads that could not be decoded (each logged with the reason).
    pub decode_errors: u64,
    /// Events waiting in the outbox for an acknowledgement.
    pub outbox_events: usize,
}

/// Handle on the running link: observe it, and wait for it to stop after its final flush.
pub struct MeshHandle {
    status: watch::Receiver<MeshStatus>,
    task: JoinHandle<()>,
}

impl MeshHandle {
    pub fn status(&self) -> MeshStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<MeshStatus> {
        self.status.clone()
    }

    /// Waits until the status satisfies `pred`, at most `timeout`; returns the status then.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&MeshStatus) -> bool,
    ) -> Option<MeshStatus> {
        let mut rx = self.status.clone();
        tokio::time::timeout(timeout, async {
            loop {
                let current = rx.borrow_and_update().clone();
                if pred(&current) {
                    return Some(current);
                }
                if rx.changed().await.is_err() {
                    let last = rx.borrow().clone();
                    return pred(&last).then_some(last);
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Stops the link at once, without the final flush or `bye`: what a crash leaves behind.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Waits for the link to finish shutting down (after `shutdown` fired).
    pub async fn stopped(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "The mesh link task ended abnormally.");
        }
    }
}

/// Starts the mesh link over `rust_socketio`. It runs until `shutdown` fires, then flushes the
/// outbox (bounded by `shutdown_flush`), says `bye`, and stops.
pub fn spawn(config: MeshConfig, deps: MeshDeps, shutdown: CancellationToken) -> MeshHandle {
    let send_timeout = config.send_timeout;
    let factory: Arc<dyn LinkFactory> =
        Arc::new(move || -> Box<dyn MeshLink> { Box::new(RustSocketioLink::new(send_timeout)) });
    spawn_with_link(config, deps, factory, shutdown)
}

/// `spawn` with another transport (an in-memory link in unit tests).
pub fn spawn_with_link(
    config: MeshConfig,
    deps: MeshDeps,
    links: Arc<dyn LinkFactory>,
    shutdown: CancellationToken,
) -> MeshHandle {
    let (status_tx, status_rx) = watch::channel(MeshStatus {
        state: LinkState::Connecting,
        endpoint: None,
        last_error: None,
        gateway_id: String::new(),
        instance_id: String::new(),
        attempts: 0,
        sessions: 0,
        session_id: None,
        decode_errors: 0,
        outbox_events: 0,
    });
    let task = tokio::spawn(session::run(config, deps, links, status_tx, shutdown));
    MeshHandle {
        status: status_rx,
        task,
    }
}

/// Decodes one inbound payload the way the link does, with the default size limits: the entry
/// point of the hostile-input tests. Never panics; the error names the event and the reason.
pub fn decode_inbound(
    event: &str,
    body: &serde_json::Value,
) -> std::result::Result<mesh_protocol::MeshMessage, mesh_protocol::DecodeError> {
    session::decode(event, body, &mesh_protocol::SizeLimits::DEFAULT)
}
