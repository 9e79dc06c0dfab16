//! The server's event stream: one SSE connection to `GET /global/event` (every directory of the
//! shared server) on its own HTTP client, so it never competes with API calls for a connection.
//! Events are routed by session id to the runs that subscribed (sub-agent sessions are routed to
//! the run that owns their root). The connection is re-opened when it drops; after every
//! re-open each subscribed run gets a `Gap` and reconciles from the message list.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

/// Per-run buffer: minutes of token deltas at a fast model's pace. A run that falls further
/// behind gets a `Gap` and reconciles, instead of stalling the stream for every other run.
const RUN_BUFFER: usize = 1024;
/// OpenCode sends a heartbeat every 10 s; three missed ones mean the connection is dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting and receiving the response headers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First reconnect delay, doubled per consecutive failure up to `MAX_RECONNECT_DELAY`.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Consecutive failed connections (~1 min with the delays above) before the server is declared
/// unusable; a healthy local server accepts at once.
const MAX_CONNECT_FAILURES: u32 = 30;
/// One SSE frame; OpenCode sends whole tool outputs in one event, so allow big ones.
const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;

/// What a run receives.
#[derive(Debug, Clone)]
pub(super) enum HubMsg {
    /// One event payload (`{id, type, properties}`).
    Event(Arc<Value>),
    /// Events may have been lost: re-read the session.
    Gap,
}

/// Routes events to subscribed runs. Cheap to clone.
#[derive(Clone)]
pub(super) struct EventHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    // A sync mutex: held for map lookups only, never across an await.
    routes: Mutex<Routes>,
    /// Counts successful connections, so start-up can wait for the first.
    connections: watch::Sender<u64>,
    /// Asks the stream task to drop its connection (as a network blip would)…
    reconnect: Notify,
    /// …and to stay disconnected until then.
    hold_until: Mutex<Option<tokio::time::Instant>>,
}

#[derive(Default)]
struct Routes {
    next_token: u64,
    runs: HashMap<String, Route>,
    /// Sub-agent session → the subscribed session it descends from.
    children: HashMap<String, String>,
}

struct Route {
    /// Tells a subscription from its successor for the same session.
    token: u64,
    tx: mpsc::Sender<HubMsg>,
    /// An event was dropped on a full buffer; a `Gap` is owed.
    owes_gap: bool,
}

/// A run's view of the stream; unsubscribes on drop.
pub(super) struct Subscription {
    pub(super) rx: mpsc::Receiver<HubMsg>,
    session: String,
    token: u64,
    hub: Arc<HubInner>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut routes = self.hub.lock();
        // The lane's next job may already have subscribed to the same session.
        if routes.runs.get(&self.session).map(|r| r.token) != Some(self.token) {
            return;
        }
        routes.runs.remove(&self.session);
        let session = &self.session;
        routes.children.retain(|_, root| root != session);
    }
}

impl EventHub {
    pub(super) fn new() -> Self {
        Self {
            inner: Arc::new(HubInner {
                routes: Mutex::new(Routes::default()),
                connections: watch::Sender::new(0),
                reconnect: Notify::new(),
                hold_until: Mutex::new(None),
            }),
        }
    }

    /// Receives the events of `session` and of its sub-agents from now on.
    pub(super) fn subscribe(&self, session: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(RUN_BUFFER);
        let mut routes = self.inner.lock();
        routes.next_token += 1;
        let token = routes.next_token;
        routes.runs.insert(
            session.to_owned(),
            Route {
                token,
                tx,
                owes_gap: false,
            },
        );
        Subscription {
            rx,
            session: session.to_owned(),
            token,
            hub: self.inner.clone(),
        }
    }

    /// Routes `child`'s events to the run subscribed as `root` (a sub-agent found by listing).
    pub(super) fn adopt(&self, child: &str, root: &str) {
        let mut routes = self.inner.lock();
        if routes.runs.contains_key(root) && !routes.runs.contains_key(child) {
            routes.children.insert(child.to_owned(), root.to_owned());
        }
    }

    /// The sessions whose requests belong to the run subscribed as `session`.
    pub(super) fn family(&self, session: &str) -> Vec<String> {
        let routes = self.inner.lock();
        let mut out = vec![session.to_owned()];
        out.extend(
            routes
                .children
                .iter()
                .filter(|(_, root)| *root == session)
                .map(|(child, _)| child.clone()),
        );
        out
    }

    /// Waits until the stream has connected at least once.
    pub(super) async fn connected(&self) {
        let mut rx = self.inner.connections.subscribe();
        // The sender lives as long as the hub, so this only ends when connected.
        let _ = rx.wait_for(|n| *n > 0).await;
    }

    /// Drops the current connection and keeps it closed for `hold`; it is then re-opened and
    /// every run reconciles.
    pub(super) fn drop_connection(&self, hold: Duration) {
        *self
            .inner
            .hold_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tokio::time::Instant::now() + hold);
        self.inner.reconnect.notify_one();
    }

    fn take_hold(&self) -> Option<tokio::time::Instant> {
        self.inner
            .hold_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn route(&self, payload: Value) {
        let props = &payload["properties"];
        let Some(session) = props["sessionID"].as_str() else {
            return;
        };
        let mut routes = self.inner.lock();
        if payload["type"] == "session.created" {
            if let Some(parent) = props["info"]["parentID"].as_str() {
                let root = routes.root_of(parent);
                if let Some(root) = root {
                    routes.children.insert(session.to_owned(), root);
                }
            }
        }
        let Some(root) = routes.root_of(session) else {
            return;
        };
        if let Some(route) = routes.runs.get_mut(&root) {
            route.send(HubMsg::Event(Arc::new(payload)));
        }
    }

    fn broadcast_gap(&self) {
        for route in self.inner.lock().runs.values_mut() {
            route.send(HubMsg::Gap);
        }
    }
}

impl HubInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Routes {
    fn root_of(&self, session: &str) -> Option<String> {
        if self.runs.contains_key(session) {
            return Some(session.to_owned());
        }
        self.children.get(session).cloned()
    }
}

impl Route {
    fn send(&mut self, msg: HubMsg) {
        if self.owes_gap {
            if self.tx.try_send(HubMsg::Gap).is_err() {
                return;
            }
            self.owes_gap = false;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(msg) {
            self.owes_gap = true;
        }
    }
}

/// Reads `url` until `stop` fires, re-connecting after drops. Calls `lost` (and returns) when the
/// server stops accepting the stream altogether.
pub(super) async fn run_event_stream(
    hub: EventHub,
    url: String,
    stop: CancellationToken,
    lost: impl FnOnce(String),
) {
    let client = match reqwest::Client::builder()
        .use_rustls_tls() // never parses the system CA bundle (plain HTTP to 127.0.0.1 anyway)
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
    {
        Ok(c) => c,
        Err(e) => return lost(format!("cannot build the event stream client: {e}")),
    };
    let mut failures: u32 = 0;
    let mut connected_before = false;
    let mut last_error = String::new();
    loop {
        let ended = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            ended = read_stream(&client, &url, &hub, &mut connected_before) => ended,
        };
        match ended {
            StreamEnd::Dropped(reason) => {
                failures = 0;
                tracing::debug!(reason = %reason, "OpenCode event stream dropped; reconnecting.");
            }
            StreamEnd::Failed(reason) => {
                failures += 1;
                last_error = reason;
            }
        }
        if failures > MAX_CONNECT_FAILURES {
            return lost(format!(
                "its event stream could not be re-opened ({last_error})"
            ));
        }
        let delay = RECONNECT_DELAY
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
            .min(MAX_RECONNECT_DELAY);
        let mut resume_at = tokio::time::Instant::now() + delay;
        if let Some(hold) = hub.take_hold() {
            resume_at = resume_at.max(hold);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(resume_at) => {}
        }
    }
}

enum StreamEnd {
    /// Connected, then the connection ended.
    Dropped(String),
    /// Could not connect.
    Failed(String),
}

async fn read_stream(
    client: &reqwest::Client,
    url: &str,
    hub: &EventHub,
    connected_before: &mut bool,
) -> StreamEnd {
    let response = match tokio::time::timeout(CONNECT_TIMEOUT, client.get(url).send()).await {
        Ok(Ok(r)) if r.status().is_success() => r,
        Ok(Ok(r)) => return StreamEnd::Failed(format!("HTTP {}", r.status())),
        Ok(Err(e)) => return StreamEnd::Failed(e.to_string()),
        Err(_) => return StreamEnd::Failed(format!("no answer within {CONNECT_TIMEOUT:?}")),
    };
    let mut body = response.bytes_stream();
    let mut frames = SseFrames::default();
    loop {
        let chunk = tokio::select! {
            () = hub.inner.reconnect.notified() => return StreamEnd::Dropped("asked to reconnect".to_owned()),
            chunk = tokio::time::timeout(IDLE_TIMEOUT, body.next()) => chunk,
        };
        let bytes = match chunk {
            Ok(Some(Ok(bytes))) => bytes,
            Ok(Some(Err(e))) => return StreamEnd::Dropped(e.to_string()),
            Ok(None) => return StreamEnd::Dropped("the server closed the stream".to_owned()),
            Err(_) => return StreamEnd::Dropped(format!("no event for {IDLE_TIMEOUT:?}")),
        };
        let data = match frames.push(&bytes) {
            Ok(data) => data,
            Err(e) => return StreamEnd::Dropped(e),
        };
        for text in data {
            let Ok(mut envelope) = serde_json::from_str::<Value>(&text) else {
                tracing::debug!("Ignoring an OpenCode event that is not JSON.");
                continue;
            };
            // `/global/event` wraps each event as `{directory, payload}`.
            let payload = envelope
                .get_mut("payload")
                .map(Value::take)
                .unwrap_or(envelope);
            if payload["type"] == "server.connected" {
                if *connected_before {
                    hub.broadcast_gap();
                }
                *connected_before = true;
                hub.inner.connections.send_modify(|n| *n += 1);
                continue;
            }
            hub.route(payload);
        }
    }
}

/// Splits an SSE byte stream into the `data:` of each event.
#[derive(Default)]
pub(super) struct SseFrames {
    buf: Vec<u8>,
}

impl SseFrames {
    /// Adds bytes; returns the data of every event they complete.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = find_frame_end(&self.buf) {
            let frame: Vec<u8> = self.buf.drain(..end.0).collect();
            self.buf.drain(..end.1);
            let text = String::from_utf8_lossy(&frame);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        if self.buf.len() > MAX_FRAME_BYTES {
            self.buf.clear();
            return Err(format!("an event exceeded {MAX_FRAME_BYTES} bytes"));
        }
        Ok(out)
    }
}

/// The end of the first complete frame: (frame length, separator length).
fn find_frame_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_split_across_chunks_and_lines_join() {
        let mut f = SseFrames::default();
        assert_eq!(f.push(b"data: {\"a\":").unwrap(), Vec::<String>::new());
        assert_eq!(
            f.push(b"1}\n\ndata: x\ndata: y\n\n: comment\n\nevent: e\r\ndata: z\r\n\r\n")
                .unwrap(),
            vec!["{\"a\":1}", "x\ny", "z"]
        );
        // A multi-byte character split between chunks survives.
        assert_eq!(
            f.push("data: é".as_bytes()[..7].as_ref()).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(f.push(&"data: é\n\n".as_bytes()[7..]).unwrap(), vec!["é"]);
    }

    #[tokio::test]
    async fn routes_by_session_and_children_and_owes_a_gap_after_overflow() {
        let hub = EventHub::new();
        let mut a = hub.subscribe("ses_a");
        let mut b = hub.subscribe("ses_b");
        hub.route(json!({"type": "session.status", "properties": {"sessionID": "ses_a"}}));
        hub.route(json!({"type": "session.created", "properties": {"sessionID": "ses_c", "info": {"parentID": "ses_a"}}}));
        hub.route(json!({"type": "permission.asked", "properties": {"sessionID": "ses_c", "id": "per_1"}}));
        hub.route(json!({"type": "session.status", "properties": {"sessionID": "ses_x"}}));
        let mut got = Vec::new();
        while let Ok(HubMsg::Event(e)) = a.rx.try_recv() {
            got.push(e["type"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            got,
            ["session.status", "session.created", "permission.asked"]
        );
        assert!(b.rx.try_recv().is_err());
        assert_eq!(hub.family("ses_a"), ["ses_a", "ses_c"]);

        for _ in 0..RUN_BUFFER + 5 {
            hub.route(json!({"type": "x", "properties": {"sessionID": "ses_b"}}));
        }
        for _ in 0..RUN_BUFFER {
            assert!(matches!(b.rx.try_recv(), Ok(HubMsg::Event(_))));
        }
        hub.route(json!({"type": "y", "properties": {"sessionID": "ses_b"}}));
        assert!(matches!(b.rx.try_recv(), Ok(HubMsg::Gap)));
        assert!(matches!(b.rx.try_recv(), Ok(HubMsg::Event(e)) if e["type"] == "y"));

        hub.adopt("ses_d", "ses_a");
        assert_eq!(hub.family("ses_a").len(), 3);
        drop(a);
        assert_eq!(hub.family("ses_a"), ["ses_a"]);
        assert!(hub.inner.lock().children.is_empty());

        // A successor's subscription survives its predecessor's drop.
        let first = hub.subscribe("ses_e");
        let mut second = hub.subscribe("ses_e");
        drop(first);
        hub.route(json!({"type": "z", "properties": {"sessionID": "ses_e"}}));
        assert!(matches!(second.rx.try_recv(), Ok(HubMsg::Event(_))));
    }
}
