//! Channel transcripts for snapshots: `--- from: alice` / `--- from: bot` blocks with
//! `[typing]`, `[clicks …]`, `[attachment: x]` and `(ephemeral to alice)`, with ids, durations and
//! percentages normalized so the text is stable across runs.

use std::collections::BTreeMap;

use serenity::model::id::{ChannelId, InteractionId, MessageId, UserId};

use super::state::{Message, State};

/// One thing that happened in a channel, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum TimelineEntry {
    Message {
        channel: ChannelId,
        message: MessageId,
    },
    Edit {
        channel: ChannelId,
        message: MessageId,
    },
    Delete {
        channel: ChannelId,
        message: MessageId,
    },
    Typing {
        channel: ChannelId,
        user: UserId,
    },
    Interaction {
        channel: ChannelId,
        interaction: InteractionId,
    },
    Reaction {
        channel: ChannelId,
        message: MessageId,
        user: UserId,
        emoji: String,
    },
    ThreadCreated {
        channel: ChannelId,
        thread: ChannelId,
        from: Option<MessageId>,
    },
    ChannelEdit {
        channel: ChannelId,
    },
}

impl TimelineEntry {
    fn channel(&self) -> ChannelId {
        match self {
            Self::Message { channel, .. }
            | Self::Edit { channel, .. }
            | Self::Delete { channel, .. }
            | Self::Typing { channel, .. }
            | Self::Interaction { channel, .. }
            | Self::Reaction { channel, .. }
            | Self::ThreadCreated { channel, .. }
            | Self::ChannelEdit { channel } => *channel,
        }
    }
}

fn who(st: &State, user: UserId) -> String {
    if user == st.bot_id {
        "bot".into()
    } else {
        st.users
            .get(&user)
            .map_or_else(|| user.to_string(), |u| u.name.clone())
    }
}

fn render_message(st: &State, m: &Message, out: &mut Vec<String>) {
    if m.kind == 18 {
        out.push(format!("[system: thread created: {}]", m.content));
        return;
    }
    if let Some(u) = m.ephemeral_to {
        out.push(format!("(ephemeral to {})", who(st, u)));
    }
    if let Some(r) = m.referenced {
        out.push(format!("(reply to {r})"));
    }
    if m.flags & super::state::message_flag::LOADING != 0 {
        out.push("[thinking…]".into());
    }
    if !m.content.is_empty() {
        out.extend(m.content.lines().map(str::to_string));
    }
    for e in &m.embeds {
        let title = e["title"].as_str().unwrap_or("");
        let desc = e["description"].as_str().unwrap_or("");
        out.push(format!("[embed: {title}] {desc}").trim_end().to_string());
    }
    for a in m.attachments.iter().filter_map(|a| st.attachments.get(a)) {
        out.push(format!("[attachment: {}]", a.filename));
    }
    for row in &m.components {
        let mut parts = Vec::new();
        for c in row["components"].as_array().into_iter().flatten() {
            let id = c["custom_id"].as_str().unwrap_or("");
            let disabled = if c["disabled"].as_bool().unwrap_or(false) {
                " disabled"
            } else {
                ""
            };
            match c["type"].as_u64() {
                Some(2) => parts.push(format!(
                    "[button {} ({id}){disabled}]",
                    c["label"].as_str().unwrap_or("")
                )),
                _ => {
                    let n = c["options"].as_array().map_or(0, Vec::len);
                    parts.push(format!("[select {id}: {n} options{disabled}]"));
                }
            }
        }
        out.push(parts.join(" "));
    }
    if m.edited_ms.is_some() {
        out.push("(edited)".into());
    }
    if m.deleted {
        out.push("(deleted)".into());
    }
}

/// Renders a channel's transcript (normalized).
pub fn render(st: &State, channel: ChannelId) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut header = |lines: &mut Vec<String>, name: String| {
        if current.as_deref() != Some(name.as_str()) {
            lines.push(format!("--- from: {name}"));
            current = Some(name);
        }
    };
    for e in st.timeline.iter().filter(|e| e.channel() == channel) {
        match e {
            TimelineEntry::Message { message, .. } => {
                let Some(m) = st.messages.get(message) else {
                    continue;
                };
                header(&mut lines, who(st, m.author_id));
                render_message(st, m, &mut lines);
            }
            TimelineEntry::Typing { user, .. } => {
                header(&mut lines, who(st, *user));
                if lines.last().map(String::as_str) != Some("[typing]") {
                    lines.push("[typing]".into());
                }
            }
            TimelineEntry::Interaction { interaction, .. } => {
                let Some(i) = st.interactions.get(interaction) else {
                    continue;
                };
                header(&mut lines, who(st, i.user_id));
                let d = &i.data;
                let line = match i.kind {
                    2 => format!(
                        "[/{} {}]",
                        d["name"].as_str().unwrap_or(""),
                        options_text(d)
                    ),
                    4 => format!(
                        "[autocomplete /{} {}]",
                        d["name"].as_str().unwrap_or(""),
                        options_text(d)
                    ),
                    3 if d.get("values").is_some() => {
                        format!(
                            "[selects {} in {}]",
                            d["values"],
                            d["custom_id"].as_str().unwrap_or("")
                        )
                    }
                    3 => format!("[clicks {}]", d["custom_id"].as_str().unwrap_or("")),
                    _ => format!("[submits modal {}]", d["custom_id"].as_str().unwrap_or("")),
                };
                lines.push(line.replace(" ]", "]"));
            }
            TimelineEntry::Reaction { user, emoji, .. } => {
                header(&mut lines, who(st, *user));
                lines.push(format!("[reacts {emoji}]"));
            }
            TimelineEntry::ThreadCreated { thread, .. } => {
                let name = st.channels.get(thread).map_or("", |c| c.name.as_str());
                lines.push(format!("[thread: {name}]"));
            }
            TimelineEntry::Edit { .. }
            | TimelineEntry::Delete { .. }
            | TimelineEntry::ChannelEdit { .. } => {}
        }
    }
    normalize(&lines.join("\n"))
}

fn options_text(d: &serde_json::Value) -> String {
    d["options"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let focus = if o["focused"] == true { "*" } else { "" };
            format!("{}{focus}={}", o["name"].as_str().unwrap_or(""), o["value"])
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces snowflakes with `<id1>`, `<id2>`… (in order of appearance), durations with
/// `<duration>` and percentages with `<pct>`.
pub fn normalize(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !chars[i - 1].is_alphanumeric();
        if chars[i].is_ascii_digit() && boundary {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut end = i;
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                end += 1;
                while end < chars.len() && chars[end].is_ascii_digit() {
                    end += 1;
                }
            }
            let digits: String = chars[start..i].iter().collect();
            let unit_end = |unit: &str| {
                let u: Vec<char> = unit.chars().collect();
                let fits = chars.len() >= end + u.len() && chars[end..end + u.len()] == u[..];
                let after_ok = chars
                    .get(end + u.len())
                    .is_none_or(|c| !c.is_alphanumeric());
                (fits && after_ok).then_some(end + u.len())
            };
            if digits.len() >= 15 && end == i {
                let n = ids.len() + 1;
                let k = *ids.entry(digits).or_insert(n);
                out.push_str(&format!("<id{k}>"));
                continue;
            }
            if chars.get(end) == Some(&'%') {
                out.push_str("<pct>");
                i = end + 1;
                continue;
            }
            if let Some(e) = ["ms", "s", "m", "h"].iter().find_map(|u| unit_end(u)) {
                out.push_str("<duration>");
                i = e;
                continue;
            }
            out.extend(&chars[start..i]);
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_ids_durations_and_percentages() {
        let t = "id 1452345678901234567 again 1452345678901234567 other 1452345678901234999 \
                 took 12.5s and 350ms, context 45% at v2 step 3";
        assert_eq!(
            normalize(t),
            "id <id1> again <id1> other <id2> took <duration> and <duration>, context <pct> at v2 step 3"
        );
    }
}
