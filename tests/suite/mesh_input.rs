//! `job.input` answers a permission the running job asked for: the answer reaches the runner
//! through the queue (`applied`), the request shows as `resolved`, and a second answer for the
//! same request is `already_resolved`; an unknown request is `unknown`.

use std::time::Duration;

use mesh_protocol::{
    InputKind, InputReply, InputStatus, JobEvent, JobOutcome, OutputStream, PermissionDecision,
    PermissionReply, RequestPhase,
};

use crate::support::coordinator::agent::{fast_coordinator, spec, test_config, Agent};
use crate::support::coordinator::MeshCoordinator;
use crate::support::echo_runner::EchoRunner;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_answer_reaches_the_runner() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(EchoRunner::new(), 1)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;
    let job = coord.dispatch(&gateway, spec("echo", &agent.workspace_id, "permission"));
    let request = coord
        .wait_until("a permission request", WAIT, |s| {
            s.jobs[&job].applied.iter().find_map(|e| match &e.event {
                JobEvent::Permission(p) if p.phase == RequestPhase::Asked => Some(p.clone()),
                _ => None,
            })
        })
        .await;
    assert_eq!(request.tool, "bash");
    let once = InputReply::Permission(PermissionReply {
        decision: PermissionDecision::Once,
        message: None,
    });
    coord.input(
        &job,
        request.request_id.as_str(),
        InputKind::Permission,
        once.clone(),
    );
    let done = coord.wait_finished(&job, WAIT).await;
    // The coordinator handles each incoming message on its own task, so the reply to the input
    // can be recorded after the job's last event even though the agent sent it first.
    let first = coord
        .wait_until("the input result", WAIT, |s| {
            s.jobs[&job].input_results.first().cloned()
        })
        .await;
    assert_eq!(first.status, InputStatus::Applied);
    assert_eq!(done.output_text(OutputStream::Assistant), "allowed");
    assert!(done
        .applied
        .iter()
        .any(|e| matches!(&e.event, JobEvent::Permission(p) if p.phase == RequestPhase::Resolved)));
    assert_eq!(done.finished().unwrap().outcome, JobOutcome::Succeeded);

    coord.input(
        &job,
        request.request_id.as_str(),
        InputKind::Permission,
        once.clone(),
    );
    coord.input(&job, "per_nope", InputKind::Permission, once);
    let results = coord
        .wait_until("two more input results", WAIT, |s| {
            let r = &s.jobs[&job].input_results;
            (r.len() >= 3).then(|| r.clone())
        })
        .await;
    assert_eq!(results[1].status, InputStatus::AlreadyResolved);
    assert_eq!(results[2].status, InputStatus::UnknownRequest);
    coord.audit(&job);
    agent.stop().await;
}
