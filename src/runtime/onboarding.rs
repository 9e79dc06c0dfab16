//! Gateway mode's onboarding: from a saved authorization, or through the proxy's install URL, to
//! the credential the Discord adapter connects with. Emits `install_url` and `authorized` on the
//! SSE stream; `ready` (and a Discord connection that fails later) stay with the daemon. Every
//! secret the proxy hands out goes to the log redactor before anything could log it.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::adapters::discord::{
    install_url_with_callback, Authorization, CredentialCheck, GatewayProxy, GatewayProxyError,
    PollOutcome, SavedOnboarding, LONG_POLL,
};
use crate::telemetry::sse::{Lifecycle, LifecycleOut};
use crate::telemetry::Redactor;

/// A proxy that answers polls at once (ignoring `wait_secs`) is asked at most this often.
const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Consecutive failed polls (proxy down, 5xx) tolerated before giving up: with the capped
/// backoff below, about three minutes of outage.
const MAX_POLL_FAILURES: u32 = 8;

/// Backoff between failed polls: doubles from the first value up to the cap.
const POLL_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const POLL_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Onboardings the proxy may let expire in one run before kimaki stops asking for new ones
/// (a proxy that forgets every onboarding at once would otherwise be asked forever).
const MAX_ONBOARDINGS_PER_RUN: u32 = 24;

/// What `onboard` needs.
pub struct OnboardingOptions {
    /// `KIMAKI_GATEWAY_URL`.
    pub gateway_url: String,
    /// `<data-dir>/gateway.json`.
    pub state_file: PathBuf,
    /// `--gateway-callback-url`, encoded into the install URL.
    pub callback_url: Option<String>,
    /// `--restart-onboarding`: forget any saved state first.
    pub restart: bool,
    pub lifecycle: LifecycleOut,
    pub redactor: Redactor,
    /// The install URL being waited on, for `kimaki status` while onboarding.
    pub waiting_on: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// The result of onboarding: where the proxied bot's API is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct GatewayLogin {
    /// The proxy's base URL; serenity is pointed at it.
    pub api_base: String,
    pub authorization: Authorization,
}

#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    #[error(transparent)]
    Proxy(#[from] GatewayProxyError),
    #[error("the bot was not authorized: {message}")]
    Failed {
        message: String,
        install_url: String,
    },
    #[error(
        "gave up waiting for the authorization after {MAX_POLL_FAILURES} failed requests: {last}"
    )]
    PollGaveUp {
        last: GatewayProxyError,
        install_url: String,
    },
    #[error("nobody authorized the bot: {MAX_ONBOARDINGS_PER_RUN} install URLs expired in a row")]
    Expired { install_url: String },
}

impl OnboardingError {
    /// The install URL the error concerns, for the `error` event.
    pub fn install_url(&self) -> Option<&str> {
        match self {
            OnboardingError::Failed { install_url, .. }
            | OnboardingError::PollGaveUp { install_url, .. }
            | OnboardingError::Expired { install_url } => Some(install_url),
            OnboardingError::Proxy(_) => None,
        }
    }
}

enum Waited {
    Authorized(Authorization),
    Failed(String),
    Expired,
}

/// Returns the saved authorization when the proxy still accepts it; otherwise opens an
/// onboarding (or resumes the saved pending one), emits its install URL and waits until the
/// bot is authorized. Cancel by dropping the future; a pending onboarding is resumed next time.
pub async fn onboard(opts: OnboardingOptions) -> Result<GatewayLogin, OnboardingError> {
    let proxy = GatewayProxy::new(&opts.gateway_url)?;
    let path = &opts.state_file;
    if opts.restart {
        SavedOnboarding::discard(path)?;
        tracing::info!("Onboarding starts over (--restart-onboarding).");
    }
    let mut saved = load_saved(&proxy, &opts)?;

    if let Some(authorization) = saved.as_ref().and_then(SavedOnboarding::authorization) {
        match proxy.check_credential(&authorization.credential).await {
            Ok(CredentialCheck::Accepted) => {
                tracing::info!(
                    guild_id = authorization.guild_id,
                    "Using the saved gateway authorization."
                );
                return Ok(login(&proxy, authorization));
            }
            Ok(CredentialCheck::Rejected) => {
                tracing::warn!("The gateway proxy no longer accepts the saved credential (authorization revoked or bot removed); onboarding again.");
                SavedOnboarding::discard(path)?;
                saved = None;
            }
            Err(e) => {
                // Like Discord itself being slow: the adapter keeps connecting in the background.
                tracing::warn!(error = %e, "Could not check the saved gateway credential; connecting anyway.");
                return Ok(login(&proxy, authorization));
            }
        }
    }

    let mut opened = 0u32;
    loop {
        let current = match saved.take() {
            Some(s) => s,
            None => {
                opened += 1;
                let onboarding = proxy.create_onboarding().await?;
                opts.redactor.add(onboarding.poll_token.expose().to_owned());
                let s = SavedOnboarding::pending(&proxy.base(), &onboarding);
                s.save(path)?;
                s
            }
        };
        let url = install_url_with_callback(&current.install_url, opts.callback_url.as_deref());
        tracing::info!(install_url = %url, "Waiting for the bot to be authorized: open the install URL.");
        opts.lifecycle
            .emit(&Lifecycle::InstallUrl { url: url.clone() });
        *opts.waiting_on.lock().unwrap_or_else(|p| p.into_inner()) = Some(url.clone());
        match wait_for_authorization(&proxy, &current, &url).await? {
            Waited::Authorized(authorization) => {
                opts.redactor
                    .add(authorization.credential.expose().to_owned());
                let mut done = current;
                done.set_authorized(&authorization);
                done.save(path)?;
                tracing::info!(
                    guild_id = authorization.guild_id,
                    "The bot was authorized through the gateway proxy."
                );
                opts.lifecycle.emit(&Lifecycle::Authorized {
                    guild_id: authorization.guild_id.to_string(),
                });
                return Ok(login(&proxy, authorization));
            }
            Waited::Failed(message) => {
                // The next start opens a fresh onboarding instead of polling a dead one.
                SavedOnboarding::discard(path)?;
                return Err(OnboardingError::Failed {
                    message,
                    install_url: url,
                });
            }
            Waited::Expired if opened >= MAX_ONBOARDINGS_PER_RUN => {
                SavedOnboarding::discard(path)?;
                return Err(OnboardingError::Expired { install_url: url });
            }
            Waited::Expired => {
                tracing::info!("The install URL expired; asking the gateway proxy for a new one.");
                SavedOnboarding::discard(path)?;
            }
        }
    }
}

fn load_saved(
    proxy: &GatewayProxy,
    opts: &OnboardingOptions,
) -> Result<Option<SavedOnboarding>, OnboardingError> {
    let path = &opts.state_file;
    let saved = match SavedOnboarding::load(path) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "The saved onboarding is unreadable; starting over.");
            SavedOnboarding::discard(path)?;
            None
        }
    };
    let Some(saved) = saved else {
        return Ok(None);
    };
    for v in saved.secret_values() {
        opts.redactor.add(v);
    }
    if saved.gateway_url != proxy.base() {
        tracing::warn!(saved = %saved.gateway_url, now = %proxy.base(), "The saved onboarding was made with another gateway proxy; starting over.");
        SavedOnboarding::discard(path)?;
        return Ok(None);
    }
    Ok(Some(saved))
}

fn login(proxy: &GatewayProxy, authorization: Authorization) -> GatewayLogin {
    GatewayLogin {
        api_base: proxy.base(),
        authorization,
    }
}

/// Long-polls until the proxy says authorized, failed or expired. Waiting for a person has no
/// deadline; a proxy that keeps failing does.
async fn wait_for_authorization(
    proxy: &GatewayProxy,
    saved: &SavedOnboarding,
    install_url: &str,
) -> Result<Waited, OnboardingError> {
    let onboarding = saved.onboarding();
    let mut failures = 0u32;
    let mut backoff = POLL_BACKOFF_FIRST;
    loop {
        let asked = Instant::now();
        match proxy.poll(&onboarding, LONG_POLL).await {
            Ok(PollOutcome::Pending) => {
                failures = 0;
                backoff = POLL_BACKOFF_FIRST;
                tokio::time::sleep_until(asked + MIN_POLL_INTERVAL).await;
            }
            Ok(PollOutcome::Authorized(a)) => return Ok(Waited::Authorized(a)),
            Ok(PollOutcome::Failed(message)) => return Ok(Waited::Failed(message)),
            Ok(PollOutcome::Unknown) => return Ok(Waited::Expired),
            Err(e) if e.is_retryable() && failures + 1 < MAX_POLL_FAILURES => {
                failures += 1;
                tracing::warn!(error = %e, failures, retry_in_ms = backoff.as_millis() as u64, "Polling the gateway proxy failed; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(POLL_BACKOFF_CAP);
            }
            Err(e) if e.is_retryable() => {
                return Err(OnboardingError::PollGaveUp {
                    last: e,
                    install_url: install_url.to_owned(),
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
}
