//! A test-only in-process runner for queue tests and benchmarks (never a stand-in for the real
//! runner tests). It echoes the prompt back, and obeys a few prompt commands:
//! `sleep:<ms>` waits (cancellable), `fail` fails, `permission` asks and reports the answer,
//! `panic` panics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kimaki::core::events::{FailureKind, PermissionDecision, TextStream};
use kimaki::core::{
    Control, EventKind, RequestId, RunContext, RunRequest, RunSummary, Runner, RunnerError,
    RunnerId, RunnerInfo,
};

#[derive(Default)]
pub struct EchoRunner {
    /// How many runs started (for "never re-run" assertions).
    pub runs: AtomicUsize,
    /// Prompts in the order they reached the runner.
    pub prompts: std::sync::Mutex<Vec<String>>,
}

impl EchoRunner {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn prompts(&self) -> Vec<String> {
        self.prompts.lock().unwrap().clone()
    }
}

#[async_trait]
impl Runner for EchoRunner {
    fn id(&self) -> RunnerId {
        RunnerId::new("echo")
    }

    async fn probe(&self) -> RunnerInfo {
        RunnerInfo {
            id: self.id(),
            available: true,
            version: Some("1".into()),
            reason: None,
            program: None,
        }
    }

    async fn run(&self, req: RunRequest, mut ctx: RunContext) -> Result<RunSummary, RunnerError> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        self.prompts.lock().unwrap().push(req.prompt.clone());
        let session = req
            .session
            .clone()
            .unwrap_or_else(|| format!("echo-session-{n}"));
        ctx.emit(EventKind::Started {
            runner: "echo".into(),
            runner_version: Some("1".into()),
            runner_session_id: Some(session.clone()),
            pid: None,
        });
        let prompt = req.prompt.trim();
        if let Some(ms) = prompt
            .strip_prefix("sleep:")
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse::<u64>().ok())
        {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                _ = ctx.cancel.cancelled() => return Err(RunnerError::cancelled(Some(session))),
            }
        }
        if prompt == "fail" {
            return Err(
                RunnerError::failed(FailureKind::Api, "echo was told to fail")
                    .with_session(Some(session)),
            );
        }
        if prompt == "panic" {
            panic!("echo was told to panic");
        }
        if prompt == "permission" {
            let request_id = RequestId::new(format!("per_{n}"));
            ctx.emit(EventKind::PermissionRequested {
                request_id: request_id.clone(),
                tool: "bash".into(),
                title: Some("run `ls`".into()),
                input: serde_json::json!({"command": "ls"}),
                patterns: vec!["ls".into()],
            });
            let decision = tokio::select! {
                c = ctx.controls.recv() => c,
                _ = ctx.cancel.cancelled() => return Err(RunnerError::cancelled(Some(session))),
            };
            let text = match decision {
                Some(Control::Permission {
                    decision: PermissionDecision::Reject,
                    ..
                }) => "denied",
                Some(Control::Permission { .. }) => "allowed",
                _ => "no answer",
            };
            ctx.emit(EventKind::TextPart {
                part_id: "p1".into(),
                stream: TextStream::Assistant,
                text: text.into(),
            });
            return Ok(RunSummary {
                summary: Some(text.into()),
                runner_session_id: Some(session),
                exit_code: None,
            });
        }
        let text = format!("echo: {prompt}");
        ctx.emit(EventKind::TextDelta {
            part_id: "p1".into(),
            stream: TextStream::Assistant,
            delta: text.clone(),
        });
        ctx.emit(EventKind::TextPart {
            part_id: "p1".into(),
            stream: TextStream::Assistant,
            text: text.clone(),
        });
        Ok(RunSummary {
            summary: Some(text),
            runner_session_id: Some(session),
            exit_code: None,
        })
    }
}
