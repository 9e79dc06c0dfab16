//! `kimaki restart` / SIGUSR2 restart in place (same pid, same flags, config re-read); SIGUSR1
//! writes a state dump; `kimaki stop` stops gracefully.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::kimaki_bin::{mode, Kimaki};

#[test]
fn restart_keeps_the_pid_and_the_flags() {
    let k = Kimaki::new();
    std::fs::create_dir_all(k.path("")).unwrap();
    // A flag that must survive the restart: debug logging.
    let mut d = k.start(&["--set", "KIMAKI_LOG_LEVEL=debug"]);
    let first = d.wait_ready();

    let out = k.run(&["restart", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(out.json()["state"], "restarted");
    let stopping = d.wait_event("stopping", Duration::from_secs(20));
    assert!(stopping["reason"].as_str().unwrap().contains("restart"));
    let second = d.wait_ready();
    assert_eq!(
        first["pid"], second["pid"],
        "restart in place keeps the pid"
    );
    let status = k.run(&["status", "--json"]).json();
    assert_eq!(status["pid"], first["pid"]);
    assert!(
        k.log().contains("DEBUG"),
        "the --set flag was kept:\n{}",
        k.log()
    );

    // SIGUSR2 does the same.
    d.signal(Signal::SIGUSR2);
    let stopping = d.wait_event("stopping", Duration::from_secs(20));
    assert!(stopping["reason"].as_str().unwrap().contains("SIGUSR2"));
    let third = d.wait_ready();
    assert_eq!(third["pid"], first["pid"]);

    let out = k.run(&["stop"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn sigusr1_writes_a_state_dump() {
    let k = Kimaki::new();
    let project = k.home.path().join("proj");
    std::fs::create_dir_all(&project).unwrap();
    let out = k.run(&["project", "add", project.to_str().unwrap()]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let mut d = k.start(&[]);
    d.wait_ready();
    let dumps = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&k.data_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("state-")
            })
            .collect()
    };
    assert!(dumps().is_empty());
    d.signal(Signal::SIGUSR1);
    crate::support::poll::until("the state dump", Duration::from_secs(10), || {
        k.log().contains("State dump written").then_some(())
    });
    let files = dumps();
    assert_eq!(files.len(), 1);
    assert_eq!(mode(&files[0]), 0o600);
    let dump: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    for key in [
        "status",
        "lanes",
        "active",
        "pending_interactions",
        "workspaces",
    ] {
        assert!(dump.get(key).is_some(), "dump lacks {key}: {dump}");
    }
    assert_eq!(dump["workspaces"][0]["name"], "proj");
    assert!(dump["status"]["rss_bytes"].as_u64().unwrap() > 0);
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn a_restart_keeps_the_job_queued_behind_a_running_one() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(crate::support::fake_llm::FakeLlm::start());
    let (k, project) = Kimaki::new().with_fake_codex(&llm);
    let p = project.to_str().unwrap().to_owned();
    let mut d = k.start(&[]);
    let first_ready = d.wait_ready();

    // A slow turn runs; a second prompt in the same session waits behind it.
    let out = k.run(&[
        "send",
        "--project",
        &p,
        "--prompt",
        "[[fake:slow:200]] first",
        "--json",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let session = out.json()["lane"].as_str().unwrap().to_owned();
    let out = k.run(&[
        "send",
        "--session",
        &session,
        "--prompt",
        "[[fake:text]] queued behind",
        "--json",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let queued = out.json();
    assert!(queued["position"].as_u64().unwrap() >= 1, "{queued}");

    let status = k.run(&["status", "--json"]).json();
    assert_eq!(
        status["queue"]["queued"], 1,
        "still waiting at the restart: {status}"
    );
    let out = k.run(&["restart", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    d.wait_event("stopping", Duration::from_secs(20));
    let second_ready = d.wait_ready();
    assert_eq!(first_ready["pid"], second_ready["pid"]);

    // The queued prompt reaches the model after the restart.
    let saw = |needle: &str| {
        llm.requests()
            .iter()
            .filter(|r| r.body.to_string().contains(needle))
            .count()
    };
    crate::support::poll::until(
        "the queued prompt to run after the restart",
        Duration::from_secs(60),
        || (saw("queued behind") > 0).then_some(()),
    );
    crate::support::poll::until("the session to go idle", Duration::from_secs(60), || {
        let s = k.run(&["session", "list", "--json"]).json();
        s.as_array()
            .unwrap()
            .iter()
            .any(|x| x["session"] == session.as_str() && x["state"] == "idle")
            .then_some(())
    });
    let out = k.run(&["stop"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(d.wait_exit(Duration::from_secs(30)).code(), Some(0));
}
