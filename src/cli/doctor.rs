//! `kimaki doctor`: checks everything it can, prints every problem (not just the first) with a
//! fix, and exits 1 if anything failed. Never prints a secret.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::output::{exit, human_bytes, print_json, Failure, MARKS};
use super::GlobalArgs;
use crate::adapters::control::{lock, Call, ControlClient, StatusReport};
use crate::config::{keys, programs, runners, secrets, Loaded, Source};
use crate::store::{self, Store};

/// Network checks must not make doctor hang on a dead network.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(5);

/// Below this much free space kimaki cannot be trusted to store jobs.
const DISK_FAIL_BYTES: u64 = 100 * 1024 * 1024;
const DISK_WARN_BYTES: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kimaki doctor                 human report; exit status 1 if anything failed
  kimaki doctor --json          the same as JSON (checks and effective settings)
  kimaki doctor --config        also show every setting and where its value came from")]
pub struct DoctorArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show each setting's effective value and its source (flag, env, config.env, keyring,
    /// default).
    #[arg(long)]
    pub config: bool,
    /// Skip the Discord and mesh reachability checks.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Serialize)]
struct Check {
    id: &'static str,
    status: Status,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(
        &mut self,
        id: &'static str,
        status: Status,
        message: impl Into<String>,
        fix: Option<String>,
    ) {
        self.checks.push(Check {
            id,
            status,
            message: message.into(),
            fix,
        });
    }
    fn pass(&mut self, id: &'static str, message: impl Into<String>) {
        self.add(id, Status::Pass, message, None);
    }
    fn fail(&mut self, id: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.add(id, Status::Fail, message, Some(fix.into()));
    }
    fn warn(&mut self, id: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.add(id, Status::Warn, message, Some(fix.into()));
    }
    fn skip(&mut self, id: &'static str, message: impl Into<String>) {
        self.add(id, Status::Skip, message, None);
    }
    fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }
}

pub fn run(_global: &GlobalArgs, args: DoctorArgs, loaded: Loaded) -> Result<u8, Failure> {
    let rt = super::runtime()?;
    let mut report = Report::default();
    check_data_dir(&loaded, &mut report);
    check_config(&loaded, &mut report);
    check_secrets(&loaded, &mut report);
    let running = check_instance(&loaded, &mut report, &rt);
    check_store(&loaded, running, &mut report);
    rt.block_on(check_runners(&loaded, &mut report));
    check_tools(&loaded, &mut report);
    if args.offline {
        report.skip("discord", "skipped (--offline)");
        report.skip("mesh", "skipped (--offline)");
    } else {
        rt.block_on(async {
            check_discord(&loaded, &mut report).await;
            check_gateway(&loaded, &mut report).await;
            check_mesh(&loaded, &mut report).await;
        });
    }
    check_voice(&loaded, &mut report);
    check_disk(&loaded, &mut report);

    let failed = report.failed();
    if args.json {
        print_json(&serde_json::json!({
            "ok": failed == 0,
            "data_dir": loaded.data_dir.root().display().to_string(),
            "checks": report.checks,
            "config": loaded.settings.display_rows(),
        }))?;
    } else {
        print_human(&loaded, &report, args.config);
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILURE })
}

fn print_human(loaded: &Loaded, report: &Report, show_config: bool) {
    println!(
        "kimaki doctor — data dir {}",
        loaded.data_dir.root().display()
    );
    for c in &report.checks {
        let mark = match c.status {
            Status::Pass => MARKS.pass,
            Status::Fail => MARKS.fail,
            Status::Warn => MARKS.warn,
            Status::Skip => MARKS.skip,
        };
        println!("  {mark} {:<10} {}", c.id, c.message);
        if let Some(fix) = &c.fix {
            println!("      fix: {fix}");
        }
    }
    if show_config {
        println!("\nsettings (value ← source):");
        for row in loaded.settings.display_rows() {
            if row.source == Source::Default && row.value.is_empty() {
                continue;
            }
            println!("  {:<34} {:<40} ← {}", row.key, row.value, row.source);
        }
    }
    let failed = report.failed();
    let warned = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Warn)
        .count();
    println!();
    match (failed, warned) {
        (0, 0) => println!("All checks passed."),
        (0, w) => println!("No problems; {w} warning(s)."),
        (f, _) => println!("{f} problem(s) found."),
    }
}

fn check_data_dir(loaded: &Loaded, r: &mut Report) {
    let dir = loaded.data_dir.root();
    match std::fs::metadata(dir) {
        Err(_) => r.warn(
            "data_dir",
            format!("{} does not exist yet", dir.display()),
            "run `kimaki init` (or `kimaki start`, which creates it)",
        ),
        Ok(m) if !m.is_dir() => r.fail(
            "data_dir",
            format!("{} is not a directory", dir.display()),
            "move the file away or choose another --data-dir",
        ),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                r.fail(
                    "data_dir",
                    format!(
                        "{} is accessible by other users (mode {mode:o})",
                        dir.display()
                    ),
                    format!("chmod 700 {}", dir.display()),
                );
            } else if !writable(dir) {
                r.fail(
                    "data_dir",
                    format!("{} is not writable", dir.display()),
                    "fix the directory's owner or permissions",
                );
            } else {
                r.pass("data_dir", format!("{} (mode {mode:o})", dir.display()));
            }
        }
    }
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

fn check_config(loaded: &Loaded, r: &mut Report) {
    let path = loaded.data_dir.config_env();
    let s = &loaded.settings;
    match std::fs::metadata(&path) {
        Err(_) => r.warn(
            "config",
            format!(
                "{} does not exist; defaults and environment only",
                path.display()
            ),
            "run `kimaki init`",
        ),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                r.fail(
                    "config",
                    format!(
                        "{} is readable by other users (mode {mode:o}) and may hold secrets",
                        path.display()
                    ),
                    format!("chmod 600 {}", path.display()),
                );
            }
        }
    }
    let mut problems = 0;
    for line in &s.malformed_lines {
        problems += 1;
        r.fail(
            "config",
            format!("config.env line {} is not KEY=VALUE", line.line_no),
            format!("edit {} (comments start with #)", path.display()),
        );
    }
    for key in &s.unknown_file_keys {
        problems += 1;
        r.fail(
            "config",
            format!("unknown key {key} in config.env"),
            unknown_fix(key, "remove or rename it in config.env"),
        );
    }
    for key in &s.unknown_env_keys {
        problems += 1;
        r.fail(
            "config",
            format!("unknown environment variable {key}"),
            unknown_fix(key, "unset it or fix its name"),
        );
    }
    for key in &s.unknown_flag_keys {
        problems += 1;
        r.fail(
            "config",
            format!("unknown setting {key} in --set"),
            unknown_fix(key, "fix the flag"),
        );
    }
    for bad in &s.invalid {
        problems += 1;
        let where_ = match bad.source {
            Source::File => "in config.env",
            Source::Env => "in the environment",
            Source::Flag => "in --set",
            Source::Keyring => "in the keyring",
            Source::Default => "(default)",
        };
        r.fail(
            "config",
            format!("{} {where_}: {}", bad.key, bad.message),
            format!(
                "set a valid {} with `kimaki init` or edit config.env",
                bad.key
            ),
        );
    }
    if problems == 0 {
        r.pass("config", format!("{} settings valid", keys::KEYS.len()));
    }
}

fn unknown_fix(key: &str, otherwise: &str) -> String {
    match keys::suggest(key) {
        Some(k) => format!("did you mean {k}? ({otherwise})"),
        None => format!("{otherwise}; `kimaki init --print-example` lists every key"),
    }
}

fn check_secrets(loaded: &Loaded, r: &mut Report) {
    for e in &loaded.settings.secret_errors {
        r.fail(
            "secrets",
            e.clone(),
            "store the secret again with `kimaki init`",
        );
    }
    let in_keyring = keys::KEYS
        .iter()
        .filter(|k| k.secret)
        .filter(|k| loaded.settings.source(k.name) == Some(Source::Keyring))
        .count();
    let in_file = keys::KEYS
        .iter()
        .filter(|k| k.secret)
        .filter(|k| loaded.settings.source(k.name) == Some(Source::File))
        .count();
    match secrets::Keyring::probe() {
        Ok(()) if in_file > 0 => r.warn(
            "secrets",
            format!("{in_file} secret(s) are in config.env although an OS keyring is available"),
            "run `kimaki init --credential-store keyring` to move them",
        ),
        Ok(()) => r.pass(
            "secrets",
            format!("OS keyring available ({in_keyring} secret(s) stored there)"),
        ),
        Err(reason) => r.pass(
            "secrets",
            format!("no OS keyring ({reason}); secrets are kept in config.env (mode 0600)"),
        ),
    }
}

/// Reports whether an instance runs on this data dir; returns its status when it does.
fn check_instance(
    loaded: &Loaded,
    r: &mut Report,
    rt: &tokio::runtime::Runtime,
) -> Option<StatusReport> {
    let pid = lock::holder(&loaded.data_dir.lock_file());
    match pid {
        None => {
            r.pass("instance", "not running");
            None
        }
        Some(pid) => {
            let client = ControlClient::new(&loaded.data_dir.socket(), NETWORK_TIMEOUT);
            match rt.block_on(client.call::<StatusReport>(Call::Status)) {
                Ok(status) => {
                    r.pass(
                        "instance",
                        format!("running (pid {pid}), control socket answers"),
                    );
                    Some(status)
                }
                Err(e) => {
                    r.fail(
                        "instance",
                        format!("kimaki holds the lock (pid {pid}) but its control socket does not answer: {e}"),
                        format!("restart it: `kill {pid}` then `kimaki start`"),
                    );
                    None
                }
            }
        }
    }
}

fn check_store(loaded: &Loaded, running: Option<StatusReport>, r: &mut Report) {
    let path = loaded.data_dir.store_dir();
    if let Some(status) = running {
        r.pass(
            "store",
            format!(
                "open in the running instance; {} job(s) queued, {} running",
                status.queue.queued, status.queue.running
            ),
        );
        return;
    }
    if !Store::exists(&path) {
        r.pass("store", "not created yet (created by `kimaki start`)");
        return;
    }
    match Store::open(&path) {
        Ok(s) => {
            let queued = s.len(store::Tree::LaneQueue);
            r.pass(
                "store",
                format!(
                    "{} opens (schema v{}); {queued} job(s) queued; {} on disk",
                    path.display(),
                    store::schema_version(&s).unwrap_or(0),
                    human_bytes(s.size_on_disk())
                ),
            );
        }
        Err(e) => r.fail(
            "store",
            e.to_string(),
            format!("move it aside: mv {0} {0}.broken", path.display()),
        ),
    }
}

async fn check_runners(loaded: &Loaded, r: &mut Report) {
    let s = &loaded.settings;
    let default_runner = s.get(keys::RUNNER).to_owned();
    let path = loaded.env.path();
    for spec in runners::RUNNERS {
        let program = s.get(spec.program_key);
        let explicit = s.source(spec.program_key) != Some(Source::Default);
        let needed = spec.id == default_runner || explicit;
        match programs::find_program(program, path) {
            None => {
                let msg = format!(
                    "{} not found ({} = {program})",
                    spec.display, spec.program_key
                );
                let fix = format!(
                    "install it: `{}`, or set {} to its path",
                    spec.install, spec.program_key
                );
                if needed {
                    r.fail("runner", msg, fix);
                } else {
                    r.warn("runner", format!("{msg}; optional"), fix);
                }
            }
            Some(found) => match programs::program_version(&found).await {
                Ok(v) if v == spec.tested_version => r.pass(
                    "runner",
                    format!("{} {v} at {}", spec.display, found.display()),
                ),
                Ok(v) => r.warn(
                    "runner",
                    format!(
                        "{} {v} at {} (kimaki is tested with {})",
                        spec.display,
                        found.display(),
                        spec.tested_version
                    ),
                    format!("for the tested version: `{}`", spec.install),
                ),
                Err(e) => {
                    let fix = format!("reinstall it: `{}`", spec.install);
                    if needed {
                        r.fail("runner", e, fix);
                    } else {
                        r.warn("runner", e, fix);
                    }
                }
            },
        }
    }
}

fn check_tools(loaded: &Loaded, r: &mut Report) {
    let path = loaded.env.path();
    if programs::find_program("git", path).is_none() {
        r.warn(
            "tools",
            "git not found on PATH (needed for worktrees and project status)",
            "install git",
        );
    } else if loaded.settings.get(keys::RUNNER) == "opencode"
        && programs::find_program("rg", path).is_none()
    {
        r.warn(
            "tools",
            "ripgrep (rg) not found on PATH; OpenCode tries to download it on first search",
            "install ripgrep (apt install ripgrep)",
        );
    } else {
        r.pass("tools", "git found");
    }
}

fn http_client() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(NETWORK_TIMEOUT)
        .connect_timeout(NETWORK_TIMEOUT)
        .build()
        .ok()
}

async fn check_discord(loaded: &Loaded, r: &mut Report) {
    let Some(token) = loaded.settings.secret(keys::BOT_TOKEN) else {
        r.skip(
            "discord",
            "not configured (add with `kimaki init --discord-token …`)",
        );
        return;
    };
    let Some(client) = http_client() else {
        r.fail(
            "discord",
            "cannot create an HTTP client",
            "check the system's TLS setup",
        );
        return;
    };
    let base = loaded
        .settings
        .get(keys::DISCORD_API_URL)
        .trim_end_matches('/');
    let url = format!("{base}/api/v10/users/@me");
    let resp = client
        .get(&url)
        .header("Authorization", format!("Bot {}", token.expose()))
        .send()
        .await;
    match resp {
        Ok(resp) if resp.status().is_success() => {
            let name = resp
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v.get("username").and_then(|u| u.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "?".to_owned());
            r.pass("discord", format!("token accepted (bot {name})"));
        }
        Ok(resp) if resp.status().as_u16() == 401 => r.fail(
            "discord",
            "Discord rejected the bot token",
            "reset the token in the Developer Portal (Bot > Reset Token) and run `kimaki init --discord-token …`",
        ),
        Ok(resp) => r.fail(
            "discord",
            format!("Discord answered HTTP {}", resp.status().as_u16()),
            "try again later; check https://discordstatus.com",
        ),
        Err(e) => r.fail(
            "discord",
            format!("cannot reach {base}: {}", describe_reqwest(&e)),
            "check the network (and proxy settings)",
        ),
    }
}

/// Gateway mode: what the saved onboarding says, and whether the proxy still accepts it.
async fn check_gateway(loaded: &Loaded, r: &mut Report) {
    use crate::adapters::discord::{CredentialCheck, GatewayProxy, SavedOnboarding};
    let url = loaded.settings.get(keys::GATEWAY_URL).trim();
    if url.is_empty() {
        return;
    }
    let proxy = match GatewayProxy::new(url) {
        Ok(p) => p,
        Err(e) => {
            r.fail(
                "gateway",
                e.to_string(),
                format!("set {} to the proxy's http(s) base URL", keys::GATEWAY_URL),
            );
            return;
        }
    };
    let saved = match SavedOnboarding::load(&loaded.data_dir.gateway_onboarding()) {
        Ok(s) => s.filter(|s| s.gateway_url == proxy.base()),
        Err(e) => {
            r.fail(
                "gateway",
                e.to_string(),
                "run `kimaki start --gateway --restart-onboarding`",
            );
            return;
        }
    };
    let Some(saved) = saved else {
        r.skip(
            "gateway",
            "not onboarded yet (`kimaki start --gateway` prints an install URL)",
        );
        return;
    };
    let Some(authorization) = saved.authorization() else {
        r.warn(
            "gateway",
            format!("waiting for authorization at {}", saved.install_url),
            "open the install URL and add the bot to a server, with kimaki running",
        );
        return;
    };
    match proxy.check_credential(&authorization.credential).await {
        Ok(CredentialCheck::Accepted) => r.pass(
            "gateway",
            format!(
                "authorized in guild {}; the proxy accepts the credential",
                authorization.guild_id
            ),
        ),
        Ok(CredentialCheck::Rejected) => r.fail(
            "gateway",
            "the gateway proxy no longer accepts the saved credential",
            "run `kimaki start --gateway --restart-onboarding` and authorize the bot again",
        ),
        Err(e) => r.fail(
            "gateway",
            e.to_string(),
            format!("check that the proxy at {} is up", keys::GATEWAY_URL),
        ),
    }
}

async fn check_mesh(loaded: &Loaded, r: &mut Report) {
    let s = &loaded.settings;
    let mut endpoints = s.list(keys::MESH_ENDPOINTS);
    if endpoints.is_empty() && s.is_set(keys::MESH_URL) {
        endpoints.push(s.get(keys::MESH_URL).to_owned());
    }
    if endpoints.is_empty() {
        r.skip(
            "mesh",
            "not configured (add with `kimaki init --mesh-url … --mesh-token …`)",
        );
        return;
    }
    if !s.is_set(keys::MESH_TOKEN) {
        r.fail(
            "mesh",
            "a mesh URL is set but MESH_TOKEN is not",
            "run `kimaki init --mesh-token …`",
        );
    }
    let Some(client) = http_client() else {
        r.fail(
            "mesh",
            "cannot create an HTTP client",
            "check the system's TLS setup",
        );
        return;
    };
    for endpoint in endpoints {
        let http = endpoint
            .replacen("wss://", "https://", 1)
            .replacen("ws://", "http://", 1);
        let url = format!(
            "{}/socket.io/?EIO=4&transport=polling",
            http.trim_end_matches('/')
        );
        match client.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => {
                let body = resp.text().await.unwrap_or_default();
                if body.starts_with('0') {
                    r.pass("mesh", format!("{endpoint} answers (Socket.IO)"));
                } else {
                    r.fail(
                        "mesh",
                        format!("{endpoint} answers, but not as a Socket.IO server"),
                        "check MESH_ENDPOINTS",
                    );
                }
            }
            Ok(resp) => r.fail(
                "mesh",
                format!("{endpoint} answered HTTP {}", resp.status().as_u16()),
                "check the URL (MESH_ENDPOINTS / MESH_URL)",
            ),
            Err(e) => r.fail(
                "mesh",
                format!("cannot reach {endpoint}: {}", describe_reqwest(&e)),
                "check the URL and the network",
            ),
        }
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {}s", NETWORK_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    }
}

fn check_voice(loaded: &Loaded, r: &mut Report) {
    match crate::runtime::voice_report(loaded) {
        Ok((chain, skipped)) => {
            r.pass(
                "voice",
                format!("voice messages are transcribed by {chain}"),
            );
            for s in skipped {
                r.warn(
                    "voice",
                    s,
                    "set its key or remove it from KIMAKI_TRANSCRIPTION_PROVIDERS",
                );
            }
        }
        Err((reason, fix)) => r.add(
            "voice",
            Status::Skip,
            format!("voice messages off: {reason}"),
            Some(fix),
        ),
    }
}

fn check_disk(loaded: &Loaded, r: &mut Report) {
    let mut dir = loaded.data_dir.root().to_path_buf();
    while !dir.exists() {
        if !dir.pop() {
            break;
        }
    }
    match nix::sys::statvfs::statvfs(&dir) {
        Ok(st) => {
            let free = st.blocks_available() * st.fragment_size();
            if free < DISK_FAIL_BYTES {
                r.fail(
                    "disk",
                    format!("only {} free at {}", human_bytes(free), dir.display()),
                    "free disk space; kimaki cannot store jobs safely",
                );
            } else if free < DISK_WARN_BYTES {
                r.warn(
                    "disk",
                    format!("{} free at {}", human_bytes(free), dir.display()),
                    "free some disk space",
                );
            } else {
                r.pass("disk", format!("{} free", human_bytes(free)));
            }
        }
        Err(e) => r.warn(
            "disk",
            format!("cannot read free space: {e}"),
            "check the data dir's filesystem",
        ),
    }
}
