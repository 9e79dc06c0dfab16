//! `AgentMessage` and `MeshMessage`: every event of one direction in one enum, so a transport
//! routes by event name and never touches a payload struct directly.
//!
//! An event name this side does not know (a newer peer, or an event of the other direction)
//! becomes `Unknown { name, body }`: log it and carry on, never fail the link over it.

use serde_json::Value;

use crate::codec::{self, DecodeError, EncodeError};
use crate::events;
use crate::hello::{HelloParams, WelcomeResponse};
use crate::ids::MsgId;
use crate::job::{
    JobAckResponse, JobCancelParams, JobCancelResponse, JobDispatchParams, JobEventsAckResponse,
    JobInputParams, JobInputResponse,
};
use crate::job_event::JobEventNotification;
use crate::limits::SizeLimits;
use crate::link::{
    AuthRotateParams, AuthRotateResponse, ByeNotification, DrainNotification, HeartbeatParams,
    HeartbeatResponse, InventoryUpdateNotification, MeshErrorNotification,
};
use crate::observe::JobObservedNotification;

macro_rules! message_enum {
    (
        $(#[$doc:meta])*
        pub enum $name:ident {
            $( $(#[$variant_doc:meta])* $variant:ident($payload:ty) = $event:path, )+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$variant_doc])* $variant($payload), )+
            /// An event this side does not know, kept as received.
            Unknown {
                /// The event name.
                name: String,
                /// The payload, any JSON.
                body: Value,
            },
        }

        impl $name {
            /// Every event name of this direction.
            pub const EVENT_NAMES: &'static [&'static str] = &[$($event),+];

            /// The Socket.IO event name to emit this message under.
            pub fn event_name(&self) -> &str {
                match self {
                    $( Self::$variant(_) => $event, )+
                    Self::Unknown { name, .. } => name,
                }
            }

            /// The message's `msgId`; `None` for an unknown event without a string `msgId`.
            pub fn msg_id(&self) -> Option<&str> {
                match self {
                    $( Self::$variant(payload) => Some(MsgId::as_str(&payload.msg_id)), )+
                    Self::Unknown { body, .. } => body.get("msgId").and_then(Value::as_str),
                }
            }

            /// Decodes raw payload bytes received under `event`, with the default size limits.
            pub fn decode(event: &str, payload: &[u8]) -> Result<Self, DecodeError> {
                Self::decode_with_limits(event, payload, &SizeLimits::DEFAULT)
            }

            /// Decodes raw payload bytes received under `event`.
            pub fn decode_with_limits(
                event: &str,
                payload: &[u8],
                limits: &SizeLimits,
            ) -> Result<Self, DecodeError> {
                codec::check_inbound_size(event, payload.len(), limits)?;
                Ok(match event {
                    $( $event => Self::$variant(codec::parse_bytes(event, payload)?), )+
                    _ => Self::Unknown {
                        name: event.to_owned(),
                        body: codec::parse_bytes(event, payload)?,
                    },
                })
            }

            /// Decodes a payload the transport already parsed, with the default size limits.
            pub fn decode_value(event: &str, payload: &Value) -> Result<Self, DecodeError> {
                Self::decode_value_with_limits(event, payload, &SizeLimits::DEFAULT)
            }

            /// Decodes a payload the transport already parsed. The limit applies to its compact
            /// JSON encoding, the same size the peer sent.
            pub fn decode_value_with_limits(
                event: &str,
                payload: &Value,
                limits: &SizeLimits,
            ) -> Result<Self, DecodeError> {
                codec::check_inbound_size(event, codec::encoded_len(payload), limits)?;
                Ok(match event {
                    $( $event => Self::$variant(codec::parse_value(event, payload)?), )+
                    _ => Self::Unknown {
                        name: event.to_owned(),
                        body: payload.clone(),
                    },
                })
            }

            /// Encodes the payload as a JSON value for the transport, with the default size limits.
            pub fn to_value(&self) -> Result<Value, EncodeError> {
                self.to_value_with_limits(&SizeLimits::DEFAULT)
            }

            /// Encodes the payload as a JSON value for the transport, refusing reserved event
            /// names and payloads over the limit.
            pub fn to_value_with_limits(&self, limits: &SizeLimits) -> Result<Value, EncodeError> {
                let event = self.event_name();
                let value = match self {
                    $( Self::$variant(payload) => codec::to_value(event, payload)?, )+
                    Self::Unknown { body, .. } => body.clone(),
                };
                codec::check_outbound(event, codec::encoded_len(&value), limits)?;
                Ok(value)
            }

            /// Encodes the payload as compact JSON bytes, with the default size limits.
            pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
                self.encode_with_limits(&SizeLimits::DEFAULT)
            }

            /// Encodes the payload as compact JSON bytes, refusing reserved event names and
            /// payloads over the limit.
            pub fn encode_with_limits(&self, limits: &SizeLimits) -> Result<Vec<u8>, EncodeError> {
                let event = self.event_name();
                let bytes = match self {
                    $( Self::$variant(payload) => codec::to_bytes(event, payload)?, )+
                    Self::Unknown { body, .. } => codec::to_bytes(event, body)?,
                };
                codec::check_outbound(event, bytes.len(), limits)?;
                Ok(bytes)
            }

            #[cfg(feature = "schema")]
            pub(crate) fn payload_schemas(
                generator: &mut schemars::SchemaGenerator,
            ) -> Vec<(&'static str, schemars::Schema)> {
                vec![$( ($event, generator.subschema_for::<$payload>()), )+]
            }
        }

        $(
            impl From<$payload> for $name {
                fn from(payload: $payload) -> Self {
                    Self::$variant(payload)
                }
            }
        )+
    };
}

message_enum! {
    /// Every event the agent sends to the mesh.
    pub enum AgentMessage {
        /// `hello`.
        Hello(HelloParams) = events::HELLO,
        /// `heartbeat`.
        Heartbeat(HeartbeatParams) = events::HEARTBEAT,
        /// `inventory.update`.
        InventoryUpdate(InventoryUpdateNotification) = events::INVENTORY_UPDATE,
        /// `job.ack`.
        JobAck(JobAckResponse) = events::JOB_ACK,
        /// `job.event`.
        JobEvent(JobEventNotification) = events::JOB_EVENT,
        /// `job.cancel.result`.
        JobCancelResult(JobCancelResponse) = events::JOB_CANCEL_RESULT,
        /// `job.input.result`.
        JobInputResult(JobInputResponse) = events::JOB_INPUT_RESULT,
        /// `auth.rotate.ok`.
        AuthRotateOk(AuthRotateResponse) = events::AUTH_ROTATE_OK,
        /// `bye`.
        Bye(ByeNotification) = events::BYE,
        /// `job.observed`.
        JobObserved(JobObservedNotification) = events::JOB_OBSERVED,
    }
}

message_enum! {
    /// Every event the mesh sends to the agent.
    pub enum MeshMessage {
        /// `welcome`.
        Welcome(WelcomeResponse) = events::WELCOME,
        /// `heartbeat.ok`.
        HeartbeatOk(HeartbeatResponse) = events::HEARTBEAT_OK,
        /// `job.dispatch`.
        JobDispatch(JobDispatchParams) = events::JOB_DISPATCH,
        /// `job.events.ack`.
        JobEventsAck(JobEventsAckResponse) = events::JOB_EVENTS_ACK,
        /// `job.cancel`.
        JobCancel(JobCancelParams) = events::JOB_CANCEL,
        /// `job.input`.
        JobInput(JobInputParams) = events::JOB_INPUT,
        /// `auth.rotate`.
        AuthRotate(AuthRotateParams) = events::AUTH_ROTATE,
        /// `drain`.
        Drain(DrainNotification) = events::DRAIN,
        /// `mesh.error`.
        MeshError(MeshErrorNotification) = events::MESH_ERROR,
    }
}
