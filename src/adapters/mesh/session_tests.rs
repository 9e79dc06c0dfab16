//! The supervisor against an in-memory link: the test plays the coordinator, accepting or
//! refusing each connect and reading what the agent sends.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mesh_protocol::{ConnectAuth, ErrorCode, WireError};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::super::link::{Inbound, LinkError, LinkFactory, MeshLink};
use super::super::{spawn_with_link, LinkState, MeshConfig, MeshDeps, MeshHandle};
use crate::core::{Health, JobQueue, RunnerSet, Workspaces};
use crate::store::Store;

const WAIT: Duration = Duration::from_secs(10);

/// One connect attempt as the test sees it.
struct Attempt {
    auth: ConnectAuth,
    verdict: oneshot::Sender<Result<(), LinkError>>,
    to_agent: mpsc::UnboundedSender<Inbound>,
    from_agent: mpsc::UnboundedReceiver<(String, Value)>,
}

struct MemLink {
    attempts: mpsc::UnboundedSender<Attempt>,
    rx: Option<mpsc::UnboundedReceiver<Inbound>>,
    tx: Option<mpsc::UnboundedSender<(String, Value)>>,
}

#[async_trait]
impl MeshLink for MemLink {
    async fn connect(
        &mut self,
        _endpoint: &str,
        auth: &ConnectAuth,
        timeout: Duration,
    ) -> Result<(), LinkError> {
        let (verdict, answer) = oneshot::channel();
        let (to_agent, rx) = mpsc::unbounded_channel();
        let (tx, from_agent) = mpsc::unbounded_channel();
        let _ = self.attempts.send(Attempt {
            auth: auth.clone(),
            verdict,
            to_agent,
            from_agent,
        });
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(Ok(()))) => {
                self.rx = Some(rx);
                self.tx = Some(tx);
                Ok(())
            }
            Ok(Ok(Err(e))) => Err(e),
            _ => Err(LinkError::Timeout(timeout)),
        }
    }

    async fn send(&self, event: &str, body: &Value) -> Result<(), LinkError> {
        let tx = self.tx.as_ref().ok_or(LinkError::NotConnected)?;
        tx.send((event.to_owned(), body.clone()))
            .map_err(|_| LinkError::Closed)
    }

    async fn recv(&mut self) -> Option<Inbound> {
        self.rx.as_mut()?.recv().await
    }

    async fn close(&mut self) {
        self.rx = None;
        self.tx = None;
    }
}

struct Harness {
    handle: MeshHandle,
    attempts: mpsc::UnboundedReceiver<Attempt>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(tweak: impl FnOnce(&mut MeshConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let queue = JobQueue::new(store.clone());
    let (tx, attempts) = mpsc::unbounded_channel();
    let links: Arc<dyn LinkFactory> = Arc::new(move || -> Box<dyn MeshLink> {
        Box::new(MemLink {
            attempts: tx.clone(),
            rx: None,
            tx: None,
        })
    });
    let mut config = MeshConfig::new(vec!["mem://coordinator".into()]);
    config.token = Some("gw_at_unit".into());
    config.backoff_initial = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(50);
    config.watchdog_grace = Duration::from_millis(50);
    tweak(&mut config);
    let shutdown = CancellationToken::new();
    let handle = spawn_with_link(
        config,
        MeshDeps {
            queue,
            workspaces: Workspaces::new(store.clone()),
            runners: Arc::new(RunnerSet::new()),
            health: Health::default(),
            store,
        },
        links,
        shutdown.clone(),
    );
    Harness {
        handle,
        attempts,
        shutdown,
        _dir: dir,
    }
}

impl Harness {
    async fn attempt(&mut self) -> Attempt {
        tokio::time::timeout(WAIT, self.attempts.recv())
            .await
            .expect("a connect attempt")
            .expect("the agent is running")
    }
}

fn welcome(hello: &Value, heartbeat_ms: u64) -> Inbound {
    Inbound::Event {
        name: "welcome".into(),
        body: json!({
            "msgId": "m1", "re": hello["msgId"], "protocol": 1, "features": ["resume"],
            "sessionId": "s1", "serverTime": "2026-01-05T10:00:00Z", "heartbeatMs": heartbeat_ms,
            "leaseTtlMs": 60000, "dispatchAckTimeoutMs": 10000, "orphanTimeoutMs": 600000,
            "limits": {"maxEventBytes": 65536, "maxInflightEvents": 256, "maxInflightBytes": 1048576},
            "resume": []
        }),
    }
}

/// Accepts an attempt and answers its hello; returns the live link's two ends.
async fn go_live(
    a: Attempt,
    heartbeat_ms: u64,
) -> (
    mpsc::UnboundedSender<Inbound>,
    mpsc::UnboundedReceiver<(String, Value)>,
) {
    let Attempt {
        verdict,
        to_agent,
        mut from_agent,
        ..
    } = a;
    verdict.send(Ok(())).unwrap();
    let (event, hello) = tokio::time::timeout(WAIT, from_agent.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event, "hello", "hello is the first emit after connect");
    to_agent.send(welcome(&hello, heartbeat_ms)).unwrap();
    (to_agent, from_agent)
}

#[tokio::test]
async fn every_attempt_commits_a_higher_epoch_and_a_silent_link_is_dropped() {
    let mut h = start(|_| {}).await;
    let first = h.attempt().await;
    assert_eq!(first.auth.conn_epoch, 1);
    assert_eq!(first.auth.token.expose(), "gw_at_unit");
    // Live, but the coordinator never says anything again: heartbeats go unanswered.
    let live = go_live(first, 20).await;
    h.handle
        .wait_for(WAIT, |s| s.state == LinkState::Connected)
        .await
        .expect("connected");
    let second = h.attempt().await;
    assert_eq!(second.auth.conn_epoch, 2);
    let status = h.handle.status();
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("heartbeat") || e.contains("nothing received")),
        "{status:?}"
    );
    drop(live);
    h.shutdown.cancel();
    drop(second);
    tokio::time::timeout(WAIT, h.handle.stopped())
        .await
        .unwrap();
}

#[tokio::test]
async fn refused_token_waits_for_the_auth_retry() {
    let mut h = start(|c| c.auth_retry = Duration::from_secs(3600)).await;
    let first = h.attempt().await;
    first
        .verdict
        .send(Err(LinkError::Rejected(WireError::new(
            ErrorCode::AuthInvalid,
            "revoked",
            false,
        ))))
        .unwrap();
    let status = h
        .handle
        .wait_for(WAIT, |s| s.state == LinkState::AuthFailed)
        .await
        .expect("auth_failed");
    assert!(status.last_error.unwrap().contains("AUTH_INVALID"));
    // No second attempt inside the hour (the supervisor is waiting, not spinning).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), h.attempts.recv())
            .await
            .is_err(),
        "retried before the auth retry period"
    );
    assert_eq!(h.handle.status().attempts, 1);
    h.shutdown.cancel();
    tokio::time::timeout(WAIT, h.handle.stopped())
        .await
        .unwrap();
}

#[tokio::test]
async fn stale_epoch_is_retried_at_once_past_the_current_one() {
    let mut h = start(|c| c.backoff_initial = Duration::from_secs(3600)).await;
    let first = h.attempt().await;
    let mut stale = WireError::new(ErrorCode::SessionStale, "old epoch", true);
    stale.details = json!({"currentEpoch": 41}).as_object().cloned();
    first.verdict.send(Err(LinkError::Rejected(stale))).unwrap();
    // Despite an hour-long backoff window, the retry comes at once with currentEpoch + 1.
    let second = h.attempt().await;
    assert_eq!(second.auth.conn_epoch, 42);
    h.shutdown.cancel();
    drop(second);
    tokio::time::timeout(WAIT, h.handle.stopped())
        .await
        .unwrap();
}
