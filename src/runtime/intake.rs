//! Turning a local request (`kimaki send`, the control socket, the local API) into a job: target
//! resolution, defaults from the settings, attachment copies. The daemon and the CLI (when no
//! daemon runs) share this, so both enqueue exactly the same job.

use std::path::{Path, PathBuf};

use crate::adapters::control::protocol::{SendReceipt, SendRequest, SendTarget};
use crate::adapters::discord::{self, DiscordSessions};
use crate::config::{keys, Settings};
use crate::core::{
    Attachment, EnqueueMode, Enqueued, JobQueue, JobSource, LaneId, NewJob, PermissionPolicy,
    QueueError, ReplyTo, RunnerId, WorkspaceError, Workspaces, WorktreeError, Worktrees,
};
use crate::store::StoreError;

/// Largest file `send --file` accepts.
const MAX_ATTACHMENT_BYTES: u64 = 25 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0} is not a registered project; add it with `kimaki project add {0}`")]
    NotAProject(String),
    #[error("no session {0}")]
    UnknownSession(String),
    #[error("session {0} belongs to another project")]
    SessionElsewhere(String),
    #[error("cannot attach {path}: {reason}")]
    Attachment { path: String, reason: String },
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Worktree(#[from] WorktreeError),
    #[error("session {0} keeps its directory; --worktree applies to a new or named session in a project")]
    WorktreeForSession(String),
    #[error(
        "Discord is not configured on this machine (set KIMAKI_BOT_TOKEN, e.g. with `kimaki init`)"
    )]
    DiscordOff,
    #[error("{0} is not a Discord channel id")]
    BadDiscordId(String),
    #[error("channel {0} is not a project channel of this machine; `kimaki project list` shows the projects, and kimaki creates their channels when it runs")]
    UnknownChannel(String),
    #[error("thread {0} is not a session thread of this machine")]
    UnknownThread(String),
    #[error("the Discord maps could not be read: {0}")]
    Store(#[from] StoreError),
}

impl SendError {
    /// A stable code for the control socket.
    pub fn code(&self) -> &'static str {
        match self {
            SendError::NotAProject(_) | SendError::UnknownSession(_) => "not_found",
            SendError::SessionElsewhere(_) => "bad_request",
            SendError::Attachment { .. } => "bad_request",
            SendError::Workspace(WorkspaceError::Escapes(_)) => "bad_request",
            SendError::Workspace(_) => "not_found",
            SendError::Queue(QueueError::ShuttingDown) => "unavailable",
            SendError::Queue(QueueError::EmptyPrompt) => "bad_request",
            SendError::Queue(_) => "internal",
            SendError::Worktree(WorktreeError::Git(_)) => "internal",
            SendError::Worktree(_) | SendError::WorktreeForSession(_) => "bad_request",
            SendError::DiscordOff | SendError::BadDiscordId(_) => "bad_request",
            SendError::UnknownChannel(_) | SendError::UnknownThread(_) => "not_found",
            SendError::Store(_) => "internal",
        }
    }
}

/// What a local request needs to resolve against.
pub struct Local<'a> {
    pub queue: &'a JobQueue,
    pub workspaces: &'a Workspaces,
    pub settings: &'a Settings,
    pub attachments_dir: &'a Path,
    /// Resolves `SendRequest::worktree` to a directory.
    pub worktrees: &'a dyn Worktrees,
}

/// Resolves, copies attachments, and enqueues. Durable when it returns.
pub async fn send(local: &Local<'_>, req: SendRequest) -> Result<SendReceipt, SendError> {
    let mode = if req.interrupt {
        EnqueueMode::Interrupt
    } else {
        EnqueueMode::Queue
    };
    let (new, _) = prepare(local, req).await?;
    let workspace = new.workspace.clone();
    let (discord_channel, discord_thread) = shown_in(new.reply_to.as_ref());
    let Enqueued {
        record, position, ..
    } = local.queue.enqueue(new, mode).await?;
    Ok(SendReceipt {
        job_id: record.job.id.to_string(),
        lane: record.job.lane.to_string(),
        workspace: workspace.display().to_string(),
        position,
        discord_channel,
        discord_thread,
    })
}

/// The job a request describes, not yet enqueued, and whether it starts a new session (so a
/// scheduled repetition should start a new one each time too).
pub async fn prepare(local: &Local<'_>, req: SendRequest) -> Result<(NewJob, bool), SendError> {
    let Local {
        queue,
        workspaces,
        settings,
        attachments_dir,
        worktrees,
    } = *local;
    let new_session = matches!(req.target, SendTarget::Project(_) | SendTarget::Channel(_));
    let discord = Discord::of(local, &req);
    let name = req.name.as_deref();
    let (lane, workspace, lane_runner, reply_to) = match &req.target {
        SendTarget::Project(key) => {
            let ws = workspaces
                .find(key)?
                .ok_or_else(|| SendError::NotAProject(key.clone()))?;
            let lane = LaneId::new(format!("cli:{}", ulid::Ulid::new()));
            let reply = discord.new_thread_for(&ws.path, name, &req.prompt)?;
            let dir = session_dir(worktrees, ws.path, req.worktree.as_deref()).await?;
            (lane, dir, None, reply)
        }
        SendTarget::Channel(id) => {
            let sessions = discord.sessions()?;
            let channel = sessions
                .channel(snowflake(id)?)?
                .ok_or_else(|| SendError::UnknownChannel(id.clone()))?;
            let key = channel.directory.display().to_string();
            let ws = workspaces
                .find(&key)?
                .ok_or_else(|| SendError::NotAProject(key.clone()))?;
            let lane = LaneId::new(format!("cli:{}", ulid::Ulid::new()));
            let reply = discord::reply_in_new_thread(&channel, name, &req.prompt);
            let dir = session_dir(worktrees, ws.path, req.worktree.as_deref()).await?;
            (lane, dir, None, Some(reply))
        }
        SendTarget::NamedSession { project, session } => {
            let ws = workspaces
                .find(project)?
                .ok_or_else(|| SendError::NotAProject(project.clone()))?;
            let lane = LaneId::new(session.clone());
            let reply = match discord.thread_for_lane(session)? {
                Some(r) => Some(r),
                None => discord.new_thread_for(&ws.path, name, &req.prompt)?,
            };
            let dir = session_dir(worktrees, ws.path, req.worktree.as_deref()).await?;
            match queue.lane(&lane)? {
                Some(record) if record.workspace != dir => {
                    return Err(SendError::SessionElsewhere(session.clone()))
                }
                Some(record) => (lane, dir, Some(record.runner), reply),
                None => (lane, dir, None, reply),
            }
        }
        SendTarget::Session(lane) | SendTarget::Thread(lane) if req.worktree.is_some() => {
            return Err(SendError::WorktreeForSession(lane.clone()))
        }
        SendTarget::Session(lane) => {
            let reply = discord.thread_for_lane(lane)?;
            let lane = LaneId::new(lane.clone());
            let record = queue
                .lane(&lane)?
                .ok_or_else(|| SendError::UnknownSession(lane.to_string()))?;
            (lane, record.workspace, Some(record.runner), reply)
        }
        SendTarget::Thread(id) => {
            let thread = discord
                .sessions()?
                .thread(snowflake(id)?)?
                .ok_or_else(|| SendError::UnknownThread(id.clone()))?;
            let lane = LaneId::new(thread.lane.clone());
            // The lane knows the directory the session runs in (a worktree, say); a thread
            // whose session never ran yet runs in its channel's project.
            let (dir, runner) = match queue.lane(&lane)? {
                Some(record) => (record.workspace, Some(record.runner)),
                None => (
                    thread
                        .directory
                        .clone()
                        .ok_or_else(|| SendError::UnknownThread(id.clone()))?,
                    None,
                ),
            };
            (lane, dir, runner, Some(discord::reply_in_thread(&thread)))
        }
    };
    let runner = req
        .runner
        .clone()
        .map(RunnerId::new)
        .or(lane_runner)
        .unwrap_or_else(|| RunnerId::new(settings.get(keys::RUNNER)));
    let model = req
        .model
        .clone()
        .or_else(|| Some(settings.get(keys::MODEL).to_owned()).filter(|m| !m.is_empty()));
    let agent = req
        .agent
        .clone()
        .or_else(|| Some(settings.get(keys::AGENT).to_owned()).filter(|a| !a.is_empty()));
    let attachments = copy_attachments(&req.files, attachments_dir)?;
    let new = NewJob {
        id: None,
        lane,
        source: req.source.unwrap_or(JobSource::Cli),
        workspace: workspace.clone(),
        runner,
        prompt: req.prompt,
        attachments,
        model,
        agent,
        permission_policy: PermissionPolicy::Ask,
        timeout_ms: None,
        reply_to,
        meta: Default::default(),
        held: false,
        voice: None,
        notify_only: req.notify_only,
    };
    Ok((new, new_session))
}

/// Which Discord thread shows a local request's session. Only when Discord is configured, and
/// only for requests from the command line and scheduled tasks (the local HTTP API answers its
/// own caller).
struct Discord {
    sessions: Option<DiscordSessions>,
}

impl Discord {
    fn of(local: &Local<'_>, req: &SendRequest) -> Self {
        let shown = matches!(
            req.source,
            None | Some(JobSource::Cli) | Some(JobSource::Scheduler)
        );
        let configured = local.settings.is_set(keys::BOT_TOKEN);
        Self {
            sessions: (configured && shown)
                .then(|| DiscordSessions::new(local.queue.store().clone())),
        }
    }

    /// For `--channel` / `--thread`, which mean nothing without Discord.
    fn sessions(&self) -> Result<&DiscordSessions, SendError> {
        self.sessions.as_ref().ok_or(SendError::DiscordOff)
    }

    /// A new thread in the project's channel, when the project has one.
    fn new_thread_for(
        &self,
        project: &Path,
        name: Option<&str>,
        prompt: &str,
    ) -> Result<Option<ReplyTo>, SendError> {
        let Some(s) = &self.sessions else {
            return Ok(None);
        };
        Ok(s.channel_for_directory(project)?
            .map(|c| discord::reply_in_new_thread(&c, name, prompt)))
    }

    /// The thread already showing `lane`, if any.
    fn thread_for_lane(&self, lane: &str) -> Result<Option<ReplyTo>, SendError> {
        let Some(s) = &self.sessions else {
            return Ok(None);
        };
        Ok(s.thread_for_lane(lane)?
            .map(|t| discord::reply_in_thread(&t)))
    }
}

fn snowflake(id: &str) -> Result<u64, SendError> {
    id.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| SendError::BadDiscordId(id.to_owned()))
}

/// `(channel, thread)` of a Discord reply address, for the receipt.
fn shown_in(reply: Option<&ReplyTo>) -> (Option<String>, Option<String>) {
    let Some(r) = reply.filter(|r| r.adapter == discord::ADAPTER) else {
        return (None, None);
    };
    let field = |k: &str| {
        r.address
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    (field("channel"), field("thread"))
}

/// The project's directory, or the same directory inside worktree `name` (created on first use,
/// so a project that is not a git repository is refused before anything is enqueued).
async fn session_dir(
    worktrees: &dyn Worktrees,
    project: PathBuf,
    worktree: Option<&str>,
) -> Result<PathBuf, SendError> {
    let Some(name) = worktree else {
        return Ok(project);
    };
    Ok(worktrees.open_or_create(&project, name).await?.workspace)
}

/// Copies files into the data dir so a queued job still has them if the originals move.
fn copy_attachments(files: &[PathBuf], dir: &Path) -> Result<Vec<Attachment>, SendError> {
    let mut out = Vec::new();
    if files.is_empty() {
        return Ok(out);
    }
    let batch = dir.join(ulid::Ulid::new().to_string());
    let err = |p: &Path, reason: String| SendError::Attachment {
        path: p.display().to_string(),
        reason,
    };
    for f in files {
        let meta = std::fs::metadata(f).map_err(|e| err(f, e.to_string()))?;
        if !meta.is_file() {
            return Err(err(f, "not a file".to_owned()));
        }
        if meta.len() > MAX_ATTACHMENT_BYTES {
            return Err(err(
                f,
                format!(
                    "{} bytes is over the {} MiB limit",
                    meta.len(),
                    MAX_ATTACHMENT_BYTES / 1024 / 1024
                ),
            ));
        }
        std::fs::create_dir_all(&batch).map_err(|e| err(&batch, e.to_string()))?;
        let filename = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned());
        let dest = batch.join(&filename);
        std::fs::copy(f, &dest).map_err(|e| err(f, e.to_string()))?;
        out.push(Attachment {
            path: dest,
            filename,
            mime: None,
        });
    }
    Ok(out)
}
