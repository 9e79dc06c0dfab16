//! Waiting for a condition another process brings about (a file appears, a log line is written)
//! when there is no event to subscribe to: check, park briefly, check again — bounded.

use std::time::{Duration, Instant};

/// Parks between checks; short enough not to slow tests, long enough not to spin a core.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Returns the first `Some` from `check`, or panics after `timeout` describing `what`.
pub fn until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::park_timeout(POLL_INTERVAL);
    }
}
