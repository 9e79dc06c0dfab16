//! Jobs nobody dispatched — a Discord message, `kimaki send`, a scheduled task — shown to the
//! mesh (feature `observe`, mesh-protocol `job.observed`). One queue, several sinks: the job runs
//! exactly as it would without a mesh; the link only announces it and streams its events through
//! the same durable outbox, seq and window rules as a dispatched job.
//!
//! The coordinator may watch, never steer: a cancel or input for an observed job is answered
//! `unknown`, a `forget` only stops the reporting, and an unreachable coordinator never cancels
//! it (the orphan rule is for leases the mesh handed out).
//!
//! Order of a job's life here: its core `Queued` event creates the record and the announcement
//! (committed with the bus cursor); the announcement is sent when a link whose `welcome` lists
//! `observe` is up, and again after every `welcome` until a `job.events.ack` answers it; its
//! events are held (window 0) until then. Events before the runner started are not sent (the
//! wire job starts with `started`, or is only `finished` when it never ran).

use std::path::PathBuf;

use mesh_protocol::{
    AgentMessage, JobEvent, JobId, JobObservedNotification, JobOrigin, LeaseId, StartedData,
    WorkspaceId, MAX_OBSERVED_PROMPT_BYTES,
};
use tokio::time::Instant;

use super::map;
use super::outbox::{MeshJob, MeshStore, Phase};
use super::session::{new_msg_id, Agent, Flow, LinkEnd, Live};
use super::MeshError;
use crate::core::events::StoredEvent;
use crate::core::{clock, EventKind, JobSource};
use crate::store::Batch;

/// Lease ids the agent mints for observed jobs start with this.
const LEASE_PREFIX: &str = "obs_";

/// Which local sources `MESH_OBSERVE` names: `all`, `none`, or a list of source names.
pub fn parse_sources(values: &[String]) -> (Vec<JobSource>, Vec<String>) {
    let mut sources = Vec::new();
    let mut unknown = Vec::new();
    for value in values {
        let found: &[JobSource] = match value.trim().to_ascii_lowercase().as_str() {
            "all" => &ALL_LOCAL_SOURCES,
            "none" | "" => &[],
            "discord" => &[JobSource::Discord],
            "cli" => &[JobSource::Cli],
            "scheduler" | "schedule" => &[JobSource::Scheduler],
            "voice" => &[JobSource::Voice],
            "api" => &[JobSource::Api],
            _ => {
                unknown.push(value.clone());
                &[]
            }
        };
        for source in found {
            if !sources.contains(source) {
                sources.push(*source);
            }
        }
    }
    (sources, unknown)
}

/// Every source except the mesh itself.
pub const ALL_LOCAL_SOURCES: [JobSource; 5] = [
    JobSource::Discord,
    JobSource::Cli,
    JobSource::Scheduler,
    JobSource::Voice,
    JobSource::Api,
];

fn origin(source: JobSource) -> JobOrigin {
    match source {
        JobSource::Discord => JobOrigin::Discord,
        JobSource::Cli => JobOrigin::Cli,
        JobSource::Scheduler => JobOrigin::Schedule,
        JobSource::Api => JobOrigin::Api,
        JobSource::Voice => JobOrigin::Other("voice".to_owned()),
        JobSource::Mesh => JobOrigin::Other("mesh".to_owned()),
    }
}

impl Agent {
    /// Whether new local jobs are recorded for the mesh: configured, and the coordinator did not
    /// say it cannot take them (unknown until the first `welcome`: recorded meanwhile, so a job
    /// started while offline is not missed).
    fn observing(&self) -> bool {
        !self.cfg.observe.is_empty() && self.meta.observe_supported != Some(false)
    }

    /// A bus event of a job the link has no record of: starts observing it when it is a newly
    /// queued local job this agent shows to the mesh. Returns whether a record was made.
    pub(super) fn observe_new(
        &mut self,
        ev: &StoredEvent,
        batch: &mut Batch,
    ) -> Result<bool, MeshError> {
        if !matches!(ev.event.kind, EventKind::Queued { .. }) || !self.observing() {
            return Ok(false);
        }
        let Some(record) = self.deps.queue.get(&ev.event.job_id)? else {
            return Ok(false);
        };
        let job = record.job;
        if job.source == JobSource::Mesh || !self.cfg.observe.contains(&job.source) {
            return Ok(false);
        }
        let workspace = self
            .deps
            .workspaces
            .containing(&job.workspace)
            .ok()
            .flatten();
        let root: PathBuf = workspace
            .as_ref()
            .map_or_else(|| job.workspace.clone(), |w| w.path.clone());
        let job_id = job.id.to_string();
        let lease_id = format!("{LEASE_PREFIX}{job_id}");
        let runner = map::runner_to_wire(&job.runner);
        let announcement = JobObservedNotification {
            msg_id: new_msg_id(),
            job_id: JobId::new(job_id.clone()),
            lease_id: LeaseId::new(lease_id.clone()),
            origin: origin(job.source),
            runner: runner.clone(),
            workspace_id: workspace.map(|w| WorkspaceId::new(w.id)),
            conversation_id: Some(job.lane.to_string()),
            prompt: map::cut_middle(&job.prompt, MAX_OBSERVED_PROMPT_BYTES),
            model: job.model.clone(),
            created_at: clock::rfc3339(job.created_at),
        };
        let record = MeshJob {
            job_id: job_id.clone(),
            lease_id,
            attempt: 1,
            runner: runner.to_string(),
            workspace_id: announcement
                .workspace_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            workspace_root: root,
            phase: Phase::Observed,
            next_seq: 1,
            acked_seq: 0,
            released: true,
            cancel_reason: None,
            streamed_parts: Vec::new(),
            finished_seq: None,
            truncated: false,
            accepted_at: clock::now_ms(),
            finished_at: None,
            observed: true,
            announced: false,
        };
        MeshStore::put_job(batch, &record)?;
        MeshStore::put_announcement(batch, &announcement)?;
        // Nothing goes out before the coordinator answered the announcement.
        self.flows.insert(
            job_id.clone(),
            Flow {
                sent_upto: 0,
                max_sent: 0,
                window: 0,
                sizes: Default::default(),
                last_progress: Instant::now(),
            },
        );
        tracing::debug!(job_id = %job_id, source = ?job.source, "Observing a local job for the mesh.");
        self.jobs.insert(job_id, record);
        Ok(true)
    }

    /// The wire events of an observed job for one core event: `started` is made from the core's
    /// `Started`, and nothing but `finished` goes out before it.
    pub(super) fn observed_drafts(
        job: &MeshJob,
        kind: &EventKind,
        drafts: Vec<JobEvent>,
    ) -> Vec<JobEvent> {
        let not_started = job.next_seq == 1;
        match kind {
            EventKind::Started {
                runner,
                runner_version,
                ..
            } if not_started => {
                let started = JobEvent::Started(StartedData {
                    runner: map::runner_to_wire(&crate::core::RunnerId::new(runner.clone())),
                    runner_version: runner_version
                        .clone()
                        .unwrap_or_else(|| "unknown".to_owned()),
                });
                std::iter::once(started).chain(drafts).collect()
            }
            _ if not_started => drafts
                .into_iter()
                .filter(|d| matches!(d, JobEvent::Finished(_)))
                .collect(),
            _ => drafts,
        }
    }

    /// Sends the announcement of an observed job that has not been answered yet, when the link
    /// negotiated `observe`.
    pub(super) async fn announce(&mut self, live: &mut Live, job_id: &str) -> Result<(), LinkEnd> {
        if !map::has_feature(&live.features, mesh_protocol::features::OBSERVE) {
            return Ok(());
        }
        let Some(job) = self.jobs.get(job_id) else {
            return Ok(());
        };
        if !job.observed || job.announced || job.phase == Phase::Forgotten {
            return Ok(());
        }
        let stored = self
            .db
            .announcement(job_id)
            .map_err(|e| LinkEnd::Store(e.to_string()))?;
        let Some(mut announcement) = stored else {
            tracing::error!(
                job_id,
                "An observed job lost its announcement; not shown to the mesh."
            );
            return Ok(());
        };
        announcement.msg_id = new_msg_id();
        self.announced_at.insert(job_id.to_owned(), Instant::now());
        live.send(AgentMessage::from(announcement)).await?;
        Ok(())
    }

    /// A job that was just observed: announced at once when the link is up (later ones come from
    /// `announce_pending`).
    pub(super) async fn announce_if_new(
        &mut self,
        live: &mut Live,
        job_id: &str,
    ) -> Result<(), LinkEnd> {
        if self.announced_at.contains_key(job_id) {
            return Ok(());
        }
        self.announce(live, job_id).await
    }

    /// After `welcome`, and when an announcement went unanswered for `resend_after`: sends
    /// every announcement still waiting for its answer.
    pub(super) async fn announce_pending(
        &mut self,
        live: &mut Live,
        only_stale: bool,
    ) -> Result<(), LinkEnd> {
        let resend_after = self.cfg.resend_after;
        let waiting: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.observed && !j.announced && j.phase != Phase::Forgotten)
            .filter(|j| {
                !only_stale
                    || self
                        .announced_at
                        .get(&j.job_id)
                        .is_none_or(|t| t.elapsed() >= resend_after)
            })
            .map(|j| j.job_id.clone())
            .collect();
        for id in waiting {
            self.announce(live, &id).await?;
        }
        Ok(())
    }

    /// `welcome` said whether the coordinator takes `job.observed`. When it does not, what was
    /// recorded for it is dropped (the jobs themselves run on untouched).
    pub(super) fn apply_observe_support(&mut self, supported: bool) -> Result<(), MeshError> {
        self.meta.observe_supported = Some(supported);
        let mut batch = Batch::new();
        MeshStore::put_meta(&mut batch, &self.meta)?;
        if !supported {
            let observed: Vec<String> = self
                .jobs
                .values()
                .filter(|j| j.observed)
                .map(|j| j.job_id.clone())
                .collect();
            for id in &observed {
                MeshStore::delete_job(&mut batch, id);
                MeshStore::delete_announcement(&mut batch, id);
                self.db.delete_all_events(&mut batch, id)?;
                self.jobs.remove(id);
                self.flows.remove(id);
                self.tails.remove(id);
                self.cut_tails.remove(id);
                self.announced_at.remove(id);
            }
            if !observed.is_empty() {
                tracing::info!(
                    jobs = observed.len(),
                    "The coordinator does not observe local jobs; dropped what was kept for it."
                );
            }
        }
        self.db.store().apply(batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn observed_job(next_seq: u64) -> MeshJob {
        MeshJob {
            job_id: "j".into(),
            lease_id: "obs_j".into(),
            attempt: 1,
            runner: "codex".into(),
            workspace_id: String::new(),
            workspace_root: PathBuf::from("/p"),
            phase: Phase::Observed,
            next_seq,
            acked_seq: 0,
            released: true,
            cancel_reason: None,
            streamed_parts: Vec::new(),
            finished_seq: None,
            truncated: false,
            accepted_at: 0,
            finished_at: None,
            observed: true,
            announced: false,
        }
    }

    #[test]
    fn an_observed_job_starts_with_started_and_sends_nothing_else_before_it() {
        let status = |m: &str| {
            JobEvent::Status(mesh_protocol::StatusData {
                message: m.into(),
                progress: None,
                pid: None,
                runner_session_id: None,
            })
        };
        let queued = observed_job(1);
        let cancelling = map::cancelling_event("user");
        let finished = map::finished_event(mesh_protocol::JobOutcome::Cancelled, "user");
        assert!(Agent::observed_drafts(
            &queued,
            &EventKind::Queued { position: 0 },
            vec![status("x")]
        )
        .is_empty());
        let drafts = Agent::observed_drafts(
            &queued,
            &EventKind::Queued { position: 0 },
            vec![cancelling.clone(), finished.clone()],
        );
        assert_eq!(drafts, vec![finished], "never ran: `finished` alone");

        let started = EventKind::Started {
            runner: "claude".into(),
            runner_version: Some("2.1.0".into()),
            runner_session_id: None,
            pid: Some(7),
        };
        let drafts = Agent::observed_drafts(&queued, &started, vec![status("runner launched")]);
        assert_eq!(
            drafts[0],
            JobEvent::Started(StartedData {
                runner: mesh_protocol::RunnerKind::ClaudeCode,
                runner_version: "2.1.0".into(),
            })
        );
        assert_eq!(drafts[1], status("runner launched"));
        let running = observed_job(3);
        assert_eq!(
            Agent::observed_drafts(
                &running,
                &EventKind::Queued { position: 0 },
                vec![cancelling.clone()]
            ),
            vec![cancelling]
        );
        assert_eq!(running.wire_state(), mesh_protocol::JobState::Running);
        assert_eq!(queued.wire_state(), mesh_protocol::JobState::Queued);
    }

    #[test]
    fn sources_are_parsed_from_the_setting() {
        assert_eq!(
            parse_sources(&names(&["all"])).0,
            ALL_LOCAL_SOURCES.to_vec()
        );
        assert!(parse_sources(&names(&["none"])).0.is_empty());
        assert!(parse_sources(&[]).0.is_empty());
        let (sources, unknown) = parse_sources(&names(&["Discord", "cli", "cli", "mesh", "irc"]));
        assert_eq!(sources, vec![JobSource::Discord, JobSource::Cli]);
        assert_eq!(
            unknown,
            names(&["mesh", "irc"]),
            "the mesh is never observed"
        );
    }
}
