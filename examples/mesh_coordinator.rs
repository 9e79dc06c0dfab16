//! A reference mesh coordinator for operators: point kimaki agents at it (`MESH_URL`), list
//! them, dispatch prompts to their workspaces, watch the events stream in, cancel.
//!
//! ```sh
//! cargo run --example mesh_coordinator -- --listen 127.0.0.1:7300 --token gw_at_secret
//! # on the agent machine: MESH_URL=http://127.0.0.1:7300 MESH_TOKEN=gw_at_secret kimaki start
//! ```
//!
//! Commands (one per line on stdin):
//! - `agents`: live agents with their workspaces and runners
//! - `dispatch <agent> <workspace> <runner> <prompt…>`: agent and workspace by id or name;
//!   runner as on the wire (`opencode`, `codex`, `claude-code`)
//! - `cancel <jobId> [user|timeout|shutdown]`
//! - `jobs`, `events <jobId>`
//! - `drain [reconnectTo]`, `rotate <token>`, `quit`
//!
//! Events are printed as they are applied (in seq order, exactly once). State lives in memory:
//! restarting this process forgets every job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "../tests/support/coordinator/mod.rs"]
mod coordinator;

use std::collections::HashMap;

use coordinator::{CoordinatorConfig, MeshCoordinator, State};
use mesh_protocol::{CancelReason, JobEvent, JobSpec, RunnerKind, WorkspaceId};
use tokio::io::{AsyncBufReadExt, BufReader};

const USAGE: &str =
    "usage: mesh_coordinator [--listen 127.0.0.1:7300] --token <token> [--token <token>…]";

#[tokio::main]
async fn main() {
    let mut listen = "127.0.0.1:7300".to_owned();
    let mut tokens = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--token", Some(v)) => tokens.push(v),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    if tokens.is_empty() {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    let config = CoordinatorConfig {
        tokens,
        ..CoordinatorConfig::default()
    };
    let coord = MeshCoordinator::start_at(config, &listen).await;
    println!(
        "mesh coordinator on {} (namespace /mesh); type `help`",
        coord.url()
    );

    let shared = coord.shared().clone();
    tokio::spawn(async move {
        // Printed so far: hellos, and events per job.
        let mut hellos = 0;
        let mut printed: HashMap<String, usize> = HashMap::new();
        loop {
            let notified = shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = match shared.state.lock() {
                    Ok(s) => s,
                    Err(p) => p.into_inner(),
                };
                for hello in state.hellos.iter().skip(hellos) {
                    println!(
                        "agent {} ({}@{}) registered: {} workspace(s), {} runner(s)",
                        hello.agent.gateway_id,
                        hello.agent.name,
                        hello.agent.hostname,
                        hello.workspaces.len(),
                        hello.runners.len()
                    );
                }
                hellos = state.hellos.len();
                for job in state.jobs.values() {
                    let done = printed.entry(job.job_id.clone()).or_default();
                    for ev in job.applied.iter().skip(*done) {
                        println!("{} #{} {}", job.job_id, ev.seq, describe(&ev.event));
                    }
                    *done = job.applied.len();
                }
            }
            notified.await;
        }
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["help"] => println!("{}", HELP),
            ["agents"] => coord.with_state(|s| print_agents(s)),
            ["jobs"] => coord.with_state(|s| {
                for j in s.jobs.values() {
                    let origin = j
                        .observed
                        .as_ref()
                        .map(|o| format!(" (observed from {})", o.origin))
                        .unwrap_or_default();
                    println!(
                        "{} {:?} acked {} on {}{origin}: {}",
                        j.job_id, j.state, j.acked_seq, j.gateway, j.spec.prompt
                    );
                }
            }),
            ["events", job] => coord.with_state(|s| match s.jobs.get(*job) {
                Some(j) => {
                    for ev in &j.applied {
                        println!("#{} {}", ev.seq, describe(&ev.event));
                    }
                }
                None => println!("no job {job}"),
            }),
            ["dispatch", agent, workspace, runner, prompt @ ..] if !prompt.is_empty() => {
                match coord.with_state(|s| resolve(s, agent, workspace)) {
                    Some((gateway, ws)) => {
                        let job = coord.dispatch(
                            &gateway,
                            JobSpec {
                                runner: RunnerKind::from(*runner),
                                workspace_id: WorkspaceId::new(ws),
                                prompt: prompt.join(" "),
                                model: None,
                                args: None,
                                env: None,
                                timeout_ms: None,
                                permission_policy: None,
                                resume_session: None,
                                mirror: None,
                            },
                        );
                        println!("dispatched {job}");
                    }
                    None => println!(
                        "no live agent `{agent}` with workspace `{workspace}` (see `agents`)"
                    ),
                }
            }
            ["cancel", job, rest @ ..] => {
                let reason = match rest.first().copied() {
                    Some("timeout") => CancelReason::Timeout,
                    Some("shutdown") => CancelReason::Shutdown,
                    _ => CancelReason::User,
                };
                coord.cancel(job, reason, 10_000);
            }
            ["drain", rest @ ..] => coord.drain(rest.first().map(|s| (*s).to_owned()), Some(1_000)),
            ["rotate", token] => coord.rotate_token(token),
            ["quit"] => break,
            _ => println!("unknown command; type `help`"),
        }
    }
}

const HELP: &str = "agents | jobs | events <jobId> | dispatch <agent> <workspace> <runner> <prompt…> | cancel <jobId> [reason] | drain [reconnectTo] | rotate <token> | quit";

fn print_agents(state: &State) {
    for (gateway, session) in &state.sessions {
        let Some(hello) = state
            .hellos
            .iter()
            .rev()
            .find(|h| h.agent.gateway_id.as_str() == gateway)
        else {
            continue;
        };
        println!(
            "{gateway} name={} host={} live={} session={}",
            hello.agent.name, hello.agent.hostname, session.welcomed, session.session_id
        );
        for w in &hello.workspaces {
            println!("  workspace {} {}", w.id, w.name);
        }
        for r in &hello.runners {
            println!("  runner {} {} available={}", r.id, r.version, r.available);
        }
    }
}

/// The gateway and workspace id named by id or name.
fn resolve(state: &State, agent: &str, workspace: &str) -> Option<(String, String)> {
    let hello = state.hellos.iter().rev().find(|h| {
        state.is_live(h.agent.gateway_id.as_str())
            && (h.agent.gateway_id.as_str() == agent || h.agent.name == agent)
    })?;
    let ws = hello
        .workspaces
        .iter()
        .find(|w| w.id.as_str() == workspace || w.name == workspace)?;
    Some((hello.agent.gateway_id.to_string(), ws.id.to_string()))
}

fn describe(event: &JobEvent) -> String {
    match event {
        JobEvent::Output(o) => format!("output: {}", o.text.trim_end()),
        JobEvent::Finished(f) => format!(
            "finished: {:?}{}",
            f.outcome,
            f.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        other => serde_json::to_string(other).unwrap_or_else(|_| other.event_type().to_owned()),
    }
}
