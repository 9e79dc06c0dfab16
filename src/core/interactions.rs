//! Pending permission requests and questions, persisted with the event that raised them so an
//! answer can still arrive after a restart, and answered at most once.

use serde::{Deserialize, Serialize};

use super::events::{EventKind, PermissionResolution, Question};
use super::ids::{JobId, LaneId, RequestId};
use crate::store::{self, Batch, Store, Tree};

const PENDING: &str = "pending";
const DONE: &str = "done";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InteractionKind {
    Permission {
        tool: String,
        title: Option<String>,
        patterns: Vec<String>,
        input: serde_json::Value,
    },
    Question {
        questions: Vec<Question>,
    },
}

/// A request waiting for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingInteraction {
    pub request_id: RequestId,
    pub job_id: JobId,
    pub lane: LaneId,
    pub kind: InteractionKind,
    pub created_at: i64,
}

/// How a finished interaction ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Resolution {
    Permission { resolution: PermissionResolution },
    Question { answers: Option<Vec<Vec<String>>> },
}

/// Where a request id stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Pending(PendingInteraction),
    Resolved(Resolution),
    Unknown,
}

fn pending_key(id: &RequestId) -> Vec<u8> {
    store::key2(PENDING, id.as_str().as_bytes())
}

fn done_key(id: &RequestId) -> Vec<u8> {
    store::key2(DONE, id.as_str().as_bytes())
}

/// Adds the interaction bookkeeping that `kind` implies to `batch` (nothing for other kinds).
pub(crate) fn record(
    batch: &mut Batch,
    job_id: &JobId,
    lane: &LaneId,
    kind: &EventKind,
) -> store::Result<()> {
    let now = super::clock::now_ms();
    match kind {
        EventKind::PermissionRequested {
            request_id,
            tool,
            title,
            input,
            patterns,
        } => batch.put(
            Tree::Interactions,
            pending_key(request_id),
            &PendingInteraction {
                request_id: request_id.clone(),
                job_id: job_id.clone(),
                lane: lane.clone(),
                kind: InteractionKind::Permission {
                    tool: tool.clone(),
                    title: title.clone(),
                    patterns: patterns.clone(),
                    input: input.clone(),
                },
                created_at: now,
            },
        ),
        EventKind::QuestionAsked {
            request_id,
            questions,
        } => batch.put(
            Tree::Interactions,
            pending_key(request_id),
            &PendingInteraction {
                request_id: request_id.clone(),
                job_id: job_id.clone(),
                lane: lane.clone(),
                kind: InteractionKind::Question {
                    questions: questions.clone(),
                },
                created_at: now,
            },
        ),
        EventKind::PermissionResolved {
            request_id,
            resolution,
        } => {
            batch.delete(Tree::Interactions, pending_key(request_id));
            batch.put(
                Tree::Interactions,
                done_key(request_id),
                &Resolution::Permission {
                    resolution: *resolution,
                },
            )
        }
        EventKind::QuestionResolved {
            request_id,
            answers,
        } => {
            batch.delete(Tree::Interactions, pending_key(request_id));
            batch.put(
                Tree::Interactions,
                done_key(request_id),
                &Resolution::Question {
                    answers: answers.clone(),
                },
            )
        }
        _ => Ok(()),
    }
}

pub fn lookup(store: &Store, id: &RequestId) -> store::Result<Lookup> {
    if let Some(p) = store.get(Tree::Interactions, pending_key(id))? {
        return Ok(Lookup::Pending(p));
    }
    if let Some(r) = store.get(Tree::Interactions, done_key(id))? {
        return Ok(Lookup::Resolved(r));
    }
    Ok(Lookup::Unknown)
}

/// Every interaction still waiting for an answer.
pub fn pending(store: &Store) -> store::Result<Vec<PendingInteraction>> {
    Ok(store
        .scan_prefix(Tree::Interactions, store::prefix_of(PENDING))?
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}
