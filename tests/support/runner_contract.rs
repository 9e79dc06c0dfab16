//! What every runner must honour, checked on the events the queue recorded for one job.

use std::time::{Duration, Instant};

use kimaki::core::{CancelReason, EventKind, JobEvent, JobId, Outcome};

use super::queue_harness::{describe, QueueHarness};

/// Exactly one terminal event, last; sequence numbers 1..=n without gaps; `Started` before any
/// output; a failure carries a classified reason.
pub fn assert_event_contract(events: &[JobEvent]) {
    assert!(!events.is_empty(), "no events");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.seq,
            i as u64 + 1,
            "seq must be contiguous:\n{}",
            describe(events)
        );
    }
    let terminals = events.iter().filter(|e| e.kind.is_terminal()).count();
    assert_eq!(
        terminals,
        1,
        "exactly one terminal event:\n{}",
        describe(events)
    );
    assert!(
        events.last().unwrap().kind.is_terminal(),
        "terminal event must be last"
    );
    let first_output = events.iter().position(|e| {
        matches!(
            e.kind,
            EventKind::TextDelta { .. }
                | EventKind::TextPart { .. }
                | EventKind::ToolStarted { .. }
        )
    });
    if let Some(out) = first_output {
        let started = events
            .iter()
            .position(|e| matches!(e.kind, EventKind::Started { .. }))
            .expect("output without Started");
        assert!(
            started < out,
            "Started must precede output:\n{}",
            describe(events)
        );
    }
    if let EventKind::Finished {
        outcome: Outcome::Failed,
        error,
        reason,
        ..
    } = &events.last().unwrap().kind
    {
        let error = error
            .as_ref()
            .expect("a failure must carry a classified error");
        assert!(!error.message.is_empty());
        assert!(reason.as_deref().is_some_and(|r| !r.is_empty()));
    }
}

/// Cancels a running job and asserts it ends (as cancelled) within `bound`.
pub async fn assert_cancel_honoured(
    h: &QueueHarness,
    job: &JobId,
    bound: Duration,
) -> Vec<JobEvent> {
    let t0 = Instant::now();
    h.queue
        .cancel(job, CancelReason::User)
        .await
        .expect("cancel");
    let events = h.wait_finished(job, bound + Duration::from_secs(10)).await;
    let took = t0.elapsed();
    assert!(took <= bound, "cancel took {took:?} (bound {bound:?})");
    match &events.last().unwrap().kind {
        EventKind::Finished { outcome, .. } => {
            assert_eq!(*outcome, Outcome::Cancelled, "{}", describe(&events))
        }
        other => panic!("not finished: {other:?}"),
    }
    assert_event_contract(&events);
    events
}
