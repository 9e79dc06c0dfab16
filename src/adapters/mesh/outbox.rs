//! What the mesh link keeps on disk, all in `Tree::Adapter` under the `mesh/` prefix: the link's
//! identity and epoch (`mesh/meta`), the bus cursor the outbox has consumed (`mesh/cursor`), the
//! job table that deduplicates dispatches (`mesh/job/<jobId>`), each job's unacknowledged
//! `job.event`s (`mesh/out/<jobId>‖seq`), runner session → lane (`mesh/session/<id>`), and the
//! unanswered announcements of observed local jobs (`mesh/observed/<jobId>`, `observe.rs`).
//!
//! An outbox entry is committed (flushed) before it is sent and deleted once the coordinator
//! acknowledged it, so a restart of either side loses nothing and the seq of every event is
//! fixed the moment it is written. The second half of the file is the link task's spooling (core
//! events → entries) and sending (entries → the wire, within the window).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::FutureExt;
use mesh_protocol::events as names;
use mesh_protocol::{
    AgentMessage, EncodeError, JobEvent, JobEventNotification, JobId, JobOutcome, JobState,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::map;
use super::session::{new_msg_id, Agent, Flow, LinkEnd, Live};
use super::MeshError;
use crate::core::events::StoredEvent;
use crate::core::{clock, EventKind};
use crate::store::{self, Batch, Store, Tree};

const META_KEY: &str = "mesh/meta";
const CURSOR_KEY: &str = "mesh/cursor";
const JOB_PREFIX: &str = "mesh/job/";
const OUT_PREFIX: &str = "mesh/out/";
const SESSION_PREFIX: &str = "mesh/session/";
const OBSERVED_PREFIX: &str = "mesh/observed/";

/// The link's durable identity and connection state.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkMeta {
    pub gateway_id: String,
    /// Incremented and committed before every connect attempt.
    pub conn_epoch: u64,
    /// The newest token: `MESH_TOKEN`, or what `auth.rotate` delivered since.
    pub token: Option<String>,
    /// The token before the last rotation, valid until `previous_valid_until`.
    pub previous_token: Option<String>,
    pub previous_valid_until: Option<String>,
    /// `MESH_TOKEN` as last seen; when the setting changes, the operator's token wins.
    pub configured_token: Option<String>,
    /// `welcome.endpoints`: replaces the configured order once a coordinator sent it.
    pub endpoints: Option<Vec<String>>,
    pub last_good: Option<String>,
    /// Last `inventory.update.rev` sent.
    pub inventory_rev: u64,
    /// Whether the last `welcome` listed `observe`; `None` before any welcome.
    #[serde(default)]
    pub observe_supported: Option<bool>,
}

impl fmt::Debug for LinkMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens never reach a log line.
        f.debug_struct("LinkMeta")
            .field("gateway_id", &self.gateway_id)
            .field("conn_epoch", &self.conn_epoch)
            .field("has_token", &self.token.is_some())
            .field("endpoints", &self.endpoints)
            .field("last_good", &self.last_good)
            .field("inventory_rev", &self.inventory_rev)
            .finish()
    }
}

/// Where a mesh job is, as this agent mirrors it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Committed and acknowledged; held in the queue until `started` is acknowledged.
    Accepted,
    /// Released to the queue: the runner may be running.
    Running,
    Cancelling,
    /// `finished` is in the outbox (and may not be acknowledged yet).
    Finished(Outcome),
    /// The coordinator no longer knows the lease; nothing more is sent.
    Forgotten,
    /// A local job shown to the mesh (`observe.rs`): queued or running, never steered by it.
    Observed,
}

/// `finished.outcome`, stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl Outcome {
    pub fn from_wire(outcome: JobOutcome) -> Self {
        match outcome {
            JobOutcome::Succeeded => Self::Succeeded,
            JobOutcome::Cancelled => Self::Cancelled,
            JobOutcome::TimedOut => Self::TimedOut,
            JobOutcome::Failed | JobOutcome::Unknown => Self::Failed,
        }
    }
}

/// One dispatched job, the dedup table entry and its stream position. Small on purpose: it is
/// rewritten with every event (the prompt lives in the queue, not here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshJob {
    pub job_id: String,
    pub lease_id: String,
    pub attempt: u32,
    /// Wire runner id.
    pub runner: String,
    pub workspace_id: String,
    /// Local only: makes file paths workspace-relative. Never sent.
    pub workspace_root: PathBuf,
    pub phase: Phase,
    /// The seq the next event gets (1 = `started`).
    pub next_seq: u64,
    /// Highest seq the coordinator acknowledged.
    pub acked_seq: u64,
    /// Whether the queue was told it may run the job.
    pub released: bool,
    pub cancel_reason: Option<String>,
    /// Text parts already sent as deltas (their final text is not repeated).
    #[serde(default)]
    pub streamed_parts: Vec<String>,
    pub finished_seq: Option<u64>,
    /// Output cut since the outbox reached its cap (`status: output truncated` was sent).
    #[serde(default)]
    pub truncated: bool,
    pub accepted_at: i64,
    pub finished_at: Option<i64>,
    /// A local job nobody dispatched, shown to the mesh (`job.observed`); the lease is ours.
    #[serde(default)]
    pub observed: bool,
    /// The coordinator answered the job's `job.observed` (always true for dispatched jobs'
    /// purposes: they are never announced).
    #[serde(default)]
    pub announced: bool,
}

impl MeshJob {
    pub fn last_seq(&self) -> u64 {
        self.next_seq.saturating_sub(1)
    }

    /// Nothing left to send or do: `finished` acknowledged, or forgotten.
    pub fn is_done(&self) -> bool {
        match self.phase {
            Phase::Forgotten => true,
            Phase::Finished(_) => self.finished_seq.is_some_and(|f| self.acked_seq >= f),
            _ => false,
        }
    }

    /// The coordinator knows this job: dispatched by it, or an answered announcement. Only
    /// those are claimed in `hello.resume` and listed in heartbeats (an unknown claim would be
    /// answered `forget`).
    pub fn is_known_to_mesh(&self) -> bool {
        !self.observed || self.announced
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_) | Phase::Forgotten)
    }

    /// Counts against `maxConcurrentJobs`.
    pub fn is_active(&self) -> bool {
        matches!(
            self.phase,
            Phase::Accepted | Phase::Running | Phase::Cancelling
        )
    }

    /// The state reported in `hello.resume` and `job.ack duplicate`.
    pub fn wire_state(&self) -> JobState {
        match self.phase {
            Phase::Accepted => JobState::Accepted,
            Phase::Running => JobState::Running,
            Phase::Observed if self.next_seq == 1 => JobState::Queued,
            Phase::Observed => JobState::Running,
            Phase::Cancelling => JobState::Cancelling,
            Phase::Finished(Outcome::Succeeded) => JobState::Succeeded,
            Phase::Finished(Outcome::Failed) => JobState::Failed,
            Phase::Finished(Outcome::Cancelled) | Phase::Forgotten => JobState::Cancelled,
            Phase::Finished(Outcome::TimedOut) => JobState::TimedOut,
        }
    }
}

/// Typed access to the `mesh/` keys. Cheap to clone.
#[derive(Clone)]
pub struct MeshStore {
    store: Store,
}

impl MeshStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn meta(&self) -> store::Result<Option<LinkMeta>> {
        self.store.get(Tree::Adapter, META_KEY)
    }

    pub fn put_meta(batch: &mut Batch, meta: &LinkMeta) -> store::Result<()> {
        batch.put(Tree::Adapter, META_KEY, meta)
    }

    /// The last bus cursor whose event is reflected in the outbox.
    pub fn cursor(&self) -> store::Result<u64> {
        Ok(self.store.get(Tree::Adapter, CURSOR_KEY)?.unwrap_or(0))
    }

    pub fn put_cursor(batch: &mut Batch, cursor: u64) -> store::Result<()> {
        batch.put(Tree::Adapter, CURSOR_KEY, &cursor)
    }

    pub fn jobs(&self) -> store::Result<Vec<MeshJob>> {
        Ok(self
            .store
            .scan_prefix::<MeshJob>(Tree::Adapter, JOB_PREFIX)?
            .into_iter()
            .map(|(_, j)| j)
            .collect())
    }

    pub fn put_job(batch: &mut Batch, job: &MeshJob) -> store::Result<()> {
        batch.put(Tree::Adapter, job_key(&job.job_id), job)
    }

    pub fn delete_job(batch: &mut Batch, job_id: &str) {
        batch.delete(Tree::Adapter, job_key(job_id));
    }

    pub fn put_announcement(
        batch: &mut Batch,
        announcement: &mesh_protocol::JobObservedNotification,
    ) -> store::Result<()> {
        batch.put(
            Tree::Adapter,
            format!("{OBSERVED_PREFIX}{}", announcement.job_id),
            announcement,
        )
    }

    pub fn announcement(
        &self,
        job_id: &str,
    ) -> store::Result<Option<mesh_protocol::JobObservedNotification>> {
        self.store
            .get(Tree::Adapter, format!("{OBSERVED_PREFIX}{job_id}"))
    }

    pub fn delete_announcement(batch: &mut Batch, job_id: &str) {
        batch.delete(Tree::Adapter, format!("{OBSERVED_PREFIX}{job_id}"));
    }

    pub fn put_event(batch: &mut Batch, event: &JobEventNotification) -> store::Result<usize> {
        let bytes = serde_json::to_vec(event).map_err(|e| store::StoreError::Encode {
            tree: "adapter",
            detail: e.to_string(),
        })?;
        let size = bytes.len();
        batch.put_raw(
            Tree::Adapter,
            out_key(event.job_id.as_str(), event.seq),
            bytes,
        );
        Ok(size)
    }

    /// Deletes the entries with `from < seq <= to` (each seq has exactly one entry).
    pub fn delete_events(batch: &mut Batch, job_id: &str, from: u64, to: u64) {
        for seq in from.saturating_add(1)..=to {
            batch.delete(Tree::Adapter, out_key(job_id, seq));
        }
    }

    /// Deletes every entry of a job.
    pub fn delete_all_events(&self, batch: &mut Batch, job_id: &str) -> store::Result<()> {
        for (key, _) in self
            .store
            .scan_raw_prefix(Tree::Adapter, out_prefix(job_id))?
        {
            batch.delete(Tree::Adapter, key);
        }
        Ok(())
    }

    /// Up to `limit` entries with `seq > after`, in seq order.
    pub fn events_after(
        &self,
        job_id: &str,
        after: u64,
        limit: usize,
    ) -> store::Result<Vec<JobEventNotification>> {
        let prefix = out_prefix(job_id);
        let start = out_key(job_id, after.saturating_add(1));
        Ok(self
            .store
            .scan_from::<JobEventNotification>(Tree::Adapter, &prefix, &start, limit)?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// `(seq, encoded size)` of every entry of a job, in order.
    pub fn event_sizes(&self, job_id: &str) -> store::Result<Vec<(u64, usize)>> {
        let prefix = out_prefix(job_id);
        Ok(self
            .store
            .scan_raw_prefix(Tree::Adapter, &prefix)?
            .into_iter()
            .filter_map(|(k, v)| {
                let seq = k
                    .get(prefix.len()..)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)?;
                Some((seq, v.len()))
            })
            .collect())
    }

    /// Every outbox entry of every job (for health: `outboxEvents`).
    pub fn event_count(&self) -> usize {
        self.store.count_prefix(Tree::Adapter, OUT_PREFIX)
    }

    /// The lane that runs a runner session, so `resumeSession` continues it.
    pub fn session_lane(&self, runner_session: &str) -> store::Result<Option<String>> {
        self.store
            .get(Tree::Adapter, format!("{SESSION_PREFIX}{runner_session}"))
    }

    pub fn put_session_lane(
        batch: &mut Batch,
        runner_session: &str,
        lane: &str,
    ) -> store::Result<()> {
        batch.put(
            Tree::Adapter,
            format!("{SESSION_PREFIX}{runner_session}"),
            &lane,
        )
    }
}

fn job_key(job_id: &str) -> String {
    format!("{JOB_PREFIX}{job_id}")
}

fn out_prefix(job_id: &str) -> Vec<u8> {
    store::prefix_of(&format!("{OUT_PREFIX}{job_id}"))
}

fn out_key(job_id: &str, seq: u64) -> Vec<u8> {
    store::key2(&format!("{OUT_PREFIX}{job_id}"), &store::be(seq))
}

/// Bus events spooled into one durable batch before a single flush; bounds the latency a burst
/// of deltas adds while keeping the flush count low.
const SPOOL_BATCH: usize = 256;
/// Outbox entries read from the store per send step.
const PUMP_BATCH: usize = 64;
/// `job.event` msgIds remembered to map a `mesh.error` (`re`) back to its job.
const RECENT_EVENT_IDS: usize = 1024;
/// The rolling end of cut output kept to send before `finished` (§10: cut from the middle).
const CUT_TAIL_BYTES: usize = 32 * 1024;

/// Spooling (core events → outbox, in bus-cursor order, durable before anything is sent) and
/// sending (within the coordinator's window).
impl Agent {
    // ---- spooling: core events → durable outbox -----------------------------------------------

    /// Spools everything already available on the bus, without waiting.
    pub(super) async fn spool_now(&mut self) -> Result<(), MeshError> {
        loop {
            let next = if self.bus_open {
                self.bus.next().now_or_never()
            } else {
                None
            };
            match next {
                Some(Some(ev)) => {
                    self.spool_from(ev).await?;
                }
                Some(None) => {
                    self.bus_open = false;
                    return Ok(());
                }
                None => return Ok(()),
            }
        }
    }

    pub(super) async fn spool_and_pump(
        &mut self,
        live: &mut Live,
        first: Arc<StoredEvent>,
    ) -> Result<(), LinkEnd> {
        let touched = self
            .spool_from(first)
            .await
            .map_err(|e| LinkEnd::Store(e.to_string()))?;
        for id in touched {
            self.announce_if_new(live, &id).await?;
            self.pump(live, &id).await?;
        }
        Ok(())
    }

    /// Spools `first` and whatever else is ready (up to `SPOOL_BATCH`) in one durable batch.
    /// Returns the jobs that got new outbox entries.
    pub(super) async fn spool_from(
        &mut self,
        first: Arc<StoredEvent>,
    ) -> Result<BTreeSet<String>, MeshError> {
        let mut batch = Batch::new();
        let mut touched = BTreeSet::new();
        let mut cursor = first.cursor;
        self.spool_event(&first, &mut batch, &mut touched)?;
        for _ in 1..SPOOL_BATCH {
            match self.bus.next().now_or_never() {
                Some(Some(ev)) => {
                    cursor = ev.cursor;
                    self.spool_event(&ev, &mut batch, &mut touched)?;
                }
                Some(None) => {
                    self.bus_open = false;
                    break;
                }
                None => break,
            }
        }
        self.seal_tails(&mut batch)?;
        // One record write per job and batch (not per event): the record carries `next_seq`,
        // so it must land in the same batch as the entries it numbers.
        for id in &touched {
            if let Some(job) = self.jobs.get(id) {
                MeshStore::put_job(&mut batch, job)?;
            }
        }
        self.cursor = cursor;
        MeshStore::put_cursor(&mut batch, cursor)?;
        if touched.is_empty() {
            // Only the cursor moved: losing it re-reads events that map to nothing.
            self.db.store().apply(batch)?;
        } else {
            // Durable before anything is sent (rule 5).
            self.db.store().commit(batch).await?;
        }
        Ok(touched)
    }

    fn spool_event(
        &mut self,
        ev: &StoredEvent,
        batch: &mut Batch,
        touched: &mut BTreeSet<String>,
    ) -> Result<(), MeshError> {
        let job_id = ev.event.job_id.as_str();
        if !self.jobs.contains_key(job_id) && self.observe_new(ev, batch)? {
            touched.insert(job_id.to_owned());
        }
        let Some(job) = self.jobs.get_mut(job_id) else {
            return Ok(());
        };
        if job.is_finished() {
            return Ok(());
        }
        if let EventKind::Started {
            runner_session_id: Some(session),
            ..
        } = &ev.event.kind
        {
            MeshStore::put_session_lane(batch, session, ev.event.lane.as_str())?;
        }
        let drafts = {
            let mut ctx = map::MapCtx {
                streamed_parts: Some(&mut job.streamed_parts),
                cancel_reason: job.cancel_reason.as_deref(),
                workspace_root: Some(Path::new(&job.workspace_root)),
            };
            map::event_to_wire(&ev.event.kind, &mut ctx)
        };
        let drafts = if job.observed {
            Agent::observed_drafts(job, &ev.event.kind, drafts)
        } else {
            drafts
        };
        if drafts.is_empty() {
            return Ok(());
        }
        let ts = clock::rfc3339(ev.event.at);
        for draft in drafts {
            self.append_entries(job_id, draft, &ts, batch)?;
        }
        touched.insert(job_id.to_owned());
        Ok(())
    }

    /// Gives `event` the job's next seq(s) and writes it to `batch` plus the job record.
    pub(super) fn append(
        &mut self,
        job_id: &str,
        event: JobEvent,
        ts: &str,
        batch: &mut Batch,
    ) -> Result<(), MeshError> {
        self.append_entries(job_id, event, ts, batch)?;
        self.seal_tails(batch)?;
        if let Some(job) = self.jobs.get(job_id) {
            MeshStore::put_job(batch, job)?;
        }
        Ok(())
    }

    /// Gives `event` the job's next seq(s) and writes its outbox entries to `batch` — split to
    /// fit, coalesced into an unsent `output`, cut past the outbox cap (§10). The caller writes
    /// the job record into the same batch.
    fn append_entries(
        &mut self,
        job_id: &str,
        event: JobEvent,
        ts: &str,
        batch: &mut Batch,
    ) -> Result<(), MeshError> {
        let max = self.max_event_bytes;
        let cap = self.cfg.outbox_cap_bytes;
        let Some(job) = self.jobs.get_mut(job_id) else {
            return Ok(());
        };
        let flow = self.flows.entry(job_id.to_owned()).or_insert_with(|| Flow {
            sent_upto: job.acked_seq,
            max_sent: job.acked_seq,
            window: mesh_protocol::limits::DEFAULT_MAX_INFLIGHT_EVENTS,
            sizes: BTreeMap::new(),
            last_progress: Instant::now(),
        });
        let mut pieces: Vec<JobEvent> = Vec::new();
        match &event {
            JobEvent::Output(out) => {
                let spooled: u64 = flow.sizes.values().map(|s| *s as u64).sum();
                if spooled >= cap {
                    if !job.truncated {
                        job.truncated = true;
                        pieces.push(JobEvent::Status(mesh_protocol::StatusData {
                            message: mesh_protocol::StatusData::OUTPUT_TRUNCATED.to_owned(),
                            progress: None,
                            pid: None,
                            runner_session_id: None,
                        }));
                    }
                    let tail = self.cut_tails.entry(job_id.to_owned()).or_default();
                    tail.push_str(&out.text);
                    if tail.len() > CUT_TAIL_BYTES {
                        let mut start = tail.len() - CUT_TAIL_BYTES;
                        while !tail.is_char_boundary(start) {
                            start += 1;
                        }
                        tail.drain(..start);
                    }
                } else {
                    pieces.extend(map::fit_event(event, max));
                }
            }
            JobEvent::Finished(_) => {
                if let Some(tail) = self.cut_tails.remove(job_id) {
                    pieces.extend(map::fit_event(
                        JobEvent::Output(mesh_protocol::OutputData {
                            stream: mesh_protocol::OutputStream::Assistant,
                            text: tail,
                        }),
                        max,
                    ));
                }
                pieces.extend(map::fit_event(event, max));
            }
            _ => pieces.extend(map::fit_event(event, max)),
        }
        for piece in pieces {
            if let Some(tail) = self.tails.get_mut(job_id) {
                let unsent = tail.seq > flow.max_sent && tail.seq == job.last_seq();
                if unsent {
                    if let Some(merged) = map::coalesce(&tail.event, &piece, max) {
                        // Written once when the batch is sealed, however many deltas it absorbs.
                        tail.event = merged;
                        self.dirty_tails.insert(job_id.to_owned());
                        continue;
                    }
                }
                if self.dirty_tails.remove(job_id) {
                    let size = MeshStore::put_event(batch, tail)?;
                    flow.sizes.insert(tail.seq, size);
                }
            }
            let seq = job.next_seq;
            job.next_seq += 1;
            if let JobEvent::Finished(f) = &piece {
                job.phase = Phase::Finished(Outcome::from_wire(f.outcome));
                job.finished_seq = Some(seq);
                job.finished_at = Some(clock::now_ms());
            }
            let notification = JobEventNotification {
                msg_id: new_msg_id(),
                job_id: JobId::new(job_id),
                lease_id: mesh_protocol::LeaseId::new(job.lease_id.clone()),
                seq,
                ts: ts.to_owned(),
                event: piece,
            };
            self.tails.insert(job_id.to_owned(), notification);
            self.dirty_tails.insert(job_id.to_owned());
        }
        Ok(())
    }

    /// Writes the entries still held back for coalescing; every batch that appended is sealed
    /// with this before it is applied.
    fn seal_tails(&mut self, batch: &mut Batch) -> Result<(), MeshError> {
        for job_id in std::mem::take(&mut self.dirty_tails) {
            if let Some(tail) = self.tails.get(&job_id) {
                let size = MeshStore::put_event(batch, tail)?;
                if let Some(flow) = self.flows.get_mut(&job_id) {
                    flow.sizes.insert(tail.seq, size);
                }
            }
        }
        Ok(())
    }

    // ---- sending --------------------------------------------------------------------------

    /// Sends the job's outbox entries the window allows (§10): at most `min(window,
    /// maxInflightEvents)` events and `maxInflightBytes` bytes past `ackedSeq`.
    pub(super) async fn pump(&mut self, live: &mut Live, job_id: &str) -> Result<(), LinkEnd> {
        let Some(job) = self.jobs.get(job_id) else {
            return Ok(());
        };
        if job.phase == Phase::Forgotten {
            return Ok(());
        }
        let acked = job.acked_seq;
        let last = job.last_seq();
        let Some(flow) = self.flows.get_mut(job_id) else {
            return Ok(());
        };
        flow.sent_upto = flow.sent_upto.max(acked);
        let window = u64::from(flow.window.min(live.limits.max_inflight_events));
        let limit = (acked + window).min(last);
        let max_bytes = live.limits.max_inflight_bytes as usize;
        while flow.sent_upto < limit {
            let want = usize::try_from(limit - flow.sent_upto)
                .unwrap_or(PUMP_BATCH)
                .min(PUMP_BATCH);
            let entries = self
                .db
                .events_after(job_id, flow.sent_upto, want)
                .map_err(|e| LinkEnd::Store(e.to_string()))?;
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                let inflight: usize = if flow.sent_upto > acked {
                    flow.sizes
                        .range(acked + 1..=flow.sent_upto)
                        .map(|(_, s)| *s)
                        .sum()
                } else {
                    0
                };
                let size = flow.sizes.get(&entry.seq).copied().unwrap_or(0);
                if inflight > 0 && inflight + size > max_bytes {
                    return Ok(());
                }
                if flow.sent_upto == acked {
                    flow.last_progress = Instant::now();
                }
                let seq = entry.seq;
                let msg_id = entry.msg_id.to_string();
                let message = AgentMessage::from(entry);
                match message.to_value_with_limits(&live.size_limits) {
                    Ok(value) => live.link.send(names::JOB_EVENT, &value).await?,
                    Err(EncodeError::PayloadTooLarge { size, limit, .. }) => {
                        // Spooled under a larger limit than this coordinator allows: the seq
                        // must still arrive, so its content is replaced, never skipped.
                        let AgentMessage::JobEvent(mut entry) = message else {
                            continue;
                        };
                        tracing::warn!(
                            job_id,
                            seq,
                            size,
                            limit,
                            "Event over this coordinator's limit; sending a shortened form."
                        );
                        entry.event = map::fit_single(entry.event, limit);
                        let value = AgentMessage::from(entry)
                            .to_value_with_limits(&live.size_limits)
                            .map_err(|e| LinkEnd::Failed(e.to_string()))?;
                        live.link.send(names::JOB_EVENT, &value).await?;
                    }
                    Err(e) => return Err(LinkEnd::Failed(e.to_string())),
                }
                flow.sent_upto = seq;
                flow.max_sent = flow.max_sent.max(seq);
                if self.recent_event_ids.len() >= RECENT_EVENT_IDS {
                    self.recent_event_ids.pop_front();
                }
                self.recent_event_ids.push_back((msg_id, job_id.to_owned()));
                if flow.sent_upto >= limit {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_protocol::{JobEvent, JobId, LeaseId, MsgId, StatusData};

    fn event(job: &str, seq: u64) -> JobEventNotification {
        JobEventNotification {
            msg_id: MsgId::new(format!("m{seq}")),
            job_id: JobId::new(job),
            lease_id: LeaseId::new("ls"),
            seq,
            ts: "2026-01-05T10:00:00.000Z".into(),
            event: JobEvent::Status(StatusData {
                message: format!("e{seq}"),
                progress: None,
                pid: None,
                runner_session_id: None,
            }),
        }
    }

    #[tokio::test]
    async fn events_are_read_in_order_and_deleted_up_to_the_ack() {
        let dir = tempfile::tempdir().unwrap();
        let db = MeshStore::new(Store::open(&dir.path().join("s")).unwrap());
        let mut batch = Batch::new();
        for seq in 1..=12 {
            MeshStore::put_event(&mut batch, &event("job_a", seq)).unwrap();
        }
        // A job whose id extends another's must not leak into its scans.
        MeshStore::put_event(&mut batch, &event("job_a2", 1)).unwrap();
        db.store().commit(batch).await.unwrap();
        let seqs: Vec<u64> = db
            .events_after("job_a", 9, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![10, 11, 12]);
        assert_eq!(db.events_after("job_a", 0, 2).unwrap().len(), 2);
        let mut batch = Batch::new();
        MeshStore::delete_events(&mut batch, "job_a", 0, 10);
        db.store().commit(batch).await.unwrap();
        let sizes: Vec<u64> = db
            .event_sizes("job_a")
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(sizes, vec![11, 12]);
        assert_eq!(db.event_count(), 3);
    }

    #[test]
    fn tokens_never_reach_debug() {
        let meta = LinkMeta {
            token: Some("gw_at_secret".into()),
            previous_token: Some("gw_at_old".into()),
            ..LinkMeta::default()
        };
        let text = format!("{meta:?}");
        assert!(!text.contains("secret") && !text.contains("old"), "{text}");
    }
}
