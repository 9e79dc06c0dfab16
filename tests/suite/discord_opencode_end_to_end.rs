//! End to end with a real runner: Discord (twin) → the adapter → the queue → the real `opencode`
//! server → the fake LLM, and back. A long reply with a code block arrives split at fence-safe
//! points with a footer; a shell call the project asks permission for shows buttons, and the
//! click lets the command run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kimaki::adapters::discord::render::DISCORD_LIMIT;
use kimaki::adapters::opencode::{OpencodeConfig, OpencodeRunner};
use kimaki::core::Runner;
use serde_json::json;

use crate::support::discord_harness::{Kimaki, Options, PROJECT};
use crate::support::fake_llm::{FakeLlm, TOOL_COMMAND};
use crate::support::runner_bins;

/// The first prompt boots the OpenCode server and an instance for the project (seconds on an
/// idle machine, much more on two busy cores).
const FIRST_TURN: Duration = Duration::from_secs(120);

/// OpenCode with the fake LLM as its only provider, isolated from the real HOME.
fn opencode(llm: &FakeLlm, home: &Path, state: &Path) -> OpencodeConfig {
    let mut c = OpencodeConfig::new(runner_bins::opencode_bin(), state);
    c.inherit_env = false;
    let dir = |sub: &str| home.join(sub).to_string_lossy().into_owned();
    let provider = json!({
        "autoupdate": false, "share": "disabled", "snapshot": false,
        "enabled_providers": ["fake"], "model": "fake/fake-model", "small_model": "fake/fake-model",
        "provider": { "fake": {
            "npm": "@ai-sdk/openai-compatible", "name": "Fake LLM",
            "options": { "baseURL": format!("{}/v1", llm.base_url()), "apiKey": "sk-fake" },
            "models": { "fake-model": {
                "name": "Fake Model", "tool_call": true,
                "limit": { "context": 100_000, "output": 4_096 },
            } },
        } },
    });
    c.env = vec![
        (
            "PATH".into(),
            runner_bins::runner_path_env().into_string().unwrap(),
        ),
        ("HOME".into(), home.to_string_lossy().into_owned()),
        ("XDG_CONFIG_HOME".into(), dir(".config")),
        ("XDG_DATA_HOME".into(), dir(".local/share")),
        ("XDG_CACHE_HOME".into(), dir(".cache")),
        ("XDG_STATE_HOME".into(), dir(".local/state")),
        ("OPENCODE_CONFIG_CONTENT".into(), provider.to_string()),
    ];
    // A stuck run fails visibly (an error in the thread) instead of waiting out the 10 minutes.
    c.no_progress_timeout = Duration::from_secs(30);
    for switch in [
        "OPENCODE_DISABLE_AUTOUPDATE",
        "OPENCODE_DISABLE_MODELS_FETCH",
        "OPENCODE_DISABLE_LSP_DOWNLOAD",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS",
        "OPENCODE_DISABLE_CLAUDE_CODE",
        "OPENCODE_DISABLE_SHARE",
        "OPENCODE_DISABLE_EXTERNAL_SKILLS",
    ] {
        c.env.push((switch.into(), "1".into()));
    }
    c
}

#[tokio::test]
async fn a_real_opencode_session_streams_a_long_reply_and_asks_permission_in_discord() {
    let llm = FakeLlm::start().await;
    let home = runner_bins::isolated_home();
    let state = tempfile::tempdir().unwrap();
    let runner = Arc::new(OpencodeRunner::new(opencode(
        &llm,
        home.path(),
        state.path(),
    )));
    let path_env = runner_bins::runner_path_env();
    let home_dir = home.path().to_owned();
    let k = Kimaki::start_with(Options {
        runner: "opencode",
        extra_runners: vec![runner.clone() as Arc<dyn Runner>],
        prepare: Box::new(move |dir| {
            let ok = std::process::Command::new("git")
                .args(["init", "-q"])
                .current_dir(dir)
                .env_clear()
                .env("PATH", &path_env)
                .env("HOME", &home_dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "git init");
            // The project asks before shell commands (project config wins over kimaki's).
            std::fs::write(
                dir.join("opencode.json"),
                r#"{"permission":{"bash":"ask"}}"#,
            )
            .unwrap();
        }),
        ..Options::default()
    })
    .await;
    let alice = k.twin.user("alice");

    // A long reply: split into several messages, fences intact, then the footer.
    let first = alice
        .in_channel(k.channel)
        .send("[[fake:long]] explain the module");
    let thread = k.thread_of(first).await;
    let footer = k
        .twin
        .wait_bot_message(
            thread,
            |m| m.content.starts_with(&format!("*{PROJECT} ⋅ ")),
            FIRST_TURN,
        )
        .await;
    let bot = k.twin.bot_user_id();
    let reply: Vec<String> = k
        .twin
        .messages(thread)
        .into_iter()
        .filter(|m| m.author_id == bot && m.id < footer.id)
        .map(|m| m.content)
        .collect();
    assert!(reply.len() >= 3, "{reply:#?}");
    assert!(reply.iter().all(|m| m.chars().count() <= DISCORD_LIMIT));
    assert!(
        reply.iter().all(|m| m.matches("```").count() % 2 == 0),
        "every message has balanced fences: {reply:#?}"
    );
    let joined = reply.join("\n");
    assert!(joined.contains("line 23 of the fenced block"));
    assert!(
        reply.last().unwrap().ends_with("END OF LONG REPLY"),
        "{reply:#?}"
    );
    assert!(footer.content.contains("fake"), "{}", footer.content);
    let edits = k
        .twin
        .rest_log()
        .iter()
        .filter(|r| {
            r.method == "PATCH" && r.path.contains(&format!("/channels/{thread}/messages/"))
        })
        .count();
    assert!(
        edits >= 1,
        "the growing reply was edited in place (live streaming)"
    );

    // Permission: the project asks before `bash`; Accept lets the command run.
    let asked = alice
        .in_thread(thread)
        .send("[[fake:permission]] run the tool");
    let prompt = k
        .twin
        .wait_bot_message(
            thread,
            |m| m.id > asked && !m.components.is_empty(),
            FIRST_TURN,
        )
        .await;
    assert!(
        prompt.content.starts_with("⚠️ **Permission Required**"),
        "{}",
        prompt.content
    );
    let accept = prompt
        .enabled_custom_ids()
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| id.ends_with(":once"))
        .unwrap();
    let click = alice.in_thread(thread).click(prompt.id, &accept);
    assert_eq!(
        k.twin
            .wait_interaction_ack(click, FIRST_TURN)
            .await
            .response_type,
        7
    );
    k.twin
        .wait_bot_message(
            thread,
            |m| m.id > prompt.id && m.content.contains("FINAL: tool output was tool-ran-ok"),
            FIRST_TURN,
        )
        .await;
    assert!(
        k.project_dir.join("proof.txt").exists(),
        "`{TOOL_COMMAND}` ran"
    );
    k.finish().await;
    runner.shutdown().await;
}
