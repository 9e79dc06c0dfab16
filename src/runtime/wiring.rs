//! Builds the runners and adapters the configuration asks for.

use std::sync::Arc;

use crate::config::{keys, Loaded};
use crate::core::{Runner, RunnerSet};

/// Every runner kimaki can drive, plus any the embedding program adds (tests, benchmarks).
pub(super) fn runners(loaded: &Loaded, extra: &[Arc<dyn Runner>]) -> RunnerSet {
    let max = usize::try_from(loaded.settings.u64(keys::MAX_CONCURRENT_JOBS)).unwrap_or(1);
    let mut set = RunnerSet::new();
    for r in extra {
        set.add(r.clone(), max);
    }
    set
}
