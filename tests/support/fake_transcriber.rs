//! A scripted transcription service on 127.0.0.1 for the real voice providers: Gemini
//! `POST /v1beta/models/{model}:generateContent` and OpenAI `POST /v1/audio/transcriptions`
//! (multipart). Each route answers from its own script of replies, then with a default
//! transcription; every request is recorded (headers, JSON body or multipart parts). Also the
//! voice fixtures as providers see them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A file in tests/fixtures/voice.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/voice")
        .join(name)
}

/// A fixture as providers get it: the bytes, plus 16 kHz PCM for Ogg/Opus.
pub fn clip_of(name: &str) -> kimaki::adapters::voice::transcribe::AudioClip {
    use kimaki::adapters::voice::codec::{ogg_opus, sniff};
    let bytes = std::fs::read(fixture(name)).expect("fixture");
    let format = sniff::sniff(&bytes);
    let pcm16k = (format == sniff::AudioFormat::OggOpus)
        .then(|| Arc::new(ogg_opus::decode(&bytes, 16_000).expect("decodes").pcm));
    kimaki::adapters::voice::transcribe::AudioClip {
        bytes: bytes.into(),
        format,
        mime: format.mime().to_owned(),
        filename: "voice-message.ogg".to_owned(),
        pcm16k,
    }
}

/// What the default replies transcribe.
pub const DEFAULT_TEXT: &str = "Please open main.rs and rename parse_config to load_settings.";

/// The API a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Gemini,
    OpenAi,
    /// Answered with 404.
    Unknown,
}

/// One multipart part.
#[derive(Debug, Clone)]
pub struct FormPart {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub seq: usize,
    pub route: Route,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    /// Gemini's JSON body (`Null` otherwise).
    pub json: Value,
    /// OpenAI's multipart parts.
    pub parts: Vec<FormPart>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The Gemini model named in the path.
    pub fn model(&self) -> &str {
        self.path
            .rsplit('/')
            .next()
            .and_then(|last| last.split(':').next())
            .unwrap_or("")
    }

    pub fn part(&self, name: &str) -> Option<&FormPart> {
        self.parts.iter().find(|p| p.name == name)
    }

    pub fn text_part(&self, name: &str) -> Option<String> {
        self.part(name)
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    }

    /// Gemini's `inlineData` part.
    pub fn inline_data(&self) -> (String, Vec<u8>) {
        use base64::Engine;
        let part = &self.json["contents"][0]["parts"][1]["inlineData"];
        let data = base64::engine::general_purpose::STANDARD
            .decode(part["data"].as_str().unwrap_or_default())
            .expect("inlineData is base64");
        (
            part["mimeType"].as_str().unwrap_or_default().to_owned(),
            data,
        )
    }

    /// Gemini's text part (instructions and context).
    pub fn prompt(&self) -> String {
        self.json["contents"][0]["parts"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// Never answer (until the server stops): for timeouts.
    pub hang: bool,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            hang: false,
        }
    }

    pub fn hang() -> Self {
        Self {
            status: 503,
            body: Value::Null,
            hang: true,
        }
    }

    /// A forced `transcriptionResult` call.
    pub fn gemini_call(text: &str, queue_message: bool, agent: Option<&str>) -> Self {
        let mut args = json!({ "transcription": text, "queueMessage": queue_message });
        if let Some(a) = agent {
            args["agent"] = json!(a);
        }
        Self::json(
            200,
            json!({
                "candidates": [{
                    "content": { "role": "model", "parts": [
                        { "functionCall": { "name": "transcriptionResult", "args": args } }
                    ]},
                    "finishReason": "STOP"
                }],
                "usageMetadata": { "promptTokenCount": 400, "candidatesTokenCount": 20 }
            }),
        )
    }

    /// Plain text parts; `(text, thought)` pairs.
    pub fn gemini_text(parts: &[(&str, bool)], finish: &str) -> Self {
        let parts: Vec<Value> = parts
            .iter()
            .map(|(t, thought)| {
                if *thought {
                    json!({ "text": t, "thought": true })
                } else {
                    json!({ "text": t })
                }
            })
            .collect();
        Self::json(
            200,
            json!({ "candidates": [{ "content": { "role": "model", "parts": parts }, "finishReason": finish }] }),
        )
    }

    /// Google's error shape.
    pub fn gemini_error(code: u16, status: &str, message: &str) -> Self {
        Self::json(
            code,
            json!({ "error": { "code": code, "message": message, "status": status } }),
        )
    }

    pub fn openai_text(text: &str) -> Self {
        Self::json(200, json!({ "text": text }))
    }

    pub fn openai_error(status: u16, message: &str) -> Self {
        Self::json(
            status,
            json!({ "error": { "message": message, "type": "invalid_request_error" } }),
        )
    }
}

pub struct FakeTranscriber {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

struct Shared {
    // A sync mutex is fine: never held across an await.
    requests: Mutex<Vec<Recorded>>,
    gemini: Mutex<VecDeque<Reply>>,
    openai: Mutex<VecDeque<Reply>>,
    count: watch::Sender<usize>,
    /// While true, answers wait (requests are still recorded on arrival).
    held: watch::Sender<bool>,
    shutdown: CancellationToken,
}

impl FakeTranscriber {
    pub async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("fake transcriber: bind");
        let addr = listener.local_addr().expect("fake transcriber: address");
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            gemini: Mutex::new(VecDeque::new()),
            openai: Mutex::new(VecDeque::new()),
            count: watch::Sender::new(0),
            held: watch::Sender::new(false),
            shutdown: shutdown.clone(),
        });
        let app = Router::new()
            .route("/v1beta/models/{model_action}", post(gemini))
            .route("/v1/audio/transcriptions", post(openai))
            .fallback(unknown)
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let stopped = shutdown.clone().cancelled_owned();
        let server = tokio::spawn(async move {
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

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues replies for the Gemini route, answered in order.
    pub fn script_gemini(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.shared.gemini).extend(replies);
    }

    /// Queues replies for the OpenAI route, answered in order.
    pub fn script_openai(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.shared.openai).extend(replies);
    }

    /// Answers wait from now on until [`FakeTranscriber::release`].
    pub fn hold(&self) {
        self.shared.held.send_replace(true);
    }

    /// Lets held and future answers go.
    pub fn release(&self) {
        self.shared.held.send_replace(false);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    pub fn requests_to(&self, route: Route) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.route == route)
            .collect()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let mut count = self.shared.count.subscribe();
        if tokio::time::timeout(timeout, count.wait_for(|c| *c >= n))
            .await
            .is_err()
        {
            let seen: Vec<String> = self
                .requests()
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            panic!("fake transcriber: waited {timeout:?} for {n} requests, got {seen:#?}");
        }
        self.requests()
    }

    pub async fn stop(mut self) {
        self.shared.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}

impl Drop for FakeTranscriber {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn headers_of(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

impl Shared {
    fn record(&self, mut r: Recorded) {
        let n = {
            let mut requests = lock(&self.requests);
            r.seq = requests.len();
            requests.push(r);
            requests.len()
        };
        self.count.send_replace(n);
    }

    async fn answer(&self, reply: Reply) -> Response {
        let mut held = self.held.subscribe();
        tokio::select! {
            _ = held.wait_for(|h| !*h) => {}
            _ = self.shutdown.cancelled() => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
        if reply.hang {
            self.shutdown.cancelled().await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let status =
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(reply.body)).into_response()
    }
}

async fn gemini(
    State(shared): State<Arc<Shared>>,
    Path(_model_action): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record(Recorded {
        seq: 0,
        route: Route::Gemini,
        method: "POST".into(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers_of(&headers),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        parts: Vec::new(),
    });
    let reply = lock(&shared.gemini)
        .pop_front()
        .unwrap_or_else(|| Reply::gemini_call(DEFAULT_TEXT, false, None));
    shared.answer(reply).await
}

async fn openai(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let mut parts = Vec::new();
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let data = field.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        parts.push(FormPart {
            name,
            filename,
            content_type,
            data,
        });
    }
    shared.record(Recorded {
        seq: 0,
        route: Route::OpenAi,
        method: "POST".into(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers_of(&headers),
        json: Value::Null,
        parts,
    });
    let reply = lock(&shared.openai)
        .pop_front()
        .unwrap_or_else(|| Reply::openai_text(DEFAULT_TEXT));
    shared.answer(reply).await
}

async fn unknown(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    shared.record(Recorded {
        seq: 0,
        route: Route::Unknown,
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers_of(&headers),
        json: Value::Null,
        parts: Vec::new(),
    });
    (StatusCode::NOT_FOUND, "no such route").into_response()
}
