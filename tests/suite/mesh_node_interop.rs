//! Interop with Node `socket.io` 4.8.4 (`tests/npm/mesh-coordinator.mjs`, built from the golden
//! fixtures): the agent registers, runs a dispatched job and streams its events back in order,
//! honours a cancel, and reads Node's `connect_error` (`{message, data: Error}`) as a refused
//! token. Needs `node` on PATH and `npm ci --prefix tests/npm`; fails (never skips) without them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kimaki::adapters::mesh::LinkState;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::support::coordinator::agent::{test_config, Agent, ChattyRunner, TOKEN};
use crate::support::echo_runner::EchoRunner;

const WAIT: Duration = Duration::from_secs(20);
/// Lines from the peer waiting to be read by the test; the peer prints a few per event.
const LINES_CAPACITY: usize = 4096;

struct NodePeer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    port: u16,
}

impl NodePeer {
    async fn start(extra: &[&str]) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let npm = root.join("tests/npm");
        assert!(
            npm.join("node_modules/socket.io/package.json").is_file(),
            "socket.io is not installed for the interop peer: run `npm ci --prefix tests/npm`"
        );
        let fixtures = root.join("mesh-protocol/tests/fixtures");
        let mut child = Command::new("node")
            .current_dir(&npm)
            .arg("mesh-coordinator.mjs")
            .arg("--fixtures")
            .arg(&fixtures)
            .args(["--token", TOKEN])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `node` for the socket.io interop peer ({e}); install Node.js 20 and put `node` on PATH")
            });
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel(LINES_CAPACITY);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut peer = Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            port: 0,
        };
        let listening = peer.wait(|v| v["type"] == "listening").await;
        peer.port = listening["port"].as_u64().unwrap() as u16;
        peer
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Ok(None) => panic!("the node peer exited; lines so far: {:?}", self.seen),
                Err(_) => panic!("node peer: timed out; lines so far: {:?}", self.seen),
            }
        }
    }

    async fn send(&mut self, cmd: Value) {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn stop(mut self) {
        self.send(json!({"cmd": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_and_cancels_jobs_for_a_node_coordinator() {
    let mut peer = NodePeer::start(&[]).await;
    let agent = Agent::start(
        test_config(vec![peer.url()]),
        vec![(EchoRunner::new(), 1), (ChattyRunner::new(), 1)],
    )
    .await;
    let hello = peer.wait(|v| v["type"] == "hello").await;
    let gateway = hello["hello"]["agent"]["gatewayId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(hello["hello"]["agent"]["connectionMode"], "outbound");
    agent.wait_connected(WAIT).await;

    peer.send(json!({"cmd": "dispatch", "gatewayId": gateway,
        "spec": {"runner": "x-echo", "workspaceId": agent.workspace_id, "prompt": "hello node"}}))
        .await;
    let job = peer.wait(|v| v["type"] == "dispatched").await["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let ack = peer
        .wait(|v| v["type"] == "ack" && v["ack"]["jobId"] == job.as_str())
        .await;
    assert_eq!(ack["ack"]["decision"], "accepted");
    let finished = peer
        .wait(|v| v["type"] == "finished" && v["jobId"] == job.as_str())
        .await;
    let events = finished["events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[0]["type"], "started");
    assert_eq!(events.last().unwrap()["data"]["outcome"], "succeeded");
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "output")
        .map(|e| e["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "echo: hello node");

    peer.send(json!({"cmd": "dispatch", "gatewayId": gateway,
        "spec": {"runner": "x-chatty", "workspaceId": agent.workspace_id, "prompt": "chatty:1000:10"}}))
        .await;
    let long = peer
        .wait(|v| v["type"] == "dispatched" && v["jobId"] != job.as_str())
        .await["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    peer.wait(|v| {
        v["type"] == "event" && v["jobId"] == long.as_str() && v["eventType"] == "output"
    })
    .await;
    peer.send(json!({"cmd": "cancel", "jobId": long, "reason": "user"}))
        .await;
    let result = peer.wait(|v| v["type"] == "cancel.result").await;
    assert_eq!(result["result"]["status"], "cancelling");
    let finished = peer
        .wait(|v| v["type"] == "finished" && v["jobId"] == long.as_str())
        .await;
    let last = finished["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["data"]["outcome"], "cancelled");
    assert_eq!(last["data"]["reason"], "user");

    agent.stop().await;
    peer.wait(|v| v["type"] == "bye").await;
    peer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_connect_error_is_a_refused_token() {
    let mut peer = NodePeer::start(&["--reject", "AUTH_INVALID"]).await;
    let agent = Agent::start(test_config(vec![peer.url()]), vec![(EchoRunner::new(), 1)]).await;
    peer.wait(|v| v["type"] == "rejected").await;
    let status = agent
        .wait_status("auth_failed", WAIT, |s| s.state == LinkState::AuthFailed)
        .await;
    assert!(status.last_error.unwrap().contains("AUTH_INVALID"));
    agent.stop().await;
    peer.stop().await;
}
