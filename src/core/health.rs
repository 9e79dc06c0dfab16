//! The current state of every component (adapters, runners), for `status`, `doctor` and the
//! ready event. Adapters report into it; nothing reads it to make decisions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::clock::now_ms;

/// One component's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub name: String,
    /// `starting`, `running`, `connecting`, `connected`, `backoff`, `stopped`, `failed`, …
    pub state: String,
    /// Unix milliseconds of the last state change.
    pub since: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Shared, cheap-to-clone table of component states.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<BTreeMap<String, ComponentStatus>>>,
}

impl Health {
    /// Records a state; `since` changes only when the state does.
    pub fn set(&self, name: &str, state: &str, detail: Option<String>) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let since = match map.get(name) {
            Some(old) if old.state == state => old.since,
            _ => now_ms(),
        };
        map.insert(
            name.to_owned(),
            ComponentStatus {
                name: name.to_owned(),
                state: state.to_owned(),
                since,
                detail,
            },
        );
    }

    pub fn get(&self, name: &str) -> Option<ComponentStatus> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn snapshot(&self) -> Vec<ComponentStatus> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
