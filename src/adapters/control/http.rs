//! The optional local HTTP API: the same control API as the Unix socket, over HTTP on 127.0.0.1
//! for watchdogs and local tools. Off by default.
//!
//! - `GET /api/health` — no token, no secrets: up, version, adapters, queue depth.
//! - `POST /api/agent/run` — bearer token; enqueue a prompt for a registered workspace.
//! - `GET /api/agent/ws?jobId=…` — bearer token; a websocket streaming that job's events.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::protocol::{Call, CallError, ControlHandler, SendReceipt, SendRequest, SendTarget};
use crate::config::Secret;

/// Largest accepted request body; prompts are text, files go through `kimaki send --file`.
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the local API cannot listen on 127.0.0.1:{port}: {source} (is another program using it? set AGENT_API_PORT)")]
    Bind { port: u16, source: std::io::Error },
    #[error(
        "the local API is enabled but has no token; run `kimaki init` to generate KIMAKI_API_TOKEN"
    )]
    NoToken,
}

struct Api {
    handler: Arc<dyn ControlHandler>,
    token: Secret,
}

/// A bound, not yet serving, API.
pub struct HttpApi {
    listener: tokio::net::TcpListener,
    app: Router,
}

impl HttpApi {
    /// Binds `127.0.0.1:port` (never another interface). Port 0 picks a free port.
    pub async fn bind(
        port: u16,
        token: Option<Secret>,
        handler: Arc<dyn ControlHandler>,
    ) -> Result<Self, HttpError> {
        let token = token.ok_or(HttpError::NoToken)?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .map_err(|source| HttpError::Bind { port, source })?;
        let api = Arc::new(Api { handler, token });
        let app = Router::new()
            .route("/api/health", get(health))
            .route("/api/agent/run", post(run))
            .route("/api/agent/ws", get(stream_events))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(api);
        Ok(Self { listener, app })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) {
        let result = axum::serve(self.listener, self.app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "Local API stopped with an error.");
        }
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

fn from_call_error(e: CallError) -> Response {
    let status = match e.code {
        "bad_request" | "not_found" => StatusCode::BAD_REQUEST,
        "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.code, e.message)
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn authorized(api: &Api, headers: &HeaderMap, query_token: Option<&str>) -> bool {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or(query_token);
    let Some(given) = given else { return false };
    let expected = api.token.expose().as_bytes();
    let given = given.as_bytes();
    let mut diff = u8::from(expected.len() != given.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ given.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

async fn health(State(api): State<Arc<Api>>) -> Response {
    let s = api.handler.status().await;
    Json(serde_json::json!({
        "status": "ok",
        "version": s.version,
        "pid": s.pid,
        "uptimeSecs": s.uptime_secs,
        "adapters": s.adapters.iter().map(|a| serde_json::json!({"name": a.name, "state": a.state})).collect::<Vec<_>>(),
        "queue": {"queued": s.queue.queued, "running": s.queue.running},
    }))
    .into_response()
}

/// The body of `POST /api/agent/run`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunBody {
    /// A registered project: its directory, name or id.
    workspace: String,
    prompt: String,
    /// Continue (or start) the named session instead of a new one.
    #[serde(default)]
    session_key: Option<String>,
    /// `opencode`, `codex` or `claude`.
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    /// `new` (default) starts a fresh session; `continue` reuses `sessionKey`'s.
    #[serde(default)]
    mode: Option<String>,
}

async fn run(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Option<Json<RunBody>>,
) -> Response {
    if !authorized(&api, &headers, None) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        );
    }
    let Some(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected a JSON body with workspace and prompt",
        );
    };
    let continuing = body.mode.as_deref() == Some("continue");
    let target = match (&body.session_key, continuing) {
        (Some(key), true) => SendTarget::NamedSession {
            project: body.workspace.clone(),
            session: format!("api:{key}"),
        },
        _ => SendTarget::Project(body.workspace.clone()),
    };
    let req = SendRequest {
        target,
        prompt: body.prompt,
        files: Vec::new(),
        runner: body.agent_id,
        model: body.model,
        agent: None,
        interrupt: false,
        source: Some(crate::core::JobSource::Api),
        worktree: None,
        name: None,
        notify_only: false,
    };
    match api.handler.call(Call::Send(req)).await {
        Ok(v) => match serde_json::from_value::<SendReceipt>(v) {
            Ok(r) => (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({"jobId": r.job_id, "session": r.lane, "position": r.position})),
            )
                .into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        },
        Err(e) => from_call_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamQuery {
    job_id: String,
    #[serde(default)]
    after_seq: u64,
    /// For websocket clients that cannot set headers.
    #[serde(default)]
    token: Option<String>,
}

async fn stream_events(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if !authorized(&api, &headers, q.token.as_deref()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        );
    }
    let events = match api.handler.follow(q.job_id, q.after_seq).await {
        Ok(rx) => rx,
        Err(e) => return from_call_error(e),
    };
    ws.on_upgrade(move |socket| forward(socket, events))
}

async fn forward(
    mut socket: WebSocket,
    mut events: tokio::sync::mpsc::Receiver<serde_json::Value>,
) {
    while let Some(ev) = events.recv().await {
        let text = ev.to_string();
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
