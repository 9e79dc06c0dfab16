//! Scheduled tasks: a job template plus when to enqueue it (once at a UTC instant, or on a cron
//! schedule in a time zone). Stored durably; each due time produces exactly one job, because the
//! job id is derived from the task and the due time (enqueueing the same occurrence twice after a
//! crash is a no-op).

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::ids::JobId;
use super::job::NewJob;
use crate::store::{self, Batch, Store, Tree};

/// When a task fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Once, at this instant (Unix ms).
    At { at_ms: i64 },
    /// Every time the cron expression matches, evaluated in `tz`.
    Cron { expr: String, tz: TaskZone },
}

/// The time zone a cron expression is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskZone {
    Utc,
    /// This machine's local time zone.
    Local,
    /// A fixed offset east of UTC, in minutes.
    Offset {
        minutes: i32,
    },
}

impl std::fmt::Display for TaskZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskZone::Utc => f.write_str("UTC"),
            TaskZone::Local => f.write_str("local"),
            TaskZone::Offset { minutes } => {
                let sign = if *minutes < 0 { '-' } else { '+' };
                write!(
                    f,
                    "{sign}{:02}:{:02}",
                    minutes.abs() / 60,
                    minutes.abs() % 60
                )
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("`{0}` is neither an ISO-8601 UTC time (like 2026-03-01T09:00:00Z) nor a cron expression (like \"0 9 * * 1\")")]
    BadWhen(String),
    #[error("{0} is in the past")]
    InThePast(String),
    #[error("the cron expression `{expr}` never matches")]
    NeverMatches { expr: String },
    #[error("`{0}` is not a time zone: use local, UTC, or an offset like +02:00")]
    BadZone(String),
    #[error("no task with id {0}")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// A stored task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// `task_<ULID>`.
    pub id: String,
    pub schedule: Schedule,
    /// The job each firing enqueues (its id and lane are filled in per occurrence).
    pub template: NewJob,
    /// A new session per firing (`true`), or always the template's lane.
    pub new_session_each_time: bool,
    /// Fire even while the previous occurrence's job has not finished (off: that occurrence is
    /// skipped, so a slow task never piles up).
    #[serde(default)]
    pub allow_concurrency: bool,
    /// Unix ms of the next due time; `None` once a one-shot fired.
    pub next_due_ms: Option<i64>,
    pub last_fired_ms: Option<i64>,
    /// The job of the last occurrence that was enqueued (skipped ones have none).
    #[serde(default)]
    pub last_job: Option<JobId>,
    pub fired: u64,
    pub created_at: i64,
}

impl Task {
    /// The job for the occurrence due at `due_ms`: same id however often it is enqueued.
    pub fn job_for(&self, due_ms: i64) -> NewJob {
        let mut job = self.template.clone();
        job.id = Some(JobId::new(format!("job_{}_{due_ms}", self.id)));
        if self.new_session_each_time {
            job.lane = super::ids::LaneId::new(format!("task:{}:{due_ms}", self.id));
        }
        job.meta.insert(
            "task_id".to_owned(),
            serde_json::Value::String(self.id.clone()),
        );
        job
    }
}

/// Parses `--send-at`: an RFC 3339 instant in UTC (`…Z`), or a 5- or 6-field cron expression.
pub fn parse_when(when: &str, zone: TaskZone, now_ms: i64) -> Result<Schedule, TaskError> {
    let when = when.trim();
    if when.ends_with('Z') || when.ends_with('z') {
        let at = chrono::DateTime::parse_from_rfc3339(when)
            .or_else(|_| chrono::DateTime::parse_from_rfc3339(&when.replacen('Z', ":00Z", 1)))
            .map_err(|_| TaskError::BadWhen(when.to_owned()))?;
        let at_ms = at.timestamp_millis();
        if at_ms <= now_ms {
            return Err(TaskError::InThePast(when.to_owned()));
        }
        return Ok(Schedule::At { at_ms });
    }
    let schedule = Schedule::Cron {
        expr: when.to_owned(),
        tz: zone,
    };
    match next_after(&schedule, now_ms) {
        Ok(Some(_)) => Ok(schedule),
        Ok(None) => Err(TaskError::NeverMatches {
            expr: when.to_owned(),
        }),
        Err(_) => Err(TaskError::BadWhen(when.to_owned())),
    }
}

/// Parses `--tz`.
pub fn parse_zone(s: &str) -> Result<TaskZone, TaskError> {
    match s.to_ascii_lowercase().as_str() {
        "local" => return Ok(TaskZone::Local),
        "utc" | "z" | "gmt" => return Ok(TaskZone::Utc),
        _ => {}
    }
    let bad = || TaskError::BadZone(s.to_owned());
    let (sign, rest) = match s.chars().next() {
        Some('+') => (1, &s[1..]),
        Some('-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    Ok(TaskZone::Offset {
        minutes: sign * (h * 60 + m),
    })
}

/// The first due time strictly after `after_ms`.
pub fn next_after(schedule: &Schedule, after_ms: i64) -> Result<Option<i64>, TaskError> {
    match schedule {
        Schedule::At { at_ms } => Ok((*at_ms > after_ms).then_some(*at_ms)),
        Schedule::Cron { expr, tz } => {
            let cron = croner::Cron::new(expr)
                .with_seconds_optional()
                .parse()
                .map_err(|_| TaskError::BadWhen(expr.clone()))?;
            let after = chrono::DateTime::from_timestamp_millis(after_ms)
                .ok_or_else(|| TaskError::BadWhen(expr.clone()))?;
            let next = match tz {
                TaskZone::Utc => cron
                    .find_next_occurrence(&after, false)
                    .map(|d| d.timestamp_millis()),
                TaskZone::Local => cron
                    .find_next_occurrence(&after.with_timezone(&chrono::Local), false)
                    .map(|d| d.timestamp_millis()),
                TaskZone::Offset { minutes } => {
                    let offset = chrono::FixedOffset::east_opt(minutes * 60)
                        .ok_or_else(|| TaskError::BadWhen(expr.clone()))?;
                    cron.find_next_occurrence(&after.with_timezone(&offset), false)
                        .map(|d| d.timestamp_millis())
                }
            };
            Ok(next.ok())
        }
    }
}

/// Durable task registry; cheap to clone. `changed()` tells the scheduler to recompute its timer.
#[derive(Clone)]
pub struct Tasks {
    store: Store,
    revision: watch::Sender<u64>,
}

impl Tasks {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            revision: watch::Sender::new(0),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    fn bump(&self) {
        self.revision.send_modify(|r| *r += 1);
    }

    pub async fn add(
        &self,
        schedule: Schedule,
        template: NewJob,
        new_session_each_time: bool,
        allow_concurrency: bool,
        now_ms: i64,
    ) -> Result<Task, TaskError> {
        let next_due_ms = next_after(&schedule, now_ms)?;
        let task = Task {
            id: format!("task_{}", ulid::Ulid::new()),
            schedule,
            template,
            new_session_each_time,
            allow_concurrency,
            next_due_ms,
            last_fired_ms: None,
            last_job: None,
            fired: 0,
            created_at: now_ms,
        };
        let mut batch = Batch::new();
        batch.put(Tree::Tasks, &task.id, &task)?;
        self.store.commit(batch).await?;
        self.bump();
        Ok(task)
    }

    pub fn list(&self) -> Result<Vec<Task>, TaskError> {
        let mut all: Vec<Task> = self
            .store
            .scan_all::<Task>(Tree::Tasks)?
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        all.sort_by_key(|t| (t.next_due_ms.unwrap_or(i64::MAX), t.created_at));
        Ok(all)
    }

    pub fn get(&self, id: &str) -> Result<Option<Task>, TaskError> {
        Ok(self.store.get(Tree::Tasks, id)?)
    }

    pub async fn delete(&self, id: &str) -> Result<Task, TaskError> {
        let task = self
            .get(id)?
            .ok_or_else(|| TaskError::Unknown(id.to_owned()))?;
        let mut batch = Batch::new();
        batch.delete(Tree::Tasks, id);
        self.store.commit(batch).await?;
        self.bump();
        Ok(task)
    }

    /// Records that the occurrence due at `due_ms` was enqueued, and moves to the next one. A
    /// recurring task's next due time is computed from `now_ms`, so occurrences missed while
    /// kimaki was down collapse into the single firing that just happened.
    pub async fn fired(
        &self,
        id: &str,
        due_ms: i64,
        now_ms: i64,
        job: Option<JobId>,
    ) -> Result<Option<Task>, TaskError> {
        let Some(mut task) = self.get(id)? else {
            return Ok(None);
        };
        if task.last_fired_ms.is_some_and(|l| l >= due_ms) {
            return Ok(Some(task));
        }
        task.last_fired_ms = Some(due_ms);
        if job.is_some() {
            task.last_job = job;
            task.fired += 1;
        }
        task.next_due_ms = next_after(&task.schedule, now_ms.max(due_ms))?;
        let mut batch = Batch::new();
        match (&task.schedule, task.next_due_ms) {
            // A one-shot is done: keep nothing around.
            (Schedule::At { .. }, _) | (_, None) => batch.delete(Tree::Tasks, id),
            _ => batch.put(Tree::Tasks, id, &task)?,
        }
        self.store.commit(batch).await?;
        Ok(Some(task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1_2030_UTC: i64 = 1_893_456_000_000;

    #[test]
    fn parses_instants_and_cron() {
        assert_eq!(
            parse_when("2030-01-01T00:00:00Z", TaskZone::Utc, 0).unwrap(),
            Schedule::At {
                at_ms: JAN_1_2030_UTC
            }
        );
        assert_eq!(
            parse_when("2030-01-01T00:00Z", TaskZone::Utc, 0).unwrap(),
            Schedule::At {
                at_ms: JAN_1_2030_UTC
            }
        );
        assert!(matches!(
            parse_when("2020-01-01T00:00:00Z", TaskZone::Utc, JAN_1_2030_UTC),
            Err(TaskError::InThePast(_))
        ));
        assert!(matches!(
            parse_when("tomorrow", TaskZone::Utc, 0),
            Err(TaskError::BadWhen(_))
        ));
        let cron = parse_when("0 9 * * 1", TaskZone::Utc, JAN_1_2030_UTC).unwrap();
        // 2030-01-01 is a Tuesday: the next Monday 09:00 UTC is 2030-01-07.
        assert_eq!(
            next_after(&cron, JAN_1_2030_UTC).unwrap(),
            Some(JAN_1_2030_UTC + 6 * 86_400_000 + 9 * 3_600_000)
        );
    }

    #[test]
    fn zones() {
        assert_eq!(
            parse_zone("+02:00").unwrap(),
            TaskZone::Offset { minutes: 120 }
        );
        assert_eq!(
            parse_zone("-05:30").unwrap(),
            TaskZone::Offset { minutes: -330 }
        );
        assert_eq!(parse_zone("UTC").unwrap(), TaskZone::Utc);
        assert!(parse_zone("Mars/Olympus").is_err());
        let cron = Schedule::Cron {
            expr: "0 9 * * *".into(),
            tz: TaskZone::Offset { minutes: 120 },
        };
        // 09:00 at +02:00 is 07:00 UTC.
        assert_eq!(
            next_after(&cron, JAN_1_2030_UTC).unwrap(),
            Some(JAN_1_2030_UTC + 7 * 3_600_000)
        );
    }
}
