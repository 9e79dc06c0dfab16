//! The current state of every adapter, for `status`, `doctor` and the ready event.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::adapters::control::protocol::AdapterStatus;
use crate::core::clock::now_ms;

/// Shared, cheap-to-clone table of adapter states.
#[derive(Clone, Default)]
pub struct AdapterStates {
    inner: Arc<Mutex<BTreeMap<String, AdapterStatus>>>,
}

impl AdapterStates {
    /// Records a state; `since` changes only when the state does.
    pub fn set(&self, name: &str, state: &str, detail: Option<String>) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let since = match map.get(name) {
            Some(old) if old.state == state => old.since,
            _ => now_ms(),
        };
        map.insert(
            name.to_owned(),
            AdapterStatus {
                name: name.to_owned(),
                state: state.to_owned(),
                since,
                detail,
            },
        );
    }

    pub fn snapshot(&self) -> Vec<AdapterStatus> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
