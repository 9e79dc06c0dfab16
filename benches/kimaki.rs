//! kimaki's benchmarks: prints named figures, asserts nothing. Run with
//! `cargo bench --bench kimaki` (all) or `cargo bench --bench kimaki -- start enqueue` (some).
//! Results and the command that produced them are recorded in docs/benchmarks.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[allow(dead_code)] // shared with the tests, which use more of it
#[path = "../tests/support/echo_runner.rs"]
mod echo_runner;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kimaki::core::{
    DispatchOptions, Dispatcher, EnqueueMode, EventKind, JobQueue, JobSource, LaneId, NewJob,
    PermissionPolicy, Runner, RunnerId, RunnerSet,
};
use kimaki::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_kimaki");

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    println!(
        "kimaki benchmarks (release build, {} CPUs)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    if wants("start") {
        bench_start();
    }
    if wants("idle") {
        bench_idle();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if wants("enqueue") {
        rt.block_on(bench_enqueue());
    }
    if wants("latency") {
        rt.block_on(bench_latency());
    }
    if wants("lanes") {
        rt.block_on(bench_lanes());
    }
}

fn spawn_start(data_dir: &Path) -> (std::process::Child, Duration) {
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", data_dir)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("start")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("kimaki exited before ready").unwrap();
        if line.starts_with("data: {\"type\":\"ready\"") {
            break;
        }
    }
    let took = t0.elapsed();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, took)
}

fn stop(mut child: std::process::Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Process start → `ready` (no adapters), first start (creates the store) and later starts.
fn bench_start() {
    const RUNS: usize = 20;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        let (child, took) = spawn_start(dir.path());
        cold.push(took);
        stop(child);
        let (child, took) = spawn_start(dir.path());
        warm.push(took);
        stop(child);
    }
    cold.sort();
    warm.sort();
    println!(
        "start_to_ready_first_start   p50 {}  p95 {}  ({RUNS} runs)",
        ms(percentile(&cold, 0.5)),
        ms(percentile(&cold, 0.95))
    );
    println!(
        "start_to_ready_existing_store p50 {}  p95 {}  ({RUNS} runs)",
        ms(percentile(&warm, 0.5)),
        ms(percentile(&warm, 0.95))
    );
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ: /proc reports CPU time in these ticks; 100 on every Linux ABI kimaki targets.
    let hz = 100.0;
    ticks / hz
}

/// Idle RSS and idle CPU of a started kimaki with no adapters.
fn bench_idle() {
    const SAMPLE: Duration = Duration::from_secs(30);
    let dir = tempfile::tempdir().unwrap();
    let (child, _) = spawn_start(dir.path());
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    let rss = proc_status_kb(pid, "VmRSS:");
    let cpu0 = cpu_secs(pid);
    std::thread::sleep(SAMPLE);
    let cpu1 = cpu_secs(pid);
    let hwm = proc_status_kb(pid, "VmHWM:");
    println!(
        "idle_rss                     {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "idle_cpu                     {:.3} s/min (sampled over {} s)",
        (cpu1 - cpu0) * 60.0 / SAMPLE.as_secs_f64(),
        SAMPLE.as_secs()
    );
    stop(child);
}

fn job(lane: &str, runner: &str, dir: &Path, prompt: &str) -> NewJob {
    NewJob {
        id: None,
        lane: LaneId::new(lane),
        source: JobSource::Cli,
        workspace: dir.to_owned(),
        runner: RunnerId::new(runner),
        prompt: prompt.to_owned(),
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

fn open_queue(dir: &Path) -> JobQueue {
    JobQueue::new(Store::open(&dir.join("store")).unwrap())
}

/// Durable enqueue throughput: each enqueue is flushed before it returns.
async fn bench_enqueue() {
    const JOBS: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path());
    let t0 = Instant::now();
    for i in 0..JOBS {
        queue
            .enqueue(
                job(&format!("bench:{}", i % 50), "none", dir.path(), "x"),
                EnqueueMode::Queue,
            )
            .await
            .unwrap();
    }
    let took = t0.elapsed();
    println!(
        "durable_enqueue_sequential   {:.0} jobs/s ({JOBS} jobs, one writer)",
        JOBS as f64 / took.as_secs_f64()
    );

    const WRITERS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let queue = open_queue(dir.path());
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let queue = queue.clone();
        let path = dir.path().to_owned();
        tasks.push(tokio::spawn(async move {
            for _ in 0..JOBS / WRITERS {
                queue
                    .enqueue(
                        job(&format!("bench:{w}"), "none", &path, "x"),
                        EnqueueMode::Queue,
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let took = t0.elapsed();
    println!(
        "durable_enqueue_concurrent   {:.0} jobs/s ({} jobs, {WRITERS} writers)",
        (JOBS / WRITERS * WRITERS) as f64 / took.as_secs_f64(),
        JOBS / WRITERS * WRITERS
    );
}

async fn start_dispatch(
    dir: &Path,
    runner: Arc<dyn Runner>,
    max: usize,
) -> (JobQueue, tokio_util::sync::CancellationToken) {
    let queue = open_queue(dir);
    queue.recover().await.unwrap();
    let mut set = RunnerSet::new();
    set.add(runner, max);
    let stop = tokio_util::sync::CancellationToken::new();
    let d = Dispatcher::new(queue.clone(), Arc::new(set), DispatchOptions::default());
    tokio::spawn(d.run(stop.clone()));
    (queue, stop)
}

/// Enqueue → echo runner → first text event, per job: kimaki's own overhead per hop.
async fn bench_latency() {
    const JOBS: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let (queue, stop) = start_dispatch(dir.path(), echo_runner::EchoRunner::new(), 4).await;
    let mut sub = queue.bus().subscribe(queue.bus().head().unwrap());
    let mut samples = Vec::with_capacity(JOBS);
    for i in 0..JOBS {
        let t0 = Instant::now();
        let id = queue
            .enqueue(
                job("bench:latency", "echo", dir.path(), &format!("hi {i}")),
                EnqueueMode::Queue,
            )
            .await
            .unwrap()
            .record
            .job
            .id;
        loop {
            let ev = sub.next().await.unwrap();
            if ev.event.job_id == id && matches!(ev.event.kind, EventKind::TextDelta { .. }) {
                samples.push(t0.elapsed());
                break;
            }
        }
        // Let the job finish so the lane is free for the next one.
        loop {
            let ev = sub.next().await.unwrap();
            if ev.event.job_id == id && ev.event.kind.is_terminal() {
                break;
            }
        }
    }
    samples.sort();
    println!(
        "enqueue_to_first_text        p50 {}  p99 {}  ({JOBS} jobs, echo runner, durable enqueue included)",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99))
    );
    stop.cancel();
}

/// RSS of this process with 100 lanes each running a job.
async fn bench_lanes() {
    const LANES: usize = 100;
    let before = proc_status_kb(std::process::id(), "VmRSS:");
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_runner::EchoRunner::new();
    let (queue, stop) = start_dispatch(dir.path(), echo.clone(), LANES).await;
    let mut sub = queue.bus().subscribe(queue.bus().head().unwrap());
    for i in 0..LANES {
        queue
            .enqueue(
                job(
                    &format!("bench:lane:{i}"),
                    "echo",
                    dir.path(),
                    "sleep:60000",
                ),
                EnqueueMode::Queue,
            )
            .await
            .unwrap();
    }
    let mut started = 0;
    while started < LANES {
        let ev = sub.next().await.unwrap();
        if matches!(ev.event.kind, EventKind::Started { .. }) {
            started += 1;
        }
    }
    let during = proc_status_kb(std::process::id(), "VmRSS:");
    println!(
        "rss_with_100_active_lanes    {:.1} MiB (process total; +{:.1} MiB over the benchmark's baseline)",
        during as f64 / 1024.0,
        (during.saturating_sub(before)) as f64 / 1024.0
    );
    stop.cancel();
}
