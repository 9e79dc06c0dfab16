//! The REST API under `/api/v10` (§4) and the CDN. One handler reads the body (JSON or
//! multipart), applies injected faults and rate limits, then routes under the state lock, so the
//! state change and its dispatches are atomic. Every answer is logged; bad bodies, unknown routes
//! and unexpected 401/403 become violations.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use serenity::model::id::{AttachmentId, ChannelId, GuildId, MessageId, RoleId, UserId};

use super::cdn;
use super::faults::FaultAction;
use super::interactions;
use super::model;
use super::ratelimit::{RateVerdict, RouteClass};
use super::selfcheck;
use super::state::{
    channel_kind, message_flag, permission, Attachment, Emoji, Message, Overwrite, Reaction,
    RestBody, RestRecord, State, UploadedFile, ViolationKind,
};
use super::validate::{self, FormErrors, MessageBody};
use super::Shared;

/// Largest body read outside multipart uploads.
const MAX_JSON_BODY: usize = 8 * 1024 * 1024;
/// How long `enforce_nonce` deduplicates (Discord: "a few minutes").
const NONCE_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Discord's per-category and per-guild channel limits.
const MAX_CHANNELS_PER_CATEGORY: usize = 50;
const MAX_CHANNELS_PER_GUILD: usize = 500;
/// Message flags a bot may set when posting.
const SETTABLE_MESSAGE_FLAGS: u64 = 4 | 4096 | message_flag::IS_VOICE_MESSAGE;

/// A parsed request, as routes see it.
pub(crate) struct Ctx {
    pub method: String,
    pub segs: Vec<String>,
    pub query: Option<String>,
    pub json: Option<Value>,
    pub files: Vec<UploadedFile>,
    pub authorized: bool,
}

impl Ctx {
    /// A query parameter (`?&limit=50` is accepted, as serenity sends it).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }

    pub fn body(&self) -> Value {
        self.json.clone().unwrap_or_else(|| json!({}))
    }
}

/// A successful answer.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
}

/// A Discord error answer; `violation` marks the bot's fault.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: u64,
    pub message: String,
    pub errors: Option<Value>,
    pub violation: Option<(ViolationKind, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: u64, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            errors: None,
            violation: None,
        }
    }

    pub fn invalid_form(errors: &FormErrors) -> Self {
        Self {
            errors: Some(errors.to_value()),
            violation: Some((ViolationKind::InvalidRequest, errors.summary())),
            ..Self::new(400, 50035, "Invalid Form Body")
        }
    }

    pub fn bot_fault(mut self, detail: impl Into<String>) -> Self {
        self.violation = Some((ViolationKind::InvalidRequest, detail.into()));
        self
    }

    pub fn unknown_channel() -> Self {
        Self::new(404, 10003, "Unknown Channel")
    }

    pub fn unknown_message() -> Self {
        Self::new(404, 10008, "Unknown Message")
    }

    pub fn unknown_member() -> Self {
        Self::new(404, 10007, "Unknown Member")
    }

    pub fn unknown_role() -> Self {
        Self::new(404, 10011, "Unknown Role")
    }

    pub fn unknown_interaction() -> Self {
        Self::new(404, 10062, "Unknown interaction")
    }

    pub fn archived() -> Self {
        Self::new(400, 50083, "Thread is archived")
    }

    /// 403; a violation unless the test revoked a permission.
    pub fn forbidden(st: &State, code: u64, message: &str) -> Self {
        let mut e = Self::new(403, code, message);
        if !st.permissions_revoked {
            e.violation = Some((
                ViolationKind::UnexpectedAuthFailure,
                format!("403 {code} {message}"),
            ));
        }
        e
    }
}

pub(crate) type RouteResult = Result<Reply, ApiError>;

/// A self-checked JSON answer.
pub(crate) fn ok<T: DeserializeOwned>(st: &mut State, ty: &str, status: u16, v: Value) -> Reply {
    if let Err(e) = selfcheck::check::<T>(ty, &v) {
        st.selfcheck_failed(format!("REST response: {e}"));
    }
    Reply {
        status,
        body: Some(v),
    }
}

pub(crate) fn no_content() -> Reply {
    Reply {
        status: 204,
        body: None,
    }
}

pub(crate) fn parse_id(s: &str) -> Option<u64> {
    s.parse::<u64>().ok().filter(|v| *v != 0)
}

pub(crate) fn parse_body<T: DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    validate::parse::<T>(v).map_err(|e| ApiError::invalid_form(&e))
}

fn api_segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix("/api/v10")?;
    Some(
        rest.split('/')
            .filter(|s| !s.is_empty())
            .map(cdn::percent_decode)
            .collect(),
    )
}

enum WireBody {
    Json(Value),
    Text(&'static str, String),
    Empty,
}

struct Wire {
    status: u16,
    body: WireBody,
    headers: Vec<(&'static str, String)>,
}

/// The fallback handler: every `/api/v10` request.
pub(crate) async fn handle(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().as_str().to_ascii_uppercase();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let payload = if content_type.starts_with("multipart/form-data") {
        match Multipart::from_request(req, &()).await {
            Ok(mp) => read_multipart(mp).await,
            Err(e) => Err(e.to_string()),
        }
    } else {
        match axum::body::to_bytes(req.into_body(), MAX_JSON_BODY).await {
            Ok(b) if b.is_empty() => Ok(Payload {
                multipart: false,
                json: None,
                files: vec![],
                raw: None,
            }),
            Ok(b) => match serde_json::from_slice::<Value>(&b) {
                Ok(v) => Ok(Payload {
                    multipart: false,
                    json: Some(v),
                    files: vec![],
                    raw: None,
                }),
                Err(_) => Ok(Payload {
                    multipart: false,
                    json: None,
                    files: vec![],
                    raw: Some(b.to_vec()),
                }),
            },
            Err(e) => Err(e.to_string()),
        }
    };
    let segs = api_segments(uri.path());
    let fault = segs
        .as_ref()
        .and_then(|s| shared.with(|st| st.faults.take(&method, s)));
    if let Some(FaultAction::Delay(d)) = &fault {
        // An injected fault, not synchronisation: the request is held as a slow Discord would.
        tokio::time::sleep(*d).await;
    }
    let wire = shared.with(|st| respond(st, &method, &uri, &headers, segs, payload, fault));
    into_response(wire)
}

struct Payload {
    multipart: bool,
    json: Option<Value>,
    files: Vec<UploadedFile>,
    raw: Option<Vec<u8>>,
}

async fn read_multipart(mut mp: Multipart) -> Result<Payload, String> {
    let mut json = None;
    let mut files = Vec::new();
    while let Some(field) = mp.next_field().await.map_err(|e| e.to_string())? {
        let name = field.name().unwrap_or("").to_string();
        let filename = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(str::to_string);
        let data = field.bytes().await.map_err(|e| e.to_string())?;
        if name == "payload_json" {
            json = Some(serde_json::from_slice(&data).map_err(|e| format!("payload_json: {e}"))?);
        } else if let Some(filename) = filename {
            files.push(UploadedFile {
                field: name,
                filename,
                content_type,
                bytes: Arc::new(data.to_vec()),
            });
        }
    }
    Ok(Payload {
        multipart: true,
        json,
        files,
        raw: None,
    })
}

fn into_response(w: Wire) -> Response {
    let status = StatusCode::from_u16(w.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match w.body {
        WireBody::Json(v) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response(),
        WireBody::Text(ct, t) => (status, [(header::CONTENT_TYPE, ct)], t).into_response(),
        WireBody::Empty => status.into_response(),
    };
    for (k, v) in w.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

fn rate_headers(v: &RateVerdict, now_ms: u64) -> Vec<(&'static str, String)> {
    let reset = now_ms as f64 / 1000.0 + v.reset_after_secs;
    vec![
        ("x-ratelimit-limit", v.limit.to_string()),
        ("x-ratelimit-remaining", v.remaining.to_string()),
        ("x-ratelimit-reset", format!("{reset:.3}")),
        (
            "x-ratelimit-reset-after",
            format!("{:.3}", v.reset_after_secs),
        ),
        ("x-ratelimit-bucket", v.bucket.clone()),
    ]
}

fn too_many(retry_after: f64, scope: &'static str, global: bool) -> Wire {
    let mut headers = vec![
        ("retry-after", format!("{retry_after}")),
        ("x-ratelimit-scope", scope.to_string()),
    ];
    if global {
        headers.push(("x-ratelimit-global", "true".into()));
    }
    Wire {
        status: 429,
        body: WireBody::Json(json!({
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": global,
            "code": 0,
        })),
        headers,
    }
}

fn injected_error(st: &State, status: u16) -> Wire {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    if st.faults.html_error_body {
        let html = format!("<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>");
        return Wire {
            status,
            body: WireBody::Text("text/html", html),
            headers: vec![],
        };
    }
    let code = match status {
        403 => 50013,
        _ => 0,
    };
    Wire {
        status,
        body: WireBody::Json(json!({"message": format!("{status}: {reason}"), "code": code})),
        headers: vec![],
    }
}

fn is_rename(method: &str, segs: &[String], json: Option<&Value>) -> bool {
    method == "PATCH"
        && segs.len() == 2
        && segs[0] == "channels"
        && json.is_some_and(|j| j.get("name").is_some() || j.get("topic").is_some())
}

/// Routes that authenticate by their token in the path.
fn token_route(segs: &[String]) -> bool {
    matches!(
        segs.first().map(String::as_str),
        Some("webhooks" | "interactions")
    )
}

fn respond(
    st: &mut State,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    segs: Option<Vec<String>>,
    payload: Result<Payload, String>,
    fault: Option<FaultAction>,
) -> Wire {
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let (log_body, payload) = match payload {
        Ok(p) => {
            let body = if p.multipart {
                RestBody::Multipart {
                    payload_json: p.json.clone(),
                    files: p.files.clone(),
                }
            } else if let Some(raw) = &p.raw {
                RestBody::Raw(raw.clone())
            } else if let Some(j) = &p.json {
                RestBody::Json(j.clone())
            } else {
                RestBody::Empty
            };
            (body, Ok(p))
        }
        Err(e) => (RestBody::Empty, Err(e)),
    };
    let Some(segs) = segs else {
        st.violation(ViolationKind::UnknownRoute, format!("{method} {path}"));
        let wire = Wire {
            status: 404,
            body: WireBody::Json(json!({"code": 0, "message": "404: Not Found"})),
            headers: vec![],
        };
        log(
            st,
            method,
            &path,
            query,
            method.to_string() + " " + &path,
            log_body,
            &wire,
            false,
        );
        return wire;
    };
    let class = RouteClass::of(
        method,
        &segs,
        is_rename(
            method,
            &segs,
            payload.as_ref().ok().and_then(|p| p.json.as_ref()),
        ),
    );
    let verdict = st.limiter.check(st.now_ms, &class);
    let mut injected = false;
    let mut wire = match (&fault, payload) {
        (
            Some(FaultAction::Status {
                status,
                retry_after,
                global,
            }),
            _,
        ) => {
            injected = true;
            if *status == 429 {
                too_many(
                    retry_after.unwrap_or(1.0),
                    if *global { "global" } else { "user" },
                    *global,
                )
            } else {
                injected_error(st, *status)
            }
        }
        (_, Err(e)) => {
            st.violation(
                ViolationKind::InvalidRequest,
                format!("{method} {path}: unreadable body: {e}"),
            );
            error_wire(ApiError::new(
                400,
                50109,
                "The request body contains invalid JSON.",
            ))
        }
        (_, Ok(p)) if p.raw.is_some() => {
            st.violation(
                ViolationKind::InvalidRequest,
                format!("{method} {path}: body is not JSON"),
            );
            error_wire(ApiError::new(
                400,
                50109,
                "The request body contains invalid JSON.",
            ))
        }
        (_, Ok(_)) if verdict.limited.is_some() => {
            let (after, scope, global) = verdict.limited.unwrap_or((1.0, "user", false));
            too_many(after, scope, global)
        }
        (_, Ok(p)) => {
            let authorized = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.strip_prefix("Bot ").is_some_and(|t| t == st.token));
            let ctx = Ctx {
                method: method.to_string(),
                segs: segs.clone(),
                query: query.clone(),
                json: p.json,
                files: p.files,
                authorized,
            };
            if !ctx.authorized && !token_route(&segs) {
                let e = ApiError {
                    violation: Some((
                        ViolationKind::UnexpectedAuthFailure,
                        format!("401 on {method} {path}"),
                    )),
                    ..ApiError::new(401, 0, "401: Unauthorized")
                };
                error_wire_logged(st, e)
            } else {
                match route(st, &ctx) {
                    Ok(r) => Wire {
                        status: r.status,
                        body: r.body.map_or(WireBody::Empty, WireBody::Json),
                        headers: vec![],
                    },
                    Err(e) => error_wire_logged(st, e),
                }
            }
        }
    };
    if wire.status != 429 {
        wire.headers.extend(rate_headers(&verdict, st.now_ms));
    } else {
        let mut v = verdict.clone();
        v.remaining = 0;
        wire.headers.extend(
            rate_headers(&v, st.now_ms)
                .into_iter()
                .filter(|(k, _)| *k != "retry-after"),
        );
    }
    match wire.status {
        401 => st.invalid_requests.unauthorized += 1,
        403 => st.invalid_requests.forbidden += 1,
        429 => st.invalid_requests.rate_limited += 1,
        _ => {}
    }
    log(
        st,
        method,
        &path,
        query,
        class.template.clone(),
        log_body,
        &wire,
        injected,
    );
    wire
}

#[allow(clippy::too_many_arguments)]
fn log(
    st: &mut State,
    method: &str,
    path: &str,
    query: Option<String>,
    route: String,
    body: RestBody,
    wire: &Wire,
    injected: bool,
) {
    st.rest_log.push(RestRecord {
        method: method.to_string(),
        path: path.to_string(),
        query,
        route,
        body,
        status: wire.status,
        at_ms: st.now_ms,
        injected,
    });
}

fn error_wire(e: ApiError) -> Wire {
    let mut body = json!({"code": e.code, "message": e.message});
    if let Some(errors) = e.errors {
        body["errors"] = errors;
    }
    Wire {
        status: e.status,
        body: WireBody::Json(body),
        headers: vec![],
    }
}

fn error_wire_logged(st: &mut State, mut e: ApiError) -> Wire {
    if let Some((kind, detail)) = e.violation.take() {
        st.violation(kind, detail);
    }
    error_wire(e)
}

/// Routes one authenticated request.
fn route(st: &mut State, ctx: &Ctx) -> RouteResult {
    let s: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    let unknown = || {
        Err(ApiError {
            violation: Some((
                ViolationKind::UnknownRoute,
                format!("{} /{}", ctx.method, ctx.segs.join("/")),
            )),
            ..ApiError::new(404, 0, "404: Not Found")
        })
    };
    match (ctx.method.as_str(), s.as_slice()) {
        ("GET", ["gateway"]) => {
            st.gateway_calls += 1;
            Ok(Reply {
                status: 200,
                body: Some(json!({"url": gateway_url(st)})),
            })
        }
        ("GET", ["gateway", "bot"]) => {
            st.gateway_calls += 1;
            let v = json!({
                "url": gateway_url(st),
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1},
            });
            Ok(ok::<serenity::model::gateway::BotGateway>(
                st,
                "BotGateway",
                200,
                v,
            ))
        }
        ("GET", ["users", "@me"]) => {
            let v = model::current_user_json(st);
            Ok(ok::<serenity::model::user::CurrentUser>(
                st,
                "CurrentUser",
                200,
                v,
            ))
        }
        ("GET", ["users", u]) => {
            let u = parse_id(u)
                .map(UserId::new)
                .filter(|u| st.users.contains_key(u));
            let Some(u) = u else {
                return Err(ApiError::new(404, 10013, "Unknown User"));
            };
            let v = model::user_json_by_id(st, u);
            Ok(ok::<serenity::model::user::User>(st, "User", 200, v))
        }
        ("GET", ["oauth2", "applications", "@me"] | ["applications", "@me"]) => {
            let v = model::application_info_json(st);
            Ok(ok::<serenity::model::application::CurrentApplicationInfo>(
                st,
                "CurrentApplicationInfo",
                200,
                v,
            ))
        }
        ("POST", ["channels", c, "messages"]) => create_message(st, channel_id(c)?, ctx),
        ("GET", ["channels", c, "messages"]) => list_messages(st, channel_id(c)?, ctx),
        ("GET", ["channels", c, "messages", m]) => {
            let m = find_message(st, channel_id(c)?, m)?;
            let v = model::message_json(st, &m, false);
            Ok(ok::<serenity::model::channel::Message>(
                st, "Message", 200, v,
            ))
        }
        ("PATCH", ["channels", c, "messages", m]) => {
            let m = find_message(st, channel_id(c)?, m)?;
            edit_message(st, m, ctx)
        }
        ("DELETE", ["channels", c, "messages", m]) => {
            let m = find_message(st, channel_id(c)?, m)?;
            if m.author_id != st.bot_id {
                require(st, m.channel_id, permission::MANAGE_MESSAGES)?;
            }
            st.delete_message(m.id);
            Ok(no_content())
        }
        ("POST", ["channels", c, "typing"]) => {
            let c = channel_id(c)?;
            require(st, c, 0)?;
            record_typing(st, c, st.bot_id);
            Ok(no_content())
        }
        ("PUT", ["channels", c, "messages", m, "reactions", e, "@me"]) => {
            let m = find_message(st, channel_id(c)?, m)?;
            react(st, &m, e, st.bot_id, true)
        }
        ("DELETE", ["channels", c, "messages", m, "reactions", e, "@me"]) => {
            let m = find_message(st, channel_id(c)?, m)?;
            react(st, &m, e, st.bot_id, false)
        }
        ("DELETE", ["channels", c, "messages", m, "reactions", e, u]) => {
            let m = find_message(st, channel_id(c)?, m)?;
            require(st, m.channel_id, permission::MANAGE_MESSAGES)?;
            let u = parse_id(u)
                .map(UserId::new)
                .ok_or_else(ApiError::unknown_member)?;
            react(st, &m, e, u, false)
        }
        ("GET", ["channels", c, "messages", m, "reactions", e]) => {
            let m = find_message(st, channel_id(c)?, m)?;
            let emoji = parse_emoji(e);
            let users: Vec<Value> = st
                .reactions
                .iter()
                .filter(|r| r.message_id == m.id && r.emoji == emoji)
                .map(|r| model::user_json_by_id(st, r.user_id))
                .collect();
            Ok(ok::<Vec<serenity::model::user::User>>(
                st,
                "Vec<User>",
                200,
                json!(users),
            ))
        }
        ("POST", ["channels", c, "messages", m, "threads"]) => {
            let c = channel_id(c)?;
            let m = find_message(st, c, m)?;
            thread_from_message(st, c, m, ctx)
        }
        ("POST", ["channels", c, "threads"]) => thread_without_message(st, channel_id(c)?, ctx),
        ("GET", ["channels", c]) => {
            let c = channel_id(c)?;
            let v = model::channel_json(st, c);
            Ok(ok::<serenity::model::channel::GuildChannel>(
                st,
                "GuildChannel",
                200,
                v,
            ))
        }
        ("PATCH", ["channels", c]) => edit_channel(st, channel_id(c)?, ctx),
        ("DELETE", ["channels", c]) => {
            let c = channel_id(c)?;
            let is_thread = st.channel(c).is_some_and(|ch| ch.is_thread());
            let owner = st.channel(c).and_then(|ch| ch.owner_id);
            let needed = if is_thread && owner == Some(st.bot_id) {
                0
            } else if is_thread {
                permission::MANAGE_THREADS
            } else {
                permission::MANAGE_CHANNELS
            };
            require(st, c, needed)?;
            let v = model::channel_json(st, c);
            st.delete_channel(c);
            Ok(ok::<serenity::model::channel::GuildChannel>(
                st,
                "GuildChannel",
                200,
                v,
            ))
        }
        ("PUT" | "DELETE", ["channels", t, "thread-members", u]) => {
            let t = thread_id(st, t)?;
            let u = if *u == "@me" {
                Some(st.bot_id)
            } else {
                parse_id(u).map(UserId::new)
            };
            let u = u
                .filter(|u| st.members.contains_key(u))
                .ok_or_else(ApiError::unknown_member)?;
            if st.channel(t).is_some_and(|c| c.archived) {
                return Err(ApiError::archived());
            }
            if ctx.method == "PUT" {
                st.add_thread_member(t, u);
            } else {
                remove_thread_member(st, t, u);
            }
            Ok(no_content())
        }
        ("GET", ["channels", t, "thread-members"]) => {
            let t = thread_id(st, t)?;
            let v: Vec<Value> = st
                .thread_members
                .iter()
                .filter(|m| m.thread_id == t)
                .map(model::thread_member_json)
                .collect();
            Ok(ok::<Vec<serenity::model::guild::ThreadMember>>(
                st,
                "Vec<ThreadMember>",
                200,
                json!(v),
            ))
        }
        ("GET", ["channels", t, "thread-members", u]) => {
            let t = thread_id(st, t)?;
            let u = parse_id(u)
                .map(UserId::new)
                .ok_or_else(ApiError::unknown_member)?;
            let tm = st
                .thread_members
                .iter()
                .find(|m| m.thread_id == t && m.user_id == u)
                .cloned();
            let tm = tm.ok_or_else(ApiError::unknown_member)?;
            let v = model::thread_member_json(&tm);
            Ok(ok::<serenity::model::guild::ThreadMember>(
                st,
                "ThreadMember",
                200,
                v,
            ))
        }
        ("GET", ["guilds", g, "threads", "active"]) => {
            guild(st, g)?;
            let threads: Vec<Value> = st
                .threads()
                .into_iter()
                .filter(|t| !t.archived)
                .map(|t| model::channel_json(st, t.id))
                .collect();
            let members: Vec<Value> = st
                .thread_members
                .iter()
                .filter(|m| m.user_id == st.bot_id && st.channel(m.thread_id).is_some())
                .map(model::thread_member_json)
                .collect();
            let v = json!({"threads": threads, "members": members, "has_more": false});
            Ok(ok::<serenity::model::channel::ThreadsData>(
                st,
                "ThreadsData",
                200,
                v,
            ))
        }
        ("GET", ["guilds", g]) => {
            guild(st, g)?;
            let v = model::partial_guild_json(st);
            Ok(ok::<serenity::model::guild::PartialGuild>(
                st,
                "PartialGuild",
                200,
                v,
            ))
        }
        ("GET", ["guilds", g, "channels"]) => {
            guild(st, g)?;
            let v: Vec<Value> = st
                .channels
                .values()
                .filter(|c| !c.deleted && !c.is_thread())
                .map(|c| model::channel_json(st, c.id))
                .collect();
            Ok(ok::<Vec<serenity::model::channel::GuildChannel>>(
                st,
                "Vec<GuildChannel>",
                200,
                json!(v),
            ))
        }
        ("POST", ["guilds", g, "channels"]) => {
            guild(st, g)?;
            create_guild_channel(st, ctx)
        }
        ("GET", ["guilds", g, "roles"]) => {
            guild(st, g)?;
            let v: Vec<Value> = st.roles.values().map(|r| model::role_json(st, r)).collect();
            Ok(ok::<Vec<serenity::model::guild::Role>>(
                st,
                "Vec<Role>",
                200,
                json!(v),
            ))
        }
        ("POST", ["guilds", g, "roles"]) => {
            guild(st, g)?;
            upsert_role(st, None, ctx)
        }
        ("PATCH", ["guilds", g, "roles", r]) => {
            guild(st, g)?;
            let r = parse_id(r)
                .map(RoleId::new)
                .filter(|r| st.roles.contains_key(r))
                .ok_or_else(ApiError::unknown_role)?;
            upsert_role(st, Some(r), ctx)
        }
        ("PUT" | "DELETE", ["guilds", g, "members", u, "roles", r]) => {
            guild(st, g)?;
            let u = parse_id(u)
                .map(UserId::new)
                .filter(|u| st.members.contains_key(u))
                .ok_or_else(ApiError::unknown_member)?;
            let r = parse_id(r)
                .map(RoleId::new)
                .filter(|r| st.roles.contains_key(r))
                .ok_or_else(ApiError::unknown_role)?;
            if st.base_permissions(st.bot_id) & permission::MANAGE_ROLES == 0 {
                return Err(ApiError::forbidden(st, 50013, "Missing Permissions"));
            }
            super::actors::set_role(st, u, r, ctx.method == "PUT");
            Ok(no_content())
        }
        ("GET", ["guilds", g, "members"]) => {
            guild(st, g)?;
            let limit = ctx
                .param("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(1)
                .clamp(1, 1000);
            let after = ctx
                .param("after")
                .and_then(|a| a.parse::<u64>().ok())
                .unwrap_or(0);
            let v: Vec<Value> = st
                .members
                .values()
                .filter(|m| m.user_id.get() > after)
                .take(limit)
                .map(|m| model::member_json(st, m, true))
                .collect();
            Ok(ok::<Vec<serenity::model::guild::Member>>(
                st,
                "Vec<Member>",
                200,
                json!(v),
            ))
        }
        ("GET", ["guilds", g, "members", "search"]) => {
            guild(st, g)?;
            let q = ctx
                .param("query")
                .map(cdn::percent_decode)
                .unwrap_or_default()
                .to_lowercase();
            let limit = ctx
                .param("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(1)
                .clamp(1, 1000);
            let v: Vec<Value> = st
                .members
                .values()
                .filter(|m| {
                    st.users.get(&m.user_id).is_some_and(|u| {
                        u.name.to_lowercase().starts_with(&q)
                            || u.global_name
                                .as_deref()
                                .is_some_and(|g| g.to_lowercase().starts_with(&q))
                    })
                })
                .take(limit)
                .map(|m| model::member_json(st, m, true))
                .collect();
            Ok(ok::<Vec<serenity::model::guild::Member>>(
                st,
                "Vec<Member>",
                200,
                json!(v),
            ))
        }
        ("GET", ["guilds", g, "members", u]) => {
            guild(st, g)?;
            let m = parse_id(u)
                .map(UserId::new)
                .and_then(|u| st.members.get(&u))
                .cloned()
                .ok_or_else(ApiError::unknown_member)?;
            let v = model::member_json(st, &m, true);
            Ok(ok::<serenity::model::guild::Member>(st, "Member", 200, v))
        }
        ("PUT", ["applications", a, "commands"]) => {
            app(st, a)?;
            put_commands(st, None, ctx)
        }
        ("PUT", ["applications", a, "guilds", g, "commands"]) => {
            app(st, a)?;
            let g = guild(st, g)?;
            put_commands(st, Some(g), ctx)
        }
        ("GET", ["applications", a, "commands"]) => {
            app(st, a)?;
            list_commands(st, None)
        }
        ("GET", ["applications", a, "guilds", g, "commands"]) => {
            app(st, a)?;
            let g = guild(st, g)?;
            list_commands(st, Some(g))
        }
        ("POST", ["interactions", id, token, "callback"]) => {
            interactions::callback(st, id, token, ctx)
        }
        (_, ["webhooks", a, token, rest @ ..]) => interactions::webhook(st, a, token, rest, ctx),
        _ => unknown(),
    }
}

fn gateway_url(st: &State) -> String {
    format!("{}/gateway", st.base_url.replacen("http", "ws", 1))
}

fn channel_id(s: &str) -> Result<ChannelId, ApiError> {
    parse_id(s)
        .map(ChannelId::new)
        .ok_or_else(ApiError::unknown_channel)
}

fn guild(st: &State, g: &str) -> Result<GuildId, ApiError> {
    parse_id(g)
        .map(GuildId::new)
        .filter(|g| *g == st.guild_id)
        .ok_or_else(|| ApiError::new(404, 10004, "Unknown Guild"))
}

fn app(st: &State, a: &str) -> Result<(), ApiError> {
    if parse_id(a) == Some(st.application_id().get()) {
        Ok(())
    } else {
        Err(ApiError::forbidden(st, 50001, "Missing Access"))
    }
}

fn thread_id(st: &State, t: &str) -> Result<ChannelId, ApiError> {
    let t = channel_id(t)?;
    if st.channel(t).is_some_and(|c| c.is_thread()) {
        Ok(t)
    } else {
        Err(ApiError::unknown_channel())
    }
}

fn find_message(st: &State, c: ChannelId, m: &str) -> Result<Message, ApiError> {
    if st.channel(c).is_none() {
        return Err(ApiError::unknown_channel());
    }
    parse_id(m)
        .map(MessageId::new)
        .and_then(|m| st.message(m))
        .filter(|msg| msg.channel_id == c && !msg.is_ephemeral())
        .cloned()
        .ok_or_else(ApiError::unknown_message)
}

/// Checks the bot's permissions in a channel (VIEW_CHANNEL always).
pub(crate) fn require(st: &State, c: ChannelId, bits: u64) -> Result<(), ApiError> {
    if st.channel(c).is_none() {
        return Err(ApiError::unknown_channel());
    }
    let perms = st.channel_permissions(st.bot_id, c);
    if perms & permission::VIEW_CHANNEL == 0 {
        return Err(ApiError::forbidden(st, 50001, "Missing Access"));
    }
    if perms & bits != bits {
        return Err(ApiError::forbidden(st, 50013, "Missing Permissions"));
    }
    Ok(())
}

pub(crate) fn record_typing(st: &mut State, c: ChannelId, user: UserId) {
    st.typing.push(super::state::Typing {
        channel_id: c,
        user_id: user,
        at_ms: st.now_ms,
    });
    st.timeline
        .push(super::transcript::TimelineEntry::Typing { channel: c, user });
    let mut d = json!({
        "channel_id": c.to_string(),
        "guild_id": st.guild_id.to_string(),
        "user_id": user.to_string(),
        "timestamp": st.now_ms / 1000,
    });
    if let Some(m) = st.members.get(&user) {
        d["member"] = model::member_json(st, m, true);
    }
    st.emit("TYPING_START", d);
}

/// Message fields shared by channel posts, webhook followups and interaction responses.
pub(crate) struct NewMessage {
    pub channel: ChannelId,
    pub author: UserId,
    pub webhook_id: Option<u64>,
    pub ephemeral_to: Option<UserId>,
    pub extra_flags: u64,
}

/// Validates a message body (+ files) and builds the stored message; does not insert it.
pub(crate) fn build_message(
    st: &mut State,
    spec: NewMessage,
    raw: &Value,
    files: &[UploadedFile],
) -> Result<Message, ApiError> {
    let body: MessageBody = parse_body(raw)?;
    let errs = validate::check_message(&body, files.len());
    if !errs.is_empty() {
        return Err(ApiError::invalid_form(&errs));
    }
    if validate::is_empty_message(&body, files.len()) {
        return Err(
            ApiError::new(400, 50006, "Cannot send an empty message").bot_fault("empty message")
        );
    }
    let mut msg = st.new_message(spec.channel, spec.author);
    msg.content = body.content.clone().unwrap_or_default();
    msg.tts = body.tts.unwrap_or(false);
    msg.embeds = raw["embeds"].as_array().cloned().unwrap_or_default();
    msg.components = raw["components"].as_array().cloned().unwrap_or_default();
    msg.flags = (body.flags.unwrap_or(0) & SETTABLE_MESSAGE_FLAGS) | spec.extra_flags;
    msg.webhook_id = spec.webhook_id;
    msg.ephemeral_to = spec.ephemeral_to;
    msg.nonce = body.nonce_string();
    apply_mentions(st, &mut msg, &body);
    if let Some(r) = &body.message_reference {
        let target = r.message_id.as_ref().and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        });
        let target = target.as_deref().and_then(parse_id).map(MessageId::new);
        match target
            .and_then(|t| st.message(t))
            .filter(|t| t.channel_id == spec.channel)
        {
            Some(t) => {
                msg.referenced = Some(t.id);
                msg.kind = 19;
            }
            None if r.fail_if_not_exists == Some(false) => {}
            None => {
                let mut e = FormErrors::default();
                e.add(
                    "message_reference",
                    "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                    "Unknown message",
                );
                return Err(ApiError {
                    violation: None,
                    ..ApiError::invalid_form(&e)
                });
            }
        }
    }
    msg.attachments = store_files(st, spec.channel, &body, files)?;
    if msg.flags & message_flag::IS_VOICE_MESSAGE != 0 {
        check_voice(st, &msg)?;
    }
    Ok(msg)
}

fn apply_mentions(st: &State, msg: &mut Message, body: &MessageBody) {
    let (users, roles) = st.parse_mentions(&msg.content);
    let parse: Option<Vec<String>> = body
        .allowed_mentions
        .as_ref()
        .map(|a| a.parse.clone().unwrap_or_default());
    let listed = |list: &Option<Vec<Value>>, id: u64| {
        list.as_ref().is_some_and(|l| {
            l.iter()
                .any(|v| v.as_str() == Some(&id.to_string()) || v.as_u64() == Some(id))
        })
    };
    let allowed_users = body
        .allowed_mentions
        .as_ref()
        .map(|a| a.users.clone())
        .unwrap_or_default();
    let allowed_roles = body
        .allowed_mentions
        .as_ref()
        .map(|a| a.roles.clone())
        .unwrap_or_default();
    let allows = |kind: &str| parse.as_ref().is_none_or(|p| p.iter().any(|k| k == kind));
    msg.mentions = users
        .into_iter()
        .filter(|u| allows("users") || listed(&allowed_users, u.get()))
        .collect();
    msg.mention_roles = roles
        .into_iter()
        .filter(|r| allows("roles") || listed(&allowed_roles, r.get()))
        .collect();
    msg.mention_everyone =
        allows("everyone") && (msg.content.contains("@everyone") || msg.content.contains("@here"));
}

fn guess_content_type(filename: &str) -> Option<String> {
    let ext = filename.rsplit('.').next()?.to_ascii_lowercase();
    let ct = match ext.as_str() {
        "txt" | "log" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        _ => return None,
    };
    Some(ct.to_string())
}

/// Stores uploaded parts as attachments, matching `files[n]` to `attachments[{id: n}]`.
fn store_files(
    st: &mut State,
    channel: ChannelId,
    body: &MessageBody,
    files: &[UploadedFile],
) -> Result<Vec<AttachmentId>, ApiError> {
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if f.bytes.len() as u64 > st.cfg.attachment_size_limit {
            return Err(
                ApiError::new(413, 40005, "Request entity too large").bot_fault(format!(
                    "{} is {} bytes, over the {}-byte limit",
                    f.filename,
                    f.bytes.len(),
                    st.cfg.attachment_size_limit
                )),
            );
        }
        let index = f
            .field
            .strip_prefix("files[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(i as u64);
        let meta = body
            .attachments
            .as_ref()
            .and_then(|a| a.iter().find(|a| a.id_u64() == Some(index)));
        let filename = meta
            .and_then(|m| m.filename.clone())
            .unwrap_or_else(|| f.filename.clone());
        let content_type = f
            .content_type
            .clone()
            .filter(|c| c != "application/octet-stream")
            .or_else(|| guess_content_type(&filename))
            .or_else(|| f.content_type.clone());
        let id = AttachmentId::new(st.next_id());
        let ttl = st.cfg.attachment_link_ttl.as_millis() as u64;
        st.attachments.insert(
            id,
            Attachment {
                id,
                channel_id: channel,
                filename,
                description: meta.and_then(|m| m.description.clone()),
                content_type,
                bytes: f.bytes.clone(),
                duration_secs: meta.and_then(|m| m.duration_secs),
                waveform: meta.and_then(|m| m.waveform.clone()),
                issued_ms: st.now_ms,
                expires_ms: st.now_ms + ttl,
                expired: false,
            },
        );
        out.push(id);
    }
    Ok(out)
}

fn check_voice(st: &State, msg: &Message) -> Result<(), ApiError> {
    let ok = msg.attachments.len() == 1
        && msg.content.is_empty()
        && msg
            .attachments
            .iter()
            .filter_map(|a| st.attachments.get(a))
            .all(|a| {
                a.content_type
                    .as_deref()
                    .is_some_and(|c| c.starts_with("audio/"))
                    && a.duration_secs.is_some()
                    && a.waveform.is_some()
            });
    if ok {
        Ok(())
    } else {
        let mut e = FormErrors::default();
        e.add("flags", "MESSAGE_VOICE_INVALID", "A voice message needs one audio attachment with duration_secs and waveform, and no content");
        Err(ApiError::invalid_form(&e))
    }
}

fn create_message(st: &mut State, c: ChannelId, ctx: &Ctx) -> RouteResult {
    let ch = st
        .channel(c)
        .cloned()
        .ok_or_else(ApiError::unknown_channel)?;
    let send = if ch.is_thread() {
        permission::SEND_MESSAGES_IN_THREADS
    } else {
        permission::SEND_MESSAGES
    };
    let attach = if ctx.files.is_empty() {
        0
    } else {
        permission::ATTACH_FILES
    };
    require(st, c, send | attach)?;
    if ch.kind == channel_kind::CATEGORY {
        return Err(ApiError::new(
            400,
            50008,
            "Cannot send messages in a non-text channel",
        ));
    }
    if ch.is_thread()
        && ch.locked
        && st.channel_permissions(st.bot_id, c) & permission::MANAGE_THREADS == 0
    {
        return Err(ApiError::forbidden(st, 160005, "Thread is locked"));
    }
    let raw = ctx.body();
    let body: MessageBody = parse_body(&raw)?;
    if body.enforce_nonce == Some(true) {
        if let Some(n) = body.nonce_string() {
            if let Some((prev, at)) = st.nonces.get(&(c, n)).copied() {
                if st.now_ms.saturating_sub(at) <= NONCE_WINDOW_MS {
                    if let Some(m) = st.message(prev).cloned() {
                        let v = model::message_json(st, &m, false);
                        return Ok(ok::<serenity::model::channel::Message>(
                            st, "Message", 200, v,
                        ));
                    }
                }
            }
        }
    }
    let spec = NewMessage {
        channel: c,
        author: st.bot_id,
        webhook_id: None,
        ephemeral_to: None,
        extra_flags: 0,
    };
    let msg = build_message(st, spec, &raw, &ctx.files)?;
    if let Some(n) = msg.nonce.clone() {
        st.nonces.insert((c, n), (msg.id, st.now_ms));
    }
    let id = st.insert_message(msg);
    let m = st
        .messages
        .get(&id)
        .cloned()
        .ok_or_else(ApiError::unknown_message)?;
    let v = model::message_json(st, &m, false);
    Ok(ok::<serenity::model::channel::Message>(
        st, "Message", 200, v,
    ))
}

/// Applies a PATCH body to a stored message (only the sent keys change).
pub(crate) fn apply_edit(
    st: &mut State,
    mut m: Message,
    raw: &Value,
    files: &[UploadedFile],
) -> Result<Message, ApiError> {
    if m.flags & message_flag::IS_VOICE_MESSAGE != 0 {
        return Err(ApiError::new(400, 50161, "Cannot edit a voice message")
            .bot_fault("edited a voice message"));
    }
    if st
        .channel(m.channel_id)
        .is_some_and(|c| c.is_thread() && c.archived)
    {
        return Err(ApiError::archived());
    }
    let body: MessageBody = parse_body(raw)?;
    let errs = validate::check_message(&body, files.len());
    if !errs.is_empty() {
        return Err(ApiError::invalid_form(&errs));
    }
    if raw.get("content").is_some() {
        m.content = body.content.clone().unwrap_or_default();
        apply_mentions(st, &mut m, &body);
    }
    if raw.get("embeds").is_some() {
        m.embeds = raw["embeds"].as_array().cloned().unwrap_or_default();
    }
    if raw.get("components").is_some() {
        m.components = raw["components"].as_array().cloned().unwrap_or_default();
    }
    if let Some(flags) = body.flags {
        m.flags = (m.flags & !4) | (flags & 4);
    }
    if raw.get("attachments").is_some() || !files.is_empty() {
        let keep: Vec<u64> = body
            .attachments
            .iter()
            .flatten()
            .filter_map(|a| a.id_u64())
            .collect();
        m.attachments.retain(|a| keep.contains(&a.get()));
        let new = store_files(st, m.channel_id, &body, files)?;
        m.attachments.extend(new);
        if m.attachments.len() > validate::MAX_ATTACHMENTS {
            let mut e = FormErrors::default();
            e.add(
                "attachments",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 10 or fewer in length.",
            );
            return Err(ApiError::invalid_form(&e));
        }
    }
    m.flags &= !message_flag::LOADING;
    if m.content.is_empty()
        && m.embeds.is_empty()
        && m.attachments.is_empty()
        && m.components.is_empty()
    {
        return Err(ApiError::new(400, 50006, "Cannot send an empty message")
            .bot_fault("edit left an empty message"));
    }
    m.edited_ms = Some(st.now_ms);
    Ok(m)
}

fn edit_message(st: &mut State, m: Message, ctx: &Ctx) -> RouteResult {
    if m.author_id != st.bot_id {
        return Err(ApiError::forbidden(
            st,
            50005,
            "Cannot edit a message authored by another user",
        ));
    }
    let m = apply_edit(st, m, &ctx.body(), &ctx.files)?;
    let id = m.id;
    st.timeline.push(super::transcript::TimelineEntry::Edit {
        channel: m.channel_id,
        message: id,
    });
    st.messages.insert(id, m);
    st.emit_message_update(id);
    let m = st
        .messages
        .get(&id)
        .cloned()
        .ok_or_else(ApiError::unknown_message)?;
    let v = model::message_json(st, &m, false);
    Ok(ok::<serenity::model::channel::Message>(
        st, "Message", 200, v,
    ))
}

fn list_messages(st: &mut State, c: ChannelId, ctx: &Ctx) -> RouteResult {
    require(st, c, 0)?;
    let limit = match ctx.param("limit") {
        None => 50,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                let mut e = FormErrors::default();
                e.add(
                    "limit",
                    "NUMBER_TYPE_MAX",
                    "int value should be between 1 and 100.",
                );
                return Err(ApiError::invalid_form(&e));
            }
        },
    };
    let id = |k: &str| ctx.param(k).and_then(parse_id);
    let mut all: Vec<Message> = st
        .messages_in(c)
        .into_iter()
        .filter(|m| !m.is_ephemeral())
        .cloned()
        .collect();
    all.sort_by_key(|m| std::cmp::Reverse(m.id));
    let picked: Vec<Message> = if let Some(b) = id("before") {
        all.into_iter()
            .filter(|m| m.id.get() < b)
            .take(limit)
            .collect()
    } else if let Some(a) = id("after") {
        let mut newer: Vec<Message> = all.into_iter().filter(|m| m.id.get() > a).collect();
        newer.reverse();
        newer.truncate(limit);
        newer.reverse();
        newer
    } else if let Some(around) = id("around") {
        let idx = all
            .iter()
            .position(|m| m.id.get() <= around)
            .unwrap_or(all.len());
        let start = idx.saturating_sub(limit / 2);
        all.into_iter().skip(start).take(limit).collect()
    } else {
        all.into_iter().take(limit).collect()
    };
    let v: Vec<Value> = picked
        .iter()
        .map(|m| model::message_json(st, m, false))
        .collect();
    Ok(ok::<Vec<serenity::model::channel::Message>>(
        st,
        "Vec<Message>",
        200,
        json!(v),
    ))
}

fn parse_emoji(segment: &str) -> Emoji {
    match segment.rsplit_once(':') {
        Some((name, id)) if parse_id(id).is_some() => Emoji {
            id: parse_id(id),
            name: name.to_string(),
        },
        _ => Emoji {
            id: None,
            name: segment.to_string(),
        },
    }
}

pub(crate) fn react(
    st: &mut State,
    m: &Message,
    emoji: &str,
    user: UserId,
    add: bool,
) -> RouteResult {
    if st
        .channel(m.channel_id)
        .is_some_and(|c| c.is_thread() && c.archived)
    {
        return Err(ApiError::archived());
    }
    if add && user == st.bot_id {
        require(st, m.channel_id, permission::ADD_REACTIONS)?;
    }
    let emoji = parse_emoji(emoji);
    if emoji.name.is_empty() {
        return Err(ApiError::new(400, 10014, "Unknown Emoji").bot_fault("empty emoji"));
    }
    let exists = st
        .reactions
        .iter()
        .any(|r| r.message_id == m.id && r.user_id == user && r.emoji == emoji);
    let mut d = json!({
        "user_id": user.to_string(),
        "channel_id": m.channel_id.to_string(),
        "message_id": m.id.to_string(),
        "guild_id": st.guild_id.to_string(),
        "emoji": model::emoji_json(&emoji),
        "burst": false,
        "type": 0,
    });
    if add && !exists {
        st.reactions.push(Reaction {
            channel_id: m.channel_id,
            message_id: m.id,
            user_id: user,
            emoji: emoji.clone(),
        });
        st.timeline
            .push(super::transcript::TimelineEntry::Reaction {
                channel: m.channel_id,
                message: m.id,
                user,
                emoji: emoji.name.clone(),
            });
        if let Some(member) = st.members.get(&user) {
            d["member"] = model::member_json(st, member, true);
        }
        d["message_author_id"] = json!(m.author_id.to_string());
        st.emit("MESSAGE_REACTION_ADD", d);
    } else if !add && exists {
        st.reactions
            .retain(|r| !(r.message_id == m.id && r.user_id == user && r.emoji == emoji));
        st.emit("MESSAGE_REACTION_REMOVE", d);
    }
    Ok(no_content())
}

fn thread_reply(st: &mut State, t: ChannelId) -> Reply {
    let v = model::channel_json(st, t);
    ok::<serenity::model::channel::GuildChannel>(st, "GuildChannel", 201, v)
}

fn thread_from_message(st: &mut State, c: ChannelId, m: Message, ctx: &Ctx) -> RouteResult {
    let parent = st
        .channel(c)
        .cloned()
        .ok_or_else(ApiError::unknown_channel)?;
    if parent.is_thread() || parent.kind == channel_kind::CATEGORY {
        return Err(
            ApiError::new(400, 50024, "Cannot execute action on this channel type")
                .bot_fault("thread from a message outside a text channel"),
        );
    }
    require(st, c, permission::CREATE_PUBLIC_THREADS)?;
    let body: validate::ThreadBody = parse_body(&ctx.body())?;
    let errs = validate::check_thread(&body);
    if !errs.is_empty() {
        return Err(ApiError::invalid_form(&errs));
    }
    let tid = ChannelId::new(m.id.get());
    if st.channels.contains_key(&tid) {
        return Err(ApiError::new(
            400,
            160004,
            "A thread has already been created for this message",
        ));
    }
    st.create_thread(
        tid,
        c,
        st.bot_id,
        &body.name,
        body.auto_archive_duration.unwrap_or(1440),
    );
    st.timeline
        .push(super::transcript::TimelineEntry::ThreadCreated {
            channel: c,
            thread: tid,
            from: Some(m.id),
        });
    if let Some(msg) = st.messages.get_mut(&m.id) {
        msg.flags |= message_flag::HAS_THREAD;
        msg.thread_id = Some(tid);
    }
    st.emit_message_update(m.id);
    st.add_thread_member(tid, st.bot_id);
    Ok(thread_reply(st, tid))
}

fn thread_without_message(st: &mut State, c: ChannelId, ctx: &Ctx) -> RouteResult {
    let parent = st
        .channel(c)
        .cloned()
        .ok_or_else(ApiError::unknown_channel)?;
    if parent.kind != channel_kind::TEXT {
        return Err(
            ApiError::new(400, 50024, "Cannot execute action on this channel type")
                .bot_fault("thread outside a text channel"),
        );
    }
    require(st, c, permission::CREATE_PUBLIC_THREADS)?;
    let body: validate::ThreadBody = parse_body(&ctx.body())?;
    let errs = validate::check_thread(&body);
    if !errs.is_empty() {
        return Err(ApiError::invalid_form(&errs));
    }
    let tid = ChannelId::new(st.next_id());
    st.create_thread(
        tid,
        c,
        st.bot_id,
        &body.name,
        body.auto_archive_duration.unwrap_or(1440),
    );
    st.timeline
        .push(super::transcript::TimelineEntry::ThreadCreated {
            channel: c,
            thread: tid,
            from: None,
        });
    let mut sys = st.new_message(c, st.bot_id);
    sys.kind = 18;
    sys.content = body.name.clone();
    st.insert_message(sys);
    st.add_thread_member(tid, st.bot_id);
    Ok(thread_reply(st, tid))
}

fn remove_thread_member(st: &mut State, t: ChannelId, u: UserId) {
    let before = st.thread_members.len();
    st.thread_members
        .retain(|m| !(m.thread_id == t && m.user_id == u));
    if st.thread_members.len() != before {
        let count = st
            .thread_members
            .iter()
            .filter(|m| m.thread_id == t)
            .count();
        let d = json!({
            "id": t.to_string(),
            "guild_id": st.guild_id.to_string(),
            "member_count": count,
            "removed_member_ids": [u.to_string()],
        });
        st.emit("THREAD_MEMBERS_UPDATE", d);
    }
}

/// Discord's text-channel name rule: lowercase, spaces become `-`.
pub(crate) fn normalize_channel_name(name: &str) -> String {
    name.trim()
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("-")
}

fn overwrites(body: Option<&Vec<validate::OverwriteBody>>) -> Vec<Overwrite> {
    let bits = |v: &Option<Value>| match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    };
    body.into_iter()
        .flatten()
        .filter_map(|o| {
            let id = o.id.as_str().and_then(parse_id).or_else(|| o.id.as_u64())?;
            Some(Overwrite {
                id,
                kind: o.kind,
                allow: bits(&o.allow),
                deny: bits(&o.deny),
            })
        })
        .collect()
}

fn edit_channel(st: &mut State, c: ChannelId, ctx: &Ctx) -> RouteResult {
    let ch = st
        .channel(c)
        .cloned()
        .ok_or_else(ApiError::unknown_channel)?;
    let body: validate::ChannelEditBody = parse_body(&ctx.body())?;
    let errs = validate::check_channel_edit(&body);
    if !errs.is_empty() {
        return Err(ApiError::invalid_form(&errs));
    }
    if ch.is_thread() {
        let own = ch.owner_id == Some(st.bot_id);
        let needs_manage = body.locked.is_some() || !own;
        require(
            st,
            c,
            if needs_manage {
                permission::MANAGE_THREADS
            } else {
                0
            },
        )?;
        if ch.archived && body.archived != Some(false) {
            return Err(ApiError::archived());
        }
    } else {
        require(st, c, permission::MANAGE_CHANNELS)?;
    }
    let now = st.now_ms;
    let Some(chm) = st.channels.get_mut(&c) else {
        return Err(ApiError::unknown_channel());
    };
    if let Some(n) = &body.name {
        chm.name = if chm.kind == channel_kind::TEXT {
            normalize_channel_name(n)
        } else {
            n.clone()
        };
    }
    if let Some(t) = &body.topic {
        chm.topic = t.clone();
    }
    if let Some(a) = body.archived {
        chm.archived = a;
        chm.archive_timestamp_ms = now;
    }
    if let Some(l) = body.locked {
        chm.locked = l;
    }
    if let Some(d) = body.auto_archive_duration {
        chm.auto_archive_duration = d;
    }
    if let Some(p) = body.position {
        chm.position = p;
    }
    if let Some(p) = &body.parent_id {
        chm.parent_id = p
            .as_ref()
            .and_then(|v| v.as_str().and_then(parse_id).or_else(|| v.as_u64()))
            .map(ChannelId::new);
    }
    if body.permission_overwrites.is_some() {
        chm.overwrites = overwrites(body.permission_overwrites.as_ref());
    }
    st.timeline
        .push(super::transcript::TimelineEntry::ChannelEdit { channel: c });
    st.emit_channel_update(c);
    let v = model::channel_json(st, c);
    Ok(ok::<serenity::model::channel::GuildChannel>(
        st,
        "GuildChannel",
        200,
        v,
    ))
}

fn create_guild_channel(st: &mut State, ctx: &Ctx) -> RouteResult {
    if st.base_permissions(st.bot_id) & permission::MANAGE_CHANNELS == 0 {
        return Err(ApiError::forbidden(st, 50013, "Missing Permissions"));
    }
    let body: validate::ChannelCreateBody = parse_body(&ctx.body())?;
    let errs = validate::check_channel_create(&body);
    if !errs.is_empty() {
        return Err(ApiError::invalid_form(&errs));
    }
    let kind = body.kind.unwrap_or(channel_kind::TEXT);
    let parent = body
        .parent_id
        .as_ref()
        .and_then(|v| v.as_str().and_then(parse_id).or_else(|| v.as_u64()))
        .map(ChannelId::new);
    if let Some(p) = parent {
        let is_category = st
            .channel(p)
            .is_some_and(|c| c.kind == channel_kind::CATEGORY);
        if !is_category || kind == channel_kind::CATEGORY {
            let mut e = FormErrors::default();
            e.add("parent_id", "CHANNEL_PARENT_INVALID_TYPE", "Not a category");
            return Err(ApiError::invalid_form(&e));
        }
        let siblings = st
            .channels
            .values()
            .filter(|c| !c.deleted && c.parent_id == Some(p) && !c.is_thread())
            .count();
        if siblings >= MAX_CHANNELS_PER_CATEGORY {
            let mut e = FormErrors::default();
            e.add(
                "parent_id",
                "CHANNEL_PARENT_MAX_CHANNELS",
                "Maximum number of channels in category reached (50)",
            );
            return Err(ApiError::invalid_form(&e));
        }
    }
    if st
        .channels
        .values()
        .filter(|c| !c.deleted && !c.is_thread())
        .count()
        >= MAX_CHANNELS_PER_GUILD
    {
        return Err(
            ApiError::new(400, 30013, "Maximum number of guild channels reached (500)")
                .bot_fault("over 500 channels"),
        );
    }
    let name = if kind == channel_kind::TEXT {
        normalize_channel_name(&body.name)
    } else {
        body.name.clone()
    };
    let id = st.create_channel(kind, &name, parent, body.topic.clone());
    if body.permission_overwrites.is_some() {
        if let Some(c) = st.channels.get_mut(&id) {
            c.overwrites = overwrites(body.permission_overwrites.as_ref());
        }
    }
    let v = model::channel_json(st, id);
    Ok(ok::<serenity::model::channel::GuildChannel>(
        st,
        "GuildChannel",
        201,
        v,
    ))
}

fn upsert_role(st: &mut State, existing: Option<RoleId>, ctx: &Ctx) -> RouteResult {
    if st.base_permissions(st.bot_id) & permission::MANAGE_ROLES == 0 {
        return Err(ApiError::forbidden(st, 50013, "Missing Permissions"));
    }
    let body: validate::RoleBody = parse_body(&ctx.body())?;
    if let Some(n) = &body.name {
        if n.chars().count() > 100 {
            let mut e = FormErrors::default();
            e.add(
                "name",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 100 or fewer in length.",
            );
            return Err(ApiError::invalid_form(&e));
        }
    }
    let id = match existing {
        Some(id) => id,
        None => {
            let id = RoleId::new(st.next_id());
            let position = st.roles.values().map(|r| r.position).max().unwrap_or(0) + 1;
            st.roles.insert(
                id,
                super::state::Role {
                    id,
                    name: "new role".into(),
                    permissions: st
                        .roles
                        .get(&RoleId::new(st.guild_id.get()))
                        .map_or(0, |r| r.permissions),
                    position,
                    managed: false,
                    color: 0,
                    hoist: false,
                    mentionable: false,
                },
            );
            id
        }
    };
    let perms = body.permissions_u64();
    if let Some(r) = st.roles.get_mut(&id) {
        if let Some(n) = &body.name {
            r.name = n.clone();
        }
        if let Some(p) = perms {
            r.permissions = p;
        }
        if let Some(c) = body.color {
            r.color = c;
        }
        if let Some(h) = body.hoist {
            r.hoist = h;
        }
        if let Some(m) = body.mentionable {
            r.mentionable = m;
        }
    }
    let role = st
        .roles
        .get(&id)
        .cloned()
        .ok_or_else(ApiError::unknown_role)?;
    let rv = model::role_json(st, &role);
    let name = if existing.is_some() {
        "GUILD_ROLE_UPDATE"
    } else {
        "GUILD_ROLE_CREATE"
    };
    st.emit(
        name,
        json!({"guild_id": st.guild_id.to_string(), "role": rv.clone()}),
    );
    Ok(ok::<serenity::model::guild::Role>(st, "Role", 200, rv))
}

fn put_commands(st: &mut State, scope: Option<GuildId>, ctx: &Ctx) -> RouteResult {
    let raw = ctx.json.clone().unwrap_or(Value::Null);
    let items = raw.as_array().cloned().ok_or_else(|| {
        let mut e = FormErrors::default();
        e.add("", "MODEL_TYPE_CONVERT", "Expected an array of commands");
        ApiError::invalid_form(&e)
    })?;
    let parsed: Vec<validate::CommandBody> = parse_body(&raw)?;
    let errs = validate::check_commands(&parsed);
    if !errs.is_empty() {
        return Err(ApiError::invalid_form(&errs));
    }
    let version = st.next_id();
    let mut kept = Vec::new();
    for (item, body) in items.into_iter().zip(parsed) {
        let kind = body.kind.unwrap_or(1);
        let id = st
            .commands
            .iter()
            .find(|c| c.guild_id == scope && c.name == body.name && c.kind == kind)
            .map(|c| c.id)
            .unwrap_or_else(|| serenity::model::id::CommandId::new(st.next_id()));
        kept.push(super::state::Command {
            id,
            guild_id: scope,
            name: body.name,
            kind,
            definition: item,
            version,
        });
    }
    st.commands.retain(|c| c.guild_id != scope);
    st.commands.extend(kept);
    list_commands(st, scope)
}

fn list_commands(st: &mut State, scope: Option<GuildId>) -> RouteResult {
    let v: Vec<Value> = st
        .commands
        .iter()
        .filter(|c| c.guild_id == scope)
        .map(|c| model::command_json(st, c))
        .collect();
    Ok(ok::<Vec<serenity::model::application::Command>>(
        st,
        "Vec<Command>",
        200,
        json!(v),
    ))
}

/// `GET /attachments/{channel}/{id}/{filename}`: the fake CDN (no auth).
pub(crate) async fn cdn_download(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((channel, id, filename)): Path<(String, String, String)>,
    uri: Uri,
) -> Response {
    shared.with(|st| {
        let found = cdn::download(st, &channel, &id, &filename, uri.query());
        let status = if found.is_ok() { 200 } else { 404 };
        st.rest_log.push(RestRecord {
            method: "GET".into(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            route: "GET /attachments/{channel}/{id}/{filename}".into(),
            body: RestBody::Empty,
            status,
            at_ms: st.now_ms,
            injected: false,
        });
        match found {
            Ok((ct, bytes)) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, ct)],
                Body::from(bytes.as_ref().clone()),
            )
                .into_response(),
            Err(()) => (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain".to_string())],
                Body::from(cdn::GONE_BODY),
            )
                .into_response(),
        }
    })
}
