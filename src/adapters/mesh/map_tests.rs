use std::path::Path;

use mesh_protocol::{JobEvent, JobOutcome, OutputStream, RunnerKind};
use pretty_assertions::assert_eq;

use super::*;
use crate::core::events::{Failure, FailureKind, FileAction as CoreFileAction, TextStream};
use crate::core::{EventKind, Outcome, RunnerId};

fn out(text: &str) -> JobEvent {
    JobEvent::Output(OutputData {
        stream: OutputStream::Assistant,
        text: text.to_owned(),
    })
}

#[test]
fn runner_ids_map_at_the_edge_both_ways() {
    for (kimaki, wire) in [
        ("claude", RunnerKind::ClaudeCode),
        ("opencode", RunnerKind::OpenCode),
        ("codex", RunnerKind::Codex),
        ("echo", RunnerKind::Other("x-echo".into())),
    ] {
        assert_eq!(runner_to_wire(&RunnerId::new(kimaki)), wire);
        assert_eq!(runner_from_wire(&wire), Some(RunnerId::new(kimaki)));
    }
    assert_eq!(runner_from_wire(&RunnerKind::Other("gemini".into())), None);
    assert_eq!(runner_from_wire(&RunnerKind::Other("x-".into())), None);
}

#[test]
fn deltas_stream_and_their_final_part_is_not_repeated() {
    let mut parts = Vec::new();
    let mut ctx = MapCtx {
        streamed_parts: Some(&mut parts),
        ..MapCtx::default()
    };
    let delta = EventKind::TextDelta {
        part_id: "p1".into(),
        stream: TextStream::Assistant,
        delta: "hel".into(),
    };
    assert_eq!(event_to_wire(&delta, &mut ctx), vec![out("hel")]);
    let part = EventKind::TextPart {
        part_id: "p1".into(),
        stream: TextStream::Assistant,
        text: "hello".into(),
    };
    assert!(event_to_wire(&part, &mut ctx).is_empty());
    // A part that never streamed (Codex exec) is sent whole.
    let other = EventKind::TextPart {
        part_id: "p2".into(),
        stream: TextStream::Reasoning,
        text: "think".into(),
    };
    assert_eq!(
        event_to_wire(&other, &mut ctx),
        vec![JobEvent::Output(OutputData {
            stream: OutputStream::Reasoning,
            text: "think".into()
        })]
    );
}

#[test]
fn finished_outcomes_and_reasons() {
    let fin = |outcome, reason: Option<&str>, cancel: Option<&str>| {
        let kind = EventKind::Finished {
            outcome,
            summary: Some("done".into()),
            error: Some(Failure::new(FailureKind::Api, "boom")),
            reason: reason.map(str::to_owned),
            exit_code: Some(1),
            duration_ms: None,
        };
        let mut ctx = MapCtx {
            cancel_reason: cancel,
            ..MapCtx::default()
        };
        match event_to_wire(&kind, &mut ctx).pop() {
            Some(JobEvent::Finished(f)) => f,
            other => panic!("{other:?}"),
        }
    };
    let restarted = fin(Outcome::Interrupted, Some("kimaki stopped"), None);
    assert_eq!(restarted.outcome, JobOutcome::Failed);
    assert_eq!(restarted.reason.as_deref(), Some("agent_restart"));
    let cancelled = fin(Outcome::Cancelled, Some("withdrawn"), Some("user"));
    assert_eq!(cancelled.outcome, JobOutcome::Cancelled);
    assert_eq!(cancelled.reason.as_deref(), Some("user"));
    let ok = fin(Outcome::Succeeded, None, None);
    assert_eq!(ok.summary.as_deref(), Some("done"));
    assert_eq!(
        fin(Outcome::TimedOut, None, None).outcome,
        JobOutcome::TimedOut
    );
}

#[test]
fn file_paths_never_leave_the_workspace() {
    let root = Path::new("/home/u/api");
    let mut ctx = MapCtx {
        workspace_root: Some(root),
        ..MapCtx::default()
    };
    let path = |p: &str, ctx: &mut MapCtx<'_>| {
        let kind = EventKind::FileChanged {
            path: p.into(),
            action: CoreFileAction::Modified,
        };
        match event_to_wire(&kind, ctx).pop() {
            Some(JobEvent::File(f)) => f.path,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(path("/home/u/api/src/a.rs", &mut ctx), "src/a.rs");
    assert_eq!(path("src/b.rs", &mut ctx), "src/b.rs");
    assert_eq!(path("/etc/passwd", &mut ctx), "passwd");
}

#[test]
fn output_is_split_under_both_limits_without_losing_text() {
    let text: String = "αβγ\u{1}\"x".repeat(20_000);
    let pieces = fit_event(out(&text), 65_536);
    assert!(pieces.len() > 1);
    let mut joined = String::new();
    for p in &pieces {
        let JobEvent::Output(o) = p else { panic!() };
        assert!(o.text.len() <= MAX_OUTPUT_TEXT_BYTES);
        assert!(serde_json::to_vec(p).unwrap().len() < 65_536 - 512);
        joined.push_str(&o.text);
    }
    assert_eq!(joined, text);
}

#[test]
fn large_tool_output_is_cut_and_finished_always_survives() {
    let tool = JobEvent::Tool(ToolData {
        call_id: "c".into(),
        name: "bash".into(),
        phase: ToolPhase::Result,
        input: None,
        output: Some(Value::String("y".repeat(500_000))),
        is_error: Some(false),
    });
    let fitted = fit_event(tool, 65_536);
    assert_eq!(fitted.len(), 1);
    assert!(matches!(fitted[0], JobEvent::Tool(_)));
    assert!(serde_json::to_vec(&fitted[0]).unwrap().len() <= 65_536);

    let fin = JobEvent::Finished(FinishedData {
        outcome: JobOutcome::Succeeded,
        reason: None,
        exit_code: None,
        error: Some("e".repeat(300_000)),
        summary: Some("s".repeat(300_000)),
    });
    let fitted = fit_event(fin, 65_536);
    assert!(matches!(&fitted[..], [JobEvent::Finished(_)]));
    assert!(serde_json::to_vec(&fitted[0]).unwrap().len() <= 65_536);
    assert!(
        matches!(fit_single(out(&"z".repeat(100_000)), 4096), JobEvent::Output(o) if o.text.len() <= 4096)
    );
}

#[test]
fn coalescing_keeps_streams_apart_and_respects_the_cap() {
    let a = out("ab");
    assert_eq!(coalesce(&a, &out("cd"), 65_536), Some(out("abcd")));
    let reasoning = JobEvent::Output(OutputData {
        stream: OutputStream::Reasoning,
        text: "r".into(),
    });
    assert_eq!(coalesce(&a, &reasoning, 65_536), None);
    let big = out(&"x".repeat(MAX_OUTPUT_TEXT_BYTES - 1));
    assert_eq!(coalesce(&big, &out("yy"), 65_536), None);
}

#[test]
fn permission_policy_without_interactive_refuses() {
    use crate::core::PermissionPolicy as Core;
    assert_eq!(
        permission_policy(Some(PermissionPolicy::Ask), true),
        Core::Ask
    );
    assert_eq!(
        permission_policy(Some(PermissionPolicy::Ask), false),
        Core::Deny
    );
    assert_eq!(permission_policy(None, false), Core::Deny);
    assert_eq!(
        permission_policy(Some(PermissionPolicy::Allow), false),
        Core::Allow
    );
    assert_eq!(
        permission_policy(Some(PermissionPolicy::Unknown), true),
        Core::Deny
    );
}

#[test]
fn cut_middle_keeps_both_ends() {
    let s = format!("{}{}", "a".repeat(1000), "b".repeat(1000));
    let cut = cut_middle(&s, 200);
    assert!(cut.starts_with("aaa") && cut.ends_with("bbb") && cut.contains("truncated"));
    assert!(cut.len() <= 200);
}
