//! `job.event`: one fact about a running job, numbered by a per-job `seq`, and the typed `data`
//! of each event type.
//!
//! On the wire an event is `{…, "type": "output", "data": {…}}`. Types this version does not know
//! (`x-` extensions included) decode to `JobEvent::Unknown` with their `data` kept verbatim, so a
//! newer agent never breaks an older coordinator and re-encoding loses nothing.

use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::ids::{JobId, LeaseId, MsgId, Timestamp};

mod data;

pub use data::{
    CancellingData, FileAction, FileData, FinishedData, JobOutcome, OutputData, OutputStream,
    PermissionData, PermissionResolution, Question, QuestionData, QuestionOption, RequestPhase,
    StartedData, StatusData, ToolData, ToolPhase, UsageData,
};

/// `type` of the first event of every job (seq 1), written before the runner launches.
pub const STARTED: &str = "started";
/// `type` of text the runner produced.
pub const OUTPUT: &str = "output";
/// `type` of a tool call or its result.
pub const TOOL: &str = "tool";
/// `type` of a file the job changed.
pub const FILE: &str = "file";
/// `type` of a permission request or its resolution.
pub const PERMISSION: &str = "permission";
/// `type` of a question to a person or its answer.
pub const QUESTION: &str = "question";
/// `type` of a runner status change.
pub const STATUS: &str = "status";
/// `type` of token and cost accounting.
pub const USAGE: &str = "usage";
/// `type` of a cancel in progress.
pub const CANCELLING: &str = "cancelling";
/// `type` of the last event of every job.
pub const FINISHED: &str = "finished";

/// Every event type this version knows.
pub const KNOWN_TYPES: [&str; 10] = [
    STARTED, OUTPUT, TOOL, FILE, PERMISSION, QUESTION, STATUS, USAGE, CANCELLING, FINISHED,
];

/// Prefix of extension event types; a receiver that does not know one ignores it.
pub const EXTENSION_PREFIX: &str = "x-";

/// Largest `output.text`, in bytes; longer text is split across events.
pub const MAX_OUTPUT_TEXT_BYTES: usize = 32 * 1024;

/// `job.event`: one fact about a job. Answered, cumulatively, by `job.events.ack`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobEventNotification {
    /// This message.
    pub msg_id: MsgId,
    /// The job.
    pub job_id: JobId,
    /// The lease the job runs under.
    pub lease_id: LeaseId,
    /// 1-based, contiguous per job; the coordinator applies events in this order.
    pub seq: u64,
    /// When the fact happened.
    pub ts: Timestamp,
    /// `type` and `data`.
    #[serde(flatten)]
    pub event: JobEvent,
}

/// The wire shape of `job.event` before `data` is typed by `type`.
///
/// Decoding goes through this instead of `#[serde(flatten)]`: flatten buffers `data` through
/// serde's internal `Content`, which breaks numbers if any crate in the build turns on
/// serde_json's `arbitrary_precision`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawJobEventNotification {
    msg_id: MsgId,
    job_id: JobId,
    lease_id: LeaseId,
    seq: u64,
    ts: Timestamp,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Value,
}

impl<'de> Deserialize<'de> for JobEventNotification {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawJobEventNotification::deserialize(deserializer)?;
        Ok(Self {
            msg_id: raw.msg_id,
            job_id: raw.job_id,
            lease_id: raw.lease_id,
            seq: raw.seq,
            ts: raw.ts,
            event: JobEvent::from_parts(&raw.event_type, raw.data).map_err(D::Error::custom)?,
        })
    }
}

/// The `type` and `data` of a `job.event`.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// `started`: seq 1, sent before the runner launches.
    Started(StartedData),
    /// `output`: text the runner produced; may be coalesced.
    Output(OutputData),
    /// `tool`: a tool call or its result.
    Tool(ToolData),
    /// `file`: a file the job changed.
    File(FileData),
    /// `permission`: a permission request or its resolution.
    Permission(PermissionData),
    /// `question`: a question to a person or its answer.
    Question(QuestionData),
    /// `status`: runner launched, retrying, output truncated, ….
    Status(StatusData),
    /// `usage`: tokens and cost.
    Usage(UsageData),
    /// `cancelling`: a cancel is in progress.
    Cancelling(CancellingData),
    /// `finished`: always the last event of a job.
    Finished(FinishedData),
    /// A type this version does not know (`x-` extensions included), kept verbatim.
    Unknown {
        /// The `type` as sent.
        event_type: String,
        /// The `data` as sent (`null` when absent).
        data: Value,
    },
}

impl JobEvent {
    /// The `type` as spelled on the wire.
    pub fn event_type(&self) -> &str {
        match self {
            Self::Started(_) => STARTED,
            Self::Output(_) => OUTPUT,
            Self::Tool(_) => TOOL,
            Self::File(_) => FILE,
            Self::Permission(_) => PERMISSION,
            Self::Question(_) => QUESTION,
            Self::Status(_) => STATUS,
            Self::Usage(_) => USAGE,
            Self::Cancelling(_) => CANCELLING,
            Self::Finished(_) => FINISHED,
            Self::Unknown { event_type, .. } => event_type,
        }
    }

    /// Whether this is the job's last event.
    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Finished(_))
    }

    /// Whether this is an `x-` extension event.
    pub fn is_extension(&self) -> bool {
        matches!(self, Self::Unknown { event_type, .. } if event_type.starts_with(EXTENSION_PREFIX))
    }

    /// Builds an event from its wire `type` and `data`. Unknown types never fail; known types
    /// fail when `data` does not match, with a message naming the type.
    pub fn from_parts(event_type: &str, data: Value) -> Result<Self, serde_json::Error> {
        fn typed<T: serde::de::DeserializeOwned>(
            event_type: &str,
            data: Value,
        ) -> Result<T, serde_json::Error> {
            serde_json::from_value(data).map_err(|err| {
                serde_json::Error::custom(format_args!("invalid `{event_type}` data: {err}"))
            })
        }
        Ok(match event_type {
            STARTED => Self::Started(typed(event_type, data)?),
            OUTPUT => Self::Output(typed(event_type, data)?),
            TOOL => Self::Tool(typed(event_type, data)?),
            FILE => Self::File(typed(event_type, data)?),
            PERMISSION => Self::Permission(typed(event_type, data)?),
            QUESTION => Self::Question(typed(event_type, data)?),
            STATUS => Self::Status(typed(event_type, data)?),
            USAGE => Self::Usage(typed(event_type, data)?),
            CANCELLING => Self::Cancelling(typed(event_type, data)?),
            FINISHED => Self::Finished(typed(event_type, data)?),
            other => Self::Unknown {
                event_type: other.to_owned(),
                data,
            },
        })
    }
}

impl Serialize for JobEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut event = serializer.serialize_struct("JobEvent", 2)?;
        event.serialize_field("type", self.event_type())?;
        match self {
            Self::Started(data) => event.serialize_field("data", data)?,
            Self::Output(data) => event.serialize_field("data", data)?,
            Self::Tool(data) => event.serialize_field("data", data)?,
            Self::File(data) => event.serialize_field("data", data)?,
            Self::Permission(data) => event.serialize_field("data", data)?,
            Self::Question(data) => event.serialize_field("data", data)?,
            Self::Status(data) => event.serialize_field("data", data)?,
            Self::Usage(data) => event.serialize_field("data", data)?,
            Self::Cancelling(data) => event.serialize_field("data", data)?,
            Self::Finished(data) => event.serialize_field("data", data)?,
            // An absent `data` decodes to null; leaving it out again keeps the event as sent.
            Self::Unknown { data, .. } if data.is_null() => event.skip_field("data")?,
            Self::Unknown { data, .. } => event.serialize_field("data", data)?,
        }
        event.end()
    }
}

/// The wire shape before `data` is typed by `type`.
#[derive(Deserialize)]
struct RawJobEvent {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Value,
}

impl<'de> Deserialize<'de> for JobEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawJobEvent::deserialize(deserializer)?;
        Self::from_parts(&raw.event_type, raw.data).map_err(D::Error::custom)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for JobEvent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JobEvent".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        use serde_json::json;
        let typed = |event_type: &str, data: schemars::Schema| {
            json!({
                "type": "object",
                "properties": { "type": { "const": event_type }, "data": data },
                "required": ["type", "data"],
            })
        };
        let variants = vec![
            typed(STARTED, generator.subschema_for::<StartedData>()),
            typed(OUTPUT, generator.subschema_for::<OutputData>()),
            typed(TOOL, generator.subschema_for::<ToolData>()),
            typed(FILE, generator.subschema_for::<FileData>()),
            typed(PERMISSION, generator.subschema_for::<PermissionData>()),
            typed(QUESTION, generator.subschema_for::<QuestionData>()),
            typed(STATUS, generator.subschema_for::<StatusData>()),
            typed(USAGE, generator.subschema_for::<UsageData>()),
            typed(CANCELLING, generator.subschema_for::<CancellingData>()),
            typed(FINISHED, generator.subschema_for::<FinishedData>()),
            json!({
                "description": "An extension event; receivers that do not know it ignore it.",
                "type": "object",
                "properties": { "type": { "type": "string", "pattern": "^x-" }, "data": true },
                "required": ["type"],
            }),
        ];
        let mut schema = serde_json::Map::new();
        schema.insert("oneOf".into(), Value::Array(variants));
        schemars::Schema::from(schema)
    }
}
