//! The coordinator is killed (every connection reset, the port closed) and restarted on the same
//! port 20 times while a job streams. The agent reconnects each time, resumes from the
//! coordinator's `ackedSeq`, and every event arrives exactly once and in order; the job ran once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mesh_protocol::{JobOutcome, OutputStream};

use crate::support::coordinator::agent::{
    fast_coordinator, spec, test_config, Agent, ChattyRunner,
};
use crate::support::coordinator::{Direction, Fault, FaultAction, MeshCoordinator};

const WAIT: Duration = Duration::from_secs(30);
const RESTARTS: usize = 20;
const CHUNKS: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_coordinator_restarts_lose_and_duplicate_nothing() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    // The coordinator's handlers run concurrently; make reordering certain, not just likely.
    coord.add_fault(Fault::new(Direction::Inbound, "job.event", FaultAction::Reorder).every(7));
    let chatty = ChattyRunner::new();
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(chatty.clone(), 1)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;
    let job = coord.dispatch(
        &gateway,
        spec(
            "chatty",
            &agent.workspace_id,
            &format!("chatty:{CHUNKS}:10"),
        ),
    );

    let mut last_acked = 0;
    for round in 0..RESTARTS {
        // Let some events through on the current link, then kill it mid-stream.
        let target = last_acked + 3;
        last_acked = coord
            .wait_until(&format!("progress before kill #{round}"), WAIT, |s| {
                let acked = s.jobs[&job].acked_seq;
                (acked >= target || s.jobs[&job].finished().is_some()).then_some(acked)
            })
            .await;
        let sessions = agent.status().sessions;
        coord.kill().await;
        coord.restart().await;
        agent
            .wait_status("a new session", WAIT, |s| s.sessions > sessions)
            .await;
    }

    let done = coord.wait_finished(&job, WAIT).await;
    let audit = coord.audit(&job);
    assert_eq!(done.finished().unwrap().outcome, JobOutcome::Succeeded);
    assert_eq!(
        done.output_text(OutputStream::Assistant),
        ChattyRunner::expected_text(CHUNKS),
        "output lost or duplicated"
    );
    assert_eq!(audit.launches, 1);
    assert_eq!(chatty.runs.load(Ordering::SeqCst), 1, "the job ran twice");
    let hellos = coord.with_state(|s| s.hellos.len());
    assert!(hellos > RESTARTS, "{hellos} hellos for {RESTARTS} restarts");
    assert!(coord.violations().is_empty(), "{:?}", coord.violations());
    eprintln!(
        "{} events, {} duplicates received and dropped by seq, {hellos} sessions",
        audit.events, audit.duplicates
    );
    agent.stop().await;
}
