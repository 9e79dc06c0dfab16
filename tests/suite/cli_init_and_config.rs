//! `kimaki init` writes a private config.env and keeps values on re-run; settings resolve
//! flags > env > config.env > defaults, and `doctor` shows where each value came from.

use crate::support::kimaki_bin::{mode, Kimaki};

const TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GAbCdE.abcdefghijklmnopqrstuvwxyz0123456789AB";

#[test]
fn init_writes_a_private_config_and_a_rerun_keeps_values() {
    let k = Kimaki::new();
    let out = k.run(&[
        "init",
        "--non-interactive",
        "--runner",
        "codex",
        "--discord-token",
        TOKEN,
        "--guild-id",
        "123456789012345678",
        "--model",
        "fake/fake-model",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(mode(&k.config_env()), 0o600);
    assert_eq!(mode(&k.data_dir), 0o700);
    let text = std::fs::read_to_string(k.config_env()).unwrap();
    assert!(text.contains("KIMAKI_RUNNER=codex"), "{text}");
    assert!(
        text.contains("KIMAKI_APP_ID=1234567890123456789"),
        "app id derived from the token: {text}"
    );
    assert!(text.contains("MESH_GATEWAY_ID=gw_"), "{text}");
    let gateway_line = text
        .lines()
        .find(|l| l.starts_with("MESH_GATEWAY_ID="))
        .unwrap()
        .to_owned();

    // A re-run that changes one value keeps the others, including the generated gateway id.
    let out = k.run(&["init", "--non-interactive", "--model", "other/model"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let text = std::fs::read_to_string(k.config_env()).unwrap();
    assert!(text.contains("KIMAKI_RUNNER=codex"), "{text}");
    assert!(text.contains("KIMAKI_MODEL=other/model"), "{text}");
    assert!(
        text.contains("KIMAKI_GUILD_ID=123456789012345678"),
        "{text}"
    );
    assert!(
        text.contains(&gateway_line),
        "gateway id must not change: {text}"
    );
    assert_eq!(mode(&k.config_env()), 0o600);

    // --unset removes a value.
    let out = k.run(&["init", "--non-interactive", "--unset", "KIMAKI_MODEL"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(!std::fs::read_to_string(k.config_env())
        .unwrap()
        .contains("KIMAKI_MODEL"));
}

#[test]
fn init_rejects_invalid_values_and_writes_nothing() {
    let k = Kimaki::new();
    let out = k.run(&[
        "init",
        "--non-interactive",
        "--runner",
        "codx",
        "--discord-token",
        "not-a-token-secret-value",
    ]);
    assert_eq!(out.code(), 64, "{}", out.all());
    assert!(out.stderr.contains("KIMAKI_RUNNER"), "{}", out.stderr);
    assert!(out.stderr.contains("KIMAKI_BOT_TOKEN"), "{}", out.stderr);
    assert!(
        !out.all().contains("not-a-token-secret-value"),
        "the rejected secret is not echoed"
    );
    assert!(!k.config_env().exists());
    let out = k.run(&["init", "--non-interactive", "--set", "KIMAKI_RUNER=codex"]);
    assert_eq!(out.code(), 64);
    assert!(
        out.stderr.contains("did you mean KIMAKI_RUNNER"),
        "{}",
        out.stderr
    );
}

#[test]
fn precedence_is_flags_then_env_then_file_then_defaults() {
    let k = Kimaki::new()
        .with_env("KIMAKI_MODEL", "from-env")
        .with_env("KIMAKI_AGENT", "env-agent");
    let out = k.run(&[
        "init",
        "--non-interactive",
        "--model",
        "from-file",
        "--agent",
        "file-agent",
        "--runner",
        "claude",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let out = k.run(&[
        "--set",
        "KIMAKI_MODEL=from-flag",
        "doctor",
        "--json",
        "--offline",
    ]);
    let report = out.json();
    let row = |key: &str| {
        report["config"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {key}"))
    };
    assert_eq!(row("KIMAKI_MODEL")["value"], "from-flag");
    assert_eq!(row("KIMAKI_MODEL")["source"], "flag");
    assert_eq!(row("KIMAKI_AGENT")["value"], "env-agent");
    assert_eq!(row("KIMAKI_AGENT")["source"], "env");
    assert_eq!(row("KIMAKI_RUNNER")["value"], "claude");
    assert_eq!(row("KIMAKI_RUNNER")["source"], "file");
    assert_eq!(row("KIMAKI_SHUTDOWN_GRACE_SECS")["value"], "30");
    assert_eq!(row("KIMAKI_SHUTDOWN_GRACE_SECS")["source"], "default");
}

#[test]
fn help_reads_like_a_mature_cli() {
    let k = Kimaki::new();
    let out = k.run(&["--help"]);
    assert_eq!(out.code(), 0);
    for needle in [
        "init",
        "start",
        "doctor",
        "status",
        "completions",
        "Examples:",
        "--data-dir",
    ] {
        assert!(
            out.stdout.contains(needle),
            "--help lacks {needle}:\n{}",
            out.stdout
        );
    }
    let out = k.run(&["completions", "bash"]);
    assert_eq!(out.code(), 0);
    assert!(out.stdout.contains("_kimaki"), "bash completion script");
    let out = k.run(&["version", "--json"]);
    assert_eq!(out.json()["version"], env!("CARGO_PKG_VERSION"));
}
