//! The socketioxide side: one server instance (axum + socketioxide on a gated listener) wired to
//! the shared state. Instances come and go (kill, restart, a second endpoint); the state stays.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::routing::get;
use serde_json::Value;
use socketioxide::extract::{Data, Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::{SocketIo, TransportType};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::faults::{Direction, Faults, Verdict};
use super::net::{Gate, GatedListener};
use super::state::{CoordinatorConfig, Outbound, State};

/// The transport carries up to 1 MiB (mesh-protocol §1).
const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// State shared by every instance of one logical coordinator.
pub struct Shared {
    pub state: Mutex<State>,
    pub faults: Mutex<Faults>,
    pub changed: Notify,
    sockets: Mutex<HashMap<String, (u64, SocketRef)>>,
    generation: AtomicU64,
}

/// A connect refusal; its text is the JSON `Error` (socketioxide can only send `{message}`).
#[derive(Debug)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Shared {
    pub fn new(config: CoordinatorConfig) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::new(config)),
            faults: Mutex::new(Faults::default()),
            changed: Notify::new(),
            sockets: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        })
    }

    pub fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Emits messages to their gateways' current sockets, through the outbound faults.
    pub fn emit(self: &Arc<Self>, outs: Vec<Outbound>) {
        for o in outs {
            let verdict = self
                .faults
                .lock()
                .unwrap()
                .apply(Direction::Outbound, &o.event, o.body);
            match verdict {
                Verdict::Deliver(list) => {
                    for (event, body) in list {
                        self.send_now(&o.gateway, &event, &body);
                    }
                }
                Verdict::DeliverLater(delay, event, body) => {
                    let shared = self.clone();
                    let gateway = o.gateway.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        shared.send_now(&gateway, &event, &body);
                    });
                }
            }
        }
    }

    fn send_now(&self, gateway: &str, event: &str, body: &Value) {
        let socket = self
            .sockets
            .lock()
            .unwrap()
            .get(gateway)
            .map(|(_, s)| s.clone());
        if let Some(socket) = socket {
            // A full buffer or a dead socket loses the message; the protocol re-sends.
            let _ = socket.emit(event, body);
        }
    }

    fn on_connect(self: &Arc<Self>, socket: SocketRef, auth: Value, generation: u64) {
        let Ok(auth) = serde_json::from_value::<mesh_protocol::ConnectAuth>(auth) else {
            return;
        };
        let gateway = auth.gateway_id.to_string();
        let sid = socket.id.to_string();
        let superseded = self
            .state
            .lock()
            .unwrap()
            .connected(&auth, sid.clone(), generation);
        let old = self
            .sockets
            .lock()
            .unwrap()
            .insert(gateway.clone(), (generation, socket.clone()));
        if let (Some((_, message)), Some((_, old_socket))) = (superseded, old) {
            let _ = old_socket.emit(message.event.clone(), &message.body);
            let _ = old_socket.disconnect();
        }
        let shared = self.clone();
        socket.on_fallback(
            move |s: SocketRef, Event(event): Event, TryData(body): TryData<Value>| {
                let shared = shared.clone();
                async move {
                    let body = body.unwrap_or(Value::Null);
                    shared.inbound(s.id.to_string(), generation, &event, body);
                }
            },
        );
        let shared = self.clone();
        socket.on_disconnect(move |s: SocketRef| {
            let shared = shared.clone();
            async move {
                let sid = s.id.to_string();
                shared.state.lock().unwrap().disconnected(&sid, generation);
                shared
                    .sockets
                    .lock()
                    .unwrap()
                    .retain(|_, (g, sock)| !(*g == generation && sock.id.to_string() == sid));
                shared.notify();
            }
        });
        self.notify();
    }

    fn inbound(self: &Arc<Self>, sid: String, generation: u64, event: &str, body: Value) {
        let verdict = self
            .faults
            .lock()
            .unwrap()
            .apply(Direction::Inbound, event, body);
        match verdict {
            Verdict::Deliver(list) => {
                for (event, body) in list {
                    self.process(&sid, generation, &event, body);
                }
            }
            Verdict::DeliverLater(delay, event, body) => {
                let shared = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    shared.process(&sid, generation, &event, body);
                });
            }
        }
    }

    fn process(self: &Arc<Self>, sid: &str, generation: u64, event: &str, body: Value) {
        let outs = {
            let mut state = self.state.lock().unwrap();
            let Some(gateway) = state.gateway_of(sid, generation) else {
                return;
            };
            state.inbound(&gateway, event, body)
        };
        self.notify();
        self.emit(outs);
    }

    fn admit(&self, auth: Option<Value>) -> Result<(), Refusal> {
        let verdict = self.state.lock().unwrap().admit(auth.as_ref());
        self.notify();
        verdict
            .map(|_| ())
            .map_err(|e| Refusal(serde_json::to_string(&e).unwrap_or_default()))
    }

    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// One listening server.
pub struct Instance {
    pub gate: Arc<Gate>,
    pub task: JoinHandle<()>,
    pub io: SocketIo,
}

/// Starts serving `shared` on `listener`.
pub fn serve(shared: Arc<Shared>, listener: TcpListener) -> Instance {
    let config = shared.state.lock().unwrap().config.clone();
    let generation = shared.next_generation();
    let (layer, io) = SocketIo::builder()
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        .max_payload(MAX_MESSAGE_BYTES as u64)
        .ws_max_message_size(MAX_MESSAGE_BYTES)
        .transports([TransportType::Websocket])
        .build_layer();
    let on_connect = {
        let shared = shared.clone();
        move |s: SocketRef, Data(auth): Data<Value>| {
            let shared = shared.clone();
            async move { shared.on_connect(s, auth, generation) }
        }
    };
    let admit = {
        let shared = shared.clone();
        move |TryData(auth): TryData<Value>| {
            let shared = shared.clone();
            async move { shared.admit(auth.ok()) }
        }
    };
    io.ns("/mesh", on_connect.with(admit));
    let app = axum::Router::new()
        .route("/", get(|| async { "kimaki mesh coordinator" }))
        .layer(layer);
    let gate = Gate::new();
    let gated = GatedListener {
        inner: listener,
        gate: gate.clone(),
    };
    let task = tokio::spawn(async move {
        let _ = axum::serve(gated, app).await;
    });
    Instance { gate, task, io }
}
