//! A dispatch becomes a real job in the queue: `job.ack accepted`, then `started` (seq 1), and
//! only after the coordinator acknowledged it does the runner run; its events come back in seq
//! order, ending with one `finished`. The coordinator can time dispatch → accepted.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mesh_protocol::{AckDecision, JobEvent, JobOutcome, OutputStream};

use crate::support::coordinator::agent::{
    fast_coordinator, spec, test_config, Agent, ChattyRunner,
};
use crate::support::coordinator::{Direction, Fault, FaultAction, MeshCoordinator};
use crate::support::echo_runner::EchoRunner;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatched_prompt_runs_once_and_streams_back_in_order() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let echo = EchoRunner::new();
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(echo.clone(), 2)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;

    let job = coord.dispatch(
        &gateway,
        spec("echo", &agent.workspace_id, "rename parse_config"),
    );
    let done = coord.wait_finished(&job, WAIT).await;

    let ack = done.ack.clone().expect("acked");
    assert_eq!(ack.decision, AckDecision::Accepted);
    let types = done.event_types();
    assert_eq!(types.first().map(String::as_str), Some("started"));
    assert_eq!(types.last().map(String::as_str), Some("finished"));
    assert!(types.iter().any(|t| t == "status"), "{types:?}");
    let JobEvent::Started(started) = &done.applied[0].event else {
        unreachable!()
    };
    assert_eq!(started.runner.as_str(), "x-echo");
    assert_eq!(started.runner_version, "1");
    assert_eq!(
        done.output_text(OutputStream::Assistant),
        "echo: rename parse_config"
    );
    let finished = done.finished().unwrap();
    assert_eq!(finished.outcome, JobOutcome::Succeeded);
    assert_eq!(
        finished.summary.as_deref(),
        Some("echo: rename parse_config")
    );
    assert_eq!(echo.runs.load(Ordering::SeqCst), 1);
    let audit = coord.audit(&job);
    assert_eq!(audit.launches, 1);
    assert!(coord.violations().is_empty(), "{:?}", coord.violations());

    // The core job mirrors it: same id, source mesh, its own lane.
    let record = agent
        .queue
        .get(&kimaki::core::JobId::new(job.clone()))
        .unwrap()
        .unwrap();
    assert_eq!(record.job.source, kimaki::core::JobSource::Mesh);
    assert_eq!(record.job.lane.as_str(), format!("mesh:{job}"));
    assert_eq!(record.job.reply_to.as_ref().unwrap().adapter, "mesh");
    assert_eq!(coord.dispatch_latencies().len(), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_waits_for_the_coordinator_to_confirm_started() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let chatty = ChattyRunner::new();
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(chatty.clone(), 1)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;

    // Every ack is lost for a while: `started` is never confirmed, so nothing may run.
    coord.add_fault(Fault::new(Direction::Outbound, "job.events.ack", FaultAction::Drop).times(3));
    let job = coord.dispatch(&gateway, spec("chatty", &agent.workspace_id, "chatty:5:5"));
    coord.wait_ack(&job, WAIT).await;
    coord
        .wait_until("`started` redelivered after lost acks", WAIT, |s| {
            s.jobs[&job]
                .received
                .iter()
                .filter(|seq| **seq == 1)
                .count()
                .ge(&2)
                .then_some(())
        })
        .await;
    let record = agent
        .queue
        .get(&kimaki::core::JobId::new(job.clone()))
        .unwrap()
        .unwrap();
    assert!(
        record.held,
        "released before the coordinator confirmed `started`"
    );
    assert_eq!(chatty.runs.load(Ordering::SeqCst), 0);

    // The fourth copy's ack gets through: the job runs, once.
    let done = coord.wait_finished(&job, WAIT).await;
    assert_eq!(done.finished().unwrap().outcome, JobOutcome::Succeeded);
    assert_eq!(
        done.output_text(OutputStream::Assistant),
        ChattyRunner::expected_text(5)
    );
    assert_eq!(chatty.runs.load(Ordering::SeqCst), 1);
    assert!(coord.audit(&job).duplicates >= 1);
    agent.stop().await;
}
