//! The Claude translation against lines recorded from Claude Code 2.1.197 in stream-json mode.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;

fn nothing_exists(_: &Path) -> bool {
    false
}

fn everything_exists(_: &Path) -> bool {
    true
}

fn init(m: &mut Mapper) -> Mapped {
    m.line(
        &json!({"type": "system", "subtype": "init", "cwd": "/repo", "session_id": "ses-1", "tools": ["Bash"], "model": "fake-model", "permissionMode": "default"}),
        &nothing_exists,
    )
}

#[test]
fn init_starts_the_session_once() {
    let mut m = Mapper::new(None);
    assert_eq!(init(&mut m).session_started.as_deref(), Some("ses-1"));
    assert_eq!(init(&mut m).session_started, None);
    assert_eq!(m.session_id(), Some("ses-1"));
}

#[test]
fn streamed_deltas_and_the_final_part_share_a_part_id() {
    let mut m = Mapper::new(None);
    init(&mut m);
    let line = |m: &mut Mapper, v: Value| m.line(&v, &nothing_exists).events;
    assert!(line(
        &mut m,
        json!({"type": "stream_event", "event": {"type": "message_start", "message": {"id": "msg_1", "content": []}}, "parent_tool_use_id": null})
    )
    .is_empty());
    line(
        &mut m,
        json!({"type": "stream_event", "event": {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "parent_tool_use_id": null}),
    );
    let delta = line(
        &mut m,
        json!({"type": "stream_event", "event": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "FAK"}}, "parent_tool_use_id": null}),
    );
    assert_eq!(
        delta,
        vec![EventKind::TextDelta {
            part_id: "msg_1:t0".into(),
            stream: TextStream::Assistant,
            delta: "FAK".into()
        }]
    );
    let part = line(
        &mut m,
        json!({"type": "assistant", "message": {"id": "msg_1", "model": "fake-model", "content": [{"type": "text", "text": "FAKE: hello"}]}, "parent_tool_use_id": null}),
    );
    assert_eq!(
        part,
        vec![EventKind::TextPart {
            part_id: "msg_1:t0".into(),
            stream: TextStream::Assistant,
            text: "FAKE: hello".into()
        }]
    );
    assert_eq!(m.summary().as_deref(), Some("FAKE: hello"));
}

#[test]
fn tool_use_and_result_with_file_changes() {
    let mut m = Mapper::new(None);
    let start = m.line(
        &json!({"type": "assistant", "message": {"id": "msg_2", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {"file_path": "/repo/new.txt", "content": "x"}},
            {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {"command": "ls"}}
        ]}, "parent_tool_use_id": null}),
        &nothing_exists,
    );
    assert_eq!(start.events.len(), 2);
    let done = m.line(
        &json!({"type": "user", "message": {"role": "user", "content": [
            {"tool_use_id": "toolu_1", "type": "tool_result", "content": "File created", "is_error": false},
            {"tool_use_id": "toolu_2", "type": "tool_result", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "is_error": true}
        ]}, "parent_tool_use_id": null}),
        &nothing_exists,
    );
    assert_eq!(
        done.events,
        vec![
            EventKind::ToolFinished {
                call_id: "toolu_1".into(),
                name: "Write".into(),
                output: "File created".into(),
                is_error: false,
                exit_code: None
            },
            EventKind::FileChanged {
                path: "/repo/new.txt".into(),
                action: FileAction::Created
            },
            EventKind::ToolFinished {
                call_id: "toolu_2".into(),
                name: "Bash".into(),
                output: "a\nb".into(),
                is_error: true,
                exit_code: None
            },
        ]
    );

    m.line(
        &json!({"type": "assistant", "message": {"id": "msg_3", "content": [
            {"type": "tool_use", "id": "toolu_3", "name": "Edit", "input": {"file_path": "/repo/a.rs"}},
            {"type": "tool_use", "id": "toolu_4", "name": "Edit", "input": {"file_path": "/repo/b.rs"}}
        ]}, "parent_tool_use_id": null}),
        &everything_exists,
    );
    let done = m.line(
        &json!({"type": "user", "message": {"content": [
            {"tool_use_id": "toolu_3", "type": "tool_result", "content": "ok"},
            {"tool_use_id": "toolu_4", "type": "tool_result", "content": "denied", "is_error": true}
        ]}, "parent_tool_use_id": null}),
        &everything_exists,
    );
    let files: Vec<&EventKind> = done
        .events
        .iter()
        .filter(|e| matches!(e, EventKind::FileChanged { .. }))
        .collect();
    assert_eq!(
        files,
        vec![&EventKind::FileChanged {
            path: "/repo/a.rs".into(),
            action: FileAction::Modified
        }],
        "a failed edit changed nothing"
    );
}

#[test]
fn synthetic_and_sub_agent_lines_are_dropped() {
    let mut m = Mapper::new(None);
    let synthetic = m.line(
        &json!({"type": "assistant", "message": {"id": "x", "model": "<synthetic>", "content": [{"type": "text", "text": "API Error: 401"}]}, "parent_tool_use_id": null}),
        &nothing_exists,
    );
    assert_eq!(synthetic, Mapped::default());
    let sub = m.line(
        &json!({"type": "assistant", "message": {"id": "y", "content": [{"type": "text", "text": "inner"}]}, "parent_tool_use_id": "toolu_task"}),
        &nothing_exists,
    );
    assert_eq!(sub, Mapped::default());
    assert_eq!(m.summary(), None);
}

#[test]
fn api_retry_is_a_status_with_retry_info() {
    let mut m = Mapper::new(None);
    let mapped = m.line(
        &json!({"type": "system", "subtype": "api_retry", "attempt": 2, "max_retries": 10, "retry_delay_ms": 1200, "error_status": 529}),
        &nothing_exists,
    );
    assert_eq!(
        mapped.events,
        vec![EventKind::Status {
            message: "Model endpoint retrying (2/10): HTTP 529".into(),
            retry: Some(RetryInfo {
                attempt: 2,
                next_in_ms: Some(1200)
            })
        }]
    );
}

#[test]
fn success_result_reports_usage_and_the_summary() {
    let mut m = Mapper::new(None);
    init(&mut m);
    let mapped = m.line(
        &json!({"type": "result", "subtype": "success", "is_error": false, "result": "FINAL: done", "session_id": "ses-1", "total_cost_usd": 0.0007,
                "usage": {"input_tokens": 40, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3, "output_tokens": 20}}),
        &nothing_exists,
    );
    assert_eq!(mapped.turn_end, Some(TurnEnd::Completed));
    assert_eq!(
        mapped.events,
        vec![EventKind::Usage {
            input_tokens: 45,
            output_tokens: 20,
            cached_tokens: 3,
            cost_usd: Some(0.0007),
            context_percent: None,
            model: Some("fake-model".into())
        }]
    );
    assert_eq!(m.summary().as_deref(), Some("FINAL: done"));
}

#[test]
fn error_results_are_classified_by_is_error_not_subtype() {
    let end = |v: Value| {
        Mapper::new(None)
            .line(&v, &nothing_exists)
            .turn_end
            .unwrap()
    };
    let kind = |v: Value| match end(v) {
        TurnEnd::Failed { kind, .. } => kind,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        kind(
            json!({"type": "result", "subtype": "success", "is_error": true, "api_error_status": 401, "result": "Failed to authenticate. API Error: 401 bad key"})
        ),
        FailureKind::Auth
    );
    assert_eq!(
        kind(
            json!({"type": "result", "subtype": "success", "is_error": true, "api_error_status": 500, "result": "API Error: 500"})
        ),
        FailureKind::Api
    );
    assert_eq!(
        kind(
            json!({"type": "result", "subtype": "success", "is_error": true, "api_error_status": null, "result": "API Error: Unable to connect to API (ConnectionRefused)"})
        ),
        FailureKind::ModelUnreachable
    );
    assert_eq!(
        end(
            json!({"type": "result", "subtype": "error_during_execution", "is_error": true, "terminal_reason": "aborted_streaming"})
        ),
        TurnEnd::Interrupted
    );
    assert_eq!(
        end(
            json!({"type": "result", "subtype": "error_during_execution", "is_error": true, "errors": ["No conversation found with session ID: 0000"]})
        ),
        TurnEnd::SessionMissing
    );
    assert_eq!(
        kind(json!({"type": "result", "subtype": "error_max_turns", "is_error": true})),
        FailureKind::Api
    );
}

#[test]
fn control_protocol_messages() {
    assert_eq!(
        classify(
            &json!({"type": "control_response", "response": {"subtype": "success", "request_id": "kimaki-init", "response": {}}})
        ),
        Incoming::ControlResponse {
            request_id: "kimaki-init".into(),
            error: None
        }
    );
    assert_eq!(
        classify(
            &json!({"type": "control_response", "response": {"subtype": "error", "request_id": "r", "error": "nope"}})
        ),
        Incoming::ControlResponse {
            request_id: "r".into(),
            error: Some("nope".into())
        }
    );
    let ask = classify(
        &json!({"type": "control_request", "request_id": "u-1", "request": {
        "subtype": "can_use_tool", "tool_name": "Bash", "display_name": "Bash",
        "input": {"command": "echo hi > proof.txt", "description": "Write the proof"},
        "description": "Write the proof", "tool_use_id": "toolu_1"}}),
    );
    assert_eq!(
        ask,
        Incoming::CanUseTool(PermissionAsk {
            request_id: "u-1".into(),
            tool: "Bash".into(),
            title: Some("Run `echo hi > proof.txt`".into()),
            input: json!({"command": "echo hi > proof.txt", "description": "Write the proof"}),
            patterns: vec!["echo hi > proof.txt".into()],
        })
    );
    assert_eq!(
        classify(
            &json!({"type": "control_request", "request_id": "h", "request": {"subtype": "hook_callback"}})
        ),
        Incoming::OtherControl {
            request_id: "h".into(),
            subtype: "hook_callback".into()
        }
    );
    assert_eq!(classify(&json!({"type": "assistant"})), Incoming::Output);
}

#[test]
fn client_messages() {
    let input = json!({"command": "ls"});
    assert_eq!(
        permission_response("u-1", PermissionDecision::Always, &input),
        json!({"type": "control_response", "response": {"subtype": "success", "request_id": "u-1",
               "response": {"behavior": "allow", "updatedInput": {"command": "ls"}}}})
    );
    assert_eq!(
        permission_response("u-1", PermissionDecision::Reject, &input)["response"]["response"],
        json!({"behavior": "deny", "message": DENY_MESSAGE})
    );
    assert_eq!(
        control_request("kimaki-interrupt", "interrupt"),
        json!({"type": "control_request", "request_id": "kimaki-interrupt", "request": {"subtype": "interrupt"}})
    );
    assert_eq!(
        user_message("hi")["message"],
        json!({"role": "user", "content": "hi"})
    );
    let attachments = vec![Attachment {
        path: "/data/a/shot.png".into(),
        filename: "shot.png".into(),
        mime: Some("image/png".into()),
    }];
    assert_eq!(
        compose_prompt("look", &attachments),
        "look\n\nAttached files (saved on this machine):\n- /data/a/shot.png (shot.png, image/png)\n"
    );
}
