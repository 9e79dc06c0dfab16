//! Dispatches the agent cannot honour are refused with the matching code and never reach the
//! queue: an unknown workspace, a path that leaves the workspace, a runner the agent does not
//! have, and more jobs than its capacity.

use std::time::Duration;

use mesh_protocol::{AckDecision, ErrorCode, RunnerKind};

use crate::support::coordinator::agent::{
    fast_coordinator, spec, test_config, Agent, ChattyRunner,
};
use crate::support::coordinator::MeshCoordinator;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_carries_its_code() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let mut config = test_config(vec![coord.url()]);
    config.max_concurrent_jobs = 1;
    let agent = Agent::start(config, vec![(ChattyRunner::new(), 1)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;
    let ws = agent.workspace_id.clone();

    let reject = |job: &str| {
        let job = job.to_owned();
        let coord = &coord;
        async move {
            let record = coord.wait_ack(&job, WAIT).await;
            let ack = record.ack.unwrap();
            assert_eq!(ack.decision, AckDecision::Rejected, "{ack:?}");
            let error = ack.error.expect("a rejection says why");
            assert!(!error.message.is_empty());
            error
        }
    };

    let unknown_ws = coord.dispatch(&gateway, spec("chatty", "ws_nope", "hi"));
    assert_eq!(reject(&unknown_ws).await.code, ErrorCode::WorkspaceUnknown);

    let mut escape = spec("chatty", &ws, "hi");
    escape.args = Some(
        serde_json::json!({"cwd": "../../etc"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let escape = coord.dispatch(&gateway, escape);
    let error = reject(&escape).await;
    assert_eq!(error.code, ErrorCode::BadRequest);
    assert_eq!(
        error.detail("path").and_then(|p| p.as_str()),
        Some("spec.args.cwd")
    );

    let absolute = {
        let mut s = spec("chatty", &ws, "hi");
        s.args = Some(
            serde_json::json!({"cwd": "/etc"})
                .as_object()
                .unwrap()
                .clone(),
        );
        coord.dispatch(&gateway, s)
    };
    assert_eq!(reject(&absolute).await.code, ErrorCode::BadRequest);

    let missing = coord.dispatch(&gateway, spec("opencode", &ws, "hi"));
    assert_eq!(reject(&missing).await.code, ErrorCode::RunnerUnavailable);
    let mut foreign = spec("chatty", &ws, "hi");
    foreign.runner = RunnerKind::Other("gemini".into());
    let foreign = coord.dispatch(&gateway, foreign);
    assert_eq!(reject(&foreign).await.code, ErrorCode::RunnerUnavailable);

    // Capacity 1: a long job takes the slot, the next dispatch is refused (retryable).
    let long = coord.dispatch(&gateway, spec("chatty", &ws, "chatty:200:20"));
    coord
        .wait_until("the long job running", WAIT, |s| {
            (s.jobs[&long].acked_seq >= 2).then_some(())
        })
        .await;
    let over = coord.dispatch(&gateway, spec("chatty", &ws, "hi"));
    let error = reject(&over).await;
    assert_eq!(error.code, ErrorCode::CapacityExceeded);
    assert!(error.retryable);

    // None of the refused jobs exists on the agent.
    for job in [&unknown_ws, &escape, &absolute, &missing, &foreign, &over] {
        let record = agent
            .queue
            .get(&kimaki::core::JobId::new(job.as_str()))
            .unwrap();
        assert!(record.is_none(), "{job} reached the queue");
    }
    assert!(coord.violations().is_empty(), "{:?}", coord.violations());
    coord.cancel(&long, mesh_protocol::CancelReason::User, 1_000);
    coord.wait_finished(&long, WAIT).await;
    agent.stop().await;
}
