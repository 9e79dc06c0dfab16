//! A deterministic LLM on 127.0.0.1 for the real runner CLIs: OpenAI Chat Completions
//! (OpenCode), OpenAI Responses (Codex) and Anthropic Messages (Claude Code), streamed the way each
//! provider does. A `[[fake:<name>]]` marker in the prompt picks the behaviour (`scenario`); every
//! request is recorded. Imports nothing from kimaki.
//!
//! # Layout
//! - `scenario`: marker parsing, step counting and the wire-neutral `Reply`.
//! - `chat_completions`, `responses`, `anthropic`: request → `Transcript`, `Output` → frames.
//! - here: the server, request recording, and frames → a body that can pause, stall or break.

mod anthropic;
mod chat_completions;
mod responses;
mod scenario;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use scenario::{
    long_reply, Scenario, DEFAULT_SLOW_INTERVAL, PARTIAL_CHUNKS, QUESTION, QUESTION_OPTIONS,
    SIDE_CALL_REPLY, SLOW_CHUNKS, TEXT_REPLY, TOOL_COMMAND, WRITE_CONTENT,
};

use scenario::{Ending, Output, Reply, TextReply, Transcript};

/// The model every list and reply names when the request names none.
pub const MODEL: &str = "fake-model";
/// Fixed usage of every reply.
pub const INPUT_TOKENS: u64 = 20;
pub const OUTPUT_TOKENS: u64 = 10;
/// Fixed `created` timestamp, so replies are byte-for-byte repeatable.
const CREATED: u64 = 1_700_000_000;
/// How long `stop` waits for open streams to wind down before abandoning the server task.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The API a request was routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ChatCompletions,
    Responses,
    Messages,
    CountTokens,
    Models,
    /// Answered with 404.
    Unknown,
}

impl Route {
    fn of(method: &Method, path: &str) -> Self {
        let path = path.trim_end_matches('/');
        match *method {
            Method::POST if path.ends_with("/chat/completions") => Self::ChatCompletions,
            Method::POST if path.ends_with("/responses") => Self::Responses,
            Method::POST if path.ends_with("/messages/count_tokens") => Self::CountTokens,
            Method::POST if path.ends_with("/messages") => Self::Messages,
            Method::GET if path.ends_with("/models") => Self::Models,
            _ => Self::Unknown,
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Arrival order, from 0.
    pub seq: usize,
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// `Null` when the body is empty or not JSON.
    pub body: Value,
    pub route: Route,
    /// The marker's scenario, `None` when no user text has one. A request without tools keeps
    /// it but is answered with [`SIDE_CALL_REPLY`].
    pub scenario: Option<Scenario>,
    /// Tool results after the marked user text.
    pub step: usize,
    /// Names of the tools the request offered.
    pub tools: Vec<String>,
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A running fake LLM; dropping it stops the server.
pub struct FakeLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

struct Shared {
    // A sync mutex is fine: it is never held across an await.
    requests: Mutex<Vec<RecordedRequest>>,
    count: watch::Sender<usize>,
    /// Ends the accept loop, hung handlers and stalled or paused streams.
    shutdown: CancellationToken,
}

impl FakeLlm {
    /// Binds 127.0.0.1:0 and serves until [`FakeLlm::stop`] or drop.
    pub async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("fake LLM: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake LLM: local address");
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
            shutdown: shutdown.clone(),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let stopped = shutdown.clone().cancelled_owned();
        let server = tokio::spawn(async move {
            // Serving only ends on shutdown; an accept error there has nobody left to tell.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        Self {
            addr,
            shared,
            server: Some(server),
        }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash or `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port of [`FakeLlm::base_url`].
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock_requests().clone()
    }

    /// Requests so far that went to the given route.
    pub fn requests_to(&self, route: Route) -> Vec<RecordedRequest> {
        let requests = self.shared.lock_requests();
        requests
            .iter()
            .filter(|r| r.route == route)
            .cloned()
            .collect()
    }

    /// Waits until at least `n` requests arrived; panics with what did arrive after `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let mut count = self.shared.count.subscribe();
        let waited = tokio::time::timeout(timeout, count.wait_for(|count| *count >= n)).await;
        if waited.is_err() {
            let seen: Vec<String> = self
                .requests()
                .iter()
                .map(|r| format!("{} {} {:?}", r.method, r.path, r.scenario))
                .collect();
            panic!("fake LLM: waited {timeout:?} for {n} requests, got {seen:#?}");
        }
        self.requests()
    }

    /// Stops accepting, ends open streams (stalled ones by closing them) and waits for the server.
    pub async fn stop(mut self) {
        self.shared.shutdown.cancel();
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(STOP_GRACE, &mut server).await.is_err() {
                server.abort();
            }
        }
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl Shared {
    fn lock_requests(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, mut request: RecordedRequest) -> usize {
        let seq = {
            let mut requests = self.lock_requests();
            request.seq = requests.len();
            requests.push(request);
            requests.len() - 1
        };
        self.count.send_replace(seq + 1);
        seq
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = Route::of(&method, uri.path());
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let body = parsed.clone().unwrap_or(Value::Null);
    let transcript = match route {
        Route::ChatCompletions => chat_completions::transcript(&body),
        Route::Responses => responses::transcript(&body),
        Route::Messages | Route::CountTokens => anthropic::transcript(&body),
        Route::Models | Route::Unknown => Transcript::default(),
    };
    let selection = transcript.select();
    let seq = shared.record(RecordedRequest {
        seq: 0,
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body: body.clone(),
        route,
        scenario: selection.scenario.clone(),
        step: selection.step,
        tools: transcript.tools.clone(),
    });

    match route {
        Route::Models => Json(models_list()).into_response(),
        Route::CountTokens => Json(json!({ "input_tokens": INPUT_TOKENS })).into_response(),
        Route::Unknown => {
            let message = format!("fake LLM: no route for {method} {}", uri.path());
            error_response(StatusCode::NOT_FOUND, openai_error_body(404, &message))
        }
        Route::ChatCompletions | Route::Responses | Route::Messages if parsed.is_none() => {
            let message = "fake LLM: request body is not JSON";
            error_response(StatusCode::BAD_REQUEST, openai_error_body(400, message))
        }
        Route::ChatCompletions | Route::Responses | Route::Messages => {
            match scenario::plan(&selection, &transcript.tools) {
                Reply::Output(output) => answer(&shared, route, seq, &body, &output),
                Reply::Error { status, message } => {
                    let code =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let body = match route {
                        Route::Messages => anthropic::error_body(status, &message),
                        _ => openai_error_body(status, &message),
                    };
                    error_response(code, body)
                }
                Reply::Hang => {
                    shared.shutdown.cancelled().await;
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                }
            }
        }
    }
}

/// Encodes a 200 answer for the route, as SSE when the request asked for `stream: true`.
fn answer(shared: &Shared, route: Route, seq: usize, body: &Value, output: &Output) -> Response {
    let model = body["model"].as_str().unwrap_or(MODEL).to_string();
    let ctx = ReplyContext { seq, model };
    let streaming = body["stream"].as_bool().unwrap_or(false);
    let frames = match (route, streaming) {
        (Route::ChatCompletions, true) => {
            let include_usage = body["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false);
            chat_completions::stream(&ctx, output, include_usage)
        }
        (Route::ChatCompletions, false) => whole(output, chat_completions::message(&ctx, output)),
        (Route::Responses, true) => responses::stream(&ctx, output),
        (Route::Responses, false) => whole(output, responses::response(&ctx, output)),
        (_, true) => anthropic::stream(&ctx, output),
        (_, false) => whole(output, anthropic::message(&ctx, output)),
    };
    let content_type = if streaming {
        "text/event-stream"
    } else {
        "application/json"
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(frame_body(frames, shared.shutdown.clone()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Ids and the model name shared by every chunk of one reply.
struct ReplyContext {
    /// The request's arrival order; makes every id unique within one server.
    seq: usize,
    model: String,
}

/// One step of a response body.
#[derive(Debug)]
enum Frame {
    Bytes(Bytes),
    /// Wait before the next frame.
    Pause(Duration),
    /// Send nothing more until the server stops, then close the connection.
    Stall,
    /// Close the connection without finishing the body.
    Drop,
}

/// `data: <json>\n\n`.
fn data_frame(data: &Value) -> Frame {
    Frame::Bytes(Bytes::from(format!("data: {data}\n\n")))
}

/// `event: <name>\ndata: <json>\n\n`.
fn event_frame(name: &str, data: &Value) -> Frame {
    Frame::Bytes(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
}

/// A non-streamed answer: the whole JSON at once, unless the scenario stalls or drops it.
fn whole(output: &Output, json: Value) -> Vec<Frame> {
    let json = Frame::Bytes(Bytes::from(json.to_string()));
    let Output::Text(text) = output else {
        return vec![json];
    };
    match text.ending {
        Ending::Complete => {
            let chunks = u32::try_from(text.chunks.len()).unwrap_or(u32::MAX);
            vec![Frame::Pause(text.interval * chunks.saturating_sub(1)), json]
        }
        Ending::Stall => vec![Frame::Stall],
        Ending::Drop => vec![Frame::Drop],
    }
}

fn frame_body(frames: Vec<Frame>, shutdown: CancellationToken) -> Body {
    let stopped = || std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "fake LLM stopped");
    let stream = futures_util::stream::unfold(
        (frames.into_iter(), shutdown),
        move |(mut frames, shutdown)| async move {
            loop {
                let error = match frames.next()? {
                    Frame::Bytes(bytes) => return Some((Ok(bytes), (frames, shutdown))),
                    Frame::Pause(pause) => {
                        tokio::select! {
                            () = tokio::time::sleep(pause) => continue,
                            () = shutdown.cancelled() => stopped(),
                        }
                    }
                    Frame::Stall => {
                        shutdown.cancelled().await;
                        stopped()
                    }
                    Frame::Drop => {
                        // Yield once so the chunks already produced are flushed before the close.
                        tokio::task::yield_now().await;
                        std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "drop scenario")
                    }
                };
                return Some((Err(error), (Vec::new().into_iter(), shutdown)));
            }
        },
    );
    Body::from_stream(stream)
}

fn error_response(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// OpenAI's error body, shared by Chat Completions and Responses.
fn openai_error_body(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", Value::from("invalid_api_key")),
        404 => ("invalid_request_error", Value::from("not_found")),
        429 => ("requests", Value::from("rate_limit_exceeded")),
        500..=599 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

/// A list both OpenAI (`object`, `owned_by`) and Anthropic (`type`, `display_name`) clients accept.
fn models_list() -> Value {
    json!({
        "object": "list",
        "data": [{
            "id": MODEL, "object": "model", "created": CREATED, "owned_by": "fake",
            "type": "model", "display_name": "Fake Model", "created_at": "2023-11-14T22:13:20Z",
        }],
        "has_more": false, "first_id": MODEL, "last_id": MODEL,
    })
}

/// The texts of a message `content`: a plain string, or the `text` of each part of an array.
fn content_texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(text) => vec![text.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part["text"].as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// One delta frame per chunk of `text`, with the scenario's pauses between them.
fn text_deltas(text: &TextReply, mut delta: impl FnMut(&str) -> Frame) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(text.chunks.len() * 2);
    for (n, chunk) in text.chunks.iter().enumerate() {
        if n > 0 && !text.interval.is_zero() {
            frames.push(Frame::Pause(text.interval));
        }
        frames.push(delta(chunk));
    }
    frames
}

/// The frame that cuts a reply short instead of its closing events, if the scenario does.
fn cut_short(ending: Ending) -> Option<Frame> {
    match ending {
        Ending::Complete => None,
        Ending::Stall => Some(Frame::Stall),
        Ending::Drop => Some(Frame::Drop),
    }
}
