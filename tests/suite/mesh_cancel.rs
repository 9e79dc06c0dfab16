//! `job.cancel`: a running job answers `cancelling`, emits `cancelling`, is stopped by the queue
//! and ends `finished(cancelled, reason)`; a job cancelled before its `started` was confirmed
//! never runs. A cancel for a finished job is `already_finished`; an unknown one `unknown`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mesh_protocol::{CancelReason, CancelStatus, JobOutcome};

use crate::support::coordinator::agent::{
    fast_coordinator, spec, test_config, Agent, ChattyRunner,
};
use crate::support::coordinator::{Direction, Fault, FaultAction, MeshCoordinator};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_running_and_not_yet_launched_jobs() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let chatty = ChattyRunner::new();
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(chatty.clone(), 2)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;

    // Running: output is flowing when the cancel arrives.
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
    coord.cancel(&running, CancelReason::User, 1_000);
    let done = coord.wait_finished(&running, WAIT).await;
    assert_eq!(done.cancel_results[0].status, CancelStatus::Cancelling);
    let types = done.event_types();
    let cancelling = types
        .iter()
        .position(|t| t == "cancelling")
        .expect("cancelling event");
    assert_eq!(cancelling, types.len() - 2, "{types:?}");
    let finished = done.finished().unwrap();
    assert_eq!(finished.outcome, JobOutcome::Cancelled);
    assert_eq!(finished.reason.as_deref(), Some("user"));
    coord.audit(&running);

    // Again: already finished.
    coord.cancel(&running, CancelReason::User, 1_000);
    let again = coord
        .wait_until("a second cancel result", WAIT, |s| {
            s.jobs[&running].cancel_results.get(1).cloned()
        })
        .await;
    assert_eq!(again.status, CancelStatus::AlreadyFinished);

    // Not launched yet: its `started` is never confirmed before the cancel.
    // (Every ack is lost meanwhile, so no resend can get `started` confirmed first.)
    coord.add_fault(Fault::new(
        Direction::Outbound,
        "job.events.ack",
        FaultAction::Drop,
    ));
    let held = coord.dispatch(&gateway, spec("chatty", &agent.workspace_id, "chatty:5:5"));
    coord.wait_ack(&held, WAIT).await;
    coord.cancel(&held, CancelReason::Timeout, 1_000);
    let done = coord.wait_finished(&held, WAIT).await;
    assert_eq!(
        done.event_types(),
        vec!["started", "cancelling", "finished"]
    );
    let finished = done.finished().unwrap();
    assert_eq!(finished.outcome, JobOutcome::Cancelled);
    assert_eq!(finished.reason.as_deref(), Some("timeout"));
    assert_eq!(coord.audit(&held).launches, 0);
    assert_eq!(
        chatty.runs.load(Ordering::SeqCst),
        1,
        "the held job never ran"
    );
    coord.clear_faults();
    agent.stop().await;
}
