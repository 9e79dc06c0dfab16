//! Every golden fixture decodes to its typed message and re-encodes to the same JSON; typed
//! values built in Rust encode to the spelling the fixtures (and the protocol reference) use.

use mesh_protocol::events::{AGENT_EVENTS, MESH_EVENTS};
use mesh_protocol::job_event::KNOWN_TYPES;
use mesh_protocol::{
    AckDecision, AgentMessage, CancelStatus, ConnectAuth, ConnectRejection, ErrorCode, InputReply,
    JobAckResponse, JobCancelResponse, JobEvent, JobEventNotification, JobOutcome, JobState,
    MeshMessage, OutputData, OutputStream, PermissionDecision, ResumeAction, RunnerKind,
    SizeLimits, Token,
};
use pretty_assertions::assert_eq;
use serde_json::{json, Value};

use crate::support::{all_fixtures, fixture, Direction, Fixture, AUTH, CONNECT_ERROR};

fn round_trip_agent(fixture: &Fixture) {
    let from_bytes = AgentMessage::decode(&fixture.event, &fixture.bytes)
        .unwrap_or_else(|err| panic!("{}: {err}", fixture.stem));
    assert!(
        !matches!(from_bytes, AgentMessage::Unknown { .. }),
        "{} decoded as an unknown event",
        fixture.stem
    );
    assert_eq!(from_bytes.event_name(), fixture.event, "{}", fixture.stem);
    assert_eq!(
        from_bytes.to_value().unwrap(),
        fixture.value,
        "{}",
        fixture.stem
    );

    let from_value = AgentMessage::decode_value(&fixture.event, &fixture.value).unwrap();
    assert_eq!(from_value, from_bytes, "{}", fixture.stem);

    let reencoded = from_bytes.encode().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&reencoded).unwrap(),
        fixture.value,
        "{}",
        fixture.stem
    );
    assert_eq!(
        AgentMessage::decode(&fixture.event, &reencoded).unwrap(),
        from_bytes
    );
}

fn round_trip_mesh(fixture: &Fixture) {
    let from_bytes = MeshMessage::decode(&fixture.event, &fixture.bytes)
        .unwrap_or_else(|err| panic!("{}: {err}", fixture.stem));
    assert!(
        !matches!(from_bytes, MeshMessage::Unknown { .. }),
        "{} decoded as an unknown event",
        fixture.stem
    );
    assert_eq!(from_bytes.event_name(), fixture.event, "{}", fixture.stem);
    assert_eq!(
        from_bytes.to_value().unwrap(),
        fixture.value,
        "{}",
        fixture.stem
    );

    let from_value = MeshMessage::decode_value(&fixture.event, &fixture.value).unwrap();
    assert_eq!(from_value, from_bytes, "{}", fixture.stem);

    let reencoded = from_bytes.encode().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&reencoded).unwrap(),
        fixture.value,
        "{}",
        fixture.stem
    );
    assert_eq!(
        MeshMessage::decode(&fixture.event, &reencoded).unwrap(),
        from_bytes
    );
}

#[test]
fn every_fixture_round_trips_through_its_typed_message() {
    for fixture in all_fixtures() {
        match fixture.direction {
            Direction::AgentToMesh => round_trip_agent(&fixture),
            Direction::MeshToAgent => round_trip_mesh(&fixture),
            Direction::Connect => {} // covered by the two tests below
        }
    }
}

#[test]
fn every_event_and_job_event_type_has_a_fixture() {
    let stems: Vec<String> = all_fixtures().into_iter().map(|f| f.stem).collect();
    for event in AGENT_EVENTS.iter().chain(MESH_EVENTS.iter()) {
        assert!(
            stems.iter().any(|stem| stem == event),
            "no fixture {event}.json"
        );
    }
    for event_type in KNOWN_TYPES {
        let stem = format!("job.event.{event_type}");
        let fixture = fixture(&stem);
        let AgentMessage::JobEvent(notification) =
            AgentMessage::decode(&fixture.event, &fixture.bytes).unwrap()
        else {
            panic!("{stem} is not a job.event");
        };
        assert_eq!(notification.event.event_type(), event_type);
        assert!(
            !matches!(notification.event, JobEvent::Unknown { .. }),
            "{stem}"
        );
    }
}

#[test]
fn a_message_of_the_other_direction_is_an_unknown_event() {
    for fixture in all_fixtures() {
        match fixture.direction {
            Direction::AgentToMesh => {
                let message = MeshMessage::decode(&fixture.event, &fixture.bytes).unwrap();
                assert_eq!(
                    message,
                    MeshMessage::Unknown {
                        name: fixture.event.clone(),
                        body: fixture.value.clone()
                    }
                );
            }
            Direction::MeshToAgent => {
                let message = AgentMessage::decode(&fixture.event, &fixture.bytes).unwrap();
                assert_eq!(
                    message,
                    AgentMessage::Unknown {
                        name: fixture.event.clone(),
                        body: fixture.value.clone()
                    }
                );
            }
            Direction::Connect => {}
        }
    }
}

#[test]
fn connect_auth_round_trips_and_hides_its_token_from_debug() {
    let fixture = fixture(AUTH);
    let auth: ConnectAuth = serde_json::from_slice(&fixture.bytes).unwrap();
    assert_eq!(serde_json::to_value(&auth).unwrap(), fixture.value);
    assert_eq!(auth.conn_epoch, 42);
    assert_eq!(auth.token.expose(), "gw_at_7Yc2kq");
    let debug = format!("{auth:?}");
    assert!(
        !debug.contains("gw_at_7Yc2kq"),
        "token leaked into Debug: {debug}"
    );
    assert_eq!(format!("{:?}", Token::new("secret")), "Token(<redacted>)");
}

#[test]
fn connect_rejection_round_trips_and_exposes_its_details() {
    let fixture = fixture(CONNECT_ERROR);
    let rejection: ConnectRejection = serde_json::from_slice(&fixture.bytes).unwrap();
    assert_eq!(serde_json::to_value(&rejection).unwrap(), fixture.value);
    let error = rejection.data.unwrap();
    assert_eq!(error.code, ErrorCode::SessionStale);
    assert_eq!(error.current_epoch(), Some(42));
    assert!(error.retryable);
    assert!(!error.is_fatal());
}

#[test]
fn decoded_fixtures_carry_the_typed_values_the_protocol_describes() {
    let AgentMessage::Hello(hello) =
        AgentMessage::decode("hello", &fixture("hello").bytes).unwrap()
    else {
        panic!("hello did not decode as Hello");
    };
    assert_eq!(hello.resume.jobs[0].state, JobState::Running);
    assert_eq!(hello.runners[2].id, RunnerKind::ClaudeCode);
    assert_eq!(
        hello.workspaces[0].runners,
        [RunnerKind::OpenCode, RunnerKind::Codex]
    );

    let MeshMessage::Welcome(welcome) =
        MeshMessage::decode("welcome", &fixture("welcome").bytes).unwrap()
    else {
        panic!("welcome did not decode as Welcome");
    };
    assert_eq!(welcome.resume[1].action, ResumeAction::Forget);
    assert_eq!(welcome.heartbeat_interval().as_millis(), 15_000);
    assert_eq!(
        SizeLimits::from_welcome(&welcome.limits),
        SizeLimits::DEFAULT
    );

    let MeshMessage::JobInput(input) =
        MeshMessage::decode("job.input", &fixture("job.input.question").bytes).unwrap()
    else {
        panic!("job.input did not decode as JobInput");
    };
    assert!(
        matches!(input.reply, InputReply::Question(ref reply) if reply.answers == [["sqlite"]])
    );
    let MeshMessage::JobInput(input) =
        MeshMessage::decode("job.input", &fixture("job.input").bytes).unwrap()
    else {
        panic!("job.input did not decode as JobInput");
    };
    assert!(
        matches!(input.reply, InputReply::Permission(ref reply) if reply.decision == PermissionDecision::Once)
    );

    let MeshMessage::MeshError(error) =
        MeshMessage::decode("mesh.error", &fixture("mesh.error.fatal").bytes).unwrap()
    else {
        panic!("mesh.error did not decode as MeshError");
    };
    assert!(error.error.is_fatal());
    assert_eq!(error.error.superseding_instance_id(), Some("01JDA"));

    let AgentMessage::JobEvent(finished) =
        AgentMessage::decode("job.event", &fixture("job.event.finished").bytes).unwrap()
    else {
        panic!("job.event did not decode as JobEvent");
    };
    let JobEvent::Finished(data) = &finished.event else {
        panic!("finished fixture is not a finished event");
    };
    assert_eq!(data.outcome, JobOutcome::Cancelled);
    assert_eq!(data.outcome.job_state(), Some(JobState::Cancelled));
    assert!(finished.event.is_finished());
}

#[test]
fn messages_built_in_rust_encode_like_the_protocol_reference() {
    let event = AgentMessage::from(JobEventNotification {
        msg_id: "01JD0E".into(),
        job_id: "job_10".into(),
        lease_id: "ls_5".into(),
        seq: 3,
        ts: "2026-01-05T10:00:01.250Z".into(),
        event: JobEvent::Output(OutputData {
            stream: OutputStream::Assistant,
            text: "Looking at auth.ts".into(),
        }),
    });
    assert_eq!(event.event_name(), "job.event");
    assert_eq!(event.msg_id(), Some("01JD0E"));
    assert_eq!(event.to_value().unwrap(), fixture("job.event").value);

    let ack = AgentMessage::from(JobAckResponse {
        msg_id: "01JD0D".into(),
        re: "m_77".into(),
        job_id: "job_10".into(),
        lease_id: "ls_5".into(),
        decision: AckDecision::Accepted,
        state: None,
        last_seq: None,
        error: None,
    });
    assert_eq!(ack.to_value().unwrap(), fixture("job.ack").value);

    let unknown_job = AgentMessage::from(JobCancelResponse {
        msg_id: "01JD0F".into(),
        re: "m_80".into(),
        job_id: "job_10".into(),
        status: CancelStatus::UnknownJob,
    });
    assert_eq!(
        unknown_job.to_value().unwrap(),
        json!({"msgId": "01JD0F", "re": "m_80", "jobId": "job_10", "status": "unknown"})
    );
}
