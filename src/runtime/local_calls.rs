//! The control socket's calls beyond status/shutdown, answered from the queue and the workspace
//! registry. The CLI uses the same functions directly on the store when no daemon runs.

use std::path::Path;

use tokio::sync::mpsc;

use super::intake::{self, Local, SendError};
use crate::adapters::control::protocol::{Call, CallError, SendRequest, SessionSummary};
use crate::core::tasks::{self, Task, TaskError, Tasks};
use crate::core::{CancelOutcome, CancelReason, JobId, JobQueue, QueueError, WorkspaceError};

/// Events buffered towards one `follow` client; a slower client makes the task wait, and the
/// task reads from the store, so nothing is lost.
const FOLLOW_BUFFER: usize = 256;

pub async fn handle(
    call: Call,
    local: &Local<'_>,
    tasks: &Tasks,
) -> Result<serde_json::Value, CallError> {
    let Local {
        queue, workspaces, ..
    } = *local;
    match call {
        Call::Send(req) => {
            let receipt = intake::send(local, req).await.map_err(send_error)?;
            to_json(&receipt)
        }
        Call::ScheduleTask {
            send,
            when,
            tz,
            allow_concurrency,
        } => to_json(&schedule(local, tasks, send, &when, tz.as_deref(), allow_concurrency).await?),
        Call::TaskList => to_json(&tasks.list().map_err(task_error)?),
        Call::SessionList { project } => to_json(&sessions(local, project.as_deref())?),
        Call::TaskDelete { id } => to_json(&tasks.delete(&id).await.map_err(task_error)?),
        Call::Cancel { job_id } => {
            let outcome = queue
                .cancel(&JobId::new(job_id), CancelReason::User)
                .await
                .map_err(queue_error)?;
            let word = match outcome {
                CancelOutcome::Dequeued => "dequeued",
                CancelOutcome::Stopping => "stopping",
                CancelOutcome::AlreadyFinished => "already_finished",
            };
            Ok(serde_json::json!({ "status": word }))
        }
        Call::ProjectAdd { path, name } => {
            let ws = workspaces
                .add(Path::new(&path), name.as_deref())
                .await
                .map_err(workspace_error)?;
            to_json(&ws)
        }
        Call::ProjectList => to_json(&workspaces.list().map_err(workspace_error)?),
        Call::ProjectRemove { key } => {
            to_json(&workspaces.remove(&key).await.map_err(workspace_error)?)
        }
        Call::Status
        | Call::Shutdown { .. }
        | Call::Follow { .. }
        | Call::Restart { .. }
        | Call::DumpState => Err(CallError::new(
            "bad_request",
            "this call is handled by the daemon itself",
        )),
    }
}

/// Sessions with their queue state; `project` filters by directory, name or id.
pub fn sessions(
    local: &Local<'_>,
    project: Option<&str>,
) -> Result<Vec<SessionSummary>, CallError> {
    let filter = match project {
        Some(key) => Some(
            local
                .workspaces
                .find(key)
                .map_err(workspace_error)?
                .ok_or_else(|| {
                    CallError::new("not_found", format!("{key} is not a registered project"))
                })?
                .path,
        ),
        None => None,
    };
    let threads = crate::adapters::discord::DiscordSessions::new(local.queue.store().clone());
    let mut out = Vec::new();
    for lane in local.queue.lanes().map_err(queue_error)? {
        if filter
            .as_ref()
            .is_some_and(|p| !lane.workspace.starts_with(p))
        {
            continue;
        }
        let queued = local
            .queue
            .queued_in_lane(&lane.lane)
            .map_err(queue_error)?
            .len();
        let running_job = local.queue.active_job(&lane.lane).map(|j| j.to_string());
        let state = if running_job.is_some() {
            "running"
        } else if queued > 0 {
            "queued"
        } else {
            "idle"
        };
        out.push(SessionSummary {
            session: lane.lane.to_string(),
            runner: lane.runner.to_string(),
            workspace: lane.workspace.display().to_string(),
            runner_session: lane.runner_session_id.clone(),
            state: state.to_owned(),
            queued,
            running_job,
            last_activity_at: lane.last_activity_at,
            discord_thread: threads
                .thread_for_lane(lane.lane.as_str())
                .ok()
                .flatten()
                .map(|t| t.thread.to_string())
                // A session started by a Discord message is named after its thread.
                .or_else(|| {
                    lane.lane
                        .as_str()
                        .strip_prefix("discord:")
                        .map(str::to_owned)
                }),
        });
    }
    Ok(out)
}

/// Stores a scheduled send; the job template is resolved now, like an immediate send.
pub async fn schedule(
    local: &Local<'_>,
    tasks: &Tasks,
    send: SendRequest,
    when: &str,
    tz: Option<&str>,
    allow_concurrency: bool,
) -> Result<Task, CallError> {
    let zone = tasks::parse_zone(tz.unwrap_or("local")).map_err(task_error)?;
    let now = crate::core::clock::now_ms();
    let schedule = tasks::parse_when(when, zone, now).map_err(task_error)?;
    let (template, new_session) = intake::prepare(local, send).await.map_err(send_error)?;
    tasks
        .add(schedule, template, new_session, allow_concurrency, now)
        .await
        .map_err(task_error)
}

fn task_error(e: TaskError) -> CallError {
    match e {
        TaskError::Store(_) => CallError::new("internal", e.to_string()),
        TaskError::Unknown(_) => CallError::new("not_found", e.to_string()),
        _ => CallError::new("bad_request", e.to_string()),
    }
}

/// A job's events after `after_seq`, from the store first, then live, ending with `Finished`.
pub fn follow(
    queue: &JobQueue,
    job: JobId,
    after_seq: u64,
) -> Result<mpsc::Receiver<serde_json::Value>, CallError> {
    if queue.get(&job).map_err(queue_error)?.is_none() {
        return Err(CallError::new("not_found", format!("no job {job}")));
    }
    let bus = queue.bus().clone();
    // Subscribe before reading the backlog, so nothing published in between is missed.
    let head = bus
        .head()
        .map_err(|e| CallError::new("internal", e.to_string()))?;
    let mut live = bus.subscribe(head);
    let backlog = bus
        .job_events(&job, after_seq)
        .map_err(|e| CallError::new("internal", e.to_string()))?;
    let (tx, rx) = mpsc::channel(FOLLOW_BUFFER);
    tokio::spawn(async move {
        let mut last = after_seq;
        for ev in backlog {
            last = ev.seq;
            let terminal = ev.kind.is_terminal();
            if send(&tx, &ev).await.is_err() || terminal {
                return;
            }
        }
        while let Some(stored) = live.next().await {
            let ev = &stored.event;
            if ev.job_id != job || ev.seq <= last {
                continue;
            }
            last = ev.seq;
            if send(&tx, ev).await.is_err() || ev.kind.is_terminal() {
                return;
            }
        }
    });
    Ok(rx)
}

async fn send(tx: &mpsc::Sender<serde_json::Value>, ev: &crate::core::JobEvent) -> Result<(), ()> {
    let value = serde_json::to_value(ev).map_err(|_| ())?;
    tx.send(value).await.map_err(|_| ())
}

fn to_json(v: &impl serde::Serialize) -> Result<serde_json::Value, CallError> {
    serde_json::to_value(v).map_err(|e| CallError::new("internal", e.to_string()))
}

pub fn send_error(e: SendError) -> CallError {
    CallError::new(e.code(), e.to_string())
}

fn queue_error(e: QueueError) -> CallError {
    match e {
        QueueError::UnknownJob(_) | QueueError::UnknownRequest(_) => {
            CallError::new("not_found", e.to_string())
        }
        QueueError::ShuttingDown => CallError::new("unavailable", e.to_string()),
        _ => CallError::new("internal", e.to_string()),
    }
}

fn workspace_error(e: WorkspaceError) -> CallError {
    match e {
        WorkspaceError::Store(_) => CallError::new("internal", e.to_string()),
        WorkspaceError::Unknown(_) => CallError::new("not_found", e.to_string()),
        _ => CallError::new("bad_request", e.to_string()),
    }
}
