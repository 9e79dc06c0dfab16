//! `kimaki restart` and `kimaki stop`: ask the running instance over its control socket.

use std::time::{Duration, Instant};

use clap::Args;

use super::backend::control_failure;
use super::output::{exit, print_json, Failure};
use super::GlobalArgs;
use crate::adapters::control::{lock, Call, ControlClient, ControlError, StatusReport};
use crate::config::{keys, Loaded};

/// A restart waits for the drain (the grace period) plus start-up.
const RESTART_MARGIN: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
#[command(after_help = "\
Running jobs get KIMAKI_SHUTDOWN_GRACE_SECS to finish; queued jobs are kept. A restart keeps the
process id and the command-line flags, and reads config.env again. SIGUSR2 does the same.")]
pub struct RestartArgs {
    /// Return at once instead of waiting until kimaki is back (restart) or gone (stop).
    #[arg(long)]
    pub no_wait: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run_restart(_g: &GlobalArgs, args: RestartArgs, loaded: Loaded) -> Result<u8, Failure> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = ControlClient::new(&loaded.data_dir.socket(), super::backend::CALL_TIMEOUT);
        let before: StatusReport = client.call(Call::Status).await.map_err(not_running)?;
        client
            .call::<serde_json::Value>(Call::Restart {
                reason: Some("`kimaki restart`".to_owned()),
            })
            .await
            .map_err(control_failure)?;
        if args.no_wait {
            return report(args.json, "restarting", before.pid);
        }
        let deadline = Instant::now() + grace(&loaded) + RESTART_MARGIN;
        while Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
            if let Ok(after) = client.call::<StatusReport>(Call::Status).await {
                if after.started_at != before.started_at {
                    return report(args.json, "restarted", after.pid);
                }
            }
        }
        Err(
            Failure::new(exit::FAILURE, "kimaki did not come back after the restart")
                .hint(format!("see {}", loaded.data_dir.log_file().display())),
        )
    })
}

pub fn run_stop(_g: &GlobalArgs, args: RestartArgs, loaded: Loaded) -> Result<u8, Failure> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = ControlClient::new(&loaded.data_dir.socket(), super::backend::CALL_TIMEOUT);
        let before: StatusReport = client.call(Call::Status).await.map_err(not_running)?;
        client
            .call::<serde_json::Value>(Call::Shutdown {
                reason: Some("`kimaki stop`".to_owned()),
            })
            .await
            .map_err(control_failure)?;
        if args.no_wait {
            return report(args.json, "stopping", before.pid);
        }
        let deadline = Instant::now() + grace(&loaded) + RESTART_MARGIN;
        while Instant::now() < deadline {
            if lock::holder(&loaded.data_dir.lock_file()).is_none() {
                return report(args.json, "stopped", before.pid);
            }
            tokio::time::sleep(POLL).await;
        }
        Err(Failure::new(
            exit::FAILURE,
            format!("kimaki (pid {}) did not stop in time", before.pid),
        ))
    })
}

fn grace(loaded: &Loaded) -> Duration {
    Duration::from_secs(loaded.settings.u64(keys::SHUTDOWN_GRACE_SECS))
}

fn not_running(e: ControlError) -> Failure {
    match e {
        ControlError::NotRunning(_) => {
            Failure::new(exit::NOT_RUNNING, "kimaki is not running for this data dir")
        }
        other => control_failure(other),
    }
}

fn report(json: bool, state: &str, pid: u32) -> Result<u8, Failure> {
    if json {
        print_json(&serde_json::json!({"state": state, "pid": pid}))?;
    } else {
        println!("kimaki {state} (pid {pid}).");
    }
    Ok(exit::OK)
}
