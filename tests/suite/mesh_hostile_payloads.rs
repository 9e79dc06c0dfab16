//! Hostile input on the decode path: random, mutated, truncated and oversized payloads under every
//! mesh event name (and made-up names) never panic and always fail with a message naming the
//! event; on a live link the agent logs and counts them, stays connected, and still works.

use std::time::Duration;

use kimaki::adapters::mesh::{decode_inbound, LinkState};
use mesh_protocol::{events, MeshMessage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::support::coordinator::agent::{fast_coordinator, spec, test_config, Agent};
use crate::support::coordinator::MeshCoordinator;
use crate::support::echo_runner::EchoRunner;

const WAIT: Duration = Duration::from_secs(20);
const CASES_PER_SEED: usize = 400;

fn fixture(name: &str) -> Option<Value> {
    let path = format!(
        "{}/mesh-protocol/tests/fixtures/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..8) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>()),
        4 => Value::String(
            (0..rng.random_range(0..40))
                .map(|_| rng.random::<char>())
                .collect(),
        ),
        5 if depth < 3 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ if depth < 3 => {
            let keys = [
                "msgId", "jobId", "leaseId", "seq", "spec", "re", "window", "ackedSeq", "error",
                "x",
            ];
            let mut map = Map::new();
            for _ in 0..rng.random_range(0..6) {
                map.insert(
                    keys[rng.random_range(0..keys.len())].to_owned(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(map)
        }
        _ => json!(rng.random::<u32>()),
    }
}

/// A golden payload with random fields replaced or removed.
fn mutate(rng: &mut StdRng, mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            match rng.random_range(0..4) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(key, random_value(rng, 1));
                }
                _ => {}
            }
        }
    }
    value
}

fn hostile(rng: &mut StdRng, event: &str) -> Value {
    let golden = fixture(event);
    match rng.random_range(0..16) {
        0..=3 => random_value(rng, 0),
        4..=8 => golden.map(|g| mutate(rng, g)).unwrap_or(Value::Null),
        // What a transport hands over when a frame was cut: the text, not JSON.
        9..=12 => {
            let text = golden
                .map(|g| g.to_string())
                .unwrap_or_else(|| "{\"msgId\":".into());
            let cut = rng.random_range(0..text.len().max(1));
            Value::String(text.chars().take(cut).collect())
        }
        // Over every limit: a 300 KiB field (rarer: measuring it is the slow part).
        13 => json!({"msgId": "m", "blob": "x".repeat(300 * 1024)}),
        _ => Value::Array(vec![random_value(rng, 1), random_value(rng, 1)]),
    }
}

#[test]
fn decode_never_panics_and_names_the_event() {
    let mut names: Vec<&str> = events::MESH_EVENTS.to_vec();
    names.extend(["x-unknown", "message", ""]);
    let mut failures = 0;
    for seed in 0..5u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..CASES_PER_SEED {
            let event = names[rng.random_range(0..names.len())];
            let body = hostile(&mut rng, event);
            match decode_inbound(event, &body) {
                Ok(MeshMessage::Unknown { name, .. }) => assert_eq!(name, event),
                Ok(message) => assert_eq!(message.event_name(), event),
                Err(e) => {
                    failures += 1;
                    assert_eq!(e.event(), event);
                    let text = e.to_string();
                    assert!(text.contains(&format!("`{event}`")), "{text}");
                }
            }
        }
    }
    assert!(
        failures > CASES_PER_SEED,
        "the generator produced too few bad payloads ({failures})"
    );
    // The size limit is checked before parsing, with the numbers in the message.
    let err = decode_inbound("job.dispatch", &json!({"prompt": "p".repeat(300_000)})).unwrap_err();
    assert!(err.to_string().contains("262144-byte limit"), "{err}");
    let err = decode_inbound("job.cancel", &json!({"msgId": 7})).unwrap_err();
    assert!(
        err.to_string().contains("does not match the protocol"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_link_survives_garbage() {
    let coord = MeshCoordinator::start(fast_coordinator()).await;
    let agent = Agent::start(test_config(vec![coord.url()]), vec![(EchoRunner::new(), 1)]).await;
    let gateway = coord.wait_live_agent(WAIT).await;
    let sessions = agent.wait_connected(WAIT).await.sessions;

    let mut rng = StdRng::seed_from_u64(42);
    let mut outs = Vec::new();
    for i in 0..60 {
        let event = events::MESH_EVENTS[i % events::MESH_EVENTS.len()];
        // `welcome` and `drain` would legitimately end or ignore; everything else is garbage.
        if [
            events::DRAIN,
            events::WELCOME,
            events::MESH_ERROR,
            events::AUTH_ROTATE,
        ]
        .contains(&event)
        {
            continue;
        }
        let body = match hostile(&mut rng, event) {
            b @ Value::Object(_) => b,
            other => json!({"junk": other}),
        };
        outs.push(crate::support::coordinator::state::Outbound {
            gateway: gateway.clone(),
            event: event.into(),
            body,
        });
    }
    coord.shared().emit(outs);
    agent
        .wait_status("decode errors counted", WAIT, |s| s.decode_errors >= 10)
        .await;

    let job = coord.dispatch(&gateway, spec("echo", &agent.workspace_id, "still here"));
    let done = coord.wait_finished(&job, WAIT).await;
    assert_eq!(
        done.output_text(mesh_protocol::OutputStream::Assistant),
        "echo: still here"
    );
    let status = agent.status();
    assert_eq!(status.state, LinkState::Connected);
    assert_eq!(status.sessions, sessions, "garbage must not cost the link");
    agent.stop().await;
}
