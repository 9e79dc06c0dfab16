//! `kimaki init`: write `<data-dir>/config.env` (mode 0600) from flags, or by asking on a terminal.
//! Re-running keeps every value it is not told to change. Secrets go to the OS keyring when one
//! is usable, else into config.env. Validates what it can offline and says what it could not.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use dialoguer::theme::ColorfulTheme;

use super::output::{exit, Failure, MARKS};
use super::GlobalArgs;
use crate::config::secrets::{self, CredentialStore, Keyring, Secret};
use crate::config::{keys, programs, runners, validate, Loaded};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kimaki init
  kimaki init --non-interactive --runner opencode --discord-token \"$KIMAKI_BOT_TOKEN\" --guild-id 123456789012345678
  kimaki init --non-interactive --mesh-url https://mesh.example.com --mesh-token \"$MESH_TOKEN\"
  kimaki init --set KIMAKI_MAX_CONCURRENT_JOBS=2      any setting by name
  kimaki init --unset GEMINI_API_KEY                  remove a setting
  kimaki init --print-example                         every setting with its default

Without a terminal on stdin (or with --non-interactive) nothing is asked: only flags are applied.")]
pub struct InitArgs {
    /// Never prompt; apply only the given flags.
    #[arg(long)]
    pub non_interactive: bool,
    /// Print every setting with its default and explanation (the contents of config.env.example)
    /// and exit.
    #[arg(long)]
    pub print_example: bool,

    /// Discord bot token (stored as a secret).
    #[arg(long, value_name = "TOKEN", help_heading = "Discord")]
    pub discord_token: Option<String>,
    /// Discord application id (derived from the token when omitted).
    #[arg(long, value_name = "ID", help_heading = "Discord")]
    pub app_id: Option<String>,
    /// The Discord server (guild) to set up.
    #[arg(long, value_name = "ID", help_heading = "Discord")]
    pub guild_id: Option<String>,
    /// Comma-separated user ids allowed to use the bot.
    #[arg(long, value_name = "IDS", help_heading = "Discord")]
    pub allowed_users: Option<String>,
    /// Comma-separated role names allowed to use the bot (default: Kimaki).
    #[arg(long, value_name = "NAMES", help_heading = "Discord")]
    pub allowed_roles: Option<String>,
    /// Comma-separated ids of other bots allowed to start sessions.
    #[arg(long, value_name = "IDS", help_heading = "Discord")]
    pub allowed_bots: Option<String>,

    /// Mesh coordinator URL.
    #[arg(long, value_name = "URL", help_heading = "Mesh")]
    pub mesh_url: Option<String>,
    /// Comma-separated coordinator URLs, tried in turn.
    #[arg(long, value_name = "URLS", help_heading = "Mesh")]
    pub mesh_endpoints: Option<String>,
    /// Gateway access token issued by the mesh (stored as a secret).
    #[arg(long, value_name = "TOKEN", help_heading = "Mesh")]
    pub mesh_token: Option<String>,
    /// Account (e-mail) to register under.
    #[arg(long, value_name = "EMAIL", help_heading = "Mesh")]
    pub mesh_account: Option<String>,
    /// Display name in the mesh (default: host name).
    #[arg(long, value_name = "NAME", help_heading = "Mesh")]
    pub gateway_name: Option<String>,
    /// Endpoint id assigned by the coordinator.
    #[arg(long, value_name = "ID", help_heading = "Mesh")]
    pub endpoint_id: Option<String>,

    /// Runner for new sessions: opencode, codex or claude.
    #[arg(long, value_name = "NAME", help_heading = "Runners")]
    pub runner: Option<String>,
    /// Path or name of the opencode executable.
    #[arg(long, value_name = "PATH", help_heading = "Runners")]
    pub opencode_bin: Option<String>,
    /// Path or name of the codex executable.
    #[arg(long, value_name = "PATH", help_heading = "Runners")]
    pub codex_bin: Option<String>,
    /// Path or name of the claude executable.
    #[arg(long, value_name = "PATH", help_heading = "Runners")]
    pub claude_bin: Option<String>,
    /// Model for new sessions.
    #[arg(long, value_name = "MODEL", help_heading = "Runners")]
    pub model: Option<String>,
    /// Agent for new sessions.
    #[arg(long, value_name = "AGENT", help_heading = "Runners")]
    pub agent: Option<String>,
    /// Sessions that may run at once per runner.
    #[arg(long, value_name = "N", help_heading = "Runners")]
    pub max_concurrent_jobs: Option<String>,

    /// Transcription providers in order (gemini, openai).
    #[arg(long, value_name = "LIST", help_heading = "Voice")]
    pub transcription_providers: Option<String>,
    /// Gemini API key (stored as a secret).
    #[arg(long, value_name = "KEY", help_heading = "Voice")]
    pub gemini_api_key: Option<String>,
    /// OpenAI API key (stored as a secret).
    #[arg(long, value_name = "KEY", help_heading = "Voice")]
    pub openai_api_key: Option<String>,

    /// Log level: error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Where secrets go: auto (keyring when usable), keyring, or file (config.env, mode 0600).
    #[arg(long, value_name = "STORE")]
    pub credential_store: Option<String>,
    /// Remove a setting from config.env (repeatable).
    #[arg(long, value_name = "KEY")]
    pub unset: Vec<String>,
}

impl InitArgs {
    fn changes(&self) -> Vec<(&'static str, String)> {
        let pairs: [(&'static str, &Option<String>); 24] = [
            (keys::BOT_TOKEN, &self.discord_token),
            (keys::APP_ID, &self.app_id),
            (keys::GUILD_ID, &self.guild_id),
            (keys::ALLOWED_USERS, &self.allowed_users),
            (keys::ALLOWED_ROLES, &self.allowed_roles),
            (keys::ALLOWED_BOTS, &self.allowed_bots),
            (keys::MESH_URL, &self.mesh_url),
            (keys::MESH_ENDPOINTS, &self.mesh_endpoints),
            (keys::MESH_TOKEN, &self.mesh_token),
            (keys::MESH_ACCOUNT, &self.mesh_account),
            (keys::MESH_GATEWAY_NAME, &self.gateway_name),
            (keys::MESH_ENDPOINT_ID, &self.endpoint_id),
            (keys::RUNNER, &self.runner),
            (keys::OPENCODE_BIN, &self.opencode_bin),
            (keys::CODEX_BIN, &self.codex_bin),
            (keys::CLAUDE_BIN, &self.claude_bin),
            (keys::MODEL, &self.model),
            (keys::AGENT, &self.agent),
            (keys::MAX_CONCURRENT_JOBS, &self.max_concurrent_jobs),
            (keys::TRANSCRIPTION_PROVIDERS, &self.transcription_providers),
            (keys::GEMINI_API_KEY, &self.gemini_api_key),
            (keys::OPENAI_API_KEY, &self.openai_api_key),
            (keys::LOG_LEVEL, &self.log_level),
            (keys::CREDENTIAL_STORE, &self.credential_store),
        ];
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.trim().to_owned())))
            .collect()
    }
}

pub fn run(global: &GlobalArgs, args: InitArgs, loaded: Loaded) -> Result<u8, Failure> {
    if args.print_example {
        print!("{}", keys::render_example());
        return Ok(exit::OK);
    }
    let mut changes: Vec<(&'static str, String)> = args.changes();
    for (k, v) in &global.set {
        match keys::find(k) {
            Some(def) => changes.push((def.name, v.clone())),
            None => {
                return Err(
                    Failure::new(exit::USAGE, format!("unknown setting {k}")).hint(
                        keys::suggest(k)
                            .map(|s| format!("did you mean {s}?"))
                            .unwrap_or_else(|| {
                                "`kimaki init --print-example` lists every setting".to_owned()
                            }),
                    ),
                )
            }
        }
    }
    for k in &args.unset {
        if keys::find(k).is_none() {
            return Err(Failure::new(
                exit::USAGE,
                format!("unknown setting {k} in --unset"),
            ));
        }
    }

    let interactive =
        !args.non_interactive && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if interactive {
        ask(&loaded, &mut changes)?;
    }

    let mut problems = Vec::new();
    for (k, v) in &changes {
        if let Some(def) = keys::find(k) {
            if let Err(msg) = validate::check(def, v) {
                problems.push(format!("{k}: {msg}"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(Failure::new(
            exit::USAGE,
            format!("invalid values:\n  {}", problems.join("\n  ")),
        )
        .hint("nothing was written; fix the values and run `kimaki init` again"));
    }

    loaded
        .data_dir
        .ensure()
        .map_err(|e| Failure::new(exit::CONFIG, e.to_string()))?;
    let mode = changes
        .iter()
        .rev()
        .find(|(k, _)| *k == keys::CREDENTIAL_STORE)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| loaded.settings.get(keys::CREDENTIAL_STORE).to_owned());
    let store = secrets::choose_store(&mode).map_err(|reason| {
        Failure::new(
            exit::CONFIG,
            format!("the OS keyring is not usable: {reason}"),
        )
        .hint("use --credential-store file (secrets then live in config.env, mode 0600)")
    })?;

    let mut file = loaded.file.clone();
    let keyring = Keyring::for_data_dir(loaded.data_dir.root());
    for k in &args.unset {
        file.remove(k);
        keyring.delete(k);
    }
    let mut written: Vec<String> = Vec::new();
    for (k, v) in &changes {
        let Some(def) = keys::find(k) else { continue };
        if v.is_empty() {
            file.remove(k);
            keyring.delete(k);
            written.push(format!("{k} removed"));
        } else if def.secret {
            secrets::store_secret(&mut file, &keyring, store, k, &Secret::new(v.clone()))
                .map_err(|e| Failure::new(exit::CONFIG, e.to_string()))?;
            written.push(format!("{k}={} (in {store})", secrets::redact(v)));
        } else {
            file.set(k, v);
            written.push(format!("{k}={v}"));
        }
    }
    // Derive what can be derived, so the user types less.
    let token_changed = changes.iter().find(|(k, _)| *k == keys::BOT_TOKEN);
    if let Some((_, token)) = token_changed {
        if !changes.iter().any(|(k, _)| *k == keys::APP_ID) && !token.is_empty() {
            if let Ok(app_id) = validate::discord_app_id_from_token(token) {
                file.set(keys::APP_ID, &app_id);
                written.push(format!("{}={app_id} (from the token)", keys::APP_ID));
            }
        }
    }
    if file.get(keys::MESH_GATEWAY_ID).is_none_or(str::is_empty) {
        let id = format!("gw_{}", ulid::Ulid::new());
        file.set(keys::MESH_GATEWAY_ID, &id);
        written.push(format!("{}={id} (generated once)", keys::MESH_GATEWAY_ID));
    }
    if !loaded.settings.is_set(keys::API_TOKEN) && file.get(keys::API_TOKEN).is_none() {
        let token = generate_token();
        secrets::store_secret(
            &mut file,
            &keyring,
            store,
            keys::API_TOKEN,
            &Secret::new(token.clone()),
        )
        .map_err(|e| Failure::new(exit::CONFIG, e.to_string()))?;
        written.push(format!(
            "{}={} (generated once, in {store})",
            keys::API_TOKEN,
            secrets::redact(&token)
        ));
    }
    let path = loaded.data_dir.config_env();
    file.save(&path)
        .map_err(|e| Failure::new(exit::DATA, e.to_string()))?;

    println!("Saved {} (mode 0600).", path.display());
    for w in &written {
        println!("  {w}");
    }
    if written.is_empty() {
        println!("  no changes");
    }
    if store == CredentialStore::File
        && keys::KEYS
            .iter()
            .any(|k| k.secret && file.get(k.name).is_some())
    {
        println!("  secrets are kept in config.env: this host has no usable OS keyring");
    }

    // Offline checks: what is configured and whether it can work.
    let reloaded = Loaded::load(loaded.data_dir.clone(), loaded.env.clone(), &global.set)
        .map_err(|e| Failure::new(exit::CONFIG, e.to_string()))?;
    let rt = super::runtime()?;
    let spinner = interactive.then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message("checking runner binaries…");
        pb.enable_steady_tick(Duration::from_millis(80));
        pb
    });
    let lines = rt.block_on(offline_checks(&reloaded));
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    println!("Checks:");
    for l in &lines {
        println!("  {l}");
    }
    println!(
        "Next: `kimaki doctor` checks Discord and mesh reachability; `kimaki start` runs kimaki."
    );
    Ok(exit::OK)
}

/// 32 random bytes, hex: the local API's bearer token.
fn generate_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn offline_checks(loaded: &Loaded) -> Vec<String> {
    let s = &loaded.settings;
    let mut out = Vec::new();
    let default_runner = s.get(keys::RUNNER);
    for spec in runners::RUNNERS {
        let program = s.get(spec.program_key);
        let tag = if spec.id == default_runner {
            " (default runner)"
        } else {
            ""
        };
        match programs::find_program(program, loaded.env.path()) {
            Some(p) => match programs::program_version(&p).await {
                Ok(v) => out.push(format!(
                    "{} {} {v} at {}{tag}",
                    MARKS.pass,
                    spec.display,
                    p.display()
                )),
                Err(e) => out.push(format!("{} {}: {e}{tag}", MARKS.fail, spec.display)),
            },
            None => out.push(format!(
                "{} {} not found ({}={program}){tag}; install: {}",
                if spec.id == default_runner {
                    MARKS.fail
                } else {
                    MARKS.warn
                },
                spec.display,
                spec.program_key,
                spec.install
            )),
        }
    }
    if s.is_set(keys::BOT_TOKEN) {
        out.push(format!(
            "{} Discord token is well-formed (not yet verified online)",
            MARKS.pass
        ));
    } else {
        out.push(format!("{} Discord not configured", MARKS.skip));
    }
    let mesh = s.is_set(keys::MESH_URL) || s.is_set(keys::MESH_ENDPOINTS);
    match (mesh, s.is_set(keys::MESH_TOKEN)) {
        (true, true) => out.push(format!(
            "{} mesh configured (not yet verified online)",
            MARKS.pass
        )),
        (true, false) => out.push(format!(
            "{} mesh URL set but MESH_TOKEN missing",
            MARKS.fail
        )),
        _ => out.push(format!("{} mesh not configured", MARKS.skip)),
    }
    out
}

/// Interactive questions; each keeps the current value on Enter.
fn ask(loaded: &Loaded, changes: &mut Vec<(&'static str, String)>) -> Result<(), Failure> {
    let theme = ColorfulTheme::default();
    let io = |e: dialoguer::Error| Failure::new(exit::USAGE, format!("prompt failed: {e}"));
    let current = |changes: &[(&'static str, String)], key: &str| -> String {
        changes
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| loaded.settings.get(key).to_owned())
    };
    eprintln!(
        "kimaki setup — data dir {} (Enter keeps the current value)",
        loaded.data_dir.root().display()
    );

    let names: Vec<String> = runners::RUNNERS
        .iter()
        .map(|r| {
            let found =
                programs::find_program(loaded.settings.get(r.program_key), loaded.env.path())
                    .is_some();
            format!(
                "{} ({}){}",
                r.id,
                r.display,
                if found { "" } else { " — not installed" }
            )
        })
        .collect();
    let cur = current(changes, keys::RUNNER);
    let default_idx = runners::RUNNERS
        .iter()
        .position(|r| r.id == cur)
        .unwrap_or(0);
    let idx = dialoguer::Select::with_theme(&theme)
        .with_prompt("Coding agent for new sessions")
        .items(&names)
        .default(default_idx)
        .interact()
        .map_err(io)?;
    if let Some(spec) = runners::RUNNERS.get(idx) {
        changes.push((keys::RUNNER, spec.id.to_owned()));
    }

    ask_secret(
        &theme,
        loaded,
        changes,
        keys::BOT_TOKEN,
        "Discord bot token (empty: keep / skip)",
    )?;
    if !current(changes, keys::BOT_TOKEN).is_empty() {
        let guild = current(changes, keys::GUILD_ID);
        ask_text(
            &theme,
            changes,
            keys::GUILD_ID,
            "Discord server id (optional)",
            &guild,
        )?;
    }
    let mesh_url = current(changes, keys::MESH_URL);
    ask_text(
        &theme,
        changes,
        keys::MESH_URL,
        "Mesh coordinator URL (optional)",
        &mesh_url,
    )?;
    if !current(changes, keys::MESH_URL).is_empty() {
        ask_secret(
            &theme,
            loaded,
            changes,
            keys::MESH_TOKEN,
            "Mesh gateway token",
        )?;
    }
    ask_secret(
        &theme,
        loaded,
        changes,
        keys::GEMINI_API_KEY,
        "Gemini API key for voice messages (optional)",
    )?;
    Ok(())
}

fn ask_text(
    theme: &ColorfulTheme,
    changes: &mut Vec<(&'static str, String)>,
    key: &'static str,
    prompt: &str,
    current: &str,
) -> Result<(), Failure> {
    let Some(def) = keys::find(key) else {
        return Ok(());
    };
    let value: String = dialoguer::Input::with_theme(theme)
        .with_prompt(prompt)
        .with_initial_text(current)
        .allow_empty(true)
        .validate_with(|s: &String| validate::check(def, s.trim()))
        .interact_text()
        .map_err(|e| Failure::new(exit::USAGE, format!("prompt failed: {e}")))?;
    if value.trim() != current {
        changes.push((key, value.trim().to_owned()));
    }
    Ok(())
}

fn ask_secret(
    theme: &ColorfulTheme,
    loaded: &Loaded,
    changes: &mut Vec<(&'static str, String)>,
    key: &'static str,
    prompt: &str,
) -> Result<(), Failure> {
    let Some(def) = keys::find(key) else {
        return Ok(());
    };
    let has = loaded.settings.is_set(key) || changes.iter().any(|(k, _)| *k == key);
    let prompt = if has {
        format!(
            "{prompt} [set: {}]",
            secrets::redact(loaded.settings.get(key))
        )
    } else {
        prompt.to_owned()
    };
    let value = dialoguer::Password::with_theme(theme)
        .with_prompt(prompt)
        .allow_empty_password(true)
        .validate_with(|s: &String| validate::check(def, s.trim()))
        .interact()
        .map_err(|e| Failure::new(exit::USAGE, format!("prompt failed: {e}")))?;
    if !value.trim().is_empty() {
        changes.push((key, value.trim().to_owned()));
    }
    Ok(())
}
