//! Inbound: a user message becomes a job. A message in a project channel starts a thread from it
//! (thread id = message id) and a session in the lane `discord:<thread>`; a message in a session
//! thread continues it — interrupting a busy run, or queued behind it when it ends with a queue
//! suffix. Each message id is handled once, whether it arrives live, twice, or by backfill after a
//! gateway gap (a claim in memory, a mark in the store, and a job id derived from the message id).

use reqwest::Method;
use serde_json::json;
use serenity::all::{ChannelId, GetMessages, Message};

use super::access::{self, Access};
use super::attachments::{self, Incoming};
use super::client::Bot;
use super::interactions;
use super::render;
use super::rest::{code, RestError};
use super::shell;
use super::sink::{Address, ADAPTER};
use super::store::{ChannelRecord, ThreadRecord};
use super::worktrees;
use crate::core::{
    clock, CancelReason, EnqueueMode, JobId, JobSource, LaneId, NewJob, PermissionPolicy,
    QueueError, ReplyTo, RunnerId, VoiceInput,
};

/// Thread names from a message are cut to this (Discord allows 100).
const THREAD_NAME_CHARS: usize = 80;

/// Thread auto-archive (minutes): one day.
const THREAD_AUTO_ARCHIVE_MINUTES: u64 = 1440;

/// A thread started by a voice message (its text is not known until transcribed).
const VOICE_THREAD_NAME: &str = "Voice Message";

/// A replied-to message is attached to the prompt up to this many characters.
const REPLIED_CHARS: usize = 1000;

/// Attempts at creating a thread before giving up (429 and 5xx retry).
const THREAD_CREATE_ATTEMPTS: u32 = 5;

/// Backfill reads at most this many pages of 100 messages per channel.
const BACKFILL_MAX_PAGES: usize = 5;

/// Discord's page size for message history.
const HISTORY_PAGE: u8 = 100;

/// Threads active within this window are backfilled after a gap.
const BACKFILL_THREAD_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// The user's own words kept with the job for announcements (`» **alice:** …`).
const PREVIEW_CHARS: usize = 150;

/// Message types the bot acts on: DEFAULT and REPLY.
const ACTED_ON_TYPES: [u8; 2] = [0, 19];

/// A user message, as the adapter needs it (from the gateway or from history).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboundMessage {
    pub id: u64,
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    pub author_id: u64,
    pub author_name: String,
    pub author_bot: bool,
    pub webhook: bool,
    pub member_roles: Option<Vec<u64>>,
    pub content: String,
    /// `(id, name)` of mentioned users.
    pub mentions: Vec<(u64, String)>,
    pub kind: u8,
    pub attachments: Vec<Incoming>,
    /// `(author, content)` of the message this one replies to.
    pub replied: Option<(String, String)>,
}

impl InboundMessage {
    pub fn from_serenity(m: &Message) -> Self {
        Self {
            id: m.id.get(),
            channel_id: m.channel_id.get(),
            guild_id: m.guild_id.map(|g| g.get()),
            author_id: m.author.id.get(),
            author_name: m.author.name.clone(),
            author_bot: m.author.bot,
            webhook: m.webhook_id.is_some(),
            member_roles: m
                .member
                .as_ref()
                .map(|pm| pm.roles.iter().map(|r| r.get()).collect()),
            content: m.content.clone(),
            mentions: m
                .mentions
                .iter()
                .map(|u| (u.id.get(), u.name.clone()))
                .collect(),
            kind: u8::from(m.kind),
            attachments: m
                .attachments
                .iter()
                .map(|a| Incoming {
                    id: a.id.get(),
                    filename: a.filename.clone(),
                    url: a.url.clone(),
                    size: u64::from(a.size),
                    content_type: a.content_type.clone(),
                    duration_secs: a.duration_secs,
                })
                .collect(),
            replied: m
                .referenced_message
                .as_ref()
                .map(|r| (r.author.name.clone(), r.content.clone())),
        }
    }

    pub fn mentions_bot(&self, bot: u64) -> bool {
        self.mentions.iter().any(|(id, _)| *id == bot)
    }

    /// Whether the message carries a spoken recording.
    pub fn has_voice(&self) -> bool {
        self.attachments.iter().any(Incoming::is_audio)
    }
}

/// `<@id>` / `<@!id>` → `@name` (the bot's own mention is dropped), `<@&id>` → `@role`,
/// `<#id>` → `#channel`.
pub fn resolve_mentions(content: &str, bot: u64, users: &[(u64, String)]) -> String {
    let mut out = String::with_capacity(content.len());
    let mut rest = content;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let Some(end) = tail.find('>') else {
            out.push_str(tail);
            rest = "";
            break;
        };
        let inner = &tail[1..end];
        let replaced = if let Some(id) = inner
            .strip_prefix("@!")
            .or_else(|| inner.strip_prefix('@'))
            .filter(|s| !s.starts_with('&'))
            .and_then(|s| s.parse::<u64>().ok())
        {
            if id == bot {
                Some(String::new())
            } else {
                Some(match users.iter().find(|(u, _)| *u == id) {
                    Some((_, name)) => format!("@{name}"),
                    None => "@user".to_owned(),
                })
            }
        } else if inner
            .strip_prefix("@&")
            .is_some_and(|s| s.parse::<u64>().is_ok())
        {
            Some("@role".to_owned())
        } else if inner
            .strip_prefix('#')
            .is_some_and(|s| s.parse::<u64>().is_ok())
        {
            Some("#channel".to_owned())
        } else {
            None
        };
        match replaced {
            Some(r) => out.push_str(&r),
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// A thread name from a message: mentions stripped, whitespace collapsed, ≤ 80 characters.
pub fn thread_name(content: &str) -> String {
    let stripped = resolve_mentions(content, 0, &[]);
    let stripped = stripped
        .replace("@user", "")
        .replace("@role", "")
        .replace("#channel", "");
    let collapsed = stripped.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return "kimaki thread".to_owned();
    }
    render::truncate_chars(&collapsed, THREAD_NAME_CHARS)
}

/// Whether the user asked to queue the message (`… . queue`, `… queue.`, a last line `queue`, or
/// a leading `/queue`); returns the text without the marker.
pub fn queue_request(text: &str) -> (String, bool) {
    let t = text.trim();
    if let Some(rest) = t
        .strip_prefix("/queue ")
        .or_else(|| t.strip_prefix("/queue\n"))
    {
        return (rest.trim().to_owned(), true);
    }
    let lower = t.to_lowercase();
    for suffix in [". queue", "! queue", "? queue"] {
        if lower.ends_with(suffix) {
            let keep = t.len() - suffix.len() + 1;
            return (t[..keep].trim().to_owned(), true);
        }
    }
    if lower.ends_with(" queue.") {
        return (t[..t.len() - " queue.".len()].trim().to_owned(), true);
    }
    if let Some((body, last)) = t.rsplit_once('\n') {
        if last.trim().eq_ignore_ascii_case("queue") {
            return (body.trim().to_owned(), true);
        }
    }
    (t.to_owned(), false)
}

/// The prompt the runner sees.
pub fn compose_prompt(
    text: &str,
    attachments: &str,
    replied: Option<&(String, String)>,
    context: &[String],
    user_tag: &str,
) -> String {
    let mut out = String::new();
    if !context.is_empty() {
        out.push_str("<thread-context>\n");
        for c in context {
            out.push_str(c);
            out.push('\n');
        }
        out.push_str("</thread-context>\n\n");
    }
    out.push_str(text.trim());
    if let Some((author, content)) = replied {
        out.push_str(&format!(
            "\n\n<replied-message author=\"{}\">\n{}\n</replied-message>",
            author.replace('"', "'"),
            render::truncate_chars(content.trim(), REPLIED_CHARS)
        ));
    }
    if !attachments.is_empty() {
        out.push_str("\n\n");
        out.push_str(attachments.trim_end());
    }
    out.push_str("\n\n");
    out.push_str(user_tag);
    out
}

/// Handles one message; `backfilled` when it came from history after a gateway gap.
pub async fn on_message(bot: &Bot, m: InboundMessage, backfilled: bool) {
    let me = bot.bot_id();
    let mut project = bot.store.channel(m.channel_id).ok().flatten();
    if project.is_none() && bot.channel_setup.try_lock().is_err() {
        // A project channel is being created: Discord can deliver a message in it before its
        // mapping is stored. Wait for the setup, then look again.
        drop(bot.channel_setup.lock().await);
        project = bot.store.channel(m.channel_id).ok().flatten();
    }
    let own = me != 0 && m.author_id == me;
    if own || !ACTED_ON_TYPES.contains(&m.kind) || m.webhook {
        // Nothing to do, but the backfill after a gap starts after it (in our channels only).
        let ours = project.is_some() || bot.store.thread(m.channel_id).ok().flatten().is_some();
        if ours {
            let _ = bot.store.raise_last_seen(m.channel_id, m.id);
        }
        return;
    }
    // One lock per thread, taken before the thread's record is read: a reply that arrives while
    // the channel message that starts the thread (same id) is still being handled waits for it.
    let lock_key = if project.is_some() {
        m.id
    } else {
        m.channel_id
    };
    let lock = bot.thread_lock(lock_key);
    let _serial = lock.lock().await;
    let mut thread = match project {
        Some(_) => None,
        None => bot.store.thread(m.channel_id).ok().flatten(),
    };
    if project.is_none() && thread.is_none() {
        // Only threads the bot created (its record may not be written yet when dispatches were
        // reordered) or, in a project channel's thread, a mention of the bot start a session;
        // every other thread is left alone.
        let mentioned = me != 0 && m.mentions_bot(me) && !m.author_bot;
        match adopt_thread(bot, &m, mentioned).await {
            Some(t) => thread = Some(t),
            None => return,
        }
    }
    let _ = bot.store.raise_last_seen(m.channel_id, m.id);
    if !bot.claim(m.id) {
        return;
    }
    let handled = match (project, thread) {
        (Some(p), _) => channel_message(bot, &m, p).await,
        (None, Some(t)) => thread_message(bot, &m, t).await,
        (None, None) => Handled::Done,
    };
    if handled == Handled::Done {
        if let Err(e) = bot.store.mark_seen(m.id, clock::now_ms()) {
            tracing::warn!(message = m.id, error = %e, "Could not record a handled message.");
        }
    }
    if backfilled {
        tracing::info!(
            message = m.id,
            channel = m.channel_id,
            "Handled a message missed during a gateway gap."
        );
    }
}

/// Whether a message is finished with (or must be looked at again after a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    Done,
    /// kimaki is shutting down: leave it for the backfill after the restart.
    Later,
}

/// A thread under a project channel that becomes a session: one the bot created (from the cache,
/// so unrelated channels cost no request), or any there when the bot was mentioned.
async fn adopt_thread(bot: &Bot, m: &InboundMessage, mentioned: bool) -> Option<ThreadRecord> {
    let me = bot.bot_id();
    let cached = bot.cache().and_then(|c| {
        let g = c.guild(serenity::all::GuildId::new(m.guild_id?.max(1)))?;
        g.threads
            .iter()
            .find(|t| t.id.get() == m.channel_id)
            .map(|t| {
                (
                    t.parent_id.map(|p| p.get()),
                    t.owner_id.map(|o| o.get()),
                    t.name.clone(),
                )
            })
    });
    let (parent, name) = match cached {
        Some((parent, owner, name)) if owner == Some(me) || mentioned => (parent?, name),
        Some(_) => return None,
        None if mentioned => {
            let channel = ChannelId::new(m.channel_id.max(1))
                .to_channel(&bot.http)
                .await
                .ok()?
                .guild()?;
            channel.thread_metadata?;
            (channel.parent_id?.get(), channel.name.clone())
        }
        None => return None,
    };
    let project = bot.store.channel(parent).ok().flatten()?;
    let now = clock::now_ms();
    let record = ThreadRecord {
        thread_id: m.channel_id,
        channel_id: parent,
        guild_id: project.guild_id,
        lane: format!("discord:{}", m.channel_id),
        title: name,
        created_at: now,
        last_activity_at: now,
        model: None,
        agent: None,
    };
    bot.store.put_thread(&record).await.ok()?;
    Some(record)
}

async fn refuse(bot: &Bot, m: &InboundMessage, access: Access) {
    let Some(text) = access::refusal_text(access, &bot.role_to_ask_for()) else {
        return;
    };
    if bot.may_refuse(m.author_id, m.channel_id) {
        bot.notice(
            m.channel_id,
            format!("m/{}/refused", m.id),
            text,
            Some(m.id),
        )
        .await;
    }
}

async fn channel_message(bot: &Bot, m: &InboundMessage, project: ChannelRecord) -> Handled {
    let me = bot.bot_id();
    let mention_mode = project
        .mention_mode
        .unwrap_or(bot.config.default_mention_mode);
    if mention_mode && !m.mentions_bot(me) {
        return Handled::Done;
    }
    let who = bot
        .subject(
            project.guild_id,
            m.author_id,
            m.author_bot,
            m.member_roles.clone(),
        )
        .await;
    let access = bot.decide(&who);
    if access != Access::Allowed {
        refuse(bot, m, access).await;
        return Handled::Done;
    }
    let text = resolve_mentions(&m.content, me, &m.mentions);
    if let Some(command) = text.strip_prefix('!') {
        run_shell(bot, m, &who, &project.directory, m.channel_id, command).await;
        return Handled::Done;
    }
    if text.is_empty() && m.attachments.is_empty() {
        bot.notice(
            m.channel_id,
            format!("m/{}/empty", m.id),
            "I could not read that message. If it has text, @mention me (the MESSAGE CONTENT intent may be off), or attach your prompt as a file.".into(),
            Some(m.id),
        )
        .await;
        return Handled::Done;
    }
    let (body, _) = queue_request(&text);
    // `⬦ …`, or a channel set to give every session a worktree: the session gets its own.
    let asked = worktrees::requested(&body).map(str::to_owned);
    let worktree_title = asked.clone().or_else(|| {
        worktrees::auto_for(bot, m.channel_id).then(|| {
            if body.is_empty() {
                VOICE_THREAD_NAME.to_owned()
            } else {
                thread_name(&body)
            }
        })
    });
    let body = asked.unwrap_or(body);
    let mut name = if text.is_empty() && m.has_voice() {
        VOICE_THREAD_NAME.to_owned()
    } else {
        thread_name(&m.content)
    };
    if let Some(title) = &worktree_title {
        name = worktrees::thread_title(&thread_name(title));
    }
    if let Err(e) = create_thread(bot, m.channel_id, m.id, &name).await {
        tracing::error!(message = m.id, error = %e, "Could not create a thread for a message.");
        bot.notice(
            m.channel_id,
            format!("m/{}/thread-failed", m.id),
            render::truncate_chars(
                &format!("❌ Could not start a thread: {e}"),
                render::GENERATED_LIMIT,
            ),
            Some(m.id),
        )
        .await;
        return Handled::Done;
    }
    add_thread_member(bot, m.id, m.author_id).await;
    let now = clock::now_ms();
    let record = ThreadRecord {
        thread_id: m.id,
        channel_id: m.channel_id,
        guild_id: project.guild_id,
        lane: format!("discord:{}", m.id),
        title: name,
        created_at: now,
        last_activity_at: now,
        model: None,
        agent: None,
    };
    if let Err(e) = bot.store.put_thread(&record).await {
        tracing::error!(error = %e, "Could not record a new thread.");
    }
    if let Some(title) = worktree_title {
        let wanted = worktrees::Wanted::New(title);
        if worktrees::open_for_thread(bot, m.id, &project, wanted)
            .await
            .is_none()
        {
            return Handled::Done;
        }
    }
    let queued = enqueue(bot, m, &record, &project, &body, EnqueueMode::Queue, false).await;
    handled_after(bot, queued)
}

/// A message that could not be queued because kimaki is stopping is left for the backfill after
/// the restart; anything else is done with.
fn handled_after(bot: &Bot, queued: Option<u32>) -> Handled {
    if queued.is_none() && !bot.queue.is_accepting() {
        Handled::Later
    } else {
        Handled::Done
    }
}

async fn thread_message(bot: &Bot, m: &InboundMessage, mut thread: ThreadRecord) -> Handled {
    let me = bot.bot_id();
    let Some(project) = bot.store.channel(thread.channel_id).ok().flatten() else {
        return Handled::Done;
    };
    let who = bot
        .subject(
            thread.guild_id,
            m.author_id,
            m.author_bot,
            m.member_roles.clone(),
        )
        .await;
    let access = bot.decide(&who);
    if access != Access::Allowed {
        refuse(bot, m, access).await;
        return Handled::Done;
    }
    let text = resolve_mentions(&m.content, me, &m.mentions);
    if let Some(command) = text.strip_prefix('!') {
        let dir = worktrees::session_dir(bot, thread.thread_id, &project).await;
        let dir = dir.display().to_string();
        run_shell(bot, m, &who, &dir, m.channel_id, command).await;
        return Handled::Done;
    }
    // A message that opens by addressing someone else is context for the agent, not a prompt.
    let addressed_to_other = m
        .content
        .trim_start()
        .strip_prefix("<@")
        .and_then(|s| s.trim_start_matches('!').split('>').next())
        .and_then(|id| id.parse::<u64>().ok())
        .is_some_and(|id| id != me);
    if addressed_to_other {
        let line = format!("{}: {}", m.author_name, render::truncate_chars(&text, 1000));
        let _ = bot.store.push_context(thread.thread_id, line);
        return Handled::Done;
    }
    if let Ok(Some(other)) = bot.store.other_answer(thread.thread_id) {
        if interactions::answer_other(bot, &thread, other, &m.author_name, &text).await {
            return Handled::Done;
        }
    }
    if text.is_empty() && m.attachments.is_empty() {
        return Handled::Done;
    }
    let (body, queued) = queue_request(&text);
    let lane = LaneId::new(thread.lane.clone());
    let busy = bot.queue.active_job(&lane).is_some()
        || bot
            .queue
            .queued_in_lane(&lane)
            .map(|q| !q.is_empty())
            .unwrap_or(false);
    let mode = if busy && !queued {
        interactions::dismiss_pending(bot, &thread.lane).await;
        EnqueueMode::Interrupt
    } else {
        EnqueueMode::Queue
    };
    thread.last_activity_at = clock::now_ms();
    let _ = bot.store.touch_thread(&thread);
    let position = enqueue(bot, m, &thread, &project, &body, mode, queued).await;
    handled_after(bot, position)
}

/// Enqueues the message as a job in the thread's lane; returns how many jobs are ahead of it.
pub(super) async fn enqueue(
    bot: &Bot,
    m: &InboundMessage,
    thread: &ThreadRecord,
    project: &ChannelRecord,
    text: &str,
    mode: EnqueueMode,
    queued: bool,
) -> Option<u32> {
    let (saved, failed) =
        attachments::fetch_all(&bot.rest, &bot.config.attachments_dir, m.id, &m.attachments).await;
    for (name, why) in &failed {
        bot.notice(
            thread.thread_id,
            format!("m/{}/attachment-{}", m.id, outbound_key_part(name)),
            format!("⚠️ Could not fetch `{}`: {why}.", name.replace('`', "'")),
            None,
        )
        .await;
    }
    if text.trim().is_empty() && saved.is_empty() {
        return None;
    }
    let voice = attachments::recording(&saved).map(|audio| VoiceInput {
        audio,
        preamble: format!(
            "Voice message transcription from Discord user {}:",
            m.author_name
        ),
        context: Vec::new(),
    });
    let context = bot.store.take_context(thread.thread_id).unwrap_or_default();
    let user_tag = format!(
        "<discord-user name=\"{}\" user-id=\"{}\" message-id=\"{}\" thread-id=\"{}\" />",
        m.author_name.replace('"', "'"),
        m.author_id,
        m.id,
        thread.thread_id
    );
    let prompt = compose_prompt(
        text,
        &attachments::prompt_section(&saved),
        m.replied.as_ref(),
        &context,
        &user_tag,
    );
    let address = Address {
        guild: project.guild_id.to_string(),
        channel: project.channel_id.to_string(),
        thread: thread.thread_id.to_string(),
        message: Some(m.id.to_string()),
        author: Some(m.author_name.clone()),
        mode: queued.then(|| "queue".to_owned()),
    };
    let mut meta = serde_json::Map::new();
    meta.insert("discord_author".into(), json!(m.author_name));
    meta.insert("discord_author_id".into(), json!(m.author_id.to_string()));
    meta.insert("discord_message_id".into(), json!(m.id.to_string()));
    meta.insert(
        "discord_text".into(),
        json!(render::truncate_chars(text.trim(), PREVIEW_CHARS)),
    );
    let job = NewJob {
        id: Some(message_job_id(m.id)),
        lane: LaneId::new(thread.lane.clone()),
        source: JobSource::Discord,
        workspace: worktrees::session_dir(bot, thread.thread_id, project).await,
        runner: RunnerId::new(bot.config.runner.clone()),
        prompt,
        attachments: attachments::runner_files(&saved),
        model: thread
            .model
            .clone()
            .or_else(|| project.model.clone())
            .or_else(|| bot.config.default_model.clone()),
        agent: thread
            .agent
            .clone()
            .or_else(|| project.agent.clone())
            .or_else(|| bot.config.default_agent.clone()),
        permission_policy: PermissionPolicy::Ask,
        timeout_ms: None,
        reply_to: Some(ReplyTo {
            adapter: ADAPTER.to_owned(),
            address: serde_json::to_value(&address).unwrap_or_default(),
        }),
        meta,
        held: false,
        voice,
        notify_only: false,
    };
    match bot.queue.enqueue(job, mode).await {
        Ok(e) => {
            tracing::info!(job_id = %e.record.job.id, lane = %thread.lane, position = e.position, existing = e.existing, "Discord message queued.");
            Some(e.position)
        }
        Err(QueueError::ShuttingDown) => None,
        Err(QueueError::WorkspaceMissing(dir)) => {
            bot.notice(
                thread.thread_id,
                format!("m/{}/no-dir", m.id),
                format!(
                    "❌ The project directory `{}` no longer exists on {}.",
                    dir.display(),
                    bot.config.machine
                ),
                Some(m.id),
            )
            .await;
            None
        }
        Err(QueueError::EmptyPrompt) => None,
        Err(e) => {
            tracing::error!(error = %e, "Could not enqueue a Discord message.");
            bot.notice(
                thread.thread_id,
                format!("m/{}/enqueue-failed", m.id),
                render::truncate_chars(
                    &format!("❌ Could not queue your message: {e}"),
                    render::GENERATED_LIMIT,
                ),
                Some(m.id),
            )
            .await;
            None
        }
    }
}

/// The job a message becomes: derived from the message id, so handling it twice is harmless.
pub fn message_job_id(message: u64) -> JobId {
    JobId::new(format!("discord-{message}"))
}

fn outbound_key_part(name: &str) -> String {
    format!("{:x}", super::outbound::fnv1a(name.as_bytes()))
}

/// `POST /channels/{c}/messages/{m}/threads`, retried on 429 and 5xx; an existing thread
/// (160004, e.g. after a restart mid-way) counts as created.
async fn create_thread(bot: &Bot, channel: u64, message: u64, name: &str) -> Result<(), RestError> {
    let path = format!("/channels/{channel}/messages/{message}/threads");
    let body = json!({"name": name, "auto_archive_duration": THREAD_AUTO_ARCHIVE_MINUTES});
    let timings = &bot.config.timings.outbound;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match bot.rest.call(Method::POST, &path, Some(&body)).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some(code::THREAD_ALREADY_EXISTS) => return Ok(()),
            Err(e) => e,
        };
        if !err.is_retryable() || attempt >= THREAD_CREATE_ATTEMPTS {
            return Err(err);
        }
        let wait = match &err {
            RestError::RateLimited { retry_after, .. } => *retry_after,
            _ => timings
                .retry_base
                .saturating_mul(1 << attempt.min(10))
                .min(timings.retry_max),
        };
        tokio::select! {
            _ = bot.cancel.cancelled() => return Err(err),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Adds the author to the thread so it shows in their sidebar (best effort).
async fn add_thread_member(bot: &Bot, thread: u64, user: u64) {
    let path = format!("/channels/{thread}/thread-members/{user}");
    if let Err(e) = bot.rest.call(Method::PUT, &path, None).await {
        tracing::debug!(thread, error = %e, "Could not add the author to the thread.");
    }
}

async fn run_shell(
    bot: &Bot,
    m: &InboundMessage,
    who: &access::Subject,
    dir: &str,
    channel: u64,
    command: &str,
) {
    let key = format!("m/{}/shell", m.id);
    let command = command.trim();
    if !bot.config.shell_enabled {
        bot.notice(
            channel,
            key,
            "Shell commands are off on this machine (KIMAKI_SHELL_COMMANDS=false).".into(),
            Some(m.id),
        )
        .await;
        return;
    }
    if !access::may_run_shell(&bot.config.access, who) {
        bot.notice(
            channel,
            key,
            "Only the server owner, admins and the shell roles may run `!` commands.".into(),
            Some(m.id),
        )
        .await;
        return;
    }
    if command.is_empty() {
        return;
    }
    let shown = render::truncate_chars(&command.replace('`', "'"), 200);
    bot.notice(
        channel,
        key.clone(),
        format!("Running `{shown}`..."),
        Some(m.id),
    )
    .await;
    let result = shell::run(
        command,
        std::path::Path::new(dir),
        bot.config.timings.shell_timeout,
    )
    .await;
    let text = match result {
        Ok(o) => render::shell_result(command, o.exit, o.timed_out, &o.output),
        Err(e) => format!("`{shown}` could not start: {e}"),
    };
    bot.notice(channel, key, text, Some(m.id)).await;
}

/// Deleting a queued message takes it out of the queue.
pub async fn on_message_delete(bot: &Bot, _channel: u64, message: u64) {
    let id = message_job_id(message);
    if let Ok(Some(r)) = bot.queue.get(&id) {
        if r.state == crate::core::JobState::Queued {
            match bot.queue.cancel(&id, CancelReason::User).await {
                Ok(_) => tracing::info!(job_id = %id, "A deleted message left the queue."),
                Err(e) => {
                    tracing::warn!(job_id = %id, error = %e, "Could not dequeue a deleted message.")
                }
            }
        }
    }
}

/// A deleted thread: its session stops and its queue is dropped.
pub async fn on_thread_deleted(bot: &Bot, thread: u64) {
    let Ok(Some(record)) = bot.store.thread(thread) else {
        return;
    };
    let _ = bot.store.delete_thread(thread);
    // A `/resume` thread shares the lane: then the session lives on there.
    let shared = bot
        .store
        .threads()
        .unwrap_or_default()
        .iter()
        .any(|t| t.lane == record.lane);
    if !shared {
        let lane = LaneId::new(record.lane.clone());
        let _ = bot.queue.clear_lane(&lane).await;
        bot.queue.abort_lane(&lane);
        tracing::info!(thread, "A session thread was deleted; its run was stopped.");
    }
}

/// After a fresh IDENTIFY (or a restart), reads what was posted while the gateway was away and
/// handles every message not yet handled, oldest first.
pub async fn backfill_guild(bot: &Bot, guild: u64) {
    let now = clock::now_ms();
    let mut channels: Vec<u64> = bot
        .store
        .channels()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.guild_id == guild)
        .map(|c| c.channel_id)
        .collect();
    channels.extend(
        bot.store
            .threads()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.guild_id == guild && now - t.last_activity_at < BACKFILL_THREAD_WINDOW_MS)
            .map(|t| t.thread_id),
    );
    for channel in channels {
        if bot.cancel.is_cancelled() {
            return;
        }
        let Ok(Some(mut after)) = bot.store.last_seen(channel) else {
            continue;
        };
        for _ in 0..BACKFILL_MAX_PAGES {
            let page = ChannelId::new(channel.max(1))
                .messages(
                    &bot.http,
                    GetMessages::new()
                        .after(serenity::all::MessageId::new(after.max(1)))
                        .limit(HISTORY_PAGE),
                )
                .await;
            let mut page = match page {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(channel, error = %e, "Could not read channel history.");
                    break;
                }
            };
            page.sort_by_key(|m| m.id);
            let full = page.len() >= usize::from(HISTORY_PAGE);
            for msg in &page {
                after = after.max(msg.id.get());
                let mut inbound = InboundMessage::from_serenity(msg);
                inbound.guild_id = Some(guild);
                on_message(bot, inbound, true).await;
            }
            if !full {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_resolve_and_the_bot_mention_disappears() {
        let users = vec![(5, "bob".to_owned())];
        assert_eq!(
            resolve_mentions("<@9> ask <@!5> about <#77> and <@&8>", 9, &users),
            "ask @bob about #channel and @role"
        );
        assert_eq!(resolve_mentions("a < b > c", 9, &users), "a < b > c");
        assert_eq!(resolve_mentions("<@123> hi", 9, &users), "@user hi");
    }

    #[test]
    fn thread_names_are_short_and_clean() {
        assert_eq!(thread_name("<@1>   fix\n the   build "), "fix the build");
        assert_eq!(thread_name("<@1>"), "kimaki thread");
        let long = "word ".repeat(40);
        let name = thread_name(&long);
        assert_eq!(name.chars().count(), 80);
        assert!(name.ends_with('…'));
    }

    #[test]
    fn queue_suffixes_are_recognised_and_stripped() {
        assert_eq!(
            queue_request("run tests. queue"),
            ("run tests.".into(), true)
        );
        assert_eq!(queue_request("really? QUEUE"), ("really?".into(), true));
        assert_eq!(queue_request("now! queue"), ("now!".into(), true));
        assert_eq!(
            queue_request("then deploy queue."),
            ("then deploy".into(), true)
        );
        assert_eq!(queue_request("a\nb\nqueue"), ("a\nb".into(), true));
        assert_eq!(queue_request("/queue lint it"), ("lint it".into(), true));
        assert_eq!(
            queue_request("fix the queue"),
            ("fix the queue".into(), false)
        );
        assert_eq!(queue_request("queue"), ("queue".into(), false));
    }

    #[test]
    fn prompts_carry_context_reply_files_and_the_user_tag() {
        let replied = ("bob".to_owned(), "the old plan".to_owned());
        let p = compose_prompt(
            "do it",
            "<attachment filename=\"a.txt\">\nx\n</attachment>\n",
            Some(&replied),
            &["carol: note".to_owned()],
            "<discord-user name=\"alice\" />",
        );
        assert_eq!(
            p,
            "<thread-context>\ncarol: note\n</thread-context>\n\ndo it\n\n<replied-message author=\"bob\">\nthe old plan\n</replied-message>\n\n<attachment filename=\"a.txt\">\nx\n</attachment>\n\n<discord-user name=\"alice\" />"
        );
    }
}
