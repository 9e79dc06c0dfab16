//! `docs/mesh-protocol.schema.json` is what the `mesh-protocol` wire types generate today, so a
//! protocol change cannot land without its schema.

use std::fs;
use std::path::Path;

use mesh_protocol::{schema_document, REGENERATE_COMMAND};
use serde_json::Value;

const SCHEMA_FILE: &str = "docs/mesh-protocol.schema.json";

/// JSON pointers where `expected` and `actual` differ, at most `limit` of them.
fn differences(expected: &Value, actual: &Value, at: &str, limit: usize, out: &mut Vec<String>) {
    if out.len() >= limit || expected == actual {
        return;
    }
    match (expected, actual) {
        (Value::Object(left), Value::Object(right)) => {
            let mut keys: Vec<&String> = left.keys().chain(right.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = format!("{at}/{key}");
                match (left.get(key), right.get(key)) {
                    (Some(l), Some(r)) => differences(l, r, &path, limit, out),
                    _ if out.len() < limit => out.push(path),
                    _ => return,
                }
            }
        }
        _ => out.push(if at.is_empty() {
            "/".to_owned()
        } else {
            at.to_owned()
        }),
    }
}

#[test]
fn checked_in_mesh_protocol_schema_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_FILE);
    let text = fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!("cannot read {SCHEMA_FILE} ({err}); generate it with:\n    {REGENERATE_COMMAND}")
    });
    let checked_in: Value = serde_json::from_str(&text).unwrap_or_else(|err| {
        panic!("{SCHEMA_FILE} is not JSON ({err}); regenerate it with:\n    {REGENERATE_COMMAND}")
    });
    let generated = schema_document();

    let mut changed = Vec::new();
    differences(&checked_in, &generated, "", 10, &mut changed);
    assert!(
        changed.is_empty(),
        "{SCHEMA_FILE} is out of date with the mesh-protocol types (differs at {}).\n\
         Regenerate it from the workspace root with:\n    {REGENERATE_COMMAND}\n\
         and review the diff: a schema change is a protocol change.",
        changed.join(", ")
    );
}
