//! Attachments and the CDN (§7): URLs imitate Discord's signed, expiring links
//! (`?ex={hex}&is={hex}&hm={hex}`), and a download with an expired or tampered link gets 404.

use serenity::model::id::{AttachmentId, ChannelId};

use super::ratelimit::fnv1a;
use super::state::{Attachment, State};

/// Discord's body for a dead CDN link.
pub const GONE_BODY: &str = "This content is no longer available.";

fn signature(st: &State, channel: ChannelId, id: AttachmentId, filename: &str, ex: u64) -> String {
    let material = format!("{}|{channel}|{id}|{filename}|{ex:x}", st.guild_id);
    let salted = format!("kimaki-twin-cdn|{material}");
    format!(
        "{:016x}{:016x}",
        fnv1a(material.as_bytes()),
        fnv1a(salted.as_bytes())
    )
}

/// The signed download URL of an attachment.
pub fn signed_url(st: &State, a: &Attachment) -> String {
    let ex = a.expires_ms / 1000;
    let is = a.issued_ms / 1000;
    let hm = signature(st, a.channel_id, a.id, &a.filename, ex);
    format!(
        "{}/attachments/{}/{}/{}?ex={ex:x}&is={is:x}&hm={hm}",
        st.base_url,
        a.channel_id,
        a.id,
        percent_encode_segment(&a.filename)
    )
}

/// Serves a download: `Ok((content_type, bytes))`, or `Err(())` for Discord's 404.
pub fn download(
    st: &State,
    channel: &str,
    id: &str,
    filename: &str,
    query: Option<&str>,
) -> Result<(String, std::sync::Arc<Vec<u8>>), ()> {
    let id = id
        .parse::<u64>()
        .ok()
        .filter(|i| *i != 0)
        .map(AttachmentId::new)
        .ok_or(())?;
    let a = st.attachments.get(&id).ok_or(())?;
    if a.channel_id.to_string() != channel || a.filename != filename || a.expired {
        return Err(());
    }
    let mut ex = None;
    let mut hm = None;
    for pair in query.unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("ex", v)) => ex = u64::from_str_radix(v, 16).ok(),
            Some(("hm", v)) => hm = Some(v),
            _ => {}
        }
    }
    let ex = ex.ok_or(())?;
    if hm != Some(signature(st, a.channel_id, a.id, &a.filename, ex).as_str()) {
        return Err(());
    }
    if st.now_ms() / 1000 > ex {
        return Err(());
    }
    let ct = a
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    Ok((ct, a.bytes.clone()))
}

/// Percent-encodes one path segment (unreserved characters stay).
pub fn percent_encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; invalid escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_coding_round_trips() {
        assert_eq!(percent_decode("%F0%9F%91%8D"), "👍");
        assert_eq!(percent_decode("%40original"), "@original");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(
            percent_decode(&percent_encode_segment("my file (1).txt")),
            "my file (1).txt"
        );
    }
}
