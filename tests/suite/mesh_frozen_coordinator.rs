//! A frozen coordinator (every read and write hangs, like SIGSTOP): the agent notices the silence
//! (watchdog, engine pings), its connect attempts time out instead of hanging (B9), and once the
//! coordinator thaws it reconnects and a job still runs.

use std::time::Duration;

use kimaki::adapters::mesh::LinkState;
use mesh_protocol::JobOutcome;

use crate::support::coordinator::agent::{fast_coordinator, spec, test_config, Agent};
use crate::support::coordinator::MeshCoordinator;
use crate::support::echo_runner::EchoRunner;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_peer_is_detected_and_left_until_it_thaws() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let mut config = test_config(vec![coord.url()]);
    config.connect_timeout = Duration::from_millis(500);
    config.welcome_timeout = Duration::from_millis(500);
    let agent = Agent::start(config, vec![(EchoRunner::new(), 1)]).await;
    let live = agent.wait_connected(WAIT).await;

    coord.freeze();
    let down = agent
        .wait_status("the frozen link dropped", WAIT, |s| {
            s.state != LinkState::Connected
        })
        .await;
    // Attempts against the frozen peer time out and are retried, never hang.
    agent
        .wait_status("two timed-out attempts", WAIT, |s| {
            s.attempts >= down.attempts + 2
        })
        .await;
    assert_eq!(agent.status().sessions, live.sessions);

    coord.thaw();
    let back = agent
        .wait_status("a new session", WAIT, |s| {
            s.state == LinkState::Connected && s.sessions > live.sessions
        })
        .await;
    assert!(back.attempts > live.attempts);
    let gateway = coord.wait_live_agent(WAIT).await;
    let job = coord.dispatch(
        &gateway,
        spec("echo", &agent.workspace_id, "after the freeze"),
    );
    let done = coord.wait_finished(&job, WAIT).await;
    assert_eq!(done.finished().unwrap().outcome, JobOutcome::Succeeded);
    agent.stop().await;
}
