//! The compatibility rules: a newer peer's extra fields, enum values, events and job event types
//! never break this version, and what must be kept is kept verbatim.

use mesh_protocol::features;
use mesh_protocol::{
    AckDecision, AgentMessage, ByeReason, CancelReason, CancelStatus, ConnectionMode, ErrorCode,
    FileAction, InputKind, InputReply, InputStatus, JobEvent, JobOrigin, JobOutcome, JobState,
    MeshMessage, OutputStream, PermissionDecision, PermissionPolicy, PermissionResolution,
    RequestPhase, ResumeAction, RunnerKind, ToolPhase, VcsKind,
};
use pretty_assertions::assert_eq;
use serde_json::{json, Value};

use crate::support::{all_fixtures, fixture, Direction};

/// Keys whose values are free-form maps on the wire; adding a field there changes the data.
const FREE_FORM_KEYS: [&str; 5] = ["args", "env", "input", "output", "details"];

fn add_future_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if !FREE_FORM_KEYS.contains(&key.as_str()) {
                    add_future_fields(child);
                }
            }
            map.insert("futureField".into(), json!({"nested": [1, "two", null]}));
            map.insert("x-vendor".into(), json!(true));
        }
        Value::Array(items) => items.iter_mut().for_each(add_future_fields),
        _ => {}
    }
}

#[test]
fn extra_fields_at_every_level_are_ignored() {
    for fixture in all_fixtures() {
        let mut extended = fixture.value.clone();
        add_future_fields(&mut extended);
        let extended = serde_json::to_vec(&extended).unwrap();
        match fixture.direction {
            Direction::AgentToMesh => assert_eq!(
                AgentMessage::decode(&fixture.event, &extended)
                    .unwrap_or_else(|err| panic!("{}: {err}", fixture.stem)),
                AgentMessage::decode(&fixture.event, &fixture.bytes).unwrap(),
                "{}",
                fixture.stem
            ),
            Direction::MeshToAgent => assert_eq!(
                MeshMessage::decode(&fixture.event, &extended)
                    .unwrap_or_else(|err| panic!("{}: {err}", fixture.stem)),
                MeshMessage::decode(&fixture.event, &fixture.bytes).unwrap(),
                "{}",
                fixture.stem
            ),
            Direction::Connect => {
                let auth: Result<mesh_protocol::ConnectAuth, _> = serde_json::from_slice(&extended);
                let rejection: Result<mesh_protocol::ConnectRejection, _> =
                    serde_json::from_slice(&extended);
                assert!(auth.is_ok() || rejection.is_ok(), "{}", fixture.stem);
            }
        }
    }
}

/// Decodes a fixture after replacing the value at `pointer`.
fn agent_with(stem: &str, pointer: &str, replacement: Value) -> AgentMessage {
    let fixture = fixture(stem);
    let mut value = fixture.value.clone();
    *value
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{stem} has no {pointer}")) = replacement;
    AgentMessage::decode_value(&fixture.event, &value)
        .unwrap_or_else(|err| panic!("{stem} with {pointer} replaced: {err}"))
}

fn mesh_with(stem: &str, pointer: &str, replacement: Value) -> MeshMessage {
    let fixture = fixture(stem);
    let mut value = fixture.value.clone();
    *value
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{stem} has no {pointer}")) = replacement;
    MeshMessage::decode_value(&fixture.event, &value)
        .unwrap_or_else(|err| panic!("{stem} with {pointer} replaced: {err}"))
}

fn job_event_with(stem: &str, pointer: &str, replacement: Value) -> JobEvent {
    match agent_with(stem, pointer, replacement) {
        AgentMessage::JobEvent(notification) => notification.event,
        other => panic!("{stem} decoded as {other:?}"),
    }
}

#[test]
fn unknown_strings_of_agent_enums_decode_to_unknown() {
    let AgentMessage::Hello(hello) = agent_with("hello", "/agent/connectionMode", json!("inbound"))
    else {
        panic!()
    };
    assert_eq!(hello.agent.connection_mode, ConnectionMode::Unknown);
    let AgentMessage::Hello(hello) = agent_with("hello", "/workspaces/0/vcs/kind", json!("hg"))
    else {
        panic!()
    };
    assert_eq!(
        hello.workspaces[0].vcs.as_ref().unwrap().kind,
        VcsKind::Unknown
    );
    let AgentMessage::Hello(hello) = agent_with("hello", "/resume/jobs/0/state", json!("paused"))
    else {
        panic!()
    };
    assert_eq!(hello.resume.jobs[0].state, JobState::Unknown);
    let AgentMessage::JobAck(ack) = agent_with("job.ack", "/decision", json!("deferred")) else {
        panic!()
    };
    assert_eq!(ack.decision, AckDecision::Unknown);
    let AgentMessage::JobCancelResult(result) =
        agent_with("job.cancel.result", "/status", json!("queued"))
    else {
        panic!()
    };
    assert_eq!(result.status, CancelStatus::Unknown);
    let AgentMessage::JobInputResult(result) =
        agent_with("job.input.result", "/status", json!("deferred"))
    else {
        panic!()
    };
    assert_eq!(result.status, InputStatus::Unknown);
    let AgentMessage::Bye(bye) = agent_with("bye", "/reason", json!("crash")) else {
        panic!()
    };
    assert_eq!(bye.reason, ByeReason::Unknown);
}

#[test]
fn unknown_strings_of_job_event_enums_decode_to_unknown() {
    type IsUnknown = fn(&JobEvent) -> bool;
    let cases: [(&str, &str, IsUnknown); 7] = [
        (
            "job.event.output",
            "/data/stream",
            |e| matches!(e, JobEvent::Output(d) if d.stream == OutputStream::Unknown),
        ),
        (
            "job.event.tool",
            "/data/phase",
            |e| matches!(e, JobEvent::Tool(d) if d.phase == ToolPhase::Unknown),
        ),
        (
            "job.event.file",
            "/data/action",
            |e| matches!(e, JobEvent::File(d) if d.action == FileAction::Unknown),
        ),
        (
            "job.event.permission",
            "/data/phase",
            |e| matches!(e, JobEvent::Permission(d) if d.phase == RequestPhase::Unknown),
        ),
        (
            "job.event.permission.resolved",
            "/data/resolution",
            |e| matches!(e, JobEvent::Permission(d) if d.resolution == Some(PermissionResolution::Unknown)),
        ),
        (
            "job.event.question",
            "/data/phase",
            |e| matches!(e, JobEvent::Question(d) if d.phase == RequestPhase::Unknown),
        ),
        (
            "job.event.finished",
            "/data/outcome",
            |e| matches!(e, JobEvent::Finished(d) if d.outcome == JobOutcome::Unknown && d.outcome.job_state().is_none()),
        ),
    ];
    for (stem, pointer, check) in cases {
        let event = job_event_with(stem, pointer, json!("from-the-future"));
        assert!(check(&event), "{stem} {pointer}: {event:?}");
    }
}

#[test]
fn unknown_strings_of_mesh_enums_decode_to_unknown() {
    let MeshMessage::Welcome(welcome) = mesh_with("welcome", "/resume/0/action", json!("pause"))
    else {
        panic!()
    };
    assert_eq!(welcome.resume[0].action, ResumeAction::Unknown);
    let MeshMessage::JobCancel(cancel) = mesh_with("job.cancel", "/reason", json!("budget")) else {
        panic!()
    };
    assert_eq!(cancel.reason, CancelReason::Unknown);
    let MeshMessage::HeartbeatOk(ok) =
        mesh_with("heartbeat.ok", "/cancel/0/reason", json!("quota"))
    else {
        panic!()
    };
    assert_eq!(ok.cancel.unwrap()[0].reason, CancelReason::Unknown);
    let MeshMessage::JobDispatch(dispatch) =
        mesh_with("job.dispatch", "/spec/permissionPolicy", json!("prompt"))
    else {
        panic!()
    };
    assert_eq!(
        dispatch.spec.permission_policy,
        Some(PermissionPolicy::Unknown)
    );
    let MeshMessage::JobInput(input) = mesh_with("job.input", "/kind", json!("choice")) else {
        panic!()
    };
    assert_eq!(input.kind, InputKind::Unknown);
    let MeshMessage::JobInput(input) = mesh_with("job.input", "/reply/decision", json!("never"))
    else {
        panic!()
    };
    assert!(
        matches!(input.reply, InputReply::Permission(ref reply) if reply.decision == PermissionDecision::Unknown)
    );
}

#[test]
fn unknown_runner_ids_and_error_codes_are_kept_verbatim() {
    let message = mesh_with("job.dispatch", "/spec/runner", json!("x-aider"));
    let MeshMessage::JobDispatch(dispatch) = &message else {
        panic!()
    };
    assert_eq!(dispatch.spec.runner, RunnerKind::Other("x-aider".into()));
    assert!(!dispatch.spec.runner.is_known());
    assert_eq!(message.to_value().unwrap()["spec"]["runner"], "x-aider");

    let message = mesh_with("mesh.error", "/error/code", json!("QUOTA_EXCEEDED"));
    let MeshMessage::MeshError(error) = &message else {
        panic!()
    };
    assert_eq!(
        error.error.code,
        ErrorCode::Unknown("QUOTA_EXCEEDED".into())
    );
    assert!(
        !error.error.retryable,
        "unknown codes are acted on by `retryable`"
    );
    assert_eq!(
        message.to_value().unwrap()["error"]["code"],
        "QUOTA_EXCEEDED"
    );
    assert_eq!(ErrorCode::from("LEASE_EXPIRED"), ErrorCode::LeaseExpired);
}

#[test]
fn unknown_catch_alls_re_encode_without_colliding_with_real_values() {
    // `unknown` is a real status of job.cancel.result and job.input.result.
    assert_eq!(
        serde_json::to_value(CancelStatus::UnknownJob).unwrap(),
        "unknown"
    );
    assert_eq!(
        serde_json::to_value(CancelStatus::Unknown).unwrap(),
        "unrecognized"
    );
    assert_eq!(
        serde_json::to_value(InputStatus::UnknownRequest).unwrap(),
        "unknown"
    );
    assert_eq!(
        serde_json::from_value::<InputStatus>(json!("unknown")).unwrap(),
        InputStatus::UnknownRequest
    );
}

#[test]
fn unknown_event_names_are_kept_with_their_body() {
    let body = json!({"msgId": "01JDZZ", "jobId": "job_10", "progress": {"done": 3, "of": 7}});
    let bytes = serde_json::to_vec(&body).unwrap();

    let message = AgentMessage::decode("job.progress", &bytes).unwrap();
    assert_eq!(
        message,
        AgentMessage::Unknown {
            name: "job.progress".into(),
            body: body.clone()
        }
    );
    assert_eq!(message.event_name(), "job.progress");
    assert_eq!(message.msg_id(), Some("01JDZZ"));
    assert_eq!(message.to_value().unwrap(), body);
    assert_eq!(
        serde_json::from_slice::<Value>(&message.encode().unwrap()).unwrap(),
        body
    );

    let message = MeshMessage::decode_value("mesh.notice", &body).unwrap();
    assert_eq!(
        message,
        MeshMessage::Unknown {
            name: "mesh.notice".into(),
            body
        }
    );
}

#[test]
fn extension_and_unknown_job_event_types_are_kept_verbatim() {
    let data = json!({"files": ["src/auth.ts"], "patch": "@@ -1 +1 @@", "nested": {"deep": [1.5]}});
    for event_type in ["x-diff", "thinking"] {
        let message = agent_with("job.event", "/type", json!(event_type));
        let AgentMessage::JobEvent(notification) = &message else {
            panic!()
        };
        assert_eq!(notification.event.event_type(), event_type);
        assert_eq!(
            notification.event.is_extension(),
            event_type.starts_with("x-")
        );

        let fixture = fixture("job.event");
        let mut value = fixture.value.clone();
        value["type"] = json!(event_type);
        value["data"] = data.clone();
        let message = AgentMessage::decode_value("job.event", &value).unwrap();
        let AgentMessage::JobEvent(notification) = &message else {
            panic!()
        };
        assert_eq!(
            notification.event,
            JobEvent::Unknown {
                event_type: event_type.into(),
                data: data.clone()
            }
        );
        assert_eq!(message.to_value().unwrap(), value);
    }
}

#[test]
fn an_extension_event_without_data_re_encodes_without_data() {
    let mut value = fixture("job.event").value;
    value["type"] = json!("x-heartbeat");
    value.as_object_mut().unwrap().remove("data");
    let message = AgentMessage::decode_value("job.event", &value).unwrap();
    assert_eq!(message.to_value().unwrap(), value);
}

#[test]
fn optional_fields_may_be_absent() {
    let minimal = json!({
        "msgId": "m_90", "jobId": "job_20", "leaseId": "ls_9", "attempt": 1, "leaseTtlMs": 60000,
        "createdAt": "2026-01-05T09:59:58Z",
        "spec": {"runner": "claude-code", "workspaceId": "ws_1", "prompt": "hi"}
    });
    let MeshMessage::JobDispatch(dispatch) =
        MeshMessage::decode_value("job.dispatch", &minimal).unwrap()
    else {
        panic!()
    };
    assert_eq!(dispatch.spec.permission_policy, None);
    assert_eq!(dispatch.spec.timeout(), None);
    assert_eq!(dispatch.deadline_at, None);

    let finished = json!({
        "msgId": "e1", "jobId": "job_20", "leaseId": "ls_9", "seq": 1,
        "ts": "2026-01-05T10:00:00Z", "type": "finished", "data": {"outcome": "cancelled"}
    });
    let message = AgentMessage::decode_value("job.event", &finished).unwrap();
    assert_eq!(message.to_value().unwrap(), finished);
}

#[test]
fn observed_jobs_keep_unknown_origins_and_stay_optional_for_older_peers() {
    let message = agent_with("job.observed", "/origin", json!("matrix"));
    let AgentMessage::JobObserved(observed) = &message else {
        panic!("job.observed did not decode as JobObserved");
    };
    assert_eq!(observed.origin, JobOrigin::Other("matrix".into()));
    assert_eq!(message.to_value().unwrap()["origin"], "matrix");
    assert_eq!(observed.workspace_id, None, "workspaceId is optional");

    // A v1 peer that predates `observe` sees a name it does not know: kept, never fatal. (The
    // agent only sends it when `welcome.features` lists `observe`.)
    let body = fixture("job.observed").value;
    let old_peer = MeshMessage::decode_value("job.observed", &body).unwrap();
    assert!(matches!(old_peer, MeshMessage::Unknown { ref name, .. } if name == "job.observed"));
    assert!(features::ALL.contains(&features::OBSERVE));
}
