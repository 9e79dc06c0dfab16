//! `kimaki service install|uninstall|status`: run `kimaki start` under the OS service manager — a
//! systemd user unit on Linux, a launchd agent on macOS — with the same data dir and flags,
//! restarted on failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::output::{exit, print_json, Failure};
use super::GlobalArgs;
use crate::config::{keys, Loaded};

/// Extra time, beyond kimaki's own drain grace, the service manager waits before killing it.
const STOP_MARGIN_SECS: u64 = 15;

/// Exit codes that mean "configuration or usage problem": restarting cannot help.
const NO_RESTART_EXIT_CODES: &str = "64 65 69 78";

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kimaki service install                     write and start the service for this data dir
  kimaki service install -- --gateway        extra flags for `kimaki start`
  kimaki service install --print             show the unit without installing it
  kimaki service status --json
  kimaki service uninstall")]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Write the service definition and (unless --no-start) enable and start it.
    Install {
        /// Only write the file; do not enable or start it.
        #[arg(long)]
        no_start: bool,
        /// Print the definition instead of installing it.
        #[arg(long)]
        print: bool,
        /// Service manager (default: this OS's).
        #[arg(long, value_enum)]
        platform: Option<Platform>,
        /// Flags passed to `kimaki start` (after `--`).
        #[arg(last = true)]
        start_flags: Vec<String>,
    },
    /// Stop, disable and remove the service definition.
    Uninstall {
        #[arg(long, value_enum)]
        platform: Option<Platform>,
    },
    /// Show whether the service is installed and running.
    Status {
        #[arg(long, value_enum)]
        platform: Option<Platform>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Systemd,
    Launchd,
}

impl Platform {
    fn native() -> Self {
        if cfg!(target_os = "macos") {
            Platform::Launchd
        } else {
            Platform::Systemd
        }
    }
}

/// Everything a service definition is rendered from.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    pub start_flags: Vec<String>,
    pub stop_timeout_secs: u64,
}

impl ServiceSpec {
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--data-dir".to_owned(),
            self.data_dir.display().to_string(),
            "start".to_owned(),
        ];
        args.extend(self.start_flags.iter().cloned());
        args
    }
}

/// `kimaki` for the default data dir; `kimaki-<dir name>` for others, so instances coexist.
pub fn service_name(data_dir: &Path, default_dir: Option<&Path>) -> String {
    if default_dir == Some(data_dir) {
        return "kimaki".to_owned();
    }
    let base: String = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let base = base.trim_matches('-');
    if base.is_empty() {
        "kimaki-instance".to_owned()
    } else {
        format!("kimaki-{base}")
    }
}

/// Quotes one ExecStart argument the way systemd parses it.
fn systemd_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,@+".contains(c))
    {
        return arg.to_owned();
    }
    format!(
        "\"{}\"",
        arg.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('%', "%%")
    )
}

pub fn render_systemd(spec: &ServiceSpec) -> String {
    let exec: Vec<String> = std::iter::once(spec.exe.display().to_string())
        .chain(spec.args())
        .map(|a| systemd_quote(&a))
        .collect();
    format!(
        "[Unit]\n\
         Description=kimaki agent ({data_dir})\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exec}\n\
         # SIGUSR2 restarts kimaki in place (same pid, config.env re-read).\n\
         ExecReload=/bin/kill -USR2 $MAINPID\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         # Configuration and usage errors need a person, not a restart.\n\
         RestartPreventExitStatus={no_restart}\n\
         # kimaki drains running jobs on SIGTERM; give it that time before SIGKILL.\n\
         KillMode=mixed\n\
         TimeoutStopSec={stop}\n\
         # stdout carries SSE lifecycle lines; both streams go to the journal.\n\
         StandardOutput=journal\n\
         StandardError=journal\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        data_dir = spec.data_dir.display(),
        exec = exec.join(" "),
        no_restart = NO_RESTART_EXIT_CODES,
        stop = spec.stop_timeout_secs,
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render_launchd(spec: &ServiceSpec) -> String {
    let mut args = String::new();
    for a in std::iter::once(spec.exe.display().to_string()).chain(spec.args()) {
        args.push_str(&format!("        <string>{}</string>\n", xml_escape(&a)));
    }
    let dd = xml_escape(&spec.data_dir.display().to_string());
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20   <key>Label</key>\n\
         \x20   <string>dev.kimaki.{name}</string>\n\
         \x20   <key>ProgramArguments</key>\n\
         \x20   <array>\n\
         {args}\
         \x20   </array>\n\
         \x20   <key>RunAtLoad</key>\n\
         \x20   <true/>\n\
         \x20   <key>KeepAlive</key>\n\
         \x20   <dict>\n\
         \x20       <key>SuccessfulExit</key>\n\
         \x20       <false/>\n\
         \x20   </dict>\n\
         \x20   <key>ExitTimeOut</key>\n\
         \x20   <integer>{stop}</integer>\n\
         \x20   <key>ProcessType</key>\n\
         \x20   <string>Background</string>\n\
         \x20   <key>StandardOutPath</key>\n\
         \x20   <string>{dd}/service.out.log</string>\n\
         \x20   <key>StandardErrorPath</key>\n\
         \x20   <string>{dd}/service.err.log</string>\n\
         </dict>\n\
         </plist>\n",
        name = xml_escape(&spec.name),
        stop = spec.stop_timeout_secs,
    )
}

/// Where the definition file goes.
fn unit_path(platform: Platform, name: &str, loaded: &Loaded) -> Result<PathBuf, Failure> {
    let home = loaded
        .env
        .home()
        .map(PathBuf::from)
        .ok_or_else(|| Failure::new(exit::CONFIG, "HOME is not set"))?;
    Ok(match platform {
        Platform::Systemd => loaded
            .env
            .get("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"))
            .join("systemd/user")
            .join(format!("{name}.service")),
        Platform::Launchd => home
            .join("Library/LaunchAgents")
            .join(format!("dev.kimaki.{name}.plist")),
    })
}

fn spec_for(
    loaded: &Loaded,
    global: &GlobalArgs,
    start_flags: Vec<String>,
) -> Result<ServiceSpec, Failure> {
    let exe = std::env::current_exe().map_err(|e| {
        Failure::new(
            exit::FAILURE,
            format!("cannot find kimaki's own executable: {e}"),
        )
    })?;
    let default_dir = crate::config::DataDir::resolve(None).ok();
    let mut flags = Vec::new();
    for (k, v) in &global.set {
        if keys::find(k).is_some_and(|d| d.secret) {
            return Err(Failure::new(
                exit::USAGE,
                format!("{k} is a secret: store it with `kimaki init`, not in a service file"),
            ));
        }
        flags.push("--set".to_owned());
        flags.push(format!("{k}={v}"));
    }
    flags.extend(start_flags);
    Ok(ServiceSpec {
        name: service_name(
            loaded.data_dir.root(),
            default_dir.as_ref().map(|d| d.root()),
        ),
        exe,
        data_dir: loaded.data_dir.root().to_owned(),
        start_flags: flags,
        stop_timeout_secs: loaded.settings.u64(keys::SHUTDOWN_GRACE_SECS) + STOP_MARGIN_SECS,
    })
}

/// Runs `systemctl --user …`; `None` when there is no usable user service manager.
fn systemctl(args: &[&str]) -> Option<std::process::Output> {
    Command::new("systemctl")
        .arg("--user")
        .args(args)
        .output()
        .ok()
}

fn systemd_available() -> bool {
    systemctl(&["show-environment"]).is_some_and(|o| o.status.success())
}

#[derive(Serialize)]
struct Report {
    platform: Platform,
    name: String,
    path: String,
    installed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    active: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<String>,
    manager_available: bool,
}

pub fn run(global: &GlobalArgs, args: ServiceArgs, loaded: Loaded) -> Result<u8, Failure> {
    match args.command {
        ServiceCommand::Install {
            no_start,
            print,
            platform,
            start_flags,
        } => {
            if start_flags.iter().any(|f| f == "--restart-onboarding") {
                // Baked into the unit it would discard the authorization at every (re)start.
                return Err(Failure::new(
                    exit::USAGE,
                    "--restart-onboarding would start a fresh onboarding at every service start; \
                     run `kimaki start --gateway --restart-onboarding` once by hand, then install \
                     the service without it",
                ));
            }
            let platform = platform.unwrap_or_else(Platform::native);
            let spec = spec_for(&loaded, global, start_flags)?;
            let text = match platform {
                Platform::Systemd => render_systemd(&spec),
                Platform::Launchd => render_launchd(&spec),
            };
            if print {
                print!("{text}");
                return Ok(exit::OK);
            }
            let path = unit_path(platform, &spec.name, &loaded)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Failure::new(
                        exit::FAILURE,
                        format!("cannot create {}: {e}", dir.display()),
                    )
                })?;
            }
            std::fs::write(&path, &text).map_err(|e| {
                Failure::new(
                    exit::FAILURE,
                    format!("cannot write {}: {e}", path.display()),
                )
            })?;
            println!("Wrote {}.", path.display());
            activate(platform, &spec.name, &path, no_start)
        }
        ServiceCommand::Uninstall { platform } => {
            let platform = platform.unwrap_or_else(Platform::native);
            let spec = spec_for(&loaded, global, Vec::new())?;
            let path = unit_path(platform, &spec.name, &loaded)?;
            deactivate(platform, &spec.name, &path);
            match std::fs::remove_file(&path) {
                Ok(()) => println!("Removed {}.", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    println!("No service installed at {}.", path.display())
                }
                Err(e) => {
                    return Err(Failure::new(
                        exit::FAILURE,
                        format!("cannot remove {}: {e}", path.display()),
                    ))
                }
            }
            if platform == Platform::Systemd && systemd_available() {
                let _ = systemctl(&["daemon-reload"]);
            }
            Ok(exit::OK)
        }
        ServiceCommand::Status { platform, json } => {
            let platform = platform.unwrap_or_else(Platform::native);
            let spec = spec_for(&loaded, global, Vec::new())?;
            let path = unit_path(platform, &spec.name, &loaded)?;
            let unit = format!("{}.service", spec.name);
            let available = platform == Platform::Systemd && systemd_available();
            let query = |what: &str| {
                available
                    .then(|| systemctl(&[what, &unit]))
                    .flatten()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            };
            let report = Report {
                platform,
                name: spec.name.clone(),
                path: path.display().to_string(),
                installed: path.exists(),
                active: query("is-active"),
                enabled: query("is-enabled"),
                manager_available: available,
            };
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "{} service {}: {}",
                    match platform {
                        Platform::Systemd => "systemd user",
                        Platform::Launchd => "launchd",
                    },
                    report.name,
                    if report.installed {
                        "installed"
                    } else {
                        "not installed"
                    }
                );
                println!("  file: {}", report.path);
                if let Some(a) = &report.active {
                    println!("  active: {a}");
                }
                if let Some(e) = &report.enabled {
                    println!("  enabled: {e}");
                }
                if !available && platform == Platform::Systemd {
                    println!("  (no systemd user manager here; `systemctl --user` is unavailable)");
                }
            }
            Ok(if report.installed {
                exit::OK
            } else {
                exit::NOT_RUNNING
            })
        }
    }
}

fn activate(platform: Platform, name: &str, path: &Path, no_start: bool) -> Result<u8, Failure> {
    match platform {
        Platform::Systemd => {
            let unit = format!("{name}.service");
            if !systemd_available() {
                println!("No systemd user manager is available here, so nothing was started.");
                println!("On a host with systemd: systemctl --user daemon-reload && systemctl --user enable --now {unit}");
                println!("(To keep it running after logout: loginctl enable-linger $USER)");
                return Ok(exit::OK);
            }
            let _ = systemctl(&["daemon-reload"]);
            if no_start {
                println!("Enable and start it with: systemctl --user enable --now {unit}");
                return Ok(exit::OK);
            }
            match systemctl(&["enable", "--now", &unit]) {
                Some(o) if o.status.success() => {
                    println!("Enabled and started {unit}. Logs: journalctl --user -u {unit}");
                    Ok(exit::OK)
                }
                Some(o) => Err(Failure::new(
                    exit::FAILURE,
                    format!(
                        "systemctl --user enable --now {unit} failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                )),
                None => Err(Failure::new(exit::FAILURE, "cannot run systemctl")),
            }
        }
        Platform::Launchd => {
            if no_start || !cfg!(target_os = "macos") {
                println!(
                    "Load it with: launchctl bootstrap gui/$(id -u) {}",
                    path.display()
                );
                return Ok(exit::OK);
            }
            let uid = nix::unistd::getuid();
            match Command::new("launchctl")
                .args([
                    "bootstrap",
                    &format!("gui/{uid}"),
                    &path.display().to_string(),
                ])
                .output()
            {
                Ok(o) if o.status.success() => {
                    println!("Loaded dev.kimaki.{name}.");
                    Ok(exit::OK)
                }
                Ok(o) => Err(Failure::new(
                    exit::FAILURE,
                    format!(
                        "launchctl bootstrap failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                )),
                Err(e) => Err(Failure::new(
                    exit::FAILURE,
                    format!("cannot run launchctl: {e}"),
                )),
            }
        }
    }
}

fn deactivate(platform: Platform, name: &str, path: &Path) {
    match platform {
        Platform::Systemd => {
            if systemd_available() {
                let _ = systemctl(&["disable", "--now", &format!("{name}.service")]);
            }
        }
        Platform::Launchd => {
            if cfg!(target_os = "macos") {
                let uid = nix::unistd::getuid();
                let _ = Command::new("launchctl")
                    .args([
                        "bootout",
                        &format!("gui/{uid}"),
                        &path.display().to_string(),
                    ])
                    .output();
            }
        }
    }
}
