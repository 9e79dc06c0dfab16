//! Snowflake ids and the twin's injectable clock.
//!
//! Ids are `((ms - DISCORD_EPOCH_MS) << 22) | counter`, with `ms` taken from [`TwinClock`], so a
//! frozen clock gives deterministic ids and timestamps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch of Discord's epoch (2015-01-01T00:00:00Z).
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// 2026-01-01T00:00:00Z, the default start of a frozen clock.
pub const FROZEN_START_MS: u64 = 1_767_225_600_000;

/// The low 22 bits of a snowflake hold worker, process and increment.
const COUNTER_BITS: u32 = 22;

/// How the twin tells time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockMode {
    /// Wall-clock time (plus any `advance`).
    System,
    /// Starts at `start_ms` and moves only by `advance`: deterministic ids and timestamps.
    Frozen { start_ms: u64 },
    /// Starts at `start_ms` and flows with real elapsed time (plus any `advance`).
    Flowing { start_ms: u64 },
}

/// Twin time in Unix milliseconds. `advance` moves it forward without sleeping.
#[derive(Debug)]
pub struct TwinClock {
    mode: ClockMode,
    started: Instant,
    offset_ms: AtomicU64,
}

impl TwinClock {
    pub fn new(mode: ClockMode) -> Self {
        Self {
            mode,
            started: Instant::now(),
            offset_ms: AtomicU64::new(0),
        }
    }

    pub fn now_ms(&self) -> u64 {
        let offset = self.offset_ms.load(Ordering::SeqCst);
        let base = match self.mode {
            ClockMode::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(FROZEN_START_MS),
            ClockMode::Frozen { start_ms } => start_ms,
            ClockMode::Flowing { start_ms } => start_ms + self.started.elapsed().as_millis() as u64,
        };
        base + offset
    }

    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

/// Hands out strictly increasing snowflakes for one twin.
#[derive(Debug, Default)]
pub struct SnowflakeGen {
    last: u64,
}

impl SnowflakeGen {
    pub fn next(&mut self, now_ms: u64) -> u64 {
        let candidate = (now_ms.saturating_sub(DISCORD_EPOCH_MS)) << COUNTER_BITS;
        self.last = candidate.max(self.last + 1);
        self.last
    }
}

/// Unix milliseconds encoded in a snowflake.
pub fn snowflake_ms(id: u64) -> u64 {
    (id >> COUNTER_BITS) + DISCORD_EPOCH_MS
}

/// Discord's timestamp shape, `2026-01-01T00:00:00.000000+00:00` (twilight rejects `Z`).
pub fn iso_timestamp(ms: u64) -> String {
    let dt = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64).unwrap_or_default();
    dt.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_encode_time() {
        let clock = TwinClock::new(ClockMode::Frozen {
            start_ms: FROZEN_START_MS,
        });
        let mut ids = SnowflakeGen::default();
        let a = ids.next(clock.now_ms());
        let b = ids.next(clock.now_ms());
        assert!(b > a);
        assert_eq!(snowflake_ms(a), FROZEN_START_MS);
        clock.advance(Duration::from_secs(2));
        let c = ids.next(clock.now_ms());
        assert_eq!(snowflake_ms(c), FROZEN_START_MS + 2000);
        assert_eq!(
            iso_timestamp(FROZEN_START_MS),
            "2026-01-01T00:00:00.000000+00:00"
        );
    }
}
