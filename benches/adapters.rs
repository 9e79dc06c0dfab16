//! Benchmarks of kimaki with its adapters against the loopback twins: prints named figures,
//! asserts nothing. `cargo bench --bench adapters` runs all; name sections to pick some:
//! `cargo bench --bench adapters -- discord mesh`. The Discord section runs the real binary with
//! the real Codex CLI against the fake LLM, so it needs `tests/npm` installed (see README).
//! Results and the command that produced them are recorded in docs/benchmarks.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    dead_code,
    unused_imports // the shared test support is mounted whole
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::coordinator::agent::{fast_coordinator, spec, test_config, Agent, ChattyRunner};
use support::coordinator::MeshCoordinator;
use support::discord_twin::{channel_kind, DiscordTwin, TwinConfig, WsDirection};
use support::echo_runner::EchoRunner;
use support::fake_llm::{FakeLlm, TEXT_REPLY};
use support::kimaki_bin::Kimaki;

const WAIT: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    println!(
        "kimaki adapter benchmarks (release build, {} CPUs)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if wants("discord") {
        discord_start(&rt);
        rt.block_on(discord_echo());
        discord_messages(&rt);
    }
    if wants("mesh") {
        rt.block_on(mesh_dispatch());
        rt.block_on(mesh_events());
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn p50_p99(name: &str, mut samples: Vec<Duration>, note: &str) {
    samples.sort();
    println!(
        "{name:<34} p50 {}  p99 {}  ({} samples{note})",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        samples.len()
    );
}

fn proc_status_kb(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime in seconds (USER_HZ is 100 on every Linux ABI kimaki targets).
fn cpu_secs(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// Process start → `ready` (which waits for the gateway's READY), READY → slash commands
/// registered, and the idle cost of a connected bot.
fn discord_start(rt: &tokio::runtime::Runtime) {
    const RUNS: usize = 15;
    let twin = rt.block_on(DiscordTwin::start(TwinConfig::default()));
    let (mut cold, mut warm, mut commands) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let k = Kimaki::new().with_discord_twin(&twin);
        for first in [true, false] {
            let t0 = Instant::now();
            let mut d = k.start(&[]);
            d.wait_ready();
            let took = t0.elapsed();
            if first {
                cold.push(took);
                // READY (twin clock) → the PUT of the guild's commands (twin clock).
                let ready_at = twin
                    .ws_log()
                    .iter()
                    .rev()
                    .find(|r| r.direction == WsDirection::ToBot && r.t.as_deref() == Some("READY"))
                    .map(|r| r.at_ms)
                    .unwrap();
                let put = rt.block_on(twin.wait_for("commands registered", WAIT, |s| {
                    s.rest_log
                        .iter()
                        .find(|r| {
                            r.method == "PUT"
                                && r.path.ends_with("/commands")
                                && r.at_ms >= ready_at
                        })
                        .map(|r| r.at_ms)
                }));
                commands.push(Duration::from_millis(put - ready_at));
            } else {
                warm.push(took);
            }
            d.signal(Signal::SIGTERM);
            d.wait_exit(WAIT);
        }
    }
    p50_p99("discord_start_to_ready_first", cold, ", fresh data dir");
    p50_p99("discord_start_to_ready_again", warm, ", existing store");
    p50_p99(
        "discord_ready_to_commands",
        commands,
        ", twin clock, ms resolution",
    );

    let k = Kimaki::new().with_discord_twin(&twin);
    let mut d = k.start(&[]);
    d.wait_ready();
    std::thread::sleep(Duration::from_secs(2));
    let pid = d.pid();
    let rss = proc_status_kb(pid, "VmRSS:");
    // Most of the RSS is the executable's own code pages (clean, file-backed, shared with the
    // page cache); the heap and stacks are the anonymous part.
    let anon = proc_status_kb(pid, "RssAnon:");
    let file = proc_status_kb(pid, "RssFile:");
    const SAMPLE: Duration = Duration::from_secs(60);
    let cpu0 = cpu_secs(pid);
    std::thread::sleep(SAMPLE);
    let cpu1 = cpu_secs(pid);
    println!(
        "discord_idle_rss                   {} (anonymous {}, file-backed {})",
        mib(rss),
        mib(anon),
        mib(file)
    );
    println!(
        "discord_idle_cpu                   {:.3} s/min (connected, heartbeating, {} s sample)",
        (cpu1 - cpu0) * 60.0 / SAMPLE.as_secs_f64(),
        SAMPLE.as_secs()
    );
    d.signal(Signal::SIGTERM);
    d.wait_exit(WAIT);
}

/// Message → reply through the in-process adapter and the echo runner: kimaki's own overhead
/// (gateway dispatch, access check, thread, durable enqueue, run, render, POST).
async fn discord_echo() {
    use support::discord_harness::{Kimaki as InProcess, Options};
    const MESSAGES: usize = 100;
    let k = InProcess::start_with(Options {
        runner: "echo",
        ..Options::default()
    })
    .await;
    let alice = k.twin.user("alice");
    let (mut to_thread, mut to_reply, mut in_thread) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_thread = None;
    for i in 0..MESSAGES {
        let t0 = Instant::now();
        let text = format!("task {i}");
        let sent = alice.in_channel(k.channel).send(&text);
        let thread = k.twin.wait_thread(|t| t.id.get() == sent.get(), WAIT).await;
        to_thread.push(t0.elapsed());
        let want = format!("echo: {text}");
        k.twin
            .wait_bot_message(thread.id, |m| m.content.contains(&want), WAIT)
            .await;
        to_reply.push(t0.elapsed());
        last_thread = Some(thread.id);
    }
    // Follow-ups in one thread: the session continues, no thread to create.
    let thread = last_thread.unwrap();
    for i in 0..MESSAGES / 2 {
        // Every finished turn ends with a footer: wait for the previous one so the lane is idle.
        k.twin
            .wait_for("the previous footer", WAIT, |s| {
                let footers = s
                    .messages_in(thread)
                    .iter()
                    .filter(|m| m.author_id == s.bot_id && m.content.starts_with('*'))
                    .count();
                (footers > i).then_some(())
            })
            .await;
        let t0 = Instant::now();
        let text = format!("follow-up {i}");
        alice.in_thread(thread).send(&text);
        let want = format!("echo: {text}");
        k.twin
            .wait_bot_message(thread, |m| m.content.contains(&want), WAIT)
            .await;
        in_thread.push(t0.elapsed());
    }
    p50_p99("discord_echo_message_to_thread", to_thread, ", in process");
    p50_p99(
        "discord_echo_message_to_reply",
        to_reply,
        ", in process, new thread",
    );
    p50_p99(
        "discord_echo_follow_up_to_reply",
        in_thread,
        ", in process, same thread",
    );
    k.finish().await;
}

/// Ten channel messages, each a new thread answered by the real Codex CLI through the fake LLM:
/// message → thread, message → first reply, and kimaki's RSS afterwards.
fn discord_messages(rt: &tokio::runtime::Runtime) {
    const MESSAGES: usize = 10;
    let llm = rt.block_on(FakeLlm::start());
    let twin = rt.block_on(DiscordTwin::start(TwinConfig::default()));
    let (k, _project) = Kimaki::new().with_fake_codex(&llm);
    let k = k.with_discord_twin(&twin);
    let mut d = k.start(&[]);
    d.wait_ready();
    let channel = rt.block_on(twin.wait_for("the project channel", WAIT, |s| {
        s.channels
            .values()
            .find(|c| c.kind == channel_kind::TEXT && c.name == "project")
            .map(|c| c.id)
    }));
    let pid = d.pid();
    let idle = proc_status_kb(pid, "VmRSS:");
    let alice = twin.user("alice");
    let (mut to_thread, mut to_reply) = (Vec::new(), Vec::new());
    for i in 0..MESSAGES {
        let t0 = Instant::now();
        let sent = alice
            .in_channel(channel)
            .send(&format!("[[fake:text]] task {i}"));
        let thread = rt.block_on(twin.wait_thread(|t| t.id.get() == sent.get(), WAIT));
        to_thread.push(t0.elapsed());
        rt.block_on(twin.wait_bot_message(thread.id, |m| m.content.contains(TEXT_REPLY), WAIT));
        to_reply.push(t0.elapsed());
    }
    // Let the last footers and edits settle before reading memory.
    std::thread::sleep(Duration::from_secs(2));
    let after = proc_status_kb(pid, "VmRSS:");
    let peak = proc_status_kb(pid, "VmHWM:");
    p50_p99("discord_message_to_thread", to_thread, "");
    p50_p99(
        "discord_message_to_reply",
        to_reply,
        ", real codex process per job",
    );
    println!(
        "discord_rss_after_10_messages      {} (before {}, peak {})",
        mib(after),
        mib(idle),
        mib(peak)
    );
    d.signal(Signal::SIGTERM);
    d.wait_exit(WAIT);
}

/// `job.dispatch` → `job.ack accepted`, as the coordinator times it.
async fn mesh_dispatch() {
    const JOBS: usize = 300;
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let before = proc_status_kb(std::process::id() as i32, "VmRSS:");
    let echo = EchoRunner::new();
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(echo, 4)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;
    let linked = proc_status_kb(std::process::id() as i32, "VmRSS:");
    println!(
        "mesh_link_rss                      +{} (agent with queue, store and live link, in the bench process)",
        mib(linked.saturating_sub(before))
    );
    for i in 0..JOBS {
        let job = coord.dispatch(
            &gateway,
            spec("echo", &agent.workspace_id, &format!("hi {i}")),
        );
        coord.wait_finished(&job, WAIT).await;
    }
    p50_p99(
        "mesh_dispatch_to_accepted",
        coord.dispatch_latencies(),
        ", sequential, durable enqueue included",
    );
    agent.stop().await;
}

/// Events per second from one chatty job through the durable outbox to the coordinator.
async fn mesh_events() {
    const CHUNKS: usize = 20_000;
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let chatty: Arc<ChattyRunner> = ChattyRunner::new();
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(chatty, 1)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;
    let t0 = Instant::now();
    let job = coord.dispatch(
        &gateway,
        spec("chatty", &agent.workspace_id, &format!("chatty:{CHUNKS}:0")),
    );
    let done = coord.wait_finished(&job, Duration::from_secs(300)).await;
    let took = t0.elapsed();
    let events = done.applied.len();
    // The outbox coalesces consecutive output deltas, so both sides of the link are printed.
    println!(
        "mesh_runner_events_per_second      {:.0} events/s ({CHUNKS} output deltas persisted and sent, in {})",
        CHUNKS as f64 / took.as_secs_f64(),
        ms(took)
    );
    println!(
        "mesh_wire_events_per_second        {:.0} events/s ({events} coalesced events applied in order, exactly once)",
        events as f64 / took.as_secs_f64()
    );
    agent.stop().await;
}
