//! Bytes or JSON values ⇄ payload structs, with the size limits enforced on the way in and out,
//! and the two error types a transport sees.
//!
//! Decoding never panics: oversized input is refused before parsing, and every failure names the
//! event it happened on.

use std::fmt;
use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::events::is_reserved_event_name;
use crate::limits::SizeLimits;

/// Why an inbound payload could not be turned into a message.
#[derive(Debug)]
pub enum DecodeError {
    /// The payload is over the size limit for its event; it was not parsed.
    PayloadTooLarge {
        /// The event name.
        event: String,
        /// Encoded size, in bytes.
        size: usize,
        /// The limit for this event, in bytes.
        limit: usize,
    },
    /// The payload is not JSON, or it is truncated.
    NotJson {
        /// The event name.
        event: String,
        /// Where parsing stopped.
        source: serde_json::Error,
    },
    /// The payload is JSON but does not match the event's fields.
    Invalid {
        /// The event name.
        event: String,
        /// Which field and why.
        source: serde_json::Error,
    },
}

impl DecodeError {
    /// The event the payload arrived on.
    pub fn event(&self) -> &str {
        match self {
            Self::PayloadTooLarge { event, .. }
            | Self::NotJson { event, .. }
            | Self::Invalid { event, .. } => event,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PayloadTooLarge { event, size, limit } => write!(
                f,
                "`{event}` payload is {size} bytes, over the {limit}-byte limit"
            ),
            Self::NotJson { event, source } if source.is_eof() => {
                write!(f, "`{event}` payload is truncated JSON: {source}")
            }
            Self::NotJson { event, source } => {
                write!(f, "`{event}` payload is not valid JSON: {source}")
            }
            Self::Invalid { event, source } => {
                write!(f, "`{event}` payload does not match the protocol: {source}")
            }
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::PayloadTooLarge { .. } => None,
            Self::NotJson { source, .. } | Self::Invalid { source, .. } => Some(source),
        }
    }
}

/// Why an outbound message could not be encoded.
#[derive(Debug)]
pub enum EncodeError {
    /// The encoded payload is over the size limit for its event; split it or send less.
    PayloadTooLarge {
        /// The event name.
        event: String,
        /// Encoded size, in bytes.
        size: usize,
        /// The limit for this event, in bytes.
        limit: usize,
    },
    /// The event name is one Socket.IO reserves; it would never reach the peer's handler.
    ReservedEventName {
        /// The event name.
        event: String,
    },
    /// serde_json refused the value (in practice: a map with non-string keys).
    Json {
        /// The event name.
        event: String,
        /// What serde_json said.
        source: serde_json::Error,
    },
}

impl EncodeError {
    /// The event that was being encoded.
    pub fn event(&self) -> &str {
        match self {
            Self::PayloadTooLarge { event, .. }
            | Self::ReservedEventName { event }
            | Self::Json { event, .. } => event,
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PayloadTooLarge { event, size, limit } => write!(
                f,
                "`{event}` payload is {size} bytes, over the {limit}-byte limit"
            ),
            Self::ReservedEventName { event } => {
                write!(f, "`{event}` is a reserved Socket.IO event name")
            }
            Self::Json { event, source } => {
                write!(f, "`{event}` payload cannot be encoded: {source}")
            }
        }
    }
}

impl std::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::PayloadTooLarge { .. } | Self::ReservedEventName { .. } => None,
            Self::Json { source, .. } => Some(source),
        }
    }
}

/// Refuses an inbound payload over the limit, before any parsing.
pub(crate) fn check_inbound_size(
    event: &str,
    size: usize,
    limits: &SizeLimits,
) -> Result<(), DecodeError> {
    let limit = limits.limit_for(event);
    if size > limit {
        return Err(DecodeError::PayloadTooLarge {
            event: event.to_owned(),
            size,
            limit,
        });
    }
    Ok(())
}

/// Refuses an outbound payload over the limit or under a reserved name.
pub(crate) fn check_outbound(
    event: &str,
    size: usize,
    limits: &SizeLimits,
) -> Result<(), EncodeError> {
    if is_reserved_event_name(event) {
        return Err(EncodeError::ReservedEventName {
            event: event.to_owned(),
        });
    }
    let limit = limits.limit_for(event);
    if size > limit {
        return Err(EncodeError::PayloadTooLarge {
            event: event.to_owned(),
            size,
            limit,
        });
    }
    Ok(())
}

/// Parses one payload from bytes.
pub(crate) fn parse_bytes<T: DeserializeOwned>(
    event: &str,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|source| classify(event, source))
}

/// Parses one payload from an already parsed JSON value.
pub(crate) fn parse_value<T: DeserializeOwned>(
    event: &str,
    value: &Value,
) -> Result<T, DecodeError> {
    T::deserialize(value).map_err(|source| DecodeError::Invalid {
        event: event.to_owned(),
        source,
    })
}

fn classify(event: &str, source: serde_json::Error) -> DecodeError {
    let event = event.to_owned();
    match source.classify() {
        serde_json::error::Category::Data => DecodeError::Invalid { event, source },
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => DecodeError::NotJson { event, source },
    }
}

/// Encodes one payload to a JSON value.
pub(crate) fn to_value<T: Serialize>(event: &str, payload: &T) -> Result<Value, EncodeError> {
    serde_json::to_value(payload).map_err(|source| EncodeError::Json {
        event: event.to_owned(),
        source,
    })
}

/// Encodes one payload to bytes.
pub(crate) fn to_bytes<T: Serialize + ?Sized>(
    event: &str,
    payload: &T,
) -> Result<Vec<u8>, EncodeError> {
    serde_json::to_vec(payload).map_err(|source| EncodeError::Json {
        event: event.to_owned(),
        source,
    })
}

/// The size of `value` encoded as compact JSON, without building the bytes.
pub(crate) fn encoded_len(value: &Value) -> usize {
    let mut counter = ByteCounter(0);
    // Writing a `Value` to a writer that never fails cannot fail.
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
