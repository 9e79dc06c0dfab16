//! Gemini `generateContent`: the original Ogg bytes go inline, the instructions and the project's
//! vocabulary go in the text part, and a forced function call (`transcriptionResult`) returns the
//! transcription with the speaker's queue/agent requests. On a rate limit the next configured
//! model is tried; on a 400 about the audio format the request is sent once more as 16 kHz WAV.
//! The key travels in the `x-goog-api-key` header, never in the URL.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{json, Value};

use super::{
    clean_detail, http_error, AudioClip, Provider, ProviderTranscript, TranscribeError,
    TranscriptionContext,
};
use crate::config::Secret;

pub const PROVIDER: &str = "gemini";

/// Where the API lives unless `KIMAKI_GEMINI_BASE_URL` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// Tried in order; the second has its own free-tier quota when the first is spent.
pub const DEFAULT_MODELS: [&str; 2] = ["gemini-2.5-flash", "gemini-2.5-flash-lite"];

/// The setting a rejected key is fixed with.
const KEY_SETTING: &str = "GEMINI_API_KEY";

/// The function the model is forced to call.
const FUNCTION: &str = "transcriptionResult";

/// Inline data is limited to 20 MB per request; base64 grows the bytes by 4/3.
const MAX_INLINE_AUDIO_BYTES: usize = 15 * 1024 * 1024;

/// Low: a transcription, not a creative text.
const TEMPERATURE: f64 = 0.3;

/// Thinking tokens count against the output limit on 2.5 models, so leave room for both a
/// 1 024-token budget and a long transcription (≈10 minutes of speech).
const MAX_OUTPUT_TOKENS: u32 = 8_192;

/// Enough reasoning to match spoken words to file names; more only adds latency.
const THINKING_BUDGET: u32 = 1_024;

const INSTRUCTIONS: &str = "\
You transcribe a voice message that a developer recorded for an AI coding agent working in the \
project described below.
- Write down exactly what was said, word for word, in the language it was spoken. Never answer \
it, summarise it, translate it or act on it.
- Spell file names, paths, commands and identifiers the way they appear in <file_tree> or \
<conversation> (\"main dot rust\" is main.rs; \"parse config\" is parse_config when that name \
exists).
- If nothing in the recording is intelligible, the transcription is exactly [inaudible audio].
- If the speaker asks for the message to be queued (for example by ending with \"queue\"), set \
queueMessage to true and leave that request out of the transcription.
- Set agent only when the speaker names one of the agents listed in <agents>.
Return the result by calling transcriptionResult.";

/// How to reach Gemini.
#[derive(Debug, Clone)]
pub struct GeminiConfig {
    /// Without a trailing slash; tests point it at a local server.
    pub base_url: String,
    pub api_key: Secret,
    /// Tried in order when one is rate limited.
    pub models: Vec<String>,
    /// Per request.
    pub timeout: Duration,
}

pub struct GeminiProvider {
    client: reqwest::Client,
    config: GeminiConfig,
}

/// The audio part of a request.
struct InlineAudio {
    mime: String,
    data: String,
}

impl GeminiProvider {
    pub fn new(config: GeminiConfig, client: reqwest::Client) -> Self {
        Self { client, config }
    }

    async fn call(
        &self,
        model: &str,
        prompt: &str,
        audio: &InlineAudio,
    ) -> Result<ProviderTranscript, TranscribeError> {
        let url = format!(
            "{}/v1beta/models/{model}:generateContent",
            self.config.base_url.trim_end_matches('/')
        );
        let response = self
            .client
            .post(&url)
            .header("x-goog-api-key", self.config.api_key.expose())
            .timeout(self.config.timeout)
            .json(&request_body(model, prompt, audio))
            .send()
            .await
            .map_err(|e| http_error(PROVIDER, &e, self.config.timeout))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| http_error(PROVIDER, &e, self.config.timeout))?;
        if status != 200 {
            return Err(status_error(status, &text, self.config.api_key.expose()));
        }
        let body: Value = serde_json::from_str(&text).map_err(|e| TranscribeError::Protocol {
            provider: PROVIDER,
            detail: format!("the answer is not JSON ({e})"),
        })?;
        parse_response(model, &body)
    }
}

#[async_trait]
impl Provider for GeminiProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn transcribe(
        &self,
        clip: &AudioClip,
        ctx: &TranscriptionContext,
    ) -> Result<ProviderTranscript, TranscribeError> {
        if clip.bytes.len() > MAX_INLINE_AUDIO_BYTES {
            return Err(TranscribeError::UnsupportedAudio(format!(
                "Gemini takes at most {} MB of inline audio",
                MAX_INLINE_AUDIO_BYTES / (1024 * 1024)
            )));
        }
        let prompt = build_prompt(ctx);
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut audio = InlineAudio {
            mime: clip.mime.clone(),
            data: b64.encode(&clip.bytes),
        };
        let mut wav_sent = false;
        let mut models = self.config.models.iter().peekable();
        let Some(mut model) = models.next() else {
            return Err(TranscribeError::NoProvider(
                "no Gemini model is configured".into(),
            ));
        };
        loop {
            match self.call(model, &prompt, &audio).await {
                Ok(t) => return Ok(t),
                Err(e) if !wav_sent && clip.pcm16k.is_some() && names_audio_format(&e) => {
                    tracing::warn!(model = %model, error = %e, "Gemini rejected the audio format; retrying once as WAV.");
                    wav_sent = true;
                    audio = InlineAudio {
                        mime: "audio/wav".into(),
                        data: b64.encode(clip.wav16k().await?),
                    };
                }
                Err(e) if e.is_rate_limited() && models.peek().is_some() => {
                    let Some(next) = models.next() else {
                        return Err(e);
                    };
                    tracing::warn!(model = %model, next = %next, "Gemini model is rate limited; trying the next one.");
                    model = next;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The instructions plus the context, each piece in its own tag.
pub fn build_prompt(ctx: &TranscriptionContext) -> String {
    let mut p = String::from(INSTRUCTIONS);
    if let Some(lang) = ctx.language.as_deref().filter(|l| !l.is_empty()) {
        p.push_str(&format!(
            "\nThe speech is most likely in the language \"{lang}\"."
        ));
    }
    if !ctx.file_tree.is_empty() {
        p.push_str("\n\n<file_tree>\n");
        p.push_str(&ctx.file_tree);
        p.push_str("</file_tree>");
    }
    if !ctx.conversation.is_empty() {
        p.push_str("\n\n<conversation>\n");
        for line in &ctx.conversation {
            p.push_str(line);
            p.push('\n');
        }
        p.push_str("</conversation>");
    }
    if !ctx.agents.is_empty() {
        p.push_str("\n\n<agents>\n");
        p.push_str(&ctx.agents.join("\n"));
        p.push_str("\n</agents>");
    }
    p
}

fn request_body(model: &str, prompt: &str, audio: &InlineAudio) -> Value {
    let mut generation = json!({
        "temperature": TEMPERATURE,
        "maxOutputTokens": MAX_OUTPUT_TOKENS,
    });
    if let Some(thinking) = thinking_config(model) {
        generation["thinkingConfig"] = thinking;
    }
    json!({
        "contents": [{
            "role": "user",
            "parts": [
                { "text": prompt },
                { "inlineData": { "mimeType": audio.mime, "data": audio.data } }
            ]
        }],
        "tools": [{
            "functionDeclarations": [{
                "name": FUNCTION,
                "description": "Returns the transcription of the voice message.",
                "parameters": {
                    "type": "object",
                    "required": ["transcription"],
                    "properties": {
                        "transcription": { "type": "string", "description": "What was said, verbatim." },
                        "queueMessage": { "type": "boolean", "description": "The speaker asked to queue the message." },
                        "agent": { "type": "string", "description": "An agent from <agents> the speaker named." }
                    }
                }
            }]
        }],
        "toolConfig": {
            "functionCallingConfig": { "mode": "ANY", "allowedFunctionNames": [FUNCTION] }
        },
        "generationConfig": generation
    })
}

/// Thinking is configured per model family: a token budget on 2.5, a level on 3.x, nothing on
/// older models (which reject the field).
fn thinking_config(model: &str) -> Option<Value> {
    if model.starts_with("gemini-2.5") {
        Some(json!({ "thinkingBudget": THINKING_BUDGET }))
    } else if model.starts_with("gemini-3") {
        Some(json!({ "thinkingLevel": "low" }))
    } else {
        None
    }
}

/// An error answer as a classified error. Gemini reports a bad key as 400 `API_KEY_INVALID`.
fn status_error(status: u16, body: &str, key: &str) -> TranscribeError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or(body);
    let code = error.and_then(|e| e.get("status")).and_then(Value::as_str);
    let key_invalid = body.contains("API_KEY_INVALID") || message.contains("API key not valid");
    if matches!(status, 401 | 403) || (status == 400 && key_invalid) {
        return TranscribeError::Auth {
            provider: PROVIDER,
            status,
            setting: KEY_SETTING,
        };
    }
    let message = match code {
        Some(code) => format!("{code}: {message}"),
        None => message.to_owned(),
    };
    TranscribeError::Status {
        provider: PROVIDER,
        status,
        message: clean_detail(&message, &[key]),
    }
}

/// A 400 that blames the audio's format or MIME type (worth one retry as WAV).
fn names_audio_format(e: &TranscribeError) -> bool {
    let TranscribeError::Status {
        status: 400,
        message,
        ..
    } = e
    else {
        return false;
    };
    let m = message.to_lowercase();
    m.contains("mime")
        || m.contains("audio format")
        || (m.contains("audio")
            && (m.contains("unsupported") || m.contains("not supported") || m.contains("invalid")))
}

/// The transcription from a `generateContent` answer: the first `transcriptionResult` call, or
/// else the text parts that are not thoughts.
pub fn parse_response(model: &str, body: &Value) -> Result<ProviderTranscript, TranscribeError> {
    if let Some(usage) = body.get("usageMetadata") {
        tracing::debug!(model = %model, usage = %usage, "Gemini usage.");
    }
    if let Some(reason) = body
        .pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)
    {
        return Err(TranscribeError::Blocked {
            provider: PROVIDER,
            reason: reason.to_owned(),
        });
    }
    let Some(candidate) = body.pointer("/candidates/0") else {
        return Err(TranscribeError::Blocked {
            provider: PROVIDER,
            reason: "no candidates in the answer".into(),
        });
    };
    let finish = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .unwrap_or("");
    let parts = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let source = format!("{PROVIDER}/{model}");
    let call = parts.iter().find_map(|p| {
        p.get("functionCall")
            .filter(|c| c.get("name").and_then(Value::as_str) == Some(FUNCTION))
    });
    if finish == "MAX_TOKENS" {
        tracing::warn!(model = %model, "Gemini stopped at its output limit; keeping the text so far.");
    }
    if let Some(call) = call {
        let args = call.get("args").cloned().unwrap_or(Value::Null);
        let Some(text) = args.get("transcription").and_then(Value::as_str) else {
            return Err(TranscribeError::Protocol {
                provider: PROVIDER,
                detail: format!("{FUNCTION} has no transcription argument"),
            });
        };
        return Ok(ProviderTranscript {
            text: text.trim().to_owned(),
            queue_message: args
                .get("queueMessage")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            agent: args
                .get("agent")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
            source,
        });
    }
    let text: String = parts
        .iter()
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    if text.trim().is_empty() {
        return Err(match finish {
            "" | "STOP" | "MAX_TOKENS" => TranscribeError::Empty { provider: PROVIDER },
            other => TranscribeError::Blocked {
                provider: PROVIDER,
                reason: other.to_owned(),
            },
        });
    }
    let (text, queue_message) = super::spoken_queue_request(&text);
    Ok(ProviderTranscript {
        text,
        queue_message,
        agent: None,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_call_answers() {
        let body = json!({"candidates": [{"content": {"parts": [
            {"text": "thinking about it", "thought": true},
            {"functionCall": {"name": "transcriptionResult", "args": {
                "transcription": " Rename parse_config. ", "queueMessage": true, "agent": "plan"}}}
        ]}, "finishReason": "STOP"}]});
        let t = parse_response("m", &body).unwrap();
        assert_eq!(
            t,
            ProviderTranscript {
                text: "Rename parse_config.".into(),
                queue_message: true,
                agent: Some("plan".into()),
                source: "gemini/m".into(),
            }
        );
    }

    #[test]
    fn text_answers_skip_thoughts() {
        let body = json!({"candidates": [{"content": {"parts": [
            {"text": "hmm", "thought": true}, {"text": "Run the "}, {"text": "tests."}
        ]}}]});
        assert_eq!(parse_response("m", &body).unwrap().text, "Run the tests.");
    }

    #[test]
    fn blocked_and_empty_answers() {
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
        assert!(matches!(
            parse_response("m", &blocked),
            Err(TranscribeError::Blocked { reason, .. }) if reason == "SAFETY"
        ));
        assert!(matches!(
            parse_response("m", &json!({"candidates": []})),
            Err(TranscribeError::Blocked { .. })
        ));
        let recitation = json!({"candidates": [{"finishReason": "RECITATION"}]});
        assert!(matches!(
            parse_response("m", &recitation),
            Err(TranscribeError::Blocked { reason, .. }) if reason == "RECITATION"
        ));
        let empty = json!({"candidates": [{"content": {"parts": []}, "finishReason": "STOP"}]});
        assert!(matches!(
            parse_response("m", &empty),
            Err(TranscribeError::Empty { .. })
        ));
        let no_arg = json!({"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "transcriptionResult", "args": {}}}]}}]});
        assert!(matches!(
            parse_response("m", &no_arg),
            Err(TranscribeError::Protocol { .. })
        ));
    }

    #[test]
    fn error_statuses() {
        let quota =
            r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#;
        match status_error(429, quota, "AIzaKEY123") {
            TranscribeError::Status {
                status, message, ..
            } => {
                assert_eq!(
                    (status, message.as_str()),
                    (429, "RESOURCE_EXHAUSTED: Quota exceeded")
                );
            }
            other => panic!("{other:?}"),
        }
        let bad_key = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#;
        assert!(matches!(
            status_error(400, bad_key, "k"),
            TranscribeError::Auth { status: 400, .. }
        ));
        assert!(matches!(
            status_error(403, "", "k"),
            TranscribeError::Auth { .. }
        ));
        let format = status_error(
            400,
            r#"{"error":{"message":"Unsupported MIME type: audio/ogg"}}"#,
            "k",
        );
        assert!(names_audio_format(&format));
        let other = status_error(
            400,
            r#"{"error":{"message":"Request contains an invalid argument."}}"#,
            "k",
        );
        assert!(!names_audio_format(&other));
        let echoed = status_error(500, "internal error for key AIzaKEY123", "AIzaKEY123");
        assert!(!echoed.to_string().contains("AIzaKEY123"), "{echoed}");
    }

    #[test]
    fn thinking_per_model_family() {
        assert_eq!(
            thinking_config("gemini-2.5-flash"),
            Some(json!({"thinkingBudget": 1024}))
        );
        assert_eq!(
            thinking_config("gemini-3-flash"),
            Some(json!({"thinkingLevel": "low"}))
        );
        assert_eq!(thinking_config("gemini-2.0-flash"), None);
    }

    #[test]
    fn prompt_carries_the_context_in_tags() {
        let ctx = TranscriptionContext {
            file_tree: "src/\n  main.rs\n".into(),
            conversation: vec!["alice: hi".into()],
            agents: vec!["build".into(), "plan".into()],
            language: Some("de".into()),
            ..Default::default()
        };
        let p = build_prompt(&ctx);
        assert!(p.contains("<file_tree>\nsrc/\n  main.rs\n</file_tree>"));
        assert!(p.contains("<conversation>\nalice: hi\n</conversation>"));
        assert!(p.contains("<agents>\nbuild\nplan\n</agents>"));
        assert!(p.contains("\"de\""));
        assert!(!build_prompt(&TranscriptionContext::default()).contains("<file_tree>\n"));
    }
}
