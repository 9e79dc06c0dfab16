//! `kimaki service`: the generated systemd unit and launchd agent (golden files), install into the
//! user's config dir, status, uninstall. Where no systemd user manager runs (containers, CI), only
//! the files are checked and the command says how to enable the service.

use crate::support::kimaki_bin::{Kimaki, BIN};

fn golden(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn printed(platform: &str) -> String {
    let mut k = Kimaki::new();
    // The golden files were written for this data dir; its space tests the quoting. `--print`
    // creates nothing there.
    k.data_dir = "/srv/kimaki data".into();
    let out = k.run(&[
        "--set",
        "KIMAKI_RUNNER=codex",
        "service",
        "install",
        "--print",
        "--platform",
        platform,
        "--",
        "--takeover",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    out.stdout.replace(BIN, "@EXE@")
}

#[test]
fn systemd_unit_matches_the_golden_file() {
    pretty_assertions::assert_eq!(printed("systemd"), golden("kimaki-data.service"));
}

#[test]
fn launchd_agent_matches_the_golden_file() {
    pretty_assertions::assert_eq!(printed("launchd"), golden("dev.kimaki.kimaki-data.plist"));
}

#[test]
fn install_status_uninstall_without_a_user_manager() {
    let xdg = tempfile::tempdir().unwrap();
    let k = Kimaki::new().with_env("XDG_CONFIG_HOME", xdg.path().to_str().unwrap());
    let out = k.run(&["service", "install", "--platform", "systemd"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let unit = xdg.path().join("systemd/user/kimaki-data.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains(&format!("--data-dir {} start", k.data_dir.display())),
        "{text}"
    );
    assert!(
        out.stdout.contains("systemctl --user"),
        "tells how to enable it: {}",
        out.stdout
    );

    let out = k.run(&["service", "status", "--platform", "systemd", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let status = out.json();
    assert_eq!(status["installed"], true);
    assert_eq!(status["name"], "kimaki-data");

    let out = k.run(&["service", "uninstall", "--platform", "systemd"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(!unit.exists());
    assert_eq!(
        k.run(&["service", "status", "--platform", "systemd"])
            .code(),
        3
    );
}

#[test]
fn secrets_are_refused_in_service_files() {
    let k = Kimaki::new();
    let out = k.run(&[
        "--set",
        "MESH_TOKEN=gw_at_secretsecretsecret",
        "service",
        "install",
        "--print",
    ]);
    assert_eq!(out.code(), 64, "{}", out.all());
    assert!(out.stderr.contains("MESH_TOKEN is a secret"));
    assert!(!out.all().contains("gw_at_secretsecretsecret"));
}

#[test]
fn restart_onboarding_is_refused_in_service_files() {
    let k = Kimaki::new();
    let out = k.run(&[
        "service",
        "install",
        "--print",
        "--platform",
        "systemd",
        "--",
        "--gateway",
        "--restart-onboarding",
    ]);
    assert_eq!(out.code(), 64, "usage error: {}", out.all());
    assert!(
        out.stderr
            .contains("fresh onboarding at every service start"),
        "{}",
        out.all()
    );
    assert!(out.stdout.is_empty(), "nothing printed: {}", out.stdout);
}
