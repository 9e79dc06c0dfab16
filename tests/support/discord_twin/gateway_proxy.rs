//! Gateway-proxy mode: the onboarding routes a gateway proxy serves (docs/gateway-mode.md), so
//! the real binary can onboard against the twin. The twin then serves the proxied bot's REST and
//! Gateway as usual, and the credential it hands out is simply its bot token. Tests play the
//! person who opens the install URL: authorize in a guild, refuse, or let the onboarding expire.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::Shared;

/// Longest long poll the twin holds (the client asks for 25 s).
const MAX_WAIT: Duration = Duration::from_secs(30);

/// What the simulated person did with an install URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnboardingStatus {
    Pending,
    Authorized { guild_id: u64 },
    Failed(String),
}

/// One onboarding the proxy opened.
#[derive(Clone, Debug)]
pub struct ProxyOnboarding {
    pub id: String,
    pub poll_token: String,
    pub install_url: String,
    pub status: OnboardingStatus,
    /// Polls answered so far (any outcome).
    pub polls: u32,
}

#[derive(Default)]
struct Inner {
    enabled: bool,
    onboardings: Vec<ProxyOnboarding>,
    /// The next `POST /kimaki/onboarding` answers with this status and message.
    create_fault: Option<(u16, String)>,
    /// The next this-many polls answer with the status.
    poll_faults: Option<(u16, u32)>,
}

/// The proxy's side of onboarding; lives in the twin's shared state.
#[derive(Default)]
pub(crate) struct ProxyState {
    inner: Mutex<Inner>,
}

impl ProxyState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The test's handle on the proxy.
pub struct GatewayProxy {
    pub(super) shared: Arc<Shared>,
}

impl GatewayProxy {
    /// `KIMAKI_GATEWAY_URL`: the twin's base URL (REST, Gateway and onboarding in one place).
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The credential the proxy hands out after an authorization (the bot token it accepts).
    pub fn credential(&self) -> String {
        self.shared.with_quiet(|st| st.token.clone())
    }

    pub fn onboardings(&self) -> Vec<ProxyOnboarding> {
        self.shared.proxy.lock().onboardings.clone()
    }

    /// Waits until the proxy has opened `n` onboardings and returns the `n`-th (1-based).
    pub async fn wait_onboarding(&self, n: usize, timeout: Duration) -> ProxyOnboarding {
        let mut rx = self.shared.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(o) = self.shared.proxy.lock().onboardings.get(n - 1) {
                return o.clone();
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!(
                    "the gateway proxy opened {} onboarding(s), not {n}, within {timeout:?}",
                    self.shared.proxy.lock().onboardings.len()
                ),
            }
        }
    }

    /// Waits until kimaki has polled onboarding `id` at least `n` times.
    pub async fn wait_polls(&self, id: &str, n: u32, timeout: Duration) {
        let mut rx = self.shared.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            let polls = self.find(id).polls;
            if polls >= n {
                return;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, rx.changed()).await,
                Ok(Ok(()))
            ) {
                panic!("onboarding {id} was polled {polls} time(s), not {n}, within {timeout:?}");
            }
        }
    }

    fn find(&self, id: &str) -> ProxyOnboarding {
        self.shared
            .proxy
            .lock()
            .onboardings
            .iter()
            .find(|o| o.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("the gateway proxy has no onboarding {id}"))
    }

    fn set_status(&self, id: &str, status: OnboardingStatus) {
        {
            let mut inner = self.shared.proxy.lock();
            let o = inner
                .onboardings
                .iter_mut()
                .find(|o| o.id == id)
                .unwrap_or_else(|| panic!("the gateway proxy has no onboarding {id}"));
            o.status = status;
        }
        self.shared.notify();
    }

    /// The person opened the install URL and added the bot to `guild_id`.
    pub fn authorize(&self, id: &str, guild_id: u64) {
        self.set_status(id, OnboardingStatus::Authorized { guild_id });
    }

    /// The person refused (or Discord's OAuth failed); the proxy reports `message`.
    pub fn fail(&self, id: &str, message: &str) {
        self.set_status(id, OnboardingStatus::Failed(message.to_owned()));
    }

    /// The next onboarding request is answered with `status` and `{"message": message}`.
    pub fn fail_next_create(&self, status: u16, message: &str) {
        self.shared.proxy.lock().create_fault = Some((status, message.to_owned()));
    }

    /// The next `times` polls (of any onboarding) answer `status` at once.
    pub fn fail_next_polls(&self, status: u16, times: u32) {
        self.shared.proxy.lock().poll_faults = Some((status, times));
    }

    /// The proxy stops accepting the credential it handed out (the authorization was revoked):
    /// REST answers 401 and the Gateway closes with 4004 from now on.
    pub fn revoke_credential(&self) {
        self.shared
            .with(|st| st.token = format!("{}-revoked", st.token));
    }
}

impl super::DiscordTwin {
    /// Starts a twin that also serves the gateway proxy's onboarding routes.
    pub async fn start_gateway_proxy(cfg: super::TwinConfig) -> Self {
        let twin = Self::start(cfg).await;
        twin.shared.proxy.lock().enabled = true;
        twin
    }

    /// The gateway proxy's test handle (its routes answer 404 unless started as one).
    pub fn gateway_proxy(&self) -> GatewayProxy {
        GatewayProxy {
            shared: self.shared.clone(),
        }
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": "404: Not Found"})),
    )
        .into_response()
}

/// `POST /kimaki/onboarding`
pub(super) async fn create(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let params: Value = serde_json::from_slice(&body).unwrap_or_default();
    if params["client"] != "kimaki" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "expected {\"client\": \"kimaki\", \"version\": …}"})),
        )
            .into_response();
    }
    let app_id = shared.with_quiet(|st| st.application_id().get());
    let created = {
        let mut inner = shared.proxy.lock();
        if !inner.enabled {
            return not_found();
        }
        if let Some((status, message)) = inner.create_fault.take() {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, Json(json!({ "message": message }))).into_response();
        }
        let n = inner.onboardings.len() + 1;
        let id = format!("onb-{n}");
        let o = ProxyOnboarding {
            poll_token: format!("poll-token-{n}-{:016x}", shared.clock.now_ms()),
            install_url: format!(
                "{}/discord-install?clientId={app_id}&state={id}",
                shared.base_url
            ),
            id,
            status: OnboardingStatus::Pending,
            polls: 0,
        };
        inner.onboardings.push(o.clone());
        o
    };
    shared.notify();
    Json(json!({
        "id": created.id,
        "install_url": created.install_url,
        "poll_token": created.poll_token,
    }))
    .into_response()
}

/// `GET /kimaki/onboarding/{id}?wait_secs=N`: held until the status changes or N seconds pass.
pub(super) async fn poll(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let wait = query
        .get("wait_secs")
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or_default()
        .min(MAX_WAIT);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let deadline = tokio::time::Instant::now() + wait;
    let mut rx = shared.subscribe();
    loop {
        rx.borrow_and_update();
        let status = {
            let mut inner = shared.proxy.lock();
            if !inner.enabled {
                return not_found();
            }
            if let Some((status, left)) = inner.poll_faults.as_mut().filter(|(_, n)| *n > 0) {
                *left -= 1;
                let status =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return (status, Json(json!({"message": "injected poll fault"}))).into_response();
            }
            let Some(o) = inner.onboardings.iter().find(|o| o.id == id) else {
                return not_found();
            };
            if bearer.as_deref() != Some(o.poll_token.as_str()) {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"message": "wrong poll token"})),
                )
                    .into_response();
            }
            o.status.clone()
        };
        let held = status == OnboardingStatus::Pending
            && !shared.stopped.load(Ordering::SeqCst)
            && matches!(
                tokio::time::timeout_at(deadline, rx.changed()).await,
                Ok(Ok(()))
            );
        if held {
            continue;
        }
        {
            let mut inner = shared.proxy.lock();
            if let Some(o) = inner.onboardings.iter_mut().find(|o| o.id == id) {
                o.polls += 1;
            }
        }
        shared.notify();
        let body = match status {
            OnboardingStatus::Pending => json!({"status": "pending"}),
            OnboardingStatus::Authorized { guild_id } => {
                let (app_id, credential) =
                    shared.with_quiet(|st| (st.application_id().get(), st.token.clone()));
                json!({
                    "status": "authorized",
                    "guild_id": guild_id.to_string(),
                    "app_id": app_id.to_string(),
                    "credential": credential,
                })
            }
            OnboardingStatus::Failed(message) => json!({"status": "failed", "message": message}),
        };
        return Json(body).into_response();
    }
}
