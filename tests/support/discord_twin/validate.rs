//! Harness rule 3: every body the bot sends is parsed into a typed per-route struct and checked
//! against Discord's limits (§11). Failures become Discord's nested `Invalid Form Body` errors.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Message content limit, counted in `chars()` as serenity does.
pub const MAX_CONTENT_CHARS: usize = 2000;
pub const MAX_EMBEDS: usize = 10;
pub const MAX_EMBED_TITLE: usize = 256;
pub const MAX_EMBED_DESCRIPTION: usize = 4096;
pub const MAX_EMBED_FIELDS: usize = 25;
pub const MAX_EMBED_FIELD_NAME: usize = 256;
pub const MAX_EMBED_FIELD_VALUE: usize = 1024;
pub const MAX_EMBED_FOOTER: usize = 2048;
pub const MAX_EMBED_AUTHOR: usize = 256;
pub const MAX_EMBED_TOTAL: usize = 6000;
pub const MAX_ATTACHMENTS: usize = 10;
pub const MAX_ACTION_ROWS: usize = 5;
pub const MAX_BUTTONS_PER_ROW: usize = 5;
pub const MAX_CUSTOM_ID: usize = 100;
pub const MAX_BUTTON_LABEL: usize = 80;
pub const MAX_SELECT_OPTIONS: usize = 25;
pub const MAX_SELECT_OPTION_TEXT: usize = 100;
pub const MAX_PLACEHOLDER: usize = 150;
pub const MAX_MODAL_TITLE: usize = 45;
pub const MAX_MODAL_INPUTS: usize = 5;
pub const MAX_MODAL_LABEL: usize = 45;
pub const MAX_MODAL_VALUE: usize = 4000;
pub const MAX_COMMANDS: usize = 100;
pub const MAX_COMMAND_NAME: usize = 32;
pub const MAX_COMMAND_DESCRIPTION: usize = 100;
pub const MAX_COMMAND_OPTIONS: usize = 25;
pub const MAX_CHOICES: usize = 25;
pub const MAX_CHANNEL_NAME: usize = 100;
pub const MAX_TOPIC: usize = 1024;
pub const THREAD_ARCHIVE_DURATIONS: [u32; 4] = [60, 1440, 4320, 10080];
/// The highest component type serenity 0.12.5 can read (Components V2 start at 9).
pub const MAX_LEGACY_COMPONENT_TYPE: u8 = 8;

/// Discord's nested `errors` object: `{"content": {"_errors": [{code, message}]}}`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FormErrors {
    root: Map<String, Value>,
    flat: Vec<String>,
}

impl FormErrors {
    /// Adds one error at a dotted path such as `embeds.0.title`.
    pub fn add(&mut self, path: &str, code: &str, message: impl Into<String>) {
        let message = message.into();
        self.flat.push(format!("{path}: {code} {message}"));
        let mut node = &mut self.root;
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            let entry = node.entry(seg.to_string()).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            let Some(obj) = entry.as_object_mut() else {
                return;
            };
            node = obj;
        }
        let errors = node.entry("_errors").or_insert_with(|| json!([]));
        if let Some(list) = errors.as_array_mut() {
            list.push(json!({"code": code, "message": message}));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.flat.is_empty()
    }

    pub fn to_value(&self) -> Value {
        Value::Object(self.root.clone())
    }

    /// One line per error, for violation reports.
    pub fn summary(&self) -> String {
        self.flat.join("; ")
    }

    fn max_len(&mut self, path: &str, text: &str, max: usize) {
        let n = text.chars().count();
        if n > max {
            self.add(
                path,
                "BASE_TYPE_MAX_LENGTH",
                format!("Must be {max} or fewer in length."),
            );
        }
    }

    fn len_between(&mut self, path: &str, text: &str, min: usize, max: usize) {
        let n = text.chars().count();
        if n < min || n > max {
            self.add(
                path,
                "BASE_TYPE_BAD_LENGTH",
                format!("Must be between {min} and {max} in length."),
            );
        }
    }
}

/// Parses a body into a typed struct; a mismatch names its path as Discord would.
pub fn parse<T: DeserializeOwned>(v: &Value) -> Result<T, FormErrors> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let mut errs = FormErrors::default();
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        errs.add(
            &path.replace('[', ".").replace(']', ""),
            "MODEL_TYPE_CONVERT",
            e.into_inner().to_string(),
        );
        errs
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct EmbedFooterBody {
    pub text: String,
    pub icon_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EmbedAuthorBody {
    pub name: String,
    pub url: Option<String>,
    pub icon_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EmbedFieldBody {
    pub name: String,
    pub value: String,
    pub inline: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EmbedMediaBody {
    pub url: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct EmbedBody {
    pub title: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub description: Option<String>,
    pub url: Option<String>,
    pub timestamp: Option<String>,
    pub color: Option<u32>,
    pub footer: Option<EmbedFooterBody>,
    pub image: Option<EmbedMediaBody>,
    pub thumbnail: Option<EmbedMediaBody>,
    pub author: Option<EmbedAuthorBody>,
    #[serde(default)]
    pub fields: Vec<EmbedFieldBody>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SelectOptionBody {
    pub label: String,
    pub value: String,
    pub description: Option<String>,
    pub emoji: Option<Value>,
    pub default: Option<bool>,
}

/// Any component (rows hold `components`).
#[derive(Debug, Default, Deserialize)]
pub struct ComponentBody {
    #[serde(rename = "type")]
    pub kind: u8,
    pub custom_id: Option<String>,
    pub style: Option<u8>,
    pub label: Option<String>,
    pub url: Option<String>,
    pub disabled: Option<bool>,
    pub emoji: Option<Value>,
    pub options: Option<Vec<SelectOptionBody>>,
    pub placeholder: Option<String>,
    pub min_values: Option<u8>,
    pub max_values: Option<u8>,
    pub components: Option<Vec<ComponentBody>>,
    pub value: Option<String>,
    pub required: Option<bool>,
    pub min_length: Option<u16>,
    pub max_length: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AttachmentRefBody {
    pub id: Value,
    pub filename: Option<String>,
    pub description: Option<String>,
    pub duration_secs: Option<f64>,
    pub waveform: Option<String>,
}

impl AttachmentRefBody {
    /// The id as a number (serenity sends numbers; other clients send strings).
    pub fn id_u64(&self) -> Option<u64> {
        match &self.id {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct MessageReferenceBody {
    pub message_id: Option<Value>,
    pub channel_id: Option<Value>,
    pub guild_id: Option<Value>,
    pub fail_if_not_exists: Option<bool>,
    #[serde(rename = "type")]
    pub kind: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AllowedMentionsBody {
    pub parse: Option<Vec<String>>,
    pub users: Option<Vec<Value>>,
    pub roles: Option<Vec<Value>>,
    pub replied_user: Option<bool>,
}

/// `POST /channels/{c}/messages`, `PATCH …/messages/{m}`, webhook and callback message data.
#[derive(Debug, Default, Deserialize)]
pub struct MessageBody {
    pub content: Option<String>,
    pub nonce: Option<Value>,
    pub enforce_nonce: Option<bool>,
    pub tts: Option<bool>,
    pub embeds: Option<Vec<EmbedBody>>,
    pub allowed_mentions: Option<AllowedMentionsBody>,
    pub message_reference: Option<MessageReferenceBody>,
    pub components: Option<Vec<ComponentBody>>,
    pub sticker_ids: Option<Vec<Value>>,
    pub flags: Option<u64>,
    pub attachments: Option<Vec<AttachmentRefBody>>,
    pub poll: Option<Value>,
}

impl MessageBody {
    /// The nonce as a string, whatever JSON type it came as.
    pub fn nonce_string(&self) -> Option<String> {
        match &self.nonce {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Checks a message body against §11. `files` counts uploaded parts.
pub fn check_message(body: &MessageBody, files: usize) -> FormErrors {
    let mut e = FormErrors::default();
    if let Some(c) = &body.content {
        e.max_len("content", c, MAX_CONTENT_CHARS);
    }
    if let Some(embeds) = &body.embeds {
        check_embeds(&mut e, embeds);
    }
    let kept = body.attachments.as_ref().map_or(0, Vec::len);
    if files.max(kept) > MAX_ATTACHMENTS {
        e.add(
            "attachments",
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {MAX_ATTACHMENTS} or fewer in length."),
        );
    }
    if let Some(flags) = body.flags {
        if flags & super::state::message_flag::IS_COMPONENTS_V2 != 0 {
            e.add(
                "flags",
                "MESSAGE_FLAGS_INVALID",
                "The bot never sends Components V2 (serenity 0.12.5 cannot read them).",
            );
        }
    }
    if let Some(rows) = &body.components {
        check_message_components(&mut e, rows);
    }
    e
}

fn check_embeds(e: &mut FormErrors, embeds: &[EmbedBody]) {
    if embeds.len() > MAX_EMBEDS {
        e.add(
            "embeds",
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {MAX_EMBEDS} or fewer in length."),
        );
    }
    let mut total = 0;
    for (i, em) in embeds.iter().enumerate() {
        let p = format!("embeds.{i}");
        if let Some(t) = &em.title {
            e.max_len(&format!("{p}.title"), t, MAX_EMBED_TITLE);
            total += t.chars().count();
        }
        if let Some(d) = &em.description {
            e.max_len(&format!("{p}.description"), d, MAX_EMBED_DESCRIPTION);
            total += d.chars().count();
        }
        if let Some(f) = &em.footer {
            e.max_len(&format!("{p}.footer.text"), &f.text, MAX_EMBED_FOOTER);
            total += f.text.chars().count();
        }
        if let Some(a) = &em.author {
            e.max_len(&format!("{p}.author.name"), &a.name, MAX_EMBED_AUTHOR);
            total += a.name.chars().count();
        }
        if em.fields.len() > MAX_EMBED_FIELDS {
            e.add(
                &format!("{p}.fields"),
                "BASE_TYPE_MAX_LENGTH",
                format!("Must be {MAX_EMBED_FIELDS} or fewer in length."),
            );
        }
        for (j, f) in em.fields.iter().enumerate() {
            e.len_between(
                &format!("{p}.fields.{j}.name"),
                &f.name,
                1,
                MAX_EMBED_FIELD_NAME,
            );
            e.len_between(
                &format!("{p}.fields.{j}.value"),
                &f.value,
                1,
                MAX_EMBED_FIELD_VALUE,
            );
            total += f.name.chars().count() + f.value.chars().count();
        }
    }
    if total > MAX_EMBED_TOTAL {
        e.add(
            "embeds",
            "MAX_EMBED_SIZE_EXCEEDED",
            format!("Embed size exceeds maximum size of {MAX_EMBED_TOTAL}"),
        );
    }
}

fn is_select(kind: u8) -> bool {
    matches!(kind, 3 | 5 | 6 | 7 | 8)
}

fn check_custom_id(
    e: &mut FormErrors,
    path: &str,
    id: Option<&String>,
    seen: &mut BTreeSet<String>,
) {
    match id {
        None => e.add(path, "BASE_TYPE_REQUIRED", "This field is required"),
        Some(id) => {
            e.len_between(path, id, 1, MAX_CUSTOM_ID);
            if !seen.insert(id.clone()) {
                e.add(
                    path,
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                );
            }
        }
    }
}

fn check_message_components(e: &mut FormErrors, rows: &[ComponentBody]) {
    if rows.len() > MAX_ACTION_ROWS {
        e.add(
            "components",
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {MAX_ACTION_ROWS} or fewer in length."),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        let p = format!("components.{i}");
        if row.kind > MAX_LEGACY_COMPONENT_TYPE {
            e.add(
                &format!("{p}.type"),
                "COMPONENT_TYPE_INVALID",
                "Components V2 are not allowed (serenity 0.12.5 cannot read them)",
            );
            continue;
        }
        if row.kind != 1 {
            e.add(
                &format!("{p}.type"),
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "Top-level components must be action rows",
            );
            continue;
        }
        let children = row.components.as_deref().unwrap_or_default();
        if children.is_empty() {
            e.add(
                &format!("{p}.components"),
                "BASE_TYPE_MIN_LENGTH",
                "Must be 1 or more in length.",
            );
        }
        let selects = children.iter().filter(|c| is_select(c.kind)).count();
        if selects > 0 && children.len() > 1 {
            e.add(
                &format!("{p}.components"),
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "A select must be alone in its row",
            );
        }
        if children.len() > MAX_BUTTONS_PER_ROW {
            e.add(
                &format!("{p}.components"),
                "BASE_TYPE_MAX_LENGTH",
                format!("Must be {MAX_BUTTONS_PER_ROW} or fewer in length."),
            );
        }
        for (j, c) in children.iter().enumerate() {
            let cp = format!("{p}.components.{j}");
            match c.kind {
                2 => {
                    let style = c.style.unwrap_or(0);
                    if !(1..=6).contains(&style) {
                        e.add(
                            &format!("{cp}.style"),
                            "BASE_TYPE_CHOICES",
                            "Value must be one of (1, 2, 3, 4, 5, 6).",
                        );
                    }
                    if style == 5 {
                        if c.url.is_none() {
                            e.add(
                                &format!("{cp}.url"),
                                "BASE_TYPE_REQUIRED",
                                "This field is required",
                            );
                        }
                    } else {
                        check_custom_id(
                            e,
                            &format!("{cp}.custom_id"),
                            c.custom_id.as_ref(),
                            &mut seen,
                        );
                    }
                    if let Some(l) = &c.label {
                        e.max_len(&format!("{cp}.label"), l, MAX_BUTTON_LABEL);
                    }
                    if c.label.is_none() && c.emoji.is_none() {
                        e.add(
                            &format!("{cp}.label"),
                            "BASE_TYPE_REQUIRED",
                            "A button needs a label or an emoji",
                        );
                    }
                }
                k if is_select(k) => {
                    check_custom_id(
                        e,
                        &format!("{cp}.custom_id"),
                        c.custom_id.as_ref(),
                        &mut seen,
                    );
                    if let Some(ph) = &c.placeholder {
                        e.max_len(&format!("{cp}.placeholder"), ph, MAX_PLACEHOLDER);
                    }
                    if k == 3 {
                        let opts = c.options.as_deref().unwrap_or_default();
                        if opts.is_empty() || opts.len() > MAX_SELECT_OPTIONS {
                            e.add(
                                &format!("{cp}.options"),
                                "BASE_TYPE_BAD_LENGTH",
                                format!("Must be between 1 and {MAX_SELECT_OPTIONS} in length."),
                            );
                        }
                        let mut values = BTreeSet::new();
                        for (n, o) in opts.iter().enumerate() {
                            let op = format!("{cp}.options.{n}");
                            e.len_between(
                                &format!("{op}.label"),
                                &o.label,
                                1,
                                MAX_SELECT_OPTION_TEXT,
                            );
                            e.len_between(
                                &format!("{op}.value"),
                                &o.value,
                                1,
                                MAX_SELECT_OPTION_TEXT,
                            );
                            if let Some(d) = &o.description {
                                e.max_len(&format!("{op}.description"), d, MAX_SELECT_OPTION_TEXT);
                            }
                            if !values.insert(o.value.clone()) {
                                e.add(
                                    &format!("{op}.value"),
                                    "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
                                    "Select option values must be unique",
                                );
                            }
                        }
                    }
                    let max = c.max_values.unwrap_or(1) as usize;
                    if max > MAX_SELECT_OPTIONS || c.min_values.unwrap_or(1) as usize > max {
                        e.add(
                            &format!("{cp}.max_values"),
                            "BASE_TYPE_MAX",
                            format!(
                                "int value should be less than or equal to {MAX_SELECT_OPTIONS}."
                            ),
                        );
                    }
                }
                k if k > MAX_LEGACY_COMPONENT_TYPE => {
                    e.add(
                        &format!("{cp}.type"),
                        "COMPONENT_TYPE_INVALID",
                        "Components V2 are not allowed (serenity 0.12.5 cannot read them)",
                    );
                }
                _ => e.add(
                    &format!("{cp}.type"),
                    "COMPONENT_TYPE_INVALID",
                    "Invalid component type for a message",
                ),
            }
        }
    }
}

/// A message needs content, an embed, a file, a component, a sticker or a poll (else 50006).
pub fn is_empty_message(body: &MessageBody, files: usize) -> bool {
    body.content.as_deref().unwrap_or("").is_empty()
        && body.embeds.as_ref().is_none_or(Vec::is_empty)
        && files == 0
        && body.components.as_ref().is_none_or(Vec::is_empty)
        && body.sticker_ids.as_ref().is_none_or(Vec::is_empty)
        && body.poll.is_none()
}

/// `POST /channels/{c}/messages/{m}/threads` and `POST /channels/{c}/threads`.
#[derive(Debug, Default, Deserialize)]
pub struct ThreadBody {
    pub name: String,
    pub auto_archive_duration: Option<u32>,
    #[serde(rename = "type")]
    pub kind: Option<u8>,
    pub rate_limit_per_user: Option<u32>,
    pub invitable: Option<bool>,
}

pub fn check_thread(body: &ThreadBody) -> FormErrors {
    let mut e = FormErrors::default();
    e.len_between("name", &body.name, 1, MAX_CHANNEL_NAME);
    if let Some(d) = body.auto_archive_duration {
        if !THREAD_ARCHIVE_DURATIONS.contains(&d) {
            e.add(
                "auto_archive_duration",
                "BASE_TYPE_CHOICES",
                "Value must be one of (60, 1440, 4320, 10080).",
            );
        }
    }
    if let Some(k) = body.kind {
        if ![10, 11, 12].contains(&k) {
            e.add(
                "type",
                "BASE_TYPE_CHOICES",
                "Value must be one of (10, 11, 12).",
            );
        }
    }
    e
}

/// A permission overwrite in a request.
#[derive(Debug, Default, Deserialize)]
pub struct OverwriteBody {
    pub id: Value,
    #[serde(rename = "type")]
    pub kind: u8,
    pub allow: Option<Value>,
    pub deny: Option<Value>,
}

/// `PATCH /channels/{id}`.
#[derive(Debug, Default, Deserialize)]
pub struct ChannelEditBody {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pub topic: Option<Option<String>>,
    pub archived: Option<bool>,
    pub locked: Option<bool>,
    pub auto_archive_duration: Option<u32>,
    pub position: Option<u32>,
    #[serde(default, deserialize_with = "double_option")]
    pub parent_id: Option<Option<Value>>,
    pub permission_overwrites: Option<Vec<OverwriteBody>>,
    pub nsfw: Option<bool>,
    pub rate_limit_per_user: Option<u32>,
}

fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub fn check_channel_edit(body: &ChannelEditBody) -> FormErrors {
    let mut e = FormErrors::default();
    if let Some(n) = &body.name {
        e.len_between("name", n, 1, MAX_CHANNEL_NAME);
    }
    if let Some(Some(t)) = &body.topic {
        e.max_len("topic", t, MAX_TOPIC);
    }
    if let Some(d) = body.auto_archive_duration {
        if !THREAD_ARCHIVE_DURATIONS.contains(&d) {
            e.add(
                "auto_archive_duration",
                "BASE_TYPE_CHOICES",
                "Value must be one of (60, 1440, 4320, 10080).",
            );
        }
    }
    e
}

/// `POST /guilds/{g}/channels`.
#[derive(Debug, Default, Deserialize)]
pub struct ChannelCreateBody {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Option<u8>,
    pub parent_id: Option<Value>,
    pub topic: Option<String>,
    pub position: Option<u32>,
    pub permission_overwrites: Option<Vec<OverwriteBody>>,
    pub nsfw: Option<bool>,
    pub bitrate: Option<u32>,
    pub user_limit: Option<u32>,
}

pub fn check_channel_create(body: &ChannelCreateBody) -> FormErrors {
    let mut e = FormErrors::default();
    e.len_between("name", &body.name, 1, MAX_CHANNEL_NAME);
    if let Some(t) = &body.topic {
        e.max_len("topic", t, MAX_TOPIC);
    }
    if let Some(k) = body.kind {
        if ![0, 2, 4, 5, 13, 15].contains(&k) {
            e.add(
                "type",
                "BASE_TYPE_CHOICES",
                "Value must be one of (0, 2, 4, 5, 13, 15).",
            );
        }
    }
    e
}

/// `POST /guilds/{g}/roles`, `PATCH …/roles/{r}`.
#[derive(Debug, Default, Deserialize)]
pub struct RoleBody {
    pub name: Option<String>,
    pub permissions: Option<Value>,
    pub color: Option<u32>,
    pub hoist: Option<bool>,
    pub mentionable: Option<bool>,
    pub position: Option<u16>,
    pub icon: Option<Value>,
    pub unicode_emoji: Option<Value>,
}

impl RoleBody {
    pub fn permissions_u64(&self) -> Option<u64> {
        match &self.permissions {
            Some(Value::String(s)) => s.parse().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ChoiceBody {
    pub name: String,
    pub value: Value,
    pub name_localizations: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CommandOptionBody {
    #[serde(rename = "type")]
    pub kind: u8,
    pub name: String,
    pub description: String,
    pub required: Option<bool>,
    pub choices: Option<Vec<ChoiceBody>>,
    pub options: Option<Vec<CommandOptionBody>>,
    pub autocomplete: Option<bool>,
    pub channel_types: Option<Vec<u8>>,
    pub min_value: Option<Value>,
    pub max_value: Option<Value>,
    pub min_length: Option<u16>,
    pub max_length: Option<u16>,
    pub name_localizations: Option<Value>,
    pub description_localizations: Option<Value>,
}

/// One item of a bulk command PUT.
#[derive(Debug, Default, Deserialize)]
pub struct CommandBody {
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<u8>,
    pub options: Option<Vec<CommandOptionBody>>,
    pub default_member_permissions: Option<Value>,
    pub dm_permission: Option<bool>,
    pub contexts: Option<Vec<u8>>,
    pub integration_types: Option<Vec<u8>>,
    pub nsfw: Option<bool>,
    pub name_localizations: Option<Value>,
    pub description_localizations: Option<Value>,
}

fn is_valid_command_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=MAX_COMMAND_NAME).contains(&n)
        && name.chars().all(|c| {
            c == '-' || c == '_' || c.is_numeric() || (c.is_alphabetic() && !c.is_uppercase())
        })
}

/// Checks a whole bulk PUT: one bad command rejects all of it, as Discord does.
pub fn check_commands(cmds: &[CommandBody]) -> FormErrors {
    let mut e = FormErrors::default();
    let chat_input = cmds.iter().filter(|c| c.kind.unwrap_or(1) == 1).count();
    if chat_input > MAX_COMMANDS {
        e.add(
            "",
            "APPLICATION_COMMANDS_TOO_MANY",
            format!("Maximum number of application commands reached ({MAX_COMMANDS})."),
        );
    }
    let mut names = BTreeSet::new();
    for (i, c) in cmds.iter().enumerate() {
        let p = i.to_string();
        let kind = c.kind.unwrap_or(1);
        if kind == 1 {
            if !is_valid_command_name(&c.name) {
                e.add(
                    &format!("{p}.name"),
                    "APPLICATION_COMMAND_INVALID_NAME",
                    "Command name is invalid",
                );
            }
            e.len_between(
                &format!("{p}.description"),
                c.description.as_deref().unwrap_or(""),
                1,
                MAX_COMMAND_DESCRIPTION,
            );
        } else {
            e.len_between(&format!("{p}.name"), &c.name, 1, MAX_COMMAND_NAME);
        }
        if !names.insert((kind, c.name.clone())) {
            e.add(
                &format!("{p}.name"),
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                format!("Application command names must be unique: {}", c.name),
            );
        }
        if let Some(opts) = &c.options {
            check_command_options(&mut e, &format!("{p}.options"), opts);
        }
    }
    e
}

fn check_command_options(e: &mut FormErrors, p: &str, opts: &[CommandOptionBody]) {
    if opts.len() > MAX_COMMAND_OPTIONS {
        e.add(
            p,
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {MAX_COMMAND_OPTIONS} or fewer in length."),
        );
    }
    let mut names = BTreeSet::new();
    let mut seen_optional = false;
    for (i, o) in opts.iter().enumerate() {
        let op = format!("{p}.{i}");
        if !is_valid_command_name(&o.name) {
            e.add(
                &format!("{op}.name"),
                "APPLICATION_COMMAND_INVALID_NAME",
                "Command name is invalid",
            );
        }
        e.len_between(
            &format!("{op}.description"),
            &o.description,
            1,
            MAX_COMMAND_DESCRIPTION,
        );
        if !names.insert(o.name.clone()) {
            e.add(
                &format!("{op}.name"),
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            );
        }
        if !(1..=11).contains(&o.kind) {
            e.add(
                &format!("{op}.type"),
                "BASE_TYPE_CHOICES",
                "Value must be one of (1..11).",
            );
        }
        let required = o.required.unwrap_or(false);
        if required && seen_optional {
            e.add(
                &format!("{op}.required"),
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                "Required options must be placed before non-required options",
            );
        }
        seen_optional |= !required;
        if let Some(ch) = &o.choices {
            if ch.len() > MAX_CHOICES {
                e.add(
                    &format!("{op}.choices"),
                    "BASE_TYPE_MAX_LENGTH",
                    format!("Must be {MAX_CHOICES} or fewer in length."),
                );
            }
            if o.autocomplete == Some(true) && !ch.is_empty() {
                e.add(
                    &format!("{op}.autocomplete"),
                    "APPLICATION_COMMAND_OPTION_CHOICES_AUTOCOMPLETE",
                    "Autocomplete cannot be set with choices",
                );
            }
            for (j, c) in ch.iter().enumerate() {
                e.len_between(&format!("{op}.choices.{j}.name"), &c.name, 1, 100);
            }
        }
        if let Some(sub) = &o.options {
            check_command_options(e, &format!("{op}.options"), sub);
        }
    }
}

/// `POST /interactions/{id}/{token}/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackBody {
    #[serde(rename = "type")]
    pub kind: u8,
    pub data: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AutocompleteData {
    pub choices: Vec<ChoiceBody>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ModalData {
    pub custom_id: String,
    pub title: String,
    pub components: Vec<ComponentBody>,
}

pub fn check_autocomplete(d: &AutocompleteData) -> FormErrors {
    let mut e = FormErrors::default();
    if d.choices.len() > MAX_CHOICES {
        e.add(
            "data.choices",
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {MAX_CHOICES} or fewer in length."),
        );
    }
    for (i, c) in d.choices.iter().enumerate() {
        e.len_between(&format!("data.choices.{i}.name"), &c.name, 1, 100);
    }
    e
}

pub fn check_modal(d: &ModalData) -> FormErrors {
    let mut e = FormErrors::default();
    e.len_between("data.custom_id", &d.custom_id, 1, MAX_CUSTOM_ID);
    e.len_between("data.title", &d.title, 1, MAX_MODAL_TITLE);
    if d.components.is_empty() || d.components.len() > MAX_MODAL_INPUTS {
        e.add(
            "data.components",
            "BASE_TYPE_BAD_LENGTH",
            format!("Must be between 1 and {MAX_MODAL_INPUTS} in length."),
        );
    }
    for (i, row) in d.components.iter().enumerate() {
        let p = format!("data.components.{i}");
        if row.kind != 1 {
            e.add(&format!("{p}.type"), "COMPONENT_TYPE_INVALID", "Modal rows must be action rows (Label and FileUpload are unreadable by serenity 0.12.5)");
            continue;
        }
        for (j, c) in row
            .components
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let cp = format!("{p}.components.{j}");
            if c.kind != 4 {
                e.add(
                    &format!("{cp}.type"),
                    "COMPONENT_TYPE_INVALID",
                    "Modals hold text inputs only",
                );
                continue;
            }
            e.len_between(
                &format!("{cp}.custom_id"),
                c.custom_id.as_deref().unwrap_or(""),
                1,
                MAX_CUSTOM_ID,
            );
            e.len_between(
                &format!("{cp}.label"),
                c.label.as_deref().unwrap_or(""),
                1,
                MAX_MODAL_LABEL,
            );
            if let Some(v) = &c.value {
                e.max_len(&format!("{cp}.value"), v, MAX_MODAL_VALUE);
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_errors_have_discords_shape() {
        let mut e = FormErrors::default();
        e.add(
            "embeds.0.title",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 256 or fewer in length.",
        );
        assert_eq!(
            e.to_value(),
            json!({"embeds": {"0": {"title": {"_errors": [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 256 or fewer in length."}]}}}})
        );
    }

    #[test]
    fn message_limits_are_enforced() {
        let body: MessageBody = parse(&json!({"content": "x".repeat(2001)})).unwrap();
        assert!(!check_message(&body, 0).is_empty());
        let body: MessageBody = parse(&json!({"content": "é".repeat(2000)})).unwrap();
        assert!(check_message(&body, 0).is_empty());
        let body: MessageBody = parse(&json!({"components": [{"type": 1, "components": [
            {"type": 2, "style": 1, "label": "a", "custom_id": "same"},
            {"type": 2, "style": 1, "label": "b", "custom_id": "same"}]}]}))
        .unwrap();
        assert!(check_message(&body, 0).summary().contains("DUPLICATED"));
        let body: MessageBody = parse(&json!({"content": ""})).unwrap();
        assert!(is_empty_message(&body, 0));
    }

    #[test]
    fn a_type_mismatch_names_its_path() {
        let err = parse::<MessageBody>(&json!({"embeds": [{"title": 5}]})).unwrap_err();
        assert!(
            err.summary().starts_with("embeds.0.title"),
            "{}",
            err.summary()
        );
    }
}
