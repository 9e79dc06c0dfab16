//! Providers in the configured order. Each gets a few attempts while its errors are retryable
//! (connection trouble, timeouts, 429, 5xx), with exponential backoff and jitter; a provider that
//! still fails hands over to the next one. When all fail, the error lists each one's reason and
//! is retryable if any of them was.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::{AudioClip, Provider, ProviderTranscript, TranscribeError, TranscriptionContext};

/// How often and how patiently a provider is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per provider, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts over ≈6 s: long enough for a per-minute quota blip or a restarting server,
    /// short enough that the person who spoke is still looking at the thread.
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// Up to this fraction of each delay is added at random, so agents that were rate limited
/// together do not retry in lockstep.
const JITTER_FRACTION: f64 = 0.2;

impl RetryPolicy {
    /// The wait before attempt `attempt` (2 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(2).min(16);
        let base = self.base_delay.saturating_mul(1 << exp).min(self.max_delay);
        let jitter = rand::rng().random_range(0.0..=JITTER_FRACTION);
        base + base.mul_f64(jitter)
    }
}

pub struct Chain {
    providers: Vec<Arc<dyn Provider>>,
    retry: RetryPolicy,
}

impl Chain {
    pub fn new(providers: Vec<Arc<dyn Provider>>, retry: RetryPolicy) -> Self {
        Self { providers, retry }
    }

    /// Provider names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.providers.iter().map(|p| p.name()).collect()
    }

    pub async fn transcribe(
        &self,
        clip: &AudioClip,
        ctx: &TranscriptionContext,
    ) -> Result<ProviderTranscript, TranscribeError> {
        let mut failures: Vec<(&'static str, TranscribeError)> = Vec::new();
        for provider in &self.providers {
            match self.with_retries(provider.as_ref(), clip, ctx).await {
                Ok(t) => {
                    if !failures.is_empty() {
                        tracing::info!(
                            provider = provider.name(),
                            "Transcribed by a fallback provider."
                        );
                    }
                    return Ok(t);
                }
                Err(e) => {
                    tracing::warn!(provider = provider.name(), error = %e, retryable = e.is_retryable(), "Transcription provider failed.");
                    failures.push((provider.name(), e));
                }
            }
        }
        match failures.len() {
            0 => Err(TranscribeError::NoProvider(
                "set GEMINI_API_KEY, OPENAI_API_KEY or KIMAKI_TRANSCRIBE_COMMAND (kimaki init)"
                    .into(),
            )),
            1 => Err(failures.remove(0).1),
            _ => Err(TranscribeError::AllFailed(failures)),
        }
    }

    async fn with_retries(
        &self,
        provider: &dyn Provider,
        clip: &AudioClip,
        ctx: &TranscriptionContext,
    ) -> Result<ProviderTranscript, TranscribeError> {
        let mut attempt = 1;
        loop {
            match provider.transcribe(clip, ctx).await {
                Ok(t) => return Ok(t),
                Err(e) if e.is_retryable() && attempt < self.retry.attempts => {
                    attempt += 1;
                    let wait = self.retry.delay(attempt);
                    tracing::warn!(provider = provider.name(), error = %e, attempt, wait_ms = wait.as_millis() as u64, "Transcription failed; retrying.");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        let within = |d: Duration, ms: u64| {
            d >= Duration::from_millis(ms)
                && d <= Duration::from_millis(ms).mul_f64(1.0 + JITTER_FRACTION)
        };
        assert!(within(p.delay(2), 100));
        assert!(within(p.delay(3), 200));
        assert!(within(p.delay(4), 300));
        assert!(within(p.delay(40), 300));
    }
}
