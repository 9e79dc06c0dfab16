//! Simulated users (§6): `twin.user("alice").in_channel(ch).send("hi")`. Each action writes
//! state first and dispatches second, as Discord does. An action a real user could not take
//! (clicking a removed button, posting where they cannot see) fails the test.

use std::sync::Arc;

use serde_json::{json, Value};
use serenity::model::id::{AttachmentId, ChannelId, InteractionId, MessageId, RoleId, UserId};

use super::interactions;
use super::model;
use super::rest;
use super::state::{
    message_flag, permission, Attachment, Member, Overwrite, State, User, ViolationKind,
};
use super::transcript::TimelineEntry;
use super::Shared;

/// Discord's waveform holds at most 256 samples, one per 100 ms at most.
const MAX_WAVEFORM_SAMPLES: usize = 256;

/// A file a simulated user attaches.
#[derive(Clone, Debug, PartialEq)]
pub struct TwinFile {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl TwinFile {
    pub fn new(filename: &str, content_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            filename: filename.into(),
            content_type: content_type.into(),
            bytes: bytes.into(),
        }
    }

    /// A UTF-8 text file (`text/plain; charset=utf-8`).
    pub fn text(filename: &str, text: &str) -> Self {
        Self::new(
            filename,
            "text/plain; charset=utf-8",
            text.as_bytes().to_vec(),
        )
    }
}

/// A simulated user of the guild.
#[derive(Clone)]
pub struct Actor {
    shared: Arc<Shared>,
    user: UserId,
}

impl Actor {
    pub(crate) fn new(shared: Arc<Shared>, user: UserId) -> Self {
        Self { shared, user }
    }

    pub fn id(&self) -> UserId {
        self.user
    }

    /// Acts in a text channel.
    pub fn in_channel(&self, channel: ChannelId) -> ActorIn {
        ActorIn {
            shared: self.shared.clone(),
            user: self.user,
            channel,
        }
    }

    /// Acts in a thread (the same as a channel, named for readability).
    pub fn in_thread(&self, thread: ChannelId) -> ActorIn {
        self.in_channel(thread)
    }
}

/// A simulated user acting in one channel or thread.
#[derive(Clone)]
pub struct ActorIn {
    shared: Arc<Shared>,
    user: UserId,
    channel: ChannelId,
}

/// Records an impossible action and makes the enclosing `with` panic.
fn impossible(st: &mut State, detail: String) {
    st.violation(ViolationKind::ImpossibleUserAction, detail.clone());
    st.pending_panics.push(detail);
}

impl ActorIn {
    pub fn channel(&self) -> ChannelId {
        self.channel
    }

    fn post(
        &self,
        content: &str,
        files: Vec<TwinFile>,
        reply_to: Option<MessageId>,
        voice: Option<f64>,
    ) -> MessageId {
        let (user, channel) = (self.user, self.channel);
        self.shared.with(|st| {
            if let Err(why) = can_post(st, user, channel) {
                impossible(st, why);
                return MessageId::new(1);
            }
            if let Some(r) = reply_to {
                if st.message(r).is_none_or(|m| m.channel_id != channel) {
                    impossible(st, format!("reply to unknown message {r} in {channel}"));
                    return MessageId::new(1);
                }
            }
            let mut msg = st.new_message(channel, user);
            msg.content = content.to_string();
            let (users, roles) = st.parse_mentions(content);
            msg.mentions = users;
            msg.mention_roles = roles;
            msg.mention_everyone = content.contains("@everyone") || content.contains("@here");
            if let Some(r) = reply_to {
                msg.referenced = Some(r);
                msg.kind = 19;
            }
            for f in files {
                let id = AttachmentId::new(st.next_id());
                let ttl = st.cfg.attachment_link_ttl.as_millis() as u64;
                let waveform = voice.map(|secs| {
                    let n = ((secs * 10.0) as usize).clamp(1, MAX_WAVEFORM_SAMPLES);
                    model::base64_encode(&(0..n).map(|i| (i * 37 % 256) as u8).collect::<Vec<_>>())
                });
                st.attachments.insert(
                    id,
                    Attachment {
                        id,
                        channel_id: channel,
                        filename: f.filename,
                        description: None,
                        content_type: Some(f.content_type),
                        bytes: Arc::new(f.bytes),
                        duration_secs: voice,
                        waveform,
                        issued_ms: st.now_ms,
                        expires_ms: st.now_ms + ttl,
                        expired: false,
                    },
                );
                msg.attachments.push(id);
            }
            if voice.is_some() {
                msg.flags |= message_flag::IS_VOICE_MESSAGE;
            }
            st.insert_message(msg)
        })
    }

    /// Posts a text message (MESSAGE_CREATE). `<@id>` / `<@&id>` fill `mentions` / `mention_roles`.
    pub fn send(&self, text: &str) -> MessageId {
        self.post(text, Vec::new(), None, None)
    }

    /// Posts a message with attachments (stored on the CDN).
    pub fn send_files(&self, text: &str, files: Vec<TwinFile>) -> MessageId {
        self.post(text, files, None, None)
    }

    /// Posts a voice message: flag 8192, no content, one `voice-message.ogg` with
    /// `duration_secs` and a base64 `waveform`.
    pub fn send_voice(&self, ogg: Vec<u8>, duration_secs: f64) -> MessageId {
        let file = TwinFile::new("voice-message.ogg", "audio/ogg", ogg);
        self.post("", vec![file], None, Some(duration_secs))
    }

    /// Replies to a message (type 19 with `referenced_message`).
    pub fn reply_to(&self, msg: MessageId, text: &str) -> MessageId {
        self.post(text, Vec::new(), Some(msg), None)
    }

    /// Edits one of this user's messages (MESSAGE_UPDATE with `edited_timestamp`).
    pub fn edit(&self, msg: MessageId, text: &str) {
        let user = self.user;
        self.shared.with(|st| {
            let Some(m) = st.message(msg).cloned().filter(|m| m.author_id == user) else {
                impossible(st, format!("{user} cannot edit message {msg}"));
                return;
            };
            let mut m = m;
            m.content = text.to_string();
            let (users, roles) = st.parse_mentions(text);
            m.mentions = users;
            m.mention_roles = roles;
            m.edited_ms = Some(st.now_ms);
            st.timeline.push(TimelineEntry::Edit {
                channel: m.channel_id,
                message: msg,
            });
            st.messages.insert(msg, m);
            st.emit_message_update(msg);
        });
    }

    /// Deletes one of this user's messages (MESSAGE_DELETE).
    pub fn delete(&self, msg: MessageId) {
        let user = self.user;
        self.shared.with(|st| {
            let own = st.message(msg).is_some_and(|m| m.author_id == user);
            if !own && st.base_permissions(user) & permission::MANAGE_MESSAGES == 0 {
                impossible(st, format!("{user} cannot delete message {msg}"));
                return;
            }
            st.delete_message(msg);
        });
    }

    /// Adds a reaction (MESSAGE_REACTION_ADD).
    pub fn react(&self, msg: MessageId, emoji: &str) {
        self.reaction(msg, emoji, true);
    }

    /// Removes a reaction (MESSAGE_REACTION_REMOVE).
    pub fn unreact(&self, msg: MessageId, emoji: &str) {
        self.reaction(msg, emoji, false);
    }

    fn reaction(&self, msg: MessageId, emoji: &str, add: bool) {
        let user = self.user;
        self.shared.with(|st| {
            let Some(m) = st.message(msg).cloned() else {
                impossible(st, format!("reaction on unknown message {msg}"));
                return;
            };
            if let Err(e) = rest::react(st, &m, emoji, user, add) {
                impossible(st, format!("reaction refused: {} {}", e.code, e.message));
            }
        });
    }

    /// The user starts typing (TYPING_START).
    pub fn typing(&self) {
        let (user, channel) = (self.user, self.channel);
        self.shared
            .with(|st| rest::record_typing(st, channel, user));
    }

    /// Creates a thread without a starter message, as a user would in the client.
    pub fn create_thread(&self, name: &str) -> ChannelId {
        let (user, channel) = (self.user, self.channel);
        self.shared.with(|st| {
            let id = ChannelId::new(st.next_id());
            st.create_thread(id, channel, user, name, 1440);
            st.timeline.push(TimelineEntry::ThreadCreated {
                channel,
                thread: id,
                from: None,
            });
            st.add_thread_member(id, user);
            id
        })
    }

    /// Starts a thread from a message, as a user would.
    pub fn start_thread_from(&self, msg: MessageId, name: &str) -> ChannelId {
        let (user, channel) = (self.user, self.channel);
        self.shared.with(|st| {
            let tid = ChannelId::new(msg.get());
            if st.channels.contains_key(&tid) || st.message(msg).is_none() {
                impossible(st, format!("cannot start a thread from {msg}"));
                return tid;
            }
            st.create_thread(tid, channel, user, name, 1440);
            st.timeline.push(TimelineEntry::ThreadCreated {
                channel,
                thread: tid,
                from: Some(msg),
            });
            if let Some(m) = st.messages.get_mut(&msg) {
                m.flags |= message_flag::HAS_THREAD;
                m.thread_id = Some(tid);
            }
            st.emit_message_update(msg);
            st.add_thread_member(tid, user);
            tid
        })
    }

    /// Runs a slash command. Option types come from the registered definition.
    pub fn slash(&self, name: &str, opts: &[(&str, Value)]) -> InteractionId {
        self.command_interaction(name, opts, None)
    }

    /// Asks for autocomplete on `option` with the partial text typed so far.
    pub fn autocomplete(&self, name: &str, option: &str, partial: &str) -> InteractionId {
        self.command_interaction(name, &[], Some((option, partial)))
    }

    fn command_interaction(
        &self,
        name: &str,
        opts: &[(&str, Value)],
        focused: Option<(&str, &str)>,
    ) -> InteractionId {
        let (user, channel) = (self.user, self.channel);
        self.shared.with(|st| {
            let scope_ok = |c: &&super::state::Command| {
                c.guild_id.is_none() || c.guild_id == Some(st.guild_id)
            };
            let Some(cmd) = st
                .commands
                .iter()
                .filter(scope_ok)
                .find(|c| c.name == name && c.kind == 1)
                .cloned()
            else {
                impossible(st, format!("/{name} is not registered"));
                return InteractionId::new(1);
            };
            let defs = cmd.definition["options"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let kind_of = |opt: &str| {
                defs.iter()
                    .find(|d| d["name"] == opt)
                    .and_then(|d| d["type"].as_u64())
            };
            let mut options = Vec::new();
            for (opt, value) in opts {
                let Some(kind) = kind_of(opt) else {
                    impossible(st, format!("/{name} has no option {opt}"));
                    return InteractionId::new(1);
                };
                options.push(json!({"name": opt, "type": kind, "value": value}));
            }
            let mut kind = interactions::COMMAND;
            if let Some((opt, partial)) = focused {
                let def = defs.iter().find(|d| d["name"] == opt);
                if !def.is_some_and(|d| d["autocomplete"] == true) {
                    impossible(st, format!("/{name} option {opt} has no autocomplete"));
                    return InteractionId::new(1);
                }
                let t = def.and_then(|d| d["type"].as_u64()).unwrap_or(3);
                options.push(json!({"name": opt, "type": t, "value": partial, "focused": true}));
                kind = interactions::AUTOCOMPLETE;
            }
            let mut data =
                json!({"id": cmd.id.to_string(), "name": name, "type": 1, "options": options});
            if let Some(g) = cmd.guild_id {
                data["guild_id"] = json!(g.to_string());
            }
            interactions::create(st, kind, user, channel, data, None)
        })
    }

    fn component(&self, msg: MessageId, custom_id: &str, values: Option<&[&str]>) -> InteractionId {
        let user = self.user;
        self.shared.with(|st| {
            let Some(m) = st.message(msg).cloned() else {
                impossible(st, format!("click on unknown message {msg}"));
                return InteractionId::new(1);
            };
            if m.ephemeral_to.is_some_and(|u| u != user) {
                impossible(st, format!("{user} cannot see ephemeral message {msg}"));
                return InteractionId::new(1);
            }
            let Some((_, component_type)) = m
                .enabled_custom_ids()
                .into_iter()
                .find(|(id, _)| id == custom_id)
            else {
                impossible(
                    st,
                    format!("message {msg} has no enabled component {custom_id}"),
                );
                return InteractionId::new(1);
            };
            let is_select = component_type != 2;
            if is_select != values.is_some() {
                impossible(
                    st,
                    format!("component {custom_id} is type {component_type}"),
                );
                return InteractionId::new(1);
            }
            let mut data = json!({"custom_id": custom_id, "component_type": component_type});
            if let Some(v) = values {
                data["values"] = json!(v);
            }
            interactions::create(
                st,
                interactions::COMPONENT,
                user,
                m.channel_id,
                data,
                Some(msg),
            )
        })
    }

    /// Clicks an enabled button on a stored message.
    pub fn click(&self, msg: MessageId, custom_id: &str) -> InteractionId {
        self.component(msg, custom_id, None)
    }

    /// Picks values in an enabled select menu on a stored message.
    pub fn select(&self, msg: MessageId, custom_id: &str, values: &[&str]) -> InteractionId {
        self.component(msg, custom_id, Some(values))
    }

    /// Submits the modal the bot opened in answer to `interaction`.
    pub fn submit_modal(
        &self,
        interaction: InteractionId,
        values: &[(&str, &str)],
    ) -> InteractionId {
        let user = self.user;
        self.shared.with(|st| {
            let Some(i) = st.interaction(interaction).cloned() else {
                impossible(st, format!("no interaction {interaction}"));
                return InteractionId::new(1);
            };
            let Some(modal) = i.modal.clone() else {
                impossible(st, format!("interaction {interaction} opened no modal"));
                return InteractionId::new(1);
            };
            let mut rows = Vec::new();
            for row in modal["components"].as_array().into_iter().flatten() {
                for input in row["components"].as_array().into_iter().flatten() {
                    let id = input["custom_id"].as_str().unwrap_or("");
                    let value = values.iter().find(|(k, _)| *k == id).map_or("", |(_, v)| *v);
                    rows.push(json!({"type": 1, "components": [{"type": 4, "custom_id": id, "value": value}]}));
                }
            }
            let data = json!({"custom_id": modal["custom_id"], "components": rows});
            interactions::create(st, interactions::MODAL_SUBMIT, user, i.channel_id, data, i.message_id)
        })
    }
}

fn can_post(st: &State, user: UserId, channel: ChannelId) -> Result<(), String> {
    let ch = st
        .channel(channel)
        .ok_or_else(|| format!("channel {channel} does not exist"))?;
    let perms = st.channel_permissions(user, channel);
    let send = if ch.is_thread() {
        permission::SEND_MESSAGES_IN_THREADS
    } else {
        permission::SEND_MESSAGES
    };
    if perms & permission::VIEW_CHANNEL == 0 || perms & send == 0 {
        return Err(format!("{user} may not post in {channel}"));
    }
    if ch.is_thread() && ch.locked && perms & permission::MANAGE_THREADS == 0 {
        return Err(format!("thread {channel} is locked"));
    }
    Ok(())
}

/// Adds a member (GUILD_MEMBER_ADD).
pub(crate) fn add_user(st: &mut State, name: &str, roles: &[&str]) -> UserId {
    let id = UserId::new(st.next_id());
    st.users.insert(
        id,
        User {
            id,
            name: name.to_string(),
            global_name: Some(name.to_string()),
            bot: false,
        },
    );
    let role_ids: Vec<RoleId> = roles
        .iter()
        .map(|r| {
            st.role_by_name(r)
                .map(|r| r.id)
                .unwrap_or_else(|| panic!("no role named {r}"))
        })
        .collect();
    st.members.insert(
        id,
        Member {
            user_id: id,
            roles: role_ids,
            joined_at_ms: st.now_ms,
        },
    );
    if let Some(m) = st.members.get(&id) {
        let mut d = model::member_json(st, m, true);
        d["guild_id"] = json!(st.guild_id.to_string());
        st.emit("GUILD_MEMBER_ADD", d);
    }
    id
}

/// Archives and/or locks a thread (THREAD_UPDATE).
pub(crate) fn set_thread_flags(
    st: &mut State,
    thread: ChannelId,
    archived: Option<bool>,
    locked: Option<bool>,
) {
    let now = st.now_ms;
    let Some(c) = st.channels.get_mut(&thread) else {
        return;
    };
    if let Some(a) = archived {
        c.archived = a;
        c.archive_timestamp_ms = now;
    }
    if let Some(l) = locked {
        c.locked = l;
    }
    st.emit_channel_update(thread);
}

/// Grants or revokes a role (GUILD_MEMBER_UPDATE).
pub(crate) fn set_role(st: &mut State, user: UserId, role: RoleId, on: bool) {
    let Some(m) = st.members.get_mut(&user) else {
        return;
    };
    let had = m.roles.contains(&role);
    if on && !had {
        m.roles.push(role);
    } else if !on && had {
        m.roles.retain(|r| *r != role);
    } else {
        return;
    }
    st.emit_member_update(user);
}

/// Adds a member deny overwrite on a channel (CHANNEL_UPDATE).
pub(crate) fn deny_permission(st: &mut State, channel: ChannelId, user: UserId, bits: u64) {
    st.permissions_revoked = true;
    let Some(c) = st.channels.get_mut(&channel) else {
        return;
    };
    match c
        .overwrites
        .iter_mut()
        .find(|o| o.kind == 1 && o.id == user.get())
    {
        Some(o) => o.deny |= bits,
        None => c.overwrites.push(Overwrite {
            id: user.get(),
            kind: 1,
            allow: 0,
            deny: bits,
        }),
    }
    st.emit_channel_update(channel);
}
