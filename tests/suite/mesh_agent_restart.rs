//! kimaki restarts (crash) with two mesh jobs: one running, one accepted but not yet confirmed.
//! The running one is reported `finished(failed, reason: "agent_restart")` after the restart and
//! never relaunched; the accepted one was written ahead, so it survives, is resumed, confirmed
//! and runs — once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mesh_protocol::{JobOutcome, OutputStream};

use crate::support::coordinator::agent::{
    fast_coordinator, spec, test_config, Agent, ChattyRunner,
};
use crate::support::coordinator::{Direction, Fault, FaultAction, MeshCoordinator};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_job_is_reported_interrupted_and_held_job_survives() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let before = ChattyRunner::new();
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(before.clone(), 2)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;

    let running = coord.dispatch(
        &gateway,
        spec("chatty", &agent.workspace_id, "chatty:1000:10"),
    );
    coord
        .wait_until("output from the running job", WAIT, |s| {
            s.jobs[&running]
                .event_types()
                .iter()
                .any(|t| t == "output")
                .then_some(())
        })
        .await;
    // The second job's `started` is never confirmed before the crash.
    coord.add_fault(Fault::new(
        Direction::Outbound,
        "job.events.ack",
        FaultAction::Drop,
    ));
    let held = coord.dispatch(&gateway, spec("chatty", &agent.workspace_id, "chatty:3:5"));
    coord.wait_ack(&held, WAIT).await;
    let dir = agent.crash().await;
    coord.clear_faults();
    assert_eq!(
        before.runs.load(Ordering::SeqCst),
        1,
        "only the first job ran"
    );

    let after = ChattyRunner::new();
    let agent = Agent::start_in(
        dir,
        test_config(vec![coord.url()]),
        vec![(after.clone(), 2)],
    )
    .await;
    let hello = coord.wait_hello(2, WAIT).await;
    let claimed: Vec<&str> = hello
        .resume
        .jobs
        .iter()
        .map(|j| j.job_id.as_str())
        .collect();
    assert!(
        claimed.contains(&running.as_str()) && claimed.contains(&held.as_str()),
        "{claimed:?}"
    );

    let interrupted = coord.wait_finished(&running, WAIT).await;
    let finished = interrupted.finished().unwrap();
    assert_eq!(finished.outcome, JobOutcome::Failed);
    assert_eq!(finished.reason.as_deref(), Some("agent_restart"));
    coord.audit(&running);

    let resumed = coord.wait_finished(&held, WAIT).await;
    assert_eq!(resumed.finished().unwrap().outcome, JobOutcome::Succeeded);
    assert_eq!(
        resumed.output_text(OutputStream::Assistant),
        ChattyRunner::expected_text(3)
    );
    assert_eq!(coord.audit(&held).launches, 1);
    assert_eq!(
        after.runs.load(Ordering::SeqCst),
        1,
        "the interrupted job was relaunched"
    );
    agent.stop().await;
}
