//! Protocol size limits: how large one encoded event may be, by event name.
//!
//! The transport accepts about 1 MiB, but a message over it is dropped together with the link on
//! a Node peer, so the protocol stays well below: anything larger goes out of band.

use crate::events;
use crate::hello::Limits;

/// Largest encoded `job.event` or reply, in bytes, until `welcome.limits.maxEventBytes` says
/// otherwise.
pub const MAX_EVENT_BYTES: usize = 65_536;

/// Largest encoded `hello`, `inventory.update` or `job.dispatch`, in bytes: inventories and
/// prompts are the only payloads that legitimately grow past `MAX_EVENT_BYTES`.
pub const MAX_BULK_EVENT_BYTES: usize = 262_144;

/// `welcome.limits.maxInflightEvents` of a v1 coordinator: a full window of `job.event`s.
pub const DEFAULT_MAX_INFLIGHT_EVENTS: u32 = 256;

/// `welcome.limits.maxInflightBytes` of a v1 coordinator: 1 MiB, the transport's own ceiling.
pub const DEFAULT_MAX_INFLIGHT_BYTES: u32 = 1_048_576;

/// Events held to `MAX_BULK_EVENT_BYTES` instead of `MAX_EVENT_BYTES`.
pub const BULK_EVENTS: [&str; 3] = [
    events::HELLO,
    events::INVENTORY_UPDATE,
    events::JOB_DISPATCH,
];

/// The size limits in force on one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// Largest `job.event` or reply (every event not in `BULK_EVENTS`).
    pub max_event_bytes: usize,
    /// Largest event in `BULK_EVENTS`, and largest event of a name this version does not know
    /// (those are only logged and dropped, so the generous limit costs nothing).
    pub max_bulk_event_bytes: usize,
}

impl SizeLimits {
    /// The limits before `welcome` negotiated any.
    pub const DEFAULT: Self = Self {
        max_event_bytes: MAX_EVENT_BYTES,
        max_bulk_event_bytes: MAX_BULK_EVENT_BYTES,
    };

    /// The limits a `welcome` announced.
    pub fn from_welcome(limits: &Limits) -> Self {
        Self {
            max_event_bytes: usize::try_from(limits.max_event_bytes).unwrap_or(MAX_EVENT_BYTES),
            max_bulk_event_bytes: MAX_BULK_EVENT_BYTES,
        }
    }

    /// The largest encoded payload allowed for `event`, in bytes.
    pub fn limit_for(&self, event: &str) -> usize {
        let is_known =
            events::AGENT_EVENTS.contains(&event) || events::MESH_EVENTS.contains(&event);
        if BULK_EVENTS.contains(&event) || !is_known {
            self.max_bulk_event_bytes
        } else {
            self.max_event_bytes
        }
    }
}

impl Default for SizeLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
