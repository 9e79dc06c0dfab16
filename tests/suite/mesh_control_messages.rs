//! Link control from the coordinator: `drain` (bye, then the named endpoint), `auth.rotate`
//! (committed, confirmed, used from the next connect), and a closed window (`window: 0`) that
//! pauses a job's stream while output coalesces, until the window reopens.

use std::time::Duration;

use kimaki::adapters::mesh::LinkState;
use mesh_protocol::{ByeReason, JobEvent, JobOutcome, OutputStream};

use crate::support::coordinator::agent::{
    fast_coordinator, spec, test_config, Agent, ChattyRunner,
};
use crate::support::coordinator::MeshCoordinator;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_moves_the_agent_and_rotation_changes_its_token() {
    let a = MeshCoordinator::start(fast_coordinator()).await;
    let b = a.start_sharing().await;
    let agent = Agent::start(
        test_config(vec![a.url(), b.url()]),
        vec![(ChattyRunner::new(), 1)],
    )
    .await;
    let on = agent.wait_connected(WAIT).await.endpoint.unwrap();
    let (from, to) = if on == a.url() { (&a, &b) } else { (&b, &a) };

    from.drain(Some(to.url()), Some(100));
    agent
        .wait_status("the drain target", WAIT, |s| {
            s.state == LinkState::Connected && s.endpoint.as_deref() == Some(to.url().as_str())
        })
        .await;
    assert!(a.with_state(|s| s.byes.iter().any(|b| b.reason == ByeReason::Drain)));

    to.rotate_token("gw_at_rotated");
    to.wait_until("auth.rotate.ok", WAIT, |s| {
        (!s.rotate_oks.is_empty()).then_some(())
    })
    .await;
    // Only the new token is valid from now on; the next connect must use it.
    to.with_state(|s| s.config.tokens = vec!["gw_at_rotated".into()]);
    let sessions = agent.status().sessions;
    to.kill().await;
    to.restart().await;
    agent
        .wait_status("a session with the new token", WAIT, |s| {
            s.sessions > sessions && s.state == LinkState::Connected
        })
        .await;
    let last = to.with_state(|s| {
        s.connects
            .iter()
            .rev()
            .find(|c| c.rejected.is_none())
            .cloned()
            .unwrap()
    });
    assert_eq!(last.token, "gw_at_rotated");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_window_pauses_and_coalesces() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let agent = Agent::start(
        test_config(vec![coord.url()]),
        vec![(ChattyRunner::new(), 1)],
    )
    .await;
    let gateway = coord.wait_live_agent(WAIT).await;
    coord.set_window(0);
    let job = coord.dispatch(&gateway, spec("chatty", &agent.workspace_id, "chatty:50:2"));
    // The job runs to its end locally while nothing past `started` may be sent.
    let id = kimaki::core::JobId::new(job.clone());
    let mut sub = agent.queue.bus().subscribe(0);
    tokio::time::timeout(WAIT, async {
        while let Some(ev) = sub.next().await {
            if ev.event.job_id == id && ev.event.kind.is_terminal() {
                return;
            }
        }
    })
    .await
    .expect("the job finishes locally");
    assert_eq!(
        coord.job(&job).received.iter().max(),
        Some(&1),
        "sent past a closed window"
    );

    coord.set_window(256);
    coord.reack(&job);
    let done = coord.wait_finished(&job, WAIT).await;
    assert_eq!(done.finished().unwrap().outcome, JobOutcome::Succeeded);
    assert_eq!(
        done.output_text(OutputStream::Assistant),
        ChattyRunner::expected_text(50)
    );
    let outputs = done
        .applied
        .iter()
        .filter(|e| matches!(e.event, JobEvent::Output(_)))
        .count();
    assert!(
        outputs < 50,
        "{outputs} output events: nothing was coalesced"
    );
    coord.audit(&job);
    agent.stop().await;
}
