//! The reference mesh coordinator: socketioxide 0.18 + axum 0.8 on 127.0.0.1, namespace `/mesh`,
//! speaking mesh-protocol v1 through the `mesh-protocol` crate. Tests drive it in process; the
//! operator tool `examples/mesh_coordinator.rs` includes this module by path. Imports nothing
//! from kimaki (except the test-only agent harness, `agent`).
//!
//! It keeps its state outside the server instance, so it can be killed (every connection fails
//! at once) and restarted on the same port with every job and ack intact; frozen (connections
//! hang); told to drop, duplicate, delay or reorder chosen messages; to reject tokens with any
//! code; to send `drain`, `auth.rotate` or a closed window. Two instances may share one state
//! (failover). The recorder checks the per-job invariants.
//!
//! # Layout
//! - `state`: protocol logic and durable state, no sockets.
//! - `server`: socketioxide wiring of one instance; faults applied on the way in and out.
//! - `net`: the kill/freeze gate under every connection.
//! - `faults`, `recorder`: fault rules; per-job invariants.

#![allow(dead_code, unused_imports)]

#[cfg(test)]
pub mod agent;
pub mod faults;
pub mod net;
pub mod recorder;
pub mod server;
pub mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_protocol::{CancelReason, HelloParams, InputKind, InputReply, JobSpec, WireError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use faults::{Direction, Fault, FaultAction};
pub use recorder::{audit, Audit};
pub use server::Shared;
pub use state::{CoordinatorConfig, JobRecord, State};

/// How long a restarted instance retries binding its old port.
const REBIND_FOR: Duration = Duration::from_secs(5);
/// Upkeep period: late dispatch acks are detected at this granularity.
const TICK: Duration = Duration::from_millis(100);

/// One coordinator endpoint (an instance over possibly shared state).
pub struct MeshCoordinator {
    shared: Arc<Shared>,
    port: u16,
    instance: std::sync::Mutex<Option<server::Instance>>,
    tick: JoinHandle<()>,
}

impl MeshCoordinator {
    /// A coordinator on 127.0.0.1 with a free port.
    pub async fn start(config: CoordinatorConfig) -> Self {
        Self::start_on(Shared::new(config), "127.0.0.1:0").await
    }

    /// A coordinator on `addr` (the operator tool's `--listen`).
    pub async fn start_at(config: CoordinatorConfig, addr: &str) -> Self {
        Self::start_on(Shared::new(config), addr).await
    }

    /// A second endpoint over the same state (two nodes of one coordinator, for failover).
    pub async fn start_sharing(&self) -> Self {
        Self::start_on(self.shared.clone(), "127.0.0.1:0").await
    }

    async fn start_on(shared: Arc<Shared>, addr: &str) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let port = listener.local_addr().expect("local addr").port();
        let instance = server::serve(shared.clone(), listener);
        let tick = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(TICK).await;
                    let outs = shared.state.lock().unwrap().tick();
                    shared.emit(outs);
                }
            })
        };
        Self {
            shared,
            port,
            instance: std::sync::Mutex::new(Some(instance)),
            tick,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// kill -9: every connection fails at once and the port stops listening. State is kept.
    pub async fn kill(&self) {
        let instance = self.instance.lock().unwrap().take();
        if let Some(instance) = instance {
            instance.gate.kill();
            instance.task.abort();
            let _ = instance.task.await;
        }
    }

    /// Listens again on the same port, with the same state.
    pub async fn restart(&self) {
        self.kill().await;
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = Instant::now() + REBIND_FOR;
        let listener = loop {
            match TcpListener::bind(&addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        };
        *self.instance.lock().unwrap() = Some(server::serve(self.shared.clone(), listener));
    }

    /// SIGSTOP: connections (and new ones) hang until `thaw`.
    pub fn freeze(&self) {
        if let Some(i) = self.instance.lock().unwrap().as_ref() {
            i.gate.freeze();
        }
    }

    pub fn thaw(&self) {
        if let Some(i) = self.instance.lock().unwrap().as_ref() {
            i.gate.thaw();
        }
    }

    /// Reads (or changes) the state.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.shared.state.lock().unwrap());
        self.shared.notify();
        out
    }

    pub fn add_fault(&self, fault: Fault) {
        self.shared.faults.lock().unwrap().add(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Waits until `f` returns `Some`; panics with `what` after `timeout`.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&State) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = f(&self.shared.state.lock().unwrap()) {
                return v;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                if let Some(v) = f(&self.shared.state.lock().unwrap()) {
                    return v;
                }
                let summary = self.summary();
                panic!("coordinator: timed out after {timeout:?} waiting for {what}\n{summary}");
            }
        }
    }

    /// The `n`-th hello (1-based) once it arrived.
    pub async fn wait_hello(&self, n: usize, timeout: Duration) -> HelloParams {
        self.wait_until(&format!("hello #{n}"), timeout, |s| {
            s.hellos.get(n - 1).cloned()
        })
        .await
    }

    /// The gateway id of the first agent once it is live (welcomed).
    pub async fn wait_live_agent(&self, timeout: Duration) -> String {
        self.wait_until("a live agent", timeout, |s| {
            s.sessions
                .iter()
                .find(|(_, sess)| sess.welcomed)
                .map(|(g, _)| g.clone())
        })
        .await
    }

    pub fn dispatch(&self, gateway: &str, spec: JobSpec) -> String {
        let (job, outs) = self.shared.state.lock().unwrap().dispatch(gateway, spec);
        self.shared.notify();
        self.shared.emit(outs);
        job
    }

    pub fn redispatch(&self, job: &str) {
        let outs = self.shared.state.lock().unwrap().redispatch(job);
        self.shared.emit(outs);
    }

    pub fn new_lease(&self, job: &str) {
        let outs = self.shared.state.lock().unwrap().new_lease(job);
        self.shared.emit(outs);
    }

    pub fn job(&self, job: &str) -> JobRecord {
        self.shared
            .state
            .lock()
            .unwrap()
            .jobs
            .get(job)
            .cloned()
            .unwrap_or_else(|| panic!("no job {job}"))
    }

    /// Waits for the job's `finished` and returns the job.
    pub async fn wait_finished(&self, job: &str, timeout: Duration) -> JobRecord {
        self.wait_until(&format!("`finished` of {job}"), timeout, |s| {
            s.jobs.get(job).filter(|j| j.finished().is_some()).cloned()
        })
        .await
    }

    /// Waits for the job's `job.ack` and returns the job.
    pub async fn wait_ack(&self, job: &str, timeout: Duration) -> JobRecord {
        self.wait_until(&format!("`job.ack` of {job}"), timeout, |s| {
            s.jobs.get(job).filter(|j| j.ack.is_some()).cloned()
        })
        .await
    }

    pub fn cancel(&self, job: &str, reason: CancelReason, grace_ms: u64) {
        let outs = self
            .shared
            .state
            .lock()
            .unwrap()
            .cancel(job, reason, grace_ms);
        self.shared.emit(outs);
    }

    pub fn input(&self, job: &str, request_id: &str, kind: InputKind, reply: InputReply) {
        let outs = self
            .shared
            .state
            .lock()
            .unwrap()
            .input(job, request_id, kind, reply);
        self.shared.emit(outs);
    }

    /// Every connect is refused with `error` (or admitted normally again with `None`).
    pub fn reject_with(&self, error: Option<WireError>) {
        self.shared.state.lock().unwrap().forced_rejection = error;
    }

    pub fn rotate_token(&self, token: &str) {
        let outs = self.shared.state.lock().unwrap().rotate_token(token);
        self.shared.emit(outs);
    }

    pub fn drain(&self, reconnect_to: Option<String>, after_ms: Option<u64>) {
        let outs = self
            .shared
            .state
            .lock()
            .unwrap()
            .drain(reconnect_to, after_ms);
        self.shared.emit(outs);
    }

    /// The window granted in every ack from now on; `reack` tells the agent at once.
    pub fn set_window(&self, window: u32) {
        self.shared.state.lock().unwrap().config.window = window;
    }

    pub fn reack(&self, job: &str) {
        let outs = self.shared.state.lock().unwrap().reack(job);
        self.shared.emit(outs);
    }

    /// The recorder's audit of a job; panics on a broken invariant.
    pub fn audit(&self, job: &str) -> Audit {
        let record = self.job(job);
        audit(&record).unwrap_or_else(|e| panic!("{e}\n{}", self.summary()))
    }

    /// Protocol violations seen (payloads that did not decode); tests assert none.
    pub fn violations(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().violations.clone()
    }

    /// Dispatch → `job.ack` latencies, for benchmarks.
    pub fn dispatch_latencies(&self) -> Vec<Duration> {
        self.shared
            .state
            .lock()
            .unwrap()
            .jobs
            .values()
            .filter_map(|j| Some(j.acked_at?.duration_since(j.dispatched_at?)))
            .collect()
    }

    fn summary(&self) -> String {
        let s = self.shared.state.lock().unwrap();
        let mut text = format!(
            "connects: {} (rejected {}), hellos: {}, sessions: {:?}\n",
            s.connects.len(),
            s.connects.iter().filter(|c| c.rejected.is_some()).count(),
            s.hellos.len(),
            s.sessions
                .values()
                .map(|x| (&x.session_id, x.welcomed))
                .collect::<Vec<_>>()
        );
        let events: Vec<&str> = s.log.iter().map(|(e, _)| e.as_str()).collect();
        text.push_str(&format!(
            "inbound events: {events:?}\nviolations: {:?}\n",
            s.violations
        ));
        for j in s.jobs.values() {
            text.push_str(&format!(
                "job {} state {:?} acked {} ack {:?} types {:?}\n",
                j.job_id,
                j.state,
                j.acked_seq,
                j.ack.as_ref().map(|a| a.decision),
                j.event_types()
            ));
        }
        text
    }
}

impl Drop for MeshCoordinator {
    fn drop(&mut self) {
        self.tick.abort();
        if let Some(i) = self.instance.lock().unwrap().take() {
            i.gate.kill();
            i.task.abort();
        }
    }
}
