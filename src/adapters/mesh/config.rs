//! `MeshConfig`: where the coordinator is, who this agent is, and every timing knob of the link.
//! Built from settings in production; tests fill the fields directly (short heartbeats and
//! backoff). Constructing it never touches the network or the store.

use std::time::Duration;

use super::observe;
use crate::config::{keys, DataDir, Env, Settings};
use crate::core::JobSource;

/// `connect` must see the namespace connect event (or a `connect_error`) within this (§9 step 3).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `hello` must be answered by `welcome` within this (§9 step 4).
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// First backoff window (§9).
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Backoff windows double up to this (§9).
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A link that stays up this long resets the backoff (§9).
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// `AUTH_INVALID` / `PROTOCOL_UNSUPPORTED`: retry at most hourly (§6).
const AUTH_RETRY: Duration = Duration::from_secs(60 * 60);
/// `SESSION_SUPERSEDED` by another process: pause this long (§6).
const SUPERSEDED_PAUSE: Duration = Duration::from_secs(5 * 60);
/// Slack on top of `2 × heartbeatMs` before a silent link is dropped (§9).
const WATCHDOG_GRACE: Duration = Duration::from_secs(5);
/// Consecutive unanswered heartbeats that drop the link (§9).
const MISSED_HEARTBEATS: u32 = 2;
/// Events sent but not acknowledged for this long are sent again: a `job.event` or its ack may
/// be lost on a live link (a dropped message), and the coordinator only acks contiguous seqs.
const RESEND_AFTER: Duration = Duration::from_secs(10);
/// One emit may take this long before the link counts as down (a frozen peer fills the socket).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long pending events may take to be acknowledged before `bye`.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);
/// Runner availability is probed again this often (a CLI installed or removed meanwhile).
const INVENTORY_REFRESH: Duration = Duration::from_secs(5 * 60);
/// §10: the outbox of one job spills to disk up to this, then output is cut from the middle.
const OUTBOX_CAP_BYTES: u64 = 256 * 1024 * 1024;
/// Jobs this agent runs at once when `KIMAKI_MAX_CONCURRENT_JOBS` says nothing usable.
const DEFAULT_CAPACITY: u32 = 1;

/// How the mesh link behaves.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Coordinator URLs (`MESH_ENDPOINTS`, else `MESH_URL`), in configured order.
    pub endpoints: Vec<String>,
    /// `MESH_TOKEN`; a token rotated by the mesh and committed to the store wins until this
    /// setting changes.
    pub token: Option<String>,
    /// `MESH_ACCOUNT`.
    pub account: String,
    /// `MESH_GATEWAY_ID`; `None` uses (or generates and persists) the stored one.
    pub gateway_id: Option<String>,
    /// `MESH_GATEWAY_NAME`; empty uses the host name.
    pub gateway_name: String,
    /// `MESH_ENDPOINT_ID`.
    pub endpoint_id: String,
    pub hostname: String,
    /// `hello.capacity.maxConcurrentJobs`; dispatches beyond it are rejected.
    pub max_concurrent_jobs: u32,
    /// Features offered in `hello` (`observe` only while `observe` below names a source).
    pub features: Vec<String>,
    /// `MESH_OBSERVE`: local jobs of these sources are shown to the mesh (`job.observed`).
    pub observe: Vec<JobSource>,
    pub connect_timeout: Duration,
    pub welcome_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub stable_after: Duration,
    pub auth_retry: Duration,
    pub superseded_pause: Duration,
    pub watchdog_grace: Duration,
    pub missed_heartbeats: u32,
    /// Replaces `welcome.heartbeatMs` (tests).
    pub heartbeat_override: Option<Duration>,
    pub resend_after: Duration,
    pub send_timeout: Duration,
    pub shutdown_flush: Duration,
    pub inventory_refresh: Duration,
    pub outbox_cap_bytes: u64,
}

impl MeshConfig {
    /// Defaults for a link to `endpoints`.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            token: None,
            account: String::new(),
            gateway_id: None,
            gateway_name: String::new(),
            endpoint_id: String::new(),
            hostname: local_hostname(),
            max_concurrent_jobs: DEFAULT_CAPACITY,
            features: mesh_protocol::features::ALL
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
            observe: observe::ALL_LOCAL_SOURCES.to_vec(),
            connect_timeout: CONNECT_TIMEOUT,
            welcome_timeout: WELCOME_TIMEOUT,
            backoff_initial: BACKOFF_INITIAL,
            backoff_max: BACKOFF_MAX,
            stable_after: STABLE_AFTER,
            auth_retry: AUTH_RETRY,
            superseded_pause: SUPERSEDED_PAUSE,
            watchdog_grace: WATCHDOG_GRACE,
            missed_heartbeats: MISSED_HEARTBEATS,
            heartbeat_override: None,
            resend_after: RESEND_AFTER,
            send_timeout: SEND_TIMEOUT,
            shutdown_flush: SHUTDOWN_FLUSH,
            inventory_refresh: INVENTORY_REFRESH,
            outbox_cap_bytes: OUTBOX_CAP_BYTES,
        }
    }

    /// Production settings; `None` when no coordinator is configured (kimaki runs without a mesh).
    pub fn from_settings(settings: &Settings, _data_dir: &DataDir, env: &Env) -> Option<Self> {
        let mut endpoints = settings.list(keys::MESH_ENDPOINTS);
        if endpoints.is_empty() && settings.is_set(keys::MESH_URL) {
            endpoints.push(settings.get(keys::MESH_URL).to_owned());
        }
        if endpoints.is_empty() {
            return None;
        }
        let mut config = Self::new(endpoints);
        config.token = Some(settings.get(keys::MESH_TOKEN))
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        config.account = settings.get(keys::MESH_ACCOUNT).to_owned();
        config.gateway_id = Some(settings.get(keys::MESH_GATEWAY_ID))
            .filter(|g| !g.is_empty())
            .map(str::to_owned);
        config.gateway_name = settings.get(keys::MESH_GATEWAY_NAME).to_owned();
        config.endpoint_id = settings.get(keys::MESH_ENDPOINT_ID).to_owned();
        if let Some(host) = env.get("HOSTNAME").filter(|h| !h.is_empty()) {
            if config.hostname.is_empty() {
                config.hostname = host.to_owned();
            }
        }
        let (sources, unknown) = observe::parse_sources(&settings.list(keys::MESH_OBSERVE));
        if !unknown.is_empty() {
            tracing::warn!(
                ignored = ?unknown,
                "MESH_OBSERVE names unknown sources (use all, none, or discord, cli, scheduler, voice, api)."
            );
        }
        config.set_observe(sources);
        config.max_concurrent_jobs = u32::try_from(settings.u64(keys::MAX_CONCURRENT_JOBS))
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_CAPACITY);
        Some(config)
    }

    /// Which local jobs are shown to the mesh; none also stops offering the `observe` feature.
    pub fn set_observe(&mut self, sources: Vec<JobSource>) {
        self.features
            .retain(|f| f != mesh_protocol::features::OBSERVE);
        if !sources.is_empty() {
            self.features
                .push(mesh_protocol::features::OBSERVE.to_owned());
        }
        self.observe = sources;
    }

    /// The name shown in the mesh: `MESH_GATEWAY_NAME`, else the host name.
    pub(super) fn display_name(&self) -> String {
        if self.gateway_name.is_empty() {
            self.hostname.clone()
        } else {
            self.gateway_name.clone()
        }
    }
}

fn local_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}
