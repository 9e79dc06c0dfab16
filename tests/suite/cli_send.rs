//! `kimaki send`: enqueue with or without a running daemon; `--wait` streams the answer and
//! exits non-zero on failure, waiting for kimaki to start if needed; sessions continue; `session
//! list` shows them.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::fake_llm::FakeLlm;
use crate::support::kimaki_bin::Kimaki;

#[test]
fn send_wait_streams_the_answer_and_reports_failures() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(FakeLlm::start());
    let (k, project) = Kimaki::new().with_fake_codex(&llm);
    let p = project.to_str().unwrap().to_owned();

    // Not running: the job is stored, and --wait waits until kimaki starts and runs it.
    let waiter = {
        let mut cmd = k.command(&[
            "send",
            "--project",
            &p,
            "--prompt",
            "[[fake:text]] first",
            "--wait",
        ]);
        cmd.current_dir("/");
        std::thread::spawn(move || {
            let out = cmd.output().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    crate::support::poll::until(
        "the waiting send to store its job",
        Duration::from_secs(20),
        || k.path("store").exists().then_some(()),
    );
    let mut d = k.start(&[]);
    d.wait_ready();
    let (code, stdout, stderr) = waiter.join().unwrap();
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains(crate::support::fake_llm::TEXT_REPLY),
        "{stdout}"
    );
    let session = stderr
        .split_whitespace()
        .skip_while(|w| *w != "session")
        .nth(1)
        .expect("the session is printed")
        .to_owned();

    // Continue the same session while running; the runner session carries over.
    let out = k.run(&[
        "send",
        "--session",
        &session,
        "--prompt",
        "[[fake:text]] second",
        "--wait",
        "--json",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.last().unwrap()["type"], "finished");
    assert_eq!(events.last().unwrap()["outcome"], "succeeded");

    // A failing job exits 1 with the reason.
    let out = k.run(&[
        "send",
        "--project",
        &p,
        "--prompt",
        "[[fake:error:400]] broken",
        "--wait",
    ]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.stderr.contains("ended Failed"), "{}", out.stderr);

    let sessions = k.run(&["session", "list", "--json"]).json();
    let all = sessions.as_array().unwrap();
    assert_eq!(all.len(), 2, "{sessions}");
    let ours = all
        .iter()
        .find(|s| s["session"] == session.as_str())
        .unwrap();
    assert_eq!(ours["runner"], "codex");
    assert_eq!(ours["state"], "idle");
    assert!(ours["runner_session"].as_str().is_some());
    let filtered = k
        .run(&["session", "list", "--project", &p, "--json"])
        .json();
    assert_eq!(filtered.as_array().unwrap().len(), 2);

    // Unknown project and session are clear errors.
    let out = k.run(&["send", "--project", "/nonexistent", "--prompt", "x"]);
    assert_eq!(out.code(), 64, "{}", out.all());
    assert!(out.stderr.contains("not a registered project"));
    let out = k.run(&["send", "--session", "cli:nope", "--prompt", "x"]);
    assert_eq!(out.code(), 64);

    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
