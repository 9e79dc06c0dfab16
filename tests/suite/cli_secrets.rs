//! A planted secret never appears in the log, in any command's output, or in `--json`.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::kimaki_bin::Kimaki;

const BOT_TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GPlant.plantedDiscordSecretValue0123456789xyz";
const MESH_TOKEN: &str = "gw_at_plantedMeshSecret_0123456789abcdef";
const GEMINI_KEY: &str = "AIzaPlantedGeminiKey0123456789abcdefghij";

#[test]
fn planted_secrets_never_leak() {
    let k = Kimaki::new()
        .with_env("KIMAKI_LOG_LEVEL", "trace")
        // Unreachable endpoints: the failure paths run, and their messages must not leak.
        .with_env("KIMAKI_DISCORD_API_URL", "http://127.0.0.1:9")
        .with_env(
            "OPENAI_API_KEY",
            "sk-plantedOpenAIKeyFromTheEnvironment0123",
        );
    let mut outputs = Vec::new();
    let out = k.run(&[
        "init",
        "--non-interactive",
        "--discord-token",
        BOT_TOKEN,
        "--mesh-url",
        "http://127.0.0.1:9",
        "--mesh-token",
        MESH_TOKEN,
        "--gemini-api-key",
        GEMINI_KEY,
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    outputs.push(out.all());
    // Re-running init shows the current (redacted) values.
    outputs.push(k.run(&["init", "--non-interactive"]).all());
    outputs.push(k.run(&["doctor"]).all());
    outputs.push(k.run(&["doctor", "--json", "--config"]).all());
    outputs.push(k.run(&["-vv", "doctor", "--config"]).all());

    let mut d = k.start(&["-vv"]);
    d.wait_ready();
    outputs.push(k.run(&["status"]).all());
    outputs.push(k.run(&["status", "--json"]).all());
    d.signal(Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(30));
    outputs.push(d.output());
    outputs.push(k.log());

    let everything = outputs.join("\n=====\n");
    for secret in [
        BOT_TOKEN,
        MESH_TOKEN,
        GEMINI_KEY,
        "sk-plantedOpenAIKeyFromTheEnvironment0123",
    ] {
        assert!(!everything.contains(secret), "secret leaked:\n{everything}");
        // Not even the middle of it.
        let middle = &secret[8..secret.len() - 4];
        assert!(
            !everything.contains(middle),
            "part of a secret leaked:\n{everything}"
        );
    }
    // The redacted forms are what people see.
    assert!(
        everything.contains("…9xyz"),
        "the redacted token is shown:\n{everything}"
    );
    assert!(!k.log().is_empty());
}
