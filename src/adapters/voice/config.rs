//! `VoiceConfig`: which transcription providers to use, in which order, with which limits. Built
//! from settings in production (a provider without its key or command is skipped); tests fill
//! the fields directly. Constructing it touches nothing.

use std::time::Duration;

use super::transcribe::command::{split_command_line, CommandConfig};
use super::transcribe::gemini::{self, GeminiConfig};
#[cfg(feature = "local-whisper")]
use super::transcribe::local::{self, LocalConfig};
use super::transcribe::openai::{self, OpenAiConfig};
use super::transcribe::RetryPolicy;
use crate::config::{keys, DataDir, Env, Settings};

/// Scratch space for the command provider's WAV files, under the data dir (mode 0700).
const SCRATCH_SUBDIR: &str = "voice";

/// Bytes per MB in the size setting.
const MB: u64 = 1024 * 1024;

/// OpenAI's upload limit; Discord's own voice messages are far smaller (≈4 KB per second).
const DEFAULT_MAX_BYTES: u64 = 25 * MB;

/// Ten minutes: longer recordings are rarely prompts, and cost real money per request.
const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(600);

/// One configured provider.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Gemini(GeminiConfig),
    OpenAi(OpenAiConfig),
    Command(CommandConfig),
    /// The built-in Whisper; only in builds with the `local-whisper` feature.
    #[cfg(feature = "local-whisper")]
    Local(LocalConfig),
}

impl ProviderConfig {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Gemini(_) => gemini::PROVIDER,
            Self::OpenAi(_) => openai::PROVIDER,
            Self::Command(_) => super::transcribe::command::PROVIDER,
            #[cfg(feature = "local-whisper")]
            Self::Local(_) => local::PROVIDER,
        }
    }

    /// One line for `doctor` and logs (never a key).
    pub fn describe(&self) -> String {
        match self {
            Self::Gemini(c) => format!("gemini ({})", c.models.join(" → ")),
            Self::OpenAi(c) => format!("openai ({})", c.model),
            Self::Command(c) => format!("command ({})", c.argv.first().map_or("", String::as_str)),
            #[cfg(feature = "local-whisper")]
            Self::Local(c) => format!("local (Whisper in {})", c.model_dir.display()),
        }
    }
}

/// How voice messages are transcribed.
#[derive(Debug, Clone)]
pub struct VoiceConfig {
    /// Tried in order.
    pub providers: Vec<ProviderConfig>,
    /// Recordings larger than this are refused unread.
    pub max_bytes: u64,
    /// Recordings longer than this are refused before any provider is called.
    pub max_duration: Duration,
    /// ISO-639-1 hint for providers.
    pub language: Option<String>,
    pub retry: RetryPolicy,
    /// Names in `KIMAKI_TRANSCRIPTION_PROVIDERS` that were skipped, with why.
    pub skipped: Vec<String>,
}

/// Why voice messages cannot be transcribed with the current settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct VoiceDisabled {
    pub reason: String,
    /// What to do about it.
    pub fix: String,
}

impl VoiceConfig {
    /// Defaults around `providers`: 25 MB, 10 minutes, the default retry policy.
    pub fn new(providers: Vec<ProviderConfig>) -> Self {
        Self {
            providers,
            max_bytes: DEFAULT_MAX_BYTES,
            max_duration: DEFAULT_MAX_DURATION,
            language: None,
            retry: RetryPolicy::default(),
            skipped: Vec::new(),
        }
    }

    /// Production settings. `Err` when no listed provider is usable; `doctor` shows the reason.
    pub fn from_settings(
        settings: &Settings,
        data_dir: &DataDir,
        env: &Env,
    ) -> Result<Self, VoiceDisabled> {
        let timeout = Duration::from_secs(settings.u64(keys::TRANSCRIBE_TIMEOUT_SECS));
        let mut providers = Vec::new();
        let mut skipped = Vec::new();
        let names = settings.list(keys::TRANSCRIPTION_PROVIDERS);
        for name in &names {
            match name.to_ascii_lowercase().as_str() {
                "gemini" => match settings.secret(keys::GEMINI_API_KEY) {
                    Some(api_key) => providers.push(ProviderConfig::Gemini(GeminiConfig {
                        base_url: settings.get(keys::GEMINI_BASE_URL).to_owned(),
                        api_key,
                        models: non_empty_or(
                            settings.list(keys::GEMINI_MODELS),
                            &gemini::DEFAULT_MODELS,
                        ),
                        timeout,
                    })),
                    None => skipped.push(format!("gemini: {} is not set", keys::GEMINI_API_KEY)),
                },
                "openai" => match settings.secret(keys::OPENAI_API_KEY) {
                    Some(api_key) => providers.push(ProviderConfig::OpenAi(OpenAiConfig {
                        base_url: settings.get(keys::OPENAI_BASE_URL).to_owned(),
                        api_key,
                        model: Some(settings.get(keys::OPENAI_TRANSCRIBE_MODEL))
                            .filter(|m| !m.is_empty())
                            .unwrap_or(openai::DEFAULT_MODEL)
                            .to_owned(),
                        timeout,
                    })),
                    None => skipped.push(format!("openai: {} is not set", keys::OPENAI_API_KEY)),
                },
                "command" => {
                    let argv = split_command_line(settings.get(keys::TRANSCRIBE_COMMAND));
                    if argv.is_empty() {
                        skipped.push(format!("command: {} is not set", keys::TRANSCRIBE_COMMAND));
                    } else {
                        providers.push(ProviderConfig::Command(CommandConfig {
                            argv,
                            timeout,
                            scratch_dir: data_dir.root().join(SCRATCH_SUBDIR),
                            env_remove: env.owned_names(),
                        }));
                    }
                }
                "local" | "whisper" => match local_provider(settings, timeout) {
                    Ok(p) => providers.push(p),
                    Err(why) => skipped.push(format!("{name}: {why}")),
                },
                other => skipped.push(format!(
                    "{other}: unknown provider (use gemini, openai, command or local)"
                )),
            }
        }
        if providers.is_empty() {
            let reason = if names.is_empty() {
                format!("{} is empty", keys::TRANSCRIPTION_PROVIDERS)
            } else {
                format!(
                    "no transcription provider is usable ({})",
                    skipped.join("; ")
                )
            };
            return Err(VoiceDisabled {
                reason,
                fix: format!(
                    "set {} or {} (kimaki init), or {} for an offline transcriber",
                    keys::GEMINI_API_KEY,
                    keys::OPENAI_API_KEY,
                    keys::TRANSCRIBE_COMMAND
                ),
            });
        }
        let mut config = Self::new(providers);
        config.max_bytes = settings.u64(keys::VOICE_MAX_MB).saturating_mul(MB);
        config.max_duration = Duration::from_secs(settings.u64(keys::VOICE_MAX_SECONDS));
        config.language = Some(settings.get(keys::TRANSCRIPTION_LANGUAGE).trim())
            .filter(|l| !l.is_empty())
            .map(str::to_owned);
        config.skipped = skipped;
        Ok(config)
    }

    /// The provider order in one line, e.g. `gemini (gemini-2.5-flash → gemini-2.5-flash-lite),
    /// then openai (gpt-4o-mini-transcribe)`.
    pub fn describe(&self) -> String {
        self.providers
            .iter()
            .map(ProviderConfig::describe)
            .collect::<Vec<_>>()
            .join(", then ")
    }
}

/// The built-in Whisper, or why it cannot be used.
#[cfg(feature = "local-whisper")]
fn local_provider(settings: &Settings, timeout: Duration) -> Result<ProviderConfig, String> {
    let dir = settings.get(keys::WHISPER_MODEL_DIR).trim();
    if dir.is_empty() {
        return Err(format!(
            "{} is not set (scripts/fetch-whisper-model.sh <dir> fetches a model)",
            keys::WHISPER_MODEL_DIR
        ));
    }
    Ok(ProviderConfig::Local(LocalConfig {
        model_dir: dir.into(),
        threads: usize::try_from(settings.u64(keys::WHISPER_THREADS)).unwrap_or(0),
        timeout,
    }))
}

/// This build has no engine: say how to get one.
#[cfg(not(feature = "local-whisper"))]
fn local_provider(_settings: &Settings, _timeout: Duration) -> Result<ProviderConfig, String> {
    Err(format!(
        "this build has no built-in Whisper; rebuild kimaki with `--features local-whisper`, \
         or run an offline transcriber through {}",
        keys::TRANSCRIBE_COMMAND
    ))
}

fn non_empty_or(list: Vec<String>, default: &[&str]) -> Vec<String> {
    if list.is_empty() {
        default.iter().map(|s| (*s).to_owned()).collect()
    } else {
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EnvFile, Layers};

    fn settings(file: &str) -> Settings {
        Settings::resolve(&Layers {
            flags: &[],
            env: &Env::default(),
            file: &EnvFile::parse(file),
            keyring: None,
        })
    }

    fn data_dir() -> DataDir {
        DataDir::resolve(Some(std::path::Path::new("/tmp/kimaki-voice-config"))).unwrap()
    }

    #[test]
    fn disabled_without_keys_with_a_reason() {
        let err =
            VoiceConfig::from_settings(&settings(""), &data_dir(), &Env::default()).unwrap_err();
        assert!(
            err.reason.contains("GEMINI_API_KEY is not set"),
            "{}",
            err.reason
        );
        assert!(
            err.reason.contains("KIMAKI_TRANSCRIBE_COMMAND is not set"),
            "{}",
            err.reason
        );
        assert!(err.fix.contains("kimaki init"));
    }

    #[test]
    fn providers_in_the_configured_order() {
        let s = settings(
            "KIMAKI_TRANSCRIPTION_PROVIDERS=openai, gemini,local\n\
             GEMINI_API_KEY=AIzaTestKey123\nOPENAI_API_KEY=sk-test-abcdefgh\n\
             KIMAKI_GEMINI_MODELS=m1,m2\nKIMAKI_VOICE_MAX_MB=10\nKIMAKI_TRANSCRIPTION_LANGUAGE=de\n",
        );
        let c = VoiceConfig::from_settings(&s, &data_dir(), &Env::default()).unwrap();
        assert_eq!(
            c.describe(),
            "openai (gpt-4o-mini-transcribe), then gemini (m1 → m2)"
        );
        assert_eq!(c.max_bytes, 10 * MB);
        assert_eq!(c.max_duration, Duration::from_secs(600));
        assert_eq!(c.language.as_deref(), Some("de"));
        assert_eq!(c.skipped.len(), 1);
        assert!(c.skipped[0].starts_with("local: "), "{:?}", c.skipped);
        assert!(
            !format!("{c:?}").contains("AIzaTestKey123"),
            "keys never show in Debug"
        );
        let ProviderConfig::Gemini(g) = &c.providers[1] else {
            panic!("gemini second");
        };
        assert_eq!(g.base_url, gemini::DEFAULT_BASE_URL);
        assert_eq!(g.timeout, Duration::from_secs(120));
    }

    #[test]
    fn the_command_provider_by_default_order() {
        let s = settings("KIMAKI_TRANSCRIBE_COMMAND=/opt/stt --model \"tiny en\" {wav}\n");
        let env = Env::from_pairs([("KIMAKI_BOT_TOKEN", "x"), ("PATH", "/bin")]);
        let c = VoiceConfig::from_settings(&s, &data_dir(), &env).unwrap();
        let ProviderConfig::Command(cmd) = &c.providers[0] else {
            panic!("command");
        };
        assert_eq!(cmd.argv, vec!["/opt/stt", "--model", "tiny en", "{wav}"]);
        assert_eq!(cmd.env_remove, vec!["KIMAKI_BOT_TOKEN"]);
        assert_eq!(cmd.scratch_dir, data_dir().root().join("voice"));
    }

    #[cfg(not(feature = "local-whisper"))]
    #[test]
    fn local_without_the_feature_says_how_to_get_it() {
        let s = settings("KIMAKI_TRANSCRIPTION_PROVIDERS=whisper\nKIMAKI_WHISPER_MODEL_DIR=/m\n");
        let err = VoiceConfig::from_settings(&s, &data_dir(), &Env::default()).unwrap_err();
        assert!(
            err.reason.contains("whisper: this build has no built-in Whisper; rebuild kimaki with `--features local-whisper`"),
            "{}",
            err.reason
        );
        assert!(
            err.reason.contains("KIMAKI_TRANSCRIBE_COMMAND"),
            "{}",
            err.reason
        );
    }

    #[cfg(feature = "local-whisper")]
    #[test]
    fn local_with_the_feature_needs_the_model_dir() {
        let s = settings("KIMAKI_TRANSCRIPTION_PROVIDERS=local\n");
        let err = VoiceConfig::from_settings(&s, &data_dir(), &Env::default()).unwrap_err();
        assert!(
            err.reason
                .contains("local: KIMAKI_WHISPER_MODEL_DIR is not set"),
            "{}",
            err.reason
        );
        let s = settings(
            "KIMAKI_TRANSCRIPTION_PROVIDERS=whisper\nKIMAKI_WHISPER_MODEL_DIR=/opt/tiny.en\n\
             KIMAKI_WHISPER_THREADS=2\n",
        );
        let c = VoiceConfig::from_settings(&s, &data_dir(), &Env::default()).unwrap();
        assert_eq!(c.describe(), "local (Whisper in /opt/tiny.en)");
        let ProviderConfig::Local(l) = &c.providers[0] else {
            panic!("local");
        };
        assert_eq!(l.threads, 2);
    }
}
