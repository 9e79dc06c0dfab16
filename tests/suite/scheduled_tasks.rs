//! Scheduled tasks fire once per due time through the shared queue, on a timer (paused tokio
//! time here), including across a restart between due times; and the CLI creates, lists and
//! deletes them.

use std::sync::Arc;
use std::time::Duration;

use kimaki::adapters::scheduler::{Clock, Scheduler};
use kimaki::core::tasks::{parse_when, Schedule, TaskZone, Tasks};
use kimaki::core::{JobQueue, JobRecord};
use kimaki::store::{Store, Tree};
use tokio_util::sync::CancellationToken;

use crate::support::kimaki_bin::Kimaki;
use crate::support::queue_harness::new_job;

/// Wall time that moves with tokio's (paused) clock.
struct PausedClock {
    base_ms: i64,
    start: tokio::time::Instant,
}

impl Clock for PausedClock {
    fn now_ms(&self) -> i64 {
        self.base_ms + self.start.elapsed().as_millis() as i64
    }
}

const BASE_MS: i64 = 1_893_456_000_000; // 2030-01-01T00:00:00Z

fn jobs_of(store: &Store, task_id: &str) -> Vec<JobRecord> {
    store
        .scan_all::<JobRecord>(Tree::Jobs)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.job.meta.get("task_id").and_then(|v| v.as_str()) == Some(task_id))
        .collect()
}

struct Running {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
    passes: tokio::sync::watch::Receiver<u64>,
}

impl Running {
    fn start(tasks: &Tasks, queue: &JobQueue, clock: Arc<dyn Clock>) -> Self {
        let stop = CancellationToken::new();
        let s = Scheduler::new(tasks.clone(), queue.clone(), clock);
        let passes = s.passes();
        Self {
            stop: stop.clone(),
            handle: tokio::spawn(s.run(stop)),
            passes,
        }
    }

    /// Waits for the scheduler to finish a pass. Holds no timer while it waits, so paused time
    /// cannot jump ahead while the scheduler's store writes run on the blocking pool.
    async fn settled(&mut self) {
        self.passes.changed().await.unwrap();
    }

    async fn stop(self) {
        self.stop.cancel();
        self.handle.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn one_shot_and_cron_fire_once_per_due_time_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let queue = JobQueue::new(store.clone());
    let tasks = Tasks::new(store.clone());
    let clock: Arc<dyn Clock> = Arc::new(PausedClock {
        base_ms: BASE_MS,
        start: tokio::time::Instant::now(),
    });
    let now = clock.now_ms();

    let at = parse_when("2030-01-01T00:01:00Z", TaskZone::Utc, now).unwrap();
    // Nothing runs the jobs here, so every occurrence's job stays queued: the cron task allows
    // concurrency (it fires each time), the `skipping` one does not (it skips while its previous
    // job waits).
    let once = tasks
        .add(
            at,
            new_job("x", "echo", dir.path(), "once"),
            true,
            false,
            now,
        )
        .await
        .unwrap();
    let every10 = Schedule::Cron {
        expr: "*/10 * * * * *".into(),
        tz: TaskZone::Utc,
    };
    let cron = tasks
        .add(
            every10.clone(),
            new_job("x", "echo", dir.path(), "cron"),
            true,
            true,
            now,
        )
        .await
        .unwrap();
    let skipping = tasks
        .add(
            every10,
            new_job("x", "echo", dir.path(), "skip"),
            true,
            false,
            now,
        )
        .await
        .unwrap();
    let late = parse_when("2030-01-01T00:03:00Z", TaskZone::Utc, now).unwrap();
    let missed = tasks
        .add(
            late,
            new_job("x", "echo", dir.path(), "missed"),
            true,
            false,
            now,
        )
        .await
        .unwrap();

    let mut running = Running::start(&tasks, &queue, clock.clone());
    running.settled().await;
    // Step to each due time and let the scheduler settle: the cron fires at 10, 20, …, 60 s and
    // the one-shot at 60 s.
    for _ in 0..6 {
        tokio::time::advance(Duration::from_secs(10)).await;
        running.settled().await;
    }
    assert_eq!(
        jobs_of(&store, &once.id).len(),
        1,
        "the one-shot fired once"
    );
    assert!(
        tasks.get(&once.id).unwrap().is_none(),
        "a fired one-shot is removed"
    );
    assert_eq!(jobs_of(&store, &cron.id).len(), 6, "cron at 10..60 s");
    assert_eq!(
        jobs_of(&store, &skipping.id).len(),
        1,
        "while its first job waits, later occurrences are skipped"
    );
    assert_eq!(jobs_of(&store, &missed.id).len(), 0);

    // kimaki stops; 3 minutes pass; it starts again.
    running.stop().await;
    tokio::time::advance(Duration::from_secs(180)).await;
    let mut running = Running::start(&tasks, &queue, clock.clone());
    running.settled().await;
    assert_eq!(
        jobs_of(&store, &missed.id).len(),
        1,
        "a missed one-shot fires at start"
    );
    assert_eq!(
        jobs_of(&store, &cron.id).len(),
        7,
        "missed cron occurrences fire once at start, not once per missed slot"
    );
    // It keeps its rhythm afterwards, and no occurrence fires twice.
    for _ in 0..2 {
        tokio::time::advance(Duration::from_secs(10)).await;
        running.settled().await;
    }
    let fired = jobs_of(&store, &cron.id);
    assert_eq!(fired.len(), 9);
    let mut ids: Vec<_> = fired.iter().map(|r| r.job.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 9);
    running.stop().await;
}

#[test]
fn cli_creates_lists_and_deletes_tasks() {
    let k = Kimaki::new();
    let project = k.home.path().join("p");
    std::fs::create_dir_all(&project).unwrap();
    assert_eq!(
        k.run(&["project", "add", project.to_str().unwrap()]).code(),
        0
    );
    let p = project.to_str().unwrap();

    let out = k.run(&[
        "send",
        "--project",
        p,
        "--prompt",
        "Review PRs",
        "--send-at",
        "2099-03-01T09:00:00Z",
        "--json",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let once = out.json();
    let out = k.run(&[
        "send",
        "--project",
        p,
        "--prompt",
        "Weekly",
        "--send-at",
        "0 9 * * 1",
        "--tz",
        "+02:00",
        "--json",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let weekly = out.json();

    let list = k.run(&["task", "list", "--json"]).json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&weekly["id"].as_str().unwrap()));
    let human = k.run(&["task", "list"]).stdout;
    assert!(human.contains("cron \"0 9 * * 1\" (+02:00)"), "{human}");

    assert_eq!(
        k.run(&["task", "delete", once["id"].as_str().unwrap()])
            .code(),
        0
    );
    assert_eq!(
        k.run(&["task", "list", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    for (when, needle) in [
        ("2001-01-01T00:00:00Z", "in the past"),
        ("every tuesday", "neither an ISO-8601"),
    ] {
        let out = k.run(&["send", "--project", p, "--prompt", "x", "--send-at", when]);
        assert_eq!(out.code(), 64, "{}", out.all());
        assert!(out.stderr.contains(needle), "{}", out.stderr);
    }
    let out = k.run(&[
        "send",
        "--project",
        p,
        "--prompt",
        "x",
        "--send-at",
        "0 9 * * 1",
        "--wait",
    ]);
    assert_eq!(
        out.code(),
        2,
        "--wait and --send-at conflict: {}",
        out.all()
    );
}

#[test]
fn a_due_task_runs_on_the_running_daemon() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(crate::support::fake_llm::FakeLlm::start());
    let (k, project) = Kimaki::new().with_fake_codex(&llm);
    let mut d = k.start(&[]);
    d.wait_ready();
    let soon = chrono::Utc::now() + chrono::Duration::seconds(2);
    let when = soon.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out = k.run(&[
        "send",
        "--project",
        project.to_str().unwrap(),
        "--prompt",
        "[[fake:text]] scheduled-hello",
        "--send-at",
        &when,
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    rt.block_on(llm.wait_for_requests(1, Duration::from_secs(30)));
    let asked = llm.requests();
    assert!(asked
        .iter()
        .any(|r| r.body.to_string().contains("scheduled-hello")));
    crate::support::poll::until(
        "the fired task to be removed",
        Duration::from_secs(10),
        || {
            k.run(&["task", "list", "--json"])
                .json()
                .as_array()
                .unwrap()
                .is_empty()
                .then_some(())
        },
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(20));
}
