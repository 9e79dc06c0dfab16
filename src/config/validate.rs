//! Offline checks of setting values, one per `Kind`. Messages name the problem, never the value of
//! a secret.

use base64::Engine;

use super::keys::{KeyDef, Kind};

/// Checks `value` against the key's kind; an empty value means "unset" and is always valid.
pub fn check(def: &KeyDef, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    match def.kind {
        Kind::Text | Kind::Path | Kind::Program => Ok(()),
        Kind::Bool => parse_bool(value).map(|_| ()),
        Kind::Integer { min, max } => match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            Ok(_) => Err(format!("must be between {min} and {max}")),
            Err(_) => Err("must be a whole number".to_owned()),
        },
        Kind::Url => check_url(value),
        Kind::UrlList => split_list(value).try_for_each(check_url),
        Kind::Choice(options) => {
            if options.contains(&value) {
                Ok(())
            } else {
                Err(format!("must be one of: {}", options.join(", ")))
            }
        }
        Kind::Snowflake => check_snowflake(value),
        Kind::SnowflakeList => split_list(value).try_for_each(check_snowflake),
        Kind::NameList => Ok(()),
        Kind::DiscordToken => discord_app_id_from_token(value).map(|_| ()),
        Kind::ApiKey => {
            if value.chars().any(char::is_whitespace) {
                Err("must not contain spaces".to_owned())
            } else if value.len() < 8 {
                Err("looks too short for a token".to_owned())
            } else {
                Ok(())
            }
        }
    }
}

pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    }
}

/// Non-empty, trimmed items of a comma-separated list.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn check_url(value: &str) -> Result<(), String> {
    match reqwest::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https" | "ws" | "wss") && u.host().is_some() => {
            Ok(())
        }
        Ok(_) => Err(format!("{value} is not an http(s) or ws(s) URL")),
        Err(e) => Err(format!("{value} is not a URL ({e})")),
    }
}

fn check_snowflake(value: &str) -> Result<(), String> {
    let ok = (15..=20).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value} is not a Discord id (15 to 20 digits; enable Developer Mode and use Copy ID)"
        ))
    }
}

/// Discord tokens are `base64(application id).timestamp.hmac`; the first part gives the app id.
pub fn discord_app_id_from_token(token: &str) -> Result<String, String> {
    const MIN_TOKEN_LEN: usize = 50;
    let bad = || {
        "does not look like a Discord bot token (copy it from Developer Portal > Bot > Reset Token)"
            .to_owned()
    };
    let token = token.strip_prefix("Bot ").unwrap_or(token);
    let parts: Vec<&str> = token.split('.').collect();
    if token.len() < MIN_TOKEN_LEN || parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let first = parts[0].trim_end_matches('=');
    let decoded = engine
        .decode(first)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(first))
        .map_err(|_| bad())?;
    let id = String::from_utf8(decoded).map_err(|_| bad())?;
    check_snowflake(&id).map_err(|_| bad())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys;

    fn def(name: &str) -> &'static KeyDef {
        keys::find(name).unwrap()
    }

    /// A well-formed token for app id 1234567890123456789 (not a real credential).
    pub const SAMPLE_TOKEN: &str =
        "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GAbCdE.abcdefghijklmnopqrstuvwxyz0123456789AB";

    #[test]
    fn discord_tokens() {
        assert_eq!(
            discord_app_id_from_token(SAMPLE_TOKEN).unwrap(),
            "1234567890123456789"
        );
        assert!(discord_app_id_from_token("not-a-token").is_err());
        let err = check(def(keys::BOT_TOKEN), "abc.def.ghi").unwrap_err();
        assert!(!err.contains("abc"), "error must not echo the token: {err}");
    }

    #[test]
    fn kinds() {
        assert!(check(def(keys::RUNNER), "codex").is_ok());
        assert!(check(def(keys::RUNNER), "codx")
            .unwrap_err()
            .contains("one of"));
        assert!(check(def(keys::MAX_CONCURRENT_JOBS), "0").is_err());
        assert!(check(def(keys::MAX_CONCURRENT_JOBS), "8").is_ok());
        assert!(check(
            def(keys::MESH_ENDPOINTS),
            "wss://a.example, https://b.example"
        )
        .is_ok());
        assert!(check(def(keys::MESH_ENDPOINTS), "wss://a.example, nope").is_err());
        assert!(check(def(keys::GUILD_ID), "123").is_err());
        assert!(check(def(keys::GUILD_ID), "123456789012345678").is_ok());
        assert!(check(def(keys::MESH_TOKEN), "").is_ok());
    }
}
