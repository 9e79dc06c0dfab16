//! Jobs nobody dispatched are seen by the mesh (feature `observe`, `job.observed`): a Discord
//! message and a `kimaki send` run as usual, and the coordinator gets an announcement (origin,
//! workspace, conversation, prompt) followed by every event exactly once and in order — also when
//! the job ran while the coordinator was down. The coordinator cannot steer them, a coordinator
//! without `observe` gets nothing, and `MESH_OBSERVE=none` turns it off. Real binary, reference
//! coordinator, Discord twin, real Codex CLI against the fake LLM.

use std::time::Duration;

use mesh_protocol::{
    CancelReason, CancelStatus, JobEvent, JobOrigin, JobState, OutputStream, RunnerKind,
};
use nix::sys::signal::Signal;

use crate::support::coordinator::agent::{fast_coordinator, TOKEN};
use crate::support::coordinator::{CoordinatorConfig, JobRecord, MeshCoordinator};
use crate::support::discord_twin::{channel_kind, DiscordTwin, TwinConfig};
use crate::support::fake_llm::{FakeLlm, TEXT_REPLY};
use crate::support::kimaki_bin::Kimaki;

const WAIT: Duration = Duration::from_secs(60);

/// The observed job whose prompt contains `needle`, once its `finished` arrived.
async fn wait_observed_finished(coord: &MeshCoordinator, needle: &str) -> JobRecord {
    coord
        .wait_until(&format!("observed job `{needle}` finished"), WAIT, |s| {
            s.jobs
                .values()
                .find(|j| {
                    j.observed
                        .as_ref()
                        .is_some_and(|o| o.prompt.contains(needle))
                        && j.finished().is_some()
                })
                .cloned()
        })
        .await
}

#[test]
fn a_discord_message_is_seen_by_the_mesh_but_not_steered_by_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(FakeLlm::start());
    let twin = rt.block_on(DiscordTwin::start(TwinConfig::default()));
    let coord = rt.block_on(MeshCoordinator::start(fast_coordinator()));
    let (k, _project) = Kimaki::new().with_fake_codex(&llm);
    let k = k
        .with_discord_twin(&twin)
        .with_env("MESH_URL", &coord.url())
        .with_env("MESH_TOKEN", TOKEN);
    let mut d = k.start(&[]);
    d.wait_ready();
    let channel = rt.block_on(twin.wait_for("the project channel", WAIT, |s| {
        s.channels
            .values()
            .find(|c| c.kind == channel_kind::TEXT && c.name == "project")
            .map(|c| c.id)
    }));
    let hello = rt.block_on(coord.wait_hello(1, WAIT));
    assert!(
        hello.features.iter().any(|f| f == "observe"),
        "{:?}",
        hello.features
    );
    let workspace = hello.workspaces[0].id.clone();

    let sent = twin
        .user("alice")
        .in_channel(channel)
        .send("[[fake:text]] what does the mesh see?");
    let thread = rt.block_on(twin.wait_thread(|t| t.id.get() == sent.get(), WAIT));
    rt.block_on(twin.wait_bot_message(thread.id, |m| m.content.contains(TEXT_REPLY), WAIT));

    let job = rt.block_on(wait_observed_finished(&coord, "what does the mesh see?"));
    let observed = job.observed.clone().unwrap();
    assert_eq!(observed.origin, JobOrigin::Discord);
    assert_eq!(observed.runner, RunnerKind::Codex);
    assert_eq!(observed.workspace_id, Some(workspace));
    // The prompt as the runner got it: the message plus who wrote it.
    assert!(
        observed
            .prompt
            .starts_with("[[fake:text]] what does the mesh see?\n\n<discord-user name=\"alice\""),
        "{}",
        observed.prompt
    );
    assert!(
        observed
            .conversation_id
            .as_deref()
            .is_some_and(|c| c.contains(&thread.id.to_string())),
        "the conversation names the thread: {observed:?}"
    );
    assert!(job.lease_id.starts_with("obs_"), "{}", job.lease_id);
    let audit = coord.audit(&job.job_id);
    assert_eq!(audit.finished, 1);
    assert_eq!(audit.launches, 1);
    assert!(matches!(job.applied[0].event, JobEvent::Started(_)));
    assert_eq!(job.state, JobState::Succeeded);
    assert!(
        job.output_text(OutputStream::Assistant)
            .contains(TEXT_REPLY),
        "{:?}",
        job.event_types()
    );

    // The coordinator may watch, not steer: a cancel of the observed job is refused, and the
    // next message in the thread still runs.
    coord.cancel(&job.job_id, CancelReason::User, 1_000);
    let refused = rt.block_on(coord.wait_until("the cancel result", WAIT, |s| {
        s.jobs
            .get(&job.job_id)
            .and_then(|j| j.cancel_results.first().cloned())
    }));
    assert_eq!(refused.status, CancelStatus::UnknownJob);
    twin.user("alice")
        .in_thread(thread.id)
        .send("[[fake:text]] and a follow-up");
    let follow_up = rt.block_on(wait_observed_finished(&coord, "and a follow-up"));
    assert_eq!(
        follow_up.observed.as_ref().unwrap().conversation_id,
        observed.conversation_id,
        "one thread, one conversation"
    );
    assert_eq!(follow_up.state, JobState::Succeeded);
    assert!(coord.violations().is_empty(), "{:?}", coord.violations());

    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
    twin.assert_clean();
}

#[test]
fn a_cli_job_that_ran_while_the_coordinator_was_down_arrives_exactly_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(FakeLlm::start());
    let coord = rt.block_on(MeshCoordinator::start(fast_coordinator()));
    let (k, project) = Kimaki::new().with_fake_codex(&llm);
    let k = k
        .with_env("MESH_URL", &coord.url())
        .with_env("MESH_TOKEN", TOKEN);
    let mut d = k.start(&[]);
    d.wait_ready();
    let gateway = rt.block_on(coord.wait_live_agent(WAIT));
    let workspace = rt.block_on(coord.wait_hello(1, WAIT)).workspaces[0]
        .id
        .clone();

    rt.block_on(coord.kill());
    let out = k.run(&[
        "send",
        "--project",
        project.to_str().unwrap(),
        "--prompt",
        "[[fake:text]] nightly report",
        "--wait",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(
        coord.with_state(|s| s.jobs.is_empty()),
        "nothing arrived yet"
    );

    rt.block_on(coord.restart());
    let job = rt.block_on(wait_observed_finished(&coord, "nightly report"));
    let observed = job.observed.clone().unwrap();
    assert_eq!(observed.origin, JobOrigin::Cli);
    assert_eq!(observed.workspace_id, Some(workspace));
    assert_eq!(job.gateway, gateway);
    let audit = coord.audit(&job.job_id);
    assert_eq!(audit.finished, 1);
    assert!(job
        .output_text(OutputStream::Assistant)
        .contains(TEXT_REPLY));

    // Once acknowledged, nothing is sent again: a later restart of the coordinator replays
    // nothing for it and announces it no more.
    let before = (job.applied.len(), job.announcements);
    rt.block_on(coord.restart());
    rt.block_on(coord.wait_hello(3, WAIT));
    // The agent heartbeats only after it handled the welcome (resume, re-announcements): two
    // heartbeats later anything it would resend has arrived.
    let beats = coord.with_state(|s| s.heartbeats);
    rt.block_on(
        coord.wait_until("two heartbeats after the welcome", WAIT, |s| {
            (s.heartbeats >= beats + 2).then_some(())
        }),
    );
    let after = coord.job(&job.job_id);
    assert_eq!((after.applied.len(), after.announcements), before);
    assert_eq!(coord.audit(&job.job_id).duplicates, 0);

    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
}

#[test]
fn nothing_is_observed_without_the_feature_on_either_side() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(FakeLlm::start());

    // A coordinator that does not take `observe`.
    let older = CoordinatorConfig {
        features: ["resume", "cancel", "coalesce", "interactive"]
            .map(str::to_owned)
            .to_vec(),
        ..fast_coordinator()
    };
    let coord = rt.block_on(MeshCoordinator::start(older));
    let (k, project) = Kimaki::new().with_fake_codex(&llm);
    let k = k
        .with_env("MESH_URL", &coord.url())
        .with_env("MESH_TOKEN", TOKEN);
    let mut d = k.start(&[]);
    d.wait_ready();
    rt.block_on(coord.wait_live_agent(WAIT));
    let send = |k: &Kimaki, prompt: &str| {
        let out = k.run(&[
            "send",
            "--project",
            project.to_str().unwrap(),
            "--prompt",
            prompt,
            "--wait",
        ]);
        assert_eq!(out.code(), 0, "{}", out.all());
    };
    send(&k, "[[fake:text]] private work");
    // A heartbeat round trip later nothing has arrived, and nothing is kept for it.
    let beats = coord.with_state(|s| s.heartbeats);
    rt.block_on(coord.wait_until("two more heartbeats", WAIT, |s| {
        (s.heartbeats >= beats + 2).then_some(())
    }));
    coord.with_state(|s| {
        assert!(s.jobs.is_empty(), "{:?}", s.jobs.keys().collect::<Vec<_>>());
        assert!(!s.log.iter().any(|(e, _)| e == "job.observed"));
        assert!(s.violations.is_empty(), "{:?}", s.violations);
    });
    let status = k.run(&["status", "--json"]);
    assert!(
        status.stdout.contains("outboxEvents=0"),
        "nothing waits in the outbox: {}",
        status.stdout
    );
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());

    // `MESH_OBSERVE=none`: the agent does not even offer the feature.
    let coord = rt.block_on(MeshCoordinator::start(fast_coordinator()));
    let k = k
        .with_env("MESH_URL", &coord.url())
        .with_env("MESH_OBSERVE", "none");
    let mut d = k.start(&[]);
    d.wait_ready();
    let hello = rt.block_on(coord.wait_hello(1, WAIT));
    assert!(
        !hello.features.iter().any(|f| f == "observe"),
        "{:?}",
        hello.features
    );
    send(&k, "[[fake:text]] also private");
    let beats = coord.with_state(|s| s.heartbeats);
    rt.block_on(coord.wait_until("two more heartbeats", WAIT, |s| {
        (s.heartbeats >= beats + 2).then_some(())
    }));
    assert!(coord.with_state(|s| s.jobs.is_empty()));
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
}
