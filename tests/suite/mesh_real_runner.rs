//! The full path with a real runner: a mesh dispatch for `codex` runs the pinned Codex CLI
//! against the fake LLM, and the coordinator receives its answer, status, usage and `finished`
//! in order.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kimaki::adapters::codex::{CodexConfig, CodexRunner, CodexSandbox};
use kimaki::adapters::process::ChildEnv;
use kimaki::core::Runner;
use mesh_protocol::{JobEvent, JobOutcome, OutputStream};

use crate::support::coordinator::agent::{fast_coordinator, spec, test_config, Agent};
use crate::support::coordinator::MeshCoordinator;
use crate::support::fake_llm::{self, FakeLlm};
use crate::support::runner_bins;

/// One real Codex turn takes about a second; this bounds a loaded 2-core machine.
const TURN: Duration = Duration::from_secs(90);

fn codex(base_url: &str, home: &Path) -> CodexConfig {
    let codex_home = home.join(".codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    let mut config = CodexConfig::new(
        runner_bins::codex_bin().display().to_string(),
        home.join("state/codex"),
    );
    config.env = ChildEnv {
        inherit: false,
        remove: Vec::new(),
        vars: vec![
            (
                "PATH".into(),
                runner_bins::runner_path_env()
                    .to_string_lossy()
                    .into_owned(),
            ),
            ("HOME".into(), home.display().to_string()),
            ("CODEX_HOME".into(), codex_home.display().to_string()),
            ("FAKE_API_KEY".into(), "sk-fake-mesh".into()),
        ],
    };
    config.config_overrides = vec![
        "model_provider=fake".into(),
        "model_providers.fake.name=fake".into(),
        format!("model_providers.fake.base_url=\"{base_url}/v1\""),
        "model_providers.fake.env_key=FAKE_API_KEY".into(),
        "model_providers.fake.wire_api=responses".into(),
        "model_providers.fake.request_max_retries=0".into(),
        "model_providers.fake.stream_max_retries=0".into(),
    ];
    config.default_model = Some(fake_llm::MODEL.into());
    config.sandbox = CodexSandbox::DangerFullAccess;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_dispatch_runs_the_real_codex_cli() {
    let llm = FakeLlm::start().await;
    let home = runner_bins::isolated_home();
    let runner: Arc<dyn Runner> = Arc::new(CodexRunner::new(codex(&llm.base_url(), home.path())));
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(runner, 1)]).await;
    let status = tokio::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&agent.workspace)
        .env_clear()
        .env("PATH", runner_bins::runner_path_env())
        .env("HOME", home.path())
        .status()
        .await
        .unwrap();
    assert!(status.success(), "git init failed");

    let hello = coord.wait_hello(1, TURN).await;
    let codex_entry = hello
        .runners
        .iter()
        .find(|r| r.id.as_str() == "codex")
        .expect("codex advertised");
    assert!(codex_entry.available, "{codex_entry:?}");
    let gateway = coord.wait_live_agent(TURN).await;
    let job = coord.dispatch(
        &gateway,
        spec("codex", &agent.workspace_id, "say hi [[fake:text]]"),
    );
    let done = coord.wait_finished(&job, TURN).await;

    let finished = done.finished().unwrap();
    assert_eq!(
        finished.outcome,
        JobOutcome::Succeeded,
        "{finished:?}\n{:?}",
        done.event_types()
    );
    let JobEvent::Started(started) = &done.applied[0].event else {
        panic!("{:?}", done.event_types())
    };
    assert_eq!(started.runner.as_str(), "codex");
    assert_eq!(started.runner_version, codex_entry.version);
    assert!(done
        .output_text(OutputStream::Assistant)
        .contains(fake_llm::TEXT_REPLY));
    assert!(done
        .applied
        .iter()
        .any(|e| matches!(&e.event, JobEvent::Status(s) if s.runner_session_id.is_some())));
    assert_eq!(coord.audit(&job).launches, 1);
    agent.stop().await;
    llm.stop().await;
}
