//! Secrets (bot token, mesh token, API keys): kept in the OS keyring when one is usable, otherwise
//! in config.env (mode 0600). A `Secret` never shows its value through `Debug` or `Display`.

use std::fmt;
use std::path::Path;

use super::env_file::EnvFile;

/// The config.env value that means "the real value is in the OS keyring".
pub const KEYRING_MARKER: &str = "@keyring";

/// Keyring service name under which every kimaki secret is filed.
const KEYRING_SERVICE: &str = "kimaki";

/// Below this length the tail of a secret would reveal too much of it.
const MIN_LEN_TO_SHOW_TAIL: usize = 16;

/// A secret value. Formatting prints `…last4`; the value itself is only reachable via `expose`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

/// `…` plus the last four characters, enough to tell two tokens apart and nothing more.
pub fn redact(value: &str) -> String {
    let n = value.chars().count();
    if n < MIN_LEN_TO_SHOW_TAIL {
        return "…".to_owned();
    }
    let tail: String = value.chars().skip(n - 4).collect();
    format!("…{tail}")
}

/// Where secrets are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialStore {
    Keyring,
    File,
}

impl fmt::Display for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialStore::Keyring => "OS keyring",
            CredentialStore::File => "config.env",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{key} is marked as stored in the OS keyring, but the keyring is not usable ({reason}); set it again with `kimaki init` or the {key} environment variable")]
    KeyringUnavailable { key: String, reason: String },
    #[error("{key} is marked as stored in the OS keyring, but no entry was found; set it again with `kimaki init`")]
    Missing { key: String },
    #[error("the OS keyring refused {key}: {reason}")]
    Keyring { key: String, reason: String },
}

/// Access to the OS keyring for one data dir (two data dirs keep separate secrets).
#[derive(Debug, Clone)]
pub struct Keyring {
    account_suffix: String,
}

impl Keyring {
    pub fn for_data_dir(data_dir: &Path) -> Self {
        Self {
            account_suffix: data_dir.display().to_string(),
        }
    }

    /// `Ok` when the platform keyring can store secrets, else why not.
    pub fn probe() -> Result<(), String> {
        match keyring::Entry::store_status() {
            Ok(()) => Ok(()),
            Err(e) => Err(keyring_reason(e)),
        }
    }

    fn entry(&self, key: &str) -> Result<keyring::Entry, SecretError> {
        keyring::Entry::new(KEYRING_SERVICE, &format!("{key}@{}", self.account_suffix)).map_err(
            |e| SecretError::KeyringUnavailable {
                key: key.to_owned(),
                reason: keyring_reason(&e),
            },
        )
    }

    pub fn get(&self, key: &str) -> Result<Secret, SecretError> {
        match self.entry(key)?.get_password() {
            Ok(v) => Ok(Secret::new(v)),
            Err(keyring::Error::NoEntry) => Err(SecretError::Missing {
                key: key.to_owned(),
            }),
            Err(e) => Err(SecretError::Keyring {
                key: key.to_owned(),
                reason: keyring_reason(&e),
            }),
        }
    }

    pub fn set(&self, key: &str, value: &Secret) -> Result<(), SecretError> {
        self.entry(key)?
            .set_password(value.expose())
            .map_err(|e| SecretError::Keyring {
                key: key.to_owned(),
                reason: keyring_reason(&e),
            })
    }

    pub fn delete(&self, key: &str) {
        if let Ok(entry) = self.entry(key) {
            let _ = entry.delete_credential();
        }
    }
}

/// keyring errors can carry platform details; keep only the kind so no value leaks into logs.
fn keyring_reason(e: &keyring::Error) -> String {
    match e {
        keyring::Error::NoDefaultStore => "no keyring service on this host".to_owned(),
        keyring::Error::PlatformFailure(_) => "the keyring service failed".to_owned(),
        keyring::Error::NoStorageAccess(_) => "the keyring is locked or denied access".to_owned(),
        keyring::Error::NoEntry => "no entry".to_owned(),
        other => format!("keyring error: {}", error_kind(other)),
    }
}

fn error_kind(e: &keyring::Error) -> &'static str {
    match e {
        keyring::Error::BadEncoding(_) => "bad encoding",
        keyring::Error::BadDataFormat(..) => "bad data format",
        keyring::Error::BadStoreFormat(_) => "bad store format",
        keyring::Error::TooLong(..) => "value too long",
        keyring::Error::Invalid(..) => "invalid parameter",
        keyring::Error::Ambiguous(_) => "ambiguous entry",
        keyring::Error::NotSupportedByStore(_) => "not supported by this store",
        _ => "unknown",
    }
}

/// Decides where a new secret goes for the configured `KIMAKI_CREDENTIAL_STORE` mode.
pub fn choose_store(mode: &str) -> Result<CredentialStore, String> {
    match mode {
        "file" => Ok(CredentialStore::File),
        "keyring" => Keyring::probe().map(|()| CredentialStore::Keyring),
        _ => Ok(match Keyring::probe() {
            Ok(()) => CredentialStore::Keyring,
            Err(_) => CredentialStore::File,
        }),
    }
}

/// Writes `value` for `key` into the chosen store; config.env records which one holds it.
pub fn store_secret(
    file: &mut EnvFile,
    keyring: &Keyring,
    store: CredentialStore,
    key: &str,
    value: &Secret,
) -> Result<(), SecretError> {
    match store {
        CredentialStore::Keyring => {
            keyring.set(key, value)?;
            file.set(key, KEYRING_MARKER);
        }
        CredentialStore::File => {
            file.set(key, value.expose());
            // A stale keyring copy would otherwise shadow nothing but still linger.
            if Keyring::probe().is_ok() {
                keyring.delete(key);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_shows_only_a_tail_of_long_values() {
        assert_eq!(redact("short"), "…");
        assert_eq!(redact("abcdefghijklmnopqrstuvwxyz"), "…wxyz");
        let s = Secret::new("abcdefghijklmnopqrstuvwxyz");
        assert_eq!(format!("{s} {s:?}"), "…wxyz …wxyz");
    }
}
