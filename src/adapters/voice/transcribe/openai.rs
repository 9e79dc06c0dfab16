//! OpenAI `POST /v1/audio/transcriptions`: the original bytes as a multipart file part, the model,
//! `response_format=json`, an optional language and a vocabulary hint as `prompt`. The answer is
//! text only, so a spoken trailing "queue" is recognised here and no agent is ever named. Works
//! with OpenAI-compatible servers through `KIMAKI_OPENAI_BASE_URL`.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use super::{
    clean_detail, http_error, spoken_queue_request, AudioClip, Provider, ProviderTranscript,
    TranscribeError, TranscriptionContext,
};
use crate::adapters::voice::context::VOCABULARY_CAP;
use crate::config::Secret;

pub const PROVIDER: &str = "openai";

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com";

/// Cheapest of the models that accept Ogg/Opus and a prompt.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini-transcribe";

/// The endpoint's upload limit.
pub const MAX_UPLOAD_BYTES: usize = 25 * 1024 * 1024;

const KEY_SETTING: &str = "OPENAI_API_KEY";

/// Introduces the hint; the endpoint treats `prompt` as preceding text, not as instructions.
const PROMPT_PREFIX: &str = "Vocabulary: ";

#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    pub base_url: String,
    pub api_key: Secret,
    /// `gpt-4o-mini-transcribe`, `gpt-4o-transcribe` or `whisper-1`.
    pub model: String,
    pub timeout: Duration,
}

pub struct OpenAiProvider {
    client: reqwest::Client,
    config: OpenAiConfig,
}

impl OpenAiProvider {
    pub fn new(config: OpenAiConfig, client: reqwest::Client) -> Self {
        Self { client, config }
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn transcribe(
        &self,
        clip: &AudioClip,
        ctx: &TranscriptionContext,
    ) -> Result<ProviderTranscript, TranscribeError> {
        if clip.bytes.len() > MAX_UPLOAD_BYTES {
            return Err(TranscribeError::UnsupportedAudio(format!(
                "OpenAI takes at most {} MB per file",
                MAX_UPLOAD_BYTES / (1024 * 1024)
            )));
        }
        // Some compatible servers reject `.oga`; name the part by what the bytes are.
        let filename = format!("voice-message.{}", clip.format.extension());
        let file = Part::bytes(clip.bytes.to_vec())
            .file_name(filename)
            .mime_str(&clip.mime)
            .map_err(|e| TranscribeError::UnsupportedAudio(format!("bad MIME type: {e}")))?;
        let mut form = Form::new()
            .part("file", file)
            .text("model", self.config.model.clone())
            .text("response_format", "json");
        if let Some(lang) = ctx.language.as_deref().filter(|l| !l.is_empty()) {
            form = form.text("language", lang.to_owned());
        }
        let prompt = vocabulary_prompt(&ctx.vocabulary);
        if !prompt.is_empty() {
            form = form.text("prompt", prompt);
        }
        let url = format!(
            "{}/v1/audio/transcriptions",
            self.config.base_url.trim_end_matches('/')
        );
        let response = self
            .client
            .post(&url)
            .bearer_auth(self.config.api_key.expose())
            .timeout(self.config.timeout)
            .multipart(form)
            .send()
            .await
            .map_err(|e| http_error(PROVIDER, &e, self.config.timeout))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| http_error(PROVIDER, &e, self.config.timeout))?;
        if status != 200 {
            return Err(status_error(status, &body, self.config.api_key.expose()));
        }
        let value: Value = serde_json::from_str(&body).map_err(|e| TranscribeError::Protocol {
            provider: PROVIDER,
            detail: format!("the answer is not JSON ({e})"),
        })?;
        let Some(text) = value.get("text").and_then(Value::as_str) else {
            return Err(TranscribeError::Protocol {
                provider: PROVIDER,
                detail: "the answer has no text field".into(),
            });
        };
        let (text, queue_message) = spoken_queue_request(text);
        Ok(ProviderTranscript {
            text,
            queue_message,
            agent: None,
            source: format!("{PROVIDER}/{}", self.config.model),
        })
    }
}

/// The hint as the `prompt` field, within the 800-character budget.
pub fn vocabulary_prompt(vocabulary: &str) -> String {
    if vocabulary.trim().is_empty() {
        return String::new();
    }
    let budget = VOCABULARY_CAP - PROMPT_PREFIX.len();
    let mut words = String::new();
    for w in vocabulary.split(", ") {
        let extra = if words.is_empty() {
            w.len()
        } else {
            w.len() + 2
        };
        if words.len() + extra > budget {
            break;
        }
        if !words.is_empty() {
            words.push_str(", ");
        }
        words.push_str(w);
    }
    if words.is_empty() {
        return String::new();
    }
    format!("{PROMPT_PREFIX}{words}")
}

fn status_error(status: u16, body: &str, key: &str) -> TranscribeError {
    if matches!(status, 401 | 403) {
        return TranscribeError::Auth {
            provider: PROVIDER,
            status,
            setting: KEY_SETTING,
        };
    }
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(Value::as_str)
        .unwrap_or(body);
    TranscribeError::Status {
        provider: PROVIDER,
        status,
        message: clean_detail(message, &[key]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_stays_within_800_chars() {
        let long: Vec<String> = (0..500).map(|i| format!("identifier_{i}")).collect();
        let p = vocabulary_prompt(&long.join(", "));
        assert!(p.len() <= VOCABULARY_CAP, "{}", p.len());
        assert!(p.starts_with("Vocabulary: identifier_0, identifier_1"));
        assert!(!p.ends_with(", "));
        assert_eq!(vocabulary_prompt(""), "");
    }

    #[test]
    fn errors() {
        assert!(matches!(
            status_error(401, "{}", "k"),
            TranscribeError::Auth { .. }
        ));
        let e = status_error(
            400,
            r#"{"error":{"message":"Invalid file format. Supported formats: ['flac', 'ogg']"}}"#,
            "k",
        );
        assert_eq!(
            e.to_string(),
            "openai answered HTTP 400: Invalid file format. Supported formats: ['flac', 'ogg']"
        );
        assert!(!e.is_retryable());
        let leaked = status_error(
            500,
            "Incorrect API key provided: sk-proj-abcdefghijklmnop",
            "sk-proj-abcdefghijklmnop",
        );
        assert!(!leaked.to_string().contains("abcdefghijklmnop"), "{leaked}");
    }
}
