//! Job control from the coordinator, applying the agent rules of mesh-protocol §8:
//! dedup on `(jobId, leaseId)` → validate → write ahead (a held job in the queue plus the job
//! record and `started` in the outbox, flushed) → `job.ack accepted` → release to the queue only
//! once `started` is acknowledged. Cancels go through the queue's cancel (its grace then kills);
//! inputs through `JobQueue::answer`. A started job is never re-run.

use mesh_protocol::{
    AckDecision, AgentMessage, AuthRotateParams, AuthRotateResponse, CancelStatus, ErrorCode,
    InputStatus, JobAckResponse, JobCancelParams, JobCancelResponse, JobDispatchParams,
    JobEventsAckResponse, JobInputParams, JobInputResponse, JobOutcome, PendingCancel,
    ResumeAction, ResumeDirective, StartedData, WireError,
};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::map;
use super::outbox::{MeshJob, MeshStore, Phase};
use super::session::{new_msg_id, resume_action_name, Agent, LinkEnd, Live};
use super::{MeshError, COMPONENT};
use crate::core::workspaces::resolve_inside;
use crate::core::{
    clock, AnswerOutcome, CancelOutcome, CancelReason, EnqueueMode, JobId, JobSource, LaneId,
    NewJob, QueueError, ReplyTo,
};
use crate::store::Batch;

/// `spec.args` key naming a workspace-relative directory to work in.
const ARG_CWD: &str = "cwd";

/// Why a dispatch is refused, as the `job.ack` `error`.
fn rejection(code: ErrorCode, message: impl Into<String>, retryable: bool) -> WireError {
    WireError::new(code, message, retryable)
}

impl Agent {
    pub(super) async fn on_dispatch(
        &mut self,
        live: &mut Live,
        d: JobDispatchParams,
    ) -> Result<(), LinkEnd> {
        let started = Instant::now();
        let reply = |decision, state, last_seq, error| {
            AgentMessage::from(JobAckResponse {
                msg_id: new_msg_id(),
                re: d.msg_id.clone(),
                job_id: d.job_id.clone(),
                lease_id: d.lease_id.clone(),
                decision,
                state,
                last_seq,
                error,
            })
        };
        let job_id = d.job_id.to_string();
        // Rule 1: dedup on the persisted (jobId, leaseId).
        if let Some(existing) = self.jobs.get(&job_id) {
            if existing.lease_id == d.lease_id.as_str() {
                let message = reply(
                    AckDecision::Duplicate,
                    Some(existing.wire_state()),
                    Some(existing.last_seq()),
                    None,
                );
                live.send(message).await?;
                return Ok(());
            }
            if !self.replaceable(existing) {
                let error = rejection(
                    ErrorCode::LeaseConflict,
                    format!(
                        "job {job_id} already ran (or is running) here under lease {}",
                        existing.lease_id
                    ),
                    false,
                );
                live.send(reply(AckDecision::Rejected, None, None, Some(error)))
                    .await?;
                return Ok(());
            }
        }
        let message = match self.accept(&d, live).await {
            Ok(()) => reply(AckDecision::Accepted, None, None, None),
            Err(error) => {
                tracing::info!(job_id = %job_id, code = %error.code, reason = %error.message, "Mesh dispatch rejected.");
                reply(AckDecision::Rejected, None, None, Some(error))
            }
        };
        let accepted =
            matches!(&message, AgentMessage::JobAck(a) if a.decision == AckDecision::Accepted);
        live.send(message).await?;
        if accepted {
            tracing::info!(job_id = %job_id, lease_id = %d.lease_id, elapsed_us = started.elapsed().as_micros() as u64, "Mesh job accepted.");
            self.pump(live, &job_id).await?;
        }
        Ok(())
    }

    /// Same job, new lease: allowed only while it has not been released to the queue.
    fn replaceable(&self, existing: &MeshJob) -> bool {
        if existing.released || existing.phase != Phase::Accepted {
            return false;
        }
        match self.deps.queue.get(&JobId::new(existing.job_id.clone())) {
            Ok(Some(record)) => record.held && !record.state.is_terminal(),
            _ => false,
        }
    }

    /// Rules 2–4: validate, write ahead, put `started` in the outbox. `Err` is the rejection.
    async fn accept(&mut self, d: &JobDispatchParams, live: &Live) -> Result<(), WireError> {
        let job_id = d.job_id.to_string();
        let replacing = self.jobs.contains_key(&job_id);
        if self.shutting_down || !self.deps.queue.is_accepting() {
            return Err(rejection(
                ErrorCode::CapacityExceeded,
                "this agent is shutting down",
                true,
            ));
        }
        let spec = &d.spec;
        let workspace = self
            .deps
            .workspaces
            .get(spec.workspace_id.as_str())
            .map_err(|e| rejection(ErrorCode::Internal, e.to_string(), true))?
            .ok_or_else(|| {
                rejection(
                    ErrorCode::WorkspaceUnknown,
                    format!("no workspace `{}` on this agent", spec.workspace_id),
                    false,
                )
            })?;
        let runner_id = map::runner_from_wire(&spec.runner).ok_or_else(|| {
            rejection(
                ErrorCode::RunnerUnavailable,
                format!("no runner `{}` on this agent", spec.runner),
                false,
            )
        })?;
        if self.deps.runners.get(&runner_id).is_none() {
            return Err(rejection(
                ErrorCode::RunnerUnavailable,
                format!("no runner `{}` on this agent", spec.runner),
                false,
            ));
        }
        let info = self.runner_infos.get(&runner_id).cloned();
        if let Some(info) = info.as_ref().filter(|i| !i.available) {
            return Err(rejection(
                ErrorCode::RunnerUnavailable,
                format!(
                    "runner `{}` is unavailable: {}",
                    spec.runner,
                    info.reason.as_deref().unwrap_or("not installed")
                ),
                true,
            ));
        }
        let mut cwd = workspace.path.clone();
        if let Some(arg) = spec.args.as_ref().and_then(|a| a.get(ARG_CWD)) {
            let Some(relative) = arg.as_str() else {
                return Err(bad_path("`spec.args.cwd` must be a string"));
            };
            cwd = resolve_inside(&workspace.path, relative).map_err(|e| bad_path(e.to_string()))?;
        }
        if !replacing && self.active_jobs() >= self.cfg.max_concurrent_jobs {
            return Err(rejection(
                ErrorCode::CapacityExceeded,
                format!(
                    "this agent already runs {} job(s), its limit",
                    self.cfg.max_concurrent_jobs
                ),
                true,
            ));
        }

        // Write-ahead, part 1: the held job is durable when `enqueue` returns.
        let lane = self.lane_for(d);
        let interactive = map::has_feature(&live.features, mesh_protocol::features::INTERACTIVE);
        let mut meta = serde_json::Map::new();
        meta.insert("meshAttempt".into(), json!(d.attempt));
        if let Some(surfaces) = spec.mirror.as_ref().filter(|m| !m.is_empty()) {
            // Passed on as asked: whichever local surface is named decides how to show it.
            meta.insert("mirror".into(), json!(surfaces));
        }
        let new = NewJob {
            id: Some(JobId::new(job_id.clone())),
            lane: LaneId::new(lane),
            source: JobSource::Mesh,
            workspace: cwd,
            runner: runner_id.clone(),
            prompt: spec.prompt.clone(),
            attachments: Vec::new(),
            model: spec.model.clone(),
            agent: None,
            permission_policy: map::permission_policy(spec.permission_policy, interactive),
            timeout_ms: spec.timeout_ms,
            reply_to: Some(ReplyTo {
                adapter: COMPONENT.to_owned(),
                address: json!({ "jobId": job_id, "leaseId": d.lease_id.as_str() }),
            }),
            meta,
            held: true,
            voice: None,
            notify_only: false,
        };
        match self.deps.queue.enqueue(new, EnqueueMode::Queue).await {
            Ok(_) => {}
            Err(QueueError::EmptyPrompt) => {
                return Err(rejection(
                    ErrorCode::BadRequest,
                    "the prompt is empty",
                    false,
                ))
            }
            Err(QueueError::WorkspaceMissing(_)) => {
                return Err(rejection(
                    ErrorCode::WorkspaceUnknown,
                    format!(
                        "workspace `{}` is registered but its directory is gone",
                        spec.workspace_id
                    ),
                    false,
                ))
            }
            Err(QueueError::ShuttingDown) => {
                return Err(rejection(
                    ErrorCode::CapacityExceeded,
                    "this agent is shutting down",
                    true,
                ))
            }
            Err(e) => return Err(rejection(ErrorCode::Internal, e.to_string(), true)),
        }

        // Write-ahead, part 2: the job record and `started` (seq 1), flushed before the ack.
        let mut batch = Batch::new();
        if replacing {
            if let Err(e) = self.db.delete_all_events(&mut batch, &job_id) {
                return Err(rejection(ErrorCode::Internal, e.to_string(), true));
            }
            self.flows.remove(&job_id);
            self.tails.remove(&job_id);
        }
        let wire_runner = map::runner_to_wire(&runner_id);
        self.jobs.insert(
            job_id.clone(),
            MeshJob {
                job_id: job_id.clone(),
                lease_id: d.lease_id.to_string(),
                attempt: d.attempt,
                runner: wire_runner.to_string(),
                workspace_id: spec.workspace_id.to_string(),
                workspace_root: workspace.path.clone(),
                phase: Phase::Accepted,
                next_seq: 1,
                acked_seq: 0,
                released: false,
                cancel_reason: None,
                streamed_parts: Vec::new(),
                finished_seq: None,
                truncated: false,
                accepted_at: clock::now_ms(),
                finished_at: None,
                observed: false,
                announced: false,
            },
        );
        let started = mesh_protocol::JobEvent::Started(StartedData {
            runner: wire_runner,
            runner_version: info
                .and_then(|i| i.version)
                .unwrap_or_else(|| "unknown".to_owned()),
        });
        let ts = clock::rfc3339(clock::now_ms());
        let written = self
            .append(&job_id, started, &ts, &mut batch)
            .map_err(|e| rejection(ErrorCode::Internal, e.to_string(), true));
        let committed = match written {
            Ok(()) => self
                .db
                .store()
                .commit(batch)
                .await
                .map_err(|e| rejection(ErrorCode::Internal, e.to_string(), true)),
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            // Nothing was acknowledged: drop the job again so a redelivery starts clean.
            self.jobs.remove(&job_id);
            let _ = self
                .deps
                .queue
                .cancel(
                    &JobId::new(job_id),
                    CancelReason::Revoked {
                        reason: "could not be recorded".into(),
                    },
                )
                .await;
            return Err(e);
        }
        if let Some(flow) = self.flows.get_mut(&job_id) {
            flow.window = live.limits.max_inflight_events;
        }
        Ok(())
    }

    /// The lane a dispatch runs in: the lane of the runner session it resumes (so the runner
    /// continues it), else its own.
    fn lane_for(&self, d: &JobDispatchParams) -> String {
        match d.spec.resume_session.as_deref() {
            Some(session) => match self.db.session_lane(session) {
                Ok(Some(lane)) => lane,
                _ => format!("mesh:{session}"),
            },
            None => format!("mesh:{}", d.job_id),
        }
    }

    pub(super) async fn on_events_ack(
        &mut self,
        live: &mut Live,
        ack: JobEventsAckResponse,
    ) -> Result<(), LinkEnd> {
        let job_id = ack.job_id.to_string();
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return Ok(());
        };
        if job.lease_id != ack.lease_id.as_str() {
            return Ok(());
        }
        let mut batch = Batch::new();
        if job.observed && !job.announced {
            // The answer to `job.observed`: its events may go out now.
            job.announced = true;
            MeshStore::delete_announcement(&mut batch, &job_id);
            self.announced_at.remove(&job_id);
        }
        if let Some(flow) = self.flows.get_mut(&job_id) {
            flow.window = ack.window;
            let upto = ack.acked_seq.min(job.last_seq());
            if upto > job.acked_seq {
                MeshStore::delete_events(&mut batch, &job_id, job.acked_seq, upto);
                flow.sizes.retain(|seq, _| *seq > upto);
                job.acked_seq = upto;
                flow.sent_upto = flow.sent_upto.max(upto);
                flow.last_progress = Instant::now();
            }
        }
        let release = job.phase == Phase::Accepted && !job.released && job.acked_seq >= 1;
        if job.is_done() {
            self.flows.remove(&job_id);
            self.tails.remove(&job_id);
        }
        if let Some(job) = self.jobs.get(&job_id) {
            MeshStore::put_job(&mut batch, job).map_err(|e| LinkEnd::Store(e.to_string()))?;
        }
        self.db
            .store()
            .apply(batch)
            .map_err(|e| LinkEnd::Store(e.to_string()))?;
        if release {
            self.release(&job_id).await?;
        }
        self.pump(live, &job_id).await
    }

    /// Rule 4: the coordinator confirmed `started`; the queue may run the job now.
    async fn release(&mut self, job_id: &str) -> Result<(), LinkEnd> {
        let released = self.deps.queue.release(&JobId::new(job_id)).await;
        let Some(job) = self.jobs.get_mut(job_id) else {
            return Ok(());
        };
        match released {
            Ok(true) => {
                job.released = true;
                job.phase = Phase::Running;
                tracing::info!(job_id, "Mesh job released to the queue.");
            }
            // No longer waiting: it was cancelled meanwhile; its `finished` is on its way.
            Ok(false) => job.released = true,
            Err(e) => tracing::error!(job_id, error = %e, "Cannot release a mesh job."),
        }
        let mut batch = Batch::new();
        MeshStore::put_job(&mut batch, job).map_err(|e| LinkEnd::Store(e.to_string()))?;
        self.db
            .store()
            .commit(batch)
            .await
            .map_err(|e| LinkEnd::Store(e.to_string()))
    }

    pub(super) async fn on_cancel(
        &mut self,
        live: &mut Live,
        c: JobCancelParams,
    ) -> Result<(), LinkEnd> {
        let job_id = c.job_id.to_string();
        let status = match self.jobs.get(&job_id) {
            // Observed jobs belong to whoever started them; the mesh only watches.
            Some(job) if job.observed => CancelStatus::UnknownJob,
            Some(job) if job.lease_id == c.lease_id.as_str() => self
                .cancel_job(&job_id, map::cancel_reason_text(c.reason))
                .await
                .map_err(|e| LinkEnd::Store(e.to_string()))?,
            _ => CancelStatus::UnknownJob,
        };
        tracing::info!(job_id = %job_id, reason = ?c.reason, grace_ms = c.grace_ms, status = ?status, "Mesh cancel.");
        live.send(AgentMessage::from(JobCancelResponse {
            msg_id: new_msg_id(),
            re: c.msg_id,
            job_id: c.job_id,
            status,
        }))
        .await?;
        self.pump(live, &job_id).await
    }

    /// `heartbeat.ok.cancel`: the same cancel, repeated until the job finished; no reply.
    pub(super) async fn apply_pending_cancel(
        &mut self,
        live: &mut Live,
        c: PendingCancel,
    ) -> Result<(), LinkEnd> {
        let job_id = c.job_id.to_string();
        let matches = self
            .jobs
            .get(&job_id)
            .is_some_and(|j| j.lease_id == c.lease_id.as_str() && j.is_active());
        if matches {
            self.cancel_job(&job_id, map::cancel_reason_text(c.reason))
                .await
                .map_err(|e| LinkEnd::Store(e.to_string()))?;
            self.pump(live, &job_id).await?;
        }
        Ok(())
    }

    /// Stops a job for `reason` (idempotent). A job that never reached the runner ends without
    /// running (rule 8); a running one is asked to stop and the queue's grace kills it.
    pub(super) async fn cancel_job(
        &mut self,
        job_id: &str,
        reason: &str,
    ) -> Result<CancelStatus, MeshError> {
        let Some(job) = self.jobs.get_mut(job_id) else {
            return Ok(CancelStatus::UnknownJob);
        };
        if job.is_finished() {
            return Ok(CancelStatus::AlreadyFinished);
        }
        if job.phase == Phase::Cancelling {
            return Ok(CancelStatus::Cancelling);
        }
        job.phase = Phase::Cancelling;
        job.cancel_reason = Some(reason.to_owned());
        let mut batch = Batch::new();
        MeshStore::put_job(&mut batch, job)?;
        self.db.store().apply(batch)?;
        let outcome = self
            .deps
            .queue
            .cancel(
                &JobId::new(job_id),
                CancelReason::Revoked {
                    reason: reason.to_owned(),
                },
            )
            .await;
        match outcome {
            Ok(CancelOutcome::Stopping) => Ok(CancelStatus::Cancelling),
            Ok(CancelOutcome::Dequeued) => {
                // Never launched: the queue has no running job to report `cancelling`, so the
                // link does, ahead of the `finished` the queue just published.
                let mut batch = Batch::new();
                let ts = clock::rfc3339(clock::now_ms());
                self.append(job_id, map::cancelling_event(reason), &ts, &mut batch)?;
                self.db.store().commit(batch).await?;
                Ok(CancelStatus::Cancelling)
            }
            Ok(CancelOutcome::AlreadyFinished) => Ok(CancelStatus::AlreadyFinished),
            Err(QueueError::UnknownJob(_)) => {
                // The record exists but the queue lost the job: end it here.
                let mut batch = Batch::new();
                let ts = clock::rfc3339(clock::now_ms());
                self.append(
                    job_id,
                    map::finished_event(JobOutcome::Cancelled, reason),
                    &ts,
                    &mut batch,
                )?;
                self.db.store().commit(batch).await?;
                Ok(CancelStatus::Cancelling)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn on_input(
        &mut self,
        live: &mut Live,
        i: JobInputParams,
    ) -> Result<(), LinkEnd> {
        let job_id = i.job_id.to_string();
        let known = self
            .jobs
            .get(&job_id)
            .is_some_and(|j| j.lease_id == i.lease_id.as_str() && !j.observed);
        let status = if !known {
            InputStatus::UnknownRequest
        } else {
            let still_running = matches!(
                self.deps.queue.get(&JobId::new(job_id.clone())),
                Ok(Some(r)) if !r.state.is_terminal()
            );
            let lookup = crate::core::interactions::lookup(
                &self.deps.store,
                &crate::core::RequestId::new(i.request_id.as_str()),
            );
            if let Ok(crate::core::interactions::Lookup::Unknown) = lookup {
                InputStatus::UnknownRequest
            } else if !still_running {
                // The job is over; answering would start a follow-up job nobody dispatched.
                InputStatus::AlreadyResolved
            } else {
                let control = map::control_from_wire(&i.request_id, &i.reply);
                match self.deps.queue.answer(control).await {
                    Ok(AnswerOutcome::Applied) => InputStatus::Applied,
                    Ok(AnswerOutcome::AlreadyResolved) => InputStatus::AlreadyResolved,
                    Ok(AnswerOutcome::Continued(_)) => InputStatus::Applied,
                    Err(QueueError::UnknownRequest(_)) => InputStatus::UnknownRequest,
                    Err(e) => {
                        tracing::warn!(job_id = %job_id, error = %e, "Mesh input not applied.");
                        InputStatus::UnknownRequest
                    }
                }
            }
        };
        live.send(AgentMessage::from(JobInputResponse {
            msg_id: new_msg_id(),
            re: i.msg_id,
            job_id: i.job_id,
            request_id: i.request_id,
            status,
        }))
        .await?;
        Ok(())
    }

    /// `auth.rotate`: commit the new token (keeping the previous one), then confirm.
    pub(super) async fn on_auth_rotate(
        &mut self,
        live: &mut Live,
        r: AuthRotateParams,
    ) -> Result<(), LinkEnd> {
        self.meta.previous_token = self.meta.token.take();
        self.meta.previous_valid_until = Some(r.previous_valid_until.clone());
        self.meta.token = Some(r.token.expose().to_owned());
        let mut batch = Batch::new();
        MeshStore::put_meta(&mut batch, &self.meta).map_err(|e| LinkEnd::Store(e.to_string()))?;
        self.db
            .store()
            .commit(batch)
            .await
            .map_err(|e| LinkEnd::Store(e.to_string()))?;
        tracing::info!(valid_from = %r.valid_from, "Mesh token rotated and committed.");
        live.send(AgentMessage::from(AuthRotateResponse {
            msg_id: new_msg_id(),
            re: r.msg_id,
        }))
        .await?;
        Ok(())
    }

    /// One `welcome.resume` directive (§9 step 5).
    pub(super) async fn resume(
        &mut self,
        live: &mut Live,
        directive: ResumeDirective,
    ) -> Result<(), LinkEnd> {
        let job_id = directive.job_id.to_string();
        let Some(job) = self.jobs.get(&job_id) else {
            return Ok(());
        };
        if job.lease_id != directive.lease_id.as_str() {
            return Ok(());
        }
        tracing::info!(job_id = %job_id, action = resume_action_name(directive.action), acked_seq = directive.acked_seq, "Resuming mesh job.");
        match directive.action {
            ResumeAction::Forget => self.forget(&job_id).await,
            action => {
                let window = live.limits.max_inflight_events;
                if directive.acked_seq < job.acked_seq {
                    tracing::error!(job_id = %job_id, ours = job.acked_seq, theirs = directive.acked_seq, "The coordinator lost acknowledged events; they cannot be replayed.");
                }
                self.on_events_ack(
                    live,
                    JobEventsAckResponse {
                        msg_id: new_msg_id(),
                        job_id: directive.job_id.clone(),
                        lease_id: directive.lease_id.clone(),
                        acked_seq: directive.acked_seq,
                        window,
                    },
                )
                .await?;
                let observed = self.jobs.get(&job_id).is_some_and(|j| j.observed);
                if action == ResumeAction::Cancel && !observed {
                    self.cancel_job(&job_id, "lease_revoked")
                        .await
                        .map_err(|e| LinkEnd::Store(e.to_string()))?;
                    self.pump(live, &job_id).await?;
                }
                Ok(())
            }
        }
    }

    /// `forget`, `UNKNOWN_JOB`, `LEASE_*`: the coordinator no longer wants this lease. The job is
    /// never launched (or is stopped), and nothing more is sent for it.
    pub(super) async fn revoke(&mut self, job_id: &str) -> Result<(), LinkEnd> {
        self.forget(job_id).await
    }

    async fn forget(&mut self, job_id: &str) -> Result<(), LinkEnd> {
        let Some(job) = self.jobs.get_mut(job_id) else {
            return Ok(());
        };
        if job.phase == Phase::Forgotten {
            return Ok(());
        }
        // An observed job runs on: the coordinator only stops watching it.
        let keep_running = job.is_finished() || job.observed;
        job.phase = Phase::Forgotten;
        job.cancel_reason = Some(mesh_protocol::FinishedData::REASON_LEASE_REVOKED.to_owned());
        job.finished_at = Some(clock::now_ms());
        let mut batch = Batch::new();
        MeshStore::put_job(&mut batch, job).map_err(|e| LinkEnd::Store(e.to_string()))?;
        self.db
            .delete_all_events(&mut batch, job_id)
            .map_err(|e| LinkEnd::Store(e.to_string()))?;
        MeshStore::delete_announcement(&mut batch, job_id);
        self.db
            .store()
            .commit(batch)
            .await
            .map_err(|e| LinkEnd::Store(e.to_string()))?;
        self.flows.remove(job_id);
        self.tails.remove(job_id);
        self.announced_at.remove(job_id);
        if !keep_running {
            let cancelled = self
                .deps
                .queue
                .cancel(
                    &JobId::new(job_id),
                    CancelReason::Revoked {
                        reason: mesh_protocol::FinishedData::REASON_LEASE_REVOKED.to_owned(),
                    },
                )
                .await;
            if let Err(e) = cancelled {
                tracing::warn!(job_id, error = %e, "Could not stop a revoked mesh job.");
            }
        }
        tracing::info!(job_id, "Mesh job forgotten (lease revoked).");
        Ok(())
    }
}

fn bad_path(message: impl Into<String>) -> WireError {
    let mut error = rejection(ErrorCode::BadRequest, message, false);
    let mut details = serde_json::Map::new();
    details.insert("path".into(), Value::String("spec.args.cwd".into()));
    error.details = Some(details);
    error
}
