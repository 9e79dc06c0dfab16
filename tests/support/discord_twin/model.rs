//! Payload builders: state → the exact Discord JSON field sets that serenity 0.12.5 (and
//! twilight 0.18) accept. Nothing here mutates state; `selfcheck` verifies every result.

use serde_json::{json, Map, Value};
use serenity::model::id::{ChannelId, UserId};

use super::cdn;
use super::snowflake::iso_timestamp;
use super::state::{
    message_flag, Attachment, Channel, Member, Message, Role, State, ThreadMember, User,
};

/// `application.flags` bit for an approved MESSAGE_CONTENT intent.
const APP_FLAG_GATEWAY_MESSAGE_CONTENT: u64 = 1 << 18;

pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id.to_string(),
        "username": u.name,
        "discriminator": "0",
        "global_name": u.global_name,
        "avatar": null,
        "bot": u.bot,
    })
}

pub fn user_json_by_id(st: &State, id: UserId) -> Value {
    st.users.get(&id).map_or_else(
        || {
            json!({"id": id.to_string(), "username": "unknown", "discriminator": "0",
                   "global_name": null, "avatar": null})
        },
        user_json,
    )
}

pub fn current_user_json(st: &State) -> Value {
    let mut v = user_json_by_id(st, st.bot_id);
    v["mfa_enabled"] = json!(false);
    v["verified"] = json!(true);
    v["flags"] = json!(0);
    v
}

pub fn role_json(st: &State, r: &Role) -> Value {
    let mut v = json!({
        "id": r.id.to_string(),
        "name": r.name,
        "color": r.color,
        "colors": {"primary_color": r.color, "secondary_color": null, "tertiary_color": null},
        "hoist": r.hoist,
        "icon": null,
        "unicode_emoji": null,
        "position": r.position,
        "permissions": r.permissions.to_string(),
        "managed": r.managed,
        "mentionable": r.mentionable,
        "flags": 0,
    });
    if r.managed && r.id == st.bot_role_id {
        v["tags"] = json!({"bot_id": st.bot_id.to_string()});
    }
    v
}

/// A member; `with_user` false gives the partial member of gateway messages.
pub fn member_json(st: &State, m: &Member, with_user: bool) -> Value {
    let mut v = json!({
        "roles": m.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "joined_at": iso_timestamp(m.joined_at_ms),
        "deaf": false,
        "mute": false,
        "flags": 0,
    });
    if with_user {
        v["user"] = user_json_by_id(st, m.user_id);
        v["nick"] = Value::Null;
        v["avatar"] = Value::Null;
        v["premium_since"] = Value::Null;
        v["pending"] = json!(false);
    }
    v
}

pub fn thread_member_json(tm: &ThreadMember) -> Value {
    json!({
        "id": tm.thread_id.to_string(),
        "user_id": tm.user_id.to_string(),
        "join_timestamp": iso_timestamp(tm.joined_ms),
        "flags": 0,
    })
}

pub fn channel_json(st: &State, id: ChannelId) -> Value {
    let Some(c) = st.channels.get(&id) else {
        return Value::Null;
    };
    channel_value(st, c)
}

fn channel_value(st: &State, c: &Channel) -> Value {
    let overwrites: Vec<Value> = c
        .overwrites
        .iter()
        .map(|o| {
            json!({"id": o.id.to_string(), "type": o.kind,
                   "allow": o.allow.to_string(), "deny": o.deny.to_string()})
        })
        .collect();
    let mut v = json!({
        "id": c.id.to_string(),
        "type": c.kind,
        "guild_id": st.guild_id.to_string(),
        "name": c.name,
        "position": c.position,
        "permission_overwrites": overwrites,
        "parent_id": c.parent_id.map(|p| p.to_string()),
        "topic": c.topic,
        "nsfw": false,
        "flags": 0,
        "rate_limit_per_user": 0,
    });
    if c.kind == super::state::channel_kind::VOICE {
        v["bitrate"] = json!(64000);
        v["user_limit"] = json!(0);
        v["rtc_region"] = Value::Null;
    }
    if c.is_thread() {
        let member_count = st
            .thread_members
            .iter()
            .filter(|m| m.thread_id == c.id)
            .count();
        v["owner_id"] = json!(c.owner_id.map(|o| o.to_string()));
        v["message_count"] = json!(c.message_count);
        v["member_count"] = json!(member_count.min(50));
        v["total_message_sent"] = json!(c.message_count);
        v["thread_metadata"] = json!({
            "archived": c.archived,
            "auto_archive_duration": c.auto_archive_duration,
            "archive_timestamp": iso_timestamp(c.archive_timestamp_ms),
            "locked": c.locked,
            "create_timestamp": iso_timestamp(c.created_ms),
        });
        if let Some(obj) = v.as_object_mut() {
            obj.remove("topic");
            obj.remove("permission_overwrites");
        }
    }
    v
}

pub fn attachment_json(st: &State, a: &Attachment) -> Value {
    let url = cdn::signed_url(st, a);
    let mut v = json!({
        "id": a.id.to_string(),
        "filename": a.filename,
        "size": a.bytes.len(),
        "url": url,
        "proxy_url": url,
        "content_type": a.content_type,
    });
    if let Some(d) = &a.description {
        v["description"] = json!(d);
    }
    if let Some(d) = a.duration_secs {
        v["duration_secs"] = json!(d);
    }
    if let Some(w) = &a.waveform {
        v["waveform"] = json!(w);
    }
    v
}

/// A message; `gateway` adds `guild_id` and the author's partial `member`.
pub fn message_json(st: &State, m: &Message, gateway: bool) -> Value {
    let mentions: Vec<Value> = m
        .mentions
        .iter()
        .map(|u| {
            let mut v = user_json_by_id(st, *u);
            if gateway {
                if let Some(member) = st.members.get(u) {
                    v["member"] = member_json(st, member, false);
                }
            }
            v
        })
        .collect();
    let attachments: Vec<Value> = m
        .attachments
        .iter()
        .filter_map(|a| st.attachments.get(a))
        .map(|a| attachment_json(st, a))
        .collect();
    let embeds: Vec<Value> = m.embeds.iter().map(embed_response).collect();
    let mut v = json!({
        "id": m.id.to_string(),
        "channel_id": m.channel_id.to_string(),
        "author": user_json_by_id(st, m.author_id),
        "content": m.content,
        "timestamp": iso_timestamp(m.created_ms),
        "edited_timestamp": m.edited_ms.map(iso_timestamp),
        "tts": m.tts,
        "mention_everyone": m.mention_everyone,
        "mentions": mentions,
        "mention_roles": m.mention_roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "attachments": attachments,
        "embeds": embeds,
        "pinned": false,
        "type": m.kind,
        "flags": m.flags,
        "components": m.components,
    });
    let reactions = reactions_json(st, m);
    if !reactions.is_empty() {
        v["reactions"] = json!(reactions);
    }
    if let Some(n) = &m.nonce {
        v["nonce"] = json!(n);
    }
    if let Some(w) = m.webhook_id {
        v["webhook_id"] = json!(w.to_string());
        v["application_id"] = json!(w.to_string());
    }
    if let Some(r) = m.referenced {
        v["message_reference"] = json!({
            "type": 0,
            "message_id": r.to_string(),
            "channel_id": m.channel_id.to_string(),
            "guild_id": st.guild_id.to_string(),
        });
        v["referenced_message"] = st
            .messages
            .get(&r)
            .filter(|r| !r.deleted)
            .map_or(Value::Null, |r| message_json(st, r, false));
    }
    if m.flags & message_flag::HAS_THREAD != 0 {
        if let Some(t) = m.thread_id {
            v["thread"] = channel_json(st, t);
        }
    }
    if gateway {
        v["guild_id"] = json!(st.guild_id.to_string());
        if let Some(member) = st
            .members
            .get(&m.author_id)
            .filter(|_| m.webhook_id.is_none())
        {
            v["member"] = member_json(st, member, false);
        }
    }
    if !st.cfg.message_content_intent {
        // With the intent off in the portal, REST blanks content too (the gateway filters per
        // session in `State::emit`).
        return super::state::blank_content(&v, st.bot_id);
    }
    v
}

fn reactions_json(st: &State, m: &Message) -> Vec<Value> {
    let mut by_emoji: Vec<(super::state::Emoji, u32, bool)> = Vec::new();
    for r in st.reactions.iter().filter(|r| r.message_id == m.id) {
        let me = r.user_id == st.bot_id;
        match by_emoji.iter_mut().find(|(e, _, _)| *e == r.emoji) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 |= me;
            }
            None => by_emoji.push((r.emoji.clone(), 1, me)),
        }
    }
    by_emoji
        .into_iter()
        .map(|(e, count, me)| {
            json!({
                "count": count,
                "count_details": {"burst": 0, "normal": count},
                "me": me,
                "me_burst": false,
                "burst_colors": [],
                "emoji": emoji_json(&e),
            })
        })
        .collect()
}

pub fn emoji_json(e: &super::state::Emoji) -> Value {
    json!({"id": e.id.map(|i| i.to_string()), "name": e.name})
}

/// An embed as Discord returns it: the request plus `type: "rich"`.
fn embed_response(e: &Value) -> Value {
    let mut e = e.clone();
    if let Some(obj) = e.as_object_mut() {
        obj.entry("type").or_insert(json!("rich"));
    }
    e
}

pub fn guild_create_json(st: &State) -> Value {
    let roles: Vec<Value> = st.roles.values().map(|r| role_json(st, r)).collect();
    let channels: Vec<Value> = st
        .channels
        .values()
        .filter(|c| !c.deleted && !c.is_thread())
        .map(|c| channel_value(st, c))
        .collect();
    let threads: Vec<Value> = st
        .channels
        .values()
        .filter(|c| !c.deleted && c.is_thread() && !c.archived)
        .map(|c| channel_value(st, c))
        .collect();
    let members: Vec<Value> = st
        .members
        .values()
        .map(|m| member_json(st, m, true))
        .collect();
    json!({
        "id": st.guild_id.to_string(),
        "name": st.guild_name,
        "icon": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": st.owner_id.to_string(),
        "afk_channel_id": null,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": roles,
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": null,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "nsfw_level": 0,
        "stickers": [],
        "premium_progress_bar_enabled": false,
        "joined_at": iso_timestamp(st.members.get(&st.bot_id).map_or(0, |m| m.joined_at_ms)),
        "large": false,
        "unavailable": false,
        "member_count": st.members.len(),
        "voice_states": [],
        "members": members,
        "channels": channels,
        "threads": threads,
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    })
}

/// `GET /guilds/{g}`: a partial guild.
pub fn partial_guild_json(st: &State) -> Value {
    let mut v = guild_create_json(st);
    if let Some(obj) = v.as_object_mut() {
        for k in [
            "joined_at",
            "large",
            "unavailable",
            "member_count",
            "voice_states",
            "members",
            "channels",
            "threads",
            "presences",
            "stage_instances",
            "guild_scheduled_events",
            "soundboard_sounds",
        ] {
            obj.remove(k);
        }
    }
    v
}

pub fn ready_json(st: &State, session_id: &str) -> Value {
    let mut flags = 0;
    if st.cfg.message_content_intent {
        flags |= APP_FLAG_GATEWAY_MESSAGE_CONTENT;
    }
    json!({
        "v": 10,
        "user": current_user_json(st),
        "guilds": [{"id": st.guild_id.to_string(), "unavailable": true}],
        "session_id": session_id,
        "resume_gateway_url": format!("{}/gateway", st.base_url.replacen("http", "ws", 1)),
        "shard": [0, 1],
        "application": {"id": st.application_id().to_string(), "flags": flags},
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": [],
        "user_settings": {},
    })
}

pub fn application_info_json(st: &State) -> Value {
    json!({
        "id": st.application_id().to_string(),
        "name": st.cfg.bot_name,
        "icon": null,
        "description": "",
        "bot_public": true,
        "bot_require_code_grant": false,
        "verify_key": "0000000000000000000000000000000000000000000000000000000000000000",
        "flags": 0,
        "owner": user_json_by_id(st, st.owner_id),
        "team": null,
    })
}

/// A stored command as Discord returns it.
pub fn command_json(st: &State, c: &super::state::Command) -> Value {
    let mut v = match &c.definition {
        Value::Object(m) => Value::Object(m.clone()),
        _ => Value::Object(Map::new()),
    };
    v["id"] = json!(c.id.to_string());
    v["application_id"] = json!(st.application_id().to_string());
    v["version"] = json!(c.version.to_string());
    v["type"] = json!(c.kind);
    v["guild_id"] = json!(c.guild_id.map(|g| g.to_string()));
    if v.get("default_member_permissions").is_none() {
        v["default_member_permissions"] = Value::Null;
    }
    if v.get("nsfw").is_none() {
        v["nsfw"] = json!(false);
    }
    if v.get("description").is_none() {
        v["description"] = json!("");
    }
    v
}

/// Standard base64 (RFC 4648, with padding), for tokens and waveforms.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
