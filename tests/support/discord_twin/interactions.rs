//! Interactions (§4.3, §6): simulated users create them (INTERACTION_CREATE), the bot answers
//! through `POST /interactions/{id}/{token}/callback` within the ack deadline, then uses the
//! interaction token on `/webhooks/{app}/{token}` for `@original` and followups.

use serde_json::{json, Value};
use serenity::model::id::{ChannelId, InteractionId, MessageId, UserId};

use super::model;
use super::ratelimit::fnv1a;
use super::rest::{
    self, no_content, ok, parse_body, parse_id, ApiError, Ctx, NewMessage, RouteResult,
};
use super::state::{message_flag, Interaction, InteractionAck, State};
use super::transcript::TimelineEntry;
use super::validate::{self, CallbackBody, FormErrors};

/// Interaction types.
pub const COMMAND: u8 = 2;
pub const COMPONENT: u8 = 3;
pub const AUTOCOMPLETE: u8 = 4;
pub const MODAL_SUBMIT: u8 = 5;

/// Response types each interaction type accepts.
fn allowed_responses(kind: u8) -> &'static [u8] {
    match kind {
        COMMAND => &[4, 5, 9],
        COMPONENT => &[4, 5, 6, 7, 9],
        AUTOCOMPLETE => &[8],
        MODAL_SUBMIT => &[4, 5, 6, 7],
        _ => &[],
    }
}

/// Stores an interaction and emits INTERACTION_CREATE.
pub(crate) fn create(
    st: &mut State,
    kind: u8,
    user: UserId,
    channel: ChannelId,
    data: Value,
    message: Option<MessageId>,
) -> InteractionId {
    let id = InteractionId::new(st.next_id());
    let token = format!(
        "aW50ZXJhY3Rpb24{}{:016x}{:016x}",
        id,
        fnv1a(id.to_string().as_bytes()),
        fnv1a(&id.get().to_le_bytes())
    );
    let i = Interaction {
        id,
        token,
        kind,
        user_id: user,
        channel_id: channel,
        data,
        message_id: message,
        created_ms: st.now_ms,
        ack: None,
        original_message: None,
        followups: Vec::new(),
        modal: None,
    };
    let v = interaction_json(st, &i);
    st.interactions.insert(id, i);
    st.timeline.push(TimelineEntry::Interaction {
        channel,
        interaction: id,
    });
    st.emit("INTERACTION_CREATE", v);
    id
}

fn interaction_json(st: &State, i: &Interaction) -> Value {
    let ch = st.channel(i.channel_id);
    let mut member = st
        .members
        .get(&i.user_id)
        .map_or(Value::Null, |m| model::member_json(st, m, true));
    member["permissions"] = json!(st.channel_permissions(i.user_id, i.channel_id).to_string());
    let mut v = json!({
        "id": i.id.to_string(),
        "application_id": st.application_id().to_string(),
        "type": i.kind,
        "token": i.token,
        "version": 1,
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "attachment_size_limit": st.cfg.attachment_size_limit,
        "authorizing_integration_owners": {"0": st.guild_id.to_string()},
        "context": 0,
        "app_permissions": st.channel_permissions(st.bot_id, i.channel_id).to_string(),
        "channel_id": i.channel_id.to_string(),
        "channel": {
            "id": i.channel_id.to_string(),
            "type": ch.map_or(0, |c| c.kind),
            "name": ch.map(|c| c.name.clone()),
            "guild_id": st.guild_id.to_string(),
            "parent_id": ch.and_then(|c| c.parent_id).map(|p| p.to_string()),
        },
        "guild_id": st.guild_id.to_string(),
        "member": member,
        "data": i.data,
    });
    if let Some(m) = i.message_id.and_then(|m| st.messages.get(&m)) {
        v["message"] = model::message_json(st, m, false);
    }
    v
}

fn find<'a>(st: &'a State, id: &str, token: &str) -> Result<&'a Interaction, ApiError> {
    parse_id(id)
        .map(InteractionId::new)
        .and_then(|id| st.interactions.get(&id))
        .filter(|i| i.token == token)
        .ok_or_else(ApiError::unknown_interaction)
}

/// `POST /interactions/{id}/{token}/callback`.
pub(crate) fn callback(st: &mut State, id: &str, token: &str, ctx: &Ctx) -> RouteResult {
    let i = find(st, id, token)?.clone();
    if st.now_ms.saturating_sub(i.created_ms) > st.cfg.ack_deadline.as_millis() as u64 {
        return Err(ApiError::unknown_interaction());
    }
    if i.ack.is_some() {
        return Err(ApiError::new(
            400,
            40060,
            "Interaction has already been acknowledged.",
        ));
    }
    let raw = ctx.body();
    let body: CallbackBody = parse_body(&raw)?;
    if !allowed_responses(i.kind).contains(&body.kind) {
        let mut e = FormErrors::default();
        e.add(
            "type",
            "INTERACTION_RESPONSE_TYPE_INVALID",
            format!(
                "Response type {} is not allowed for interaction type {}",
                body.kind, i.kind
            ),
        );
        return Err(ApiError::invalid_form(&e));
    }
    let data = body.data.clone().unwrap_or_else(|| json!({}));
    let ephemeral = data["flags"].as_u64().unwrap_or(0) & message_flag::EPHEMERAL != 0;
    let ephemeral_to = ephemeral.then_some(i.user_id);
    let app = st.application_id().get();
    let mut original = None;
    let mut modal = None;
    match body.kind {
        4 => {
            let spec = NewMessage {
                channel: i.channel_id,
                author: st.bot_id,
                webhook_id: Some(app),
                ephemeral_to,
                extra_flags: if ephemeral {
                    message_flag::EPHEMERAL
                } else {
                    0
                },
            };
            let mut msg = rest::build_message(st, spec, &data, &ctx.files)?;
            msg.interaction_id = Some(i.id);
            original = Some(st.insert_message(msg));
        }
        5 => {
            let flags = data["flags"].as_u64().unwrap_or(0);
            if flags & !message_flag::EPHEMERAL != 0 {
                let mut e = FormErrors::default();
                e.add(
                    "data.flags",
                    "INTERACTION_RESPONSE_FLAGS_INVALID",
                    "A deferred reply carries only the EPHEMERAL flag",
                );
                return Err(ApiError::invalid_form(&e));
            }
            if i.kind == COMMAND || i.kind == MODAL_SUBMIT || i.kind == COMPONENT {
                let mut msg = st.new_message(i.channel_id, st.bot_id);
                msg.flags = message_flag::LOADING | (flags & message_flag::EPHEMERAL);
                msg.webhook_id = Some(app);
                msg.ephemeral_to = ephemeral_to;
                msg.interaction_id = Some(i.id);
                original = Some(st.insert_message(msg));
            }
        }
        6 => original = i.message_id,
        7 => {
            let Some(m) = i.message_id.and_then(|m| st.message(m)).cloned() else {
                return Err(ApiError::unknown_message().bot_fault("type 7 without a message"));
            };
            let edited = rest::apply_edit(st, m, &data, &ctx.files)?;
            let mid = edited.id;
            st.timeline.push(TimelineEntry::Edit {
                channel: edited.channel_id,
                message: mid,
            });
            st.messages.insert(mid, edited);
            st.emit_message_update(mid);
            original = Some(mid);
        }
        8 => {
            let d: validate::AutocompleteData = parse_body(&data)?;
            let errs = validate::check_autocomplete(&d);
            if !errs.is_empty() {
                return Err(ApiError::invalid_form(&errs));
            }
        }
        9 => {
            let d: validate::ModalData = parse_body(&data)?;
            let errs = validate::check_modal(&d);
            if !errs.is_empty() {
                return Err(ApiError::invalid_form(&errs));
            }
            modal = Some(data.clone());
        }
        _ => {}
    }
    let now = st.now_ms;
    if let Some(stored) = st.interactions.get_mut(&i.id) {
        stored.ack = Some(InteractionAck {
            response_type: body.kind,
            at_ms: now,
            data: body.data,
        });
        stored.original_message = original;
        stored.modal = modal;
    }
    if ctx.param("with_response") == Some("true") {
        let message = original
            .and_then(|m| st.messages.get(&m))
            .map(|m| model::message_json(st, m, false));
        let v = json!({
            "interaction": {"id": i.id.to_string(), "type": i.kind},
            "resource": {"type": body.kind, "message": message},
        });
        return Ok(rest::Reply {
            status: 200,
            body: Some(v),
        });
    }
    Ok(no_content())
}

fn followup_target(st: &State, i: &Interaction, which: &str) -> Result<MessageId, ApiError> {
    let id = if which == "@original" {
        i.original_message
    } else {
        parse_id(which)
            .map(MessageId::new)
            .filter(|m| i.followups.contains(m) || i.original_message == Some(*m))
    };
    id.filter(|m| st.message(*m).is_some())
        .ok_or_else(ApiError::unknown_message)
}

/// `/webhooks/{app}/{token}[/messages/{@original|m}]`.
pub(crate) fn webhook(
    st: &mut State,
    app: &str,
    token: &str,
    rest: &[&str],
    ctx: &Ctx,
) -> RouteResult {
    if parse_id(app) != Some(st.application_id().get()) {
        return Err(ApiError::new(404, 10015, "Unknown Webhook"));
    }
    let Some(i) = st.interactions.values().find(|i| i.token == token).cloned() else {
        return Err(ApiError::new(404, 10015, "Unknown Webhook"));
    };
    if st.now_ms.saturating_sub(i.created_ms) > st.cfg.interaction_token_ttl.as_millis() as u64 {
        return Err(ApiError::unknown_interaction());
    }
    if i.ack.is_none() {
        return Err(ApiError::new(404, 10015, "Unknown Webhook")
            .bot_fault("webhook call before the interaction was acknowledged"));
    }
    let message_reply = |st: &mut State, m: MessageId| -> RouteResult {
        let m = st
            .messages
            .get(&m)
            .cloned()
            .ok_or_else(ApiError::unknown_message)?;
        let v = model::message_json(st, &m, false);
        Ok(ok::<serenity::model::channel::Message>(
            st, "Message", 200, v,
        ))
    };
    match (ctx.method.as_str(), rest) {
        ("POST", []) => {
            let raw = ctx.body();
            let flags = raw["flags"].as_u64().unwrap_or(0);
            let ephemeral = flags & message_flag::EPHEMERAL != 0;
            let spec = NewMessage {
                channel: i.channel_id,
                author: st.bot_id,
                webhook_id: Some(st.application_id().get()),
                ephemeral_to: ephemeral.then_some(i.user_id),
                extra_flags: if ephemeral {
                    message_flag::EPHEMERAL
                } else {
                    0
                },
            };
            let mut msg = rest::build_message(st, spec, &raw, &ctx.files)?;
            msg.interaction_id = Some(i.id);
            let id = st.insert_message(msg);
            if let Some(stored) = st.interactions.get_mut(&i.id) {
                stored.followups.push(id);
            }
            message_reply(st, id)
        }
        ("GET", ["messages", which]) => {
            let m = followup_target(st, &i, which)?;
            message_reply(st, m)
        }
        ("PATCH", ["messages", which]) => {
            let m = followup_target(st, &i, which)?;
            let msg = st
                .messages
                .get(&m)
                .cloned()
                .ok_or_else(ApiError::unknown_message)?;
            let edited = rest::apply_edit(st, msg, &ctx.body(), &ctx.files)?;
            st.timeline.push(TimelineEntry::Edit {
                channel: edited.channel_id,
                message: m,
            });
            st.messages.insert(m, edited);
            st.emit_message_update(m);
            message_reply(st, m)
        }
        ("DELETE", ["messages", which]) => {
            let m = followup_target(st, &i, which)?;
            st.delete_message(m);
            Ok(no_content())
        }
        _ => Err(ApiError {
            violation: Some((
                super::state::ViolationKind::UnknownRoute,
                format!("{} /webhooks/…/{}", ctx.method, rest.join("/")),
            )),
            ..ApiError::new(404, 0, "404: Not Found")
        }),
    }
}
