//! A rejected token and a missing MESSAGE CONTENT intent are fatal: `spawn` returns a clear error
//! at once and nothing retries (no reconnect storm against Discord).

use std::sync::Arc;

use kimaki::adapters::discord::{self, DiscordDeps, DiscordError};
use kimaki::adapters::git::GitWorktrees;
use kimaki::config::Secret;
use kimaki::core::{Health, Workspaces};
use tokio_util::sync::CancellationToken;

use crate::support::discord_harness::{test_config, QUICK};
use crate::support::discord_twin::{DiscordTwin, TwinConfig, ViolationKind, WsDirection};
use crate::support::queue_harness::QueueHarness;

async fn deps(dir: &std::path::Path) -> (QueueHarness, DiscordDeps) {
    let q = QueueHarness::start(&dir.join("store"), Vec::new()).await;
    let store = q.queue.store().clone();
    let deps = DiscordDeps {
        queue: q.queue.clone(),
        workspaces: Workspaces::new(store.clone()),
        health: Health::default(),
        tasks: kimaki::core::tasks::Tasks::new(store.clone()),
        store,
        worktrees: Arc::new(GitWorktrees::new()),
    };
    (q, deps)
}

#[tokio::test]
async fn a_rejected_token_and_a_missing_intent_are_fatal_and_never_retried() {
    // 401 on the token check: no gateway connection at all.
    let twin = DiscordTwin::start(TwinConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (q, d) = deps(dir.path()).await;
    let mut config = test_config(&twin, dir.path(), "script");
    config.token =
        Secret::new("MTIzNDU2Nzg5MDEyMzQ1Njc4.GTwin0.wrongwrongwrongwrongwrongwrongwrong");
    let health = d.health.clone();
    let err = discord::spawn(config, d, CancellationToken::new())
        .await
        .err();
    assert!(matches!(err, Some(DiscordError::TokenRejected)), "{err:?}");
    assert!(err.unwrap().to_string().contains("Reset Token"));
    assert_eq!(health.get("discord").unwrap().state, "failed");
    assert_eq!(twin.invalid_request_counts().unauthorized, 1, "asked once");
    assert!(twin.ws_log().is_empty(), "never connected");
    let v: Vec<ViolationKind> = twin.take_violations().into_iter().map(|v| v.kind).collect();
    assert_eq!(v, [ViolationKind::UnexpectedAuthFailure]);
    twin.assert_clean();
    q.shutdown().await;

    // Close 4014 (MESSAGE CONTENT not enabled in the portal): one IDENTIFY, then an error.
    let twin = DiscordTwin::start(TwinConfig {
        message_content_intent: false,
        ..TwinConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (q, d) = deps(dir.path()).await;
    let config = test_config(&twin, dir.path(), "script");
    let err = tokio::time::timeout(QUICK, discord::spawn(config, d, CancellationToken::new()))
        .await
        .expect("spawn returns")
        .err();
    assert!(matches!(err, Some(DiscordError::MissingIntent)), "{err:?}");
    assert!(err.unwrap().to_string().contains("MESSAGE CONTENT INTENT"));
    let identifies = twin
        .ws_log()
        .iter()
        .filter(|f| f.direction == WsDirection::FromBot && f.op == Some(2))
        .count();
    assert_eq!(identifies, 1, "no retry loop");
    twin.assert_clean();
    q.shutdown().await;
}
