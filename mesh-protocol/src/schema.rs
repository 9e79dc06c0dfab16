//! The JSON Schema document of the protocol (feature `schema`): one schema per event name and
//! direction, plus the connect `auth` payload, the `connect_error` body and each job event's
//! `data`, sharing one `$defs` table.
//!
//! Schemas describe what a v1 sender emits; the `Unknown` catch-alls that receivers tolerate are
//! left out on purpose.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value};

use crate::auth::{ConnectAuth, ConnectRejection};
use crate::job_event::{
    CancellingData, FileData, FinishedData, OutputData, PermissionData, QuestionData, StartedData,
    StatusData, ToolData, UsageData, CANCELLING, FILE, FINISHED, OUTPUT, PERMISSION, QUESTION,
    STARTED, STATUS, TOOL, USAGE,
};
use crate::message::{AgentMessage, MeshMessage};
use crate::PROTOCOL_VERSION;

/// The command that regenerates `docs/mesh-protocol.schema.json`.
pub const REGENERATE_COMMAND: &str = "cargo run -q -p mesh-protocol --features schema --example gen_schema > docs/mesh-protocol.schema.json";

/// The whole protocol as one JSON Schema (draft 2020-12) document.
///
/// Top-level keys: `connectAuth`, `connectError`, `agentToMesh` and `meshToAgent` (event name →
/// payload schema), `jobEventData` (`job.event` type → `data` schema) and `$defs`.
pub fn schema_document() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();

    let agent_to_mesh = named(AgentMessage::payload_schemas(&mut generator));
    let mesh_to_agent = named(MeshMessage::payload_schemas(&mut generator));
    let job_event_data = named(vec![
        (STARTED, generator.subschema_for::<StartedData>()),
        (OUTPUT, generator.subschema_for::<OutputData>()),
        (TOOL, generator.subschema_for::<ToolData>()),
        (FILE, generator.subschema_for::<FileData>()),
        (PERMISSION, generator.subschema_for::<PermissionData>()),
        (QUESTION, generator.subschema_for::<QuestionData>()),
        (STATUS, generator.subschema_for::<StatusData>()),
        (USAGE, generator.subschema_for::<UsageData>()),
        (CANCELLING, generator.subschema_for::<CancellingData>()),
        (FINISHED, generator.subschema_for::<FinishedData>()),
    ]);
    let connect_auth = schema_of::<ConnectAuth>(&mut generator);
    let connect_error = schema_of::<ConnectRejection>(&mut generator);

    let mut document = Map::new();
    document.insert(
        "$schema".into(),
        "https://json-schema.org/draft/2020-12/schema".into(),
    );
    document.insert(
        "$comment".into(),
        format!("Generated; do not edit. Regenerate with: {REGENERATE_COMMAND}").into(),
    );
    document.insert("title".into(), "kimaki mesh protocol".into());
    document.insert("protocolVersion".into(), PROTOCOL_VERSION.into());
    document.insert("connectAuth".into(), connect_auth);
    document.insert("connectError".into(), connect_error);
    document.insert("agentToMesh".into(), agent_to_mesh);
    document.insert("meshToAgent".into(), mesh_to_agent);
    document.insert("jobEventData".into(), job_event_data);
    document.insert(
        "$defs".into(),
        Value::Object(generator.take_definitions(true)),
    );
    Value::Object(document)
}

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

fn named(schemas: Vec<(&'static str, Schema)>) -> Value {
    Value::Object(
        schemas
            .into_iter()
            .map(|(name, schema)| (name.to_owned(), schema.to_value()))
            .collect(),
    )
}
