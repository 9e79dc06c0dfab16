//! The process plumbing against real child processes (`env`, `sh`) and in-memory pipes.

use super::*;

#[test]
fn redacts_known_values_and_token_prefixes() {
    let secrets = vec!["hunter22-secret".to_owned(), "ok".to_owned()];
    let text = "key=hunter22-secret auth: Bearer abcdefgh123 api sk-proj-ABCDEF123 ok";
    let out = redact(text, &secrets);
    assert!(!out.contains("hunter22"), "{out}");
    assert!(!out.contains("abcdefgh123"), "{out}");
    assert!(!out.contains("ABCDEF123"), "{out}");
    // Short values are not secrets worth garbling the text for.
    assert!(out.ends_with(" ok"), "{out}");
    assert_eq!(redact("risk-free text", &[]), "risk-free text");
    assert_eq!(
        redact("a task-sk-abcdefghijk b", &[]),
        "a task-sk-abcdefghijk b"
    );
}

#[test]
fn truncates_on_char_boundaries() {
    assert_eq!(truncate("héllo", 2), "h");
    assert_eq!(truncate("abc", 10), "abc");
}

#[tokio::test]
async fn reads_json_lines_and_drops_overlong_ones() {
    let input: &[u8] = b"{\"a\":1}\nnot json\n\n{\"big\":\"xxxxxxxxxxxxxxxxxxxx\"}\n{\"b\":2}";
    let (tx, mut rx) = mpsc::channel(8);
    read_json_lines(input, tx, 16).await;
    let mut got = Vec::new();
    while let Some(l) = rx.recv().await {
        got.push(l);
    }
    assert_eq!(
        got,
        vec![
            Line::Json(serde_json::json!({"a": 1})),
            Line::Text("not json".into()),
            Line::TooLong(30),
            Line::Json(serde_json::json!({"b": 2})),
        ]
    );
}

#[test]
fn kimaki_settings_are_stripped_from_an_inherited_environment() {
    let env = crate::config::Env::from_pairs([
        ("PATH", "/bin"),
        ("KIMAKI_BOT_TOKEN", "t"),
        ("MESH_TOKEN", "m"),
        ("HOME", "/root"),
        ("MESHY", "y"),
        ("OPENAI_API_KEY", "k"),
    ]);
    assert_eq!(env.owned_names(), vec!["KIMAKI_BOT_TOKEN", "MESH_TOKEN"]);
    let secrets = Secrets(vec!["sk-abcdefghijkl".into()]);
    assert_eq!(format!("{secrets:?}"), "Secrets(1 redacted)");
}

#[tokio::test]
async fn an_empty_environment_gets_only_the_given_variables() {
    let spec = ProcessSpec {
        program: PathBuf::from("/usr/bin/env"),
        args: Vec::new(),
        cwd: std::env::temp_dir(),
        env: ChildEnv {
            inherit: false,
            remove: Vec::new(),
            vars: vec![("ONLY".into(), "this".into())],
        },
        stderr_log: None,
    };
    let mut p = JsonlProcess::spawn(&spec).unwrap();
    let line = tokio::time::timeout(Duration::from_secs(10), p.next_line()).await;
    assert_eq!(line.unwrap(), Some(Line::Text("ONLY=this".into())));
    let eof = tokio::time::timeout(Duration::from_secs(10), p.next_line()).await;
    assert_eq!(eof.unwrap(), None);
    assert!(p
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap()
        .success());
}

#[tokio::test]
async fn stop_reaches_the_whole_process_group() {
    // A background grandchild keeps stdout open: EOF proves the whole group is gone.
    let spec = ProcessSpec {
        program: PathBuf::from("/bin/sh"),
        args: vec![
            "-c".into(),
            "echo oops >&2; sleep 30 & echo '{\"ready\":true}'; wait".into(),
        ],
        cwd: std::env::temp_dir(),
        env: ChildEnv {
            inherit: false,
            remove: Vec::new(),
            vars: vec![("PATH".into(), "/usr/bin:/bin".into())],
        },
        stderr_log: None,
    };
    let mut p = JsonlProcess::spawn(&spec).unwrap();
    let ready = tokio::time::timeout(Duration::from_secs(10), p.next_line()).await;
    assert_eq!(
        ready.unwrap(),
        Some(Line::Json(serde_json::json!({"ready": true})))
    );
    let status = p
        .stop(Duration::from_millis(100), Duration::from_millis(100))
        .await;
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    let eof = tokio::time::timeout(Duration::from_secs(10), p.next_line()).await;
    assert_eq!(eof.unwrap(), None, "the grandchild must be gone too");
    assert_eq!(p.stderr_tail(&[]), "oops");
}

#[test]
fn child_env_hides_values_in_debug() {
    let env = ChildEnv {
        inherit: false,
        remove: Vec::new(),
        vars: vec![("API_KEY".into(), "sk-very-secret".into())],
    };
    let shown = format!("{env:?}");
    assert!(
        shown.contains("API_KEY") && !shown.contains("very-secret"),
        "{shown}"
    );
    assert_eq!(env.explicit("API_KEY"), Some("sk-very-secret"));
    assert_eq!(env.secret_values(), vec!["sk-very-secret".to_owned()]);
}
