//! Rate-limit profiles (§8): every response carries well-formed `X-RateLimit-*` headers; the
//! `Realistic` profile also answers 429 when a per-route or global window is full.

use std::collections::BTreeMap;

/// How strict the twin's rate limits are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RateLimitProfile {
    /// Headers only; never 429.
    #[default]
    Generous,
    /// Discord's per-route limits: messages 5 / 5 s per channel, renames 2 / 10 min per
    /// channel, reactions 1 / 0.25 s, global 50 / s (interaction callbacks exempt).
    Realistic,
}

/// Discord's global limit per bot.
const GLOBAL_LIMIT: u32 = 50;
const GLOBAL_WINDOW_MS: u64 = 1000;
/// Limit reported for routes the twin does not model individually.
const DEFAULT_LIMIT: u32 = 50;
const DEFAULT_WINDOW_MS: u64 = 1000;

#[derive(Clone, Copy, Debug, Default)]
struct Window {
    start_ms: u64,
    count: u32,
}

impl Window {
    fn hit(&mut self, now_ms: u64, window_ms: u64) -> u32 {
        if now_ms >= self.start_ms + window_ms {
            self.start_ms = now_ms;
            self.count = 0;
        }
        self.count += 1;
        self.count
    }

    fn reset_after_ms(&self, now_ms: u64, window_ms: u64) -> u64 {
        (self.start_ms + window_ms).saturating_sub(now_ms)
    }
}

/// The twin's answer for one request's rate limit.
#[derive(Clone, Debug, PartialEq)]
pub struct RateVerdict {
    pub bucket: String,
    pub limit: u32,
    pub remaining: u32,
    pub reset_after_secs: f64,
    /// `Some((retry_after_secs, scope, global))` when the request is refused with 429.
    pub limited: Option<(f64, &'static str, bool)>,
}

/// What kind of limit a request falls under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteClass {
    /// Bucket key including the major parameter.
    pub key: String,
    /// Route template, hashed into `X-RateLimit-Bucket`.
    pub template: String,
    pub limit: u32,
    pub window_ms: u64,
    pub exempt_from_global: bool,
}

impl RouteClass {
    /// Classifies a request; `is_rename` marks a channel PATCH changing name or topic.
    pub fn of(method: &str, segments: &[String], is_rename: bool) -> Self {
        let seg = |i: usize| segments.get(i).map(String::as_str).unwrap_or("");
        let major = seg(1).to_string();
        let template: String = segments
            .iter()
            .map(|s| {
                if s.chars().all(|c| c.is_ascii_digit()) {
                    "{id}"
                } else {
                    s.as_str()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let template = format!("{method} /{template}");
        let class = |key: String, limit, window_ms| RouteClass {
            key,
            template: template.clone(),
            limit,
            window_ms,
            exempt_from_global: false,
        };
        match (method, seg(0), seg(2), segments.len()) {
            ("POST", "channels", "messages", 3) => class(format!("messages:{major}"), 5, 5000),
            ("PATCH", "channels", _, 2) if is_rename => {
                class(format!("rename:{major}"), 2, 600_000)
            }
            ("PUT" | "DELETE", "channels", "messages", _) if seg(4) == "reactions" => {
                class(format!("reactions:{major}"), 1, 250)
            }
            (_, "interactions", _, _) => RouteClass {
                exempt_from_global: true,
                ..class(
                    format!("interaction:{major}"),
                    DEFAULT_LIMIT,
                    DEFAULT_WINDOW_MS,
                )
            },
            _ => class(
                format!("{template}:{major}"),
                DEFAULT_LIMIT,
                DEFAULT_WINDOW_MS,
            ),
        }
    }
}

/// Fixed-window counters per bucket plus the global window.
#[derive(Debug)]
pub struct RateLimiter {
    profile: RateLimitProfile,
    buckets: BTreeMap<String, Window>,
    global: Window,
}

impl RateLimiter {
    pub fn new(profile: RateLimitProfile) -> Self {
        Self {
            profile,
            buckets: BTreeMap::new(),
            global: Window::default(),
        }
    }

    pub fn set_profile(&mut self, profile: RateLimitProfile) {
        self.profile = profile;
        self.buckets.clear();
        self.global = Window::default();
    }

    /// Counts one request and decides whether it is refused.
    pub fn check(&mut self, now_ms: u64, class: &RouteClass) -> RateVerdict {
        let enforce = self.profile == RateLimitProfile::Realistic;
        let bucket = format!("{:016x}", fnv1a(class.template.as_bytes()));
        if enforce && !class.exempt_from_global {
            let n = self.global.hit(now_ms, GLOBAL_WINDOW_MS);
            if n > GLOBAL_LIMIT {
                let after = self.global.reset_after_ms(now_ms, GLOBAL_WINDOW_MS) as f64 / 1000.0;
                return RateVerdict {
                    bucket,
                    limit: class.limit,
                    remaining: 0,
                    reset_after_secs: after,
                    limited: Some((after, "global", true)),
                };
            }
        }
        let w = self.buckets.entry(class.key.clone()).or_default();
        let n = w.hit(now_ms, class.window_ms);
        let after = w.reset_after_ms(now_ms, class.window_ms) as f64 / 1000.0;
        let limited = (enforce && n > class.limit).then_some((after, "user", false));
        RateVerdict {
            bucket,
            limit: class.limit,
            remaining: class.limit.saturating_sub(n),
            reset_after_secs: after,
            limited,
        }
    }
}

/// FNV-1a, for stable bucket hashes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    #[test]
    fn realistic_limits_messages_per_channel() {
        let mut rl = RateLimiter::new(RateLimitProfile::Realistic);
        let a = RouteClass::of("POST", &segs("/channels/1/messages"), false);
        let b = RouteClass::of("POST", &segs("/channels/2/messages"), false);
        for _ in 0..5 {
            assert!(rl.check(0, &a).limited.is_none());
        }
        let v = rl.check(100, &a);
        assert_eq!(v.limited.map(|l| l.1), Some("user"));
        assert!(
            rl.check(100, &b).limited.is_none(),
            "other channels are not blocked"
        );
        assert!(rl.check(5000, &a).limited.is_none(), "the window resets");
    }

    #[test]
    fn generous_never_limits() {
        let mut rl = RateLimiter::new(RateLimitProfile::Generous);
        let a = RouteClass::of("PATCH", &segs("/channels/1"), true);
        for _ in 0..10 {
            assert!(rl.check(0, &a).limited.is_none());
        }
    }
}
