//! The shared queue with the in-process echo runner: FIFO per lane, lanes in parallel, session
//! continuity, interrupt keeps both prompts, cancel, failures, panics.

use std::sync::Arc;
use std::time::Duration;

use kimaki::core::{EnqueueMode, EventKind, Outcome, Runner};

use crate::support::echo_runner::EchoRunner;
use crate::support::queue_harness::{assistant_text, new_job, outcome, QueueHarness};
use crate::support::runner_contract::{assert_cancel_honoured, assert_event_contract};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_job_runs_and_its_text_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let echo = EchoRunner::new();
    let h = QueueHarness::start(
        &dir.path().join("store"),
        vec![(echo.clone() as Arc<dyn Runner>, 2)],
    )
    .await;
    let job = h
        .enqueue(new_job("cli:a", "echo", dir.path(), "hello"))
        .await;
    let events = h.wait_finished(&job, T).await;
    assert_event_contract(&events);
    assert_eq!(outcome(&events), Outcome::Succeeded);
    assert_eq!(assistant_text(&events), "echo: hello");
    assert!(matches!(events[0].kind, EventKind::Queued { position: 0 }));
    h.shutdown().await;
}

#[tokio::test]
async fn lanes_are_fifo_and_continue_the_same_session() {
    let dir = tempfile::tempdir().unwrap();
    let echo = EchoRunner::new();
    let h = QueueHarness::start(
        &dir.path().join("store"),
        vec![(echo.clone() as Arc<dyn Runner>, 4)],
    )
    .await;
    let a = h
        .enqueue(new_job("cli:a", "echo", dir.path(), "sleep:200 one"))
        .await;
    let b = h.enqueue(new_job("cli:a", "echo", dir.path(), "two")).await;
    let c = h
        .enqueue(new_job("cli:a", "echo", dir.path(), "three"))
        .await;
    for j in [&a, &b, &c] {
        assert_eq!(outcome(&h.wait_finished(j, T).await), Outcome::Succeeded);
    }
    let prompts = echo.prompts();
    assert_eq!(prompts, vec!["sleep:200 one", "two", "three"]);
    let sessions: Vec<Option<String>> = [&a, &b, &c]
        .iter()
        .map(|j| {
            h.events(j).iter().find_map(|e| match &e.kind {
                EventKind::Started {
                    runner_session_id, ..
                } => runner_session_id.clone(),
                _ => None,
            })
        })
        .collect();
    assert_eq!(
        sessions[0], sessions[1],
        "the second prompt continues the session"
    );
    assert_eq!(sessions[1], sessions[2]);
    h.shutdown().await;
}

#[tokio::test]
async fn lanes_run_in_parallel_up_to_the_runner_limit() {
    let dir = tempfile::tempdir().unwrap();
    let echo = EchoRunner::new();
    let h = QueueHarness::start(
        &dir.path().join("store"),
        vec![(echo.clone() as Arc<dyn Runner>, 2)],
    )
    .await;
    let jobs: Vec<_> = futures_util::future::join_all((0..3).map(|i| {
        h.enqueue(new_job(
            &format!("cli:{i}"),
            "echo",
            dir.path(),
            "sleep:5000",
        ))
    }))
    .await;
    // Two start; the third waits for a slot.
    for j in &jobs[..2] {
        h.wait_event(j, T, |k| matches!(k, EventKind::Started { .. }))
            .await;
    }
    assert_eq!(h.queue.active_jobs().len(), 2);
    assert_eq!(h.queue.queued_total(), 1);
    for j in &jobs {
        h.queue
            .cancel(j, kimaki::core::CancelReason::User)
            .await
            .unwrap();
    }
    for j in &jobs {
        assert_eq!(outcome(&h.wait_finished(j, T).await), Outcome::Cancelled);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn interrupt_stops_the_running_job_and_keeps_both_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let echo = EchoRunner::new();
    let h = QueueHarness::start(
        &dir.path().join("store"),
        vec![(echo.clone() as Arc<dyn Runner>, 2)],
    )
    .await;
    let first = h
        .enqueue(new_job(
            "discord:t1",
            "echo",
            dir.path(),
            "sleep:30000 first",
        ))
        .await;
    h.wait_event(&first, T, |k| matches!(k, EventKind::Started { .. }))
        .await;
    let queued = h
        .enqueue(new_job("discord:t1", "echo", dir.path(), "queued one"))
        .await;
    let second = h
        .enqueue_mode(
            new_job("discord:t1", "echo", dir.path(), "second"),
            EnqueueMode::Interrupt,
        )
        .await;
    let first_events = h.wait_finished(&first, T).await;
    assert_eq!(outcome(&first_events), Outcome::Interrupted);
    assert_event_contract(&first_events);
    assert_eq!(
        outcome(&h.wait_finished(&second, T).await),
        Outcome::Succeeded
    );
    assert_eq!(
        outcome(&h.wait_finished(&queued, T).await),
        Outcome::Succeeded
    );
    // The interrupting message ran next, ahead of the queued one; nothing was dropped.
    assert_eq!(
        echo.prompts(),
        vec!["sleep:30000 first", "second", "queued one"]
    );
    h.shutdown().await;
}

#[tokio::test]
async fn cancel_dequeues_a_waiting_job_and_stops_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let echo = EchoRunner::new();
    let h = QueueHarness::start(
        &dir.path().join("store"),
        vec![(echo.clone() as Arc<dyn Runner>, 1)],
    )
    .await;
    let running = h
        .enqueue(new_job("cli:a", "echo", dir.path(), "sleep:30000"))
        .await;
    h.wait_event(&running, T, |k| matches!(k, EventKind::Started { .. }))
        .await;
    let waiting = h
        .enqueue(new_job("cli:a", "echo", dir.path(), "never"))
        .await;
    assert_eq!(
        h.queue
            .cancel(&waiting, kimaki::core::CancelReason::User)
            .await
            .unwrap(),
        kimaki::core::CancelOutcome::Dequeued
    );
    let w = h.wait_finished(&waiting, T).await;
    assert_eq!(outcome(&w), Outcome::Cancelled);
    assert_event_contract(&w);
    assert_cancel_honoured(&h, &running, Duration::from_secs(2)).await;
    assert_eq!(
        echo.prompts(),
        vec!["sleep:30000"],
        "the dequeued job never ran"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn failures_and_panics_end_the_job_and_free_the_lane() {
    let dir = tempfile::tempdir().unwrap();
    let echo = EchoRunner::new();
    let h = QueueHarness::start(
        &dir.path().join("store"),
        vec![(echo.clone() as Arc<dyn Runner>, 1)],
    )
    .await;
    let failed = h
        .enqueue(new_job("cli:a", "echo", dir.path(), "fail"))
        .await;
    let panicked = h
        .enqueue(new_job("cli:a", "echo", dir.path(), "panic"))
        .await;
    let after = h
        .enqueue(new_job("cli:a", "echo", dir.path(), "still works"))
        .await;
    let f = h.wait_finished(&failed, T).await;
    assert_eq!(outcome(&f), Outcome::Failed);
    assert_event_contract(&f);
    let p = h.wait_finished(&panicked, T).await;
    assert_eq!(outcome(&p), Outcome::Failed);
    assert_event_contract(&p);
    assert_eq!(
        outcome(&h.wait_finished(&after, T).await),
        Outcome::Succeeded
    );
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_runner_and_missing_directory_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let echo = EchoRunner::new();
    let h = QueueHarness::start(
        &dir.path().join("store"),
        vec![(echo.clone() as Arc<dyn Runner>, 1)],
    )
    .await;
    let job = h.enqueue(new_job("cli:a", "nope", dir.path(), "hi")).await;
    let events = h.wait_finished(&job, T).await;
    assert_eq!(outcome(&events), Outcome::Failed);
    match &events.last().unwrap().kind {
        EventKind::Finished { reason, .. } => {
            assert!(
                reason
                    .as_deref()
                    .unwrap()
                    .contains("no runner named `nope`"),
                "{reason:?}"
            )
        }
        _ => unreachable!(),
    }
    let err = h
        .queue
        .enqueue(
            new_job("cli:a", "echo", &dir.path().join("missing"), "hi"),
            EnqueueMode::Queue,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_all_land_durably_and_in_lane_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let queue = kimaki::core::JobQueue::new(kimaki::store::Store::open(&store).unwrap());
    let mut tasks = Vec::new();
    for w in 0..16 {
        let queue = queue.clone();
        let ws = dir.path().to_owned();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..20 {
                let job = new_job(&format!("cli:{w}"), "echo", &ws, &format!("{w}-{i}"));
                ids.push(
                    queue
                        .enqueue(job, EnqueueMode::Queue)
                        .await
                        .unwrap()
                        .record
                        .job
                        .id,
                );
            }
            ids
        }));
    }
    let all = tokio::time::timeout(T, futures_util::future::join_all(tasks))
        .await
        .expect("enqueues finish");
    assert_eq!(queue.queued_total(), 16 * 20);
    for (w, ids) in all.into_iter().enumerate() {
        let ids = ids.unwrap();
        let lane: Vec<_> = queue
            .queued_in_lane(&kimaki::core::LaneId::new(format!("cli:{w}")))
            .unwrap()
            .into_iter()
            .map(|r| r.job.id)
            .collect();
        assert_eq!(lane, ids, "lane {w} keeps enqueue order");
    }
}

#[tokio::test]
async fn a_pending_permission_can_be_answered_after_a_restart() {
    use kimaki::core::events::PermissionDecision;
    use kimaki::core::{AnswerOutcome, Control};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let echo = EchoRunner::new();
    let quick_drain = kimaki::core::DispatchOptions {
        cancel_grace: Duration::from_secs(2),
        drain_grace: Duration::from_millis(100),
    };
    let h = QueueHarness::start_with(
        &store,
        vec![(echo.clone() as Arc<dyn Runner>, 1)],
        quick_drain,
    )
    .await;
    let job = h
        .enqueue(new_job("discord:t9", "echo", dir.path(), "permission"))
        .await;
    let asked = h
        .wait_event(&job, T, |k| {
            matches!(k, EventKind::PermissionRequested { .. })
        })
        .await;
    let EventKind::PermissionRequested { request_id, .. } = asked.kind else {
        unreachable!()
    };
    // kimaki stops while the question is open: the job ends interrupted, the request stays.
    h.shutdown().await;
    let h = QueueHarness::start(&store, vec![(echo.clone() as Arc<dyn Runner>, 1)]).await;
    assert_eq!(outcome(&h.events(&job)), Outcome::Interrupted);
    assert_eq!(h.queue.pending_interactions().unwrap().len(), 1);

    let answer = Control::Permission {
        request_id: request_id.clone(),
        decision: PermissionDecision::Always,
    };
    let AnswerOutcome::Continued(next) = h.queue.answer(answer.clone()).await.unwrap() else {
        panic!("the answer continues the session in a new job");
    };
    let events = h.wait_finished(&next, T).await;
    assert_eq!(outcome(&events), Outcome::Succeeded);
    let prompts = echo.prompts();
    let last = prompts.last().unwrap();
    assert!(
        last.contains("allowed it for the rest of the session"),
        "{last}"
    );
    assert_eq!(
        h.queue.get(&next).unwrap().unwrap().job.lane,
        kimaki::core::LaneId::new("discord:t9")
    );
    // A second click is idempotent.
    assert_eq!(
        h.queue.answer(answer).await.unwrap(),
        AnswerOutcome::AlreadyResolved
    );
    assert!(h.queue.pending_interactions().unwrap().is_empty());
    h.shutdown().await;
}

/// `notify_only`: the job is done at once without a runner, and its text reaches the lane's next
/// run as context (only that lane's, only once).
#[tokio::test]
async fn a_notification_runs_nothing_and_becomes_context_for_the_next_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let echo = EchoRunner::new();
    let h = QueueHarness::start(
        &dir.path().join("store"),
        vec![(echo.clone() as Arc<dyn Runner>, 2)],
    )
    .await;
    let mut note = new_job(
        "cli:a",
        "echo",
        dir.path(),
        "User cancelled subscription #4411",
    );
    note.notify_only = true;
    let note = h.enqueue(note).await;
    let events = h.wait_finished(&note, T).await;
    assert_event_contract(&events);
    assert_eq!(outcome(&events), Outcome::Succeeded);
    assert_eq!(
        events.len(),
        2,
        "queued and finished, nothing ran: {events:?}"
    );
    assert!(echo.prompts().is_empty());

    let other = h
        .enqueue(new_job("cli:b", "echo", dir.path(), "unrelated"))
        .await;
    h.wait_finished(&other, T).await;
    let next = h
        .enqueue(new_job("cli:a", "echo", dir.path(), "what happened?"))
        .await;
    h.wait_finished(&next, T).await;
    let again = h
        .enqueue(new_job("cli:a", "echo", dir.path(), "and now?"))
        .await;
    h.wait_finished(&again, T).await;
    let prompts = echo.prompts();
    assert_eq!(prompts[0], "unrelated");
    assert!(
        prompts[1].contains("<notification>\nUser cancelled subscription #4411\n</notification>")
            && prompts[1].ends_with("what happened?"),
        "{}",
        prompts[1]
    );
    assert_eq!(prompts[2], "and now?", "the note is given once");
    h.shutdown().await;
}
