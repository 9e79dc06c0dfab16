//! The schema document (feature `schema`) covers every event, and every `$ref` in it resolves.

use mesh_protocol::events::{AGENT_EVENTS, MESH_EVENTS};
use mesh_protocol::job_event::KNOWN_TYPES;
use mesh_protocol::schema_document;
use serde_json::Value;

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                out.push(target.clone());
            }
            map.values().for_each(|child| refs(child, out));
        }
        Value::Array(items) => items.iter().for_each(|child| refs(child, out)),
        _ => {}
    }
}

#[test]
fn the_schema_document_names_every_event_and_resolves_every_ref() {
    let document = schema_document();
    for event in AGENT_EVENTS {
        assert!(
            document["agentToMesh"].get(event).is_some(),
            "agentToMesh lacks {event}"
        );
    }
    for event in MESH_EVENTS {
        assert!(
            document["meshToAgent"].get(event).is_some(),
            "meshToAgent lacks {event}"
        );
    }
    for event_type in KNOWN_TYPES {
        assert!(
            document["jobEventData"].get(event_type).is_some(),
            "jobEventData lacks {event_type}"
        );
    }
    assert!(document["connectAuth"].is_object() && document["connectError"].is_object());

    let mut targets = Vec::new();
    refs(&document, &mut targets);
    assert!(targets.len() > 30);
    for target in targets {
        let pointer = target.strip_prefix('#').unwrap();
        assert!(
            document.pointer(pointer).is_some(),
            "dangling $ref {target}"
        );
    }
}

#[test]
fn the_schema_leaves_out_the_unknown_catch_alls() {
    let document = schema_document();
    let states = document["$defs"]["JobState"].to_string();
    assert!(states.contains("\"timed_out\""));
    assert!(!states.contains("\"unknown\""), "{states}");
}
