//! Outbound: one ordered worker per channel that makes Discord show what the renderer wants.
//!
//! The renderer hands over *slots* — "message `key` in channel `c` should read `content`". A
//! worker posts a slot once (POST with a nonce derived from the key and `enforce_nonce`, so a
//! retry or a restart can never post it twice), edits it when the wanted content changes (a
//! message still growing at most once per `edit_interval`, which is what makes live streaming
//! affordable; final contents at once, before any later message is posted), and
//! records `key → message id, content hash` in the store, so a replay after a restart changes
//! nothing that is already right.
//!
//! Failures: a 429 pauses this channel for `retry_after` (a global one pauses every channel);
//! 5xx, timeouts and network errors retry with capped exponential backoff; a request Discord
//! rejects is logged once and dropped. A slow or rate-limited channel never blocks another: each
//! worker has its own task and queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::rest::{code, Rest, RestError};
use super::store::{DiscordStore, SlotRecord};

/// Ops waiting for one channel's worker: a burst of streaming deltas for one thread is a few
/// dozen; the sender waits (backpressure) beyond this.
const CHANNEL_OPS_CAPACITY: usize = 256;

/// SUPPRESS_EMBEDS: agent output links never unfurl into previews.
const FLAG_SUPPRESS_EMBEDS: u64 = 1 << 2;
/// SUPPRESS_NOTIFICATIONS: only footers, prompts and errors ping the thread.
const FLAG_SUPPRESS_NOTIFICATIONS: u64 = 1 << 12;

/// After posting, Discord clears the typing indicator; re-pulse this long after a post.
const TYPING_REPULSE_AFTER_POST: Duration = Duration::from_millis(500);

/// How a worker paces itself and retries.
#[derive(Debug, Clone)]
pub struct OutboundTimings {
    /// Minimum spacing of edits to one message while it is still growing (streaming).
    pub edit_interval: Duration,
    /// Typing indicator re-arm period (Discord shows it for 10 s).
    pub typing_interval: Duration,
    /// First retry delay after a 5xx or network error; doubles per attempt.
    pub retry_base: Duration,
    /// Cap of the retry delay.
    pub retry_max: Duration,
    /// Attempts before an op is abandoned (and logged).
    pub max_attempts: u32,
    /// A worker with nothing to do exits after this long.
    pub idle_exit: Duration,
}

impl Default for OutboundTimings {
    fn default() -> Self {
        Self {
            edit_interval: Duration::from_millis(1200),
            typing_interval: Duration::from_secs(7),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            max_attempts: 8,
            idle_exit: Duration::from_secs(120),
        }
    }
}

/// A message the renderer wants in a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Stable identity across restarts, e.g. `<job>/t/<part>/<chunk>`.
    pub key: String,
    pub content: String,
    /// Action rows (JSON); `None` means no components.
    pub components: Option<Value>,
    /// Footers, prompts, questions and errors notify; everything else is silent.
    pub notify: bool,
    /// Post as a reply to this message (only at creation).
    pub reply_to: Option<u64>,
    /// Still growing: edits may be coalesced.
    pub streaming: bool,
}

impl Slot {
    pub fn new(key: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            content: content.into(),
            components: None,
            notify: false,
            reply_to: None,
            streaming: false,
        }
    }

    /// Hash of what Discord shows: content and components.
    pub fn hash(&self) -> u64 {
        let mut h = fnv1a(self.content.as_bytes());
        if let Some(c) = &self.components {
            h ^= fnv1a(c.to_string().as_bytes()).rotate_left(1);
        }
        h
    }
}

/// FNV-1a: a stable (cross-version) 64-bit hash for content and nonces.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Discord nonces are ≤ 25 characters: the key's hash in base 36.
pub fn nonce_for(key: &str) -> String {
    let mut n = fnv1a(key.as_bytes());
    let mut out = Vec::new();
    while n > 0 {
        let d = (n % 36) as u8;
        out.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        n /= 36;
    }
    out.reverse();
    format!("k{}", String::from_utf8_lossy(&out))
}

/// What a worker is asked to do.
#[derive(Debug)]
pub enum ChannelOp {
    /// Make the slot show this.
    Upsert(Slot),
    /// Remove the slot's message.
    Delete(String),
    /// Keep (or stop) the typing indicator going.
    Typing(bool),
    /// The message was changed by other means (an interaction update): remember its content.
    Shown {
        key: String,
        message_id: u64,
        hash: u64,
    },
    /// Fires once no slot whose key starts with `prefix` is waiting.
    Barrier {
        prefix: String,
        done: oneshot::Sender<()>,
    },
}

/// Something the adapter must know about a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundNotice {
    /// The channel is gone (404 Unknown Channel).
    ChannelGone(u64),
}

/// Cheap-to-clone handle on the per-channel workers.
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<Inner>,
}

struct Inner {
    rest: Rest,
    store: DiscordStore,
    timings: OutboundTimings,
    workers: Mutex<HashMap<u64, mpsc::Sender<ChannelOp>>>,
    /// A global 429 pauses every worker until then.
    global_block: Mutex<Option<Instant>>,
    notices: mpsc::Sender<OutboundNotice>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Outbound {
    pub fn new(
        rest: Rest,
        store: DiscordStore,
        timings: OutboundTimings,
        notices: mpsc::Sender<OutboundNotice>,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                rest,
                store,
                timings,
                workers: Mutex::new(HashMap::new()),
                global_block: Mutex::new(None),
                notices,
                cancel,
                tracker,
            }),
        }
    }

    pub fn rest(&self) -> &Rest {
        &self.inner.rest
    }

    /// Queues an op for `channel`'s worker (starting one if needed).
    pub async fn send(&self, channel: u64, op: ChannelOp) {
        let mut op = op;
        // A worker that just exited for idleness drops its receiver: start a new one and resend.
        for _ in 0..2 {
            if self.inner.cancel.is_cancelled() {
                return;
            }
            let tx = self.worker(channel);
            match tx.send(op).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => {
                    self.forget_worker(channel, &tx);
                    op = back;
                }
            }
        }
        tracing::warn!(channel, "Outbound worker kept exiting; op dropped.");
    }

    /// Waits until every slot with this key prefix is in Discord (or abandoned); `false` when
    /// the worker stopped first (shutdown), so the caller must not consider them delivered.
    pub async fn flushed(&self, channel: u64, prefix: String) -> bool {
        let (done, rx) = oneshot::channel();
        self.send(channel, ChannelOp::Barrier { prefix, done })
            .await;
        rx.await.is_ok()
    }

    fn worker(&self, channel: u64) -> mpsc::Sender<ChannelOp> {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = workers.get(&channel).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(CHANNEL_OPS_CAPACITY);
        workers.insert(channel, tx.clone());
        let worker = Worker::new(self.clone(), channel, rx);
        self.inner.tracker.spawn(worker.run());
        tx
    }

    fn forget_worker(&self, channel: u64, tx: &mpsc::Sender<ChannelOp>) {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|p| p.into_inner());
        if workers.get(&channel).is_some_and(|t| t.same_channel(tx)) {
            workers.remove(&channel);
        }
    }

    fn global_block(&self) -> Option<Instant> {
        *self
            .inner
            .global_block
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn set_global_block(&self, until: Instant) {
        let mut g = self
            .inner
            .global_block
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if g.is_none_or(|t| t < until) {
            *g = Some(until);
        }
    }
}

#[derive(Debug, Default)]
struct SlotState {
    desired: Option<Slot>,
    /// `(message id, hash)` of what Discord shows.
    posted: Option<(u64, u64)>,
    loaded: bool,
    delete: bool,
    last_edit: Option<Instant>,
    attempts: u32,
    next_try: Option<Instant>,
    /// An archived thread refused an edit once; it was unarchived.
    unarchived: bool,
}

/// Discord rate-limits each route separately: a channel whose posts are exhausted can still edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Post = 0,
    Edit = 1,
    Delete = 2,
    Typing = 3,
}

impl SlotState {
    fn route(&self) -> Route {
        if self.delete {
            Route::Delete
        } else if self.posted.is_none() {
            Route::Post
        } else {
            Route::Edit
        }
    }
}

enum Next {
    Sync(String),
    Typing,
    Wait(Instant),
    Idle,
}

struct Worker {
    out: Outbound,
    channel: u64,
    rx: mpsc::Receiver<ChannelOp>,
    slots: HashMap<String, SlotState>,
    /// Keys waiting for a sync, in arrival order (POSTs go out in this order).
    dirty: Vec<String>,
    typing: bool,
    last_typing: Option<Instant>,
    last_post: Option<Instant>,
    /// Per route: no request before this (429 `retry_after`, or a bucket with none remaining).
    blocked_until: [Option<Instant>; 4],
    barriers: Vec<(String, oneshot::Sender<()>)>,
    /// Discord refused access (403): drop everything until the worker restarts.
    forbidden: bool,
}

impl Worker {
    fn new(out: Outbound, channel: u64, rx: mpsc::Receiver<ChannelOp>) -> Self {
        Self {
            out,
            channel,
            rx,
            slots: HashMap::new(),
            dirty: Vec::new(),
            typing: false,
            last_typing: None,
            last_post: None,
            blocked_until: [None; 4],
            barriers: Vec::new(),
            forbidden: false,
        }
    }

    async fn run(mut self) {
        let cancel = self.out.inner.cancel.clone();
        let idle_exit = self.out.inner.timings.idle_exit;
        loop {
            while let Ok(op) = self.rx.try_recv() {
                self.apply(op);
            }
            self.fire_barriers();
            match self.next(Instant::now()) {
                Next::Sync(key) => self.sync(key).await,
                Next::Typing => self.send_typing().await,
                Next::Wait(until) => {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        op = self.rx.recv() => match op {
                            Some(op) => self.apply(op),
                            None => return,
                        },
                        _ = tokio::time::sleep_until(until) => {}
                    }
                }
                Next::Idle => {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        op = self.rx.recv() => match op {
                            Some(op) => self.apply(op),
                            None => return,
                        },
                        _ = tokio::time::sleep(idle_exit) => {
                            if self.rx.is_empty() && self.dirty.is_empty() && !self.typing {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    fn apply(&mut self, op: ChannelOp) {
        match op {
            ChannelOp::Upsert(slot) => {
                if self.forbidden {
                    return;
                }
                let key = slot.key.clone();
                let state = self.slots.entry(key.clone()).or_default();
                state.delete = false;
                state.desired = Some(slot);
                if !self.dirty.contains(&key) {
                    self.dirty.push(key);
                }
            }
            ChannelOp::Delete(key) => {
                let state = self.slots.entry(key.clone()).or_default();
                state.delete = true;
                state.desired = None;
                if !self.dirty.contains(&key) {
                    self.dirty.push(key);
                }
            }
            ChannelOp::Typing(on) => {
                self.typing = on;
                if on {
                    self.last_typing = None;
                }
            }
            ChannelOp::Shown {
                key,
                message_id,
                hash,
            } => {
                let state = self.slots.entry(key.clone()).or_default();
                state.loaded = true;
                state.posted = Some((message_id, hash));
                let record = SlotRecord {
                    channel_id: self.channel,
                    message_id,
                    hash,
                };
                if let Err(e) = self.out.inner.store.put_slot(&key, &record) {
                    tracing::warn!(error = %e, "Could not record a message id.");
                }
            }
            ChannelOp::Barrier { prefix, done } => self.barriers.push((prefix, done)),
        }
    }

    fn fire_barriers(&mut self) {
        let dirty = &self.dirty;
        let mut i = 0;
        while i < self.barriers.len() {
            if dirty.iter().any(|k| k.starts_with(&self.barriers[i].0)) {
                i += 1;
            } else {
                let (_, done) = self.barriers.swap_remove(i);
                let _ = done.send(());
            }
        }
    }

    fn next(&mut self, now: Instant) -> Next {
        if let Some(until) = self.out.global_block().filter(|t| *t > now) {
            return Next::Wait(until);
        }
        let blocked = |route: Route| self.blocked_until[route as usize].filter(|t| *t > now);
        let mut wake: Option<Instant> = None;
        let mut earlier_post_waiting = false;
        let interval = self.out.inner.timings.edit_interval;
        for key in &self.dirty {
            let Some(state) = self.slots.get(key) else {
                continue;
            };
            let route = if state.loaded {
                state.route()
            } else {
                Route::Post
            };
            let not_before = state
                .next_try
                .filter(|t| *t > now)
                .into_iter()
                .chain(blocked(route))
                .max();
            if let Some(t) = not_before {
                wake = Some(wake.map_or(t, |w| w.min(t)));
                if route == Route::Post {
                    // Later posts wait too: messages appear in order.
                    earlier_post_waiting = true;
                }
                continue;
            }
            if route == Route::Post {
                if earlier_post_waiting {
                    continue;
                }
                return Next::Sync(key.clone());
            }
            // Deletes and final contents go out at once (in order, before later posts); only a
            // message still growing is paced, which coalesces its deltas into few edits.
            let growing = state.desired.as_ref().is_some_and(|d| d.streaming);
            if route == Route::Delete || !growing {
                return Next::Sync(key.clone());
            }
            match state.last_edit.map(|t| t + interval).filter(|t| *t > now) {
                Some(t) => wake = Some(wake.map_or(t, |w| w.min(t))),
                None => return Next::Sync(key.clone()),
            }
        }
        if self.typing {
            let timings = &self.out.inner.timings;
            let due = match self.last_typing {
                None => now,
                Some(t) => {
                    let rearm = t + timings.typing_interval;
                    match self.last_post.filter(|p| *p > t) {
                        Some(p) => rearm.min(p + TYPING_REPULSE_AFTER_POST),
                        None => rearm,
                    }
                }
            };
            let due = blocked(Route::Typing).map_or(due, |b| b.max(due));
            if due <= now {
                return Next::Typing;
            }
            wake = Some(wake.map_or(due, |w| w.min(due)));
        }
        match wake {
            Some(t) => Next::Wait(t),
            None => Next::Idle,
        }
    }

    fn load(&mut self, key: &str) {
        let Some(state) = self.slots.get_mut(key) else {
            return;
        };
        if state.loaded {
            return;
        }
        state.loaded = true;
        match self.out.inner.store.slot(key) {
            Ok(Some(r)) => state.posted = Some((r.message_id, r.hash)),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "Could not read a message id; posting again."),
        }
    }

    fn done(&mut self, key: &str) {
        self.dirty.retain(|k| k != key);
        if let Some(s) = self.slots.get_mut(key) {
            s.attempts = 0;
            s.next_try = None;
        }
    }

    async fn sync(&mut self, key: String) {
        self.load(&key);
        let Some(state) = self.slots.get(&key) else {
            self.done(&key);
            return;
        };
        let channel = self.channel;
        let result = if state.delete {
            match state.posted {
                Some((message_id, _)) => {
                    let path = format!("/channels/{channel}/messages/{message_id}");
                    self.out
                        .inner
                        .rest
                        .call(Method::DELETE, &path, None)
                        .await
                        .map(|_| ())
                }
                None => Ok(()),
            }
        } else {
            let Some(desired) = state.desired.clone() else {
                self.done(&key);
                return;
            };
            let hash = desired.hash();
            match state.posted {
                Some((_, h)) if h == hash => {
                    self.done(&key);
                    return;
                }
                Some((message_id, _)) => self.edit(&key, message_id, &desired, hash).await,
                None => self.post(&key, &desired, hash).await,
            }
        };
        match result {
            Ok(()) => {
                if self.slots.get(&key).is_some_and(|s| s.delete) {
                    if let Err(e) = self.out.inner.store.delete_slot(&key) {
                        tracing::warn!(error = %e, "Could not forget a deleted message.");
                    }
                    self.slots.remove(&key);
                }
                self.done(&key);
            }
            Err(e) => self.failed(key, e).await,
        }
    }

    fn message_body(desired: &Slot, create: bool) -> Value {
        let mut body = json!({
            "content": desired.content,
            "allowed_mentions": {"parse": ["users"], "replied_user": false},
            "components": desired.components.clone().unwrap_or_else(|| json!([])),
        });
        if create {
            let mut flags = FLAG_SUPPRESS_EMBEDS;
            if !desired.notify {
                flags |= FLAG_SUPPRESS_NOTIFICATIONS;
            }
            body["flags"] = json!(flags);
            body["nonce"] = json!(nonce_for(&desired.key));
            body["enforce_nonce"] = json!(true);
            body["tts"] = json!(false);
            if let Some(m) = desired.reply_to {
                body["message_reference"] =
                    json!({"message_id": m.to_string(), "fail_if_not_exists": false});
            }
        }
        body
    }

    async fn post(&mut self, key: &str, desired: &Slot, hash: u64) -> Result<(), RestError> {
        let path = format!("/channels/{}/messages", self.channel);
        let body = Self::message_body(desired, true);
        let reply = self
            .out
            .inner
            .rest
            .call(Method::POST, &path, Some(&body))
            .await?;
        self.note_budget(Route::Post, reply.exhausted_for);
        let message_id = reply
            .body
            .as_ref()
            .and_then(|b| b.get("id"))
            .and_then(|v| {
                v.as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| v.as_u64())
            })
            .ok_or_else(|| RestError::Network("the answer carried no message id".to_owned()))?;
        let record = SlotRecord {
            channel_id: self.channel,
            message_id,
            hash,
        };
        if let Err(e) = self.out.inner.store.put_slot(key, &record) {
            tracing::warn!(error = %e, "Could not record a posted message id.");
        }
        self.last_post = Some(Instant::now());
        if let Some(s) = self.slots.get_mut(key) {
            s.posted = Some((message_id, hash));
            s.last_edit = Some(Instant::now());
        }
        Ok(())
    }

    async fn edit(
        &mut self,
        key: &str,
        message_id: u64,
        desired: &Slot,
        hash: u64,
    ) -> Result<(), RestError> {
        let path = format!("/channels/{}/messages/{message_id}", self.channel);
        let body = Self::message_body(desired, false);
        let reply = self
            .out
            .inner
            .rest
            .call(Method::PATCH, &path, Some(&body))
            .await?;
        self.note_budget(Route::Edit, reply.exhausted_for);
        let record = SlotRecord {
            channel_id: self.channel,
            message_id,
            hash,
        };
        if let Err(e) = self.out.inner.store.put_slot(key, &record) {
            tracing::warn!(error = %e, "Could not record an edited message.");
        }
        if let Some(s) = self.slots.get_mut(key) {
            s.posted = Some((message_id, hash));
            s.last_edit = Some(Instant::now());
        }
        Ok(())
    }

    fn note_budget(&mut self, route: Route, exhausted_for: Option<Duration>) {
        if let Some(d) = exhausted_for {
            self.blocked_until[route as usize] = Some(Instant::now() + d);
        }
    }

    async fn send_typing(&mut self) {
        self.last_typing = Some(Instant::now());
        let path = format!("/channels/{}/typing", self.channel);
        match self.out.inner.rest.call(Method::POST, &path, None).await {
            Ok(reply) => self.note_budget(Route::Typing, reply.exhausted_for),
            Err(RestError::RateLimited {
                retry_after,
                global,
            }) => self.rate_limited(Route::Typing, retry_after, global),
            Err(e) => tracing::debug!(channel = self.channel, error = %e, "Typing failed."),
        }
    }

    fn rate_limited(&mut self, route: Route, retry_after: Duration, global: bool) {
        let until = Instant::now() + retry_after;
        if global {
            self.out.set_global_block(until);
        }
        self.blocked_until[route as usize] = Some(until);
        tracing::info!(
            channel = self.channel,
            retry_after_ms = retry_after.as_millis() as u64,
            global,
            "Discord rate limit; this channel waits."
        );
    }

    async fn failed(&mut self, key: String, e: RestError) {
        let channel = self.channel;
        match &e {
            RestError::RateLimited {
                retry_after,
                global,
            } => {
                let route = self.slots.get(&key).map_or(Route::Post, SlotState::route);
                self.rate_limited(route, *retry_after, *global);
                return;
            }
            RestError::Server { .. } | RestError::Network(_) => {
                let timings = &self.out.inner.timings;
                let Some(state) = self.slots.get_mut(&key) else {
                    return;
                };
                state.attempts += 1;
                if state.attempts >= timings.max_attempts {
                    tracing::error!(channel, slot = %key, error = %e, attempts = state.attempts, "Gave up on a Discord message after repeated failures.");
                    self.done(&key);
                    return;
                }
                let factor = 1u32 << state.attempts.min(16);
                let delay = timings
                    .retry_base
                    .saturating_mul(factor)
                    .min(timings.retry_max);
                state.next_try = Some(Instant::now() + delay);
                tracing::warn!(channel, slot = %key, error = %e, retry_in_ms = delay.as_millis() as u64, "Discord request failed; retrying.");
                return;
            }
            RestError::Rejected { .. } => {}
        }
        match e.code() {
            Some(code::UNKNOWN_CHANNEL) => {
                tracing::warn!(
                    channel,
                    "The channel is gone; dropping its pending messages."
                );
                self.dirty.clear();
                self.typing = false;
                let _ = self
                    .out
                    .inner
                    .notices
                    .try_send(OutboundNotice::ChannelGone(channel));
            }
            Some(code::UNKNOWN_MESSAGE) => {
                // Someone deleted the message: do not repost it, just stop tracking it.
                tracing::info!(channel, slot = %key, "A rendered message was deleted in Discord.");
                let _ = self.out.inner.store.delete_slot(&key);
                self.slots.remove(&key);
                self.done(&key);
            }
            Some(code::ARCHIVED_THREAD) if !self.slots.get(&key).is_some_and(|s| s.unarchived) => {
                // Editing needs the thread open; posting would reopen it, editing does not.
                if let Some(s) = self.slots.get_mut(&key) {
                    s.unarchived = true;
                }
                let path = format!("/channels/{channel}");
                let body = json!({"archived": false});
                if let Err(e) = self
                    .out
                    .inner
                    .rest
                    .call(Method::PATCH, &path, Some(&body))
                    .await
                {
                    tracing::warn!(channel, error = %e, "Could not unarchive a thread to edit it.");
                    self.done(&key);
                }
            }
            Some(code::MISSING_ACCESS | code::MISSING_PERMISSIONS) => {
                tracing::error!(channel, error = %e, "Discord denies the bot access to this channel; its messages are dropped until access is restored.");
                self.forbidden = true;
                self.dirty.clear();
                self.typing = false;
            }
            _ => {
                tracing::error!(channel, slot = %key, error = %e, "Discord rejected a message; dropped.");
                self.done(&key);
            }
        }
    }
}
