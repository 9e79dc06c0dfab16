//! The Socket.IO CONNECT `auth` payload, protocol version negotiation, and the rejection a
//! coordinator answers with (`connect_error`).
//!
//! `auth` stays small because the Socket.IO client re-sends it on its own; inventories go in
//! `hello`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::ids::{GatewayId, InstanceId};
use crate::PROTOCOL_VERSION;

/// A gateway access token. Its `Debug` never shows the value; there is no `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a token read from config or the state store.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the `auth` payload and the state store only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// `{min, max}`: the protocol versions a peer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProtocolRange {
    /// Oldest version spoken.
    pub min: u32,
    /// Newest version spoken.
    pub max: u32,
}

impl ProtocolRange {
    /// What this crate speaks.
    pub const CURRENT: Self = Self {
        min: PROTOCOL_VERSION,
        max: PROTOCOL_VERSION,
    };

    /// The version two peers use: the newest both speak, or `None` (`PROTOCOL_UNSUPPORTED`).
    pub fn negotiate(self, other: Self) -> Option<u32> {
        let version = self.max.min(other.max);
        (version >= self.min.max(other.min)).then_some(version)
    }
}

/// `connectionMode`: how the agent reaches the mesh. Always `outbound` in v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConnectionMode {
    /// The agent dials out; it has no inbound port.
    #[default]
    Outbound,
    /// A mode this version does not know.
    #[serde(other)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    Unknown,
}

/// The Socket.IO CONNECT `auth` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConnectAuth {
    /// Newest persisted token.
    pub token: Token,
    /// Persisted identity.
    pub gateway_id: GatewayId,
    /// New per process start.
    pub instance_id: InstanceId,
    /// Incremented and committed before every connect attempt; fences zombie links.
    pub conn_epoch: u64,
    /// Versions the agent speaks.
    pub protocol: ProtocolRange,
    /// The agent's release version.
    pub agent_version: String,
    /// Always `outbound`.
    pub connection_mode: ConnectionMode,
}

/// The `connect_error` body a coordinator rejects a CONNECT with: `{message, data: Error}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConnectRejection {
    /// Human-readable reason.
    pub message: String,
    /// The typed reason; absent when a proxy or an old coordinator rejected the connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<WireError>,
}
