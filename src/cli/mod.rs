//! The command line: one file per subcommand, each owning its arguments. The only code (besides
//! `telemetry`) that writes to stdout. Errors are printed once, here, with an exit code that says
//! what kind of problem it was.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backend;
mod completions;
mod doctor;
mod init;
mod output;
mod project;
mod restart;
mod send;
mod service;
mod session;
mod start;
mod status;
mod task;
mod upgrade;
mod upload;
mod version;
mod worktree;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{DataDir, Env, Loaded};

pub use output::exit;

const LONG_ABOUT: &str = "\
kimaki lets you drive AI coding agents (OpenCode, Codex CLI, Claude Code) on this machine from \
Discord, from a mesh coordinator, or from scripts. Every request goes through one durable job \
queue; nothing needs an inbound port.

Each Discord channel is a project directory and each thread one agent session.";

const AFTER_HELP: &str = "\
Examples:
  kimaki init                          set up interactively (Discord bot, mesh, runners)
  kimaki init --non-interactive --runner codex --discord-token \"$TOKEN\"
  kimaki start                         run in the foreground (a service manager keeps it alive)
  kimaki doctor                        check the setup and say how to fix each problem
  kimaki status --json                 what the running instance is doing
  kimaki --data-dir ~/work-bot start   a second, independent instance

Files live in the data dir (default ~/.kimaki): config.env, kimaki.log, store/, kimaki.sock.";

/// Drive AI coding agents on this machine from Discord, a mesh coordinator or scripts.
#[derive(Debug, Parser)]
#[command(
    name = "kimaki",
    version,
    about,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Data directory: config.env, logs, the job store, the control socket (one running
    /// instance per data dir).
    #[arg(long, global = true, env = "KIMAKI_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Override a setting for this run only (repeatable), e.g. `--set KIMAKI_RUNNER=codex`.
    /// Flags win over environment variables, which win over config.env.
    #[arg(short = 'c', long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,

    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less log output (repeat for less).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up or change the configuration (interactive on a terminal, or fully by flags).
    Init(Box<init::InitArgs>),
    /// Run kimaki in the foreground until stopped (SIGTERM/SIGINT stop it gracefully).
    Start(start::StartArgs),
    /// Check the installation and configuration; prints every problem with a fix.
    Doctor(doctor::DoctorArgs),
    /// Show what the running instance is doing.
    Status(status::StatusArgs),
    /// Restart the running instance in place (same flags; config.env is read again).
    Restart(restart::RestartArgs),
    /// Stop the running instance gracefully.
    Stop(restart::RestartArgs),
    /// Replace the kimaki executable and restart the running instance with the same flags.
    Upgrade(upgrade::UpgradeArgs),
    /// Send a prompt to a project or session (queued durably; --wait streams the result).
    Send(Box<send::SendArgs>),
    /// Manage the project directories kimaki may work in.
    Project(project::ProjectArgs),
    /// List sessions (conversations) and their state.
    Session(session::SessionArgs),
    /// List or delete scheduled sends (`kimaki send --send-at`).
    Task(task::TaskArgs),
    /// Create, list, merge back and remove git worktrees of a project.
    Worktree(worktree::WorktreeArgs),
    /// Upload files to a Discord thread (with the configured bot token; kimaki need not run).
    UploadToDiscord(upload::UploadArgs),
    /// Run kimaki under the OS service manager (systemd user unit, launchd agent).
    Service(service::ServiceArgs),
    /// Print version information.
    Version(version::VersionArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let env = Env::from_process();
    let result = match cli.command {
        Command::Version(args) => version::run(&args),
        Command::Completions(args) => completions::run(&args),
        Command::Init(args) => with_config(&cli.global, env, |loaded| {
            init::run(&cli.global, *args, loaded)
        }),
        Command::Start(args) => with_config(&cli.global, env, |loaded| {
            start::run(&cli.global, args, loaded)
        }),
        Command::Doctor(args) => with_config(&cli.global, env, |loaded| {
            doctor::run(&cli.global, args, loaded)
        }),
        Command::Status(args) => with_config(&cli.global, env, |loaded| {
            status::run(&cli.global, args, loaded)
        }),
        Command::Restart(args) => with_config(&cli.global, env, |loaded| {
            restart::run_restart(&cli.global, args, loaded)
        }),
        Command::Stop(args) => with_config(&cli.global, env, |loaded| {
            restart::run_stop(&cli.global, args, loaded)
        }),
        Command::Upgrade(args) => with_config(&cli.global, env, |loaded| {
            upgrade::run(&cli.global, args, loaded)
        }),
        Command::Send(args) => with_config(&cli.global, env, |loaded| {
            send::run(&cli.global, *args, loaded)
        }),
        Command::Session(args) => with_config(&cli.global, env, |loaded| {
            session::run(&cli.global, args, loaded)
        }),
        Command::Task(args) => with_config(&cli.global, env, |loaded| {
            task::run(&cli.global, args, loaded)
        }),
        Command::Worktree(args) => with_config(&cli.global, env, |loaded| {
            worktree::run(&cli.global, args, loaded)
        }),
        Command::Service(args) => with_config(&cli.global, env, |loaded| {
            service::run(&cli.global, args, loaded)
        }),
        Command::Project(args) => with_config(&cli.global, env, |loaded| {
            project::run(&cli.global, args, loaded)
        }),
        Command::UploadToDiscord(args) => with_config(&cli.global, env, |loaded| {
            upload::run(&cli.global, args, loaded)
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            if let Some(hint) = failure.hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(failure.code)
        }
    }
}

fn with_config(
    global: &GlobalArgs,
    env: Env,
    f: impl FnOnce(Loaded) -> Result<u8, output::Failure>,
) -> Result<u8, output::Failure> {
    let data_dir = DataDir::resolve(global.data_dir.as_deref())
        .map_err(|e| output::Failure::new(exit::CONFIG, e.to_string()))?;
    let loaded = Loaded::load(data_dir, env, &global.set)
        .map_err(|e| output::Failure::new(exit::CONFIG, e.to_string()))?;
    f(loaded)
}

/// A multi-threaded runtime sized for a small daemon.
fn runtime() -> Result<tokio::runtime::Runtime, output::Failure> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get().min(4))
        .unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .thread_name("kimaki")
        .build()
        .map_err(|e| {
            output::Failure::new(
                exit::FAILURE,
                format!("cannot start the async runtime: {e}"),
            )
        })
}
