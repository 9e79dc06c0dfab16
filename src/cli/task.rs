//! `kimaki task list|delete`: scheduled sends (created with `kimaki send --send-at`).

use clap::{Args, Subcommand};

use super::backend::{control_failure, Backend};
use super::output::{exit, print_json, Failure};
use super::GlobalArgs;
use crate::adapters::control::Call;
use crate::config::Loaded;
use crate::core::clock::rfc3339;
use crate::core::tasks::{Schedule, Task, TaskError};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kimaki send --project api --prompt \"Review open PRs\" --send-at 2026-03-01T09:00:00Z
  kimaki send --project api --prompt \"Weekly test run\" --send-at \"0 9 * * 1\" --tz +01:00
  kimaki task list
  kimaki task delete task_01JD…")]
pub struct TaskArgs {
    #[command(subcommand)]
    pub command: TaskCommand,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List scheduled tasks by next run.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a scheduled task.
    Delete {
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(_global: &GlobalArgs, args: TaskArgs, loaded: Loaded) -> Result<u8, Failure> {
    let rt = super::runtime()?;
    rt.block_on(async move {
        let backend = Backend::connect(&loaded).await?;
        match args.command {
            TaskCommand::List { json } => {
                let tasks: Vec<Task> = match &backend {
                    Backend::Daemon(c) => c.call(Call::TaskList).await.map_err(control_failure)?,
                    Backend::Direct(d) => d.tasks.list().map_err(task_failure)?,
                };
                if json {
                    print_json(&tasks)?;
                } else if tasks.is_empty() {
                    println!("No scheduled tasks. Create one with `kimaki send --send-at …`.");
                } else {
                    for t in &tasks {
                        let when = match &t.schedule {
                            Schedule::At { at_ms } => format!("once at {}", rfc3339(*at_ms)),
                            Schedule::Cron { expr, tz } => format!("cron \"{expr}\" ({tz})"),
                        };
                        let next = t.next_due_ms.map(rfc3339).unwrap_or_else(|| "-".to_owned());
                        let prompt: String = t.template.prompt.chars().take(50).collect();
                        println!(
                            "{}  next {next}  {when}  fired {}×  {prompt}",
                            t.id, t.fired
                        );
                    }
                }
            }
            TaskCommand::Delete { id, json } => {
                let task: Task = match &backend {
                    Backend::Daemon(c) => c
                        .call(Call::TaskDelete { id: id.clone() })
                        .await
                        .map_err(control_failure)?,
                    Backend::Direct(d) => d.tasks.delete(&id).await.map_err(task_failure)?,
                };
                if json {
                    print_json(&task)?;
                } else {
                    println!("Deleted {}.", task.id);
                }
            }
        }
        Ok(exit::OK)
    })
}

fn task_failure(e: TaskError) -> Failure {
    match e {
        TaskError::Store(_) => Failure::new(exit::DATA, e.to_string()),
        _ => Failure::new(exit::USAGE, e.to_string()),
    }
}
