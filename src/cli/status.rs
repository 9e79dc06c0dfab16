//! `kimaki status`: asks the running instance over its control socket.

use std::time::Duration;

use clap::Args;

use super::output::{exit, human_bytes, human_duration, print_json, Failure};
use super::GlobalArgs;
use crate::adapters::control::{Call, ControlClient, ControlError, StatusReport};
use crate::config::Loaded;
use crate::core::clock::now_ms;

/// A healthy daemon answers in milliseconds; this only bounds a wedged one.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 running, 3 not running, 1 no answer.")]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_global: &GlobalArgs, args: StatusArgs, loaded: Loaded) -> Result<u8, Failure> {
    let rt = super::runtime()?;
    let client = ControlClient::new(&loaded.data_dir.socket(), STATUS_TIMEOUT);
    let data_dir = loaded.data_dir.root().display().to_string();
    match rt.block_on(client.call::<StatusReport>(Call::Status)) {
        Ok(report) => {
            if args.json {
                let mut v = serde_json::to_value(&report)
                    .map_err(|e| Failure::new(exit::FAILURE, e.to_string()))?;
                v["running"] = serde_json::Value::Bool(true);
                print_json(&v)?;
            } else {
                print_human(&report);
            }
            Ok(exit::OK)
        }
        Err(ControlError::NotRunning(_)) => {
            if args.json {
                print_json(&serde_json::json!({"running": false, "data_dir": data_dir}))?;
            } else {
                println!("kimaki is not running for {data_dir}.");
                println!("Start it with `kimaki start`.");
            }
            Ok(exit::NOT_RUNNING)
        }
        Err(e) => Err(Failure::new(exit::FAILURE, e.to_string())),
    }
}

fn print_human(r: &StatusReport) {
    println!(
        "kimaki {} running (pid {}) for {} — up {}",
        r.version,
        r.pid,
        r.data_dir,
        human_duration(r.uptime_secs)
    );
    if let Some(rss) = r.rss_bytes {
        println!("memory: {}", human_bytes(rss));
    }
    println!("adapters:");
    let now = now_ms();
    for a in &r.adapters {
        let since = u64::try_from((now - a.since) / 1000).unwrap_or(0);
        let detail = a
            .detail
            .as_deref()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default();
        println!(
            "  {:<18} {:<12} for {}{}",
            a.name,
            a.state,
            human_duration(since),
            detail
        );
    }
    println!(
        "queue: {} queued, {} running",
        r.queue.queued, r.queue.running
    );
    for l in &r.queue.lanes {
        let running = l
            .running_job
            .as_deref()
            .map(|j| format!(", running {j}"))
            .unwrap_or_default();
        println!("  {:<40} {} queued{}", l.lane, l.queued, running);
    }
}
