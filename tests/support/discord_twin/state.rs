//! The twin's relational state: one guild, its users, roles, channels, messages, reactions,
//! commands, interactions, attachment blobs and gateway sessions.
//!
//! Every route and actor mutates this under one lock and emits the dispatches Discord would emit
//! in the same critical section, so dispatch order always matches state order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};
use serenity::model::id::{
    ApplicationId, AttachmentId, ChannelId, CommandId, GuildId, InteractionId, MessageId, RoleId,
    UserId,
};

use super::faults::Faults;
use super::model;
use super::ratelimit::RateLimiter;
use super::selfcheck;
use super::snowflake::SnowflakeGen;
use super::transcript::TimelineEntry;
use super::TwinConfig;

/// Dispatches kept per gateway session for RESUME replay; a test never gets near it.
const REPLAY_BUFFER_CAPACITY: usize = 4096;

/// Discord's channel types the twin models.
pub mod channel_kind {
    pub const TEXT: u8 = 0;
    pub const VOICE: u8 = 2;
    pub const CATEGORY: u8 = 4;
    pub const PUBLIC_THREAD: u8 = 11;
}

/// Message flags the twin reads or sets.
pub mod message_flag {
    pub const HAS_THREAD: u64 = 1 << 5;
    pub const EPHEMERAL: u64 = 1 << 6;
    pub const LOADING: u64 = 1 << 7;
    pub const IS_VOICE_MESSAGE: u64 = 1 << 13;
    pub const IS_COMPONENTS_V2: u64 = 1 << 15;
}

/// Gateway intent bits the twin filters on.
pub mod intent {
    pub const GUILDS: u64 = 1;
    pub const GUILD_MEMBERS: u64 = 1 << 1;
    pub const GUILD_MESSAGES: u64 = 1 << 9;
    pub const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
    pub const GUILD_MESSAGE_TYPING: u64 = 1 << 11;
    pub const MESSAGE_CONTENT: u64 = 1 << 15;
}

/// Permission bits the twin enforces.
pub mod permission {
    pub const ADMINISTRATOR: u64 = 1 << 3;
    pub const MANAGE_CHANNELS: u64 = 1 << 4;
    pub const ADD_REACTIONS: u64 = 1 << 6;
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    pub const SEND_MESSAGES: u64 = 1 << 11;
    pub const MANAGE_MESSAGES: u64 = 1 << 13;
    pub const ATTACH_FILES: u64 = 1 << 15;
    pub const MANAGE_ROLES: u64 = 1 << 28;
    pub const MANAGE_THREADS: u64 = 1 << 34;
    pub const CREATE_PUBLIC_THREADS: u64 = 1 << 35;
    pub const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;
    /// `@everyone` in a fresh guild.
    pub const EVERYONE_DEFAULT: u64 = 1_071_698_660_929;
    /// The invite permissions of the bot's managed role (§11).
    pub const BOT_INVITE: u64 = 326_686_075_984;
    /// Every bit Discord defines today, for the owner and administrators.
    pub const ALL: u64 = (1 << 51) - 1;
}

/// A user of the twin's guild (people and the bot).
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub global_name: Option<String>,
    pub bot: bool,
}

/// A guild role.
#[derive(Clone, Debug, PartialEq)]
pub struct Role {
    pub id: RoleId,
    pub name: String,
    pub permissions: u64,
    pub position: u16,
    pub managed: bool,
    pub color: u32,
    pub hoist: bool,
    pub mentionable: bool,
}

/// A guild member.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub user_id: UserId,
    pub roles: Vec<RoleId>,
    pub joined_at_ms: u64,
}

/// A permission overwrite on a channel (`kind` 0 = role, 1 = member).
#[derive(Clone, Debug, PartialEq)]
pub struct Overwrite {
    pub id: u64,
    pub kind: u8,
    pub allow: u64,
    pub deny: u64,
}

/// A channel, category or thread.
#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    pub id: ChannelId,
    pub kind: u8,
    pub name: String,
    pub topic: Option<String>,
    pub parent_id: Option<ChannelId>,
    pub position: u32,
    pub overwrites: Vec<Overwrite>,
    pub owner_id: Option<UserId>,
    pub archived: bool,
    pub locked: bool,
    pub auto_archive_duration: u32,
    pub archive_timestamp_ms: u64,
    pub message_count: u32,
    pub created_ms: u64,
    pub deleted: bool,
}

impl Channel {
    pub fn is_thread(&self) -> bool {
        self.kind == channel_kind::PUBLIC_THREAD
    }
}

/// Stored bytes and metadata of one uploaded attachment.
#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    pub id: AttachmentId,
    pub channel_id: ChannelId,
    pub filename: String,
    pub description: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Arc<Vec<u8>>,
    pub duration_secs: Option<f64>,
    pub waveform: Option<String>,
    pub issued_ms: u64,
    pub expires_ms: u64,
    pub expired: bool,
}

/// A message, as the twin stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub author_id: UserId,
    pub content: String,
    pub kind: u8,
    pub flags: u64,
    pub tts: bool,
    pub embeds: Vec<Value>,
    pub components: Vec<Value>,
    pub attachments: Vec<AttachmentId>,
    pub mentions: Vec<UserId>,
    pub mention_roles: Vec<RoleId>,
    pub mention_everyone: bool,
    pub referenced: Option<MessageId>,
    pub nonce: Option<String>,
    pub webhook_id: Option<u64>,
    pub interaction_id: Option<InteractionId>,
    /// Set for ephemeral messages: only this user sees them.
    pub ephemeral_to: Option<UserId>,
    pub thread_id: Option<ChannelId>,
    pub created_ms: u64,
    pub edited_ms: Option<u64>,
    pub deleted: bool,
}

impl Message {
    pub fn is_ephemeral(&self) -> bool {
        self.flags & message_flag::EPHEMERAL != 0
    }

    /// `custom_id`s of the enabled components on this message.
    pub fn enabled_custom_ids(&self) -> Vec<(String, u8)> {
        let mut out = Vec::new();
        for row in &self.components {
            for c in row["components"].as_array().into_iter().flatten() {
                let disabled = c["disabled"].as_bool().unwrap_or(false);
                if let (Some(id), false) = (c["custom_id"].as_str(), disabled) {
                    out.push((id.to_string(), c["type"].as_u64().unwrap_or(0) as u8));
                }
            }
        }
        out
    }
}

/// An emoji as Discord identifies it in reaction routes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Emoji {
    pub id: Option<u64>,
    pub name: String,
}

/// One user's reaction on one message.
#[derive(Clone, Debug, PartialEq)]
pub struct Reaction {
    pub channel_id: ChannelId,
    pub message_id: MessageId,
    pub user_id: UserId,
    pub emoji: Emoji,
}

/// A registered application command (`guild_id` None = global).
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub id: CommandId,
    pub guild_id: Option<GuildId>,
    pub name: String,
    pub kind: u8,
    /// The request item as the bot sent it.
    pub definition: Value,
    pub version: u64,
}

/// The bot's answer to an interaction (`POST …/callback`).
#[derive(Clone, Debug, PartialEq)]
pub struct InteractionAck {
    pub response_type: u8,
    pub at_ms: u64,
    pub data: Option<Value>,
}

/// An interaction a simulated user started.
#[derive(Clone, Debug, PartialEq)]
pub struct Interaction {
    pub id: InteractionId,
    pub token: String,
    /// 2 command, 3 component, 4 autocomplete, 5 modal submit.
    pub kind: u8,
    pub user_id: UserId,
    pub channel_id: ChannelId,
    pub data: Value,
    /// The message a component sat on.
    pub message_id: Option<MessageId>,
    pub created_ms: u64,
    pub ack: Option<InteractionAck>,
    /// The `@original` response message, once there is one.
    pub original_message: Option<MessageId>,
    pub followups: Vec<MessageId>,
    /// The modal a type-9 response opened.
    pub modal: Option<Value>,
}

/// One `POST /channels/{c}/typing`.
#[derive(Clone, Debug, PartialEq)]
pub struct Typing {
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub at_ms: u64,
}

/// A thread member record.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadMember {
    pub thread_id: ChannelId,
    pub user_id: UserId,
    pub joined_ms: u64,
}

/// What went wrong in a way that fails the test at teardown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// The bot sent a body the twin rejected (400 50035 / 50006 / 413).
    InvalidRequest,
    /// The bot called a route the twin does not serve.
    UnknownRoute,
    /// A 401 or 403 the test did not inject.
    UnexpectedAuthFailure,
    /// The bot sent a gateway frame that is not JSON or has an unknown op.
    BadGatewayFrame,
    /// A payload the twin produced does not deserialize into serenity's model.
    SelfCheck,
    /// The bot's serenity turned a dispatch into `Event::Unknown`.
    UnknownEvent,
    /// A simulated user did something Discord would not allow.
    ImpossibleUserAction,
}

/// One recorded violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub detail: String,
}

/// How a recorded REST request body looked.
#[derive(Clone, Debug, PartialEq)]
pub enum RestBody {
    Empty,
    Json(Value),
    Multipart {
        payload_json: Option<Value>,
        files: Vec<UploadedFile>,
    },
    Raw(Vec<u8>),
}

/// One file part of a multipart upload.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadedFile {
    pub field: String,
    pub filename: String,
    pub content_type: Option<String>,
    pub bytes: Arc<Vec<u8>>,
}

/// One REST or CDN request and the twin's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct RestRecord {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub route: String,
    pub body: RestBody,
    pub status: u16,
    pub at_ms: u64,
    pub injected: bool,
}

/// Direction of a gateway frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsDirection {
    ToBot,
    FromBot,
}

/// One gateway frame or connection event.
#[derive(Clone, Debug, PartialEq)]
pub struct WsRecord {
    pub conn: u64,
    pub direction: WsDirection,
    pub op: Option<u64>,
    pub t: Option<String>,
    pub s: Option<u64>,
    pub text: String,
    pub at_ms: u64,
}

/// Something queued for a gateway connection's writer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outgoing {
    Text(String),
    Close(u16),
    DropTcp,
}

#[derive(Debug)]
pub(crate) struct GwSession {
    pub id: String,
    pub seq: u64,
    pub intents: u64,
    pub buffer: VecDeque<(u64, String)>,
    pub conn: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct GwConn {
    pub query: String,
    pub outbox: VecDeque<Outgoing>,
    pub session: Option<String>,
    pub identified: bool,
    /// When the bot sent its recent frames (Discord allows 120 per 60 s).
    pub recent_sends_ms: VecDeque<u64>,
}

/// Counts of 401, 403 and 429 answers (Discord bans an IP after 10,000 in 10 min).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InvalidRequestCounts {
    pub unauthorized: u32,
    pub forbidden: u32,
    pub rate_limited: u32,
}

/// The whole twin state. Read it through [`super::DiscordTwin::read`] or inside a wait predicate.
pub struct State {
    pub(crate) cfg: TwinConfig,
    pub(crate) token: String,
    pub(crate) base_url: String,
    pub(crate) ids: SnowflakeGen,
    pub(crate) now_ms: u64,
    pub guild_id: GuildId,
    pub guild_name: String,
    pub owner_id: UserId,
    pub bot_id: UserId,
    pub bot_role_id: RoleId,
    pub users: BTreeMap<UserId, User>,
    pub members: BTreeMap<UserId, Member>,
    pub roles: BTreeMap<RoleId, Role>,
    pub channels: BTreeMap<ChannelId, Channel>,
    pub messages: BTreeMap<MessageId, Message>,
    pub attachments: BTreeMap<AttachmentId, Attachment>,
    pub reactions: Vec<Reaction>,
    pub thread_members: Vec<ThreadMember>,
    pub commands: Vec<Command>,
    pub interactions: BTreeMap<InteractionId, Interaction>,
    pub typing: Vec<Typing>,
    pub presence_updates: Vec<Value>,
    pub(crate) nonces: BTreeMap<(ChannelId, String), (MessageId, u64)>,
    pub(crate) sessions: BTreeMap<String, GwSession>,
    pub(crate) conns: BTreeMap<u64, GwConn>,
    pub(crate) next_conn: u64,
    pub(crate) faults: Faults,
    pub(crate) limiter: RateLimiter,
    pub(crate) timeline: Vec<TimelineEntry>,
    pub rest_log: Vec<RestRecord>,
    pub ws_log: Vec<WsRecord>,
    pub violations: Vec<Violation>,
    pub invalid_requests: InvalidRequestCounts,
    /// Every dispatch name the twin emitted (the bot-side Unknown check compares against it).
    pub emitted_dispatches: Vec<String>,
    /// Set once a test revokes a permission: later 403s are then expected.
    pub(crate) permissions_revoked: bool,
    pub(crate) pending_panics: Vec<String>,
    pub(crate) gateway_calls: u32,
}

impl State {
    pub(crate) fn new(cfg: TwinConfig, base_url: String, now_ms: u64) -> Self {
        let mut ids = SnowflakeGen::default();
        let guild_id = GuildId::new(ids.next(now_ms));
        let bot_id = UserId::new(ids.next(now_ms));
        let alice = UserId::new(ids.next(now_ms));
        let bob = UserId::new(ids.next(now_ms));
        let bot_role_id = RoleId::new(ids.next(now_ms));
        let token = cfg.bot_token.clone().unwrap_or_else(|| {
            let encoded = model::base64_encode(bot_id.to_string().as_bytes());
            format!(
                "{}.GTwin0.{}",
                encoded.trim_end_matches('='),
                "k".repeat(38)
            )
        });
        let mut st = Self {
            token,
            limiter: RateLimiter::new(cfg.rate_limits),
            guild_name: cfg.guild_name.clone(),
            cfg,
            base_url,
            ids,
            now_ms,
            guild_id,
            owner_id: alice,
            bot_id,
            bot_role_id,
            users: BTreeMap::new(),
            members: BTreeMap::new(),
            roles: BTreeMap::new(),
            channels: BTreeMap::new(),
            messages: BTreeMap::new(),
            attachments: BTreeMap::new(),
            reactions: Vec::new(),
            thread_members: Vec::new(),
            commands: Vec::new(),
            interactions: BTreeMap::new(),
            typing: Vec::new(),
            presence_updates: Vec::new(),
            nonces: BTreeMap::new(),
            sessions: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            faults: Faults::default(),
            timeline: Vec::new(),
            rest_log: Vec::new(),
            ws_log: Vec::new(),
            violations: Vec::new(),
            invalid_requests: InvalidRequestCounts::default(),
            emitted_dispatches: Vec::new(),
            permissions_revoked: false,
            pending_panics: Vec::new(),
            gateway_calls: 0,
        };
        st.seed(alice, bob);
        st
    }

    fn seed(&mut self, alice: UserId, bob: UserId) {
        let joined = self.now_ms;
        let bot_name = self.cfg.bot_name.clone();
        self.users.insert(
            self.bot_id,
            User {
                id: self.bot_id,
                name: bot_name.clone(),
                global_name: None,
                bot: true,
            },
        );
        for (id, name) in [(alice, "alice"), (bob, "bob")] {
            let global = Some(format!("{}{}", name[..1].to_uppercase(), &name[1..]));
            self.users.insert(
                id,
                User {
                    id,
                    name: name.into(),
                    global_name: global,
                    bot: false,
                },
            );
        }
        let everyone = RoleId::new(self.guild_id.get());
        self.roles.insert(
            everyone,
            Role {
                id: everyone,
                name: "@everyone".into(),
                permissions: permission::EVERYONE_DEFAULT,
                position: 0,
                managed: false,
                color: 0,
                hoist: false,
                mentionable: false,
            },
        );
        self.roles.insert(
            self.bot_role_id,
            Role {
                id: self.bot_role_id,
                name: bot_name,
                permissions: permission::BOT_INVITE,
                position: 1,
                managed: true,
                color: 0,
                hoist: false,
                mentionable: false,
            },
        );
        if self.cfg.kimaki_roles {
            for (pos, name) in [(2, "Kimaki"), (3, "no-kimaki")] {
                let id = RoleId::new(self.next_id());
                self.roles.insert(
                    id,
                    Role {
                        id,
                        name: name.into(),
                        permissions: 0,
                        position: pos,
                        managed: false,
                        color: 0,
                        hoist: false,
                        mentionable: false,
                    },
                );
            }
        }
        for user_id in [self.bot_id, alice, bob] {
            let roles = if user_id == self.bot_id {
                vec![self.bot_role_id]
            } else {
                vec![]
            };
            self.members.insert(
                user_id,
                Member {
                    user_id,
                    roles,
                    joined_at_ms: joined,
                },
            );
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.ids.next(self.now_ms)
    }

    /// Twin time (Unix ms) as of the current operation.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.users.values().find(|u| u.name == name)
    }

    pub fn role_by_name(&self, name: &str) -> Option<&Role> {
        self.roles
            .values()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }

    pub fn channel(&self, id: ChannelId) -> Option<&Channel> {
        self.channels.get(&id).filter(|c| !c.deleted)
    }

    pub fn message(&self, id: MessageId) -> Option<&Message> {
        self.messages.get(&id).filter(|m| !m.deleted)
    }

    /// Live messages of a channel, oldest first.
    pub fn messages_in(&self, channel: ChannelId) -> Vec<&Message> {
        self.messages
            .values()
            .filter(|m| m.channel_id == channel && !m.deleted)
            .collect()
    }

    /// Deleted messages of a channel, oldest first.
    pub fn deleted_messages_in(&self, channel: ChannelId) -> Vec<&Message> {
        self.messages
            .values()
            .filter(|m| m.channel_id == channel && m.deleted)
            .collect()
    }

    /// Live threads, oldest first.
    pub fn threads(&self) -> Vec<&Channel> {
        self.channels
            .values()
            .filter(|c| c.is_thread() && !c.deleted)
            .collect()
    }

    pub fn reactions_on(&self, message: MessageId) -> Vec<&Reaction> {
        self.reactions
            .iter()
            .filter(|r| r.message_id == message)
            .collect()
    }

    pub fn interaction(&self, id: InteractionId) -> Option<&Interaction> {
        self.interactions.get(&id)
    }

    pub fn attachment(&self, id: AttachmentId) -> Option<&Attachment> {
        self.attachments.get(&id)
    }

    pub fn application_id(&self) -> ApplicationId {
        ApplicationId::new(self.bot_id.get())
    }

    /// The resolved guild-level permissions of a member.
    pub fn base_permissions(&self, user: UserId) -> u64 {
        if user == self.owner_id {
            return permission::ALL;
        }
        let everyone = RoleId::new(self.guild_id.get());
        let mut perms = self.roles.get(&everyone).map_or(0, |r| r.permissions);
        if let Some(m) = self.members.get(&user) {
            for r in &m.roles {
                perms |= self.roles.get(r).map_or(0, |r| r.permissions);
            }
        }
        if perms & permission::ADMINISTRATOR != 0 {
            return permission::ALL;
        }
        perms
    }

    /// Permissions of a member in a channel (threads use their parent's overwrites).
    pub fn channel_permissions(&self, user: UserId, channel: ChannelId) -> u64 {
        let base = self.base_permissions(user);
        if base == permission::ALL {
            return base;
        }
        let Some(mut ch) = self.channel(channel) else {
            return base;
        };
        if ch.is_thread() {
            if let Some(parent) = ch.parent_id.and_then(|p| self.channel(p)) {
                ch = parent;
            }
        }
        let roles: Vec<u64> = self
            .members
            .get(&user)
            .map(|m| m.roles.iter().map(|r| r.get()).collect())
            .unwrap_or_default();
        let mut perms = base;
        let everyone = self.guild_id.get();
        for o in ch
            .overwrites
            .iter()
            .filter(|o| o.kind == 0 && o.id == everyone)
        {
            perms = (perms & !o.deny) | o.allow;
        }
        let (mut allow, mut deny) = (0, 0);
        for o in ch
            .overwrites
            .iter()
            .filter(|o| o.kind == 0 && roles.contains(&o.id))
        {
            allow |= o.allow;
            deny |= o.deny;
        }
        perms = (perms & !deny) | allow;
        for o in ch
            .overwrites
            .iter()
            .filter(|o| o.kind == 1 && o.id == user.get())
        {
            perms = (perms & !o.deny) | o.allow;
        }
        perms
    }

    pub(crate) fn violation(&mut self, kind: ViolationKind, detail: impl Into<String>) {
        self.violations.push(Violation {
            kind,
            detail: detail.into(),
        });
    }

    /// Records a self-check failure; the caller panics once the lock is released.
    pub(crate) fn selfcheck_failed(&mut self, detail: String) {
        let detail = format!("self-check failed: {detail}");
        self.violation(ViolationKind::SelfCheck, detail.clone());
        self.pending_panics.push(detail);
    }

    /// Sends one dispatch to every gateway session whose intents allow it.
    pub(crate) fn emit(&mut self, name: &str, d: Value) {
        self.emit_inner(name, d, None, true);
    }

    /// Sends one dispatch to one session only (READY, GUILD_CREATE after IDENTIFY).
    pub(crate) fn emit_to(&mut self, session: &str, name: &str, d: Value) {
        self.emit_inner(name, d, Some(session), true);
    }

    pub(crate) fn emit_inner(&mut self, name: &str, d: Value, target: Option<&str>, checked: bool) {
        if checked {
            if let Err(e) = selfcheck::check_dispatch(name, &d) {
                self.selfcheck_failed(format!("dispatch {name}: {e}"));
                return;
            }
            self.emitted_dispatches.push(name.to_string());
        }
        let duplicate = std::mem::take(&mut self.faults.duplicate_next_dispatch);
        let needed = intent_for_dispatch(name);
        let bot_id = self.bot_id;
        for session in self.sessions.values_mut() {
            if target.is_some_and(|t| t != session.id) {
                continue;
            }
            if needed != 0 && session.intents & needed == 0 {
                continue;
            }
            let payload =
                if is_message_dispatch(name) && session.intents & intent::MESSAGE_CONTENT == 0 {
                    blank_content(&d, bot_id)
                } else {
                    d.clone()
                };
            session.seq += 1;
            let frame = json!({"op": 0, "d": payload, "s": session.seq, "t": name}).to_string();
            if session.buffer.len() == REPLAY_BUFFER_CAPACITY {
                session.buffer.pop_front();
            }
            session.buffer.push_back((session.seq, frame.clone()));
            if let Some(conn) = session.conn.and_then(|c| self.conns.get_mut(&c)) {
                if duplicate {
                    conn.outbox.push_back(Outgoing::Text(frame.clone()));
                }
                conn.outbox.push_back(Outgoing::Text(frame));
            }
        }
    }

    /// A message's gateway payload (with `guild_id` and partial `member`).
    pub(crate) fn gateway_message(&self, id: MessageId) -> Value {
        self.messages
            .get(&id)
            .map_or(Value::Null, |m| model::message_json(self, m, true))
    }

    /// Stores a message and emits MESSAGE_CREATE unless it is ephemeral.
    pub(crate) fn insert_message(&mut self, msg: Message) -> MessageId {
        let id = msg.id;
        let channel_id = msg.channel_id;
        let ephemeral = msg.is_ephemeral();
        let author = msg.author_id;
        self.messages.insert(id, msg);
        self.timeline.push(TimelineEntry::Message {
            channel: channel_id,
            message: id,
        });
        if let Some(ch) = self.channels.get_mut(&channel_id) {
            if ch.is_thread() {
                ch.message_count += 1;
            }
        }
        if !ephemeral {
            let d = self.gateway_message(id);
            self.emit("MESSAGE_CREATE", d);
            self.unarchive_on_post(channel_id, author);
        }
        id
    }

    /// Posting in an archived, unlocked thread unarchives it (as Discord does).
    fn unarchive_on_post(&mut self, channel_id: ChannelId, _author: UserId) {
        let Some(ch) = self.channels.get_mut(&channel_id) else {
            return;
        };
        if ch.is_thread() && ch.archived && !ch.locked {
            ch.archived = false;
            ch.archive_timestamp_ms = self.now_ms;
            let d = model::channel_json(self, channel_id);
            self.emit("THREAD_UPDATE", d);
        }
    }

    /// Emits MESSAGE_UPDATE with the full stored message.
    pub(crate) fn emit_message_update(&mut self, id: MessageId) {
        let Some(m) = self.messages.get(&id) else {
            return;
        };
        if m.is_ephemeral() {
            return;
        }
        let d = self.gateway_message(id);
        self.emit("MESSAGE_UPDATE", d);
    }

    /// Marks a message deleted and emits MESSAGE_DELETE.
    pub(crate) fn delete_message(&mut self, id: MessageId) {
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        m.deleted = true;
        let (channel_id, ephemeral) = (m.channel_id, m.is_ephemeral());
        self.timeline.push(TimelineEntry::Delete {
            channel: channel_id,
            message: id,
        });
        if !ephemeral {
            let d = json!({"id": id.to_string(), "channel_id": channel_id.to_string(),
                           "guild_id": self.guild_id.to_string()});
            self.emit("MESSAGE_DELETE", d);
        }
    }

    /// Ids mentioned as `<@id>` / `<@!id>` and `<@&id>` in a text.
    pub(crate) fn parse_mentions(&self, text: &str) -> (Vec<UserId>, Vec<RoleId>) {
        let (mut users, mut roles) = (Vec::new(), Vec::new());
        let mut rest = text;
        while let Some(start) = rest.find("<@") {
            rest = &rest[start + 2..];
            let is_role = rest.starts_with('&');
            let digits_from = usize::from(is_role || rest.starts_with('!'));
            let Some(end) = rest.find('>') else { break };
            if let Ok(id) = rest[digits_from..end].parse::<u64>() {
                if id != 0 && is_role && self.roles.contains_key(&RoleId::new(id)) {
                    roles.push(RoleId::new(id));
                } else if id != 0 && !is_role && self.users.contains_key(&UserId::new(id)) {
                    users.push(UserId::new(id));
                }
            }
            rest = &rest[end..];
        }
        users.dedup();
        roles.dedup();
        (users, roles)
    }

    /// A blank message skeleton; callers fill the rest.
    pub(crate) fn new_message(&mut self, channel_id: ChannelId, author_id: UserId) -> Message {
        let id = MessageId::new(self.next_id());
        Message {
            id,
            channel_id,
            author_id,
            content: String::new(),
            kind: 0,
            flags: 0,
            tts: false,
            embeds: Vec::new(),
            components: Vec::new(),
            attachments: Vec::new(),
            mentions: Vec::new(),
            mention_roles: Vec::new(),
            mention_everyone: false,
            referenced: None,
            nonce: None,
            webhook_id: None,
            interaction_id: None,
            ephemeral_to: None,
            thread_id: None,
            created_ms: self.now_ms,
            edited_ms: None,
            deleted: false,
        }
    }

    /// Creates a channel (or category) and emits CHANNEL_CREATE.
    pub(crate) fn create_channel(
        &mut self,
        kind: u8,
        name: &str,
        parent: Option<ChannelId>,
        topic: Option<String>,
    ) -> ChannelId {
        let id = ChannelId::new(self.next_id());
        let position = self.channels.values().filter(|c| c.kind == kind).count() as u32;
        self.channels.insert(
            id,
            Channel {
                id,
                kind,
                name: name.to_string(),
                topic,
                parent_id: parent,
                position,
                overwrites: Vec::new(),
                owner_id: None,
                archived: false,
                locked: false,
                auto_archive_duration: 0,
                archive_timestamp_ms: 0,
                message_count: 0,
                created_ms: self.now_ms,
                deleted: false,
            },
        );
        let d = model::channel_json(self, id);
        self.emit("CHANNEL_CREATE", d);
        id
    }

    /// Creates a public thread and emits THREAD_CREATE (callers add members).
    pub(crate) fn create_thread(
        &mut self,
        id: ChannelId,
        parent: ChannelId,
        owner: UserId,
        name: &str,
        auto_archive_duration: u32,
    ) {
        self.channels.insert(
            id,
            Channel {
                id,
                kind: channel_kind::PUBLIC_THREAD,
                name: name.to_string(),
                topic: None,
                parent_id: Some(parent),
                position: 0,
                overwrites: Vec::new(),
                owner_id: Some(owner),
                archived: false,
                locked: false,
                auto_archive_duration,
                archive_timestamp_ms: self.now_ms,
                message_count: 0,
                created_ms: self.now_ms,
                deleted: false,
            },
        );
        let mut d = model::channel_json(self, id);
        d["newly_created"] = json!(true);
        self.emit("THREAD_CREATE", d);
    }

    /// Adds a thread member (idempotent) and emits THREAD_MEMBERS_UPDATE.
    pub(crate) fn add_thread_member(&mut self, thread: ChannelId, user: UserId) {
        if self
            .thread_members
            .iter()
            .any(|m| m.thread_id == thread && m.user_id == user)
        {
            return;
        }
        let tm = ThreadMember {
            thread_id: thread,
            user_id: user,
            joined_ms: self.now_ms,
        };
        self.thread_members.push(tm.clone());
        let count = self
            .thread_members
            .iter()
            .filter(|m| m.thread_id == thread)
            .count();
        let d = json!({
            "id": thread.to_string(),
            "guild_id": self.guild_id.to_string(),
            "member_count": count,
            "added_members": [model::thread_member_json(&tm)],
        });
        self.emit("THREAD_MEMBERS_UPDATE", d);
    }

    /// Deletes a channel (cascading to its threads and messages) and emits the DELETE events.
    pub(crate) fn delete_channel(&mut self, id: ChannelId) {
        let children: Vec<ChannelId> = self
            .channels
            .values()
            .filter(|c| c.parent_id == Some(id) && c.is_thread() && !c.deleted)
            .map(|c| c.id)
            .collect();
        for child in children {
            self.delete_channel(child);
        }
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        ch.deleted = true;
        let ch = ch.clone();
        for m in self.messages.values_mut().filter(|m| m.channel_id == id) {
            m.deleted = true;
        }
        if ch.is_thread() {
            let d = json!({
                "id": id.to_string(),
                "guild_id": self.guild_id.to_string(),
                "parent_id": ch.parent_id.map(|p| p.to_string()),
                "type": ch.kind,
            });
            self.emit("THREAD_DELETE", d);
        } else {
            let d = model::channel_json(self, id);
            self.emit("CHANNEL_DELETE", d);
        }
    }

    /// Emits CHANNEL_UPDATE or THREAD_UPDATE with the stored channel.
    pub(crate) fn emit_channel_update(&mut self, id: ChannelId) {
        let is_thread = self.channels.get(&id).is_some_and(Channel::is_thread);
        let d = model::channel_json(self, id);
        self.emit(
            if is_thread {
                "THREAD_UPDATE"
            } else {
                "CHANNEL_UPDATE"
            },
            d,
        );
    }

    /// Emits GUILD_MEMBER_UPDATE for one member.
    pub(crate) fn emit_member_update(&mut self, user: UserId) {
        let Some(m) = self.members.get(&user) else {
            return;
        };
        let mut d = model::member_json(self, m, true);
        d["guild_id"] = json!(self.guild_id.to_string());
        self.emit("GUILD_MEMBER_UPDATE", d);
    }

    pub(crate) fn take_outbox(&mut self, conn: u64) -> Vec<Outgoing> {
        self.conns
            .get_mut(&conn)
            .map(|c| c.outbox.drain(..).collect())
            .unwrap_or_default()
    }

    /// Live gateway connections (identified or resumed).
    pub fn gateway_connection_count(&self) -> usize {
        self.conns.values().filter(|c| c.identified).count()
    }

    /// How many times the bot called `GET /gateway` or `/gateway/bot`.
    pub fn gateway_url_calls(&self) -> u32 {
        self.gateway_calls
    }
}

/// The intent a dispatch needs (0 = always sent).
pub(crate) fn intent_for_dispatch(name: &str) -> u64 {
    match name {
        "GUILD_MEMBERS_CHUNK" => 0,
        n if n.starts_with("GUILD_MEMBER") => intent::GUILD_MEMBERS,
        n if n.starts_with("MESSAGE_REACTION") => intent::GUILD_MESSAGE_REACTIONS,
        n if n.starts_with("MESSAGE_") => intent::GUILD_MESSAGES,
        "TYPING_START" => intent::GUILD_MESSAGE_TYPING,
        "GUILD_CREATE" => intent::GUILDS,
        n if n.starts_with("CHANNEL_")
            || n.starts_with("THREAD_")
            || n.starts_with("GUILD_ROLE") =>
        {
            intent::GUILDS
        }
        _ => 0,
    }
}

fn is_message_dispatch(name: &str) -> bool {
    name == "MESSAGE_CREATE" || name == "MESSAGE_UPDATE"
}

/// Without MESSAGE_CONTENT, Discord blanks content unless the bot wrote or is mentioned.
pub(crate) fn blank_content(d: &Value, bot_id: UserId) -> Value {
    let bot = bot_id.to_string();
    let own = d["author"]["id"].as_str() == Some(bot.as_str());
    let mentioned = d["mentions"]
        .as_array()
        .is_some_and(|m| m.iter().any(|u| u["id"].as_str() == Some(&bot)));
    if own || mentioned {
        return d.clone();
    }
    let mut d = d.clone();
    d["content"] = json!("");
    d["embeds"] = json!([]);
    d["attachments"] = json!([]);
    d["components"] = json!([]);
    if let Some(obj) = d.as_object_mut() {
        obj.remove("poll");
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatches_map_to_their_intents() {
        assert_eq!(
            intent_for_dispatch("MESSAGE_CREATE"),
            intent::GUILD_MESSAGES
        );
        assert_eq!(
            intent_for_dispatch("MESSAGE_REACTION_ADD"),
            intent::GUILD_MESSAGE_REACTIONS
        );
        assert_eq!(intent_for_dispatch("THREAD_MEMBERS_UPDATE"), intent::GUILDS);
        assert_eq!(
            intent_for_dispatch("GUILD_MEMBER_UPDATE"),
            intent::GUILD_MEMBERS
        );
        assert_eq!(
            intent_for_dispatch("TYPING_START"),
            intent::GUILD_MESSAGE_TYPING
        );
        assert_eq!(intent_for_dispatch("INTERACTION_CREATE"), 0);
        assert_eq!(intent_for_dispatch("GUILD_MEMBERS_CHUNK"), 0);
    }

    #[test]
    fn content_is_blanked_unless_the_bot_wrote_or_is_mentioned() {
        let bot = UserId::new(7);
        let msg = json!({"author": {"id": "1"}, "content": "hi", "mentions": [], "embeds": [{}],
                         "attachments": [{}], "components": [{}], "poll": {}});
        let blank = blank_content(&msg, bot);
        assert_eq!(blank["content"], "");
        assert_eq!(blank["embeds"], json!([]));
        assert!(blank.get("poll").is_none());
        let mut mentioned = msg.clone();
        mentioned["mentions"] = json!([{"id": "7"}]);
        assert_eq!(blank_content(&mentioned, bot)["content"], "hi");
        let mut own = msg;
        own["author"]["id"] = json!("7");
        assert_eq!(blank_content(&own, bot)["content"], "hi");
    }
}
