//! Harness rule 2: every payload the twin sends is first deserialized into the matching
//! serenity 0.12.5 model type with `serde_path_to_error`, so a field serenity needs but the twin
//! forgot fails loudly with its JSON path instead of becoming a silently dropped
//! `Event::Unknown`.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use serenity::model::event::{self as ev, Event, GatewayEvent};

/// Deserializes `v` into `T`; the error names the type, the JSON path and serde's reason.
pub fn check<T: DeserializeOwned>(type_name: &str, v: &Value) -> Result<(), String> {
    serde_path_to_error::deserialize::<_, T>(v)
        .map(|_| ())
        .map_err(|e| {
            let path = e.path().to_string();
            format!(
                "{type_name} rejects the payload at `{path}`: {}",
                e.into_inner()
            )
        })
}

/// Checks one dispatch body against serenity's event type for `name`, then checks that the whole
/// frame is not read as `Event::Unknown`.
pub fn check_dispatch(name: &str, d: &Value) -> Result<(), String> {
    match name {
        "READY" => check::<ev::ReadyEvent>(name, d),
        "RESUMED" => check::<ev::ResumedEvent>(name, d),
        "GUILD_CREATE" => check::<ev::GuildCreateEvent>(name, d),
        "GUILD_ROLE_CREATE" => check::<ev::GuildRoleCreateEvent>(name, d),
        "GUILD_ROLE_UPDATE" => check::<ev::GuildRoleUpdateEvent>(name, d),
        "GUILD_MEMBER_ADD" => check::<ev::GuildMemberAddEvent>(name, d),
        "GUILD_MEMBER_UPDATE" => check::<ev::GuildMemberUpdateEvent>(name, d),
        "GUILD_MEMBERS_CHUNK" => check::<ev::GuildMembersChunkEvent>(name, d),
        "CHANNEL_CREATE" => check::<ev::ChannelCreateEvent>(name, d),
        "CHANNEL_UPDATE" => check::<ev::ChannelUpdateEvent>(name, d),
        "CHANNEL_DELETE" => check::<ev::ChannelDeleteEvent>(name, d),
        "THREAD_CREATE" => check::<ev::ThreadCreateEvent>(name, d),
        "THREAD_UPDATE" => check::<ev::ThreadUpdateEvent>(name, d),
        "THREAD_DELETE" => check::<ev::ThreadDeleteEvent>(name, d),
        "THREAD_MEMBERS_UPDATE" => check::<ev::ThreadMembersUpdateEvent>(name, d),
        "MESSAGE_CREATE" => check::<ev::MessageCreateEvent>(name, d),
        "MESSAGE_UPDATE" => check::<ev::MessageUpdateEvent>(name, d),
        "MESSAGE_DELETE" => check::<ev::MessageDeleteEvent>(name, d),
        "MESSAGE_REACTION_ADD" => check::<ev::ReactionAddEvent>(name, d),
        "MESSAGE_REACTION_REMOVE" => check::<ev::ReactionRemoveEvent>(name, d),
        "TYPING_START" => check::<ev::TypingStartEvent>(name, d),
        "INTERACTION_CREATE" => check::<ev::InteractionCreateEvent>(name, d),
        other => Err(format!(
            "the twin has no serenity type for dispatch {other}"
        )),
    }?;
    let frame = json!({"op": 0, "s": 1, "t": name, "d": d});
    match serde_json::from_value::<GatewayEvent>(frame) {
        Ok(GatewayEvent::Dispatch(_, Event::Unknown(_))) => {
            Err(format!("serenity reads dispatch {name} as Event::Unknown"))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("serenity cannot read the {name} frame: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_create() -> Value {
        json!({
            "id": "1", "channel_id": "2", "guild_id": "3",
            "author": {"id": "4", "username": "alice", "discriminator": "0",
                       "global_name": null, "avatar": null},
            "content": "hi", "timestamp": "2026-01-01T00:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false,
            "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
            "pinned": false, "type": 0, "flags": 0, "components": [],
        })
    }

    #[test]
    fn a_well_formed_message_create_passes() {
        assert_eq!(check_dispatch("MESSAGE_CREATE", &message_create()), Ok(()));
    }

    #[test]
    fn a_broken_payload_is_rejected_with_its_json_path() {
        let mut d = message_create();
        d["author"]["id"] = json!("not-a-snowflake");
        let err = check_dispatch("MESSAGE_CREATE", &d).unwrap_err();
        assert!(err.contains("`author.id`"), "{err}");

        let mut d = message_create();
        d.as_object_mut().unwrap().remove("tts");
        let err = check_dispatch("MESSAGE_CREATE", &d).unwrap_err();
        assert!(err.contains("tts"), "{err}");
    }

    #[test]
    fn an_unknown_dispatch_name_is_rejected() {
        assert!(check_dispatch("MESSAGE_TELEPORT", &json!({})).is_err());
    }
}
