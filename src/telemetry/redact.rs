//! Last line of defence against leaking secrets: every log line is scrubbed of the secret values
//! kimaki knows about, even if some code path formatted one by mistake.

use std::sync::{Arc, RwLock};

use crate::config::secrets::redact;

/// Shortest value worth scrubbing; shorter ones would mangle ordinary words.
const MIN_SECRET_LEN: usize = 8;

/// A shared, growable set of secret values to hide.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let r = Self::default();
        for v in values {
            r.add(v);
        }
        r
    }

    pub fn add(&self, value: String) {
        if value.len() < MIN_SECRET_LEN {
            return;
        }
        let mut s = self.secrets.write().unwrap_or_else(|p| p.into_inner());
        if !s.contains(&value) {
            s.push(value);
            // Longest first, so a secret that contains another is replaced whole.
            s.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// `text` with every known secret replaced by its redacted form.
    pub fn scrub(&self, text: &str) -> String {
        let secrets = self.secrets.read().unwrap_or_else(|p| p.into_inner());
        let mut out = text.to_owned();
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), &redact(s));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_known_secrets() {
        let r = Redactor::new(["supersecretvalue1234".to_owned(), "x".to_owned()]);
        assert_eq!(
            r.scrub("token=supersecretvalue1234 and x"),
            "token=…1234 and x"
        );
    }
}
