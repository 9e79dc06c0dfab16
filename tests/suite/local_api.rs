//! The optional local HTTP API: off by default; when on, it listens on 127.0.0.1 only, answers
//! health without a token, runs prompts for registered projects with the token, streams a job's
//! events over a websocket, and refuses everything else.

use std::time::Duration;

use futures_util::StreamExt;
use nix::sys::signal::Signal;

use crate::support::fake_llm::FakeLlm;
use crate::support::kimaki_bin::Kimaki;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn token(k: &Kimaki) -> String {
    let text = std::fs::read_to_string(k.config_env()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("KIMAKI_API_TOKEN="))
        .expect("init generates an API token")
        .to_owned()
}

#[test]
fn disabled_by_default_nothing_listens() {
    let port = free_port();
    let k = Kimaki::new().with_env("AGENT_API_PORT", &port.to_string());
    let mut d = k.start(&[]);
    d.wait_ready();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing may listen"
    );
    let status = k.run(&["status", "--json"]).json();
    assert!(!status["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "api"));
    d.signal(Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(20));
}

#[test]
fn health_run_and_event_stream() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(FakeLlm::start());
    let port = free_port();
    let (k, project) = Kimaki::new()
        .with_env("KIMAKI_API_ENABLED", "true")
        .with_env("AGENT_API_PORT", &port.to_string())
        .with_fake_codex(&llm);
    assert_eq!(k.run(&["init", "--non-interactive"]).code(), 0);
    let token = token(&k);
    let mut d = k.start(&[]);
    d.wait_ready();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    rt.block_on(async {
        // Health: no token needed, nothing secret in it.
        let resp = client
            .get(format!("{base}/api/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.text().await.unwrap();
        assert!(!body.contains(&token));
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["status"], "ok");

        let run = |auth: Option<String>, body: serde_json::Value| {
            let mut req = client.post(format!("{base}/api/agent/run")).json(&body);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.send()
        };
        let body =
            serde_json::json!({"workspace": project, "prompt": "[[fake:text]] hello over http"});
        assert_eq!(run(None, body.clone()).await.unwrap().status(), 401);
        assert_eq!(
            run(Some("Bearer wrong".into()), body.clone())
                .await
                .unwrap()
                .status(),
            401
        );
        let escape = serde_json::json!({"workspace": "/etc", "prompt": "cat passwd"});
        let resp = run(Some(format!("Bearer {token}")), escape).await.unwrap();
        assert_eq!(
            resp.status(),
            400,
            "a path outside the registered projects is refused"
        );
        let dots =
            serde_json::json!({"workspace": format!("{}/../..", project.display()), "prompt": "x"});
        assert_eq!(
            run(Some(format!("Bearer {token}")), dots)
                .await
                .unwrap()
                .status(),
            400
        );

        let resp = run(Some(format!("Bearer {token}")), body).await.unwrap();
        assert_eq!(resp.status(), 202);
        let accepted: serde_json::Value = resp.json().await.unwrap();
        let job = accepted["jobId"].as_str().unwrap().to_owned();

        // The events arrive over the websocket, in order, ending with `finished`.
        let url = format!("ws://127.0.0.1:{port}/api/agent/ws?jobId={job}&token={token}");
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let mut kinds = Vec::new();
        let mut seqs = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(msg) = ws.next().await {
                let msg = msg.unwrap();
                if !msg.is_text() {
                    continue;
                }
                let ev: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
                seqs.push(ev["seq"].as_u64().unwrap());
                kinds.push(ev["type"].as_str().unwrap().to_owned());
                if ev["type"] == "finished" {
                    assert_eq!(ev["outcome"], "succeeded", "{ev}");
                    break;
                }
            }
        })
        .await
        .expect("the job finishes");
        assert_eq!(kinds.first().map(String::as_str), Some("queued"));
        assert!(kinds.contains(&"started".to_owned()), "{kinds:?}");
        assert!(
            kinds.iter().any(|k| k == "text_part" || k == "text_delta"),
            "{kinds:?}"
        );
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "in order, none missing"
        );

        // Without a token the stream is refused too.
        let bad = format!("ws://127.0.0.1:{port}/api/agent/ws?jobId={job}");
        assert!(tokio_tungstenite::connect_async(&bad).await.is_err());
    });
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
