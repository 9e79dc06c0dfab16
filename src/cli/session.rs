//! `kimaki session list`: every conversation kimaki keeps (Discord threads, CLI and mesh
//! sessions), with its runner session and state.

use clap::{Args, Subcommand};

use super::backend::{control_failure, Backend};
use super::output::{exit, human_duration, print_json, Failure};
use super::GlobalArgs;
use crate::adapters::control::protocol::SessionSummary;
use crate::adapters::control::Call;
use crate::config::Loaded;
use crate::runtime::{intake, local_calls};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kimaki session list
  kimaki session list --project api --json
  kimaki send --session cli:01JD… --prompt \"continue\"      continue one of them")]
pub struct SessionArgs {
    #[command(subcommand)]
    pub command: SessionCommand,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List sessions, most recently active first.
    List {
        /// Only sessions of this project (directory, name or id).
        #[arg(long)]
        project: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(_global: &GlobalArgs, args: SessionArgs, loaded: Loaded) -> Result<u8, Failure> {
    let SessionCommand::List { project, json } = args.command;
    let project = project.map(|p| {
        std::fs::canonicalize(&p)
            .map(|abs| abs.display().to_string())
            .unwrap_or(p)
    });
    let rt = super::runtime()?;
    rt.block_on(async move {
        let backend = Backend::connect(&loaded).await?;
        let sessions: Vec<SessionSummary> = match &backend {
            Backend::Daemon(c) => c
                .call(Call::SessionList { project })
                .await
                .map_err(control_failure)?,
            Backend::Direct(d) => {
                let attachments = loaded.data_dir.attachments_dir();
                let local = intake::Local {
                    queue: &d.queue,
                    workspaces: &d.workspaces,
                    settings: &loaded.settings,
                    attachments_dir: &attachments,
                    worktrees: &crate::adapters::git::GitWorktrees::new(),
                };
                local_calls::sessions(&local, project.as_deref())
                    .map_err(|e| Failure::new(exit::USAGE, e.message))?
            }
        };
        if json {
            print_json(&sessions)?;
        } else if sessions.is_empty() {
            println!("No sessions yet.");
        } else {
            let now = crate::core::clock::now_ms();
            for s in &sessions {
                let ago = u64::try_from((now - s.last_activity_at) / 1000).unwrap_or(0);
                println!(
                    "{:<44} {:<8} {:<8} {:>2} queued  {} ago  {}",
                    s.session,
                    s.runner,
                    s.state,
                    s.queued,
                    human_duration(ago),
                    s.runner_session.as_deref().unwrap_or("-")
                );
                if let Some(t) = &s.discord_thread {
                    println!("    shown in Discord thread {t}");
                }
            }
        }
        Ok(exit::OK)
    })
}
