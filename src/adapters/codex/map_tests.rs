//! The Codex translation against lines recorded from `codex app-server` 0.169.0.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;

fn notify(m: &mut Mapper, line: Value) -> Mapped {
    match classify(&line) {
        Incoming::Notification { method, params } => m.notification(&method, &params),
        other => panic!("not a notification: {other:?}"),
    }
}

#[test]
fn classifies_responses_requests_and_notifications() {
    assert_eq!(
        classify(&json!({"id": 3, "result": {"turn": {"id": "t1"}}})),
        Incoming::Response {
            id: 3,
            result: Ok(json!({"turn": {"id": "t1"}}))
        }
    );
    assert_eq!(
        classify(&json!({"id": 4, "error": {"code": -32600, "message": "no such thread"}})),
        Incoming::Response {
            id: 4,
            result: Err(RpcError {
                message: "no such thread".into()
            })
        }
    );
    assert_eq!(
        classify(
            &json!({"method": "item/commandExecution/requestApproval", "id": 0, "params": {}})
        ),
        Incoming::Request {
            id: json!(0),
            method: "item/commandExecution/requestApproval".into(),
            params: json!({})
        }
    );
    assert!(matches!(
        classify(&json!({"method": "turn/started", "params": {}})),
        Incoming::Notification { .. }
    ));
    assert_eq!(classify(&json!({"hello": 1})), Incoming::Unknown);
}

#[test]
fn streamed_text_then_final_part_and_summary() {
    let mut m = Mapper::new(Some("fake-model".into()));
    let started = notify(
        &mut m,
        json!({"method": "turn/started", "params": {"threadId": "th", "turn": {"id": "t1", "status": "inProgress"}}}),
    );
    assert_eq!(started.turn_started.as_deref(), Some("t1"));
    let d = notify(
        &mut m,
        json!({"method": "item/agentMessage/delta", "params": {"threadId": "th", "turnId": "t1", "itemId": "msg_0", "delta": "FAK"}}),
    );
    assert_eq!(
        d.events,
        vec![EventKind::TextDelta {
            part_id: "msg_0".into(),
            stream: TextStream::Assistant,
            delta: "FAK".into()
        }]
    );
    let done = notify(
        &mut m,
        json!({"method": "item/completed", "params": {"item": {"type": "agentMessage", "id": "msg_0", "text": "FAKE: hello", "phase": null}, "threadId": "th", "turnId": "t1"}}),
    );
    assert_eq!(
        done.events,
        vec![EventKind::TextPart {
            part_id: "msg_0".into(),
            stream: TextStream::Assistant,
            text: "FAKE: hello".into()
        }]
    );
    assert_eq!(m.summary().as_deref(), Some("FAKE: hello"));
}

#[test]
fn reasoning_summary_is_a_reasoning_part() {
    let mut m = Mapper::new(None);
    let done = notify(
        &mut m,
        json!({"method": "item/completed", "params": {"item": {"type": "reasoning", "id": "r1", "summary": ["Thinking about it"], "content": []}}}),
    );
    assert_eq!(
        done.events,
        vec![EventKind::TextPart {
            part_id: "r1".into(),
            stream: TextStream::Reasoning,
            text: "Thinking about it".into()
        }]
    );
    assert_eq!(m.summary(), None, "reasoning is never the summary");
}

#[test]
fn command_execution_is_a_bash_tool_with_exit_code() {
    let mut m = Mapper::new(None);
    let start = notify(
        &mut m,
        json!({"method": "item/started", "params": {"item": {"type": "commandExecution", "id": "call_1", "command": "/bin/bash -lc 'echo hi'", "cwd": "/repo", "status": "inProgress", "aggregatedOutput": null, "exitCode": null}}}),
    );
    assert_eq!(
        start.events,
        vec![EventKind::ToolStarted {
            call_id: "call_1".into(),
            name: "bash".into(),
            input: json!({"command": "/bin/bash -lc 'echo hi'", "cwd": "/repo"})
        }]
    );
    let end = notify(
        &mut m,
        json!({"method": "item/completed", "params": {"item": {"type": "commandExecution", "id": "call_1", "command": "x", "status": "completed", "aggregatedOutput": "hi\n", "exitCode": 0}}}),
    );
    assert_eq!(
        end.events,
        vec![EventKind::ToolFinished {
            call_id: "call_1".into(),
            name: "bash".into(),
            output: "hi\n".into(),
            is_error: false,
            exit_code: Some(0)
        }]
    );

    notify(
        &mut m,
        json!({"method": "item/started", "params": {"item": {"type": "commandExecution", "id": "call_2", "command": "rm -rf /", "cwd": "/"}}}),
    );
    let declined = notify(
        &mut m,
        json!({"method": "item/completed", "params": {"item": {"type": "commandExecution", "id": "call_2", "status": "declined", "aggregatedOutput": null, "exitCode": null}}}),
    );
    assert!(matches!(
        &declined.events[..],
        [EventKind::ToolFinished { is_error: true, exit_code: None, output, .. }] if output.starts_with("declined")
    ));
}

#[test]
fn file_change_reports_each_file() {
    let mut m = Mapper::new(None);
    let changes = json!([
        {"path": "new.txt", "kind": {"type": "add"}, "diff": "+x"},
        {"path": "old.txt", "kind": {"type": "delete"}, "diff": ""},
        {"path": "src/a.rs", "kind": {"type": "update", "move_path": null}, "diff": "@@"}
    ]);
    let start = notify(
        &mut m,
        json!({"method": "item/started", "params": {"item": {"type": "fileChange", "id": "p1", "changes": changes, "status": "inProgress"}}}),
    );
    assert_eq!(
        start.events,
        vec![EventKind::ToolStarted {
            call_id: "p1".into(),
            name: "apply_patch".into(),
            input: json!({"changes": ["add new.txt", "delete old.txt", "update src/a.rs"]})
        }]
    );
    // The approval prompt names the files from the item Codex announced.
    let ask = m.server_ask(
        "item/fileChange/requestApproval",
        &json!({"threadId": "th", "turnId": "t", "itemId": "p1", "reason": null}),
    );
    assert!(
        matches!(
            &ask,
            ServerAsk::Permission { tool, title: Some(title), patterns, .. }
                if tool == "apply_patch" && title == "Edit new.txt, old.txt, src/a.rs" && patterns.len() == 3
        ),
        "{ask:?}"
    );
    let end = notify(
        &mut m,
        json!({"method": "item/completed", "params": {"item": {"type": "fileChange", "id": "p1", "changes": changes, "status": "completed"}}}),
    );
    assert_eq!(
        end.events[1..],
        vec![
            EventKind::FileChanged {
                path: "new.txt".into(),
                action: FileAction::Created
            },
            EventKind::FileChanged {
                path: "old.txt".into(),
                action: FileAction::Deleted
            },
            EventKind::FileChanged {
                path: "src/a.rs".into(),
                action: FileAction::Modified
            },
        ]
    );
}

#[test]
fn usage_is_summed_over_the_turn() {
    let mut m = Mapper::new(Some("fake-model".into()));
    assert_eq!(m.usage_event(), None);
    for _ in 0..2 {
        notify(
            &mut m,
            json!({"method": "thread/tokenUsage/updated", "params": {"tokenUsage": {
                "total": {"inputTokens": 999, "outputTokens": 999},
                "last": {"totalTokens": 30, "inputTokens": 20, "cachedInputTokens": 5, "outputTokens": 10, "reasoningOutputTokens": 0},
                "modelContextWindow": 200
            }}}),
        );
    }
    assert_eq!(
        m.usage_event(),
        Some(EventKind::Usage {
            input_tokens: 40,
            output_tokens: 20,
            cached_tokens: 10,
            cost_usd: None,
            context_percent: Some(10.0),
            model: Some("fake-model".into())
        })
    );
}

#[test]
fn retries_become_status_and_model_metadata_warning_is_dropped() {
    let mut m = Mapper::new(None);
    let retry = notify(
        &mut m,
        json!({"method": "error", "params": {"error": {"message": "Reconnecting... 1/5", "codexErrorInfo": null}, "willRetry": true, "threadId": "th", "turnId": "t"}}),
    );
    assert_eq!(
        retry.events,
        vec![EventKind::Status {
            message: "Model endpoint retrying (1): Reconnecting... 1/5".into(),
            retry: Some(RetryInfo {
                attempt: 1,
                next_in_ms: None
            })
        }]
    );
    let last = notify(
        &mut m,
        json!({"method": "error", "params": {"error": {"message": "gave up"}, "willRetry": false}}),
    );
    assert_eq!(
        last,
        Mapped::default(),
        "turn/completed reports the failure"
    );
    let metadata = notify(
        &mut m,
        json!({"method": "warning", "params": {"threadId": "th", "message": "Model metadata for `fake-model` not found. Defaulting to fallback metadata; this can degrade performance and cause issues."}}),
    );
    assert_eq!(metadata, Mapped::default());
    let other = notify(
        &mut m,
        json!({"method": "warning", "params": {"message": "Disk almost full"}}),
    );
    assert_eq!(other.events.len(), 1);
}

#[test]
fn turn_end_is_classified() {
    let end = |turn: Value| {
        notify(
            &mut Mapper::new(None),
            json!({"method": "turn/completed", "params": {"threadId": "th", "turn": turn}}),
        )
        .turn_end
        .unwrap()
    };
    assert_eq!(
        end(json!({"id": "t", "status": "completed", "error": null})),
        TurnEnd::Completed
    );
    assert_eq!(
        end(json!({"id": "t", "status": "interrupted", "error": null})),
        TurnEnd::Interrupted
    );
    let kind = |error: Value| match end(json!({"id": "t", "status": "failed", "error": error})) {
        TurnEnd::Failed { kind, .. } => kind,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        kind(
            json!({"message": "unexpected status 401 Unauthorized", "codexErrorInfo": {"httpConnectionFailed": {"httpStatusCode": 401}}})
        ),
        FailureKind::Auth
    );
    assert_eq!(
        kind(
            json!({"message": "Connection failed: error sending request", "codexErrorInfo": {"httpConnectionFailed": {"httpStatusCode": null}}})
        ),
        FailureKind::ModelUnreachable
    );
    assert_eq!(
        kind(
            json!({"message": "exceeded retry limit", "codexErrorInfo": {"responseTooManyFailedAttempts": {"httpStatusCode": 500}}})
        ),
        FailureKind::Api
    );
    assert_eq!(
        kind(json!({"message": "bad", "codexErrorInfo": "badRequest"})),
        FailureKind::Api
    );
    assert_eq!(
        kind(json!({"message": "who are you", "codexErrorInfo": "unauthorized"})),
        FailureKind::Auth
    );
    assert_eq!(kind(Value::Null), FailureKind::Api);
}

#[test]
fn command_approval_becomes_a_bash_permission() {
    let m = Mapper::new(None);
    let ask = m.server_ask(
        "item/commandExecution/requestApproval",
        &json!({"kind": "command", "threadId": "th", "turnId": "t", "itemId": "call_1", "command": "/bin/bash -lc 'echo hi > proof.txt'", "cwd": "/repo", "availableDecisions": ["accept", "cancel"]}),
    );
    assert_eq!(
        ask,
        ServerAsk::Permission {
            tool: "bash".into(),
            title: Some("Run `/bin/bash -lc 'echo hi > proof.txt'`".into()),
            input: json!({"command": "/bin/bash -lc 'echo hi > proof.txt'", "cwd": "/repo", "reason": null}),
            patterns: vec!["/bin/bash -lc 'echo hi > proof.txt'".into()],
        }
    );
    assert_eq!(
        m.server_ask("item/tool/call", &json!({})),
        ServerAsk::Unsupported
    );
    assert_eq!(
        m.server_ask("mcpServer/elicitation/request", &json!({})),
        ServerAsk::Elicitation
    );
}

#[test]
fn permission_answers_per_request_kind() {
    let p = json!({});
    let v2 = "item/commandExecution/requestApproval";
    assert_eq!(
        permission_result(v2, &p, PermissionDecision::Once),
        json!({"decision": "accept"})
    );
    assert_eq!(
        permission_result(v2, &p, PermissionDecision::Always),
        json!({"decision": "acceptForSession"})
    );
    assert_eq!(
        permission_result(v2, &p, PermissionDecision::Reject),
        json!({"decision": "decline"})
    );
    assert_eq!(abandon_result(v2, &p), json!({"decision": "cancel"}));
    assert_eq!(
        permission_result("execCommandApproval", &p, PermissionDecision::Always),
        json!({"decision": "approved_for_session"})
    );
    let perms = json!({"permissions": {"network": {"enabled": true}, "fileSystem": null}});
    assert_eq!(
        permission_result(
            "item/permissions/requestApproval",
            &perms,
            PermissionDecision::Once
        ),
        json!({"permissions": {"network": {"enabled": true}}, "scope": "turn"})
    );
    assert_eq!(
        permission_result(
            "item/permissions/requestApproval",
            &perms,
            PermissionDecision::Reject
        ),
        json!({"permissions": {}, "scope": "turn"})
    );
}

#[test]
fn user_input_questions_and_answers() {
    let m = Mapper::new(None);
    let ask = m.server_ask(
        "item/tool/requestUserInput",
        &json!({"threadId": "th", "turnId": "t", "itemId": "i", "isBlocking": true, "questions": [
            {"id": "choice", "header": "Choice", "question": "Pick one", "isOther": false, "isSecret": false,
             "options": [{"label": "Alpha", "description": "Option Alpha"}, {"label": "Beta", "description": "Option Beta"}]}
        ]}),
    );
    let ServerAsk::Question { ids, questions } = ask else {
        panic!("{ask:?}");
    };
    assert_eq!(ids, vec!["choice".to_owned()]);
    assert_eq!(questions[0].question, "Pick one");
    assert_eq!(questions[0].options[1].label, "Beta");
    assert_eq!(
        answers_result(&ids, Some(&[vec!["Beta".to_owned()]])),
        json!({"answers": {"choice": {"answers": ["Beta"]}}})
    );
    assert_eq!(answers_result(&ids, None), json!({"answers": {}}));
}

#[test]
fn client_messages() {
    let start = thread_params("/repo", Some("m"), "workspace-write", None);
    assert_eq!(
        start,
        json!({"cwd": "/repo", "approvalPolicy": "untrusted", "sandbox": "workspace-write", "model": "m"})
    );
    let prefixed = thread_params("/repo", Some("openai/gpt-5"), "workspace-write", None);
    assert_eq!(prefixed["model"], "gpt-5");
    assert_eq!(codex_model("ollama/llama3"), "ollama/llama3");
    let resume = thread_params("/repo", None, "read-only", Some("th-1"));
    assert_eq!(resume["threadId"], "th-1");
    assert_eq!(resume["excludeTurns"], true);

    let attachments = vec![
        Attachment {
            path: "/data/a/shot.png".into(),
            filename: "shot.png".into(),
            mime: Some("image/png".into()),
        },
        Attachment {
            path: "/data/a/notes.txt".into(),
            filename: "notes.txt".into(),
            mime: None,
        },
    ];
    let turn = turn_start_params("th-1", "look", &attachments);
    let input = turn["input"].as_array().unwrap();
    assert_eq!(input.len(), 2, "the image goes as an image too");
    let text = input[0]["text"].as_str().unwrap();
    assert!(text.starts_with("look\n\nAttached files"), "{text}");
    assert!(
        text.contains("- /data/a/notes.txt (notes.txt, unknown type)"),
        "{text}"
    );
    assert_eq!(
        input[1],
        json!({"type": "localImage", "path": "/data/a/shot.png"})
    );
    assert_eq!(compose_prompt("plain", &[]), "plain");
}
