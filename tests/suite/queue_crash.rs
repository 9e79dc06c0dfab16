//! kill -9 at random moments: a real `kimaki start` (real Codex runner against the fake LLM) with
//! 200 queued jobs is killed 20 times while it works and while `kimaki send` adds more. Afterwards
//! every acknowledged job is present exactly once, queued jobs still run, and no job that had
//! started was run a second time.

use std::collections::HashMap;
use std::time::Duration;

use kimaki::core::{EnqueueMode, EventKind, JobId, JobQueue, JobState};
use kimaki::store::Store;
use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};

use crate::support::fake_llm::{FakeLlm, Route};
use crate::support::kimaki_bin::Kimaki;
use crate::support::queue_harness::new_job;

const JOBS: usize = 200;
const KILLS: usize = 20;
const SEED: u64 = 0x6b696d616b69;
/// Jobs the last, clean run must get through to show queued work survived every crash.
const FINAL_RUN_JOBS: usize = 20;

fn marker(i: usize) -> String {
    format!("crash-job-{i:04}")
}

/// Pauses this thread for `d`: the test's subject is "kill at a random moment", so this is the
/// moment, not a synchronisation.
fn pause(d: Duration) {
    let end = std::time::Instant::now() + d;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        std::thread::park_timeout(left);
    }
}

#[test]
fn kill_9_loses_no_acknowledged_job_and_reruns_none() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(FakeLlm::start());
    let (k, project) = Kimaki::new()
        .with_env("KIMAKI_MAX_CONCURRENT_JOBS", "4")
        .with_env("KIMAKI_SHUTDOWN_GRACE_SECS", "2")
        .with_fake_codex(&llm);

    // 200 jobs queued while kimaki is stopped (acknowledged = enqueue returned).
    let mut acked: HashMap<String, JobId> = HashMap::new();
    rt.block_on(async {
        let queue = JobQueue::new(Store::open(&k.path("store")).unwrap());
        for i in 0..JOBS {
            let prompt = format!("[[fake:text]] {}", marker(i));
            // One lane per job: a lane's later turns would resend earlier prompts as history,
            // and the re-run check below counts prompts reaching the model.
            let job = new_job(&format!("cli:crash-{i}"), "codex", &project, &prompt);
            let id = queue
                .enqueue(job, EnqueueMode::Queue)
                .await
                .unwrap()
                .record
                .job
                .id;
            acked.insert(marker(i), id);
        }
    });

    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let mut next = JOBS;
    for _round in 0..KILLS {
        let mut d = k.start(&[]);
        d.wait_ready();
        // More work arrives while it runs; only sends that returned success count as acknowledged.
        for _ in 0..2 {
            let m = marker(next);
            next += 1;
            let out = k.run(&[
                "send",
                "--project",
                project.to_str().unwrap(),
                "--prompt",
                &format!("[[fake:text]] {m}"),
                "--json",
            ]);
            if out.code() == 0 {
                let id = out.json()["job_id"].as_str().unwrap().to_owned();
                acked.insert(m, JobId::new(id));
            }
        }
        pause(Duration::from_millis(rng.random_range(50..900)));
        d.signal(Signal::SIGKILL);
        d.wait_exit(Duration::from_secs(20));
    }

    // A last, clean run: queued jobs still run; then a graceful stop.
    let mut d = k.start(&[]);
    d.wait_ready();
    let queued = || {
        k.run(&["status", "--json"]).json()["queue"]["queued"]
            .as_u64()
            .unwrap() as usize
    };
    let before = queued();
    assert!(before > 0, "jobs are still queued after the crashes");
    crate::support::poll::until(
        "queued jobs to run after the crashes",
        Duration::from_secs(90),
        || (queued() + FINAL_RUN_JOBS <= before).then_some(()),
    );
    d.signal(Signal::SIGTERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(60)).code(),
        Some(0),
        "{}",
        d.output()
    );

    // Check the store.
    rt.block_on(async {
        let queue = JobQueue::new(Store::open(&k.path("store")).unwrap());
        let mut started_count: HashMap<JobId, usize> = HashMap::new();
        for (m, id) in &acked {
            let record = queue
                .get(id)
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged job {m} ({id}) is missing"));
            assert!(record.job.prompt.contains(m.as_str()));
            assert!(
                !matches!(record.state, JobState::Leased | JobState::Running),
                "after a clean stop no job is left leased or running: {m} is {}",
                record.state
            );
            let events = queue.bus().job_events(id, 0).unwrap();
            let starts = events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Started { .. }))
                .count();
            let finishes = events.iter().filter(|e| e.kind.is_terminal()).count();
            // What survived each crash is a prefix of the job's stream, and recovery appended to
            // it: contiguous seqs, the terminal event last.
            let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
            let contiguous: Vec<u64> = (1..=seqs.len() as u64).collect();
            assert_eq!(seqs, contiguous, "{m}: event seqs have a gap or repeat");
            assert!(
                events.iter().rev().skip(1).all(|e| !e.kind.is_terminal()),
                "{m}: an event follows its terminal event"
            );
            assert!(starts <= 1, "{m} started {starts} times");
            assert!(finishes <= 1, "{m} finished {finishes} times");
            assert_eq!(
                record.state.is_terminal(),
                finishes == 1,
                "{m}: state {} vs {finishes} finish events",
                record.state
            );
            started_count.insert(id.clone(), starts);
        }
        // Exactly once: no acknowledged prompt was stored twice.
        let mut per_marker: HashMap<String, usize> = HashMap::new();
        for (_, record) in queue
            .store()
            .scan_all::<kimaki::core::JobRecord>(kimaki::store::Tree::Jobs)
            .unwrap()
        {
            if let Some(m) = record
                .job
                .prompt
                .split_whitespace()
                .find(|w| w.starts_with("crash-job-"))
            {
                *per_marker.entry(m.to_owned()).or_default() += 1;
            }
        }
        for m in acked.keys() {
            assert_eq!(
                per_marker.get(m),
                Some(&1),
                "{m} stored {:?} times",
                per_marker.get(m)
            );
        }
        let finished = acked
            .values()
            .filter(|id| queue.get(id).unwrap().unwrap().state == JobState::Succeeded)
            .count();
        let interrupted = acked
            .values()
            .filter(|id| queue.get(id).unwrap().unwrap().state == JobState::Interrupted)
            .count();
        assert!(
            interrupted > 0,
            "some kills hit running jobs (else this test proves little)"
        );
        assert!(
            finished >= FINAL_RUN_JOBS,
            "queued jobs ran after the crashes ({finished} succeeded)"
        );
    });

    // Never re-run: each job's prompt reached the model at most once.
    let mut asked: HashMap<String, usize> = HashMap::new();
    for r in llm.requests_to(Route::Responses) {
        let body = r.body.to_string();
        for m in acked.keys() {
            if body.contains(m.as_str()) {
                *asked.entry(m.clone()).or_default() += 1;
            }
        }
    }
    for (m, n) in &asked {
        assert!(
            *n <= 1,
            "{m} reached the model {n} times: a started job was re-run"
        );
    }
}
