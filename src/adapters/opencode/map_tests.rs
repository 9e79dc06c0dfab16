//! The mapping checked on event shapes recorded from `opencode serve` 1.18.33.

use pretty_assertions::assert_eq;
use serde_json::{json, Value};

use super::*;

const SES: &str = "ses_a";
const USER: &str = "msg_user";
const ASSISTANT: &str = "msg_asst";
const SENT_AT: i64 = 1_000;

fn ev(kind: &str, properties: Value) -> Value {
    json!({ "id": "evt_x", "type": kind, "properties": properties })
}

fn user_message(id: &str, created: i64) -> Value {
    ev(
        "message.updated",
        json!({ "sessionID": SES, "info": {
            "id": id, "role": "user", "sessionID": SES, "time": { "created": created },
        }}),
    )
}

fn assistant_info(id: &str, parent: &str, completed: bool, finish: Option<&str>) -> Value {
    let mut info = json!({
        "id": id, "parentID": parent, "role": "assistant", "sessionID": SES,
        "providerID": "fake", "modelID": "fake-model", "time": { "created": SENT_AT + 10 },
    });
    if completed {
        info["time"]["completed"] = json!(SENT_AT + 20);
    }
    if let Some(f) = finish {
        info["finish"] = json!(f);
    }
    info
}

fn assistant(id: &str, parent: &str) -> Value {
    ev(
        "message.updated",
        json!({ "sessionID": SES, "info": assistant_info(id, parent, false, None) }),
    )
}

fn part(p: Value) -> Value {
    ev(
        "message.part.updated",
        json!({ "sessionID": SES, "part": p, "time": 1 }),
    )
}

fn text_part(id: &str, message: &str, text: &str, done: bool) -> Value {
    let mut p = json!({
        "id": id, "messageID": message, "sessionID": SES, "type": "text", "text": text,
        "time": { "start": 1 },
    });
    if done {
        p["time"]["end"] = json!(2);
    }
    p
}

fn delta(part_id: &str, text: &str) -> Value {
    ev(
        "message.part.delta",
        json!({ "sessionID": SES, "messageID": ASSISTANT, "partID": part_id, "field": "text", "delta": text }),
    )
}

fn tool_part(status: &str) -> Value {
    let mut state = json!({
        "status": status,
        "input": { "command": "echo hi > proof.txt && echo tool-ran-ok", "description": "Run" },
        "time": { "start": 1 },
    });
    match status {
        "completed" => {
            state["output"] = json!("tool-ran-ok\n");
            state["metadata"] = json!({ "output": "tool-ran-ok\n", "exit": 0, "truncated": false });
        }
        "error" => {
            state["error"] = json!("The user rejected permission to use this specific tool call.")
        }
        "pending" => state = json!({ "status": "pending", "input": {}, "raw": "" }),
        _ => {}
    }
    json!({
        "id": "prt_tool", "messageID": ASSISTANT, "sessionID": SES, "type": "tool",
        "tool": "bash", "callID": "call_1", "state": state,
    })
}

fn step_finish(id: &str) -> Value {
    json!({
        "id": id, "messageID": ASSISTANT, "sessionID": SES, "type": "step-finish",
        "reason": "stop", "cost": 0,
        "tokens": { "total": 30, "input": 20, "output": 10, "reasoning": 0, "cache": { "read": 0, "write": 0 } },
    })
}

/// A turn that has taken our prompt and knows its assistant message.
fn started_turn() -> Turn {
    let mut t = Turn::new(SES, SENT_AT);
    assert!(t.on_event(&user_message(USER, SENT_AT + 5), 0).is_empty());
    assert!(t.on_event(&assistant(ASSISTANT, USER), 0).is_empty());
    t
}

fn emitted(signals: Vec<Signal>) -> Vec<EventKind> {
    signals
        .into_iter()
        .map(|s| match s {
            Signal::Emit(k) => k,
            other => panic!("expected only emits, got {other:?}"),
        })
        .collect()
}

fn all(turn: &mut Turn, events: &[Value]) -> Vec<Signal> {
    events.iter().flat_map(|e| turn.on_event(e, 0)).collect()
}

#[test]
fn a_tool_turn_maps_to_tool_events_text_and_usage_once_each() {
    let mut t = started_turn();
    let events = [
        part(
            json!({ "id": "prt_ss", "messageID": ASSISTANT, "sessionID": SES, "type": "step-start" }),
        ),
        part(tool_part("pending")),
        part(tool_part("running")),
        part(tool_part("running")),
        part(tool_part("completed")),
        part(tool_part("completed")),
        part(step_finish("prt_sf")),
        part(text_part("prt_t", ASSISTANT, "", false)),
        delta("prt_t", "FINAL: "),
        delta("prt_t", "tool output was tool-ran-ok"),
        part(text_part(
            "prt_t",
            ASSISTANT,
            "FINAL: tool output was tool-ran-ok",
            true,
        )),
        ev(
            "session.status",
            json!({ "sessionID": SES, "status": { "type": "busy" } }),
        ),
        ev(
            "session.status",
            json!({ "sessionID": SES, "status": { "type": "idle" } }),
        ),
        ev("session.idle", json!({ "sessionID": SES })),
        ev("session.diff", json!({ "sessionID": SES, "diff": [] })),
        ev("server.heartbeat", json!({})),
    ];
    let signals = all(&mut t, &events);
    let text_of = |delta: &str| EventKind::TextDelta {
        part_id: "prt_t".into(),
        stream: TextStream::Assistant,
        delta: delta.into(),
    };
    assert_eq!(
        signals,
        vec![
            Signal::Emit(EventKind::ToolStarted {
                call_id: "call_1".into(),
                name: "bash".into(),
                input: json!({ "command": "echo hi > proof.txt && echo tool-ran-ok", "description": "Run" }),
            }),
            Signal::Emit(EventKind::ToolFinished {
                call_id: "call_1".into(),
                name: "bash".into(),
                output: "tool-ran-ok\n".into(),
                is_error: false,
                exit_code: Some(0),
            }),
            Signal::Emit(EventKind::Usage {
                input_tokens: 20,
                output_tokens: 10,
                cached_tokens: 0,
                cost_usd: None,
                context_percent: None,
                model: Some("fake/fake-model".into()),
            }),
            Signal::Emit(text_of("FINAL: ")),
            Signal::Emit(text_of("tool output was tool-ran-ok")),
            Signal::Emit(EventKind::TextPart {
                part_id: "prt_t".into(),
                stream: TextStream::Assistant,
                text: "FINAL: tool output was tool-ran-ok".into(),
            }),
            Signal::Idle,
            Signal::Idle,
        ]
    );
    assert_eq!(
        t.summary().as_deref(),
        Some("FINAL: tool output was tool-ran-ok")
    );
}

#[test]
fn the_users_own_text_and_other_turns_are_not_emitted() {
    let mut t = Turn::new(SES, SENT_AT);
    let events = [
        // An earlier turn's late events: its user message predates our prompt.
        user_message("msg_old", SENT_AT - 500),
        assistant("msg_old_reply", "msg_old"),
        part(text_part("prt_old", "msg_old_reply", "old answer", true)),
        ev(
            "session.error",
            json!({ "sessionID": SES, "error": { "name": "MessageAbortedError", "data": { "message": "Aborted" } } }),
        ),
        // Ours.
        user_message(USER, SENT_AT + 3),
        part(text_part("prt_prompt", USER, "do it [[fake:text]]", false)),
        // Another session on the same server.
        ev("session.idle", json!({ "sessionID": "ses_other" })),
    ];
    assert_eq!(all(&mut t, &events), vec![]);
    assert!(t.has_user_message());
    assert_eq!(t.verdict(&[]), Verdict::Running);
}

#[test]
fn reconcile_after_a_gap_fills_in_without_repeating_and_freezes_deltas() {
    let mut t = started_turn();
    emitted(all(
        &mut t,
        &[
            part(text_part("prt_t", ASSISTANT, "", false)),
            delta("prt_t", "slow-00 "),
            part(tool_part("running")),
        ],
    ));
    // The stream dropped; the list shows more text, the tool done, and a new finished part.
    let messages = [
        json!({ "info": user_message(USER, SENT_AT + 5)["properties"]["info"], "parts": [] }),
        json!({ "info": assistant_info(ASSISTANT, USER, false, None), "parts": [
            tool_part("completed"),
            text_part("prt_t", ASSISTANT, "slow-00 slow-01 slow-02 ", false),
            text_part("prt_r", ASSISTANT, "late whole part", true),
        ]}),
    ];
    let caught_up = emitted(t.reconcile(&messages));
    assert_eq!(
        caught_up,
        vec![
            EventKind::ToolFinished {
                call_id: "call_1".into(),
                name: "bash".into(),
                output: "tool-ran-ok\n".into(),
                is_error: false,
                exit_code: Some(0),
            },
            EventKind::TextDelta {
                part_id: "prt_t".into(),
                stream: TextStream::Assistant,
                delta: "slow-01 slow-02 ".into(),
            },
            EventKind::TextPart {
                part_id: "prt_r".into(),
                stream: TextStream::Assistant,
                text: "late whole part".into(),
            },
        ]
    );
    // Live events queued after the gap repeat what the list showed: nothing twice.
    let after = emitted(all(
        &mut t,
        &[
            delta("prt_t", "slow-01 "),
            part(tool_part("completed")),
            part(text_part("prt_r", ASSISTANT, "late whole part", true)),
            part(text_part(
                "prt_t",
                ASSISTANT,
                "slow-00 slow-01 slow-02 slow-03",
                true,
            )),
        ],
    ));
    assert_eq!(
        after,
        vec![EventKind::TextPart {
            part_id: "prt_t".into(),
            stream: TextStream::Assistant,
            text: "slow-00 slow-01 slow-02 slow-03".into(),
        }]
    );
    // A second reconcile of the same list adds nothing.
    assert_eq!(emitted(t.reconcile(&messages)), vec![]);
}

#[test]
fn reconcile_alone_finds_our_turn_when_every_event_was_lost() {
    let mut t = Turn::new(SES, SENT_AT);
    let messages = [
        json!({ "info": { "id": "msg_old", "role": "user", "time": { "created": SENT_AT - 100 } }, "parts": [
            text_part("prt_p0", "msg_old", "old prompt", false) ] }),
        json!({ "info": assistant_info("msg_old_reply", "msg_old", true, Some("stop")), "parts": [
            text_part("prt_o", "msg_old_reply", "old reply", true) ] }),
        json!({ "info": { "id": USER, "role": "user", "time": { "created": SENT_AT + 1 } }, "parts": [
            text_part("prt_p1", USER, "new prompt", false) ] }),
        json!({ "info": assistant_info(ASSISTANT, USER, true, Some("stop")), "parts": [
            text_part("prt_n", ASSISTANT, "new reply", true), step_finish("prt_sf") ] }),
    ];
    assert!(t.page_reaches_prompt(&messages));
    let out = emitted(t.reconcile(&messages));
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(matches!(&out[0], EventKind::TextPart { text, .. } if text == "new reply"));
    assert!(matches!(&out[1], EventKind::Usage { .. }));
    assert_eq!(t.verdict(&messages), Verdict::Done);
    assert_eq!(t.summary().as_deref(), Some("new reply"));
    // Only newer messages: the page does not reach back to the prompt.
    let fresh = Turn::new(SES, SENT_AT);
    assert!(!fresh.page_reaches_prompt(&messages[3..]));
}

#[test]
fn verdicts_follow_the_last_assistant_message() {
    let t = started_turn();
    let with = |info: Value| vec![json!({ "info": info, "parts": [] })];
    assert_eq!(
        t.verdict(&with(assistant_info(ASSISTANT, USER, false, None))),
        Verdict::Running
    );
    // A tool step finished but the loop stopped (a rejected permission): the turn is over.
    assert_eq!(
        t.verdict(&with(assistant_info(
            ASSISTANT,
            USER,
            true,
            Some("tool-calls")
        ))),
        Verdict::Done
    );
    let mut aborted = assistant_info(ASSISTANT, USER, true, None);
    aborted["error"] = json!({ "name": "MessageAbortedError", "data": { "message": "Aborted" } });
    assert_eq!(t.verdict(&with(aborted)), Verdict::Aborted);
    let mut failed = assistant_info(ASSISTANT, USER, true, None);
    failed["error"] = json!({ "name": "APIError", "data": {
        "message": "fake LLM error scenario: HTTP 400", "statusCode": 400, "isRetryable": false } });
    assert_eq!(
        t.verdict(&with(failed)),
        Verdict::Failed {
            kind: FailureKind::Api,
            message: "the model provider rejected the request (HTTP 400): fake LLM error scenario: HTTP 400".into(),
        }
    );
}

#[test]
fn a_session_error_without_a_reply_fails_the_turn() {
    let mut t = Turn::new(SES, SENT_AT);
    t.on_event(&user_message(USER, SENT_AT), 0);
    t.on_event(
        &ev(
            "session.error",
            json!({ "sessionID": SES, "error": {
            "name": "ProviderAuthError", "data": { "providerID": "x", "message": "bad key" } } }),
        ),
        0,
    );
    assert_eq!(
        t.verdict(&[]),
        Verdict::Failed {
            kind: FailureKind::Auth,
            message: "the model provider rejected the credentials: bad key".into(),
        }
    );
}

#[test]
fn errors_are_classified_by_name_and_status() {
    let api = |status: u64| json!({ "name": "APIError", "data": { "message": "m", "statusCode": status } });
    let kind = |e: Value| match classify_error(&e) {
        ErrorClass::Failed { kind, .. } => Some(kind),
        ErrorClass::Aborted => None,
    };
    assert_eq!(kind(api(400)), Some(FailureKind::Api));
    assert_eq!(kind(api(404)), Some(FailureKind::Api));
    assert_eq!(kind(api(401)), Some(FailureKind::Auth));
    assert_eq!(kind(api(403)), Some(FailureKind::Auth));
    assert_eq!(kind(api(429)), Some(FailureKind::ModelUnreachable));
    assert_eq!(kind(api(503)), Some(FailureKind::ModelUnreachable));
    assert_eq!(
        kind(json!({ "name": "ContextOverflowError", "data": { "message": "m" } })),
        Some(FailureKind::Api)
    );
    assert_eq!(
        kind(json!({ "name": "SomethingNew" })),
        Some(FailureKind::Api)
    );
    assert_eq!(
        kind(json!({ "name": "MessageAbortedError", "data": { "message": "Aborted" } })),
        None
    );
}

#[test]
fn retries_become_status_signals_with_the_wait() {
    let mut t = started_turn();
    let s = t.on_event(
        &ev("session.status", json!({ "sessionID": SES, "status": {
            "type": "retry", "attempt": 2, "message": "fake LLM error scenario: HTTP 500", "next": 5_000 } })),
        3_000,
    );
    assert_eq!(
        s,
        vec![Signal::Retry {
            attempt: 2,
            message: "fake LLM error scenario: HTTP 500".into(),
            next_in_ms: Some(2_000),
        }]
    );
    assert_eq!(
        retry_status(2, "boom", Some(2_000)),
        EventKind::Status {
            message: "model endpoint retrying (2): boom".into(),
            retry: Some(RetryInfo {
                attempt: 2,
                next_in_ms: Some(2_000)
            }),
        }
    );
}

#[test]
fn permissions_and_questions_from_the_session_or_its_subagents_are_raised_once() {
    let mut t = started_turn();
    let asked = ev(
        "permission.asked",
        json!({
            "id": "per_1", "sessionID": "ses_child", "permission": "bash",
            "patterns": ["echo hi > proof.txt", "echo tool-ran-ok"],
            "metadata": { "command": "echo hi > proof.txt && echo tool-ran-ok" },
            "always": ["echo *"], "tool": { "messageID": "m", "callID": "c" },
        }),
    );
    let expected = Signal::PermissionAsked {
        id: "per_1".into(),
        event: EventKind::PermissionRequested {
            request_id: RequestId::new("per_1"),
            tool: "bash".into(),
            title: Some("run `echo hi > proof.txt && echo tool-ran-ok`".into()),
            input: json!({ "command": "echo hi > proof.txt && echo tool-ran-ok" }),
            patterns: vec!["echo hi > proof.txt".into(), "echo tool-ran-ok".into()],
        },
    };
    assert_eq!(t.on_event(&asked, 0), vec![expected]);
    assert_eq!(t.on_event(&asked, 0), vec![]);
    // Seen again in the pending list after a gap: still once.
    let family = std::collections::HashSet::from(["ses_a".to_owned(), "ses_child".to_owned()]);
    assert_eq!(
        t.reconcile_requests(&[asked["properties"].clone()], &[], &family),
        vec![]
    );
    assert_eq!(
        t.on_event(
            &ev(
                "permission.replied",
                json!({ "sessionID": "ses_child", "requestID": "per_1", "reply": "always" })
            ),
            0
        ),
        vec![Signal::PermissionReplied {
            id: "per_1".into(),
            resolution: PermissionResolution::Always
        }]
    );

    let question = json!({
        "id": "que_1", "sessionID": SES,
        "questions": [{ "question": "Pick one", "header": "Choice", "multiple": false, "options": [
            { "label": "Alpha", "description": "Option Alpha" }, { "label": "Beta", "description": "" } ] }],
    });
    let raised = t.reconcile_requests(&[], std::slice::from_ref(&question), &family);
    assert_eq!(
        raised,
        vec![Signal::QuestionAsked {
            id: "que_1".into(),
            event: EventKind::QuestionAsked {
                request_id: RequestId::new("que_1"),
                questions: vec![Question {
                    question: "Pick one".into(),
                    header: Some("Choice".into()),
                    options: vec![
                        QuestionOption {
                            label: "Alpha".into(),
                            description: Some("Option Alpha".into())
                        },
                        QuestionOption {
                            label: "Beta".into(),
                            description: None
                        },
                    ],
                    multiple: false,
                }],
            },
        }]
    );
    assert_eq!(t.on_event(&ev("question.asked", question), 0), vec![]);
    assert_eq!(
        t.on_event(
            &ev(
                "question.replied",
                json!({ "sessionID": SES, "requestID": "que_1", "answers": [["Beta"]] })
            ),
            0
        ),
        vec![Signal::QuestionResolved {
            id: "que_1".into(),
            answers: Some(vec![vec!["Beta".into()]])
        }]
    );
    assert_eq!(
        t.on_event(
            &ev(
                "question.rejected",
                json!({ "sessionID": SES, "requestID": "que_2" })
            ),
            0
        ),
        vec![Signal::QuestionResolved {
            id: "que_2".into(),
            answers: None
        }]
    );
    // Requests of unrelated sessions found in the pending list are not ours.
    let stranger = json!({ "id": "per_9", "sessionID": "ses_z", "permission": "bash", "patterns": [], "metadata": {} });
    assert_eq!(t.reconcile_requests(&[stranger], &[], &family), vec![]);
}

#[test]
fn written_files_and_patches_become_file_changes_once_per_path() {
    let mut t = started_turn();
    let write = json!({
        "id": "prt_w", "messageID": ASSISTANT, "sessionID": SES, "type": "tool", "tool": "write",
        "callID": "call_w", "state": {
            "status": "completed", "input": { "content": "x", "filePath": "notes.txt" },
            "output": "Wrote file successfully.", "title": "notes.txt",
            "metadata": { "filepath": "/repo/notes.txt", "exists": false }, "time": { "start": 1, "end": 2 },
        },
    });
    let patch = json!({ "id": "prt_p", "messageID": ASSISTANT, "sessionID": SES, "type": "patch",
        "hash": "h", "files": ["/repo/notes.txt", "/repo/proof.txt"] });
    let files: Vec<EventKind> = emitted(all(&mut t, &[part(write), part(patch)]))
        .into_iter()
        .filter(|k| matches!(k, EventKind::FileChanged { .. }))
        .collect();
    assert_eq!(
        files,
        vec![
            EventKind::FileChanged {
                path: "/repo/notes.txt".into(),
                action: FileAction::Created
            },
            EventKind::FileChanged {
                path: "/repo/proof.txt".into(),
                action: FileAction::Modified
            },
        ]
    );
}

#[test]
fn tool_errors_and_long_outputs() {
    let mut t = started_turn();
    let out = emitted(t.on_event(&part(tool_part("error")), 0));
    assert_eq!(
        out[1],
        EventKind::ToolFinished {
            call_id: "call_1".into(),
            name: "bash".into(),
            output: "The user rejected permission to use this specific tool call.".into(),
            is_error: true,
            exit_code: None,
        }
    );
    let long = "é".repeat(TOOL_OUTPUT_LIMIT);
    let cut = truncate(&long, TOOL_OUTPUT_LIMIT);
    assert!(cut.len() < long.len() && cut.ends_with(&format!("{} bytes in all)", long.len())));
}

#[test]
fn usage_reports_the_context_share_once_the_window_is_known() {
    let mut t = started_turn();
    assert_eq!(
        t.wants_context_limit(),
        Some(("fake".into(), "fake-model".into()))
    );
    assert_eq!(t.wants_context_limit(), None);
    t.set_context_limit(Some(100_000));
    let out = emitted(t.on_event(&part(step_finish("prt_sf")), 0));
    assert!(
        matches!(out[..], [EventKind::Usage { context_percent: Some(p), .. }] if (p - 0.03).abs() < 1e-9),
        "{out:?}"
    );
}

#[test]
fn prompt_bodies_carry_model_and_agent_only_when_asked() {
    let attachment = Attachment {
        path: "/tmp/a b/shot.PNG".into(),
        filename: "shot.PNG".into(),
        mime: None,
    };
    assert_eq!(
        prompt_body("hi", &[], None, None),
        json!({ "parts": [{ "type": "text", "text": "hi" }] })
    );
    assert_eq!(
        prompt_body(
            "hi",
            &[attachment],
            Some(&("openrouter".into(), "anthropic/claude".into())),
            Some("plan")
        ),
        json!({
            "parts": [
                { "type": "text", "text": "hi" },
                { "type": "file", "mime": "image/png", "filename": "shot.PNG", "url": "file:///tmp/a%20b/shot.PNG" },
            ],
            "model": { "providerID": "openrouter", "modelID": "anthropic/claude" },
            "agent": "plan",
        })
    );
    assert_eq!(
        parse_model("openrouter/anthropic/claude"),
        Some(("openrouter".into(), "anthropic/claude".into()))
    );
    assert_eq!(parse_model("gpt-4o"), None);
    assert_eq!(parse_model("/x"), None);
    assert_eq!(guess_mime(Path::new("notes.md")), "text/plain");
    assert_eq!(guess_mime(Path::new("blob")), "application/octet-stream");
}

#[test]
fn permission_titles_say_what_is_asked() {
    let title = |p: Value| match permission_event(&p) {
        EventKind::PermissionRequested { title, .. } => title,
        _ => unreachable!(),
    };
    assert_eq!(
        title(
            json!({ "id": "per_1", "permission": "edit", "patterns": ["a.rs"], "metadata": { "filepath": "/r/a.rs" } })
        ),
        Some("edit `/r/a.rs`".into())
    );
    assert_eq!(
        title(
            json!({ "id": "per_1", "permission": "external_directory", "patterns": ["/etc/*"], "metadata": {} })
        ),
        Some("use `external_directory` on /etc/*".into())
    );
    assert_eq!(
        title(json!({ "id": "per_1", "permission": "x", "patterns": [], "metadata": {} })),
        None
    );
}
