//! Resolves every setting from its layers: flags > environment > config.env > defaults, remembering
//! where each value came from. This is the only place that reads the process environment.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::env_file::{EnvFile, Malformed};
use super::keys::{self, KeyDef};
use super::secrets::{redact, Keyring, Secret, SecretError, KEYRING_MARKER};
use super::validate;

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Flag,
    Env,
    File,
    Keyring,
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "config.env",
            Source::Keyring => "keyring",
            Source::Default => "default",
        })
    }
}

#[derive(Debug, Clone)]
struct Resolved {
    value: String,
    source: Source,
}

/// A value that failed its offline check.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidValue {
    pub key: String,
    pub source: Source,
    pub message: String,
}

/// A snapshot of the process environment, taken once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    /// Whether stdout/stderr colouring is unwanted (`NO_COLOR`).
    pub fn no_color(&self) -> bool {
        self.0.get("NO_COLOR").is_some_and(|v| !v.is_empty())
    }
    pub fn path(&self) -> Option<&str> {
        self.get("PATH")
    }
    pub fn home(&self) -> Option<&str> {
        self.get("HOME")
    }

    /// Names of kimaki's own variables (`KIMAKI_*`, `MESH_*`): child processes never get them,
    /// so kimaki's secrets stay in kimaki.
    pub fn owned_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .keys()
            .filter(|k| keys::OWNED_ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
            .cloned()
            .collect();
        names.sort();
        names
    }
}

/// The layers one resolution reads.
pub struct Layers<'a> {
    /// `--set KEY=VALUE` and dedicated flags, in command-line order (last wins).
    pub flags: &'a [(String, String)],
    pub env: &'a Env,
    pub file: &'a EnvFile,
    /// `None` skips keyring look-ups (for example when only showing sources).
    pub keyring: Option<&'a Keyring>,
}

/// Every setting's effective value, plus what was wrong with the inputs.
#[derive(Debug, Clone)]
pub struct Settings {
    values: BTreeMap<&'static str, Resolved>,
    pub unknown_file_keys: Vec<String>,
    pub unknown_env_keys: Vec<String>,
    pub unknown_flag_keys: Vec<String>,
    pub malformed_lines: Vec<Malformed>,
    pub invalid: Vec<InvalidValue>,
    pub secret_errors: Vec<String>,
    /// `RUST_LOG`, which overrides the configured log level.
    pub rust_log: Option<String>,
}

impl Settings {
    pub fn resolve(layers: &Layers<'_>) -> Self {
        let mut settings = Settings {
            values: BTreeMap::new(),
            unknown_file_keys: Vec::new(),
            unknown_env_keys: Vec::new(),
            unknown_flag_keys: Vec::new(),
            malformed_lines: layers.file.malformed().to_vec(),
            invalid: Vec::new(),
            secret_errors: Vec::new(),
            rust_log: layers
                .env
                .get("RUST_LOG")
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
        };

        for def in keys::KEYS {
            let resolved = settings.resolve_key(def, layers);
            if let Err(message) = validate::check(def, &resolved.value) {
                settings.invalid.push(InvalidValue {
                    key: def.name.to_owned(),
                    source: resolved.source,
                    message,
                });
            }
            settings.values.insert(def.name, resolved);
        }

        settings.unknown_file_keys = unknown(layers.file.entries().map(|(k, _)| k));
        settings.unknown_flag_keys = unknown(layers.flags.iter().map(|(k, _)| k.as_str()));
        settings.unknown_env_keys = layers
            .env
            .0
            .keys()
            .filter(|k| keys::OWNED_ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
            .filter(|k| !keys::NON_SETTING_ENV.contains(&k.as_str()))
            .filter(|k| keys::find(k).is_none())
            .cloned()
            .collect();
        settings.unknown_env_keys.sort();
        settings
    }

    fn resolve_key(&mut self, def: &KeyDef, layers: &Layers<'_>) -> Resolved {
        if let Some((_, v)) = layers.flags.iter().rev().find(|(k, _)| k == def.name) {
            return Resolved {
                value: v.clone(),
                source: Source::Flag,
            };
        }
        if let Some(v) = layers.env.get(def.name).filter(|v| !v.is_empty()) {
            return Resolved {
                value: v.to_owned(),
                source: Source::Env,
            };
        }
        match layers.file.get(def.name) {
            Some(KEYRING_MARKER) if def.secret => match layers.keyring.map(|k| k.get(def.name)) {
                Some(Ok(secret)) => {
                    return Resolved {
                        value: secret.expose().to_owned(),
                        source: Source::Keyring,
                    }
                }
                Some(Err(e)) => self.secret_errors.push(secret_error_text(&e)),
                None => {}
            },
            Some(v) if !v.is_empty() => {
                return Resolved {
                    value: v.to_owned(),
                    source: Source::File,
                }
            }
            _ => {}
        }
        Resolved {
            value: def.default.to_owned(),
            source: Source::Default,
        }
    }

    /// The effective value; empty when unset.
    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map_or("", |r| r.value.as_str())
    }

    pub fn is_set(&self, key: &str) -> bool {
        !self.get(key).is_empty()
    }

    pub fn source(&self, key: &str) -> Option<Source> {
        self.values.get(key).map(|r| r.source)
    }

    pub fn secret(&self, key: &str) -> Option<Secret> {
        Some(self.get(key))
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    }

    pub fn bool(&self, key: &str) -> bool {
        validate::parse_bool(self.get(key)).unwrap_or(false)
    }

    /// The value as a number, falling back to the key's default when invalid (validation reports
    /// the problem separately).
    pub fn u64(&self, key: &str) -> u64 {
        self.get(key)
            .parse()
            .ok()
            .or_else(|| keys::find(key).and_then(|d| d.default.parse().ok()))
            .unwrap_or(0)
    }

    pub fn list(&self, key: &str) -> Vec<String> {
        validate::split_list(self.get(key))
            .map(str::to_owned)
            .collect()
    }

    /// Every secret value currently set, so log output can be scrubbed of them.
    pub fn secret_values(&self) -> Vec<String> {
        keys::KEYS
            .iter()
            .filter(|d| d.secret)
            .map(|d| self.get(d.name).to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Whether any input problem should stop `start` (unknown keys only warn there).
    pub fn has_errors(&self) -> bool {
        !self.invalid.is_empty() || !self.secret_errors.is_empty()
    }

    /// Each key with its displayable value (secrets redacted) and source.
    pub fn display_rows(&self) -> Vec<DisplayRow> {
        keys::KEYS
            .iter()
            .map(|def| {
                let value = self.get(def.name);
                DisplayRow {
                    key: def.name,
                    value: if def.secret && !value.is_empty() {
                        redact(value)
                    } else {
                        value.to_owned()
                    },
                    source: self.source(def.name).unwrap_or(Source::Default),
                    secret: def.secret,
                }
            })
            .collect()
    }
}

/// One line of "where did this value come from".
#[derive(Debug, Clone, Serialize)]
pub struct DisplayRow {
    pub key: &'static str,
    pub value: String,
    pub source: Source,
    pub secret: bool,
}

fn unknown<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = names
        .filter(|k| keys::find(k).is_none())
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn secret_error_text(e: &SecretError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(flags: &[(&str, &str)], env: &[(&str, &str)], file: &str) -> Settings {
        let flags: Vec<(String, String)> = flags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = Env::from_pairs(env.iter().copied());
        let file = EnvFile::parse(file);
        Settings::resolve(&Layers {
            flags: &flags,
            env: &env,
            file: &file,
            keyring: None,
        })
    }

    #[test]
    fn precedence_is_flags_env_file_default() {
        let file = "KIMAKI_MODEL=from-file\nKIMAKI_AGENT=file-agent\nKIMAKI_RUNNER=codex\n";
        let s = resolve(
            &[("KIMAKI_MODEL", "from-flag")],
            &[("KIMAKI_MODEL", "from-env"), ("KIMAKI_AGENT", "env-agent")],
            file,
        );
        assert_eq!(
            (s.get("KIMAKI_MODEL"), s.source("KIMAKI_MODEL")),
            ("from-flag", Some(Source::Flag))
        );
        assert_eq!(
            (s.get("KIMAKI_AGENT"), s.source("KIMAKI_AGENT")),
            ("env-agent", Some(Source::Env))
        );
        assert_eq!(
            (s.get("KIMAKI_RUNNER"), s.source("KIMAKI_RUNNER")),
            ("codex", Some(Source::File))
        );
        assert_eq!(
            (
                s.get("KIMAKI_SHUTDOWN_GRACE_SECS"),
                s.source("KIMAKI_SHUTDOWN_GRACE_SECS")
            ),
            ("30", Some(Source::Default))
        );
    }

    #[test]
    fn reports_unknown_and_invalid_keys() {
        let s = resolve(
            &[],
            &[("KIMAKI_MODLE", "x"), ("PATH", "/bin")],
            "KIMAKI_RUNER=codex\nKIMAKI_MAX_CONCURRENT_JOBS=lots\n",
        );
        assert_eq!(s.unknown_file_keys, vec!["KIMAKI_RUNER"]);
        assert_eq!(s.unknown_env_keys, vec!["KIMAKI_MODLE"]);
        assert_eq!(s.invalid.len(), 1);
        assert_eq!(s.invalid[0].key, "KIMAKI_MAX_CONCURRENT_JOBS");
        assert_eq!(s.u64("KIMAKI_MAX_CONCURRENT_JOBS"), 4);
    }

    #[test]
    fn secrets_are_redacted_in_display() {
        let s = resolve(
            &[],
            &[("MESH_TOKEN", "gw_at_abcdefghijklmnopqrstuvwxyz")],
            "",
        );
        let row = s
            .display_rows()
            .into_iter()
            .find(|r| r.key == "MESH_TOKEN")
            .unwrap();
        assert_eq!(row.value, "…wxyz");
        assert_eq!(s.secret_values(), vec!["gw_at_abcdefghijklmnopqrstuvwxyz"]);
    }
}
