//! `kimaki upgrade`: replace the kimaki executable (from a given file, or built with
//! `cargo install`) and restart the running instance in place, so it keeps its flags
//! (`--data-dir`, `--gateway`, …); store migrations run as it starts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Args;

use super::backend::{control_failure, CALL_TIMEOUT};
use super::output::{exit, print_json, Failure};
use super::GlobalArgs;
use crate::adapters::control::{Call, ControlClient, ControlError, StatusReport};
use crate::config::{keys, Loaded};

/// `version --json` of a healthy binary answers at once.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Drain grace plus start-up.
const RESTART_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kimaki upgrade --from ./target/release/kimaki     install this binary, restart the running kimaki
  kimaki upgrade --cargo --path ~/src/kimaki         build with cargo install, then the same
  kimaki upgrade --from /tmp/kimaki --no-restart     replace the file only")]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from", "cargo"])))]
pub struct UpgradeArgs {
    /// Use this kimaki executable.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Build a new kimaki with `cargo install --locked`.
    #[arg(long)]
    pub cargo: bool,
    /// With --cargo: build from this source directory.
    #[arg(long, value_name = "DIR", requires = "cargo", conflicts_with = "git")]
    pub path: Option<PathBuf>,
    /// With --cargo: build from this git repository.
    #[arg(long, value_name = "URL", requires = "cargo")]
    pub git: Option<String>,
    /// Replace the executable but leave the running instance alone.
    #[arg(long)]
    pub no_restart: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_global: &GlobalArgs, args: UpgradeArgs, loaded: Loaded) -> Result<u8, Failure> {
    let rt = super::runtime()?;
    rt.block_on(async move {
        let client = ControlClient::new(&loaded.data_dir.socket(), CALL_TIMEOUT);
        let running = match client.call::<StatusReport>(Call::Status).await {
            Ok(s) => Some(s),
            Err(ControlError::NotRunning(_)) => None,
            Err(e) => return Err(control_failure(e)),
        };
        // Upgrade the executable the running instance uses; else the one running this command.
        let target = match running.as_ref().filter(|s| !s.exe.is_empty()) {
            Some(s) => PathBuf::from(&s.exe),
            None => std::env::current_exe().map_err(|e| {
                Failure::new(
                    exit::FAILURE,
                    format!("cannot find kimaki's own executable: {e}"),
                )
            })?,
        };
        let build_dir = tempfile_dir(&target)?;
        let candidate = match (&args.from, args.cargo) {
            (Some(path), _) => path.clone(),
            (None, true) => cargo_install(&args, &build_dir)?,
            (None, false) => return Err(Failure::new(exit::USAGE, "give --from FILE or --cargo")),
        };
        let new_version = probe_version(&candidate).await?;
        replace_executable(&candidate, &target)?;
        let _ = std::fs::remove_dir_all(&build_dir);
        if !args.json {
            println!("Installed kimaki {new_version} at {}.", target.display());
        }

        let mut restarted = false;
        if let (Some(before), false) = (running, args.no_restart) {
            client
                .call::<serde_json::Value>(Call::Restart {
                    reason: Some(format!("upgrade to {new_version}")),
                })
                .await
                .map_err(control_failure)?;
            let grace = Duration::from_secs(loaded.settings.u64(keys::SHUTDOWN_GRACE_SECS));
            let deadline = Instant::now() + grace + RESTART_MARGIN;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Ok(after) = client.call::<StatusReport>(Call::Status).await {
                    if after.started_at != before.started_at {
                        restarted = true;
                        if !args.json {
                            println!("Restarted kimaki (pid {}) on the new version.", after.pid);
                        }
                        break;
                    }
                }
                if Instant::now() > deadline {
                    return Err(Failure::new(
                        exit::FAILURE,
                        "kimaki did not come back after the upgrade",
                    )
                    .hint(format!("see {}", loaded.data_dir.log_file().display())));
                }
            }
        }
        if args.json {
            print_json(&serde_json::json!({
                "version": new_version,
                "path": target.display().to_string(),
                "restarted": restarted,
            }))?;
        }
        Ok(exit::OK)
    })
}

/// A scratch directory next to the target, so the final rename stays on one filesystem.
fn tempfile_dir(target: &Path) -> Result<PathBuf, Failure> {
    let parent = target.parent().unwrap_or(Path::new("."));
    let dir = parent.join(format!(".kimaki-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::new(
            exit::FAILURE,
            format!("cannot write next to {}: {e}", target.display()),
        )
    })?;
    Ok(dir)
}

fn cargo_install(args: &UpgradeArgs, root: &Path) -> Result<PathBuf, Failure> {
    let mut cmd = Command::new("cargo");
    cmd.args(["install", "--locked", "--force", "--root"])
        .arg(root);
    match (&args.path, &args.git) {
        (Some(p), _) => {
            cmd.arg("--path").arg(p);
        }
        (None, Some(g)) => {
            cmd.args(["--git", g, "kimaki"]);
        }
        (None, None) => {
            cmd.arg("kimaki");
        }
    }
    let status = cmd
        .status()
        .map_err(|e| Failure::new(exit::UNAVAILABLE, format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(Failure::new(
            exit::FAILURE,
            format!("cargo install failed ({status})"),
        ));
    }
    Ok(root.join("bin").join("kimaki"))
}

/// Runs the candidate's `version --json`: it must be a working kimaki before it replaces one.
async fn probe_version(candidate: &Path) -> Result<String, Failure> {
    let mut cmd = tokio::process::Command::new(candidate);
    cmd.args(["version", "--json"]).kill_on_drop(true);
    let out = tokio::time::timeout(PROBE_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            Failure::new(
                exit::FAILURE,
                format!("{} did not answer `version`", candidate.display()),
            )
        })?
        .map_err(|e| {
            Failure::new(
                exit::USAGE,
                format!("cannot run {}: {e}", candidate.display()),
            )
        })?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        Failure::new(
            exit::USAGE,
            format!("{} is not a kimaki executable", candidate.display()),
        )
    })?;
    v.get("version")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::new(
                exit::USAGE,
                format!("{} is not a kimaki executable", candidate.display()),
            )
        })
}

/// Copies next to the target and renames over it: the running process keeps its (old) inode,
/// and nobody ever sees a half-written executable.
fn replace_executable(candidate: &Path, target: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = target.with_extension(format!("new.{}", std::process::id()));
    let fail = |e: std::io::Error| {
        Failure::new(
            exit::FAILURE,
            format!("cannot replace {}: {e}", target.display()),
        )
    };
    std::fs::copy(candidate, &tmp).map_err(fail)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
    std::fs::rename(&tmp, target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}
