//! The gateway proxy's onboarding protocol (docs/gateway-mode.md): ask the proxy for an install
//! URL, long-poll until someone authorizes the shared bot in a guild, check a saved credential,
//! and keep the result in a mode-0600 file in the data dir. Knows nothing of SSE or the CLI; the
//! proxy's credential and poll token are `Secret`s and never reach `Debug`, `Display` or a log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::config::env_file::write_private_file;
use crate::config::Secret;

/// Where the onboarding routes live under the proxy's base URL (next to `/api/v10` and
/// `/gateway`, which the proxy forwards to Discord).
const ONBOARDING_PATH: &[&str] = &["kimaki", "onboarding"];

/// The proxy holds a poll open this long: below the 30–60 s idle timeouts of common reverse
/// proxies, long enough that waiting costs a request every half minute.
pub const LONG_POLL: Duration = Duration::from_secs(25);

/// Connect and answer deadline for the short calls (create, credential check).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A long poll may take `LONG_POLL` plus this before kimaki gives up on that request.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(15);

/// The query parameter that carries `--gateway-callback-url` in the install URL.
const CALLBACK_PARAM: &str = "callbackUrl";

/// Version of the onboarding file's layout.
const FILE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum GatewayProxyError {
    #[error("the gateway proxy {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the gateway proxy {url} answered HTTP {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the gateway proxy {url} sent an answer kimaki cannot read: {reason}")]
    Decode { url: String, reason: String },
    #[error("`{0}` is not a usable gateway proxy URL (expected http:// or https://)")]
    BadUrl(String),
    #[error("cannot read or write {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, GatewayProxyError>;

impl GatewayProxyError {
    /// Whether asking again later can succeed (the proxy was down or overloaded).
    pub fn is_retryable(&self) -> bool {
        match self {
            GatewayProxyError::Unreachable { .. } => true,
            GatewayProxyError::Refused { status, .. } => *status >= 500 || *status == 429,
            GatewayProxyError::Decode { .. }
            | GatewayProxyError::BadUrl(_)
            | GatewayProxyError::File { .. } => false,
        }
    }
}

/// An onboarding the proxy opened: the URL a person opens, and how kimaki asks about it.
#[derive(Clone)]
pub struct Onboarding {
    pub id: String,
    /// The proxy's install URL, without the callback parameter.
    pub install_url: String,
    /// Proves to the proxy that this kimaki opened the onboarding (whoever holds it receives
    /// the credential).
    pub poll_token: Secret,
}

impl std::fmt::Debug for Onboarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Onboarding")
            .field("id", &self.id)
            .field("install_url", &self.install_url)
            .field("poll_token", &self.poll_token)
            .finish()
    }
}

/// The proxied bot was authorized in a guild; `credential` is what kimaki presents as its bot
/// token to the proxy.
#[derive(Clone)]
pub struct Authorization {
    pub guild_id: u64,
    pub app_id: u64,
    pub credential: Secret,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("guild_id", &self.guild_id)
            .field("app_id", &self.app_id)
            .field("credential", &self.credential)
            .finish()
    }
}

/// What one poll learned.
#[derive(Debug, Clone)]
pub enum PollOutcome {
    /// Nobody has authorized yet; poll again.
    Pending,
    Authorized(Authorization),
    /// The proxy gave up on this onboarding (denied, cancelled); its message says why.
    Failed(String),
    /// The proxy no longer knows this onboarding (expired or forgotten): open a new one.
    Unknown,
}

/// Whether the proxy still accepts a saved credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialCheck {
    Accepted,
    /// 401: the authorization was revoked or the bot removed; onboarding must run again.
    Rejected,
}

/// The HTTP client for one proxy.
#[derive(Clone)]
pub struct GatewayProxy {
    base: Url,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct CreateParams<'a> {
    client: &'a str,
    version: &'a str,
}

#[derive(Deserialize)]
struct CreateResponse {
    id: String,
    install_url: String,
    poll_token: String,
}

#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum PollResponse {
    Pending,
    Authorized {
        guild_id: String,
        app_id: String,
        credential: String,
    },
    Failed {
        #[serde(default)]
        message: String,
    },
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

impl GatewayProxy {
    /// A client for the proxy at `base` (`KIMAKI_GATEWAY_URL`).
    pub fn new(base: &str) -> Result<Self> {
        let base = base.trim().trim_end_matches('/');
        let url = Url::parse(base).map_err(|_| GatewayProxyError::BadUrl(base.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(GatewayProxyError::BadUrl(base.to_owned()));
        }
        // The proxy URL is explicit: an environment proxy in front of it is never meant.
        let http = reqwest::Client::builder()
            .connect_timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| GatewayProxyError::Unreachable {
                url: base.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self { base: url, http })
    }

    /// The base URL serenity is pointed at (no trailing slash).
    pub fn base(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    fn url(&self, extra: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(ONBOARDING_PATH).extend(extra);
        }
        url
    }

    fn unreachable(&self, e: &reqwest::Error) -> GatewayProxyError {
        // reqwest's own text names the full URL; the base alone is enough and carries no ids.
        // The innermost causes ("Connection refused") say more than the wrappers around them.
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        let reason = match causes.len() {
            0 if e.is_timeout() => "no answer in time".to_owned(),
            0 => "the request failed".to_owned(),
            n => causes[n.saturating_sub(2)..].join(": "),
        };
        GatewayProxyError::Unreachable {
            url: self.base(),
            reason,
        }
    }

    async fn refused(&self, resp: reqwest::Response) -> GatewayProxyError {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.message)
            .unwrap_or_else(|_| {
                status
                    .canonical_reason()
                    .unwrap_or("no explanation")
                    .to_owned()
            });
        GatewayProxyError::Refused {
            url: self.base(),
            status: status.as_u16(),
            message,
        }
    }

    async fn decode<T: for<'de> Deserialize<'de>>(&self, resp: reqwest::Response) -> Result<T> {
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| GatewayProxyError::Decode {
            url: self.base(),
            reason: e.to_string(),
        })
    }

    /// Opens an onboarding: `POST /kimaki/onboarding`.
    pub async fn create_onboarding(&self) -> Result<Onboarding> {
        let resp = self
            .http
            .post(self.url(&[]))
            .timeout(REQUEST_TIMEOUT)
            .json(&CreateParams {
                client: "kimaki",
                version: env!("CARGO_PKG_VERSION"),
            })
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(self.refused(resp).await);
        }
        let body: CreateResponse = self.decode(resp).await?;
        let install = Url::parse(&body.install_url).map_err(|e| GatewayProxyError::Decode {
            url: self.base(),
            reason: format!("install_url is not a URL: {e}"),
        })?;
        if body.id.is_empty() || body.poll_token.is_empty() {
            return Err(GatewayProxyError::Decode {
                url: self.base(),
                reason: "the onboarding has no id or poll token".to_owned(),
            });
        }
        Ok(Onboarding {
            id: body.id,
            install_url: install.to_string(),
            poll_token: Secret::new(body.poll_token),
        })
    }

    /// Asks about an onboarding, letting the proxy hold the request up to `wait`:
    /// `GET /kimaki/onboarding/{id}?wait_secs=N`.
    pub async fn poll(&self, onboarding: &Onboarding, wait: Duration) -> Result<PollOutcome> {
        let mut url = self.url(&[onboarding.id.as_str()]);
        url.query_pairs_mut()
            .append_pair("wait_secs", &wait.as_secs().to_string());
        let resp = self
            .http
            .get(url)
            .bearer_auth(onboarding.poll_token.expose())
            .timeout(wait + LONG_POLL_MARGIN)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        match resp.status() {
            StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(PollOutcome::Unknown),
            s if !s.is_success() => return Err(self.refused(resp).await),
            _ => {}
        }
        let body: PollResponse = self.decode(resp).await?;
        Ok(match body {
            PollResponse::Pending => PollOutcome::Pending,
            PollResponse::Failed { message } => PollOutcome::Failed(if message.is_empty() {
                "the proxy reported no reason".to_owned()
            } else {
                message
            }),
            PollResponse::Authorized {
                guild_id,
                app_id,
                credential,
            } => {
                let snowflake = |field: &str, v: &str| {
                    v.parse::<u64>().map_err(|_| GatewayProxyError::Decode {
                        url: self.base(),
                        reason: format!("{field} `{v}` is not a Discord id"),
                    })
                };
                if credential.is_empty() {
                    return Err(GatewayProxyError::Decode {
                        url: self.base(),
                        reason: "the authorization carries no credential".to_owned(),
                    });
                }
                PollOutcome::Authorized(Authorization {
                    guild_id: snowflake("guild_id", &guild_id)?,
                    app_id: snowflake("app_id", &app_id)?,
                    credential: Secret::new(credential),
                })
            }
        })
    }

    /// Whether the proxy still accepts `credential`: `GET /api/v10/users/@me` through it, the
    /// same call the Discord adapter makes first.
    pub async fn check_credential(&self, credential: &Secret) -> Result<CredentialCheck> {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(["api", "v10", "users", "@me"]);
        }
        let resp = self
            .http
            .get(url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Bot {}", credential.expose()),
            )
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        match resp.status() {
            StatusCode::UNAUTHORIZED => Ok(CredentialCheck::Rejected),
            s if s.is_success() => Ok(CredentialCheck::Accepted),
            _ => Err(self.refused(resp).await),
        }
    }
}

/// `install_url` with `callbackUrl=<callback>` (percent-encoded), replacing any the proxy put
/// there; unchanged without a callback.
pub fn install_url_with_callback(install_url: &str, callback: Option<&str>) -> String {
    let Some(callback) = callback else {
        return install_url.to_owned();
    };
    let Ok(mut url) = Url::parse(install_url) else {
        return install_url.to_owned();
    };
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != CALLBACK_PARAM)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(CALLBACK_PARAM, callback);
    url.to_string()
}

/// Onboarding state in the data dir: the open onboarding and, once someone authorized, the
/// proxy's credential. Tied to the proxy URL it was made with.
#[derive(Clone, Serialize, Deserialize)]
pub struct SavedOnboarding {
    version: u32,
    pub gateway_url: String,
    pub id: String,
    pub install_url: String,
    poll_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorized: Option<SavedAuthorization>,
}

#[derive(Clone, Serialize, Deserialize)]
struct SavedAuthorization {
    guild_id: String,
    app_id: String,
    credential: String,
}

impl std::fmt::Debug for SavedOnboarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedOnboarding")
            .field("gateway_url", &self.gateway_url)
            .field("id", &self.id)
            .field("authorized", &self.authorized.is_some())
            .finish_non_exhaustive()
    }
}

impl SavedOnboarding {
    pub fn pending(gateway_url: &str, onboarding: &Onboarding) -> Self {
        Self {
            version: FILE_VERSION,
            gateway_url: gateway_url.to_owned(),
            id: onboarding.id.clone(),
            install_url: onboarding.install_url.clone(),
            poll_token: onboarding.poll_token.expose().to_owned(),
            authorized: None,
        }
    }

    pub fn onboarding(&self) -> Onboarding {
        Onboarding {
            id: self.id.clone(),
            install_url: self.install_url.clone(),
            poll_token: Secret::new(self.poll_token.clone()),
        }
    }

    pub fn set_authorized(&mut self, a: &Authorization) {
        self.authorized = Some(SavedAuthorization {
            guild_id: a.guild_id.to_string(),
            app_id: a.app_id.to_string(),
            credential: a.credential.expose().to_owned(),
        });
    }

    pub fn authorization(&self) -> Option<Authorization> {
        let a = self.authorized.as_ref()?;
        Some(Authorization {
            guild_id: a.guild_id.parse().ok()?,
            app_id: a.app_id.parse().ok()?,
            credential: Secret::new(a.credential.clone()),
        })
    }

    /// Every secret value in the file, for the log redactor.
    pub fn secret_values(&self) -> Vec<String> {
        let mut v = vec![self.poll_token.clone()];
        if let Some(a) = &self.authorized {
            v.push(a.credential.clone());
        }
        v
    }

    /// Reads the file; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let file_err = |reason: String| GatewayProxyError::File {
            path: path.to_owned(),
            reason,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(file_err(e.to_string())),
        };
        let saved: Self = serde_json::from_slice(&bytes).map_err(|e| file_err(e.to_string()))?;
        if saved.version != FILE_VERSION {
            return Err(file_err(format!(
                "layout version {} is not {FILE_VERSION}",
                saved.version
            )));
        }
        Ok(Some(saved))
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| GatewayProxyError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        write_private_file(path, &bytes).map_err(|e| GatewayProxyError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Deletes the file (missing is fine).
    pub fn discard(path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(GatewayProxyError::File {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_is_percent_encoded_into_the_install_url() {
        let url = install_url_with_callback(
            "https://gw.example/discord-install?clientId=1&callbackUrl=old",
            Some("https://platform.example/done?x=1&y=2"),
        );
        assert_eq!(
            url,
            "https://gw.example/discord-install?clientId=1&callbackUrl=https%3A%2F%2Fplatform.example%2Fdone%3Fx%3D1%26y%3D2"
        );
        assert_eq!(
            install_url_with_callback("https://a/b?c=d", None),
            "https://a/b?c=d"
        );
    }

    #[test]
    fn saved_state_round_trips_with_mode_0600_and_hides_secrets_from_debug() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.json");
        assert!(SavedOnboarding::load(&path).unwrap().is_none());
        let onboarding = Onboarding {
            id: "ob1".into(),
            install_url: "https://gw/install?state=s".into(),
            poll_token: Secret::new("poll-token-secret-value"),
        };
        let mut saved = SavedOnboarding::pending("http://gw", &onboarding);
        saved.set_authorized(&Authorization {
            guild_id: 42,
            app_id: 7,
            credential: Secret::new("credential-secret-value"),
        });
        saved.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = SavedOnboarding::load(&path).unwrap().unwrap();
        let a = back.authorization().unwrap();
        assert_eq!((a.guild_id, a.app_id), (42, 7));
        assert_eq!(a.credential.expose(), "credential-secret-value");
        let debug = format!("{back:?} {a:?} {:?}", back.onboarding());
        assert!(!debug.contains("secret-value"), "{debug}");
        SavedOnboarding::discard(&path).unwrap();
        SavedOnboarding::discard(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn only_http_urls_are_proxies() {
        assert!(GatewayProxy::new("ftp://x").is_err());
        assert!(GatewayProxy::new("not a url").is_err());
        let p = GatewayProxy::new("http://127.0.0.1:9/base/").unwrap();
        assert_eq!(p.base(), "http://127.0.0.1:9/base");
        assert_eq!(
            p.url(&["id 1"]).as_str(),
            "http://127.0.0.1:9/base/kimaki/onboarding/id%201"
        );
    }
}
