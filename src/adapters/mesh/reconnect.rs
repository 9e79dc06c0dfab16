//! When and where the next connection attempt goes (§9): jittered exponential backoff windows and
//! the endpoint order. Pure: time and randomness come in as arguments, so the schedule is tested
//! without sleeping.

use std::collections::VecDeque;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use tokio::time::Instant;

/// Backoff windows: the first is `initial`, each next one doubles up to `max`. An attempt fires
/// at a uniform random point of its window and the rest of the window is waited out before the
/// next one opens, so attempts are at least one window apart on average and never bunch across
/// agents. There is no give-up.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    window: Duration,
    next_window_start: Instant,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, now: Instant) -> Self {
        // A zero window would let the loop spin (B0); a millisecond is the floor.
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
            window: initial,
            next_window_start: now,
        }
    }

    /// When the next attempt fires, for a uniform `fraction` in `[0, 1)`. Opens the window that
    /// attempt belongs to; the following window starts when this one ends.
    pub fn schedule(&mut self, now: Instant, fraction: f64) -> Instant {
        let start = self.next_window_start.max(now);
        let fraction = fraction.clamp(0.0, 1.0);
        let fire = start + self.window.mul_f64(fraction);
        self.next_window_start = start + self.window;
        self.window = (self.window * 2).min(self.max);
        fire
    }

    /// No attempt before `at` (`retryAfterMs`, the hourly auth retry, a superseded pause).
    pub fn defer_until(&mut self, at: Instant) {
        self.next_window_start = self.next_window_start.max(at);
    }

    /// After a stable link: start again from the first window.
    pub fn reset(&mut self, now: Instant) {
        self.window = self.initial;
        self.next_window_start = now;
    }

    /// The length of the window the next `schedule` uses.
    #[cfg(test)]
    pub fn window(&self) -> Duration {
        self.window
    }
}

/// Endpoint order: the last good endpoint first, then the rest shuffled, round-robin; a drain's
/// `reconnectTo` goes first once.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    all: Vec<String>,
    queue: VecDeque<String>,
    last_good: Option<String>,
    once: Option<String>,
}

impl Endpoints {
    pub fn new(all: Vec<String>, last_good: Option<String>) -> Self {
        Self {
            all,
            queue: VecDeque::new(),
            last_good,
            once: None,
        }
    }

    /// Replaces the list (`welcome.endpoints`); the current round starts over.
    pub fn replace(&mut self, all: Vec<String>) {
        if !all.is_empty() && all != self.all {
            self.all = all;
            self.queue.clear();
        }
    }

    pub fn mark_good(&mut self, endpoint: &str) {
        self.last_good = Some(endpoint.to_owned());
        // The next round starts with it again.
        self.queue.clear();
    }

    /// Tries `endpoint` next, once.
    pub fn prefer_once(&mut self, endpoint: String) {
        self.once = Some(endpoint);
    }

    /// The endpoint for the next attempt; `None` only with no endpoints at all.
    pub fn next(&mut self, rng: &mut impl Rng) -> Option<String> {
        if let Some(once) = self.once.take() {
            return Some(once);
        }
        if self.queue.is_empty() {
            let mut rest: Vec<String> = self
                .all
                .iter()
                .filter(|e| Some(*e) != self.last_good.as_ref())
                .cloned()
                .collect();
            rest.shuffle(rng);
            if let Some(good) = self.last_good.as_ref().filter(|g| self.all.contains(g)) {
                self.queue.push_back(good.clone());
            }
            self.queue.extend(rest);
        }
        self.queue.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn windows_double_to_the_cap_and_never_overlap() {
        let t0 = Instant::now();
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), t0);
        let mut rng = StdRng::seed_from_u64(7);
        let mut fires = Vec::new();
        let mut now = t0;
        for _ in 0..40 {
            let window_start = now.max(t0);
            let fire = b.schedule(now, rng.random::<f64>());
            assert!(fire >= window_start);
            fires.push(fire);
            // The attempt fails at once.
            now = fire;
        }
        assert_eq!(b.window(), Duration::from_secs(60));
        // Windows 1+2+4+8+16+32 = 63 s, then one per 60 s: at most 40 attempts in 63 + 34 × 60 s,
        // and never more than two inside any 60 s once capped.
        let late: Vec<_> = fires
            .iter()
            .filter(|f| **f > t0 + Duration::from_secs(63))
            .collect();
        for pair in late.windows(3) {
            assert!(*pair[2] - *pair[0] >= Duration::from_secs(60));
        }
    }

    #[test]
    fn attempts_per_minute_stay_bounded_with_a_tiny_window() {
        // Even with a 1 ms floor the schedule cannot spin: a window must pass per attempt.
        let t0 = Instant::now();
        let mut b = Backoff::new(Duration::ZERO, Duration::from_millis(100), t0);
        let mut now = t0;
        let mut count = 0;
        while now < t0 + Duration::from_secs(60) {
            now = b.schedule(now, 0.0);
            count += 1;
            assert!(count < 1000, "the schedule spins");
        }
        assert!(count <= 60_000 / 100 + 10, "{count} attempts in a minute");
    }

    #[test]
    fn defer_and_reset() {
        let t0 = Instant::now();
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), t0);
        b.schedule(t0, 0.5);
        b.schedule(t0, 0.5);
        b.defer_until(t0 + Duration::from_secs(3600));
        assert!(b.schedule(t0, 0.0) >= t0 + Duration::from_secs(3600));
        b.reset(t0);
        assert_eq!(b.window(), Duration::from_secs(1));
        assert!(b.schedule(t0, 0.99) < t0 + Duration::from_secs(1));
    }

    #[test]
    fn last_good_first_then_the_rest_then_round_robin() {
        let mut rng = StdRng::seed_from_u64(1);
        let all: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut e = Endpoints::new(all, Some("b".into()));
        let round: Vec<String> = (0..3).filter_map(|_| e.next(&mut rng)).collect();
        assert_eq!(round[0], "b");
        let mut sorted = round.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["a", "b", "c"]);
        assert_eq!(e.next(&mut rng).as_deref(), Some("b"), "next round");
        e.prefer_once("c".into());
        assert_eq!(e.next(&mut rng).as_deref(), Some("c"));
        assert!(Endpoints::new(Vec::new(), None).next(&mut rng).is_none());
    }
}
