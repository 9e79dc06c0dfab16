//! Random, truncated, corrupted and oversized input to both decoders: never a panic, always an
//! error that names the event.

use mesh_protocol::events::{AGENT_EVENTS, MESH_EVENTS};
use mesh_protocol::limits::{MAX_BULK_EVENT_BYTES, MAX_EVENT_BYTES};
use mesh_protocol::{
    AgentMessage, DecodeError, EncodeError, HelloParams, JobEvent, JobEventNotification,
    MeshMessage, OutputData, OutputStream, SizeLimits,
};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::{all_fixtures, fixture, Direction};

/// Every known event name plus one nobody knows.
fn every_event_name() -> Vec<&'static str> {
    let mut names: Vec<&str> = AGENT_EVENTS
        .iter()
        .chain(MESH_EVENTS.iter())
        .copied()
        .collect();
    names.push("x-no-such-event");
    names
}

fn assert_names_event(result: Result<impl std::fmt::Debug, DecodeError>, event: &str) {
    if let Err(err) = result {
        assert_eq!(err.event(), event);
        let text = err.to_string();
        assert!(
            text.contains(&format!("`{event}`")),
            "error does not name {event}: {text}"
        );
    }
}

/// Decodes `bytes` under every event name with both decoders.
fn decode_everywhere(bytes: &[u8]) {
    for event in every_event_name() {
        assert_names_event(AgentMessage::decode(event, bytes), event);
        assert_names_event(MeshMessage::decode(event, bytes), event);
    }
}

fn decode_value_everywhere(value: &Value) {
    for event in every_event_name() {
        assert_names_event(AgentMessage::decode_value(event, value), event);
        assert_names_event(MeshMessage::decode_value(event, value), event);
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9_.\\-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("msgId".to_owned()),
                    Just("jobId".to_owned()),
                    Just("type".to_owned()),
                    Just("data".to_owned()),
                    "[a-zA-Z]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// JSON pointers of every value inside `value`, the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(
                    child,
                    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        decode_everywhere(&bytes);
    }

    #[test]
    fn random_json_never_panics(value in arb_json()) {
        decode_value_everywhere(&value);
        decode_everywhere(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn fixtures_with_one_value_replaced_never_panic(
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        replacement in arb_json(),
    ) {
        let fixtures = all_fixtures();
        let fixture = &fixtures[pick.index(fixtures.len())];
        let mut all = Vec::new();
        pointers(&fixture.value, String::new(), &mut all);
        let mut value = fixture.value.clone();
        *value.pointer_mut(&all[at.index(all.len())]).unwrap() = replacement;
        decode_value_everywhere(&value);
        decode_everywhere(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn fixtures_with_bytes_flipped_never_panic(
        pick in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let fixtures = all_fixtures();
        let fixture = &fixtures[pick.index(fixtures.len())];
        let mut bytes = fixture.compact();
        for (at, byte) in flips {
            let index = at.index(bytes.len());
            bytes[index] = byte;
        }
        decode_everywhere(&bytes);
    }
}

#[test]
fn every_truncation_of_every_fixture_is_a_truncated_json_error() {
    for fixture in all_fixtures() {
        if fixture.direction == Direction::Connect {
            continue;
        }
        let bytes = fixture.compact();
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            let err = match fixture.direction {
                Direction::AgentToMesh => AgentMessage::decode(&fixture.event, prefix).err(),
                _ => MeshMessage::decode(&fixture.event, prefix).err(),
            }
            .unwrap_or_else(|| panic!("{} cut at {cut} decoded", fixture.stem));
            assert!(
                matches!(err, DecodeError::NotJson { .. }),
                "{}: {err}",
                fixture.stem
            );
            assert_eq!(
                err.to_string().split(':').next().unwrap(),
                format!("`{}` payload is truncated JSON", fixture.event)
            );
        }
    }
}

#[test]
fn a_wrong_shape_is_an_invalid_payload_naming_the_event_and_field() {
    let mut value = fixture("job.ack").value;
    value["leaseId"] = json!(5);
    let err = AgentMessage::decode("job.ack", &serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("`job.ack` payload does not match the protocol"),
        "{text}"
    );

    let err = MeshMessage::decode("job.cancel", br#"[1, 2]"#).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");

    let mut value = fixture("job.event.started").value;
    value["data"] = json!({"runner": "opencode"});
    let err = AgentMessage::decode_value("job.event", &value).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`job.event`") && text.contains("`started` data"),
        "{text}"
    );
}

/// `fixture` padded with trailing whitespace (still valid JSON) to exactly `size` bytes.
fn padded(compact: &[u8], size: usize) -> Vec<u8> {
    let mut bytes = compact.to_vec();
    bytes.resize(size, b' ');
    bytes
}

#[test]
fn payloads_over_the_limit_are_refused_before_parsing_and_at_the_limit_accepted() {
    for fixture in all_fixtures() {
        if fixture.direction == Direction::Connect {
            continue;
        }
        let limit = SizeLimits::DEFAULT.limit_for(&fixture.event);
        let bulk = ["hello", "inventory.update", "job.dispatch"].contains(&fixture.event.as_str());
        assert_eq!(
            limit,
            if bulk {
                MAX_BULK_EVENT_BYTES
            } else {
                MAX_EVENT_BYTES
            }
        );

        let at_limit = padded(&fixture.compact(), limit);
        let over_limit = padded(&fixture.compact(), limit + 1);
        let (ok, err) = match fixture.direction {
            Direction::AgentToMesh => (
                AgentMessage::decode(&fixture.event, &at_limit).is_ok(),
                AgentMessage::decode(&fixture.event, &over_limit).unwrap_err(),
            ),
            _ => (
                MeshMessage::decode(&fixture.event, &at_limit).is_ok(),
                MeshMessage::decode(&fixture.event, &over_limit).unwrap_err(),
            ),
        };
        assert!(ok, "{} at the limit was refused", fixture.stem);
        match err {
            DecodeError::PayloadTooLarge {
                event,
                size,
                limit: reported,
            } => {
                assert_eq!(
                    (event.as_str(), size, reported),
                    (fixture.event.as_str(), limit + 1, limit)
                );
            }
            other => panic!("{}: {other}", fixture.stem),
        }
    }
}

#[test]
fn a_huge_payload_is_refused_with_a_clear_message() {
    let huge = vec![b'{'; 4 * 1024 * 1024];
    let err = AgentMessage::decode("job.event", &huge).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`job.event` payload is 4194304 bytes, over the 65536-byte limit"
    );
    let err = MeshMessage::decode("no.such.event", &huge).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::PayloadTooLarge {
            limit: MAX_BULK_EVENT_BYTES,
            ..
        }
    ));
}

#[test]
fn deep_nesting_within_the_limit_is_an_error_not_a_stack_overflow() {
    for event in every_event_name() {
        let limit = SizeLimits::DEFAULT.limit_for(event);
        let deep = vec![b'['; limit];
        assert!(AgentMessage::decode(event, &deep).is_err());
        assert!(MeshMessage::decode(event, &deep).is_err());
        let deep_object = "{\"a\":".repeat(limit / 5).into_bytes();
        assert!(AgentMessage::decode(event, &deep_object).is_err());
        assert!(MeshMessage::decode(event, &deep_object).is_err());
    }
}

#[test]
fn an_oversized_parsed_value_is_refused_by_its_compact_size() {
    let mut value = fixture("job.event").value;
    let compact_len = serde_json::to_vec(&value).unwrap().len();
    let text = value["data"]["text"].as_str().unwrap().len();
    // Grow the text so the compact encoding is exactly one byte over the limit.
    value["data"]["text"] = json!("a".repeat(MAX_EVENT_BYTES + 1 - (compact_len - text)));
    assert_eq!(
        serde_json::to_vec(&value).unwrap().len(),
        MAX_EVENT_BYTES + 1
    );
    let err = AgentMessage::decode_value("job.event", &value).unwrap_err();
    assert!(
        matches!(err, DecodeError::PayloadTooLarge { ref event, size, limit }
            if event == "job.event" && size == MAX_EVENT_BYTES + 1 && limit == MAX_EVENT_BYTES),
        "{err}"
    );

    // The same size is fine for a bulk event.
    let mut hello = fixture("hello").value;
    hello["agent"]["name"] = json!("a".repeat(MAX_EVENT_BYTES));
    assert!(AgentMessage::decode_value("hello", &hello).is_ok());
}

fn output_event(text: String) -> AgentMessage {
    AgentMessage::from(JobEventNotification {
        msg_id: "01JE99".into(),
        job_id: "job_10".into(),
        lease_id: "ls_5".into(),
        seq: 7,
        ts: "2026-01-05T10:00:01Z".into(),
        event: JobEvent::Output(OutputData {
            stream: OutputStream::Stdout,
            text,
        }),
    })
}

#[test]
fn encoding_over_the_limit_is_refused_with_the_event_size_and_limit() {
    let message = output_event("x".repeat(MAX_EVENT_BYTES));
    let expected_size = serde_json::to_vec(
        &message
            .to_value_with_limits(&SizeLimits {
                max_event_bytes: usize::MAX,
                max_bulk_event_bytes: usize::MAX,
            })
            .unwrap(),
    )
    .unwrap()
    .len();
    for err in [
        message.encode().unwrap_err(),
        message.to_value().unwrap_err(),
    ] {
        match err {
            EncodeError::PayloadTooLarge {
                ref event,
                size,
                limit,
            } => {
                assert_eq!(
                    (event.as_str(), size, limit),
                    ("job.event", expected_size, MAX_EVENT_BYTES)
                );
                assert_eq!(
                    err.to_string(),
                    format!(
                        "`job.event` payload is {expected_size} bytes, over the 65536-byte limit"
                    )
                );
            }
            other => panic!("{other}"),
        }
    }

    // A coordinator may announce a smaller limit in `welcome`.
    let small = SizeLimits::from_welcome(&mesh_protocol::Limits {
        max_event_bytes: 1024,
        ..Default::default()
    });
    let message = output_event("y".repeat(1024));
    assert!(message.encode().is_ok());
    assert!(matches!(
        message.encode_with_limits(&small),
        Err(EncodeError::PayloadTooLarge { limit: 1024, .. })
    ));

    // Bulk events keep their own limit.
    let mut hello: HelloParams = serde_json::from_value(fixture("hello").value).unwrap();
    hello.agent.name = "h".repeat(200_000);
    let hello = AgentMessage::from(hello);
    assert!(hello.encode_with_limits(&small).unwrap().len() > 200_000);
}
