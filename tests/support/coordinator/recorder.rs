//! The per-job invariants every mesh test ends with: seq 1..n without gaps, `started` first,
//! exactly one `finished` and it is last, the runner launched at most once.

use mesh_protocol::JobEvent;

use super::state::JobRecord;

/// What the recorder found for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub events: usize,
    pub finished: usize,
    pub launches: usize,
    /// Events received more than once (redeliveries the coordinator deduplicated).
    pub duplicates: usize,
}

/// Checks one job; `Err` explains the first broken invariant.
pub fn audit(job: &JobRecord) -> Result<Audit, String> {
    for (i, ev) in job.applied.iter().enumerate() {
        let want = i as u64 + 1;
        if ev.seq != want {
            return Err(format!(
                "job {}: applied seq {} at position {want} (gap or reorder)",
                job.job_id, ev.seq
            ));
        }
    }
    if let Some(first) = job.applied.first() {
        let ok = matches!(first.event, JobEvent::Started(_))
            || (matches!(first.event, JobEvent::Finished(_)));
        if !ok {
            return Err(format!(
                "job {}: seq 1 is `{}`, not `started`",
                job.job_id,
                first.event.event_type()
            ));
        }
    }
    let finished = job
        .applied
        .iter()
        .filter(|e| matches!(e.event, JobEvent::Finished(_)))
        .count();
    if finished > 1 {
        return Err(format!("job {}: {finished} `finished` events", job.job_id));
    }
    if finished == 1
        && !matches!(
            job.applied.last().map(|e| &e.event),
            Some(JobEvent::Finished(_))
        )
    {
        return Err(format!(
            "job {}: `finished` is not the last event",
            job.job_id
        ));
    }
    let launches = job
        .applied
        .iter()
        .filter(|e| matches!(&e.event, JobEvent::Status(s) if s.message == "runner launched"))
        .count();
    if launches > 1 {
        return Err(format!(
            "job {}: the runner launched {launches} times",
            job.job_id
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let duplicates = job.received.iter().filter(|s| !seen.insert(**s)).count();
    Ok(Audit {
        events: job.applied.len(),
        finished,
        launches,
        duplicates,
    })
}
