//! Identifiers and timestamps: plain strings on the wire, distinct types in Rust.
//!
//! Every job message carries both a `jobId` and a `leaseId`, and a `job.input` adds a `requestId`;
//! all of them are opaque strings. Newtypes make swapping two of them a compile error instead of a
//! lease conflict at run time, and they cost nothing on the wire (`#[serde(transparent)]`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An RFC 3339 UTC timestamp (`2026-01-05T10:00:01.250Z`), kept as the sender wrote it.
///
/// The crate has no clock dependency: the caller formats and parses times.
pub type Timestamp = String;

macro_rules! wire_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id received or minted elsewhere; the protocol never inspects its content.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id as sent on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the id, for storage keys and the like.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

wire_id! {
    /// `msgId`: unique per sender (a ULID minted by the caller); replies echo it as `re`.
    MsgId
}

wire_id! {
    /// `jobId`: assigned by the coordinator, stable across redeliveries of the same job.
    JobId
}

wire_id! {
    /// `leaseId`: new for every dispatch attempt; fences a job to one attempt on one agent.
    LeaseId
}

wire_id! {
    /// `requestId`: one permission or question raised by a running job.
    RequestId
}

wire_id! {
    /// `gatewayId`: the agent's persisted identity, generated once.
    GatewayId
}

wire_id! {
    /// `instanceId`: a ULID minted at every process start, to tell a leaked old client from a
    /// second process owning the same gateway.
    InstanceId
}

wire_id! {
    /// `workspaceId`: stable id the agent made for a local workspace; the path never leaves the machine.
    WorkspaceId
}

wire_id! {
    /// `sessionId`: one accepted link, named by the coordinator in `welcome`.
    SessionId
}
