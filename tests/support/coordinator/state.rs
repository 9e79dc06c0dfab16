//! The coordinator's durable state and protocol logic, free of sockets: connect admission,
//! `hello` → `welcome` with resume, dispatch queues, event application by seq with gap buffering
//! and cumulative acks, cancels, inputs, token rotation. Every method returns the messages to
//! emit; `server.rs` sends them. The state outlives server instances, so a "restarted"
//! coordinator on the same port keeps every job and ack.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use mesh_protocol::{
    AckDecision, AgentMessage, AuthRotateParams, CancelReason, ConnectAuth, DrainNotification,
    ErrorCode, HeartbeatResponse, HelloParams, InputKind, InputReply, InventoryUpdateNotification,
    JobAckResponse, JobCancelParams, JobDispatchParams, JobEvent, JobEventNotification,
    JobEventsAckResponse, JobId, JobInputParams, JobObservedNotification, JobSpec, JobState,
    LeaseExpiry, LeaseId, Limits, MeshErrorNotification, MeshMessage, MsgId, PendingCancel,
    ProtocolRange, RequestId, ResumeAction, ResumeDirective, SessionId, Token, WelcomeResponse,
    WireError,
};
use serde_json::{json, Value};

/// How this coordinator behaves.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Tokens accepted at connect.
    pub tokens: Vec<String>,
    /// `welcome.heartbeatMs`.
    pub heartbeat_ms: u64,
    pub lease_ttl_ms: u64,
    pub dispatch_ack_timeout_ms: u64,
    pub orphan_timeout_ms: u64,
    pub limits: Limits,
    /// `window` in every `job.events.ack`.
    pub window: u32,
    /// Engine.IO ping interval / timeout.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// `welcome.endpoints`, if any.
    pub endpoints: Option<Vec<String>>,
    /// Protocol versions served.
    pub protocol: ProtocolRange,
    pub features: Vec<String>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            tokens: vec!["gw_at_test".to_owned()],
            heartbeat_ms: 15_000,
            lease_ttl_ms: 60_000,
            dispatch_ack_timeout_ms: 10_000,
            orphan_timeout_ms: 600_000,
            limits: Limits::default(),
            window: mesh_protocol::limits::DEFAULT_MAX_INFLIGHT_EVENTS,
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            endpoints: None,
            protocol: ProtocolRange::CURRENT,
            features: mesh_protocol::features::ALL
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
        }
    }
}

/// One message to emit to an agent.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub gateway: String,
    pub event: String,
    pub body: Value,
}

/// One connect attempt as the coordinator saw it.
#[derive(Debug, Clone)]
pub struct ConnectRecord {
    pub at: Instant,
    pub gateway_id: String,
    pub instance_id: String,
    pub conn_epoch: u64,
    pub token: String,
    /// `None` when admitted.
    pub rejected: Option<ErrorCode>,
}

/// What the coordinator knows about one job.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub job_id: String,
    pub lease_id: String,
    pub gateway: String,
    pub spec: JobSpec,
    pub attempt: u32,
    pub state: JobState,
    /// When the current dispatch was (last) emitted, and when `job.ack` arrived.
    pub dispatched_at: Option<Instant>,
    pub acked_at: Option<Instant>,
    pub ack: Option<JobAckResponse>,
    /// Every `job.ack` received (duplicates included).
    pub acks: Vec<JobAckResponse>,
    /// Highest contiguous seq applied.
    pub acked_seq: u64,
    /// Out-of-order events waiting for their gap to fill.
    pub buffer: BTreeMap<u64, JobEventNotification>,
    /// Events applied, exactly once each, in seq order.
    pub applied: Vec<JobEventNotification>,
    /// Every seq received, duplicates included, in arrival order.
    pub received: Vec<u64>,
    pub pending_cancel: Option<(CancelReason, u64)>,
    pub cancel_results: Vec<mesh_protocol::JobCancelResponse>,
    pub input_results: Vec<mesh_protocol::JobInputResponse>,
    /// Set for a job the agent announced (`job.observed`) instead of one dispatched here.
    pub observed: Option<JobObservedNotification>,
    /// Every `job.observed` received for it (repeats included).
    pub announcements: usize,
}

impl JobRecord {
    pub fn finished(&self) -> Option<&mesh_protocol::FinishedData> {
        self.applied.iter().find_map(|e| match &e.event {
            JobEvent::Finished(f) => Some(f),
            _ => None,
        })
    }

    /// Concatenated `output` text of one stream.
    pub fn output_text(&self, stream: mesh_protocol::OutputStream) -> String {
        self.applied
            .iter()
            .filter_map(|e| match &e.event {
                JobEvent::Output(o) if o.stream == stream => Some(o.text.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn event_types(&self) -> Vec<String> {
        self.applied
            .iter()
            .map(|e| e.event.event_type().to_owned())
            .collect()
    }
}

/// A request waiting for its reply, re-sent after every `welcome`.
#[derive(Debug, Clone)]
pub enum Pending {
    Dispatch {
        job_id: String,
    },
    Cancel {
        job_id: String,
        msg: JobCancelParams,
    },
    Input {
        job_id: String,
        msg: JobInputParams,
    },
}

/// The live session of one gateway.
#[derive(Debug, Clone)]
pub struct Session {
    pub socket_id: String,
    pub generation: u64,
    pub instance_id: String,
    pub session_id: String,
    pub welcomed: bool,
}

/// Everything the coordinator remembers.
#[derive(Debug, Default)]
pub struct State {
    pub config: CoordinatorConfig,
    /// Every connect is rejected with this, when set.
    pub forced_rejection: Option<WireError>,
    /// `welcome.resume[].action` for every claimed job, when set.
    pub forced_resume: Option<ResumeAction>,
    /// Events are not answered with `welcome` at all (an endpoint that accepts but does not serve).
    pub silent: bool,
    pub highest_epoch: HashMap<String, u64>,
    pub connects: Vec<ConnectRecord>,
    pub hellos: Vec<HelloParams>,
    pub sessions: HashMap<String, Session>,
    /// Every socket that ever connected → its gateway, so events that arrive after the
    /// disconnect (socketioxide handles each in its own task) still count.
    pub sockets_seen: HashMap<(String, u64), String>,
    pub jobs: BTreeMap<String, JobRecord>,
    pub pending: HashMap<String, Vec<Pending>>,
    pub inventory: Vec<InventoryUpdateNotification>,
    pub byes: Vec<mesh_protocol::ByeNotification>,
    pub rotate_oks: Vec<String>,
    pub heartbeats: u64,
    /// Payloads from the agent that did not decode (protocol violations).
    pub violations: Vec<String>,
    /// Raw inbound log: `(event name, payload)`, for the operator tool's stream.
    pub log: Vec<(String, Value)>,
    next_session: u64,
}

pub fn msg_id() -> MsgId {
    MsgId::new(ulid::Ulid::new().to_string())
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Good enough for a test peer: the agent only logs `serverTime`.
    format!("1970-01-01T00:00:00Z+{secs}s")
}

fn error(code: ErrorCode, message: impl Into<String>, retryable: bool) -> WireError {
    WireError::new(code, message, retryable)
}

fn out(gateway: &str, message: AgentOrMesh) -> Outbound {
    let (event, body) = message.encode();
    Outbound {
        gateway: gateway.to_owned(),
        event,
        body,
    }
}

/// A mesh → agent message, encoded for emit.
pub struct AgentOrMesh(pub MeshMessage);

impl AgentOrMesh {
    fn encode(self) -> (String, Value) {
        let name = self.0.event_name().to_owned();
        let body = self.0.to_value().unwrap_or(Value::Null);
        (name, body)
    }
}

impl State {
    pub fn new(config: CoordinatorConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Connect middleware: admits or refuses a CONNECT by its `auth`.
    pub fn admit(&mut self, auth: Option<&Value>) -> Result<ConnectAuth, WireError> {
        let auth: ConnectAuth = match auth.map(|a| serde_json::from_value(a.clone())) {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                return Err(error(
                    ErrorCode::BadRequest,
                    format!("bad auth: {e}"),
                    false,
                ))
            }
            None => return Err(error(ErrorCode::AuthInvalid, "no auth payload", false)),
        };
        let mut record = ConnectRecord {
            at: Instant::now(),
            gateway_id: auth.gateway_id.to_string(),
            instance_id: auth.instance_id.to_string(),
            conn_epoch: auth.conn_epoch,
            token: auth.token.expose().to_owned(),
            rejected: None,
        };
        let verdict = self.check_auth(&auth);
        if let Err(e) = &verdict {
            record.rejected = Some(e.code.clone());
        } else {
            self.highest_epoch
                .insert(auth.gateway_id.to_string(), auth.conn_epoch);
        }
        self.connects.push(record);
        verdict.map(|()| auth)
    }

    fn check_auth(&self, auth: &ConnectAuth) -> Result<(), WireError> {
        if let Some(forced) = &self.forced_rejection {
            return Err(forced.clone());
        }
        if !self.config.tokens.iter().any(|t| t == auth.token.expose()) {
            return Err(error(
                ErrorCode::AuthInvalid,
                "unknown or revoked token",
                false,
            ));
        }
        if self.config.protocol.negotiate(auth.protocol).is_none() {
            let mut e = error(ErrorCode::ProtocolUnsupported, "no common version", false);
            e.details = Some(
                json!({"supported": [self.config.protocol.min, self.config.protocol.max]})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
            return Err(e);
        }
        let highest = self
            .highest_epoch
            .get(auth.gateway_id.as_str())
            .copied()
            .unwrap_or(0);
        if auth.conn_epoch <= highest {
            let mut e = error(
                ErrorCode::SessionStale,
                format!("connEpoch {} is not newer than {highest}", auth.conn_epoch),
                true,
            );
            e.details = Some(
                json!({ "currentEpoch": highest })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
            return Err(e);
        }
        Ok(())
    }

    /// A socket was admitted: it becomes the gateway's session; an older one is superseded.
    pub fn connected(
        &mut self,
        auth: &ConnectAuth,
        socket_id: String,
        generation: u64,
    ) -> Option<(Session, Outbound)> {
        self.next_session += 1;
        let gateway = auth.gateway_id.to_string();
        let session = Session {
            socket_id,
            generation,
            instance_id: auth.instance_id.to_string(),
            session_id: format!("s_{}", self.next_session),
            welcomed: false,
        };
        self.sockets_seen
            .insert((session.socket_id.clone(), generation), gateway.clone());
        let old = self.sessions.insert(gateway.clone(), session);
        old.map(|old| {
            let mut e = error(
                ErrorCode::SessionSuperseded,
                "a newer link owns this gateway",
                false,
            );
            e.fatal = Some(true);
            e.details = Some(
                json!({ "instanceId": auth.instance_id.as_str() })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
            let message = out(
                &gateway,
                AgentOrMesh(MeshMessage::from(MeshErrorNotification {
                    msg_id: msg_id(),
                    re: None,
                    error: e,
                })),
            );
            (old, message)
        })
    }

    /// The socket went away; its session ends if it is still the current one.
    pub fn disconnected(&mut self, socket_id: &str, generation: u64) {
        self.sessions
            .retain(|_, s| !(s.socket_id == socket_id && s.generation == generation));
    }

    /// The gateway this socket belongs (or belonged) to.
    pub fn gateway_of(&self, socket_id: &str, generation: u64) -> Option<String> {
        self.sockets_seen
            .get(&(socket_id.to_owned(), generation))
            .cloned()
    }

    /// One event from an agent.
    pub fn inbound(&mut self, gateway: &str, event: &str, body: Value) -> Vec<Outbound> {
        self.log.push((event.to_owned(), body.clone()));
        let message = match AgentMessage::decode_value(event, &body) {
            Ok(m) => m,
            Err(e) => {
                self.violations.push(e.to_string());
                return Vec::new();
            }
        };
        match message {
            AgentMessage::Hello(h) => self.on_hello(gateway, h),
            AgentMessage::Heartbeat(hb) => {
                self.heartbeats += 1;
                let leases = hb
                    .running
                    .iter()
                    .map(|r| LeaseExpiry {
                        job_id: r.job_id.clone(),
                        lease_id: r.lease_id.clone(),
                        expires_at: now_rfc3339(),
                    })
                    .collect();
                let cancel: Vec<PendingCancel> = self
                    .jobs
                    .values()
                    .filter(|j| j.gateway == gateway)
                    .filter_map(|j| {
                        let (reason, grace_ms) = j.pending_cancel?;
                        (!j.state.is_terminal()).then(|| PendingCancel {
                            job_id: JobId::new(j.job_id.clone()),
                            lease_id: LeaseId::new(j.lease_id.clone()),
                            reason,
                            grace_ms,
                        })
                    })
                    .collect();
                vec![out(
                    gateway,
                    AgentOrMesh(MeshMessage::from(HeartbeatResponse {
                        msg_id: msg_id(),
                        re: hb.msg_id,
                        server_time: now_rfc3339(),
                        leases,
                        cancel: (!cancel.is_empty()).then_some(cancel),
                    })),
                )]
            }
            AgentMessage::InventoryUpdate(update) => {
                let newest = self.inventory.iter().map(|u| u.rev).max().unwrap_or(0);
                if update.rev > newest {
                    self.inventory.push(update);
                }
                Vec::new()
            }
            AgentMessage::JobAck(ack) => {
                let job_id = ack.job_id.to_string();
                self.pending
                    .entry(gateway.to_owned())
                    .or_default()
                    .retain(|p| !matches!(p, Pending::Dispatch { job_id: j } if *j == job_id));
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    if job.lease_id == ack.lease_id.as_str() {
                        if job.ack.is_none() {
                            job.acked_at = Some(Instant::now());
                            job.state = match ack.decision {
                                AckDecision::Accepted | AckDecision::Duplicate => {
                                    if job.state == JobState::Dispatched {
                                        JobState::Accepted
                                    } else {
                                        job.state
                                    }
                                }
                                _ => JobState::Queued,
                            };
                            job.ack = Some(ack.clone());
                        }
                        job.acks.push(ack);
                    }
                }
                Vec::new()
            }
            AgentMessage::JobEvent(ev) => self.on_event(gateway, ev),
            AgentMessage::JobObserved(o) => self.on_observed(gateway, o),
            AgentMessage::JobCancelResult(r) => {
                let job_id = r.job_id.to_string();
                self.pending
                    .entry(gateway.to_owned())
                    .or_default()
                    .retain(|p| !matches!(p, Pending::Cancel { msg, .. } if msg.msg_id == r.re));
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    job.cancel_results.push(r);
                }
                Vec::new()
            }
            AgentMessage::JobInputResult(r) => {
                let job_id = r.job_id.to_string();
                self.pending
                    .entry(gateway.to_owned())
                    .or_default()
                    .retain(|p| !matches!(p, Pending::Input { msg, .. } if msg.msg_id == r.re));
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    job.input_results.push(r);
                }
                Vec::new()
            }
            AgentMessage::AuthRotateOk(ok) => {
                self.rotate_oks.push(ok.re.to_string());
                Vec::new()
            }
            AgentMessage::Bye(bye) => {
                self.byes.push(bye);
                Vec::new()
            }
            AgentMessage::Unknown { name, .. } => {
                self.violations.push(format!("unknown event `{name}`"));
                Vec::new()
            }
        }
    }

    fn on_hello(&mut self, gateway: &str, hello: HelloParams) -> Vec<Outbound> {
        self.hellos.push(hello.clone());
        if self.silent {
            return Vec::new();
        }
        let resume: Vec<ResumeDirective> = hello
            .resume
            .jobs
            .iter()
            .map(|claim| {
                let known = self
                    .jobs
                    .get(claim.job_id.as_str())
                    .filter(|j| j.lease_id == claim.lease_id.as_str());
                let (acked_seq, action) = match known {
                    Some(j) if j.pending_cancel.is_some() => (j.acked_seq, ResumeAction::Cancel),
                    Some(j) => (j.acked_seq, ResumeAction::Continue),
                    None => (0, ResumeAction::Forget),
                };
                ResumeDirective {
                    job_id: claim.job_id.clone(),
                    lease_id: claim.lease_id.clone(),
                    acked_seq,
                    action: self.forced_resume.unwrap_or(action),
                }
            })
            .collect();
        let session_id = match self.sessions.get_mut(gateway) {
            Some(s) => {
                s.welcomed = true;
                s.session_id.clone()
            }
            None => return Vec::new(),
        };
        let features = hello
            .features
            .iter()
            .filter(|f| self.config.features.contains(f))
            .cloned()
            .collect();
        let mut outs = vec![out(
            gateway,
            AgentOrMesh(MeshMessage::from(WelcomeResponse {
                msg_id: msg_id(),
                re: hello.msg_id.clone(),
                protocol: mesh_protocol::PROTOCOL_VERSION,
                features,
                session_id: SessionId::new(session_id),
                server_time: now_rfc3339(),
                heartbeat_ms: self.config.heartbeat_ms,
                lease_ttl_ms: self.config.lease_ttl_ms,
                dispatch_ack_timeout_ms: self.config.dispatch_ack_timeout_ms,
                orphan_timeout_ms: self.config.orphan_timeout_ms,
                limits: self.config.limits,
                endpoints: self.config.endpoints.clone(),
                resume,
            })),
        )];
        outs.extend(self.resend_pending(gateway));
        outs
    }

    /// Dispatches, cancels and inputs still waiting for their reply.
    fn resend_pending(&mut self, gateway: &str) -> Vec<Outbound> {
        let pending = self.pending.get(gateway).cloned().unwrap_or_default();
        let mut outs = Vec::new();
        for p in pending {
            match p {
                Pending::Dispatch { job_id } => {
                    if let Some(o) = self.dispatch_message(&job_id) {
                        outs.push(o);
                    }
                }
                Pending::Cancel { msg, .. } => {
                    outs.push(out(gateway, AgentOrMesh(MeshMessage::from(msg))))
                }
                Pending::Input { msg, .. } => {
                    outs.push(out(gateway, AgentOrMesh(MeshMessage::from(msg))))
                }
            }
        }
        outs
    }

    fn dispatch_message(&mut self, job_id: &str) -> Option<Outbound> {
        let job = self.jobs.get_mut(job_id)?;
        job.dispatched_at = Some(Instant::now());
        Some(out(
            &job.gateway.clone(),
            AgentOrMesh(MeshMessage::from(JobDispatchParams {
                msg_id: msg_id(),
                job_id: JobId::new(job.job_id.clone()),
                lease_id: LeaseId::new(job.lease_id.clone()),
                attempt: job.attempt,
                lease_ttl_ms: self.config.lease_ttl_ms,
                created_at: now_rfc3339(),
                deadline_at: None,
                spec: job.spec.clone(),
            })),
        ))
    }

    /// A new job for `gateway`; sent now if its session is live, else after its next `welcome`.
    pub fn dispatch(&mut self, gateway: &str, spec: JobSpec) -> (String, Vec<Outbound>) {
        let job_id = format!("job_{}", ulid::Ulid::new());
        self.jobs.insert(
            job_id.clone(),
            JobRecord {
                job_id: job_id.clone(),
                lease_id: format!("ls_{}", ulid::Ulid::new()),
                gateway: gateway.to_owned(),
                spec,
                attempt: 1,
                state: JobState::Dispatched,
                dispatched_at: None,
                acked_at: None,
                ack: None,
                acks: Vec::new(),
                acked_seq: 0,
                buffer: BTreeMap::new(),
                applied: Vec::new(),
                received: Vec::new(),
                pending_cancel: None,
                cancel_results: Vec::new(),
                input_results: Vec::new(),
                observed: None,
                announcements: 0,
            },
        );
        self.pending
            .entry(gateway.to_owned())
            .or_default()
            .push(Pending::Dispatch {
                job_id: job_id.clone(),
            });
        let outs = if self.is_live(gateway) {
            self.dispatch_message(&job_id).into_iter().collect()
        } else {
            Vec::new()
        };
        (job_id, outs)
    }

    /// The same dispatch again (same lease): what a coordinator does when `job.ack` is late.
    pub fn redispatch(&mut self, job_id: &str) -> Vec<Outbound> {
        self.dispatch_message(job_id).into_iter().collect()
    }

    /// A new lease for a job (the previous one is revoked on this side).
    pub fn new_lease(&mut self, job_id: &str) -> Vec<Outbound> {
        let Some(job) = self.jobs.get_mut(job_id) else {
            return Vec::new();
        };
        job.lease_id = format!("ls_{}", ulid::Ulid::new());
        job.attempt += 1;
        job.ack = None;
        job.state = JobState::Dispatched;
        self.dispatch_message(job_id).into_iter().collect()
    }

    pub fn is_live(&self, gateway: &str) -> bool {
        self.sessions.get(gateway).is_some_and(|s| s.welcomed)
    }

    pub fn cancel(&mut self, job_id: &str, reason: CancelReason, grace_ms: u64) -> Vec<Outbound> {
        let Some(job) = self.jobs.get_mut(job_id) else {
            return Vec::new();
        };
        job.pending_cancel = Some((reason, grace_ms));
        let msg = JobCancelParams {
            msg_id: msg_id(),
            job_id: JobId::new(job_id),
            lease_id: LeaseId::new(job.lease_id.clone()),
            reason,
            grace_ms,
        };
        let gateway = job.gateway.clone();
        self.pending
            .entry(gateway.clone())
            .or_default()
            .push(Pending::Cancel {
                job_id: job_id.to_owned(),
                msg: msg.clone(),
            });
        if self.is_live(&gateway) {
            vec![out(&gateway, AgentOrMesh(MeshMessage::from(msg)))]
        } else {
            Vec::new()
        }
    }

    pub fn input(
        &mut self,
        job_id: &str,
        request_id: &str,
        kind: InputKind,
        reply: InputReply,
    ) -> Vec<Outbound> {
        let Some(job) = self.jobs.get(job_id) else {
            return Vec::new();
        };
        let msg = JobInputParams {
            msg_id: msg_id(),
            job_id: JobId::new(job_id),
            lease_id: LeaseId::new(job.lease_id.clone()),
            request_id: RequestId::new(request_id),
            kind,
            reply,
        };
        let gateway = job.gateway.clone();
        self.pending
            .entry(gateway.clone())
            .or_default()
            .push(Pending::Input {
                job_id: job_id.to_owned(),
                msg: msg.clone(),
            });
        if self.is_live(&gateway) {
            vec![out(&gateway, AgentOrMesh(MeshMessage::from(msg)))]
        } else {
            Vec::new()
        }
    }

    /// Applies events by seq: duplicates are re-acknowledged, gaps buffered up to the window,
    /// the contiguous prefix applied; the ack is cumulative (§8).
    fn on_event(&mut self, gateway: &str, ev: JobEventNotification) -> Vec<Outbound> {
        let window = self.config.window;
        let job_id = ev.job_id.to_string();
        let Some(job) = self.jobs.get_mut(&job_id) else {
            let mut e = error(ErrorCode::UnknownJob, format!("no job {job_id}"), false);
            e.details = Some(
                json!({"jobId": job_id})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
            return vec![out(
                gateway,
                AgentOrMesh(MeshMessage::from(MeshErrorNotification {
                    msg_id: msg_id(),
                    re: Some(ev.msg_id),
                    error: e,
                })),
            )];
        };
        if job.lease_id != ev.lease_id.as_str() {
            let mut e = error(
                ErrorCode::LeaseExpired,
                format!("lease {} is not current", ev.lease_id),
                false,
            );
            e.details = Some(
                json!({"jobId": job_id})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
            return vec![out(
                gateway,
                AgentOrMesh(MeshMessage::from(MeshErrorNotification {
                    msg_id: msg_id(),
                    re: Some(ev.msg_id),
                    error: e,
                })),
            )];
        }
        job.received.push(ev.seq);
        if ev.seq > job.acked_seq && ev.seq <= job.acked_seq + u64::from(window.max(1)) {
            job.buffer.entry(ev.seq).or_insert(ev);
        }
        while let Some(next) = job.buffer.remove(&(job.acked_seq + 1)) {
            job.acked_seq = next.seq;
            match &next.event {
                JobEvent::Started(_)
                    if matches!(
                        job.state,
                        JobState::Dispatched | JobState::Accepted | JobState::Queued
                    ) =>
                {
                    job.state = JobState::Running;
                }
                JobEvent::Cancelling(_) if !job.state.is_terminal() => {
                    job.state = JobState::Cancelling;
                }
                JobEvent::Finished(f) => {
                    if let Some(state) = f.outcome.job_state() {
                        job.state = state;
                    }
                    job.pending_cancel = None;
                }
                _ => {}
            }
            job.applied.push(next);
        }
        vec![out(
            gateway,
            AgentOrMesh(MeshMessage::from(JobEventsAckResponse {
                msg_id: msg_id(),
                job_id: JobId::new(job_id),
                lease_id: LeaseId::new(job.lease_id.clone()),
                acked_seq: job.acked_seq,
                window,
            })),
        )]
    }

    /// `job.observed`: records the job once (a repeat keeps everything) and answers with an ack
    /// of what is stored, which lets the agent send the job's events.
    fn on_observed(&mut self, gateway: &str, o: JobObservedNotification) -> Vec<Outbound> {
        let window = self.config.window;
        let job_id = o.job_id.to_string();
        let job = self
            .jobs
            .entry(job_id.clone())
            .or_insert_with(|| JobRecord {
                job_id: job_id.clone(),
                lease_id: o.lease_id.to_string(),
                gateway: gateway.to_owned(),
                spec: JobSpec {
                    runner: o.runner.clone(),
                    workspace_id: o.workspace_id.clone().unwrap_or_else(|| "".into()),
                    prompt: o.prompt.clone(),
                    model: o.model.clone(),
                    args: None,
                    env: None,
                    timeout_ms: None,
                    permission_policy: None,
                    resume_session: None,
                    mirror: None,
                },
                attempt: 1,
                state: JobState::Queued,
                dispatched_at: None,
                acked_at: None,
                ack: None,
                acks: Vec::new(),
                acked_seq: 0,
                buffer: BTreeMap::new(),
                applied: Vec::new(),
                received: Vec::new(),
                pending_cancel: None,
                cancel_results: Vec::new(),
                input_results: Vec::new(),
                observed: Some(o.clone()),
                announcements: 0,
            });
        if job.lease_id != o.lease_id.as_str() || job.observed.is_none() {
            let mut e = error(
                ErrorCode::LeaseConflict,
                format!("job {job_id} is known under another lease"),
                false,
            );
            e.details = Some(
                json!({"jobId": job_id})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            );
            return vec![out(
                gateway,
                AgentOrMesh(MeshMessage::from(MeshErrorNotification {
                    msg_id: msg_id(),
                    re: Some(o.msg_id),
                    error: e,
                })),
            )];
        }
        job.announcements += 1;
        vec![out(
            gateway,
            AgentOrMesh(MeshMessage::from(JobEventsAckResponse {
                msg_id: msg_id(),
                job_id: JobId::new(job_id),
                lease_id: LeaseId::new(job.lease_id.clone()),
                acked_seq: job.acked_seq,
                window,
            })),
        )]
    }

    /// An ack with the current window, e.g. after the window was reopened.
    pub fn reack(&self, job_id: &str) -> Vec<Outbound> {
        let Some(job) = self.jobs.get(job_id) else {
            return Vec::new();
        };
        vec![out(
            &job.gateway,
            AgentOrMesh(MeshMessage::from(JobEventsAckResponse {
                msg_id: msg_id(),
                job_id: JobId::new(job_id),
                lease_id: LeaseId::new(job.lease_id.clone()),
                acked_seq: job.acked_seq,
                window: self.config.window,
            })),
        )]
    }

    /// Makes `token` valid and sends it to every live gateway.
    pub fn rotate_token(&mut self, token: &str) -> Vec<Outbound> {
        if !self.config.tokens.iter().any(|t| t == token) {
            self.config.tokens.push(token.to_owned());
        }
        let gateways: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.welcomed)
            .map(|(g, _)| g.clone())
            .collect();
        gateways
            .into_iter()
            .map(|g| {
                out(
                    &g,
                    AgentOrMesh(MeshMessage::from(AuthRotateParams {
                        msg_id: msg_id(),
                        token: Token::new(token),
                        valid_from: now_rfc3339(),
                        previous_valid_until: now_rfc3339(),
                    })),
                )
            })
            .collect()
    }

    pub fn drain(&self, reconnect_to: Option<String>, after_ms: Option<u64>) -> Vec<Outbound> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.welcomed)
            .map(|(g, _)| {
                out(
                    g,
                    AgentOrMesh(MeshMessage::from(DrainNotification {
                        msg_id: msg_id(),
                        reason: "coordinator shutting down".into(),
                        reconnect_to: reconnect_to.clone(),
                        reconnect_after_ms: after_ms,
                        stop_dispatch: true,
                    })),
                )
            })
            .collect()
    }

    /// Periodic upkeep: dispatches unanswered for `dispatchAckTimeoutMs` are sent again.
    pub fn tick(&mut self) -> Vec<Outbound> {
        let timeout = Duration::from_millis(self.config.dispatch_ack_timeout_ms);
        let due: Vec<String> = self
            .jobs
            .values()
            .filter(|j| {
                j.ack.is_none()
                    && self.is_live(&j.gateway)
                    && j.dispatched_at.is_some_and(|t| t.elapsed() >= timeout)
            })
            .map(|j| j.job_id.clone())
            .collect();
        due.into_iter()
            .filter_map(|id| self.dispatch_message(&id))
            .collect()
    }

    pub fn mesh_error(&self, gateway: &str, error: WireError) -> Outbound {
        out(
            gateway,
            AgentOrMesh(MeshMessage::from(MeshErrorNotification {
                msg_id: msg_id(),
                re: None,
                error,
            })),
        )
    }
}
