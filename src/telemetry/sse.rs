//! Lifecycle events on stdout in SSE form (`data: {json}` plus a blank line), for platforms that
//! supervise one kimaki per user. Only written when stdout is not a terminal; a parser that keeps
//! only `data:` lines ignores any other output.

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// A lifecycle event. `type` is the discriminator consumers switch on.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Lifecycle {
    /// Everything configured is started and kimaki accepts work.
    Ready {
        pid: u32,
        version: &'static str,
        data_dir: String,
        socket: String,
        adapters: Vec<AdapterSummary>,
        #[serde(skip_serializing_if = "Option::is_none")]
        app_id: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        guild_ids: Vec<String>,
    },
    /// Gateway onboarding: the URL a person opens to install the bot.
    InstallUrl { url: String },
    /// Gateway onboarding: the bot was authorized in a guild.
    Authorized { guild_id: String },
    /// Shutdown began (signal, `kimaki stop`, takeover).
    Stopping { reason: String },
    /// Something stopped kimaki or one of its parts.
    Error {
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        install_url: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub state: String,
}

/// Writes lifecycle events when stdout is a pipe or file.
#[derive(Debug, Clone, Copy)]
pub struct LifecycleOut {
    enabled: bool,
}

impl LifecycleOut {
    pub fn detect() -> Self {
        Self {
            enabled: !std::io::stdout().is_terminal(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn emit(&self, event: &Lifecycle) {
        if !self.enabled {
            return;
        }
        if let Ok(json) = serde_json::to_string(event) {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "data: {json}\n\n");
            let _ = out.flush();
        }
    }
}
