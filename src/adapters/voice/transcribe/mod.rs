//! Transcription providers behind one small trait, the chain that tries them in order, and the
//! error type of this boundary. Providers see an [`AudioClip`] (the original bytes, plus 16 kHz
//! PCM when the audio could be decoded) and a [`TranscriptionContext`]; they never see a job.
//!
//! # Layout
//! - `gemini`: `generateContent` with inline audio and a forced function call; model fallback.
//! - `openai`: `/v1/audio/transcriptions` (multipart).
//! - `command`: a local program run on a 16 kHz WAV.
//! - `local`: the built-in offline Whisper (engine behind the `local-whisper` feature).
//! - `chain`: provider order, retries with backoff.

pub mod chain;
pub mod command;
pub mod gemini;
pub mod local;
pub mod openai;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::codec::ogg_opus::DecodeError;
use super::codec::sniff::AudioFormat;
use super::codec::{wav, Pcm};
use crate::core::events::{Failure, FailureKind};

pub use chain::{Chain, RetryPolicy};
pub use command::{CommandConfig, CommandProvider};
pub use gemini::{GeminiConfig, GeminiProvider};
pub use openai::{OpenAiConfig, OpenAiProvider};

/// Error bodies and command output are cut to this many characters in messages.
const DETAIL_MAX_CHARS: usize = 300;

/// What a provider needs to know about the recording.
#[derive(Debug, Clone)]
pub struct AudioClip {
    /// The attachment exactly as received.
    pub bytes: Arc<[u8]>,
    pub format: AudioFormat,
    /// The MIME type sent with `bytes`.
    pub mime: String,
    pub filename: String,
    /// 16 kHz mono, when the format could be decoded here (Ogg/Opus, WAV).
    pub pcm16k: Option<Arc<Pcm>>,
}

impl AudioClip {
    /// The 16 kHz PCM as a WAV file (encoded off the async threads), for providers that want raw
    /// audio and for the format fallback.
    pub async fn wav16k(&self) -> Result<Vec<u8>> {
        let Some(pcm) = self.pcm16k.clone() else {
            return Err(TranscribeError::UnsupportedAudio(format!(
                "{} audio cannot be converted to WAV here",
                self.format.name()
            )));
        };
        tokio::task::spawn_blocking(move || wav::encode_wav(&pcm))
            .await
            .map_err(|e| TranscribeError::Internal(format!("the WAV encoder task failed: {e}")))?
            .map_err(|e| TranscribeError::Internal(e.to_string()))
    }
}

/// What helps the provider spell names and follow instructions about the message.
#[derive(Debug, Clone, Default)]
pub struct TranscriptionContext {
    /// The workspace's files as an indented tree (≤ 64 KB).
    pub file_tree: String,
    /// Comma-separated names and identifiers (≤ 800 chars), for providers that take a hint.
    pub vocabulary: String,
    /// Recent conversation lines, oldest first.
    pub conversation: Vec<String>,
    /// Agents the speaker may name.
    pub agents: Vec<String>,
    /// ISO-639-1 language of the speech, when known.
    pub language: Option<String>,
}

/// One provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTranscript {
    pub text: String,
    pub queue_message: bool,
    pub agent: Option<String>,
    /// `provider/model`, for the record.
    pub source: String,
}

/// A transcription service.
#[async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;
    async fn transcribe(
        &self,
        clip: &AudioClip,
        ctx: &TranscriptionContext,
    ) -> Result<ProviderTranscript>;
}

#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("cannot reach {provider}: {detail}")]
    Connect {
        provider: &'static str,
        detail: String,
    },
    #[error("{provider} did not answer within {}s", .after.as_secs())]
    Timeout {
        provider: &'static str,
        after: Duration,
    },
    #[error("{provider} answered HTTP {status}: {message}")]
    Status {
        provider: &'static str,
        status: u16,
        message: String,
    },
    #[error(
        "{provider} rejected the API key (HTTP {status}); set a valid {setting} (kimaki init)"
    )]
    Auth {
        provider: &'static str,
        status: u16,
        setting: &'static str,
    },
    #[error("{provider} refused to transcribe the message ({reason})")]
    Blocked {
        provider: &'static str,
        reason: String,
    },
    #[error("{provider} returned no transcription")]
    Empty { provider: &'static str },
    #[error("{provider} answered something kimaki cannot read: {detail}")]
    Protocol {
        provider: &'static str,
        detail: String,
    },
    #[error("unsupported audio: {0}")]
    UnsupportedAudio(String),
    #[error("the voice message cannot be decoded: {0}")]
    Decode(#[from] DecodeError),
    #[error("the voice message is {}; the limit is {}", human_size(*.size), human_size(*.limit))]
    TooLarge { size: u64, limit: u64 },
    #[error("the voice message lasts {secs:.0} s; the limit is {limit_secs} s")]
    TooLong { secs: f64, limit_secs: u64 },
    #[error("cannot read the voice message: {0}")]
    Read(String),
    #[error("the transcription command cannot start: {0}")]
    CommandMissing(String),
    #[error("the transcription command failed: {0}")]
    CommandFailed(String),
    #[error(
        "the built-in Whisper model is not usable ({0}); set KIMAKI_WHISPER_MODEL_DIR to an \
         unpacked CTranslate2 Whisper model (scripts/fetch-whisper-model.sh <dir> fetches tiny.en)"
    )]
    LocalModel(String),
    #[error("the built-in Whisper failed: {0}")]
    LocalFailed(String),
    #[error("no transcription provider is configured: {0}")]
    NoProvider(String),
    #[error("every transcription provider failed: {}", join_errors(.0))]
    AllFailed(Vec<(&'static str, TranscribeError)>),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, TranscribeError>;

/// `43 KB`, `24.6 MB`.
fn human_size(bytes: u64) -> String {
    const KB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KB * KB {
        format!("{:.1} MB", b / (KB * KB))
    } else {
        format!("{:.0} KB", (b / KB).round())
    }
}

fn join_errors(errors: &[(&'static str, TranscribeError)]) -> String {
    errors
        .iter()
        .map(|(name, e)| format!("{name}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// HTTP statuses worth trying again: rate limits and server-side trouble.
const RETRYABLE_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];

impl TranscribeError {
    /// Whether the same request might succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } => true,
            Self::Status { status, .. } => RETRYABLE_STATUSES.contains(status),
            Self::AllFailed(errors) => errors.iter().any(|(_, e)| e.is_retryable()),
            Self::Auth { .. }
            | Self::Blocked { .. }
            | Self::Empty { .. }
            | Self::Protocol { .. }
            | Self::UnsupportedAudio(_)
            | Self::Decode(_)
            | Self::TooLarge { .. }
            | Self::TooLong { .. }
            | Self::Read(_)
            | Self::CommandMissing(_)
            | Self::CommandFailed(_)
            | Self::LocalModel(_)
            | Self::LocalFailed(_)
            | Self::NoProvider(_)
            | Self::Internal(_) => false,
        }
    }

    /// A rate limit: the Gemini provider tries its next model first.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Self::Status { status: 429, .. })
    }

    /// The job failure the dispatcher records and the user sees.
    pub fn to_failure(&self) -> Failure {
        let kind = match self {
            Self::Connect { .. } => FailureKind::ModelUnreachable,
            Self::Timeout { .. } => FailureKind::Timeout,
            Self::Status { .. } | Self::Blocked { .. } | Self::Empty { .. } => FailureKind::Api,
            Self::CommandFailed(_) | Self::LocalFailed(_) => FailureKind::Api,
            Self::Auth { .. } => FailureKind::Auth,
            // No kind names "bad input"; Protocol ("something kimaki could not understand") is the
            // closest, and these are never retried.
            Self::Protocol { .. }
            | Self::UnsupportedAudio(_)
            | Self::Decode(_)
            | Self::TooLarge { .. }
            | Self::TooLong { .. } => FailureKind::Protocol,
            Self::CommandMissing(_) | Self::LocalModel(_) | Self::NoProvider(_) => {
                FailureKind::RunnerUnavailable
            }
            Self::Read(_) | Self::Internal(_) => FailureKind::Internal,
            Self::AllFailed(errors) => errors
                .first()
                .map_or(FailureKind::Api, |(_, e)| e.to_failure().kind),
        };
        Failure {
            kind,
            message: self.to_string(),
            retryable: self.is_retryable(),
        }
    }
}

/// `text` cut to the detail limit, with `secrets` and anything that looks like a token replaced.
pub(crate) fn clean_detail(text: &str, secrets: &[&str]) -> String {
    let secrets: Vec<String> = secrets.iter().map(|s| (*s).to_owned()).collect();
    let mut out = crate::adapters::process::redact(text.trim(), &secrets);
    if out.chars().count() > DETAIL_MAX_CHARS {
        out = out.chars().take(DETAIL_MAX_CHARS).collect::<String>() + "…";
    }
    out
}

/// A reqwest failure as a transcription error (URLs in reqwest errors carry no key: keys travel
/// in headers).
pub(crate) fn http_error(
    provider: &'static str,
    e: &reqwest::Error,
    timeout: Duration,
) -> TranscribeError {
    if e.is_timeout() {
        TranscribeError::Timeout {
            provider,
            after: timeout,
        }
    } else {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        TranscribeError::Connect {
            provider,
            detail: clean_detail(&detail, &[]),
        }
    }
}

/// The speaker's trailing "queue" (after the last sentence, as in "Run the tests. Queue."): the
/// message should wait for the running one. Returns the text without it.
pub fn spoken_queue_request(text: &str) -> (String, bool) {
    let t = text.trim();
    let body = t.trim_end_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace());
    const WORD: &str = "queue";
    let split = body.len().saturating_sub(WORD.len());
    if let (Some(rest), Some(last)) = (body.get(..split), body.get(split..)) {
        let before = rest.trim_end();
        if last.eq_ignore_ascii_case(WORD)
            && before.len() < rest.len()
            && before.ends_with(['.', ',', '!', '?', ';'])
        {
            let keep = before.trim_end_matches([',', ';']).trim_end();
            return (keep.to_owned(), true);
        }
    }
    (t.to_owned(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_failure_mapping() {
        let status = |s| TranscribeError::Status {
            provider: "gemini",
            status: s,
            message: "x".into(),
        };
        assert!(status(429).is_retryable());
        assert!(status(429).is_rate_limited());
        assert!(status(503).is_retryable());
        assert!(!status(400).is_retryable());
        let f = status(429).to_failure();
        assert_eq!((f.kind, f.retryable), (FailureKind::Api, true));
        let auth = TranscribeError::Auth {
            provider: "gemini",
            status: 401,
            setting: "GEMINI_API_KEY",
        };
        assert_eq!(auth.to_failure().kind, FailureKind::Auth);
        assert!(!auth.to_failure().retryable);
        let decode = TranscribeError::Decode(DecodeError::NotOpus { codec: "Vorbis" });
        let f = decode.to_failure();
        assert_eq!(
            f.message,
            "the voice message cannot be decoded: the Ogg file holds Vorbis, not Opus"
        );
        assert!(!f.retryable);
        let all = TranscribeError::AllFailed(vec![("gemini", auth), ("openai", status(503))]);
        assert!(all.is_retryable());
        assert_eq!(all.to_failure().kind, FailureKind::Auth);
        assert!(all
            .to_string()
            .contains("gemini: gemini rejected the API key"));
    }

    #[test]
    fn details_are_cut_and_scrubbed() {
        let long = "k".repeat(1_000);
        assert_eq!(
            clean_detail(&long, &[]).chars().count(),
            DETAIL_MAX_CHARS + 1
        );
        assert_eq!(
            clean_detail(" bad key AIzaSECRET ", &["AIzaSECRET"]),
            "bad key [redacted]"
        );
    }

    #[test]
    fn a_trailing_spoken_queue() {
        assert_eq!(
            spoken_queue_request("Run the tests. Queue."),
            ("Run the tests.".into(), true)
        );
        assert_eq!(
            spoken_queue_request("run the tests, queue"),
            ("run the tests".into(), true)
        );
        assert_eq!(
            spoken_queue_request("Deploy it! queue!"),
            ("Deploy it!".into(), true)
        );
        assert_eq!(
            spoken_queue_request("fix the queue."),
            ("fix the queue.".into(), false)
        );
        assert_eq!(spoken_queue_request("queue"), ("queue".into(), false));
        assert_eq!(
            spoken_queue_request("Reorder the message queue"),
            ("Reorder the message queue".into(), false)
        );
    }
}
