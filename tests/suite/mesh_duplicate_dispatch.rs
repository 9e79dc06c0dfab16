//! A dispatch delivered twice under the same lease is answered `duplicate` (with the job's state
//! and last seq) and never runs twice; the same job under a new lease, once it ran, is a
//! `LEASE_CONFLICT`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mesh_protocol::{AckDecision, ErrorCode, JobState};

use crate::support::coordinator::agent::{fast_coordinator, spec, test_config, Agent};
use crate::support::coordinator::MeshCoordinator;
use crate::support::echo_runner::EchoRunner;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_dispatch_is_a_duplicate() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let echo = EchoRunner::new();
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(echo.clone(), 1)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;

    let job = coord.dispatch(&gateway, spec("echo", &agent.workspace_id, "once"));
    let done = coord.wait_finished(&job, WAIT).await;
    let last = done.applied.last().unwrap().seq;

    coord.redispatch(&job);
    let dup = coord
        .wait_until("a second job.ack", WAIT, |s| {
            s.jobs[&job].acks.get(1).cloned()
        })
        .await;
    assert_eq!(dup.decision, AckDecision::Duplicate);
    assert_eq!(dup.state, Some(JobState::Succeeded));
    assert_eq!(dup.last_seq, Some(last));

    coord.new_lease(&job);
    let conflict = coord
        .wait_until("the ack for the new lease", WAIT, |s| {
            s.jobs[&job].ack.clone()
        })
        .await;
    assert_eq!(conflict.decision, AckDecision::Rejected);
    assert_eq!(conflict.error.unwrap().code, ErrorCode::LeaseConflict);

    assert_eq!(echo.runs.load(Ordering::SeqCst), 1);
    coord.audit(&job);
    agent.stop().await;
}
