//! Event names, reserved names, per-event size limits, version negotiation and job states.

use mesh_protocol::events::{
    is_reserved_event_name, AGENT_EVENTS, MESH_EVENTS, RESERVED_EVENT_NAMES,
};
use mesh_protocol::limits::{MAX_BULK_EVENT_BYTES, MAX_EVENT_BYTES};
use mesh_protocol::{
    AgentMessage, DecodeError, EncodeError, JobState, MeshMessage, ProtocolRange, SizeLimits,
    PROTOCOL_VERSION,
};
use serde_json::json;

#[test]
fn event_names_are_lowercase_dotted_distinct_and_never_reserved() {
    let all: Vec<&str> = AGENT_EVENTS
        .iter()
        .chain(MESH_EVENTS.iter())
        .copied()
        .collect();
    for name in &all {
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c == '.'),
            "{name} is not lowercase dotted"
        );
        assert!(
            !name.starts_with('.') && !name.ends_with('.') && !name.contains(".."),
            "{name}"
        );
        assert!(!is_reserved_event_name(name), "{name} is reserved");
        assert_eq!(
            all.iter().filter(|other| *other == name).count(),
            1,
            "{name} twice"
        );
    }
    assert_eq!(AgentMessage::EVENT_NAMES, AGENT_EVENTS);
    assert_eq!(MeshMessage::EVENT_NAMES, MESH_EVENTS);
}

#[test]
fn reserved_names_match_regardless_of_case() {
    for name in RESERVED_EVENT_NAMES {
        assert!(is_reserved_event_name(name));
        assert!(is_reserved_event_name(&name.to_ascii_uppercase()));
    }
    assert!(is_reserved_event_name("Message"));
    assert!(!is_reserved_event_name("mesh.error"));
}

#[test]
fn encoding_under_a_reserved_name_is_refused() {
    for name in ["error", "Open", "connect_error"] {
        let message = AgentMessage::Unknown {
            name: name.into(),
            body: json!({"msgId": "m"}),
        };
        for err in [
            message.encode().unwrap_err(),
            message.to_value().unwrap_err(),
        ] {
            assert!(
                matches!(err, EncodeError::ReservedEventName { .. }),
                "{err}"
            );
            assert_eq!(err.event(), name);
            assert_eq!(
                err.to_string(),
                format!("`{name}` is a reserved Socket.IO event name")
            );
        }
    }
}

#[test]
fn receiving_a_reserved_name_is_just_an_unknown_event() {
    let message = MeshMessage::decode("error", br#"{"msgId":"m"}"#).unwrap();
    assert!(matches!(message, MeshMessage::Unknown { ref name, .. } if name == "error"));
}

#[test]
fn bulk_events_get_the_larger_limit_and_everything_else_the_event_limit() {
    let limits = SizeLimits::default();
    for event in [
        "hello",
        "inventory.update",
        "job.dispatch",
        "x-from-the-future",
    ] {
        assert_eq!(limits.limit_for(event), MAX_BULK_EVENT_BYTES, "{event}");
    }
    for event in AGENT_EVENTS.iter().chain(MESH_EVENTS.iter()) {
        if !["hello", "inventory.update", "job.dispatch"].contains(event) {
            assert_eq!(limits.limit_for(event), MAX_EVENT_BYTES, "{event}");
        }
    }
    assert_eq!((MAX_EVENT_BYTES, MAX_BULK_EVENT_BYTES), (65_536, 262_144));
}

#[test]
fn a_custom_limit_applies_to_decoding_too() {
    let limits = SizeLimits {
        max_event_bytes: 16,
        max_bulk_event_bytes: 32,
    };
    let body = br#"{"msgId":"01JD0H","re":"m_82"}"#;
    let err = AgentMessage::decode_with_limits("auth.rotate.ok", body, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::PayloadTooLarge {
                size: 30,
                limit: 16,
                ..
            }
        ),
        "{err}"
    );
    assert!(AgentMessage::decode_with_limits("auth.rotate.ok", body, &SizeLimits::DEFAULT).is_ok());
}

#[test]
fn version_negotiation_picks_the_newest_common_version() {
    let range = |min, max| ProtocolRange { min, max };
    assert_eq!(
        ProtocolRange::CURRENT,
        range(PROTOCOL_VERSION, PROTOCOL_VERSION)
    );
    assert_eq!(range(1, 1).negotiate(range(1, 1)), Some(1));
    assert_eq!(range(1, 3).negotiate(range(2, 2)), Some(2));
    assert_eq!(range(1, 2).negotiate(range(1, 5)), Some(2));
    assert_eq!(range(1, 1).negotiate(range(2, 3)), None);
    assert_eq!(range(3, 4).negotiate(range(1, 2)), None);
}

#[test]
fn only_finished_states_are_terminal() {
    let terminal = ["succeeded", "failed", "cancelled", "timed_out", "lost"];
    let live = [
        "queued",
        "dispatched",
        "accepted",
        "running",
        "cancelling",
        "disconnected",
    ];
    for name in terminal {
        let state: JobState = serde_json::from_value(json!(name)).unwrap();
        assert!(state.is_terminal(), "{name}");
        assert_eq!(serde_json::to_value(state).unwrap(), name);
    }
    for name in live {
        let state: JobState = serde_json::from_value(json!(name)).unwrap();
        assert!(!state.is_terminal(), "{name}");
        assert_eq!(serde_json::to_value(state).unwrap(), name);
    }
    assert!(!JobState::Unknown.is_terminal());
}
