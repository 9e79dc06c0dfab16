//! A small Discord REST client for the calls whose failures the adapter must classify itself:
//! posting, editing and deleting messages, typing and thread creation. serenity's errors drop the
//! `Retry-After` header and the rate-limit headers (and with its ratelimiter disabled it never
//! retries), so these calls go through plain reqwest and return typed errors.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::config::Secret;

/// Sent with every request, as Discord asks bots to identify themselves.
const USER_AGENT: &str = concat!(
    "DiscordBot (https://github.com/kimaki-rs/kimaki, ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// Discord error codes the adapter reacts to.
pub mod code {
    pub const UNKNOWN_CHANNEL: i64 = 10003;
    pub const UNKNOWN_MESSAGE: i64 = 10008;
    pub const MISSING_ACCESS: i64 = 50001;
    pub const MISSING_PERMISSIONS: i64 = 50013;
    pub const ARCHIVED_THREAD: i64 = 50083;
    pub const THREAD_ALREADY_EXISTS: i64 = 160004;
}

/// Why a REST call failed, classified for the retry decision.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestError {
    #[error("rate limited for {retry_after:?} (global: {global})")]
    RateLimited { retry_after: Duration, global: bool },
    #[error("Discord answered {status}")]
    Server { status: u16 },
    #[error("request failed: {0}")]
    Network(String),
    #[error("Discord refused the request: {status} {code} {message}")]
    Rejected {
        status: u16,
        code: i64,
        message: String,
    },
}

impl RestError {
    /// Whether trying the same request again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RestError::RateLimited { .. } | RestError::Server { .. } | RestError::Network(_) => {
                true
            }
            RestError::Rejected { .. } => false,
        }
    }

    pub fn code(&self) -> Option<i64> {
        match self {
            RestError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A successful answer and what its rate-limit headers said.
#[derive(Debug, Clone)]
pub struct RestReply {
    pub body: Option<Value>,
    /// `X-RateLimit-Remaining` was 0: wait `reset_after` before the next call to this bucket.
    pub exhausted_for: Option<Duration>,
}

/// The client; cheap to clone.
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    /// `<base>/api/v10`.
    api: String,
    token: Secret,
}

impl Rest {
    pub fn new(http: reqwest::Client, base: &str, token: Secret) -> Self {
        Self {
            http,
            api: format!("{}/api/v10", base.trim_end_matches('/')),
            token,
        }
    }

    /// One call, no retry: the caller owns the retry policy.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<RestReply, RestError> {
        let mut req = self.request(method, path);
        req = match body {
            Some(b) => req.json(b),
            None => req.header(reqwest::header::CONTENT_LENGTH, "0"),
        };
        Self::finish(req).await
    }

    /// A multipart POST (file uploads), no retry. A form is consumed by sending, so a caller
    /// that retries builds it again.
    pub async fn post_multipart(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> Result<RestReply, RestError> {
        Self::finish(self.request(Method::POST, path).multipart(form)).await
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let token = self.token.expose();
        let auth = if token.starts_with("Bot ") {
            token.to_owned()
        } else {
            format!("Bot {token}")
        };
        self.http
            .request(method, format!("{}{path}", self.api))
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::USER_AGENT, USER_AGENT)
    }

    async fn finish(req: reqwest::RequestBuilder) -> Result<RestReply, RestError> {
        let resp = req
            .send()
            .await
            .map_err(|e| RestError::Network(describe_reqwest(&e)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .map_err(|e| RestError::Network(describe_reqwest(&e)))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            let remaining = header_f64(&headers, "x-ratelimit-remaining");
            let reset_after = header_f64(&headers, "x-ratelimit-reset-after");
            let exhausted_for = match (remaining, reset_after) {
                (Some(r), Some(after)) if r <= 0.0 => Some(secs(after)),
                _ => None,
            };
            return Ok(RestReply {
                body: json,
                exhausted_for,
            });
        }
        Err(classify(status, &headers, json.as_ref()))
    }

    /// GET without authentication (attachment CDN links carry their own signature).
    pub async fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, RestError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| RestError::Network(describe_reqwest(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(RestError::Rejected {
                status: status.as_u16(),
                code: 0,
                message: "the file could not be fetched".to_owned(),
            });
        }
        if resp.content_length().is_some_and(|n| n > max_bytes) {
            return Err(RestError::Rejected {
                status: 413,
                code: 0,
                message: "the file is too large".to_owned(),
            });
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RestError::Network(describe_reqwest(&e)))?;
        if bytes.len() as u64 > max_bytes {
            return Err(RestError::Rejected {
                status: 413,
                code: 0,
                message: "the file is too large".to_owned(),
            });
        }
        Ok(bytes.to_vec())
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 3600.0))
}

fn header_f64(h: &reqwest::header::HeaderMap, name: &str) -> Option<f64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn classify(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: Option<&Value>,
) -> RestError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Discord puts seconds in both; the body has the precise float. Take the longer.
        let from_body = body
            .and_then(|b| b.get("retry_after"))
            .and_then(Value::as_f64);
        let from_header = header_f64(headers, "retry-after");
        let after = from_body.into_iter().chain(from_header).fold(0.0, f64::max);
        let global = body
            .and_then(|b| b.get("global"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
            || headers
                .get("x-ratelimit-global")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        return RestError::RateLimited {
            retry_after: secs(if after > 0.0 { after } else { 1.0 }),
            global,
        };
    }
    if status.is_server_error() {
        return RestError::Server {
            status: status.as_u16(),
        };
    }
    RestError::Rejected {
        status: status.as_u16(),
        code: body
            .and_then(|b| b.get("code"))
            .and_then(Value::as_i64)
            .unwrap_or(0),
        message: body
            .and_then(|b| b.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        // reqwest's Display includes the URL, which carries no secret for these routes.
        e.to_string()
    }
}
