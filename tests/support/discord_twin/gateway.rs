//! The gateway (§5): `/gateway` upgrades to a WebSocket; HELLO, IDENTIFY (token and intent
//! checks, READY + GUILD_CREATE), heartbeats, RESUME with replay of every buffered dispatch, and
//! the connection faults (op 7, op 9, close codes, dropped TCP). Text frames only.
//!
//! Each connection task owns its socket; state holds its outbox. The task drains the outbox
//! after every state change, so dispatch order is the order state changed in.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State as AxumState;
use axum::http::Uri;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::model;
use super::state::{
    intent, GwConn, GwSession, Outgoing, State, ViolationKind, WsDirection, WsRecord,
};
use super::Shared;

/// GUILD_PRESENCES, privileged and never enabled in the twin.
const GUILD_PRESENCES: u64 = 1 << 8;
/// Intents Discord calls privileged.
const PRIVILEGED_INTENTS: u64 = intent::GUILD_MEMBERS | GUILD_PRESENCES | intent::MESSAGE_CONTENT;

/// Discord's limits on what a client sends: 4096-byte payloads, 120 sends per 60 s.
const MAX_CLIENT_PAYLOAD: usize = 4096;
const MAX_SENDS_PER_WINDOW: usize = 120;
const SEND_WINDOW_MS: u64 = 60_000;

/// Close codes the twin uses.
pub const CLOSE_AUTHENTICATION_FAILED: u16 = 4004;
pub const CLOSE_INVALID_SEQ: u16 = 4007;
/// The twin serves one guild, so only shard `[0, 1]` is valid.
pub const CLOSE_INVALID_SHARD: u16 = 4010;
pub const CLOSE_SESSION_TIMED_OUT: u16 = 4009;
pub const CLOSE_DISALLOWED_INTENTS: u16 = 4014;

pub(crate) async fn upgrade(
    AxumState(shared): AxumState<Arc<Shared>>,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let query = uri.query().unwrap_or("").to_string();
    ws.on_upgrade(move |socket| run_connection(shared, socket, query))
}

/// A non-dispatch frame: `{"op","d","s":null,"t":null}`.
pub(crate) fn op_frame(op: u8, d: Value) -> String {
    json!({"op": op, "d": d, "s": null, "t": null}).to_string()
}

fn record(st: &mut State, conn: u64, direction: WsDirection, text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    st.ws_log.push(WsRecord {
        conn,
        direction,
        op: v["op"].as_u64(),
        t: v["t"].as_str().map(str::to_string),
        s: v["s"].as_u64(),
        text: text.to_string(),
        at_ms: st.now_ms,
    });
}

async fn run_connection(shared: Arc<Shared>, mut socket: WebSocket, query: String) {
    let conn = shared.with(|st| {
        let id = st.next_conn;
        st.next_conn += 1;
        let hello = op_frame(
            10,
            json!({"heartbeat_interval": st.cfg.heartbeat_interval.as_millis() as u64}),
        );
        st.conns.insert(
            id,
            GwConn {
                query,
                outbox: [Outgoing::Text(hello)].into_iter().collect(),
                session: None,
                identified: false,
                recent_sends_ms: Default::default(),
            },
        );
        id
    });
    let mut rx = shared.subscribe();
    'conn: loop {
        if shared.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        rx.borrow_and_update();
        let out = shared.with_quiet(|st| {
            let out = st.take_outbox(conn);
            for item in &out {
                if let Outgoing::Text(t) = item {
                    record(st, conn, WsDirection::ToBot, t);
                }
            }
            out
        });
        if !out.is_empty() {
            shared.notify();
        }
        for item in out {
            match item {
                Outgoing::Text(t) => {
                    if socket.send(WsMessage::Text(t.into())).await.is_err() {
                        break 'conn;
                    }
                }
                Outgoing::Close(code) => {
                    let frame = CloseFrame {
                        code,
                        reason: "".into(),
                    };
                    let _ = socket.send(WsMessage::Close(Some(frame))).await;
                    break 'conn;
                }
                Outgoing::DropTcp => break 'conn,
            }
        }
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(WsMessage::Text(t))) => shared.with(|st| handle_frame(st, conn, t.as_str())),
                Some(Ok(WsMessage::Binary(_))) => shared.with(|st| {
                    st.violation(ViolationKind::BadGatewayFrame, "the bot sent a binary gateway frame");
                }),
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(WsMessage::Close(_))) => {
                    // Flush tungstenite's queued close reply: serenity's shutdown waits for it.
                    let _ = futures_util::SinkExt::close(&mut socket).await;
                    break 'conn;
                }
                Some(Err(_)) | None => break 'conn,
            },
            changed = rx.changed() => if changed.is_err() { break 'conn },
        }
    }
    shared.with(|st| {
        if let Some(c) = st.conns.remove(&conn) {
            if let Some(s) = c.session.and_then(|s| st.sessions.get_mut(&s)) {
                if s.conn == Some(conn) {
                    s.conn = None;
                }
            }
        }
    });
}

#[derive(Deserialize)]
struct IdentifyBody {
    token: String,
    intents: u64,
    /// Required by Discord; its content is not checked.
    #[allow(dead_code)]
    properties: Value,
    #[serde(default)]
    shard: Option<[u32; 2]>,
    #[serde(default)]
    presence: Option<Value>,
}

#[derive(Deserialize)]
struct ResumeBody {
    token: String,
    session_id: String,
    seq: u64,
}

fn token_matches(st: &State, token: &str) -> bool {
    token.strip_prefix("Bot ").unwrap_or(token) == st.token
}

fn handle_frame(st: &mut State, conn: u64, text: &str) {
    record(st, conn, WsDirection::FromBot, text);
    if text.len() > MAX_CLIENT_PAYLOAD {
        st.violation(
            ViolationKind::BadGatewayFrame,
            format!("frame of {} bytes (limit {MAX_CLIENT_PAYLOAD})", text.len()),
        );
    }
    let now = st.now_ms;
    if let Some(c) = st.conns.get_mut(&conn) {
        c.recent_sends_ms.push_back(now);
        while c
            .recent_sends_ms
            .front()
            .is_some_and(|t| now.saturating_sub(*t) > SEND_WINDOW_MS)
        {
            c.recent_sends_ms.pop_front();
        }
        if c.recent_sends_ms.len() > MAX_SENDS_PER_WINDOW {
            st.violation(
                ViolationKind::BadGatewayFrame,
                "more than 120 gateway sends in 60 s",
            );
        }
    }
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        st.violation(ViolationKind::BadGatewayFrame, format!("not JSON: {text}"));
        return;
    };
    let push = |st: &mut State, item: Outgoing| {
        if let Some(c) = st.conns.get_mut(&conn) {
            c.outbox.push_back(item);
        }
    };
    match v["op"].as_u64() {
        Some(1) => {
            if !st.faults.stop_acking_heartbeats {
                push(st, Outgoing::Text(op_frame(11, Value::Null)));
            }
        }
        Some(2) => match serde_json::from_value::<IdentifyBody>(v["d"].clone()) {
            Ok(body) => identify(st, conn, body),
            Err(e) => {
                st.violation(ViolationKind::BadGatewayFrame, format!("IDENTIFY: {e}"));
                push(st, Outgoing::Close(4002));
            }
        },
        Some(3) => st.presence_updates.push(v["d"].clone()),
        Some(4) => {}
        Some(6) => match serde_json::from_value::<ResumeBody>(v["d"].clone()) {
            Ok(body) => resume(st, conn, body),
            Err(e) => {
                st.violation(ViolationKind::BadGatewayFrame, format!("RESUME: {e}"));
                push(st, Outgoing::Close(4002));
            }
        },
        Some(8) => request_members(st, &v["d"]),
        _ => {
            st.violation(
                ViolationKind::BadGatewayFrame,
                format!("unknown op: {text}"),
            );
            push(st, Outgoing::Close(4001));
        }
    }
}

fn identify(st: &mut State, conn: u64, body: IdentifyBody) {
    let push = |st: &mut State, item: Outgoing| {
        if let Some(c) = st.conns.get_mut(&conn) {
            c.outbox.push_back(item);
        }
    };
    if !token_matches(st, &body.token) {
        push(st, Outgoing::Close(CLOSE_AUTHENTICATION_FAILED));
        return;
    }
    let mut enabled = 0;
    if st.cfg.message_content_intent {
        enabled |= intent::MESSAGE_CONTENT;
    }
    if st.cfg.guild_members_intent {
        enabled |= intent::GUILD_MEMBERS;
    }
    if body.intents & PRIVILEGED_INTENTS & !enabled != 0 {
        push(st, Outgoing::Close(CLOSE_DISALLOWED_INTENTS));
        return;
    }
    if let Some(p) = body.presence {
        st.presence_updates.push(p);
    }
    if body.shard.is_some_and(|[id, total]| total != 1 || id != 0) {
        push(st, Outgoing::Close(CLOSE_INVALID_SHARD));
        return;
    }
    // A fresh IDENTIFY drops the disconnected sessions' buffers, as Discord does.
    st.sessions.retain(|_, s| s.conn.is_some());
    let session_id = format!("{:032x}", u128::from(st.next_id()) * 0x9e37_79b9_7f4a_7c15);
    st.sessions.insert(
        session_id.clone(),
        GwSession {
            id: session_id.clone(),
            seq: 0,
            intents: body.intents,
            buffer: Default::default(),
            conn: Some(conn),
        },
    );
    if let Some(c) = st.conns.get_mut(&conn) {
        c.session = Some(session_id.clone());
        c.identified = true;
    }
    let ready = model::ready_json(st, &session_id);
    st.emit_to(&session_id, "READY", ready);
    let guild = model::guild_create_json(st);
    st.emit_to(&session_id, "GUILD_CREATE", guild);
}

fn resume(st: &mut State, conn: u64, body: ResumeBody) {
    let push = |st: &mut State, item: Outgoing| {
        if let Some(c) = st.conns.get_mut(&conn) {
            c.outbox.push_back(item);
        }
    };
    if !token_matches(st, &body.token) {
        push(st, Outgoing::Close(CLOSE_AUTHENTICATION_FAILED));
        return;
    }
    let Some(session) = st.sessions.get_mut(&body.session_id) else {
        push(st, Outgoing::Text(op_frame(9, json!(false))));
        return;
    };
    let previous = session.conn.replace(conn);
    let replay: Vec<String> = session
        .buffer
        .iter()
        .filter(|(s, _)| *s > body.seq)
        .map(|(_, f)| f.clone())
        .collect();
    // Discord replays the missed dispatches, then sends RESUMED (not buffered: never replayed).
    session.seq += 1;
    let resumed = json!({"op": 0, "d": {}, "s": session.seq, "t": "RESUMED"}).to_string();
    if let Some(old) = previous
        .filter(|o| *o != conn)
        .and_then(|o| st.conns.get_mut(&o))
    {
        old.session = None;
        old.outbox.push_back(Outgoing::Close(CLOSE_INVALID_SEQ));
    }
    if let Some(c) = st.conns.get_mut(&conn) {
        c.session = Some(body.session_id.clone());
        c.identified = true;
        c.outbox.extend(replay.into_iter().map(Outgoing::Text));
        c.outbox.push_back(Outgoing::Text(resumed));
    }
    st.emitted_dispatches.push("RESUMED".into());
}

fn request_members(st: &mut State, d: &Value) {
    let query = d["query"].as_str().unwrap_or("").to_lowercase();
    let ids: Option<Vec<String>> = d["user_ids"].as_array().map(|a| {
        a.iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect()
    });
    let members: Vec<Value> = st
        .members
        .values()
        .filter(|m| match &ids {
            Some(ids) => ids.contains(&m.user_id.to_string()),
            None => st
                .users
                .get(&m.user_id)
                .is_some_and(|u| u.name.to_lowercase().starts_with(&query)),
        })
        .map(|m| model::member_json(st, m, true))
        .collect();
    let mut chunk = json!({
        "guild_id": st.guild_id.to_string(),
        "members": members,
        "chunk_index": 0,
        "chunk_count": 1,
        "not_found": [],
    });
    if let Some(n) = d["nonce"].as_str() {
        chunk["nonce"] = json!(n);
    }
    st.emit("GUILD_MEMBERS_CHUNK", chunk);
}

/// Queues items on every open connection.
pub(crate) fn push_all(st: &mut State, f: impl Fn(u64) -> Vec<Outgoing>) {
    for (id, c) in st.conns.iter_mut() {
        c.outbox.extend(f(*id));
    }
}

/// Op 9 on every connection; `false` also forgets the sessions.
pub(crate) fn invalid_session(st: &mut State, resumable: bool) {
    push_all(st, |_| vec![Outgoing::Text(op_frame(9, json!(resumable)))]);
    if !resumable {
        st.sessions.clear();
        for c in st.conns.values_mut() {
            c.session = None;
        }
    }
}

/// Closes every connection with `code`; codes that end a session forget it.
pub(crate) fn close_all(st: &mut State, code: u16) {
    push_all(st, |_| vec![Outgoing::Close(code)]);
    if matches!(code, 4006 | CLOSE_SESSION_TIMED_OUT | 4007) {
        st.sessions.clear();
    }
}

/// A dispatch that bypasses the self-check (for the unknown-dispatch test only).
pub(crate) fn emit_unchecked(st: &mut State, name: &str, d: Value) {
    st.emit_inner(name, d, None, false);
}
