//! An agent registers over its outbound link: the CONNECT auth and `hello` carry its identity,
//! runners (wire ids, versions, availability) and workspaces by id and name only — the absolute
//! path never leaves the machine — and a workspace added later is re-advertised with a higher
//! `rev`. A restart keeps the gateway id, takes a new instance id and a higher `connEpoch`.

use std::sync::Arc;
use std::time::Duration;

use mesh_protocol::{ConnectionMode, RunnerKind};

use crate::support::coordinator::agent::{
    fast_coordinator, test_config, Agent, ChattyRunner, TOKEN,
};
use crate::support::coordinator::MeshCoordinator;
use crate::support::echo_runner::EchoRunner;

const WAIT: Duration = Duration::from_secs(15);

fn runners() -> Vec<(Arc<dyn kimaki::core::Runner>, usize)> {
    vec![(EchoRunner::new(), 2), (ChattyRunner::new(), 2)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_carries_identity_and_inventory_without_paths() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let agent = Agent::start(test_config(vec![coord.url()]), runners()).await;
    let hello = coord.wait_hello(1, WAIT).await;
    agent.wait_connected(WAIT).await;

    let a = &hello.agent;
    assert!(a.gateway_id.as_str().starts_with("gw_"), "{a:?}");
    assert_eq!(a.instance_id.as_str(), agent.status().instance_id);
    assert_eq!(a.name, "test-agent");
    assert_eq!(a.account_email, "ops@example.com");
    assert_eq!(a.endpoint_id, "ep_test");
    assert!(!a.hostname.is_empty());
    assert_eq!(a.os, std::env::consts::OS);
    assert_eq!(a.arch, std::env::consts::ARCH);
    assert_eq!(a.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(a.connection_mode, ConnectionMode::Outbound);
    for f in mesh_protocol::features::ALL {
        assert!(hello.features.iter().any(|x| x == f), "feature {f} missing");
    }
    assert_eq!(hello.capacity.max_concurrent_jobs, 4);
    assert!(hello.resume.jobs.is_empty());

    let mut runner_ids: Vec<String> = hello.runners.iter().map(|r| r.id.to_string()).collect();
    runner_ids.sort();
    assert_eq!(runner_ids, vec!["x-chatty", "x-echo"]);
    assert!(hello
        .runners
        .iter()
        .all(|r| r.available && !r.version.is_empty()));

    assert_eq!(hello.workspaces.len(), 1);
    let ws = &hello.workspaces[0];
    assert_eq!(ws.id.as_str(), agent.workspace_id);
    assert!(ws.id.as_str().starts_with("ws_"));
    assert_eq!(ws.name, "api-server");
    assert!(ws.runners.contains(&RunnerKind::Other("x-echo".into())));

    // The CONNECT auth: token, identity, a committed epoch, outbound.
    let connect = coord.with_state(|s| s.connects[0].clone());
    assert_eq!(connect.token, TOKEN);
    assert_eq!(connect.gateway_id, a.gateway_id.as_str());
    assert_eq!(connect.instance_id, a.instance_id.as_str());
    assert!(connect.conn_epoch >= 1);
    assert!(connect.rejected.is_none());

    // Nothing the agent sent names a local path.
    let root = agent.dir.path().to_string_lossy().into_owned();
    let leaked = coord.with_state(|s| {
        s.log
            .iter()
            .filter(|(_, body)| body.to_string().contains(&root))
            .map(|(e, _)| e.clone())
            .collect::<Vec<_>>()
    });
    assert!(leaked.is_empty(), "events naming {root}: {leaked:?}");

    // A new workspace is advertised with a higher rev, still without its path.
    let web = agent.dir.path().join("web");
    std::fs::create_dir_all(&web).unwrap();
    let added = agent.workspaces.add(&web, None).await.unwrap();
    let update = coord
        .wait_until("inventory.update with the new workspace", WAIT, |s| {
            s.inventory
                .iter()
                .find(|u| {
                    u.workspaces
                        .as_ref()
                        .is_some_and(|w| w.iter().any(|w| w.id.as_str() == added.id))
                })
                .cloned()
        })
        .await;
    assert!(update.rev >= 1);
    let names: Vec<&str> = update
        .workspaces
        .as_ref()
        .unwrap()
        .iter()
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(names, vec!["api-server", "web"]);
    assert!(!serde_json::to_string(&update).unwrap().contains(&root));
    assert!(coord.violations().is_empty(), "{:?}", coord.violations());

    // A restart: same gateway, new instance, higher epoch.
    let first_epoch = coord.with_state(|s| s.connects.last().unwrap().conn_epoch);
    let dir = agent.stop().await;
    let agent = Agent::start_in(dir, test_config(vec![coord.url()]), runners()).await;
    let again = coord.wait_hello(2, WAIT).await;
    assert_eq!(again.agent.gateway_id, a.gateway_id);
    assert_ne!(again.agent.instance_id, a.instance_id);
    let epoch = coord.with_state(|s| s.connects.last().unwrap().conn_epoch);
    assert!(epoch > first_epoch, "{epoch} <= {first_epoch}");
    coord
        .wait_until("the stopped agent's bye", WAIT, |s| {
            (!s.byes.is_empty()).then_some(())
        })
        .await;
    agent.stop().await;
}
