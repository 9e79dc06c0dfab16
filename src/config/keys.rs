//! The one table of every setting kimaki reads: name, default, kind, secrecy and a one-line
//! explanation. `config.env.example`, `init`, `doctor` and validation are all derived from it, so
//! documentation and code cannot drift apart.

/// How a value is checked before kimaki uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// `true`/`false` (also accepts 1/0, yes/no, on/off).
    Bool,
    /// An unsigned integer within the bounds.
    Integer { min: u64, max: u64 },
    /// An `http(s)://` or `ws(s)://` URL.
    Url,
    /// Comma-separated URLs.
    UrlList,
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// A Discord id (a decimal snowflake).
    Snowflake,
    /// Comma-separated Discord ids.
    SnowflakeList,
    /// Comma-separated names.
    NameList,
    /// A filesystem path or a program name looked up on PATH.
    Program,
    /// A filesystem path.
    Path,
    /// A Discord bot token (three dot-separated base64url segments).
    DiscordToken,
    /// An opaque API key or token.
    ApiKey,
}

/// Which part of kimaki a setting belongs to; used to group `config.env.example` and `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    General,
    Runners,
    Discord,
    Mesh,
    Transcription,
    LocalApi,
}

impl Section {
    pub fn title(self) -> &'static str {
        match self {
            Section::General => "General",
            Section::Runners => "Runners (the coding agents kimaki drives)",
            Section::Discord => "Discord",
            Section::Mesh => "Mesh coordinator (one outbound Socket.IO link)",
            Section::Transcription => "Voice message transcription",
            Section::LocalApi => "Local HTTP API (127.0.0.1 only; off by default)",
        }
    }
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct KeyDef {
    pub name: &'static str,
    pub section: Section,
    /// The value used when nothing sets the key; empty means "unset".
    pub default: &'static str,
    pub kind: Kind,
    /// Secrets live in the OS keyring (or config.env, mode 0600) and are never shown in full.
    pub secret: bool,
    pub doc: &'static str,
}

const fn key(
    name: &'static str,
    section: Section,
    default: &'static str,
    kind: Kind,
    doc: &'static str,
) -> KeyDef {
    KeyDef {
        name,
        section,
        default,
        kind,
        secret: false,
        doc,
    }
}

const fn secret(name: &'static str, section: Section, kind: Kind, doc: &'static str) -> KeyDef {
    KeyDef {
        name,
        section,
        default: "",
        kind,
        secret: true,
        doc,
    }
}

pub const LOG_LEVEL: &str = "KIMAKI_LOG_LEVEL";
pub const PROJECTS_DIR: &str = "KIMAKI_PROJECTS_DIR";
pub const SHUTDOWN_GRACE_SECS: &str = "KIMAKI_SHUTDOWN_GRACE_SECS";
pub const CREDENTIAL_STORE: &str = "KIMAKI_CREDENTIAL_STORE";
pub const RUNNER: &str = "KIMAKI_RUNNER";
pub const MODEL: &str = "KIMAKI_MODEL";
pub const AGENT: &str = "KIMAKI_AGENT";
pub const MAX_CONCURRENT_JOBS: &str = "KIMAKI_MAX_CONCURRENT_JOBS";
pub const OPENCODE_BIN: &str = "OPENCODE_BIN";
pub const CODEX_BIN: &str = "CODEX_BIN";
pub const CLAUDE_BIN: &str = "CLAUDE_BIN";
pub const BOT_TOKEN: &str = "KIMAKI_BOT_TOKEN";
pub const APP_ID: &str = "KIMAKI_APP_ID";
pub const GUILD_ID: &str = "KIMAKI_GUILD_ID";
pub const ALLOWED_USERS: &str = "KIMAKI_ALLOWED_USERS";
pub const ALLOWED_ROLES: &str = "KIMAKI_ALLOWED_ROLES";
pub const ALLOWED_BOTS: &str = "KIMAKI_ALLOWED_BOTS";
pub const DISCORD_API_URL: &str = "KIMAKI_DISCORD_API_URL";
pub const GATEWAY_URL: &str = "KIMAKI_GATEWAY_URL";
pub const VERBOSITY: &str = "KIMAKI_VERBOSITY";
pub const MENTION_MODE: &str = "KIMAKI_MENTION_MODE";
pub const SHELL_COMMANDS: &str = "KIMAKI_SHELL_COMMANDS";
pub const SHELL_TIMEOUT_SECS: &str = "KIMAKI_SHELL_TIMEOUT_SECS";
pub const SHELL_ROLES: &str = "KIMAKI_SHELL_ROLES";
pub const PERMISSION_TIMEOUT_MINUTES: &str = "KIMAKI_PERMISSION_TIMEOUT_MINUTES";
pub const MESH_URL: &str = "MESH_URL";
pub const MESH_ENDPOINTS: &str = "MESH_ENDPOINTS";
pub const MESH_TOKEN: &str = "MESH_TOKEN";
pub const MESH_ACCOUNT: &str = "MESH_ACCOUNT";
pub const MESH_GATEWAY_ID: &str = "MESH_GATEWAY_ID";
pub const MESH_GATEWAY_NAME: &str = "MESH_GATEWAY_NAME";
pub const MESH_ENDPOINT_ID: &str = "MESH_ENDPOINT_ID";
pub const MESH_OBSERVE: &str = "MESH_OBSERVE";
pub const TRANSCRIPTION_PROVIDERS: &str = "KIMAKI_TRANSCRIPTION_PROVIDERS";
pub const GEMINI_API_KEY: &str = "GEMINI_API_KEY";
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
pub const GEMINI_MODELS: &str = "KIMAKI_GEMINI_MODELS";
pub const GEMINI_BASE_URL: &str = "KIMAKI_GEMINI_BASE_URL";
pub const OPENAI_TRANSCRIBE_MODEL: &str = "KIMAKI_OPENAI_TRANSCRIBE_MODEL";
pub const OPENAI_BASE_URL: &str = "KIMAKI_OPENAI_BASE_URL";
pub const TRANSCRIBE_COMMAND: &str = "KIMAKI_TRANSCRIBE_COMMAND";
pub const WHISPER_MODEL_DIR: &str = "KIMAKI_WHISPER_MODEL_DIR";
pub const WHISPER_THREADS: &str = "KIMAKI_WHISPER_THREADS";
pub const TRANSCRIPTION_LANGUAGE: &str = "KIMAKI_TRANSCRIPTION_LANGUAGE";
pub const TRANSCRIBE_TIMEOUT_SECS: &str = "KIMAKI_TRANSCRIBE_TIMEOUT_SECS";
pub const VOICE_MAX_MB: &str = "KIMAKI_VOICE_MAX_MB";
pub const VOICE_MAX_SECONDS: &str = "KIMAKI_VOICE_MAX_SECONDS";
pub const API_ENABLED: &str = "KIMAKI_API_ENABLED";
pub const API_PORT: &str = "AGENT_API_PORT";
pub const API_TOKEN: &str = "KIMAKI_API_TOKEN";

/// Runner names accepted by `KIMAKI_RUNNER`.
pub const RUNNER_NAMES: &[&str] = &["opencode", "codex", "claude"];

/// Every setting, in the order `config.env.example` lists them.
pub const KEYS: &[KeyDef] = &[
    key(
        LOG_LEVEL,
        Section::General,
        "info",
        Kind::Choice(&["error", "warn", "info", "debug", "trace"]),
        "Log level for kimaki.log and stderr (RUST_LOG, -v and -q override it).",
    ),
    key(
        PROJECTS_DIR,
        Section::General,
        "",
        Kind::Path,
        "Where new projects are created; empty means <data-dir>/projects.",
    ),
    key(
        SHUTDOWN_GRACE_SECS,
        Section::General,
        "30",
        Kind::Integer { min: 0, max: 3600 },
        "On SIGTERM, how long running jobs may finish before they are cancelled.",
    ),
    key(
        CREDENTIAL_STORE,
        Section::General,
        "auto",
        Kind::Choice(&["auto", "keyring", "file"]),
        "Where secrets are kept: the OS keyring, config.env (mode 0600), or auto (keyring when usable).",
    ),
    key(
        RUNNER,
        Section::Runners,
        "opencode",
        Kind::Choice(RUNNER_NAMES),
        "The coding agent new sessions use: opencode, codex or claude.",
    ),
    key(
        MODEL,
        Section::Runners,
        "",
        Kind::Text,
        "Model for new sessions (provider/model for OpenCode); empty keeps the project's own choice.",
    ),
    key(
        AGENT,
        Section::Runners,
        "",
        Kind::Text,
        "Agent for new sessions; empty keeps the runner's default agent.",
    ),
    key(
        MAX_CONCURRENT_JOBS,
        Section::Runners,
        "4",
        Kind::Integer { min: 1, max: 256 },
        "How many sessions may run at the same time per runner.",
    ),
    key(
        OPENCODE_BIN,
        Section::Runners,
        "opencode",
        Kind::Program,
        "The opencode executable (a path, or a name looked up on PATH).",
    ),
    key(
        CODEX_BIN,
        Section::Runners,
        "codex",
        Kind::Program,
        "The Codex CLI executable (a path, or a name looked up on PATH).",
    ),
    key(
        CLAUDE_BIN,
        Section::Runners,
        "claude",
        Kind::Program,
        "The Claude Code executable (a path, or a name looked up on PATH).",
    ),
    secret(
        BOT_TOKEN,
        Section::Discord,
        Kind::DiscordToken,
        "Discord bot token (Developer Portal > Bot > Reset Token). Empty runs without Discord.",
    ),
    key(
        APP_ID,
        Section::Discord,
        "",
        Kind::Snowflake,
        "Discord application id; empty derives it from the bot token.",
    ),
    key(
        GUILD_ID,
        Section::Discord,
        "",
        Kind::Snowflake,
        "The Discord server kimaki sets up; empty uses every server the bot is in.",
    ),
    key(
        ALLOWED_USERS,
        Section::Discord,
        "",
        Kind::SnowflakeList,
        "User ids allowed besides the owner, admins, Manage Server and the allowed roles.",
    ),
    key(
        ALLOWED_ROLES,
        Section::Discord,
        "Kimaki",
        Kind::NameList,
        "Role names (case-insensitive) whose members may use the bot; the no-kimaki role always blocks.",
    ),
    key(
        ALLOWED_BOTS,
        Section::Discord,
        "",
        Kind::SnowflakeList,
        "Ids of other bots whose messages start sessions; all other bots are ignored.",
    ),
    key(
        DISCORD_API_URL,
        Section::Discord,
        "https://discord.com",
        Kind::Url,
        "Base URL of the Discord API (change only for a proxy or a test server).",
    ),
    key(
        GATEWAY_URL,
        Section::Discord,
        "",
        Kind::Url,
        "Base URL of the gateway proxy `kimaki start --gateway` onboards through and connects to (no bot token needed).",
    ),
    key(
        VERBOSITY,
        Section::Discord,
        "text-and-essential-tools",
        Kind::Choice(&["text-only", "text-and-essential-tools", "tools-and-text"]),
        "How much agent output threads show by default (each channel can change it with /verbosity).",
    ),
    key(
        MENTION_MODE,
        Section::Discord,
        "false",
        Kind::Bool,
        "Default for new channels: only messages that @mention the bot start a session (/mention-mode changes it).",
    ),
    key(
        SHELL_COMMANDS,
        Section::Discord,
        "false",
        Kind::Bool,
        "Allow `!command` in project channels and threads: runs `sh -c` in the project directory.",
    ),
    key(
        SHELL_TIMEOUT_SECS,
        Section::Discord,
        "10",
        Kind::Integer { min: 1, max: 600 },
        "How long a `!command` may run before it is killed.",
    ),
    key(
        SHELL_ROLES,
        Section::Discord,
        "",
        Kind::NameList,
        "Roles (besides the owner, admins and Manage Server) that may run `!command`.",
    ),
    key(
        PERMISSION_TIMEOUT_MINUTES,
        Section::Discord,
        "10",
        Kind::Integer { min: 1, max: 35791 },
        "Minutes a permission prompt waits for a click before it is denied automatically.",
    ),
    key(
        MESH_URL,
        Section::Mesh,
        "",
        Kind::Url,
        "The mesh coordinator URL; empty runs without a mesh.",
    ),
    key(
        MESH_ENDPOINTS,
        Section::Mesh,
        "",
        Kind::UrlList,
        "Comma-separated coordinator URLs tried in turn (overrides MESH_URL).",
    ),
    secret(
        MESH_TOKEN,
        Section::Mesh,
        Kind::ApiKey,
        "Gateway access token issued by the mesh.",
    ),
    key(
        MESH_ACCOUNT,
        Section::Mesh,
        "",
        Kind::Text,
        "Account (e-mail) the gateway registers under.",
    ),
    key(
        MESH_GATEWAY_ID,
        Section::Mesh,
        "",
        Kind::Text,
        "This agent's persistent id in the mesh; `kimaki init` generates it once.",
    ),
    key(
        MESH_GATEWAY_NAME,
        Section::Mesh,
        "",
        Kind::Text,
        "Display name in the mesh; empty uses the host name.",
    ),
    key(
        MESH_ENDPOINT_ID,
        Section::Mesh,
        "",
        Kind::Text,
        "Endpoint id the coordinator assigned to this agent, if any.",
    ),
    key(
        MESH_OBSERVE,
        Section::Mesh,
        "all",
        Kind::NameList,
        "Local jobs shown to the mesh coordinator (prompt, events): all, none, or some of discord, cli, scheduler, voice, api.",
    ),
    key(
        TRANSCRIPTION_PROVIDERS,
        Section::Transcription,
        "gemini,openai,command",
        Kind::NameList,
        "Transcription providers tried in order (gemini, openai, command, local); those without a key, command or model are skipped.",
    ),
    secret(
        GEMINI_API_KEY,
        Section::Transcription,
        Kind::ApiKey,
        "Gemini API key for voice messages.",
    ),
    secret(
        OPENAI_API_KEY,
        Section::Transcription,
        Kind::ApiKey,
        "OpenAI API key for voice messages.",
    ),
    key(
        GEMINI_MODELS,
        Section::Transcription,
        "gemini-2.5-flash,gemini-2.5-flash-lite",
        Kind::NameList,
        "Gemini models tried in order; the next one is used when a model is rate limited (429).",
    ),
    key(
        GEMINI_BASE_URL,
        Section::Transcription,
        "https://generativelanguage.googleapis.com",
        Kind::Url,
        "Base URL of the Gemini API (change only for a proxy or a test server).",
    ),
    key(
        OPENAI_TRANSCRIBE_MODEL,
        Section::Transcription,
        "gpt-4o-mini-transcribe",
        Kind::Text,
        "OpenAI transcription model: gpt-4o-mini-transcribe, gpt-4o-transcribe or whisper-1.",
    ),
    key(
        OPENAI_BASE_URL,
        Section::Transcription,
        "https://api.openai.com",
        Kind::Url,
        "Base URL of the OpenAI API, or of a compatible server offering /v1/audio/transcriptions.",
    ),
    key(
        TRANSCRIBE_COMMAND,
        Section::Transcription,
        "",
        Kind::Text,
        "Offline transcriber: a command run on a 16 kHz WAV ({wav} in it, else appended as the last argument); its stdout is the text.",
    ),
    key(
        WHISPER_MODEL_DIR,
        Section::Transcription,
        "",
        Kind::Path,
        "Built-in offline Whisper (`local` provider, builds with --features local-whisper): the CTranslate2 model dir; scripts/fetch-whisper-model.sh <dir> fetches tiny.en.",
    ),
    key(
        WHISPER_THREADS,
        Section::Transcription,
        "0",
        Kind::Integer { min: 0, max: 64 },
        "CPU threads the built-in Whisper uses; 0 means one per core, at most 4.",
    ),
    key(
        TRANSCRIPTION_LANGUAGE,
        Section::Transcription,
        "",
        Kind::Text,
        "Language of voice messages as an ISO-639-1 code (en, de, ...); empty lets the provider detect it.",
    ),
    key(
        TRANSCRIBE_TIMEOUT_SECS,
        Section::Transcription,
        "120",
        Kind::Integer { min: 5, max: 3600 },
        "How long one transcription attempt (a provider request or the command) may take.",
    ),
    key(
        VOICE_MAX_MB,
        Section::Transcription,
        "25",
        Kind::Integer { min: 1, max: 100 },
        "Voice messages larger than this many MB are refused before download.",
    ),
    key(
        VOICE_MAX_SECONDS,
        Section::Transcription,
        "600",
        Kind::Integer { min: 1, max: 7200 },
        "Voice messages longer than this many seconds are refused before transcription.",
    ),
    key(
        API_ENABLED,
        Section::LocalApi,
        "false",
        Kind::Bool,
        "Serve the local HTTP API on 127.0.0.1 (health, run, event stream); off by default.",
    ),
    key(
        API_PORT,
        Section::LocalApi,
        "3939",
        Kind::Integer { min: 1, max: 65535 },
        "Port of the local HTTP API (it only ever listens on 127.0.0.1).",
    ),
    secret(
        API_TOKEN,
        Section::LocalApi,
        Kind::ApiKey,
        "Bearer token the local API requires; `kimaki init` generates one.",
    ),
];

/// The definition of `name`, if kimaki knows the key.
pub fn find(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

/// Environment variables with these prefixes are checked for typos by `doctor`.
pub const OWNED_ENV_PREFIXES: &[&str] = &["KIMAKI_", "MESH_"];

/// Variables with an owned prefix that are not settings but are still expected in the environment.
pub const NON_SETTING_ENV: &[&str] = &["KIMAKI_DATA_DIR"];

/// The closest known key to a misspelt one, for "did you mean" hints.
pub fn suggest(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (edit_distance(name, k.name), k.name))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Renders `config.env.example` from the table.
pub fn render_example() -> String {
    let mut out = String::from(
        "# kimaki configuration: <data-dir>/config.env (default data dir: ~/.kimaki).\n\
         # KEY=VALUE per line. Precedence: command-line flags > environment variables > this file > defaults.\n\
         # Secrets are stored in the OS keyring when one is usable (the line then reads KEY=@keyring);\n\
         # otherwise they are kept here and the file stays mode 0600. `kimaki doctor` checks this file.\n\
         # Every key is listed with its default; an empty value means unset.\n",
    );
    let mut section = None;
    for k in KEYS {
        if section != Some(k.section) {
            section = Some(k.section);
            out.push_str(&format!("\n# --- {} ---\n", k.section.title()));
        }
        let secret = if k.secret { " (secret)" } else { "" };
        out.push_str(&format!(
            "\n# {}{}\n{}={}\n",
            k.doc, secret, k.name, k.default
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_documented() {
        for (i, k) in KEYS.iter().enumerate() {
            assert!(!k.doc.is_empty(), "{} has no doc", k.name);
            assert!(
                KEYS[i + 1..].iter().all(|o| o.name != k.name),
                "{} twice",
                k.name
            );
        }
    }

    #[test]
    fn suggests_the_nearest_key() {
        assert_eq!(suggest("KIMAKI_RUNER"), Some(RUNNER));
        assert_eq!(suggest("MESH_TOKN"), Some(MESH_TOKEN));
        assert_eq!(suggest("COMPLETELY_DIFFERENT"), None);
    }

    #[test]
    fn example_file_matches_the_table() {
        let checked_in = include_str!("../../config.env.example");
        assert_eq!(
            checked_in,
            render_example(),
            "config.env.example is stale: run `kimaki init --print-example > config.env.example`"
        );
    }
}
