//! State a CLI runner keeps across its per-job processes (Codex and Claude Code start one process
//! per job): the program's `--version`, asked once per path, and the tools a person allowed
//! "always" in a session.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::programs::program_version;

/// Sessions whose "always" grants are remembered; the oldest is forgotten first.
const ALWAYS_SESSIONS_KEPT: usize = 1024;

/// `--version` of the resolved program, asked once per path (a new path asks again).
#[derive(Default)]
pub struct VersionCache {
    slot: tokio::sync::Mutex<Option<(PathBuf, Option<String>)>>,
}

impl VersionCache {
    pub async fn of(&self, program: &Path) -> Option<String> {
        let mut slot = self.slot.lock().await;
        if let Some((p, v)) = slot.as_ref() {
            if p == program {
                return v.clone();
            }
        }
        let v = program_version(program).await.ok();
        *slot = Some((program.to_owned(), v.clone()));
        v
    }
}

/// Tools allowed for the rest of a session, for a bounded number of sessions.
#[derive(Default)]
pub struct AlwaysAllowed {
    inner: Mutex<Grants>,
}

#[derive(Default)]
struct Grants {
    order: Vec<String>,
    tools: HashMap<String, HashSet<String>>,
}

impl AlwaysAllowed {
    pub fn allows(&self, session: &str, tool: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tools
            .get(session)
            .is_some_and(|t| t.contains(tool))
    }

    pub fn allow(&self, session: &str, tool: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !g.tools.contains_key(session) {
            if g.order.len() >= ALWAYS_SESSIONS_KEPT {
                let oldest = g.order.remove(0);
                g.tools.remove(&oldest);
            }
            g.order.push(session.to_owned());
        }
        g.tools
            .entry(session.to_owned())
            .or_default()
            .insert(tool.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_per_session_and_the_oldest_session_is_forgotten() {
        let a = AlwaysAllowed::default();
        a.allow("s0", "bash");
        assert!(a.allows("s0", "bash"));
        assert!(!a.allows("s0", "edit"));
        assert!(!a.allows("s1", "bash"));
        for i in 1..=ALWAYS_SESSIONS_KEPT {
            a.allow(&format!("s{i}"), "bash");
        }
        assert!(!a.allows("s0", "bash"), "the oldest session was dropped");
        assert!(a.allows(&format!("s{ALWAYS_SESSIONS_KEPT}"), "bash"));
    }
}
