//! Where a command that changes state sends it: to the running daemon over the control socket,
//! or — when none runs — straight into the store, holding the instance lock meanwhile so a
//! daemon cannot start halfway through.

use std::time::{Duration, Instant};

use super::output::{exit, Failure};
use crate::adapters::control::{ControlClient, ControlError, InstanceLock, LockError};
use crate::config::Loaded;
use crate::core::tasks::Tasks;
use crate::core::{JobQueue, Workspaces};
use crate::store::Store;

/// Local calls answer in milliseconds; this bounds a wedged daemon.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a command waits for a daemon that is starting (or another command) to settle.
const SETTLE_WAIT: Duration = Duration::from_secs(10);
const SETTLE_POLL: Duration = Duration::from_millis(50);

pub enum Backend {
    Daemon(ControlClient),
    Direct(Box<Direct>),
}

pub struct Direct {
    pub queue: JobQueue,
    pub workspaces: Workspaces,
    pub tasks: Tasks,
    _lock: InstanceLock,
}

impl Backend {
    pub async fn connect(loaded: &Loaded) -> Result<Self, Failure> {
        let client = ControlClient::new(&loaded.data_dir.socket(), CALL_TIMEOUT);
        loaded
            .data_dir
            .ensure()
            .map_err(|e| Failure::new(exit::CONFIG, e.to_string()))?;
        // The lock without an answering socket means a daemon that is still starting (or
        // another short CLI command): wait for one of the two to settle.
        let deadline = Instant::now() + SETTLE_WAIT;
        let lock = loop {
            match client
                .call::<serde_json::Value>(crate::adapters::control::Call::Status)
                .await
            {
                Ok(_) => return Ok(Backend::Daemon(client)),
                Err(ControlError::NotRunning(_)) => {}
                Err(e) => return Err(Failure::new(exit::UNAVAILABLE, e.to_string())),
            }
            match InstanceLock::acquire(&loaded.data_dir.lock_file()) {
                Ok(l) => break l,
                Err(LockError::Held { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(SETTLE_POLL).await;
                }
                Err(LockError::Held { pid, .. }) => {
                    return Err(Failure::new(
                        exit::UNAVAILABLE,
                        format!(
                            "kimaki{} holds this data dir but its control socket does not answer",
                            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                        ),
                    )
                    .hint("wait for it to finish starting, or restart it"))
                }
                Err(e) => return Err(Failure::new(exit::DATA, e.to_string())),
            }
        };
        let path = loaded.data_dir.store_dir();
        let store = tokio::task::spawn_blocking(move || Store::open(&path))
            .await
            .map_err(|e| Failure::new(exit::FAILURE, e.to_string()))?
            .map_err(|e| Failure::new(exit::DATA, e.to_string()))?;
        Ok(Backend::Direct(Box::new(Direct {
            queue: JobQueue::new(store.clone()),
            workspaces: Workspaces::new(store.clone()),
            tasks: Tasks::new(store),
            _lock: lock,
        })))
    }
}

/// Maps a control-socket error to the CLI's failure.
pub fn control_failure(e: ControlError) -> Failure {
    match e {
        ControlError::Refused { code, message } => Failure::new(
            match code.as_str() {
                "bad_request" | "not_found" => exit::USAGE,
                "unavailable" => exit::UNAVAILABLE,
                _ => exit::FAILURE,
            },
            message,
        ),
        ControlError::NotRunning(_) => Failure::new(exit::UNAVAILABLE, e.to_string()),
        other => Failure::new(exit::FAILURE, other.to_string()),
    }
}
