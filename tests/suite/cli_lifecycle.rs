//! `kimaki start`: one instance per data dir (a second is refused, `--takeover` replaces it),
//! SSE lifecycle lines on a non-terminal stdout, `status` over the control socket, graceful exit
//! on SIGTERM, a corrupt store refused with a clear error.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::kimaki_bin::{mode, Kimaki};

#[test]
fn start_reports_ready_and_status_answers_then_sigterm_exits_0() {
    let k = Kimaki::new();
    let mut d = k.start(&[]);
    let ready = d.wait_ready();
    assert_eq!(ready["pid"], d.pid());
    assert_eq!(ready["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(mode(&k.path("kimaki.sock")), 0o600);
    assert_eq!(mode(&k.data_dir), 0o700);

    let out = k.run(&["status", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let status = out.json();
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"], d.pid());
    assert_eq!(status["queue"]["queued"], 0);
    assert!(status["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "control"));

    let t0 = Instant::now();
    d.signal(Signal::SIGTERM);
    let stopping = d.wait_event("stopping", Duration::from_secs(10));
    assert!(stopping["reason"].as_str().unwrap().contains("SIGTERM"));
    let status = d.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", d.output());
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "within the grace period"
    );
    // stdout carried only SSE lines.
    for line in &d.stdout {
        assert!(
            line.is_empty() || line.starts_with("data: "),
            "non-SSE stdout line: {line:?}"
        );
    }
    assert!(!k.path("kimaki.sock").exists(), "socket removed on exit");
    let log = k.log();
    assert!(log.contains("kimaki is ready"), "{log}");
    assert!(log.contains("Stopped."), "{log}");

    let out = k.run(&["status"]);
    assert_eq!(out.code(), 3, "not running → exit 3: {}", out.all());
    assert!(out.stdout.contains("not running"));
}

#[test]
fn a_second_start_is_refused_and_takeover_replaces_the_first() {
    let k = Kimaki::new().with_env("KIMAKI_SHUTDOWN_GRACE_SECS", "5");
    let mut first = k.start(&[]);
    first.wait_ready();
    let log_before = k.log();

    let out = k.run(&["start"]);
    assert_eq!(out.code(), 69, "{}", out.all());
    assert!(out.stderr.contains("already running"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("pid {}", first.pid())),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--takeover"), "{}", out.stderr);
    assert!(
        k.log().starts_with(&log_before) && log_before.contains("kimaki is ready"),
        "a refused start must not reset the running instance's log"
    );

    let mut second = k.start(&["--takeover"]);
    let stopping = first.wait_event("stopping", Duration::from_secs(15));
    assert!(
        stopping["reason"].as_str().unwrap().contains("taken over"),
        "{stopping}"
    );
    assert_eq!(
        first.wait_exit(Duration::from_secs(20)).code(),
        Some(0),
        "{}",
        first.output()
    );
    let ready = second.wait_ready();
    assert_eq!(ready["pid"], second.pid());
    let out = k.run(&["status", "--json"]);
    assert_eq!(out.json()["pid"], second.pid());
    second.signal(Signal::SIGTERM);
    assert_eq!(second.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn two_data_dirs_run_side_by_side() {
    let a = Kimaki::new();
    let b = Kimaki::new();
    let mut da = a.start(&[]);
    let mut db = b.start(&[]);
    da.wait_ready();
    db.wait_ready();
    assert_eq!(a.run(&["status", "--json"]).json()["pid"], da.pid());
    assert_eq!(b.run(&["status", "--json"]).json()["pid"], db.pid());
}

#[test]
fn a_corrupt_store_is_a_clear_error_not_a_crash() {
    let k = Kimaki::new();
    let store = k.path("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("conf"), b"\x00\x01 this is not a sled config").unwrap();
    std::fs::write(store.join("db"), vec![0xA5; 8192]).unwrap();

    let mut d = k.start(&[]);
    let err = d.wait_event("error", Duration::from_secs(20));
    let status = d.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(65), "{}", d.output());
    let message = err["message"].as_str().unwrap();
    assert!(message.contains(&store.display().to_string()), "{message}");
    assert!(message.contains("Move it aside"), "{message}");
    assert!(!d.output().contains("panicked"), "{}", d.output());

    let out = k.run(&["doctor", "--json", "--offline"]);
    assert_eq!(out.code(), 1);
    let report = out.json();
    assert!(report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == "store" && c["status"] == "fail"));
}

#[test]
fn invalid_config_stops_start_with_exit_78() {
    let k = Kimaki::new().with_env("KIMAKI_MAX_CONCURRENT_JOBS", "lots");
    let out = k.run(&["start"]);
    assert_eq!(out.code(), 78, "{}", out.all());
    assert!(
        out.stderr.contains("KIMAKI_MAX_CONCURRENT_JOBS"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.starts_with("data: {\"type\":\"error\""),
        "{}",
        out.stdout
    );
}
