//! The OpenCode HTTP API calls kimaki makes, each with its own deadline (a request that reaches a
//! booting server is accepted and never answered). Every call names the project directory, which
//! selects the OpenCode instance (and so the project's own `opencode.json`) on the shared server.
//! The event stream lives in `stream.rs`, on a separate client.

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

use super::error::{OpencodeError, Result};

/// Aborts and answers are small and must not hold up a cancel.
pub(super) const QUICK_TIMEOUT: Duration = Duration::from_secs(2);
/// Error bodies kept in messages.
const BODY_EXCERPT: usize = 500;
/// Messages read per page when reconciling; one turn rarely has more.
pub(super) const MESSAGE_PAGE: usize = 50;

/// A client for one server.
#[derive(Clone)]
pub(super) struct Api {
    http: reqwest::Client,
    base: String,
    request_timeout: Duration,
}

impl Api {
    pub(super) fn new(base: String, request_timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .use_rustls_tls() // never parses the system CA bundle (plain HTTP anyway)
            // 127.0.0.1 only: a configured HTTP proxy must never see these requests.
            .no_proxy()
            .connect_timeout(QUICK_TIMEOUT)
            .build()
            .map_err(|source| OpencodeError::Transport {
                what: "building the HTTP client".to_owned(),
                source,
            })?;
        Ok(Self {
            http,
            base,
            request_timeout,
        })
    }

    /// `GET /global/health` → the server's version once it answers healthy.
    pub(super) async fn health(&self, timeout: Duration) -> Result<String> {
        let body = self
            .send(
                "GET /global/health",
                self.request(Method::GET, "/global/health", None),
                timeout,
            )
            .await?;
        if body["healthy"] != true {
            return Err(OpencodeError::Decode {
                what: "GET /global/health".to_owned(),
                detail: format!("not healthy: {body}"),
            });
        }
        Ok(body["version"].as_str().unwrap_or_default().to_owned())
    }

    pub(super) async fn create_session(&self, dir: &str) -> Result<String> {
        let what = "POST /session";
        let body = self
            .send(
                what,
                self.request(Method::POST, "/session", Some(dir))
                    .json(&json!({})),
                self.request_timeout,
            )
            .await?;
        body["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| OpencodeError::Decode {
                what: what.to_owned(),
                detail: "no session id".to_owned(),
            })
    }

    /// Whether the session exists.
    pub(super) async fn session_exists(&self, dir: &str, id: &str) -> Result<bool> {
        let path = format!("/session/{id}");
        match self
            .send(
                "GET /session/{id}",
                self.request(Method::GET, &path, Some(dir)),
                self.request_timeout,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn prompt(&self, dir: &str, id: &str, body: &Value) -> Result<()> {
        let path = format!("/session/{id}/prompt_async");
        self.send(
            "POST /session/{id}/prompt_async",
            self.request(Method::POST, &path, Some(dir)).json(body),
            self.request_timeout,
        )
        .await
        .map(drop)
    }

    pub(super) async fn abort(&self, dir: &str, id: &str, timeout: Duration) -> Result<()> {
        let path = format!("/session/{id}/abort");
        self.send(
            "POST /session/{id}/abort",
            self.request(Method::POST, &path, Some(dir)),
            timeout,
        )
        .await
        .map(drop)
    }

    /// Whether OpenCode reports the session idle (`GET /session/status` lists busy ones only).
    pub(super) async fn is_idle(&self, dir: &str, id: &str) -> Result<bool> {
        let body = self
            .send(
                "GET /session/status",
                self.request(Method::GET, "/session/status", Some(dir)),
                self.request_timeout,
            )
            .await?;
        Ok(match body[id]["type"].as_str() {
            None | Some("idle") => true,
            Some(_) => false,
        })
    }

    /// The newest `MESSAGE_PAGE` messages before `cursor` (oldest first), and the cursor for the
    /// page before them, if any.
    pub(super) async fn messages(
        &self,
        dir: &str,
        id: &str,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let what = "GET /session/{id}/message";
        let path = format!("/session/{id}/message");
        let limit = MESSAGE_PAGE.to_string();
        let mut request = self
            .request(Method::GET, &path, Some(dir))
            .query(&[("limit", limit.as_str())]);
        if let Some(cursor) = cursor {
            request = request.query(&[("before", cursor)]);
        }
        let response = self.response(what, request, self.request_timeout).await?;
        let next = response
            .headers()
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let body = self.json(what, response).await?;
        match body {
            Value::Array(messages) => Ok((messages, next)),
            other => Err(OpencodeError::Decode {
                what: what.to_owned(),
                detail: format!("expected a list, got {}", excerpt(&other.to_string())),
            }),
        }
    }

    /// The ids of the session's sub-agent sessions.
    pub(super) async fn children(&self, dir: &str, id: &str) -> Result<Vec<String>> {
        let path = format!("/session/{id}/children");
        let body = self
            .send(
                "GET /session/{id}/children",
                self.request(Method::GET, &path, Some(dir)),
                self.request_timeout,
            )
            .await?;
        Ok(body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect())
    }

    /// Pending permission requests (`GET /permission`) or questions (`GET /question`).
    pub(super) async fn pending(&self, dir: &str, kind: PendingKind) -> Result<Vec<Value>> {
        let (what, path) = match kind {
            PendingKind::Permissions => ("GET /permission", "/permission"),
            PendingKind::Questions => ("GET /question", "/question"),
        };
        let body = self
            .send(
                what,
                self.request(Method::GET, path, Some(dir)),
                self.request_timeout,
            )
            .await?;
        Ok(body.as_array().cloned().unwrap_or_default())
    }

    pub(super) async fn reply_permission(
        &self,
        dir: &str,
        request: &str,
        reply: &str,
    ) -> Result<()> {
        let path = format!("/permission/{request}/reply");
        self.send(
            "POST /permission/{id}/reply",
            self.request(Method::POST, &path, Some(dir))
                .json(&json!({ "reply": reply })),
            QUICK_TIMEOUT,
        )
        .await
        .map(drop)
    }

    pub(super) async fn reply_question(
        &self,
        dir: &str,
        request: &str,
        answers: &[Vec<String>],
    ) -> Result<()> {
        let path = format!("/question/{request}/reply");
        self.send(
            "POST /question/{id}/reply",
            self.request(Method::POST, &path, Some(dir))
                .json(&json!({ "answers": answers })),
            QUICK_TIMEOUT,
        )
        .await
        .map(drop)
    }

    pub(super) async fn reject_question(&self, dir: &str, request: &str) -> Result<()> {
        let path = format!("/question/{request}/reject");
        self.send(
            "POST /question/{id}/reject",
            self.request(Method::POST, &path, Some(dir)),
            QUICK_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// The context window of `provider/model` as the project's configuration sees it.
    pub(super) async fn context_limit(
        &self,
        dir: &str,
        provider: &str,
        model: &str,
    ) -> Result<Option<u64>> {
        let body = self
            .send(
                "GET /config/providers",
                self.request(Method::GET, "/config/providers", Some(dir)),
                self.request_timeout,
            )
            .await?;
        Ok(body["providers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["id"].as_str() == Some(provider))
            .and_then(|p| p["models"][model]["limit"]["context"].as_u64()))
    }

    fn request(&self, method: Method, path: &str, dir: Option<&str>) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match dir {
            Some(dir) => request.query(&[("directory", dir)]),
            None => request,
        }
    }

    async fn send(&self, what: &str, request: RequestBuilder, timeout: Duration) -> Result<Value> {
        let response = self.response(what, request, timeout).await?;
        self.json(what, response).await
    }

    async fn response(
        &self,
        what: &str,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response> {
        let response = request
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| transport(what, timeout, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(OpencodeError::Status {
            what: what.to_owned(),
            status: status.as_u16(),
            body: excerpt(&body),
        })
    }

    async fn json(&self, what: &str, response: reqwest::Response) -> Result<Value> {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport(what, self.request_timeout, e))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| OpencodeError::Decode {
            what: what.to_owned(),
            detail: e.to_string(),
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum PendingKind {
    Permissions,
    Questions,
}

fn transport(what: &str, timeout: Duration, e: reqwest::Error) -> OpencodeError {
    if e.is_timeout() {
        OpencodeError::Timeout {
            what: what.to_owned(),
            timeout,
        }
    } else {
        OpencodeError::Transport {
            what: what.to_owned(),
            source: e,
        }
    }
}

fn excerpt(text: &str) -> String {
    super::map::truncate(text.trim(), BODY_EXCERPT)
}
