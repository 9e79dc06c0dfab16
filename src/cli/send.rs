//! `kimaki send`: enqueue a prompt straight into the shared queue (through the control socket, or
//! into the store when kimaki is not running, to be picked up at start). `--wait` streams the
//! result and exits non-zero unless the job succeeded, so CI jobs can use it.

use std::collections::HashSet;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::backend::{control_failure, Backend};
use super::output::{exit, print_json, Failure};
use super::GlobalArgs;
use crate::adapters::control::protocol::{SendReceipt, SendRequest, SendTarget};
use crate::adapters::control::{Call, ControlClient, ControlError};
use crate::adapters::git::GitWorktrees;
use crate::config::Loaded;
use crate::core::events::{Outcome, TextStream};
use crate::core::tasks::Task;
use crate::core::{EventKind, JobEvent};
use crate::runtime::intake;

/// How often `--wait` looks for a kimaki that is not running (yet).
const WAIT_RETRY: Duration = Duration::from_secs(1);
/// How long `send` waits for Discord to confirm a new session's thread, to print its id.
const THREAD_WAIT: Duration = Duration::from_secs(10);
const THREAD_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  kimaki send --project ~/code/api --prompt \"Fix the failing test in auth.rs\"
  kimaki send --channel 1234567890 --prompt \"Investigate issue #42\"   a new thread in that channel
  kimaki send --thread 1234567891 --prompt \"Now add a test\"          continue that thread's session
  kimaki send --project api --prompt - < task.md --wait          prompt from stdin; wait for the result
  kimaki send --session cli:01JD… --prompt \"Now add a test\"        continue that session
  kimaki send --project api --prompt \"Summarize\" --wait --json   events as JSON lines
  kimaki send --project api --prompt \"Add login\" --worktree login   in ../.worktrees/login, branch opencode/login
  kimaki send --channel 1234567890 --prompt \"User cancelled subscription\" --notify-only
                                  a thread to read now; a reply in it starts a session with it

When Discord is configured, a session is shown there: a new session in a new thread of its
project's channel (the bot posts the prompt and the thread takes its name from it, or from
--name), a continued one in its thread. The prompt goes straight into the queue, never through
Discord.

Exit status with --wait: 0 when the job succeeded, 1 otherwise. Without --wait the job is queued
and the command returns at once (also when kimaki is not running: it runs at the next start).")]
pub struct SendArgs {
    /// A registered project (its directory, name or id): starts a new session there.
    #[arg(
        long,
        required_unless_present_any = ["session", "channel", "thread"],
        conflicts_with_all = ["session", "channel", "thread"]
    )]
    pub project: Option<String>,
    /// A project's Discord channel (its id): starts a new session in a new thread there.
    #[arg(long, value_name = "ID", conflicts_with_all = ["session", "thread"])]
    pub channel: Option<String>,
    /// A Discord thread (its id): continues that thread's session.
    #[arg(long, value_name = "ID", conflicts_with_all = ["session", "worktree", "name"])]
    pub thread: Option<String>,
    /// Continue an existing session (the one a previous `send` printed).
    #[arg(long, conflicts_with = "name")]
    pub session: Option<String>,
    /// The name of the Discord thread a new session opens (default: the prompt's start).
    #[arg(long)]
    pub name: Option<String>,
    /// The prompt; `-` reads it from stdin.
    #[arg(short, long)]
    pub prompt: String,
    /// Attach a file (repeatable); it is copied, so it may change afterwards.
    #[arg(long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Runner for this prompt (default: the session's, else KIMAKI_RUNNER).
    #[arg(long)]
    pub runner: Option<String>,
    /// Model for this prompt.
    #[arg(long)]
    pub model: Option<String>,
    /// Agent for this prompt.
    #[arg(long)]
    pub agent: Option<String>,
    /// Work in the git worktree NAME of the project (branch opencode/NAME, directory
    /// ../.worktrees/NAME next to it): created from HEAD on first use, reused afterwards; any
    /// existing worktree of that name works too. See `kimaki worktree`.
    #[arg(long, value_name = "NAME", conflicts_with = "session")]
    pub worktree: Option<String>,
    /// Stop the session's running job and run this one next (default: queue behind it).
    #[arg(long)]
    pub interrupt: bool,
    /// Post the prompt as a notification: shown in Discord (a new thread, or the session's), and
    /// given to the session's next prompt as context, but no agent runs now. Reply in the thread
    /// (or send again) to start one.
    #[arg(long, conflicts_with_all = ["wait", "interrupt"])]
    pub notify_only: bool,
    /// Stream the result; exit 0 only if the job succeeded.
    #[arg(long)]
    pub wait: bool,
    /// With --wait, give up waiting after this many seconds (the job itself keeps going).
    #[arg(long, value_name = "SECS", requires = "wait")]
    pub timeout: Option<u64>,
    /// Print JSON (with --wait: one event per line).
    #[arg(long)]
    pub json: bool,
    /// Send later instead: an ISO-8601 UTC time (2026-03-01T09:00:00Z) once, or a cron
    /// expression ("0 9 * * 1") repeatedly. Manage with `kimaki task`.
    #[arg(long, value_name = "WHEN", conflicts_with_all = ["wait", "interrupt"])]
    pub send_at: Option<String>,
    /// Time zone of a cron --send-at: local (default), UTC, or an offset like +02:00.
    #[arg(long, value_name = "ZONE", requires = "send_at")]
    pub tz: Option<String>,
    /// With --send-at: run each occurrence even if the previous one is still running (by default
    /// that occurrence is skipped).
    #[arg(long, requires = "send_at")]
    pub allow_concurrency: bool,
}

pub fn run(_global: &GlobalArgs, args: SendArgs, loaded: Loaded) -> Result<u8, Failure> {
    let prompt = if args.prompt == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| {
            Failure::new(
                exit::USAGE,
                format!("cannot read the prompt from stdin: {e}"),
            )
        })?;
        s
    } else {
        args.prompt.clone()
    };
    let target = match (&args.project, &args.channel, &args.thread, &args.session) {
        (Some(p), ..) => SendTarget::Project(absolute_if_path(p)),
        (None, Some(c), ..) => SendTarget::Channel(c.clone()),
        (None, None, Some(t), _) => SendTarget::Thread(t.clone()),
        (None, None, None, Some(s)) => SendTarget::Session(s.clone()),
        (None, None, None, None) => {
            return Err(Failure::new(
                exit::USAGE,
                "give --project, --channel, --thread or --session",
            ))
        }
    };
    let mut files = Vec::new();
    for f in &args.files {
        files.push(
            std::path::absolute(f)
                .map_err(|e| Failure::new(exit::USAGE, format!("{}: {e}", f.display())))?,
        );
    }
    let req = SendRequest {
        target,
        prompt,
        files,
        runner: args.runner.clone(),
        model: args.model.clone(),
        agent: args.agent.clone(),
        interrupt: args.interrupt,
        source: None,
        worktree: args.worktree.clone(),
        name: args.name.clone(),
        notify_only: args.notify_only,
    };
    let rt = super::runtime()?;
    if let Some(when) = args.send_at.clone() {
        return rt.block_on(schedule(
            &loaded,
            req,
            when,
            args.tz.clone(),
            args.allow_concurrency,
            args.json,
        ));
    }
    rt.block_on(async move {
        let receipt = {
            let backend = Backend::connect(&loaded).await?;
            match &backend {
                Backend::Daemon(c) => {
                    let mut receipt = c
                        .call::<SendReceipt>(Call::Send(req))
                        .await
                        .map_err(control_failure)?;
                    if !args.wait
                        && receipt.discord_thread.is_none()
                        && receipt.discord_channel.is_some()
                    {
                        receipt.discord_thread = opened_thread(c, &receipt.lane).await;
                    }
                    receipt
                }
                Backend::Direct(d) => {
                    let attachments = loaded.data_dir.attachments_dir();
                    let local = intake::Local {
                        queue: &d.queue,
                        workspaces: &d.workspaces,
                        settings: &loaded.settings,
                        attachments_dir: &attachments,
                        worktrees: &GitWorktrees::new(),
                    };
                    intake::send(&local, req)
                        .await
                        .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?
                }
            }
            // The backend (and with it any lock on the store) is released here, before waiting.
        };
        if !args.wait {
            if args.json {
                print_json(&receipt)?;
            } else {
                if args.notify_only {
                    println!(
                        "Posted notification {} in session {} (no agent runs until the next prompt).",
                        receipt.job_id, receipt.lane
                    );
                } else {
                    let when = if receipt.position == 0 {
                        "it runs now".to_owned()
                    } else {
                        format!("{} ahead of it", receipt.position)
                    };
                    println!(
                        "Queued {} in session {} ({when}).",
                        receipt.job_id, receipt.lane
                    );
                }
                if args.worktree.is_some() {
                    println!("It works in {}.", receipt.workspace);
                }
                match (&receipt.discord_thread, &receipt.discord_channel) {
                    (Some(t), _) => println!("Shown in Discord thread {t}."),
                    (None, Some(c)) => {
                        println!("Shown in Discord in a new thread of channel {c}.")
                    }
                    (None, None) => {}
                }
                println!(
                    "Continue this session: kimaki send --session {} --prompt …",
                    receipt.lane
                );
            }
            return Ok(exit::OK);
        }
        if !args.json {
            eprintln!(
                "Job {} in session {} ({})",
                receipt.job_id, receipt.lane, receipt.workspace
            );
        }
        wait_for(
            &loaded,
            &receipt,
            args.json,
            args.timeout.map(Duration::from_secs),
        )
        .await
    })
}

async fn schedule(
    loaded: &Loaded,
    req: SendRequest,
    when: String,
    tz: Option<String>,
    allow_concurrency: bool,
    json: bool,
) -> Result<u8, Failure> {
    let backend = Backend::connect(loaded).await?;
    let task: Task = match &backend {
        Backend::Daemon(c) => c
            .call(Call::ScheduleTask {
                send: req,
                when,
                tz,
                allow_concurrency,
            })
            .await
            .map_err(control_failure)?,
        Backend::Direct(d) => {
            let attachments = loaded.data_dir.attachments_dir();
            let local = intake::Local {
                queue: &d.queue,
                workspaces: &d.workspaces,
                settings: &loaded.settings,
                attachments_dir: &attachments,
                worktrees: &GitWorktrees::new(),
            };
            crate::runtime::local_calls::schedule(
                &local,
                &d.tasks,
                req,
                &when,
                tz.as_deref(),
                allow_concurrency,
            )
            .await
            .map_err(|e| Failure::new(exit::USAGE, e.message))?
        }
    };
    if json {
        print_json(&task)?;
    } else {
        let next = task
            .next_due_ms
            .map(crate::core::clock::rfc3339)
            .unwrap_or_else(|| "never".to_owned());
        println!("Scheduled {} — next run {next}.", task.id);
        println!(
            "List with `kimaki task list`, remove with `kimaki task delete {}`.",
            task.id
        );
    }
    Ok(exit::OK)
}

/// `--project .` means the current directory; names and ids pass through.
fn absolute_if_path(p: &str) -> String {
    let path = std::path::Path::new(p);
    if path.exists() {
        if let Ok(abs) = std::fs::canonicalize(path) {
            return abs.display().to_string();
        }
    }
    p.to_owned()
}

/// Follows the job until it finishes, reconnecting (and waiting for kimaki to start) as needed;
/// the per-job sequence number makes the stream resumable without repeats.
/// The thread the running kimaki opens for a new session, once Discord confirmed it (CI jobs
/// link to it). `None` after `THREAD_WAIT`: it is still shown, the receipt just cannot name it.
async fn opened_thread(client: &ControlClient, lane: &str) -> Option<String> {
    let deadline = Instant::now() + THREAD_WAIT;
    while Instant::now() < deadline {
        let sessions = client
            .call::<Vec<crate::adapters::control::protocol::SessionSummary>>(Call::SessionList {
                project: None,
            })
            .await
            .ok()?;
        if let Some(t) = sessions
            .into_iter()
            .find(|s| s.session == lane)
            .and_then(|s| s.discord_thread)
        {
            return Some(t);
        }
        tokio::time::sleep(THREAD_POLL).await;
    }
    None
}

async fn wait_for(
    loaded: &Loaded,
    receipt: &SendReceipt,
    json: bool,
    limit: Option<Duration>,
) -> Result<u8, Failure> {
    let started = Instant::now();
    let mut render = Render::new(json);
    let mut announced = false;
    loop {
        let client = ControlClient::new(&loaded.data_dir.socket(), super::backend::CALL_TIMEOUT);
        let call = Call::Follow {
            job_id: receipt.job_id.clone(),
            after_seq: render.last_seq,
        };
        match client.call_stream(call, |v| render.event(v)).await {
            Ok(_) if render.finished.is_some() => break,
            // The daemon stopped before the job finished: wait for it to come back.
            Ok(_)
            | Err(ControlError::NotRunning(_))
            | Err(ControlError::Io { .. })
            | Err(ControlError::Timeout(_)) => {
                if !announced && !json {
                    eprintln!("Waiting for kimaki to run the job (start it with `kimaki start`)…");
                    announced = true;
                }
            }
            Err(ControlError::Refused { code, message }) if code == "unavailable" => {
                let _ = message;
            }
            Err(e) => return Err(control_failure(e)),
        }
        if limit.is_some_and(|l| started.elapsed() >= l) {
            return Err(Failure::new(
                exit::FAILURE,
                format!(
                    "gave up waiting after {}s; job {} keeps its place",
                    started.elapsed().as_secs(),
                    receipt.job_id
                ),
            ));
        }
        tokio::time::sleep(WAIT_RETRY).await;
    }
    render.finish();
    match render.finished {
        Some((Outcome::Succeeded, _)) => Ok(exit::OK),
        Some((outcome, reason)) => {
            if !json {
                eprintln!(
                    "Job {} ended {:?}: {}",
                    receipt.job_id,
                    outcome,
                    reason.unwrap_or_default()
                );
            }
            Ok(exit::FAILURE)
        }
        None => Ok(exit::FAILURE),
    }
}

/// Prints a job's events: assistant text to stdout as it streams, everything else to stderr.
struct Render {
    json: bool,
    last_seq: u64,
    streamed: HashSet<String>,
    finished: Option<(Outcome, Option<String>)>,
    ends_with_newline: bool,
}

impl Render {
    fn new(json: bool) -> Self {
        Self {
            json,
            last_seq: 0,
            streamed: HashSet::new(),
            finished: None,
            ends_with_newline: true,
        }
    }

    fn event(&mut self, value: serde_json::Value) {
        let Ok(ev) = serde_json::from_value::<JobEvent>(value.clone()) else {
            return;
        };
        if ev.seq <= self.last_seq {
            return;
        }
        self.last_seq = ev.seq;
        if let EventKind::Finished {
            outcome, reason, ..
        } = &ev.kind
        {
            self.finished = Some((*outcome, reason.clone()));
        }
        if self.json {
            println!("{value}");
            return;
        }
        let mut out = std::io::stdout().lock();
        match &ev.kind {
            EventKind::TextDelta {
                part_id,
                stream: TextStream::Assistant,
                delta,
            } => {
                self.streamed.insert(part_id.clone());
                let _ = write!(out, "{delta}");
                self.ends_with_newline = delta.ends_with('\n');
            }
            EventKind::TextPart {
                part_id,
                stream: TextStream::Assistant,
                text,
            } => {
                if !self.streamed.contains(part_id) {
                    let _ = writeln!(out, "{text}");
                    self.ends_with_newline = true;
                } else if !self.ends_with_newline {
                    let _ = writeln!(out);
                    self.ends_with_newline = true;
                }
            }
            EventKind::ToolStarted { name, .. } if std::io::stderr().is_terminal() => {
                eprintln!("┣ {name}");
            }
            EventKind::PermissionRequested { tool, title, .. } => {
                eprintln!(
                    "⚠ permission required: {} — answer it in Discord (it stays pending)",
                    title.clone().unwrap_or_else(|| tool.clone())
                );
            }
            EventKind::Status { message, .. } => eprintln!("⬦ {message}"),
            _ => {}
        }
        let _ = out.flush();
    }

    fn finish(&mut self) {
        if !self.json && !self.ends_with_newline {
            println!();
        }
    }
}
