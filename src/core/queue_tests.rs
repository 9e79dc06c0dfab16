use std::path::Path;

use super::*;
use crate::core::events::TextStream;
use crate::core::{PermissionPolicy, RunnerId};

fn new_job(workspace: &Path) -> NewJob {
    NewJob {
        id: None,
        lane: LaneId::new("cli:crash"),
        source: JobSource::Cli,
        workspace: workspace.to_owned(),
        runner: RunnerId::new("echo"),
        prompt: "hello".into(),
        attachments: Vec::new(),
        model: None,
        agent: None,
        permission_policy: PermissionPolicy::Ask,
        timeout_ms: None,
        reply_to: None,
        meta: Default::default(),
        held: false,
        voice: None,
        notify_only: false,
    }
}

fn text(job: &JobRecord, seq: u64, delta: &str) -> JobEvent {
    JobEvent {
        job_id: job.job.id.clone(),
        lane: job.job.lane.clone(),
        seq,
        at: now_ms(),
        kind: EventKind::TextDelta {
            part_id: "p1".into(),
            stream: TextStream::Assistant,
            delta: delta.into(),
        },
    }
}

/// A job that was running when kimaki died: its runner's events went on past the seq in its
/// record. Recovery must finish it after the last of them, so its events stay contiguous and
/// `Finished` stays last (and nothing the runner said is overwritten in the per-job index).
#[tokio::test]
async fn a_job_running_at_a_crash_finishes_after_its_last_stored_event() {
    let dir = tempfile::tempdir().unwrap();
    // One store throughout: the "crash" is a queue that never finished its work, and a
    // fresh queue that recovers (reopening sled right away can find its lock still held).
    let store = Store::open(&dir.path().join("store")).unwrap();
    let id = {
        let queue = JobQueue::new(store.clone());
        let mut record = queue
            .enqueue(new_job(dir.path()), EnqueueMode::Queue)
            .await
            .unwrap()
            .record;
        record.state = JobState::Running;
        let mut batch = Batch::new();
        batch
            .put(Tree::Jobs, record.job.id.as_str(), &record)
            .unwrap();
        queue.store().apply(batch).unwrap();
        for seq in 2..=4 {
            queue
                .bus()
                .publish(text(&record, seq, &format!("part {seq}")), Batch::new())
                .unwrap();
        }
        queue.store().flush().await.unwrap();
        record.job.id
    };
    let queue = JobQueue::new(store);
    let report = queue.recover().await.unwrap();
    assert_eq!(report.interrupted, vec![id.clone()]);
    let events = queue.bus().job_events(&id, 0).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert!(matches!(
        events[1].kind,
        EventKind::TextDelta { ref delta, .. } if delta == "part 2"
    ));
    assert!(matches!(
        events[4].kind,
        EventKind::Finished {
            outcome: Outcome::Interrupted,
            ..
        }
    ));
    assert_eq!(queue.get(&id).unwrap().unwrap().last_seq, 5);
}

/// Runner events are written log-first, index-second, outside an atomic batch; a crash between
/// the two leaves the newest event unindexed. Recovery restores the index entry.
#[tokio::test]
async fn an_event_whose_index_entry_was_cut_off_is_reindexed_at_recovery() {
    let dir = tempfile::tempdir().unwrap();
    // One store throughout: the "crash" is a queue that never finished its work, and a
    // fresh queue that recovers (reopening sled right away can find its lock still held).
    let store = Store::open(&dir.path().join("store")).unwrap();
    let (id, cursor) = {
        let queue = JobQueue::new(store.clone());
        let record = queue
            .enqueue(new_job(dir.path()), EnqueueMode::Queue)
            .await
            .unwrap()
            .record;
        let stored = queue
            .bus()
            .publish(text(&record, 2, "cut"), Batch::new())
            .unwrap();
        // The crash: the log entry made it to disk, its index entry did not.
        let mut batch = Batch::new();
        batch.delete(
            Tree::Events,
            store::key2(record.job.id.as_str(), &store::be(2u64)),
        );
        queue.store().apply(batch).unwrap();
        queue.store().flush().await.unwrap();
        assert_eq!(queue.bus().job_events(&record.job.id, 0).unwrap().len(), 1);
        (record.job.id, stored.cursor)
    };
    let queue = JobQueue::new(store);
    queue.recover().await.unwrap();
    let events = queue.bus().job_events(&id, 0).unwrap();
    assert_eq!(events.len(), 2);
    assert!(matches!(events[1].kind, EventKind::TextDelta { ref delta, .. } if delta == "cut"));
    assert_eq!(queue.bus().last_seq(&id).unwrap(), 2);
    // The event log itself (what sinks resume from) was never missing it.
    let mut sub = queue.bus().subscribe(cursor - 1);
    assert_eq!(sub.next().await.unwrap().cursor, cursor);
}

/// An enqueue is written in order (lane, job, event, lane place) and a crash can keep only a
/// prefix; one that kept the job record is completed at recovery, so the job runs and sinks see
/// it queued.
#[tokio::test]
async fn an_enqueue_cut_off_after_its_job_record_is_completed_at_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let queue = JobQueue::new(store.clone());
    let record = queue
        .enqueue(new_job(dir.path()), EnqueueMode::Queue)
        .await
        .unwrap()
        .record;
    let id = record.job.id.clone();
    // The crash: only the lane and job records made it.
    let mut batch = Batch::new();
    batch.delete(
        Tree::LaneQueue,
        lane_queue_key(&record.job.lane, false, record.order),
    );
    for (key, _) in store.scan_raw_prefix(Tree::Events, []).unwrap() {
        batch.delete(Tree::Events, key);
    }
    for (key, _) in store.scan_raw_prefix(Tree::EventLog, []).unwrap() {
        batch.delete(Tree::EventLog, key);
    }
    store.apply(batch).unwrap();
    let waiting = |q: &JobQueue| -> Vec<JobId> {
        q.queued_in_lane(&record.job.lane)
            .unwrap()
            .into_iter()
            .map(|r| r.job.id)
            .collect()
    };
    assert_eq!(waiting(&queue), Vec::<JobId>::new());

    let queue = JobQueue::new(store);
    assert_eq!(queue.recover().await.unwrap().queued, 1);
    assert_eq!(waiting(&queue), vec![id.clone()]);
    let events = queue.bus().job_events(&id, 0).unwrap();
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0].kind, EventKind::Queued { position: 0 }));
}
