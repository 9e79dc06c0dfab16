//! Two coordinator endpoints over one state (`MESH_ENDPOINTS`). The endpoint the agent is on
//! dies for good; the agent moves to the other one and the running job continues there, every
//! event exactly once. An endpoint that accepts sockets but never answers `hello` is skipped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kimaki::adapters::mesh::LinkState;
use mesh_protocol::{JobOutcome, OutputStream};

use crate::support::coordinator::agent::{
    fast_coordinator, spec, test_config, Agent, ChattyRunner,
};
use crate::support::coordinator::MeshCoordinator;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_fails_over_to_the_second_endpoint() {
    let a = MeshCoordinator::start(fast_coordinator()).await;
    let b = a.start_sharing().await;
    let chatty = ChattyRunner::new();
    let agent = Agent::start(
        test_config(vec![a.url(), b.url()]),
        vec![(chatty.clone(), 1)],
    )
    .await;
    let gateway = a.wait_live_agent(WAIT).await;
    let first = agent.wait_connected(WAIT).await.endpoint.unwrap();
    let (on, other) = if first == a.url() { (&a, &b) } else { (&b, &a) };

    let job = on.dispatch(
        &gateway,
        spec("chatty", &agent.workspace_id, "chatty:200:5"),
    );
    on.wait_until("some events applied", WAIT, |s| {
        (s.jobs[&job].acked_seq >= 5).then_some(())
    })
    .await;
    on.kill().await;
    let status = agent
        .wait_status("the other endpoint", WAIT, |s| {
            s.state == LinkState::Connected && s.endpoint.as_deref() == Some(other.url().as_str())
        })
        .await;
    assert!(status.sessions >= 2);

    let done = other.wait_finished(&job, WAIT).await;
    assert_eq!(done.finished().unwrap().outcome, JobOutcome::Succeeded);
    assert_eq!(
        done.output_text(OutputStream::Assistant),
        ChattyRunner::expected_text(200)
    );
    other.audit(&job);
    assert_eq!(chatty.runs.load(Ordering::SeqCst), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_that_never_welcomes_is_skipped() {
    let mute = MeshCoordinator::start(fast_coordinator()).await;
    mute.with_state(|s| s.silent = true);
    let good = MeshCoordinator::start(fast_coordinator()).await;
    let mut config = test_config(vec![mute.url(), good.url()]);
    config.welcome_timeout = Duration::from_millis(500);
    let agent = Agent::start(config, vec![(ChattyRunner::new(), 1)]).await;
    let status = agent.wait_connected(WAIT).await;
    assert_eq!(status.endpoint.as_deref(), Some(good.url().as_str()));
    agent.stop().await;
}
