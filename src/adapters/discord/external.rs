//! Sessions that start outside Discord (`kimaki send`, scheduled tasks, a mesh dispatch that asks
//! for a mirror) shown in Discord. The prompt never travels through Discord: it is enqueued
//! directly, and its job carries a reply address this module writes (or, for a mirrored mesh
//! job, derives from the job's directory). For a new session the address asks for a thread
//! (`create_thread`), which the sink opens when it first renders the job — the bot posts the
//! prompt in the project channel and starts the thread from that message — whether the job was
//! queued through the daemon or straight into the store while kimaki was stopped. The thread is
//! recorded against the job's lane, so a later `send --thread`, `send --session` or a message
//! typed in the thread continues the same session.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::outbound::nonce_for;
use super::render;
use super::rest::{code, Rest, RestError};
use super::sink::{Address, ADAPTER};
use super::store::{ChannelRecord, DiscordStore, ThreadRecord};
use crate::core::{clock, JobRecord, JobSource, ReplyTo};
use crate::store::{Store, StoreError};

/// Who the prompt is shown as (`» **kimaki-cli:** …`).
pub const CLI_AUTHOR: &str = "kimaki-cli";

/// Who a mirrored mesh job's prompt is shown as.
pub const MESH_AUTHOR: &str = "mesh";

/// `Job::meta` key of the surfaces a job asks to be shown on (a mesh dispatch's `mirror`).
pub const MIRROR_META: &str = "mirror";

/// A thread name from a prompt keeps this many characters, then `...` (Discord allows 100).
const NAME_CHARS: usize = 77;

/// Thread names are cut to this.
const MAX_NAME_CHARS: usize = 100;

/// Thread auto-archive (minutes): one day, like threads started by a message.
const AUTO_ARCHIVE_MINUTES: u64 = 1440;

/// Attempts at posting the starter message and starting the thread (429, 5xx, network).
const OPEN_ATTEMPTS: u32 = 6;
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(15);

/// SUPPRESS_EMBEDS: a prompt with links must not unfurl.
const FLAG_SUPPRESS_EMBEDS: u64 = 1 << 2;

/// What this adapter adds to `Address` for jobs from elsewhere (read from the same object, so
/// addresses written by older versions still parse).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalFlags {
    /// The thread does not exist yet: open it in `channel` before rendering.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_thread: bool,
    /// The name of the thread to open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The prompt did not come from Discord: show it in the thread before the reply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub echo: bool,
}

impl ExternalFlags {
    pub fn of(address: &serde_json::Value) -> Self {
        serde_json::from_value(address.clone()).unwrap_or_default()
    }
}

/// A project channel on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTarget {
    pub channel: u64,
    pub guild: u64,
    pub directory: PathBuf,
}

/// A thread with a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadTarget {
    pub thread: u64,
    pub channel: u64,
    pub guild: u64,
    /// The queue lane its jobs run in.
    pub lane: String,
    /// The project channel's directory.
    pub directory: Option<PathBuf>,
}

/// Read access to the adapter's channel and thread maps for local requests; works on the store
/// alone, so it answers while kimaki is stopped too.
#[derive(Clone)]
pub struct DiscordSessions {
    store: DiscordStore,
}

impl DiscordSessions {
    pub fn new(store: Store) -> Self {
        Self {
            store: DiscordStore::new(store),
        }
    }

    pub fn channel(&self, id: u64) -> Result<Option<ChannelTarget>, StoreError> {
        Ok(self.store.channel(id)?.map(channel_target))
    }

    /// The project channel of a directory (the first one, if several guilds show it).
    pub fn channel_for_directory(&self, dir: &Path) -> Result<Option<ChannelTarget>, StoreError> {
        Ok(self
            .store
            .channels()?
            .into_iter()
            .filter(|c| Path::new(&c.directory) == dir)
            .min_by_key(|c| c.channel_id)
            .map(channel_target))
    }

    pub fn thread(&self, id: u64) -> Result<Option<ThreadTarget>, StoreError> {
        match self.store.thread(id)? {
            Some(t) => Ok(Some(self.thread_target(t)?)),
            None => Ok(None),
        }
    }

    /// The thread that shows a lane, if any.
    pub fn thread_for_lane(&self, lane: &str) -> Result<Option<ThreadTarget>, StoreError> {
        match self.store.lane_thread(lane)? {
            Some(t) => Ok(Some(self.thread_target(t)?)),
            None => Ok(None),
        }
    }

    fn thread_target(&self, t: ThreadRecord) -> Result<ThreadTarget, StoreError> {
        let directory = self
            .store
            .channel(t.channel_id)?
            .map(|c| PathBuf::from(c.directory));
        Ok(ThreadTarget {
            thread: t.thread_id,
            channel: t.channel_id,
            guild: t.guild_id,
            lane: t.lane,
            directory,
        })
    }
}

/// Where a new session's output goes: a thread the adapter opens in `channel`, named `name` or
/// after the prompt.
pub fn reply_in_new_thread(channel: &ChannelTarget, name: Option<&str>, prompt: &str) -> ReplyTo {
    let address = Address {
        guild: channel.guild.to_string(),
        channel: channel.channel.to_string(),
        thread: String::new(),
        message: None,
        author: Some(CLI_AUTHOR.to_owned()),
        mode: None,
    };
    let flags = ExternalFlags {
        create_thread: true,
        title: Some(match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => render::truncate_chars(n, MAX_NAME_CHARS),
            None => thread_name(prompt),
        }),
        echo: false,
    };
    reply_to(&address, &flags)
}

/// Where a continued session's output goes: its thread, with the prompt shown first.
pub fn reply_in_thread(thread: &ThreadTarget) -> ReplyTo {
    let address = Address {
        guild: thread.guild.to_string(),
        channel: thread.channel.to_string(),
        thread: thread.thread.to_string(),
        message: None,
        author: Some(CLI_AUTHOR.to_owned()),
        mode: None,
    };
    let flags = ExternalFlags {
        echo: true,
        ..ExternalFlags::default()
    };
    reply_to(&address, &flags)
}

fn reply_to(address: &Address, flags: &ExternalFlags) -> ReplyTo {
    let mut value = serde_json::to_value(address).unwrap_or_else(|_| json!({}));
    if let (Some(obj), Ok(serde_json::Value::Object(extra))) =
        (value.as_object_mut(), serde_json::to_value(flags))
    {
        obj.extend(extra);
    }
    ReplyTo {
        adapter: ADAPTER.to_owned(),
        address: value,
    }
}

/// A job from elsewhere that asks to be shown in Discord (its `mirror` metadata lists this
/// adapter, as a mesh dispatch's `spec.mirror` does): it goes into a new thread of the project
/// channel its directory lies in (the deepest one), or nowhere if there is none.
pub(super) fn mirror_address(
    store: &DiscordStore,
    record: &JobRecord,
) -> Option<(Address, ExternalFlags)> {
    let asked = record
        .job
        .meta
        .get(MIRROR_META)
        .and_then(|v| v.as_array())
        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(ADAPTER)));
    if !asked {
        return None;
    }
    let channel = store
        .channels()
        .ok()?
        .into_iter()
        .filter(|c| record.job.workspace.starts_with(&c.directory))
        .max_by_key(|c| (c.directory.len(), std::cmp::Reverse(c.channel_id)))?;
    let author = match record.job.source {
        JobSource::Mesh => MESH_AUTHOR,
        _ => CLI_AUTHOR,
    };
    let address = Address {
        guild: channel.guild_id.to_string(),
        channel: channel.channel_id.to_string(),
        thread: String::new(),
        message: None,
        author: Some(author.to_owned()),
        mode: None,
    };
    let flags = ExternalFlags {
        create_thread: true,
        title: Some(thread_name(&record.job.prompt)),
        echo: false,
    };
    Some((address, flags))
}

fn channel_target(c: ChannelRecord) -> ChannelTarget {
    ChannelTarget {
        channel: c.channel_id,
        guild: c.guild_id,
        directory: PathBuf::from(c.directory),
    }
}

/// A thread name from a prompt: whitespace collapsed, at most 77 characters and `...`.
pub fn thread_name(prompt: &str) -> String {
    let collapsed = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return "kimaki thread".to_owned();
    }
    if collapsed.chars().count() <= NAME_CHARS + 3 {
        return collapsed;
    }
    let cut: String = collapsed.chars().take(NAME_CHARS).collect();
    format!("{}...", cut.trim_end())
}

/// How the prompt reads in Discord: `» **kimaki-cli:** …`, within one message.
pub fn prompt_text(author: &str, prompt: &str) -> String {
    let head = format!("» **{}:** ", author.replace('*', ""));
    let body = prompt.trim();
    let room = render::GENERATED_LIMIT.saturating_sub(head.chars().count());
    if body.chars().count() <= room {
        return format!("{head}{body}");
    }
    let note = format!(
        "\n*(prompt cut: {} characters in all)*",
        body.chars().count()
    );
    let keep = room.saturating_sub(note.chars().count() + 1);
    let cut: String = body.chars().take(keep).collect();
    format!("{head}{cut}…{note}")
}

/// The file a prompt too long for one message travels in, as Discord users send long prompts.
pub const PROMPT_FILE: &str = "prompt.md";

/// Characters of a long prompt shown in the starter message above its `prompt.md`.
const PREVIEW_CHARS: usize = 1500;

/// The starter message of a new thread: the whole prompt when it fits one message, else a
/// preview plus the full prompt to attach as `prompt.md` (nothing is cut away).
pub fn starter_content(author: &str, prompt: &str) -> (String, Option<String>) {
    let head = format!("» **{}:** ", author.replace('*', ""));
    let body = prompt.trim();
    if head.chars().count() + body.chars().count() <= render::GENERATED_LIMIT {
        return (format!("{head}{body}"), None);
    }
    let preview: String = body.chars().take(PREVIEW_CHARS).collect();
    let content = format!(
        "{head}{preview}…\n*(the whole prompt is attached as {PROMPT_FILE}: {} characters)*",
        body.chars().count()
    );
    (content, Some(body.to_owned()))
}

/// What opening a lane's thread needs.
#[derive(Debug, Clone)]
pub struct OpenThread {
    pub lane: String,
    pub guild: u64,
    pub channel: u64,
    pub title: String,
    /// Who the prompt is shown as.
    pub author: String,
    pub prompt: String,
}

/// Opens (or finds) the thread that shows `spec.lane`: posts the prompt in the project channel,
/// starts a thread from that message and records it. Each step is idempotent — the starter is
/// recorded before the thread is started, its POST carries a nonce derived from the lane, and
/// an existing thread (160004) counts as started — so a retry or a restart in between neither
/// posts the prompt twice nor fails.
pub(super) async fn open_thread(
    rest: &Rest,
    store: &DiscordStore,
    spec: &OpenThread,
    cancel: &CancellationToken,
) -> Result<u64, OpenError> {
    if let Some(t) = store.lane_thread(&spec.lane)? {
        return Ok(t.thread_id);
    }
    let starter = match store.starter(&spec.lane)? {
        Some(m) => m,
        None => {
            let (content, attached) = starter_content(&spec.author, &spec.prompt);
            let mut body = json!({
                "content": content,
                "nonce": nonce_for(&format!("start/{}", spec.lane)),
                "enforce_nonce": true,
                "flags": FLAG_SUPPRESS_EMBEDS,
                "allowed_mentions": {"parse": []},
            });
            let path = format!("/channels/{}/messages", spec.channel);
            let reply = match attached {
                None => retrying(cancel, || rest.call(Method::POST, &path, Some(&body))).await?,
                Some(full) => {
                    body["attachments"] = json!([{"id": 0, "filename": PROMPT_FILE}]);
                    let payload = body.to_string();
                    // A form is consumed by sending: each attempt builds its own.
                    retrying(cancel, || {
                        let part = reqwest::multipart::Part::bytes(full.clone().into_bytes())
                            .file_name(PROMPT_FILE);
                        let form = reqwest::multipart::Form::new()
                            .text("payload_json", payload.clone())
                            .part("files[0]", part);
                        rest.post_multipart(&path, form)
                    })
                    .await?
                }
            };
            let id = reply
                .body
                .as_ref()
                .and_then(|b| b.get("id"))
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(OpenError::NoMessageId)?;
            store.put_starter(&spec.lane, id).await?;
            id
        }
    };
    let path = format!("/channels/{}/messages/{starter}/threads", spec.channel);
    let body = json!({
        "name": render::truncate_chars(&spec.title, MAX_NAME_CHARS),
        "auto_archive_duration": AUTO_ARCHIVE_MINUTES,
    });
    match retrying(cancel, || rest.call(Method::POST, &path, Some(&body))).await {
        Ok(_) => {}
        Err(OpenError::Rest(e)) if e.code() == Some(code::THREAD_ALREADY_EXISTS) => {}
        Err(e) => return Err(e),
    }
    let now = clock::now_ms();
    let record = ThreadRecord {
        // A thread started from a message has that message's id.
        thread_id: starter,
        channel_id: spec.channel,
        guild_id: spec.guild,
        lane: spec.lane.clone(),
        title: spec.title.clone(),
        created_at: now,
        last_activity_at: now,
        model: None,
        agent: None,
    };
    store.put_lane_thread(&record).await?;
    tracing::info!(thread = starter, lane = %spec.lane, "Opened a thread for a session started outside Discord.");
    Ok(starter)
}

async fn retrying<F, Fut>(
    cancel: &CancellationToken,
    mut call: F,
) -> Result<super::rest::RestReply, OpenError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<super::rest::RestReply, RestError>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let err = match call().await {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        if !err.is_retryable() || attempt >= OPEN_ATTEMPTS {
            return Err(OpenError::Rest(err));
        }
        let wait = match &err {
            RestError::RateLimited { retry_after, .. } => *retry_after,
            _ => RETRY_BASE
                .saturating_mul(1 << attempt.min(10))
                .min(RETRY_MAX),
        };
        tokio::select! {
            _ = cancel.cancelled() => return Err(OpenError::Stopped),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Why a thread could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Discord did not say which message it posted")]
    NoMessageId,
    #[error("kimaki is stopping")]
    Stopped,
}

impl OpenError {
    /// Whether the next start should try again (the job stays listed for rendering).
    pub fn is_transient(&self) -> bool {
        match self {
            OpenError::Rest(e) => e.is_retryable(),
            OpenError::Stopped | OpenError::Store(_) => true,
            OpenError::NoMessageId => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_from_prompts_are_cut_with_dots() {
        assert_eq!(thread_name("  fix\n the   build "), "fix the build");
        assert_eq!(thread_name(""), "kimaki thread");
        let name = thread_name(&"word ".repeat(40));
        assert!(name.ends_with("..."), "{name}");
        assert!(name.chars().count() <= 80, "{name}");
        let exact = "a".repeat(80);
        assert_eq!(thread_name(&exact), exact);
    }

    #[test]
    fn long_starters_attach_the_whole_prompt() {
        let (short, none) = starter_content(CLI_AUTHOR, "hi");
        assert_eq!((short.as_str(), none), ("» **kimaki-cli:** hi", None));
        let prompt = format!("{}end", "word ".repeat(1000));
        let (content, attached) = starter_content(CLI_AUTHOR, &prompt);
        assert_eq!(attached.as_deref(), Some(prompt.trim()));
        assert!(
            content.chars().count() <= render::GENERATED_LIMIT,
            "{content}"
        );
        assert!(
            content.ends_with("attached as prompt.md: 5003 characters)*"),
            "{content}"
        );
    }

    #[test]
    fn prompts_fit_one_message() {
        assert_eq!(prompt_text(CLI_AUTHOR, "hi"), "» **kimaki-cli:** hi");
        let long = prompt_text(MESH_AUTHOR, &"x".repeat(5000));
        assert!(
            long.chars().count() <= render::GENERATED_LIMIT,
            "{}",
            long.len()
        );
        assert!(long.contains("5000 characters"));
    }

    #[test]
    fn addresses_round_trip_with_their_flags() {
        let c = ChannelTarget {
            channel: 5,
            guild: 1,
            directory: PathBuf::from("/p"),
        };
        let r = reply_in_new_thread(&c, None, "do the thing");
        assert_eq!(r.adapter, ADAPTER);
        let flags = ExternalFlags::of(&r.address);
        assert!(flags.create_thread);
        assert_eq!(flags.title.as_deref(), Some("do the thing"));
        let a: Address = serde_json::from_value(r.address).unwrap();
        assert_eq!(a.channel, "5");
        assert_eq!(a.thread, "");
    }
}
