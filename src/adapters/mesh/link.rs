//! The transport behind the `MeshLink` trait: connect, send one JSON event, receive events, close.
//! `RustSocketioLink` drives `rust_socketio` 0.6 (async) inside the guardrails of mesh-protocol
//! §12; the supervisor never touches the crate directly.
//!
//! Guardrails implemented here (the rest live in the supervisor):
//! - B0/B15: `.reconnect(false)` and `.reconnect_on_disconnect(false)`; a fresh client per attempt.
//! - B1/B2/B3/B5: no Socket.IO acks at all; `msgId`/`re` in the payload instead.
//! - B4: callbacks only push into an unbounded channel; nothing awaits inside them.
//! - B8/B14: `connect` succeeds only on `Event::Connect`; a `ConnectError` frame arrives as an
//!   `Event::Error` string and is parsed into the coordinator's `Error`.
//! - B9: the whole connect runs under a timeout, and a client that connected too late is
//!   disconnected instead of leaking.
//! - B10: `send` refuses to emit before `Event::Connect` was seen.
//! - B11: JSON text only, one object per event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use mesh_protocol::{ConnectAuth, ConnectRejection, ErrorCode, WireError};
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::Value;
use tokio::sync::mpsc;

/// The Socket.IO namespace of the mesh.
pub const MESH_NAMESPACE: &str = "/mesh";

/// How `rust_socketio` prefixes a `connect_error` it reports through `Event::Error`.
const CONNECT_ERROR_PREFIX: &str = "Received an ConnectError frame: ";

/// How long a `disconnect` of a client may take; a frozen peer never answers.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// After a clean disconnect, how long to wait for the peer to close its side. Dropping the
/// socket while the peer's pings sit unread makes the kernel send RST, and the peer then drops
/// whatever it had not read yet: the last messages (`bye`, final events) would be lost.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Why a link operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("the coordinator refused the connection: {0}")]
    Rejected(WireError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("the link is not connected")]
    NotConnected,
    #[error("the coordinator closed the link")]
    Closed,
}

/// What a link delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// One event with its JSON payload.
    Event { name: String, body: Value },
    /// The peer closed the namespace.
    Closed,
    /// The transport failed; the link is dead.
    Failed(String),
}

/// One outbound link to a coordinator. A value is used for a single connection attempt.
#[async_trait]
pub trait MeshLink: Send + Sync {
    /// `Ok` only after the namespace connect event; `Err(Rejected)` on a `connect_error`;
    /// `Err(Timeout)` when neither arrives in time.
    async fn connect(
        &mut self,
        endpoint: &str,
        auth: &ConnectAuth,
        timeout: Duration,
    ) -> Result<(), LinkError>;
    /// Emits one event; an error means the link is down.
    async fn send(&self, event: &str, body: &Value) -> Result<(), LinkError>;
    /// The next inbound item; `None` once the link is gone.
    async fn recv(&mut self) -> Option<Inbound>;
    /// Disconnects and drops the client.
    async fn close(&mut self);
}

/// Makes a fresh link for every connection attempt.
pub trait LinkFactory: Send + Sync {
    fn create(&self) -> Box<dyn MeshLink>;
}

impl<F> LinkFactory for F
where
    F: Fn() -> Box<dyn MeshLink> + Send + Sync,
{
    fn create(&self) -> Box<dyn MeshLink> {
        self()
    }
}

/// What the callbacks push. Kept raw: classification happens on the supervisor's side.
#[derive(Debug)]
enum Raw {
    Connect,
    Close,
    Error(String),
    Event(String, Value),
}

/// `rust_socketio` 0.6 behind the guardrails.
pub struct RustSocketioLink {
    client: Option<Client>,
    rx: Option<mpsc::UnboundedReceiver<Raw>>,
    /// Set only by `Event::Connect` (B10).
    connected: bool,
    send_timeout: Duration,
}

impl RustSocketioLink {
    pub fn new(send_timeout: Duration) -> Self {
        Self {
            client: None,
            rx: None,
            connected: false,
            send_timeout,
        }
    }
}

#[async_trait]
impl MeshLink for RustSocketioLink {
    async fn connect(
        &mut self,
        endpoint: &str,
        auth: &ConnectAuth,
        timeout: Duration,
    ) -> Result<(), LinkError> {
        self.close().await;
        let auth = serde_json::to_value(auth).map_err(|e| LinkError::Transport(e.to_string()))?;
        // Unbounded on purpose (B4): the producer is the library's receive loop, which must never
        // wait on us. Its volume is bounded by what the coordinator sends, which the protocol
        // paces (acks, windows, heartbeats); the supervisor drains it continuously.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let builder = ClientBuilder::new(engine_url(endpoint))
            .namespace(MESH_NAMESPACE)
            .transport_type(TransportType::Websocket)
            .reconnect(false)
            .reconnect_on_disconnect(false)
            .auth(auth)
            .on(Event::Connect, push(tx.clone(), |_| Raw::Connect))
            .on(Event::Close, push(tx.clone(), |_| Raw::Close))
            .on(
                Event::Error,
                push(tx.clone(), |payload| Raw::Error(payload_text(payload))),
            )
            .on_any(move |event, payload, _| {
                if let Event::Custom(name) = event {
                    let _ = tx.send(Raw::Event(name, first_value(payload)));
                }
                async {}.boxed()
            });

        // The client is parked here as soon as it exists, so a timeout that fires after the
        // engine connected can still disconnect it (B9) instead of leaking its receive task.
        let slot: Arc<Mutex<Option<Client>>> = Arc::new(Mutex::new(None));
        let parked = slot.clone();
        let attempt = async move {
            let client = builder
                .connect()
                .await
                .map_err(|e| LinkError::Transport(e.to_string()))?;
            *parked.lock().unwrap_or_else(|p| p.into_inner()) = Some(client);
            loop {
                match rx.recv().await {
                    Some(Raw::Connect) => return Ok(rx),
                    Some(Raw::Error(text)) => {
                        return Err(match parse_connect_error(&text) {
                            Some(error) => LinkError::Rejected(error),
                            None => LinkError::Transport(text),
                        })
                    }
                    Some(Raw::Close) | None => return Err(LinkError::Closed),
                    // Nothing is legitimately sent before the namespace connect (B10).
                    Some(Raw::Event(name, _)) => {
                        tracing::debug!(event = %name, "Event before the namespace connect; ignored.");
                    }
                }
            }
        };
        let outcome = tokio::time::timeout(timeout, attempt).await;
        let client = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        match outcome {
            Ok(Ok(rx)) => {
                self.client = client;
                self.rx = Some(rx);
                self.connected = true;
                Ok(())
            }
            Ok(Err(e)) => {
                disconnect(client.as_ref()).await;
                Err(e)
            }
            Err(_) => {
                disconnect(client.as_ref()).await;
                Err(LinkError::Timeout(timeout))
            }
        }
    }

    async fn send(&self, event: &str, body: &Value) -> Result<(), LinkError> {
        let Some(client) = self.client.as_ref().filter(|_| self.connected) else {
            return Err(LinkError::NotConnected);
        };
        match tokio::time::timeout(
            self.send_timeout,
            client.emit(event, Payload::Text(vec![body.clone()])),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(LinkError::Transport(e.to_string())),
            Err(_) => Err(LinkError::Timeout(self.send_timeout)),
        }
    }

    async fn recv(&mut self) -> Option<Inbound> {
        let rx = self.rx.as_mut()?;
        loop {
            match rx.recv().await? {
                Raw::Event(name, body) => return Some(Inbound::Event { name, body }),
                Raw::Close => {
                    self.connected = false;
                    return Some(Inbound::Closed);
                }
                Raw::Error(text) => {
                    self.connected = false;
                    return Some(Inbound::Failed(text));
                }
                Raw::Connect => {}
            }
        }
    }

    async fn close(&mut self) {
        self.connected = false;
        let client = self.client.take();
        let clean = disconnect(client.as_ref()).await;
        if let (true, Some(rx)) = (clean, self.rx.as_mut()) {
            let _ = tokio::time::timeout(CLOSE_LINGER, async {
                while let Some(raw) = rx.recv().await {
                    if matches!(raw, Raw::Close | Raw::Error(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        self.rx = None;
        drop(client);
    }
}

/// A callback that only forwards (B4).
fn push(
    tx: mpsc::UnboundedSender<Raw>,
    make: fn(Payload) -> Raw,
) -> impl FnMut(Payload, Client) -> BoxFuture<'static, ()> + Send + Sync + 'static {
    move |payload, _| {
        let _ = tx.send(make(payload));
        async {}.boxed()
    }
}

/// Disconnects a client; `true` when the disconnect went out cleanly.
async fn disconnect(client: Option<&Client>) -> bool {
    match client {
        Some(client) => matches!(
            tokio::time::timeout(DISCONNECT_TIMEOUT, client.disconnect()).await,
            Ok(Ok(()))
        ),
        None => false,
    }
}

/// The first argument of an event (the protocol sends exactly one JSON object).
fn first_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        Payload::Text(_) => Value::Null,
        // Binary is never part of the protocol (B11); keep the size for the log line.
        Payload::Binary(bytes) => Value::String(format!("<{} binary bytes>", bytes.len())),
        #[allow(deprecated)]
        Payload::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
    }
}

fn payload_text(payload: Payload) -> String {
    match first_value(payload) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The engine.io URL for an endpoint: a `/mesh` namespace suffix is not part of the HTTP path.
pub(super) fn engine_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim().trim_end_matches('/');
    trimmed
        .strip_suffix(MESH_NAMESPACE)
        .unwrap_or(trimmed)
        .to_owned()
        + "/"
}

/// The coordinator's `Error` from a `connect_error` reported as an `Event::Error` string; `None`
/// for any other error text. Accepts `{message, data: Error}` (Node `socket.io`), and a `message`
/// that is itself the JSON `Error` (servers such as socketioxide that send only `{message}`).
pub(super) fn parse_connect_error(text: &str) -> Option<WireError> {
    let json = text.strip_prefix(CONNECT_ERROR_PREFIX)?;
    let unknown = |message: String| {
        WireError::new(
            ErrorCode::Unknown("CONNECT_ERROR".to_owned()),
            message,
            true,
        )
    };
    let rejection = match serde_json::from_str::<ConnectRejection>(json) {
        Ok(r) => r,
        Err(_) => {
            return Some(match serde_json::from_str::<String>(json) {
                Ok(message) => parse_message_error(&message).unwrap_or_else(|| unknown(message)),
                Err(_) => unknown(json.to_owned()),
            })
        }
    };
    Some(match rejection.data {
        Some(error) => error,
        None => {
            parse_message_error(&rejection.message).unwrap_or_else(|| unknown(rejection.message))
        }
    })
}

fn parse_message_error(message: &str) -> Option<WireError> {
    serde_json::from_str::<WireError>(message).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_error_with_data_is_typed() {
        let text = format!(
            "{CONNECT_ERROR_PREFIX}{}",
            r#"{"message":"nope","data":{"code":"AUTH_INVALID","message":"bad token","retryable":false}}"#
        );
        let error = parse_connect_error(&text).unwrap();
        assert_eq!(error.code, ErrorCode::AuthInvalid);
        assert!(!error.retryable);
    }

    #[test]
    fn connect_error_with_json_message_is_typed() {
        let inner = r#"{"code":"SESSION_STALE","message":"old","retryable":true,"details":{"currentEpoch":9}}"#;
        let text = format!(
            "{CONNECT_ERROR_PREFIX}{}",
            serde_json::json!({ "message": inner })
        );
        let error = parse_connect_error(&text).unwrap();
        assert_eq!(error.code, ErrorCode::SessionStale);
        assert_eq!(error.current_epoch(), Some(9));
    }

    #[test]
    fn connect_error_without_code_is_unknown_and_retryable() {
        let text = format!(
            "{CONNECT_ERROR_PREFIX}{}",
            r#"{"message":"Invalid namespace"}"#
        );
        let error = parse_connect_error(&text).unwrap();
        assert!(matches!(error.code, ErrorCode::Unknown(_)));
        assert_eq!(error.message, "Invalid namespace");
        assert!(error.retryable);
        assert!(parse_connect_error("websocket closed").is_none());
    }

    #[test]
    fn namespace_is_not_part_of_the_engine_path() {
        assert_eq!(engine_url("http://127.0.0.1:7/mesh"), "http://127.0.0.1:7/");
        assert_eq!(
            engine_url("wss://mesh.example.com/"),
            "wss://mesh.example.com/"
        );
        assert_eq!(engine_url("ws://h:1"), "ws://h:1/");
    }
}
