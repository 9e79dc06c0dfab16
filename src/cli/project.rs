//! `kimaki project add|list|remove`: the directories kimaki may work in.

use clap::{Args, Subcommand};

use super::backend::{control_failure, Backend};
use super::output::{exit, print_json, Failure};
use super::GlobalArgs;
use crate::adapters::control::Call;
use crate::config::Loaded;
use crate::core::{Workspace, WorkspaceError};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kimaki project add ~/code/api                 register a directory (advertised to the mesh)
  kimaki project add . --name website
  kimaki project list --json
  kimaki project remove website                 forget it (files are untouched)")]
pub struct ProjectArgs {
    #[command(subcommand)]
    pub command: ProjectCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Register a project directory.
    Add {
        /// The directory (default: the current one).
        #[arg(default_value = ".")]
        dir: std::path::PathBuf,
        /// Display name (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List registered projects.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a project (by id, name or directory); its files are untouched.
    Remove {
        key: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(_global: &GlobalArgs, args: ProjectArgs, loaded: Loaded) -> Result<u8, Failure> {
    let rt = super::runtime()?;
    rt.block_on(async move {
        let backend = Backend::connect(&loaded).await?;
        match args.command {
            ProjectCommand::Add { dir, name, json } => {
                let dir = std::path::absolute(&dir).unwrap_or(dir);
                let ws: Workspace = match &backend {
                    Backend::Daemon(c) => c
                        .call(Call::ProjectAdd {
                            path: dir.display().to_string(),
                            name: name.clone(),
                        })
                        .await
                        .map_err(control_failure)?,
                    Backend::Direct(d) => d
                        .workspaces
                        .add(&dir, name.as_deref())
                        .await
                        .map_err(workspace_failure)?,
                };
                if json {
                    print_json(&ws)?;
                } else {
                    println!("Project {} ({}) → {}", ws.name, ws.id, ws.path.display());
                }
            }
            ProjectCommand::List { json } => {
                let all: Vec<Workspace> = match &backend {
                    Backend::Daemon(c) => {
                        c.call(Call::ProjectList).await.map_err(control_failure)?
                    }
                    Backend::Direct(d) => d.workspaces.list().map_err(workspace_failure)?,
                };
                if json {
                    print_json(&all)?;
                } else if all.is_empty() {
                    println!("No projects yet. Add one with `kimaki project add DIR`.");
                } else {
                    for ws in all {
                        println!("{:<24} {:<30} {}", ws.name, ws.id, ws.path.display());
                    }
                }
            }
            ProjectCommand::Remove { key, json } => {
                let ws: Workspace = match &backend {
                    Backend::Daemon(c) => c
                        .call(Call::ProjectRemove { key: key.clone() })
                        .await
                        .map_err(control_failure)?,
                    Backend::Direct(d) => {
                        d.workspaces.remove(&key).await.map_err(workspace_failure)?
                    }
                };
                if json {
                    print_json(&ws)?;
                } else {
                    println!(
                        "Removed project {} ({}); {} is untouched.",
                        ws.name,
                        ws.id,
                        ws.path.display()
                    );
                }
            }
        }
        Ok(exit::OK)
    })
}

fn workspace_failure(e: WorkspaceError) -> Failure {
    match e {
        WorkspaceError::Store(_) => Failure::new(exit::DATA, e.to_string()),
        _ => Failure::new(exit::USAGE, e.to_string()),
    }
}
