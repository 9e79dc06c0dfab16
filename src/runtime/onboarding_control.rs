//! The control socket while gateway onboarding waits for someone to authorize the bot: nothing
//! else runs yet, but `kimaki status` should say what kimaki waits for (and where), and
//! `kimaki stop` should end it like a signal does. Every other call is refused with that reason.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::adapters::control::protocol::{Call, CallError, QueueStatus};
use crate::adapters::control::{ControlHandler, StatusReport};
use crate::core::{clock, ComponentStatus};

/// Answers the control socket until onboarding ends.
pub struct OnboardingControl {
    pub data_dir: String,
    pub exe: String,
    pub started_at: i64,
    /// The install URL shown to the user, once there is one.
    pub waiting_on: Arc<Mutex<Option<String>>>,
    /// Fired by `kimaki stop`.
    pub stop: CancellationToken,
}

const WAITING: &str =
    "kimaki is waiting for the bot to be authorized (gateway mode); try again once it is ready";

#[async_trait]
impl ControlHandler for OnboardingControl {
    async fn status(&self) -> StatusReport {
        let url = self
            .waiting_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let now = clock::now_ms();
        StatusReport {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            data_dir: self.data_dir.clone(),
            started_at: self.started_at,
            uptime_secs: u64::try_from((now - self.started_at) / 1000).unwrap_or(0),
            exe: self.exe.clone(),
            adapters: vec![ComponentStatus {
                name: "discord".to_owned(),
                state: "onboarding".to_owned(),
                since: self.started_at,
                detail: Some(match url {
                    Some(url) => format!("waiting for authorization: open {url}"),
                    None => "asking the gateway proxy for an install URL".to_owned(),
                }),
            }],
            queue: QueueStatus {
                queued: 0,
                running: 0,
                lanes: Vec::new(),
            },
            rss_bytes: super::process::rss_bytes(),
        }
    }

    async fn shutdown(&self, reason: String) {
        tracing::info!(reason = %reason, "Stop requested while onboarding.");
        self.stop.cancel();
    }

    /// Status and shutdown are answered by the server itself; nothing else can run yet.
    async fn call(&self, _call: Call) -> Result<serde_json::Value, CallError> {
        Err(CallError::new("unavailable", WAITING))
    }

    async fn follow(
        &self,
        _job_id: String,
        _after_seq: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<serde_json::Value>, CallError> {
        Err(CallError::new("unavailable", WAITING))
    }
}
