//! A refused token is a clear error in local health (`auth_failed`, naming the code and the
//! setting to check) and a slow retry: even though `rust_socketio` reports the refused connect as
//! a successful one (B8), the agent neither busy-loops nor gives up, and it connects once the
//! coordinator accepts again. Also `SESSION_STALE` (epoch catch-up) and `RATE_LIMITED`.

use std::time::{Duration, Instant};

use kimaki::adapters::mesh::LinkState;
use mesh_protocol::{ErrorCode, WireError};

use crate::support::coordinator::agent::{fast_coordinator, test_config, Agent};
use crate::support::coordinator::MeshCoordinator;
use crate::support::echo_runner::EchoRunner;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_token_backs_off_and_reports() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    coord.reject_with(Some(WireError::new(
        ErrorCode::AuthInvalid,
        "token revoked",
        false,
    )));
    let mut config = test_config(vec![coord.url()]);
    config.auth_retry = Duration::from_secs(1);
    let agent = Agent::start(config, vec![(EchoRunner::new(), 1)]).await;

    let status = agent
        .wait_status("auth_failed", WAIT, |s| s.state == LinkState::AuthFailed)
        .await;
    let error = status.last_error.unwrap();
    assert!(
        error.contains("AUTH_INVALID") && error.contains("MESH_TOKEN"),
        "{error}"
    );
    let health = agent.health.get("mesh").unwrap();
    assert_eq!(
        health.state,
        "auth_failed",
        "{health:?} {:?}",
        agent.status()
    );
    assert!(health.detail.unwrap().contains("AUTH_INVALID"));

    // Over 3 s with a 1 s auth retry: a handful of attempts, not thousands.
    let start = Instant::now();
    let before = coord.with_state(|s| s.connects.len());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = coord.with_state(|s| s.connects.len()) - before;
    assert!(
        (1..=5).contains(&during),
        "{during} connects in {:?}",
        start.elapsed()
    );

    coord.reject_with(None);
    agent.wait_connected(WAIT).await;
    assert!(agent.status().last_error.is_none());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_epoch_catches_up_and_rate_limit_waits() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    // The coordinator has seen a far newer epoch (a zombie link of an earlier process).
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(EchoRunner::new(), 1)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;
    let dir = agent.stop().await;
    coord.with_state(|s| {
        s.highest_epoch.insert(gateway.clone(), 1_000);
    });
    let agent = Agent::start_in(
        dir,
        test_config(vec![coord.url()]),
        vec![(EchoRunner::new(), 1)],
    )
    .await;
    agent
        .wait_status("a second session", WAIT, |s| {
            s.sessions >= 1 && s.state == LinkState::Connected
        })
        .await;
    let epochs: Vec<(u64, Option<ErrorCode>)> = coord.with_state(|s| {
        s.connects
            .iter()
            .map(|c| (c.conn_epoch, c.rejected.clone()))
            .collect()
    });
    let stale = epochs
        .iter()
        .position(|(_, r)| *r == Some(ErrorCode::SessionStale))
        .expect("a stale connect");
    assert_eq!(epochs[stale + 1], (1_001, None), "{epochs:?}");

    // RATE_LIMITED with retryAfterMs: no attempt before it elapsed.
    let mut limited = WireError::new(ErrorCode::RateLimited, "slow down", true);
    limited.retry_after_ms = Some(1_500);
    coord.reject_with(Some(limited));
    coord.kill().await;
    coord.restart().await;
    let first = coord
        .wait_until("a rate-limited connect", WAIT, |s| {
            s.connects
                .iter()
                .rev()
                .find(|c| c.rejected == Some(ErrorCode::RateLimited))
                .map(|c| c.at)
        })
        .await;
    coord.reject_with(None);
    agent.wait_connected(WAIT).await;
    let next = coord.with_state(|s| s.connects.last().unwrap().at);
    assert!(
        next.duration_since(first) >= Duration::from_millis(1_400),
        "{:?}",
        next.duration_since(first)
    );
    agent.stop().await;
}
