//! The supervisor: one link at a time, from endpoint choice and backoff through connect,
//! `hello` → `welcome`, to the live loop (heartbeat, silence watchdog, inbound routing) and back.
//! Its task is also the only writer of the outbox (`outbox.rs`): core events are spooled in
//! bus-cursor order whether or not a link is up.
//!
//! Guardrails implemented here (§9, §12): own reconnect loop with jittered backoff and no give-up
//! (B0, B15); `connEpoch` committed before every attempt (B9 fencing); a fresh client per attempt;
//! `welcome` timeout (an endpoint that accepts sockets but does not serve is unhealthy); silence
//! watchdog and missed-heartbeat detection (B7); any emit error drops the link (B7, B15).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mesh_protocol::events as names;
use mesh_protocol::{
    AgentInfo, AgentMessage, ByeNotification, ByeReason, Capacity, ConnectAuth, ConnectionMode,
    DecodeError, ErrorCode, GatewayId, HeartbeatParams, HelloParams, HelloResume, InstanceId,
    InventoryUpdateNotification, JobEventNotification, JobId, Limits, Load, MeshMessage, MsgId,
    ProtocolRange, ResumeAction, ResumeJob, Runner, RunningJob, SizeLimits, Token, Vcs, VcsKind,
    WelcomeResponse, WireError, Workspace,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::link::{Inbound, LinkError, LinkFactory, MeshLink};
use super::map;
use super::outbox::{LinkMeta, MeshJob, MeshStore, Phase};
use super::reconnect::{Backoff, Endpoints};
use super::{LinkState, MeshConfig, MeshDeps, MeshError, MeshStatus, COMPONENT};
use crate::core::{clock, RunnerId, RunnerInfo, Subscription};
use crate::store::Batch;

/// Finished jobs stay in the dedup table this long (rule 9).
const DEDUP_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Until a `welcome` says otherwise: the v1 defaults.
const DEFAULT_ORPHAN_TIMEOUT: Duration = Duration::from_secs(600);

/// How a live link ended.
#[derive(Debug)]
pub(super) enum LinkEnd {
    Shutdown,
    Closed,
    Failed(String),
    Silent(Duration),
    MissedHeartbeats(u32),
    Drain {
        reconnect_to: Option<String>,
        after: Option<Duration>,
    },
    Rejected(WireError),
    Send(LinkError),
    Store(String),
}

impl From<LinkError> for LinkEnd {
    fn from(e: LinkError) -> Self {
        LinkEnd::Send(e)
    }
}

/// Why an attempt did not produce a live link.
enum AttemptError {
    Shutdown,
    Rejected(WireError),
    Other(String),
}

/// Send state of one job: the per-link window plus what this process already emitted.
#[derive(Debug, Clone)]
pub(super) struct Flow {
    /// Highest seq sent on the current link.
    pub sent_upto: u64,
    /// Highest seq ever sent by this process; entries above it may still be coalesced.
    pub max_sent: u64,
    /// Events past `ackedSeq` the coordinator allows.
    pub window: u32,
    /// Encoded size of every outbox entry, by seq.
    pub sizes: BTreeMap<u64, usize>,
    /// Last ack progress (or first send after idling), for resends.
    pub last_progress: Instant,
}

/// The live link and what `welcome` negotiated.
pub(super) struct Live {
    pub link: Box<dyn MeshLink>,
    pub endpoint: String,
    pub session_id: String,
    pub heartbeat: Duration,
    pub limits: Limits,
    pub size_limits: SizeLimits,
    pub features: Vec<String>,
    last_inbound: Instant,
    pending_heartbeats: VecDeque<String>,
    connected_at: Instant,
}

impl Live {
    /// Encodes and sends one message; a message over its limit is never sent (logged instead).
    pub async fn send(&self, message: AgentMessage) -> Result<(), LinkError> {
        match message.to_value_with_limits(&self.size_limits) {
            Ok(value) => self.link.send(message.event_name(), &value).await,
            Err(e) => {
                tracing::error!(error = %e, "Mesh message not sent.");
                Ok(())
            }
        }
    }
}

/// What was last advertised.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Inventory {
    runners: Vec<Runner>,
    workspaces: Vec<Workspace>,
}

/// All state of the mesh link; owned by its one task.
pub(super) struct Agent {
    pub cfg: MeshConfig,
    pub deps: MeshDeps,
    pub db: MeshStore,
    pub meta: LinkMeta,
    pub jobs: BTreeMap<String, MeshJob>,
    pub flows: HashMap<String, Flow>,
    /// The last entry spooled per job, while it may still be coalesced.
    pub tails: HashMap<String, JobEventNotification>,
    /// Jobs whose tail changed in the batch being built and is not written yet.
    pub dirty_tails: BTreeSet<String>,
    /// The end of output cut after the outbox cap, per job.
    pub cut_tails: HashMap<String, String>,
    pub runner_infos: BTreeMap<RunnerId, RunnerInfo>,
    pub shutting_down: bool,
    pub max_event_bytes: usize,
    pub recent_event_ids: VecDeque<(String, String)>,
    pub bus: Subscription,
    pub bus_open: bool,
    pub cursor: u64,
    pub instance_id: String,
    pub status_tx: watch::Sender<MeshStatus>,
    pub endpoints: Endpoints,
    pub advertised: Inventory,
    pub probed_at: Option<Instant>,
    pub ws_changes: watch::Receiver<u64>,
    pub ws_open: bool,
    pub last_heartbeat_ok: Instant,
    pub orphan_timeout: Duration,
    pub auth_failed: bool,
    pub rng: StdRng,
    /// When each unanswered `job.observed` was last sent on the current link.
    pub announced_at: HashMap<String, Instant>,
}

/// The task body behind `spawn`.
pub(super) async fn run(
    config: MeshConfig,
    deps: MeshDeps,
    links: Arc<dyn LinkFactory>,
    status_tx: watch::Sender<MeshStatus>,
    shutdown: CancellationToken,
) {
    let health = deps.health.clone();
    match Agent::open(config, deps, status_tx).await {
        Ok(mut agent) => agent.supervise(&*links, &shutdown).await,
        Err(e) => {
            tracing::error!(error = %e, "The mesh link cannot start.");
            health.set(COMPONENT, "failed", Some(e.to_string()));
        }
    }
}

/// Decodes one inbound payload under the link's limits.
pub(super) fn decode(
    event: &str,
    body: &Value,
    limits: &SizeLimits,
) -> Result<MeshMessage, DecodeError> {
    MeshMessage::decode_value_with_limits(event, body, limits)
}

pub(super) fn new_msg_id() -> MsgId {
    MsgId::new(ulid::Ulid::new().to_string())
}

impl Agent {
    async fn open(
        cfg: MeshConfig,
        deps: MeshDeps,
        status_tx: watch::Sender<MeshStatus>,
    ) -> Result<Self, MeshError> {
        let db = MeshStore::new(deps.store.clone());
        let mut meta = db.meta()?.unwrap_or_default();
        if let Some(id) = cfg.gateway_id.as_ref() {
            meta.gateway_id = id.clone();
        } else if meta.gateway_id.is_empty() {
            meta.gateway_id = format!("gw_{}", ulid::Ulid::new());
        }
        // The operator's token wins when it changed since it was last seen; otherwise the newest
        // persisted one (possibly rotated by the mesh) is used.
        if cfg.token != meta.configured_token {
            meta.configured_token = cfg.token.clone();
            if cfg.token.is_some() {
                meta.token = cfg.token.clone();
            }
        }
        if meta.token.is_none() {
            meta.token = cfg.token.clone();
        }
        let mut batch = Batch::new();
        MeshStore::put_meta(&mut batch, &meta)?;
        db.store().commit(batch).await?;

        let mut jobs = BTreeMap::new();
        let mut flows = HashMap::new();
        let now = Instant::now();
        let mut pruned = Batch::new();
        for job in db.jobs()? {
            let expired = job.is_done()
                && job
                    .finished_at
                    .is_some_and(|t| clock::now_ms() - t > DEDUP_RETENTION_MS);
            if expired {
                MeshStore::delete_job(&mut pruned, &job.job_id);
                continue;
            }
            let sizes: BTreeMap<u64, usize> = db.event_sizes(&job.job_id)?.into_iter().collect();
            flows.insert(
                job.job_id.clone(),
                Flow {
                    sent_upto: job.acked_seq,
                    // Whatever is in the outbox may have been sent before the restart.
                    max_sent: job.last_seq(),
                    window: 0,
                    sizes,
                    last_progress: now,
                },
            );
            jobs.insert(job.job_id.clone(), job);
        }
        db.store().apply(pruned)?;

        let cursor = db.cursor()?;
        let bus = deps.queue.bus().subscribe(cursor);
        let ws_changes = deps.workspaces.subscribe();
        let instance_id = ulid::Ulid::new().to_string();
        let endpoint_list = map::dedup_keep_order(
            meta.endpoints
                .clone()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| cfg.endpoints.clone()),
        );
        let endpoints = Endpoints::new(endpoint_list, meta.last_good.clone());
        status_tx.send_modify(|s| {
            s.gateway_id = meta.gateway_id.clone();
            s.instance_id = instance_id.clone();
        });
        tracing::info!(gateway_id = %meta.gateway_id, instance_id = %instance_id, jobs = jobs.len(), "Mesh link starting.");
        Ok(Self {
            max_event_bytes: mesh_protocol::limits::MAX_EVENT_BYTES,
            cfg,
            deps,
            db,
            meta,
            jobs,
            flows,
            tails: HashMap::new(),
            dirty_tails: BTreeSet::new(),
            cut_tails: HashMap::new(),
            runner_infos: BTreeMap::new(),
            shutting_down: false,
            recent_event_ids: VecDeque::new(),
            bus,
            bus_open: true,
            cursor,
            instance_id,
            status_tx,
            endpoints,
            advertised: Inventory::default(),
            probed_at: None,
            ws_changes,
            ws_open: true,
            last_heartbeat_ok: now,
            orphan_timeout: DEFAULT_ORPHAN_TIMEOUT,
            auth_failed: false,
            rng: StdRng::from_os_rng(),
            announced_at: HashMap::new(),
        })
    }

    // ---- supervisor ------------------------------------------------------------------------

    async fn supervise(&mut self, links: &dyn LinkFactory, shutdown: &CancellationToken) {
        // Whatever the previous process left on the bus is spooled before the first connect.
        if let Err(e) = self.spool_now().await {
            return self.fail_store(e);
        }
        let mut backoff = Backoff::new(
            self.cfg.backoff_initial,
            self.cfg.backoff_max,
            Instant::now(),
        );
        let mut immediate = true;
        let mut stale_retried = false;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let Some(endpoint) = self.endpoints.next(&mut self.rng) else {
                self.set_state(
                    LinkState::Stopped,
                    None,
                    Some("no mesh endpoint is configured (MESH_URL or MESH_ENDPOINTS)".into()),
                );
                shutdown.cancelled().await;
                break;
            };
            if !immediate {
                let fire = backoff.schedule(Instant::now(), self.rng.random::<f64>());
                let state = if self.auth_failed {
                    LinkState::AuthFailed
                } else {
                    LinkState::Backoff
                };
                self.set_state(state, Some(endpoint.clone()), None);
                match self.wait_offline(fire, shutdown).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return self.fail_store(e),
                }
            }
            immediate = false;
            self.set_state(LinkState::Connecting, Some(endpoint.clone()), None);
            let token_used = self.meta.token.clone();
            match self.attempt(links, &endpoint, shutdown).await {
                Ok(mut live) => {
                    stale_retried = false;
                    let end = self.live(&mut live, shutdown).await;
                    if live.connected_at.elapsed() >= self.cfg.stable_after {
                        backoff.reset(Instant::now());
                    }
                    tracing::info!(endpoint = %live.endpoint, end = ?end, "Mesh link ended.");
                    match end {
                        LinkEnd::Shutdown => {
                            self.final_flush(Some(&mut live), shutdown).await;
                            return;
                        }
                        LinkEnd::Store(e) => {
                            live.link.close().await;
                            return self.fail_store_text(e);
                        }
                        LinkEnd::Drain {
                            reconnect_to,
                            after,
                        } => {
                            if let Some(to) = reconnect_to {
                                self.endpoints.prefer_once(to);
                            }
                            if let Some(after) = after {
                                backoff.defer_until(Instant::now() + after);
                            }
                            self.set_error(Some("the coordinator is draining".into()));
                        }
                        LinkEnd::Rejected(error) => {
                            immediate = self.classify(
                                &error,
                                &mut backoff,
                                &token_used,
                                &mut stale_retried,
                            );
                        }
                        other => self.set_error(Some(describe_end(&other))),
                    }
                    live.link.close().await;
                }
                Err(AttemptError::Shutdown) => break,
                Err(AttemptError::Rejected(error)) => {
                    immediate =
                        self.classify(&error, &mut backoff, &token_used, &mut stale_retried);
                }
                Err(AttemptError::Other(e)) => {
                    tracing::warn!(endpoint = %endpoint, error = %e, "Mesh connection attempt failed.");
                    self.set_error(Some(e));
                }
            }
        }
        self.final_flush(None, shutdown).await;
    }

    /// Applies a rejection's rule (§6); returns whether to retry at once.
    fn classify(
        &mut self,
        error: &WireError,
        backoff: &mut Backoff,
        token_used: &Option<String>,
        stale_retried: &mut bool,
    ) -> bool {
        let now = Instant::now();
        let text = match &error.code {
            ErrorCode::AuthExpired if self.meta.token != *token_used => {
                // A newer token arrived meanwhile: try it now.
                return true;
            }
            ErrorCode::AuthInvalid | ErrorCode::AuthExpired | ErrorCode::ProtocolUnsupported => {
                self.auth_failed = true;
                backoff.defer_until(now + self.cfg.auth_retry);
                let fix = if error.code == ErrorCode::ProtocolUnsupported {
                    "upgrade kimaki"
                } else if token_used.is_none() {
                    "set MESH_TOKEN (no token is configured)"
                } else {
                    "check MESH_TOKEN"
                };
                format!(
                    "the coordinator refused this agent ({}: {}); {fix}; retrying in {}s",
                    error.code,
                    error.message,
                    self.cfg.auth_retry.as_secs()
                )
            }
            ErrorCode::SessionStale => {
                if let Some(current) = error.current_epoch() {
                    self.meta.conn_epoch = self.meta.conn_epoch.max(current);
                }
                self.set_error(Some(format!("session stale: {}", error.message)));
                if !*stale_retried {
                    *stale_retried = true;
                    return true;
                }
                return false;
            }
            ErrorCode::SessionSuperseded
                if error.superseding_instance_id() != Some(self.instance_id.as_str()) =>
            {
                backoff.defer_until(now + self.cfg.superseded_pause);
                format!(
                    "another kimaki process (instance {}) owns gateway {}; pausing {}s",
                    error.superseding_instance_id().unwrap_or("?"),
                    self.meta.gateway_id,
                    self.cfg.superseded_pause.as_secs()
                )
            }
            ErrorCode::RateLimited => {
                if let Some(after) = error.retry_after() {
                    backoff.defer_until(now + after);
                }
                format!("rate limited: {}", error.message)
            }
            _ => format!("{}: {}", error.code, error.message),
        };
        tracing::warn!(code = %error.code, error = %text, "The mesh coordinator refused the link.");
        self.set_error(Some(text));
        false
    }

    /// One connection attempt: commit the epoch, connect, `hello`, wait for `welcome`.
    async fn attempt(
        &mut self,
        links: &dyn LinkFactory,
        endpoint: &str,
        shutdown: &CancellationToken,
    ) -> Result<Live, AttemptError> {
        self.meta.conn_epoch += 1;
        let mut batch = Batch::new();
        MeshStore::put_meta(&mut batch, &self.meta)
            .map_err(|e| AttemptError::Other(e.to_string()))?;
        self.db
            .store()
            .commit(batch)
            .await
            .map_err(|e| AttemptError::Other(e.to_string()))?;
        self.status_tx.send_modify(|s| s.attempts += 1);

        let auth = ConnectAuth {
            token: Token::new(self.meta.token.clone().unwrap_or_default()),
            gateway_id: GatewayId::new(self.meta.gateway_id.clone()),
            instance_id: InstanceId::new(self.instance_id.clone()),
            conn_epoch: self.meta.conn_epoch,
            protocol: ProtocolRange::CURRENT,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            connection_mode: ConnectionMode::Outbound,
        };
        let mut link = links.create();
        let connected = tokio::select! {
            _ = shutdown.cancelled() => {
                link.close().await;
                return Err(AttemptError::Shutdown);
            }
            r = link.connect(endpoint, &auth, self.cfg.connect_timeout) => r,
        };
        if let Err(e) = connected {
            link.close().await;
            return Err(match e {
                LinkError::Rejected(error) => AttemptError::Rejected(error),
                other => AttemptError::Other(other.to_string()),
            });
        }

        self.refresh_inventory().await;
        let hello = self.hello();
        let hello_id = hello.msg_id.clone();
        let advertised = Inventory {
            runners: hello.runners.clone(),
            workspaces: hello.workspaces.clone(),
        };
        let message = AgentMessage::from(hello);
        let sent = match message.to_value() {
            Ok(value) => link.send(names::HELLO, &value).await,
            Err(e) => Err(LinkError::Transport(e.to_string())),
        };
        if let Err(e) = sent {
            link.close().await;
            return Err(AttemptError::Other(format!("hello not sent: {e}")));
        }
        let deadline = Instant::now() + self.cfg.welcome_timeout;
        let welcome = loop {
            let inbound = tokio::select! {
                _ = shutdown.cancelled() => {
                    link.close().await;
                    return Err(AttemptError::Shutdown);
                }
                _ = sleep_until(deadline) => {
                    link.close().await;
                    return Err(AttemptError::Other(format!(
                        "no welcome within {:?} (the endpoint accepts sockets but does not serve)",
                        self.cfg.welcome_timeout
                    )));
                }
                i = link.recv() => i,
            };
            match inbound {
                Some(Inbound::Event { name, body }) => {
                    match decode(&name, &body, &SizeLimits::DEFAULT) {
                        Ok(MeshMessage::Welcome(w)) if w.re == hello_id => break w,
                        Ok(MeshMessage::MeshError(e))
                            if e.re.is_none() || e.re.as_ref() == Some(&hello_id) =>
                        {
                            link.close().await;
                            return Err(AttemptError::Rejected(e.error));
                        }
                        Ok(other) => {
                            tracing::debug!(event = %other.event_name(), "Event before welcome; ignored.");
                        }
                        Err(e) => self.note_decode_error(&e),
                    }
                }
                Some(Inbound::Failed(e)) => {
                    link.close().await;
                    return Err(AttemptError::Other(e));
                }
                Some(Inbound::Closed) | None => {
                    link.close().await;
                    return Err(AttemptError::Other(
                        "the coordinator closed the link before welcome".into(),
                    ));
                }
            }
        };
        let mut live = Live {
            link,
            endpoint: endpoint.to_owned(),
            session_id: welcome.session_id.to_string(),
            heartbeat: self
                .cfg
                .heartbeat_override
                .unwrap_or_else(|| welcome.heartbeat_interval())
                .max(Duration::from_millis(10)),
            limits: welcome.limits,
            size_limits: SizeLimits::from_welcome(&welcome.limits),
            features: welcome.features.clone(),
            last_inbound: Instant::now(),
            pending_heartbeats: VecDeque::new(),
            connected_at: Instant::now(),
        };
        self.advertised = advertised;
        if let Err(end) = self.apply_welcome(&mut live, welcome).await {
            live.link.close().await;
            return Err(AttemptError::Other(describe_end(&end)));
        }
        Ok(live)
    }

    async fn apply_welcome(
        &mut self,
        live: &mut Live,
        welcome: WelcomeResponse,
    ) -> Result<(), LinkEnd> {
        self.max_event_bytes = live.size_limits.max_event_bytes;
        self.orphan_timeout = welcome.orphan_timeout();
        self.last_heartbeat_ok = Instant::now();
        self.auth_failed = false;
        self.endpoints.mark_good(&live.endpoint);
        self.meta.last_good = Some(live.endpoint.clone());
        if let Some(list) = welcome.endpoints.clone().filter(|l| !l.is_empty()) {
            let list = map::dedup_keep_order(list);
            self.endpoints.replace(list.clone());
            self.meta.endpoints = Some(list);
        }
        let observe = map::has_feature(&live.features, mesh_protocol::features::OBSERVE);
        self.apply_observe_support(observe)
            .map_err(|e| LinkEnd::Store(e.to_string()))?;
        self.announced_at.clear();
        for (id, flow) in self.flows.iter_mut() {
            // An observed job's events wait until its announcement is answered.
            let waiting = self
                .jobs
                .get(id)
                .is_some_and(|j| j.observed && !j.announced);
            flow.window = if waiting {
                0
            } else {
                live.limits.max_inflight_events
            };
            flow.last_progress = Instant::now();
        }
        for job in self.jobs.values() {
            if let Some(flow) = self.flows.get_mut(&job.job_id) {
                flow.sent_upto = job.acked_seq;
            }
        }
        let session_id = live.session_id.clone();
        let endpoint = live.endpoint.clone();
        self.status_tx.send_modify(|s| {
            s.sessions += 1;
            s.session_id = Some(session_id);
        });
        let outbox = self.db.event_count();
        self.update_status(|s| {
            s.state = LinkState::Connected;
            s.endpoint = Some(endpoint);
            s.last_error = None;
            s.outbox_events = outbox;
        });
        tracing::info!(endpoint = %live.endpoint, session_id = %live.session_id, "Mesh link is live.");

        let mut directed = BTreeSet::new();
        for directive in welcome.resume {
            directed.insert(directive.job_id.to_string());
            self.resume(live, directive).await?;
        }
        // Jobs the coordinator did not mention keep their position and are replayed.
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in ids {
            self.pump(live, &id).await?;
        }
        self.announce_pending(live, false).await?;
        // Inventory that changed while the hello was in flight.
        self.advertise_if_changed(live).await?;
        Ok(())
    }

    /// The live loop: routes inbound events, spools core events, heartbeats, watchdog.
    async fn live(&mut self, live: &mut Live, shutdown: &CancellationToken) -> LinkEnd {
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + live.heartbeat, live.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let silence = 2 * live.heartbeat + self.cfg.watchdog_grace;
            let watchdog = live.last_inbound + silence;
            let step: Result<(), LinkEnd> = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return LinkEnd::Shutdown,
                inbound = live.link.recv() => match inbound {
                    Some(Inbound::Event { name, body }) => {
                        live.last_inbound = Instant::now();
                        self.on_inbound(live, &name, &body).await
                    }
                    Some(Inbound::Closed) | None => Err(LinkEnd::Closed),
                    Some(Inbound::Failed(e)) => Err(LinkEnd::Failed(e)),
                },
                ev = self.bus.next(), if self.bus_open => match ev {
                    Some(ev) => self.spool_and_pump(live, ev).await,
                    None => {
                        self.bus_open = false;
                        Ok(())
                    }
                },
                _ = heartbeat.tick() => self.on_heartbeat_tick(live).await,
                changed = self.ws_changes.changed(), if self.ws_open => {
                    if changed.is_err() {
                        self.ws_open = false;
                    }
                    self.advertise_if_changed(live).await
                }
                _ = sleep_until(watchdog) => Err(LinkEnd::Silent(silence)),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_heartbeat_tick(&mut self, live: &mut Live) -> Result<(), LinkEnd> {
        let missed = u32::try_from(live.pending_heartbeats.len()).unwrap_or(u32::MAX);
        if missed >= self.cfg.missed_heartbeats.max(1) {
            return Err(LinkEnd::MissedHeartbeats(missed));
        }
        let msg_id = new_msg_id();
        live.pending_heartbeats.push_back(msg_id.to_string());
        let running: Vec<RunningJob> = self
            .jobs
            .values()
            .filter(|j| !j.is_done() && j.is_known_to_mesh())
            .map(|j| RunningJob {
                job_id: JobId::new(j.job_id.clone()),
                lease_id: mesh_protocol::LeaseId::new(j.lease_id.clone()),
                last_seq: j.last_seq(),
            })
            .collect();
        let active = self.active_jobs();
        let running_jobs = self
            .jobs
            .values()
            .filter(|j| matches!(j.phase, Phase::Running | Phase::Cancelling))
            .count();
        let load = Load {
            running_jobs: u32::try_from(running_jobs).unwrap_or(u32::MAX),
            free_slots: self.cfg.max_concurrent_jobs.saturating_sub(active),
        };
        live.send(AgentMessage::from(HeartbeatParams {
            msg_id,
            running,
            load,
        }))
        .await?;

        // Events (or their acks) lost on a live link: send again from the last ack.
        let resend_after = self.cfg.resend_after;
        let stale: Vec<String> = self
            .flows
            .iter()
            .filter(|(id, f)| {
                self.jobs
                    .get(*id)
                    .is_some_and(|j| f.sent_upto > j.acked_seq)
                    && f.last_progress.elapsed() >= resend_after
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let (Some(flow), Some(job)) = (self.flows.get_mut(&id), self.jobs.get(&id)) {
                tracing::debug!(job_id = %id, from = job.acked_seq + 1, "Resending unacknowledged events.");
                flow.sent_upto = job.acked_seq;
                flow.last_progress = Instant::now();
            }
            self.pump(live, &id).await?;
        }
        self.announce_pending(live, true).await?;
        if self
            .probed_at
            .is_none_or(|t| t.elapsed() >= self.cfg.inventory_refresh)
        {
            self.probed_at = None;
        }
        self.advertise_if_changed(live).await?;
        self.prune_expired()
            .map_err(|e| LinkEnd::Store(e.to_string()))?;
        Ok(())
    }

    async fn on_inbound(
        &mut self,
        live: &mut Live,
        name: &str,
        body: &Value,
    ) -> Result<(), LinkEnd> {
        let message = match decode(name, body, &live.size_limits) {
            Ok(m) => m,
            Err(e) => {
                self.note_decode_error(&e);
                return Ok(());
            }
        };
        match message {
            MeshMessage::Welcome(_) => {
                tracing::debug!("Second welcome on a live link; ignored.");
                Ok(())
            }
            MeshMessage::HeartbeatOk(ok) => {
                live.pending_heartbeats.clear();
                self.last_heartbeat_ok = Instant::now();
                for cancel in ok.cancel.unwrap_or_default() {
                    self.apply_pending_cancel(live, cancel).await?;
                }
                Ok(())
            }
            MeshMessage::JobDispatch(d) => self.on_dispatch(live, d).await,
            MeshMessage::JobEventsAck(ack) => self.on_events_ack(live, ack).await,
            MeshMessage::JobCancel(c) => self.on_cancel(live, c).await,
            MeshMessage::JobInput(i) => self.on_input(live, i).await,
            MeshMessage::AuthRotate(r) => self.on_auth_rotate(live, r).await,
            MeshMessage::Drain(d) => {
                tracing::info!(reason = %d.reason, reconnect_to = ?d.reconnect_to, "The coordinator asked this agent to drain.");
                live.send(AgentMessage::from(ByeNotification {
                    msg_id: new_msg_id(),
                    reason: ByeReason::Drain,
                    wait_for_jobs: false,
                }))
                .await?;
                Err(LinkEnd::Drain {
                    reconnect_to: d.reconnect_to.clone(),
                    after: d.reconnect_after(),
                })
            }
            MeshMessage::MeshError(n) => self.on_mesh_error(live, n.re, n.error).await,
            MeshMessage::Unknown { name, .. } => {
                tracing::debug!(event = %name, "Unknown mesh event; ignored.");
                Ok(())
            }
        }
    }

    async fn on_mesh_error(
        &mut self,
        live: &mut Live,
        re: Option<MsgId>,
        error: WireError,
    ) -> Result<(), LinkEnd> {
        tracing::warn!(code = %error.code, message = %error.message, re = ?re, "The coordinator reported an error.");
        match &error.code {
            ErrorCode::SessionStale | ErrorCode::SessionSuperseded => {
                return Err(LinkEnd::Rejected(error))
            }
            ErrorCode::LeaseExpired | ErrorCode::LeaseConflict | ErrorCode::UnknownJob => {
                let job = error
                    .detail("jobId")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| {
                        let re = re.as_ref()?;
                        self.recent_event_ids
                            .iter()
                            .find(|(m, _)| m == re.as_str())
                            .map(|(_, j)| j.clone())
                    });
                if let Some(job) = job {
                    self.revoke(&job).await?;
                }
            }
            _ => {}
        }
        if error.is_fatal() {
            return Err(LinkEnd::Rejected(error));
        }
        let _ = live;
        Ok(())
    }

    /// Waits until `until` without a link: spools core events and enforces the orphan timeout.
    /// `Ok(false)` on shutdown.
    async fn wait_offline(
        &mut self,
        until: Instant,
        shutdown: &CancellationToken,
    ) -> Result<bool, MeshError> {
        loop {
            let orphan_at = self.orphan_deadline();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(false),
                _ = sleep_until(until) => return Ok(true),
                ev = self.bus.next(), if self.bus_open => match ev {
                    Some(ev) => {
                        self.spool_from(ev).await?;
                    }
                    None => self.bus_open = false,
                },
                _ = sleep_until(orphan_at.unwrap_or(until)), if orphan_at.is_some() => {
                    self.cancel_orphans().await?;
                }
            }
        }
    }

    fn orphan_deadline(&self) -> Option<Instant> {
        self.jobs
            .values()
            .any(|j| j.phase == Phase::Running)
            .then_some(self.last_heartbeat_ok + self.orphan_timeout)
    }

    /// Rule 6: a job that ran without any `heartbeat.ok` for `orphanTimeoutMs` is killed.
    async fn cancel_orphans(&mut self) -> Result<(), MeshError> {
        let running: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.phase == Phase::Running)
            .map(|j| j.job_id.clone())
            .collect();
        for id in running {
            tracing::warn!(job_id = %id, "No coordinator for the orphan timeout; cancelling the job.");
            self.cancel_job(&id, mesh_protocol::FinishedData::REASON_ORPHANED)
                .await?;
        }
        Ok(())
    }

    /// Shutdown: spool what the core already published, try to get it acknowledged (bounded),
    /// say `bye`, close.
    async fn final_flush(&mut self, live: Option<&mut Live>, _shutdown: &CancellationToken) {
        self.shutting_down = true;
        if let Err(e) = self.spool_now().await {
            tracing::error!(error = %e, "Could not spool the last job events.");
        }
        if let Some(live) = live {
            let deadline = Instant::now() + self.cfg.shutdown_flush;
            let ids: Vec<String> = self.jobs.keys().cloned().collect();
            let mut ok = true;
            for id in ids {
                if self.pump(live, &id).await.is_err() {
                    ok = false;
                    break;
                }
            }
            while ok && self.has_unacked() {
                let step = tokio::select! {
                    _ = sleep_until(deadline) => break,
                    inbound = live.link.recv() => match inbound {
                        Some(Inbound::Event { name, body }) => self.on_inbound(live, &name, &body).await,
                        _ => break,
                    },
                    ev = self.bus.next(), if self.bus_open => match ev {
                        Some(ev) => self.spool_and_pump(live, ev).await,
                        None => { self.bus_open = false; Ok(()) }
                    },
                };
                if step.is_err() {
                    ok = false;
                }
            }
            if ok {
                let bye = live
                    .send(AgentMessage::from(ByeNotification {
                        msg_id: new_msg_id(),
                        reason: ByeReason::Shutdown,
                        wait_for_jobs: false,
                    }))
                    .await;
                tracing::debug!(result = ?bye, "Said bye.");
            }
            live.link.close().await;
        }
        if let Err(e) = self.db.store().flush().await {
            tracing::error!(error = %e, "Final mesh store flush failed.");
        }
        self.set_state(LinkState::Stopped, None, None);
        tracing::info!("Mesh link stopped.");
    }

    fn has_unacked(&self) -> bool {
        self.jobs
            .values()
            .any(|j| j.phase != Phase::Forgotten && j.last_seq() > j.acked_seq)
    }

    // ---- inventory --------------------------------------------------------------------------

    async fn refresh_inventory(&mut self) {
        if self.probed_at.is_some() {
            return;
        }
        for runner in self.deps.runners.runners() {
            let info = runner.probe().await;
            self.runner_infos.insert(info.id.clone(), info);
        }
        self.probed_at = Some(Instant::now());
    }

    fn current_inventory(&self) -> Inventory {
        let runners: Vec<Runner> = self
            .runner_infos
            .values()
            .map(map::runner_info_to_wire)
            .collect();
        let usable: Vec<mesh_protocol::RunnerKind> = runners
            .iter()
            .filter(|r| r.available)
            .map(|r| r.id.clone())
            .collect();
        let workspaces = match self.deps.workspaces.list() {
            Ok(list) => list
                .into_iter()
                .map(|w| Workspace {
                    id: mesh_protocol::WorkspaceId::new(w.id.clone()),
                    name: w.name.clone(),
                    vcs: git_facts(&w.path),
                    runners: usable.clone(),
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "Cannot list workspaces for the mesh inventory.");
                self.advertised.workspaces.clone()
            }
        };
        Inventory {
            runners,
            workspaces,
        }
    }

    fn hello(&self) -> HelloParams {
        let inventory = self.current_inventory();
        let mut hello = HelloParams {
            msg_id: new_msg_id(),
            agent: AgentInfo {
                gateway_id: GatewayId::new(self.meta.gateway_id.clone()),
                instance_id: InstanceId::new(self.instance_id.clone()),
                name: self.cfg.display_name(),
                account_email: self.cfg.account.clone(),
                endpoint_id: self.cfg.endpoint_id.clone(),
                hostname: self.cfg.hostname.clone(),
                os: std::env::consts::OS.to_owned(),
                arch: std::env::consts::ARCH.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                connection_mode: ConnectionMode::Outbound,
            },
            features: self.cfg.features.clone(),
            capacity: Capacity {
                max_concurrent_jobs: self.cfg.max_concurrent_jobs,
            },
            runners: inventory.runners,
            workspaces: inventory.workspaces,
            resume: HelloResume {
                jobs: self
                    .jobs
                    .values()
                    .filter(|j| !j.is_done() && j.is_known_to_mesh())
                    .map(|j| ResumeJob {
                        job_id: JobId::new(j.job_id.clone()),
                        lease_id: mesh_protocol::LeaseId::new(j.lease_id.clone()),
                        state: j.wire_state(),
                        last_seq: j.last_seq(),
                    })
                    .collect(),
            },
        };
        // A hello over its limit would never arrive; the workspace list is what can grow.
        while !hello.workspaces.is_empty() && AgentMessage::from(hello.clone()).encode().is_err() {
            hello.workspaces.pop();
            tracing::error!("The mesh hello is over its size limit; advertising fewer workspaces.");
        }
        hello
    }

    /// Sends `inventory.update` (with a new `rev`) when runners or workspaces changed.
    async fn advertise_if_changed(&mut self, live: &mut Live) -> Result<(), LinkEnd> {
        self.refresh_inventory().await;
        let current = self.current_inventory();
        if current == self.advertised {
            return Ok(());
        }
        self.meta.inventory_rev += 1;
        let mut batch = Batch::new();
        MeshStore::put_meta(&mut batch, &self.meta).map_err(|e| LinkEnd::Store(e.to_string()))?;
        self.db
            .store()
            .apply(batch)
            .map_err(|e| LinkEnd::Store(e.to_string()))?;
        let update = InventoryUpdateNotification {
            msg_id: new_msg_id(),
            rev: self.meta.inventory_rev,
            runners: (current.runners != self.advertised.runners).then(|| current.runners.clone()),
            workspaces: (current.workspaces != self.advertised.workspaces)
                .then(|| current.workspaces.clone()),
        };
        tracing::info!(rev = update.rev, "Mesh inventory changed; advertising it.");
        self.advertised = current;
        live.send(AgentMessage::from(update)).await?;
        Ok(())
    }

    // ---- bookkeeping ------------------------------------------------------------------------

    pub(super) fn active_jobs(&self) -> u32 {
        u32::try_from(self.jobs.values().filter(|j| j.is_active()).count()).unwrap_or(u32::MAX)
    }

    fn prune_expired(&mut self) -> Result<(), MeshError> {
        let now = clock::now_ms();
        let expired: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.is_done() && j.finished_at.is_some_and(|t| now - t > DEDUP_RETENTION_MS))
            .map(|j| j.job_id.clone())
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for id in expired {
            MeshStore::delete_job(&mut batch, &id);
            self.jobs.remove(&id);
            self.flows.remove(&id);
            self.tails.remove(&id);
        }
        self.db.store().apply(batch)?;
        Ok(())
    }

    pub(super) fn note_decode_error(&self, error: &DecodeError) {
        tracing::warn!(event = %error.event(), error = %error, "Mesh message rejected.");
        self.status_tx.send_modify(|s| s.decode_errors += 1);
    }

    fn set_state(&self, state: LinkState, endpoint: Option<String>, error: Option<String>) {
        let outbox = self.db.event_count();
        self.update_status(|s| {
            s.state = state;
            if endpoint.is_some() {
                s.endpoint = endpoint;
            }
            if error.is_some() {
                s.last_error = error;
            }
            s.outbox_events = outbox;
        });
    }

    fn set_error(&self, error: Option<String>) {
        self.update_status(|s| s.last_error = error);
    }

    /// Health first, then the watch: whoever sees the new status also finds it in health.
    fn update_status(&self, change: impl FnOnce(&mut MeshStatus)) {
        let mut s = self.status_tx.borrow().clone();
        change(&mut s);
        let mut detail = format!(
            "endpoint={}; outboxEvents={}",
            s.endpoint.as_deref().unwrap_or("-"),
            s.outbox_events
        );
        if let Some(e) = &s.last_error {
            detail.push_str("; lastError=");
            detail.push_str(e);
        }
        self.deps
            .health
            .set(COMPONENT, s.state.as_str(), Some(detail));
        self.status_tx.send_replace(s);
    }

    fn fail_store(&self, e: MeshError) {
        self.fail_store_text(e.to_string());
    }

    fn fail_store_text(&self, e: String) {
        tracing::error!(error = %e, "The mesh outbox cannot be written; the mesh link stops.");
        self.status_tx.send_modify(|s| {
            s.state = LinkState::Stopped;
            s.last_error = Some(e.clone());
        });
        self.deps.health.set(COMPONENT, "failed", Some(e));
    }
}

fn describe_end(end: &LinkEnd) -> String {
    match end {
        LinkEnd::Shutdown => "shutting down".into(),
        LinkEnd::Closed => "the coordinator closed the link".into(),
        LinkEnd::Failed(e) => format!("link failed: {e}"),
        LinkEnd::Silent(d) => format!("nothing received for {d:?}; link dropped"),
        LinkEnd::MissedHeartbeats(n) => format!("{n} heartbeats unanswered; link dropped"),
        LinkEnd::Drain { .. } => "the coordinator is draining".into(),
        LinkEnd::Rejected(e) => format!("{}: {}", e.code, e.message),
        LinkEnd::Send(e) => format!("send failed: {e}"),
        LinkEnd::Store(e) => format!("store error: {e}"),
    }
}

/// Version-control facts for a workspace: the branch from `.git/HEAD`. Cheap (one small read);
/// the remote is left out because its URL may carry credentials.
fn git_facts(root: &Path) -> Option<Vcs> {
    let git = root.join(".git");
    if !git.exists() {
        return None;
    }
    let branch = std::fs::read_to_string(git.join("HEAD"))
        .ok()
        .and_then(|head| {
            head.trim()
                .strip_prefix("ref: refs/heads/")
                .map(str::to_owned)
        });
    Some(Vcs {
        kind: VcsKind::Git,
        remote: None,
        branch,
        dirty: None,
    })
}

/// `welcome.resume` directives, applied by `dispatch.rs`.
pub(super) fn resume_action_name(action: ResumeAction) -> &'static str {
    match action {
        ResumeAction::Continue => "continue",
        ResumeAction::Cancel => "cancel",
        ResumeAction::Forget => "forget",
        ResumeAction::Unknown => "unknown",
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
