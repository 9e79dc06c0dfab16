//! A mesh dispatch with `spec.mirror: ["discord"]` is also shown in Discord: the bot opens a
//! thread in the workspace's project channel and renders the job there (the real binary, the
//! reference coordinator, the Discord twin and the real Codex CLI against the fake LLM), while
//! the coordinator still gets the job's events. A dispatch without it stays out of Discord.

use std::time::Duration;

use nix::sys::signal::Signal;
use serenity::all::MessageId;

use crate::support::coordinator::agent::{fast_coordinator, spec, TOKEN};
use crate::support::coordinator::MeshCoordinator;
use crate::support::discord_twin::{channel_kind, DiscordTwin, TwinConfig};
use crate::support::fake_llm::{FakeLlm, TEXT_REPLY};
use crate::support::kimaki_bin::Kimaki;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_mesh_job_asking_for_a_discord_mirror_is_rendered_in_a_new_thread() {
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
    let gateway = rt.block_on(coord.wait_live_agent(WAIT));
    let hello = rt.block_on(coord.wait_hello(1, WAIT));
    let workspace = hello.workspaces[0].id.to_string();

    // Without a mirror request the job stays out of Discord.
    let quiet = coord.dispatch(
        &gateway,
        spec("codex", &workspace, "[[fake:text]] just for the mesh"),
    );
    rt.block_on(coord.wait_finished(&quiet, WAIT));

    let mut mirrored = spec(
        "codex",
        &workspace,
        "[[fake:text]] show this one in Discord",
    );
    mirrored.mirror = Some(vec!["discord".to_owned()]);
    let job = coord.dispatch(&gateway, mirrored);
    let thread = rt.block_on(twin.wait_thread(|t| t.parent_id == Some(channel), WAIT));
    assert_eq!(thread.name, "[[fake:text]] show this one in Discord");
    let starter = twin.message(MessageId::new(thread.id.get())).unwrap();
    assert_eq!(
        starter.content,
        "» **mesh:** [[fake:text]] show this one in Discord"
    );
    rt.block_on(twin.wait_bot_message(thread.id, |m| m.content.contains(TEXT_REPLY), WAIT));
    rt.block_on(twin.wait_bot_message(thread.id, |m| m.content.starts_with("*project ⋅ "), WAIT));
    // The coordinator still receives the job as usual.
    rt.block_on(coord.wait_finished(&job, WAIT));
    assert_eq!(
        twin.threads()
            .into_iter()
            .filter(|t| t.parent_id == Some(channel))
            .count(),
        1,
        "only the mirrored job got a thread"
    );

    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
    twin.assert_clean();
}
