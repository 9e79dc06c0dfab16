//! `kimaki doctor` reports every problem with a fix and exits 1 when something failed.

use crate::support::kimaki_bin::Kimaki;

#[test]
fn doctor_reports_a_bad_key_and_a_missing_runner_with_exit_1() {
    let k = Kimaki::new();
    let out = k.run(&[
        "init",
        "--non-interactive",
        "--runner",
        "codex",
        "--codex-bin",
        "/nonexistent/codex",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let mut text = std::fs::read_to_string(k.config_env()).unwrap();
    text.push_str("KIMAKI_RUNER=claude\nKIMAKI_MAX_CONCURRENT_JOBS=lots\n");
    std::fs::write(k.config_env(), text).unwrap();

    let out = k.run(&["doctor", "--json", "--offline"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    let report = out.json();
    assert_eq!(report["ok"], false);
    let checks = report["checks"].as_array().unwrap();
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        failed
            .iter()
            .any(|m| m.contains("unknown key KIMAKI_RUNER")),
        "{failed:#?}"
    );
    assert!(
        failed
            .iter()
            .any(|m| m.contains("KIMAKI_MAX_CONCURRENT_JOBS")),
        "{failed:#?}"
    );
    assert!(
        failed.iter().any(|m| m.contains("Codex CLI not found")),
        "{failed:#?}"
    );
    // Every failure comes with a fix, and the typo gets a suggestion.
    for c in checks.iter().filter(|c| c["status"] == "fail") {
        assert!(
            c["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "no fix: {c}"
        );
    }
    assert!(checks.iter().any(|c| c["fix"]
        .as_str()
        .is_some_and(|f| f.contains("did you mean KIMAKI_RUNNER"))));

    // The human form lists the same problems.
    let out = k.run(&["doctor", "--offline"]);
    assert_eq!(out.code(), 1);
    assert!(out.stdout.contains("✗"), "{}", out.stdout);
    assert!(out.stdout.contains("problem(s) found"), "{}", out.stdout);
}

#[test]
fn doctor_passes_on_a_healthy_local_setup() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("opencode");
    std::fs::write(&fake, "#!/bin/sh\necho 1.18.33\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let k = Kimaki::new();
    let out = k.run(&[
        "init",
        "--non-interactive",
        "--opencode-bin",
        fake.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let out = k.run(&["doctor", "--json", "--offline"]);
    let report = out.json();
    let failed: Vec<&serde_json::Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(out.code(), 0);
}
