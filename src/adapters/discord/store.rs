//! The adapter's durable maps, in the store's `Adapter` tree under `discord/`: channel ↔ project
//! directory and per-channel settings, thread ↔ lane, slot (part chunk) → Discord message, the
//! event cursor, jobs still being rendered, handled message ids, the last message id seen per
//! channel, answers given through Discord, and the registered command hash.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{Batch, Store, StoreError, Tree};

const ROOT: &str = "discord/";

/// Handled message ids older than this are forgotten at start-up (backfill never looks back
/// further than a day of gap, and Discord's `enforce_nonce` window is minutes).
pub const SEEN_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Context messages kept per thread until the next turn (the oldest are dropped).
const MAX_CONTEXT_LINES: usize = 20;

/// A project channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub channel_id: u64,
    pub guild_id: u64,
    pub workspace_id: String,
    pub directory: String,
    pub name: String,
    #[serde(default)]
    pub verbosity: Option<String>,
    #[serde(default)]
    pub mention_mode: Option<bool>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
}

/// A thread with a session (or one the bot created).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadRecord {
    pub thread_id: u64,
    /// The project channel it lives in.
    pub channel_id: u64,
    pub guild_id: u64,
    /// The queue lane its jobs run in (`discord:<thread id>`, or a resumed thread's lane).
    pub lane: String,
    pub title: String,
    pub created_at: i64,
    pub last_activity_at: i64,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
}

/// Where a rendered slot lives in Discord and what it last showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    pub channel_id: u64,
    pub message_id: u64,
    pub hash: u64,
}

/// How a request was answered through Discord (clicks, time-outs, dismissals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerRecord {
    /// `once`, `always`, `reject`, `timeout`, `dismissed`, or `answered` (questions).
    pub outcome: String,
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub answers: Option<Vec<Vec<String>>>,
    pub at: i64,
}

/// Answers collected so far for a multi-question request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionProgress {
    pub answers: Vec<Option<Vec<String>>>,
}

/// A question waiting for a typed ("Other") answer in a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherAnswer {
    pub request_id: String,
    pub index: usize,
    pub count: usize,
}

/// Where a thread's session works when it was asked to run in a git worktree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeRecord {
    /// The worktree's name in git (`.worktrees/<name>`, branch `opencode/<name>` when kimaki
    /// made it).
    pub name: String,
    pub state: WorktreeState,
    /// The session's directory inside the worktree, once ready.
    #[serde(default)]
    pub workspace: Option<String>,
    /// Why it could not be created, shown once; the thread then works in the main checkout.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorktreeState {
    /// Being created (left so by a crash mid-way: the next message tries again).
    Pending,
    Ready,
    Failed,
}

/// A category the adapter created or adopted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Categories {
    pub ids: Vec<u64>,
}

/// Typed access to the adapter's keys; cheap to clone.
#[derive(Clone)]
pub struct DiscordStore {
    store: Store,
}

fn key(kind: &str, id: impl std::fmt::Display) -> String {
    format!("{ROOT}{kind}/{id}")
}

fn prefix(kind: &str) -> String {
    format!("{ROOT}{kind}/")
}

impl DiscordStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn get<V: DeserializeOwned>(&self, k: &str) -> Result<Option<V>, StoreError> {
        self.store.get(Tree::Adapter, k.as_bytes())
    }

    fn put<V: Serialize>(&self, k: &str, v: &V) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.put(Tree::Adapter, k.as_bytes(), v)?;
        self.store.apply(b)
    }

    /// `put`, then flush: for records a user-visible acknowledgement depends on.
    async fn put_durable<V: Serialize>(&self, k: &str, v: &V) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.put(Tree::Adapter, k.as_bytes(), v)?;
        self.store.commit(b).await
    }

    fn delete(&self, k: &str) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.delete(Tree::Adapter, k.as_bytes());
        self.store.apply(b)
    }

    fn scan<V: DeserializeOwned>(&self, kind: &str) -> Result<Vec<(String, V)>, StoreError> {
        let p = prefix(kind);
        Ok(self
            .store
            .scan_prefix::<V>(Tree::Adapter, p.as_bytes())?
            .into_iter()
            .map(|(k, v)| {
                let k = String::from_utf8_lossy(&k[p.len()..]).into_owned();
                (k, v)
            })
            .collect())
    }

    // ----- channels -----

    pub fn channel(&self, id: u64) -> Result<Option<ChannelRecord>, StoreError> {
        self.get(&key("channel", id))
    }

    pub fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        Ok(self.scan("channel")?.into_iter().map(|(_, v)| v).collect())
    }

    pub async fn put_channel(&self, c: &ChannelRecord) -> Result<(), StoreError> {
        self.put_durable(&key("channel", c.channel_id), c).await
    }

    pub fn delete_channel(&self, id: u64) -> Result<(), StoreError> {
        self.delete(&key("channel", id))
    }

    /// A project whose channel a user deleted: not recreated until `/add-project` asks.
    pub fn tombstoned(&self, workspace_id: &str) -> Result<bool, StoreError> {
        Ok(self.get::<i64>(&key("tombstone", workspace_id))?.is_some())
    }

    pub fn set_tombstone(&self, workspace_id: &str, on: bool, now: i64) -> Result<(), StoreError> {
        let k = key("tombstone", workspace_id);
        if on {
            self.put(&k, &now)
        } else {
            self.delete(&k)
        }
    }

    pub fn categories(&self, guild: u64) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .get::<Categories>(&key("category", guild))?
            .map(|c| c.ids)
            .unwrap_or_default())
    }

    pub fn set_categories(&self, guild: u64, ids: Vec<u64>) -> Result<(), StoreError> {
        self.put(&key("category", guild), &Categories { ids })
    }

    // ----- threads -----

    pub fn thread(&self, id: u64) -> Result<Option<ThreadRecord>, StoreError> {
        self.get(&key("thread", id))
    }

    pub fn threads(&self) -> Result<Vec<ThreadRecord>, StoreError> {
        Ok(self.scan("thread")?.into_iter().map(|(_, v)| v).collect())
    }

    /// Written before the job is enqueued, so a reply can always find its thread.
    pub async fn put_thread(&self, t: &ThreadRecord) -> Result<(), StoreError> {
        self.put_durable(&key("thread", t.thread_id), t).await
    }

    pub fn touch_thread(&self, t: &ThreadRecord) -> Result<(), StoreError> {
        self.put(&key("thread", t.thread_id), t)
    }

    pub fn delete_thread(&self, id: u64) -> Result<(), StoreError> {
        self.delete(&key("thread", id))
    }

    /// The thread showing a lane: the index written for threads the adapter opened for jobs
    /// from elsewhere, else the thread whose record names the lane.
    pub fn lane_thread(&self, lane: &str) -> Result<Option<ThreadRecord>, StoreError> {
        if let Some(id) = self.get::<u64>(&key("lane_thread", lane))? {
            if let Some(t) = self.thread(id)? {
                return Ok(Some(t));
            }
        }
        if let Some(id) = lane
            .strip_prefix("discord:")
            .and_then(|id| id.parse::<u64>().ok())
        {
            if let Some(t) = self.thread(id)?.filter(|t| t.lane == lane) {
                return Ok(Some(t));
            }
        }
        Ok(self.threads()?.into_iter().find(|t| t.lane == lane))
    }

    /// Records a thread opened for a lane, thread first, so the index never points at nothing.
    pub async fn put_lane_thread(&self, t: &ThreadRecord) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.put(Tree::Adapter, key("thread", t.thread_id).as_bytes(), t)?;
        b.put(
            Tree::Adapter,
            key("lane_thread", &t.lane).as_bytes(),
            &t.thread_id,
        )?;
        self.store.commit(b).await
    }

    /// The channel message a lane's thread is being started from (kept so a retry after a
    /// crash starts the thread from the same message instead of posting the prompt again).
    pub fn starter(&self, lane: &str) -> Result<Option<u64>, StoreError> {
        self.get(&key("starter", lane))
    }

    pub async fn put_starter(&self, lane: &str, message: u64) -> Result<(), StoreError> {
        self.put_durable(&key("starter", lane), &message).await
    }

    /// Messages addressed to other people in a session thread, for the agent's next turn.
    pub fn push_context(&self, thread: u64, line: String) -> Result<(), StoreError> {
        let k = key("context", thread);
        let mut lines: Vec<String> = self.get(&k)?.unwrap_or_default();
        lines.push(line);
        let excess = lines.len().saturating_sub(MAX_CONTEXT_LINES);
        lines.drain(..excess);
        self.put(&k, &lines)
    }

    pub fn take_context(&self, thread: u64) -> Result<Vec<String>, StoreError> {
        let k = key("context", thread);
        let lines: Vec<String> = self.get(&k)?.unwrap_or_default();
        if !lines.is_empty() {
            self.delete(&k)?;
        }
        Ok(lines)
    }

    /// The worktree a thread's session runs in, if it asked for one.
    pub fn thread_worktree(&self, thread: u64) -> Result<Option<WorktreeRecord>, StoreError> {
        self.get(&key("worktree", thread))
    }

    pub async fn put_thread_worktree(
        &self,
        thread: u64,
        w: &WorktreeRecord,
    ) -> Result<(), StoreError> {
        self.put_durable(&key("worktree", thread), w).await
    }

    /// Every thread's worktree (for `/worktrees`, which links threads to worktrees).
    pub fn thread_worktrees(&self) -> Result<Vec<(u64, WorktreeRecord)>, StoreError> {
        Ok(self
            .scan::<WorktreeRecord>("worktree")?
            .into_iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
            .collect())
    }

    /// Whether every new session of a channel starts in its own worktree.
    pub fn auto_worktrees(&self, channel: u64) -> Result<bool, StoreError> {
        Ok(self
            .get::<bool>(&key("auto_worktrees", channel))?
            .unwrap_or(false))
    }

    pub async fn set_auto_worktrees(&self, channel: u64, on: bool) -> Result<(), StoreError> {
        self.put_durable(&key("auto_worktrees", channel), &on).await
    }

    // ----- rendering -----

    pub fn slot(&self, slot: &str) -> Result<Option<SlotRecord>, StoreError> {
        self.get(&key("slot", slot))
    }

    pub fn put_slot(&self, slot: &str, r: &SlotRecord) -> Result<(), StoreError> {
        self.put(&key("slot", slot), r)
    }

    pub fn delete_slot(&self, slot: &str) -> Result<(), StoreError> {
        self.delete(&key("slot", slot))
    }

    pub fn cursor(&self) -> Result<u64, StoreError> {
        Ok(self.get::<u64>(&format!("{ROOT}cursor"))?.unwrap_or(0))
    }

    pub fn set_cursor(&self, c: u64) -> Result<(), StoreError> {
        self.put(&format!("{ROOT}cursor"), &c)
    }

    /// Jobs whose output is not fully in Discord yet (re-rendered at start-up).
    pub fn rendering_jobs(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .scan::<i64>("rjob")?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    pub fn set_rendering(&self, job: &str, on: bool, now: i64) -> Result<(), StoreError> {
        let k = key("rjob", job);
        if on {
            self.put(&k, &now)
        } else {
            self.delete(&k)
        }
    }

    // ----- inbound -----

    pub fn seen(&self, message: u64) -> Result<bool, StoreError> {
        Ok(self.get::<i64>(&key("seen", message))?.is_some())
    }

    pub fn mark_seen(&self, message: u64, now: i64) -> Result<(), StoreError> {
        self.put(&key("seen", message), &now)
    }

    /// Forgets handled message ids older than `SEEN_RETENTION_MS`; returns how many.
    pub fn prune_seen(&self, now: i64) -> Result<usize, StoreError> {
        let old: Vec<String> = self
            .scan::<i64>("seen")?
            .into_iter()
            .filter(|(_, at)| now - at > SEEN_RETENTION_MS)
            .map(|(k, _)| k)
            .collect();
        let mut b = Batch::new();
        for k in &old {
            b.delete(Tree::Adapter, key("seen", k).as_bytes());
        }
        self.store.apply(b)?;
        Ok(old.len())
    }

    pub fn last_seen(&self, channel: u64) -> Result<Option<u64>, StoreError> {
        self.get(&key("last_seen", channel))
    }

    /// Raises the channel's last seen message id (never lowers it).
    pub fn raise_last_seen(&self, channel: u64, message: u64) -> Result<(), StoreError> {
        if self.last_seen(channel)?.is_some_and(|m| m >= message) {
            return Ok(());
        }
        self.put(&key("last_seen", channel), &message)
    }

    // ----- interactions -----

    pub fn answer(&self, request: &str) -> Result<Option<AnswerRecord>, StoreError> {
        self.get(&key("answer", request))
    }

    pub async fn put_answer(&self, request: &str, a: &AnswerRecord) -> Result<(), StoreError> {
        self.put_durable(&key("answer", request), a).await
    }

    pub fn question_progress(&self, request: &str) -> Result<QuestionProgress, StoreError> {
        Ok(self.get(&key("qprogress", request))?.unwrap_or_default())
    }

    pub fn put_question_progress(
        &self,
        request: &str,
        p: &QuestionProgress,
    ) -> Result<(), StoreError> {
        self.put(&key("qprogress", request), p)
    }

    pub fn other_answer(&self, thread: u64) -> Result<Option<OtherAnswer>, StoreError> {
        self.get(&key("qother", thread))
    }

    pub fn set_other_answer(&self, thread: u64, o: Option<&OtherAnswer>) -> Result<(), StoreError> {
        let k = key("qother", thread);
        match o {
            Some(o) => self.put(&k, o),
            None => self.delete(&k),
        }
    }

    // ----- setup -----

    pub fn commands_hash(&self, guild: u64) -> Result<Option<String>, StoreError> {
        self.get(&key("commands_hash", guild))
    }

    pub fn set_commands_hash(&self, guild: u64, hash: &str) -> Result<(), StoreError> {
        self.put(&key("commands_hash", guild), &hash)
    }
}
