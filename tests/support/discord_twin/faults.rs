//! Injected REST faults (§9): `fail_next(route, status, retry_after, times)`, `delay(route, d)`,
//! HTML error bodies and duplicated dispatches. Gateway faults live in `gateway`.
//!
//! A route pattern is `"METHOD /path"` relative to `/api/v10`, where `{…}` matches any one
//! segment and `*` as the method matches every method: `"POST /channels/{c}/messages"` fails
//! every channel, `format!("POST /channels/{ch}/messages")` only one.

use std::time::Duration;

/// A REST route pattern (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePattern {
    method: Option<String>,
    segments: Vec<Option<String>>,
}

impl RoutePattern {
    pub fn parse(pattern: &str) -> Self {
        let (method, path) = match pattern.split_once(' ') {
            Some((m, p)) => (
                Some(m.trim().to_ascii_uppercase()).filter(|m| m != "*"),
                p.trim(),
            ),
            None => (None, pattern.trim()),
        };
        let path = path.strip_prefix("/api/v10").unwrap_or(path);
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.starts_with('{') && s.ends_with('}') {
                    None
                } else {
                    Some(s.to_string())
                }
            })
            .collect();
        Self { method, segments }
    }

    pub fn matches(&self, method: &str, segments: &[String]) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.segments.len() == segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(p, s)| p.as_deref().is_none_or(|p| p == s))
    }
}

/// What an injected fault does to a matching request.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// Answer with this status and no state change. For 429, `retry_after` is in seconds.
    Status {
        status: u16,
        retry_after: Option<f64>,
        global: bool,
    },
    /// Hold the request this long, then serve it normally.
    Delay(Duration),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FaultRule {
    pub pattern: RoutePattern,
    pub action: FaultAction,
    pub remaining: u32,
}

/// Pending faults and gateway switches.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub rules: Vec<FaultRule>,
    pub duplicate_next_dispatch: bool,
    pub html_error_body: bool,
    pub stop_acking_heartbeats: bool,
}

impl Faults {
    /// Consumes the first rule matching a request, if any.
    pub fn take(&mut self, method: &str, segments: &[String]) -> Option<FaultAction> {
        let idx = self
            .rules
            .iter()
            .position(|r| r.remaining > 0 && r.pattern.matches(method, segments))?;
        let rule = &mut self.rules[idx];
        rule.remaining -= 1;
        let action = rule.action.clone();
        if rule.remaining == 0 {
            self.rules.remove(idx);
        }
        Some(action)
    }
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
    fn patterns_match_placeholders_and_methods() {
        let p = RoutePattern::parse("POST /channels/{c}/messages");
        assert!(p.matches("POST", &segs("/channels/1/messages")));
        assert!(!p.matches("GET", &segs("/channels/1/messages")));
        assert!(!p.matches("POST", &segs("/channels/1/messages/2")));
        let p = RoutePattern::parse("* /api/v10/channels/7/typing");
        assert!(p.matches("POST", &segs("/channels/7/typing")));
        assert!(!p.matches("POST", &segs("/channels/8/typing")));
    }

    #[test]
    fn rules_are_consumed() {
        let mut f = Faults::default();
        f.rules.push(FaultRule {
            pattern: RoutePattern::parse("GET /x"),
            action: FaultAction::Status {
                status: 500,
                retry_after: None,
                global: false,
            },
            remaining: 2,
        });
        assert!(f.take("GET", &segs("/x")).is_some());
        assert!(f.take("GET", &segs("/x")).is_some());
        assert!(f.take("GET", &segs("/x")).is_none());
    }
}
