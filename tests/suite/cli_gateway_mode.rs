//! `kimaki start --gateway`: the real binary onboards through the twin acting as gateway proxy
//! and reports each step on stdout as SSE, read here the way a hosting platform reads it (only
//! `data:` lines count; anything else on the stream is ignored). Fresh onboarding ends in a
//! working bot; a restart reuses the authorization; `--restart-onboarding` starts over (and a
//! restart in place does not repeat that); a proxy that fails while kimaki waits is retried; a
//! refusal, a failing proxy and a missing proxy URL each end in an `error` event that says what
//! happened.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::discord_twin::{channel_kind, DiscordTwin, TwinConfig};
use crate::support::fake_llm::{FakeLlm, TEXT_REPLY};
use crate::support::kimaki_bin::{mode, Daemon, Kimaki};

const WAIT: Duration = Duration::from_secs(60);

/// Deliberately not Discord-shaped: kimaki must treat the proxy's credential as opaque.
const CREDENTIAL: &str = "gwcred-7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4";

const CALLBACK: &str = "https://platform.example/setup-done?user=abc";
const CALLBACK_ENCODED: &str = "https%3A%2F%2Fplatform.example%2Fsetup-done%3Fuser%3Dabc";

/// Events as an SSE client (eventsource-parser) sees them: `data:` lines accumulate, a blank
/// line dispatches, comments and every other line are ignored.
fn sse_events(lines: &[String]) -> Vec<Value> {
    let mut events = Vec::new();
    let mut data: Vec<String> = Vec::new();
    for line in lines {
        if line.is_empty() {
            if !data.is_empty() {
                let joined = data.join("\n");
                events.push(
                    serde_json::from_str(&joined)
                        .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {joined}")),
                );
                data.clear();
            }
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push(rest.strip_prefix(' ').unwrap_or(rest).to_owned());
        }
    }
    events
}

fn types(lines: &[String]) -> Vec<String> {
    sse_events(lines)
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn the_sse_reader_ignores_noise_between_events() {
    let lines: Vec<String> = [
        "kimaki 0.1 starting…",
        "data: {\"type\":\"install_url\",\"url\":\"https://x\"}",
        "",
        ": a comment",
        "{\"type\":\"ready\"} (a log line that looks like JSON)",
        "  data: indented, so not a field",
        "data: {\"type\":\"authorized\",",
        "data: \"guild_id\":\"1\"}",
        "",
        "",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(types(&lines), ["install_url", "authorized"]);
}

fn gateway_twin(rt: &tokio::runtime::Runtime) -> DiscordTwin {
    rt.block_on(DiscordTwin::start_gateway_proxy(TwinConfig {
        bot_token: Some(CREDENTIAL.to_owned()),
        ..TwinConfig::default()
    }))
}

fn assert_no_secrets(k: &Kimaki, d: &Daemon, proxy_secrets: &[String]) {
    let log = k.log();
    let out = d.output();
    for s in proxy_secrets {
        assert!(!log.contains(s.as_str()), "a proxy secret is in kimaki.log");
        assert!(
            !out.contains(s.as_str()),
            "a proxy secret is on stdout/stderr"
        );
    }
}

#[test]
fn fresh_onboarding_goes_install_url_authorized_ready_and_the_bot_works() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let llm = rt.block_on(FakeLlm::start());
    let twin = gateway_twin(&rt);
    let proxy = twin.gateway_proxy();
    let (k, _project) = Kimaki::new().with_fake_codex(&llm);
    let k = k.with_env("KIMAKI_GATEWAY_URL", &proxy.url());

    let mut d = k.start(&["--gateway", "--gateway-callback-url", CALLBACK]);
    let install = d.wait_event("install_url", WAIT);
    let onboarding = rt.block_on(proxy.wait_onboarding(1, WAIT));
    assert_eq!(
        install["url"],
        format!("{}&callbackUrl={CALLBACK_ENCODED}", onboarding.install_url),
        "the proxy's install URL with the callback percent-encoded: {install}"
    );
    let state_file = k.path("gateway.json");
    assert_eq!(
        mode(&state_file),
        0o600,
        "the pending onboarding is private"
    );

    proxy.authorize(&onboarding.id, twin.guild_id().get());
    let authorized = d.wait_event("authorized", WAIT);
    assert_eq!(authorized["guild_id"], twin.guild_id().to_string());
    let ready = d.wait_ready();
    assert_eq!(
        ready["app_id"],
        twin.application_id().to_string(),
        "{ready}"
    );
    assert_eq!(
        ready["guild_ids"],
        serde_json::json!([twin.guild_id().to_string()])
    );
    assert_eq!(
        mode(&state_file),
        0o600,
        "the credential is stored privately"
    );

    // The proxied bot set up the project channel and answers in a thread.
    let channel = rt.block_on(twin.wait_for("the project channel", WAIT, |s| {
        s.channels
            .values()
            .find(|c| c.kind == channel_kind::TEXT && c.name == "project")
            .map(|c| c.id)
    }));
    let sent = twin
        .user("alice")
        .in_channel(channel)
        .send("[[fake:text]] say hello");
    let thread = rt.block_on(twin.wait_thread(|t| t.id.get() == sent.get(), WAIT));
    let reply =
        rt.block_on(twin.wait_bot_message(thread.id, |m| m.content.contains(TEXT_REPLY), WAIT));
    assert!(reply.content.contains(TEXT_REPLY), "{}", reply.content);
    // Every call went through the proxy with its credential (the twin 401s anything else).
    assert!(twin
        .rest_log()
        .iter()
        .any(|r| r.path.ends_with("/users/@me")));

    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
    assert_eq!(
        types(&d.stdout),
        ["install_url", "authorized", "ready", "stopping"],
        "exactly the onboarding events, in order:\n{}",
        d.output()
    );
    assert_no_secrets(&k, &d, &[CREDENTIAL.to_owned(), onboarding.poll_token]);
    twin.assert_clean();
}

/// Onboards once (install URL → authorization → ready) and stops.
fn onboard_once(
    rt: &tokio::runtime::Runtime,
    k: &Kimaki,
    twin: &DiscordTwin,
    args: &[&str],
    nth: usize,
) -> Daemon {
    let proxy = twin.gateway_proxy();
    let mut d = k.start(args);
    d.wait_event("install_url", WAIT);
    let onboarding = rt.block_on(proxy.wait_onboarding(nth, WAIT));
    proxy.authorize(&onboarding.id, twin.guild_id().get());
    d.wait_event("authorized", WAIT);
    d.wait_ready();
    d
}

fn stop(d: &mut Daemon) {
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
}

#[test]
fn a_restart_after_authorization_goes_straight_to_ready() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twin = gateway_twin(&rt);
    let proxy = twin.gateway_proxy();
    let k = Kimaki::new().with_env("KIMAKI_GATEWAY_URL", &proxy.url());
    let mut first = onboard_once(&rt, &k, &twin, &["--gateway"], 1);
    stop(&mut first);

    let mut second = k.start(&["--gateway"]);
    let ready = second.wait_ready();
    assert_eq!(ready["app_id"], twin.application_id().to_string());
    assert_eq!(
        ready["guild_ids"],
        serde_json::json!([twin.guild_id().to_string()])
    );
    stop(&mut second);
    assert_eq!(
        types(&second.stdout),
        ["ready", "stopping"],
        "no new install URL, no second authorization:\n{}",
        second.output()
    );
    assert_eq!(
        proxy.onboardings().len(),
        1,
        "the proxy was not asked again"
    );
    let status = k.run(&["doctor", "--json"]).json();
    let gateway = status["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "gateway")
        .cloned()
        .unwrap_or_else(|| panic!("doctor checks the gateway: {status}"));
    assert_eq!(gateway["status"], "pass", "{gateway}");
    twin.assert_clean();
}

#[test]
fn restart_onboarding_starts_over_and_a_restart_in_place_keeps_the_new_authorization() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twin = gateway_twin(&rt);
    let proxy = twin.gateway_proxy();
    let k = Kimaki::new().with_env("KIMAKI_GATEWAY_URL", &proxy.url());
    let mut first = onboard_once(&rt, &k, &twin, &["--gateway"], 1);
    stop(&mut first);

    let mut again = onboard_once(&rt, &k, &twin, &["--gateway", "--restart-onboarding"], 2);
    let onboardings = proxy.onboardings();
    assert_eq!(onboardings.len(), 2, "a second onboarding was opened");
    assert_ne!(onboardings[0].install_url, onboardings[1].install_url);
    let urls: Vec<String> = sse_events(&again.stdout)
        .iter()
        .filter(|e| e["type"] == "install_url")
        .map(|e| e["url"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(urls, [onboardings[1].install_url.clone()]);

    // SIGUSR2 re-executes with the same arguments, minus the one-shot --restart-onboarding.
    let before = again.stdout.len();
    again.signal(Signal::SIGUSR2);
    again.wait_event("stopping", WAIT);
    again.wait_ready();
    stop(&mut again);
    assert_eq!(
        types(&again.stdout[before..]),
        ["stopping", "ready", "stopping"],
        "the restarted process did not onboard again:\n{}",
        again.output()
    );
    assert_eq!(proxy.onboardings().len(), 2);
    twin.assert_clean();
}

#[test]
fn a_stop_before_authorization_resumes_the_same_install_url() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twin = gateway_twin(&rt);
    let proxy = twin.gateway_proxy();
    let k = Kimaki::new().with_env("KIMAKI_GATEWAY_URL", &proxy.url());
    let mut first = k.start(&["--gateway"]);
    let url = first.wait_event("install_url", WAIT)["url"].clone();
    stop(&mut first);
    assert_eq!(types(&first.stdout), ["install_url", "stopping"]);

    let mut second = k.start(&["--gateway"]);
    assert_eq!(second.wait_event("install_url", WAIT)["url"], url);
    let onboarding = rt.block_on(proxy.wait_onboarding(1, WAIT));
    proxy.authorize(&onboarding.id, twin.guild_id().get());
    second.wait_event("authorized", WAIT);
    second.wait_ready();
    stop(&mut second);
    assert_eq!(proxy.onboardings().len(), 1);
}

#[test]
fn status_and_stop_work_while_waiting_for_authorization() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twin = gateway_twin(&rt);
    let proxy = twin.gateway_proxy();
    let k = Kimaki::new().with_env("KIMAKI_GATEWAY_URL", &proxy.url());
    let mut d = k.start(&["--gateway"]);
    let url = d.wait_event("install_url", WAIT)["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = k.run(&["status", "--json"]);
    assert_eq!(status.code(), 0, "{}", status.all());
    let report = status.json();
    let discord = report["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "discord")
        .unwrap_or_else(|| panic!("no discord in {report}"))
        .clone();
    assert_eq!(discord["state"], "onboarding", "{report}");
    assert!(
        discord["detail"].as_str().unwrap().contains(&url),
        "the install URL is shown: {report}"
    );
    // Anything else is refused with the reason, not a hang or "not running".
    let send = k.run(&["send", "--project", "/tmp", "--prompt", "hi"]);
    assert_ne!(send.code(), 0);
    assert!(
        send.all().contains("waiting for the bot to be authorized"),
        "{}",
        send.all()
    );

    let out = k.run(&["stop"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(d.wait_exit(WAIT).success(), "{}", d.output());
    assert_eq!(types(&d.stdout), ["install_url", "stopping"]);
    assert!(!k.path("kimaki.sock").exists(), "the socket is removed");
}

#[test]
fn a_refused_authorization_is_an_error_with_the_install_url_and_the_next_start_begins_anew() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twin = gateway_twin(&rt);
    let proxy = twin.gateway_proxy();
    let k = Kimaki::new().with_env("KIMAKI_GATEWAY_URL", &proxy.url());
    let mut d = k.start(&["--gateway"]);
    let install = d.wait_event("install_url", WAIT);
    let onboarding = rt.block_on(proxy.wait_onboarding(1, WAIT));
    proxy.fail(&onboarding.id, "the user cancelled the authorization");
    let error = d.wait_event("error", WAIT);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("the user cancelled the authorization"),
        "{error}"
    );
    assert_eq!(error["install_url"], install["url"]);
    let status = d.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1), "{}", d.output());
    assert_eq!(types(&d.stdout), ["install_url", "error"]);
    assert!(
        !k.path("gateway.json").exists(),
        "the dead onboarding is forgotten"
    );

    let mut next = k.start(&["--gateway"]);
    let fresh = next.wait_event("install_url", WAIT);
    assert_ne!(fresh["url"], install["url"]);
    assert_eq!(proxy.onboardings().len(), 2);
    stop(&mut next);
}

#[test]
fn a_failing_or_unreachable_proxy_is_an_error_event_and_exit_69() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twin = gateway_twin(&rt);
    let proxy = twin.gateway_proxy();
    proxy.fail_next_create(503, "the gateway proxy is overloaded");
    let k = Kimaki::new().with_env("KIMAKI_GATEWAY_URL", &proxy.url());
    let mut d = k.start(&["--gateway"]);
    let error = d.wait_event("error", WAIT);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("503") && message.contains("the gateway proxy is overloaded"),
        "{error}"
    );
    assert_eq!(d.wait_exit(WAIT).code(), Some(69), "{}", d.output());
    assert_eq!(types(&d.stdout), ["error"]);

    // Nothing listens on a port that was just released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let k = Kimaki::new().with_env("KIMAKI_GATEWAY_URL", &url);
    let mut d = k.start(&["--gateway", "--restart-onboarding"]);
    let error = d.wait_event("error", WAIT);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("unreachable") && message.contains(&url),
        "the error names the proxy: {error}"
    );
    assert!(error.get("install_url").is_none(), "{error}");
    assert_eq!(d.wait_exit(WAIT).code(), Some(69), "{}", d.output());
    assert!(
        d.stderr.iter().any(|l| l.contains("KIMAKI_GATEWAY_URL")),
        "the hint names the setting:\n{}",
        d.output()
    );
}

#[test]
fn a_proxy_that_fails_while_kimaki_waits_is_retried() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twin = gateway_twin(&rt);
    let proxy = twin.gateway_proxy();
    proxy.fail_next_polls(503, 2);
    let k = Kimaki::new().with_env("KIMAKI_GATEWAY_URL", &proxy.url());
    let mut d = k.start(&["--gateway"]);
    d.wait_event("install_url", WAIT);
    let onboarding = rt.block_on(proxy.wait_onboarding(1, WAIT));
    proxy.authorize(&onboarding.id, twin.guild_id().get());
    d.wait_event("authorized", WAIT);
    d.wait_ready();
    stop(&mut d);
    assert_eq!(
        types(&d.stdout),
        ["install_url", "authorized", "ready", "stopping"]
    );
    let retries = k
        .log()
        .matches("Polling the gateway proxy failed; retrying.")
        .count();
    assert_eq!(
        retries,
        2,
        "each failed poll was retried once:\n{}",
        k.log()
    );
    twin.assert_clean();
}

#[test]
fn gateway_mode_without_a_proxy_url_is_a_config_error() {
    let k = Kimaki::new();
    let mut d = k.start(&["--gateway"]);
    let error = d.wait_event("error", WAIT);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("KIMAKI_GATEWAY_URL"),
        "{error}"
    );
    assert_eq!(d.wait_exit(WAIT).code(), Some(78), "{}", d.output());
    let out = k.run(&["start", "--restart-onboarding"]);
    assert_eq!(
        out.code(),
        2,
        "--restart-onboarding needs --gateway: {}",
        out.all()
    );
}

#[test]
fn a_revoked_credential_leads_to_a_new_onboarding() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twin = gateway_twin(&rt);
    let proxy = twin.gateway_proxy();
    let k = Kimaki::new().with_env("KIMAKI_GATEWAY_URL", &proxy.url());
    let mut first = onboard_once(&rt, &k, &twin, &["--gateway"], 1);
    stop(&mut first);

    proxy.revoke_credential();
    let mut d = onboard_once(&rt, &k, &twin, &["--gateway"], 2);
    stop(&mut d);
    assert_eq!(
        types(&d.stdout),
        ["install_url", "authorized", "ready", "stopping"]
    );
    // The one 401 was kimaki checking the old credential, before it onboarded again.
    let violations = twin.take_violations();
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(
        violations[0].detail.contains("users/@me"),
        "{violations:#?}"
    );
    twin.assert_clean();
}

#[test]
fn a_credential_the_proxy_stops_accepting_says_how_to_onboard_again() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let twin = gateway_twin(&rt);
    let proxy = twin.gateway_proxy();
    let k = Kimaki::new().with_env("KIMAKI_GATEWAY_URL", &proxy.url());
    let mut d = onboard_once(&rt, &k, &twin, &["--gateway"], 1);

    proxy.revoke_credential();
    twin.close(4004);
    let error = d.wait_event("error", WAIT);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("kimaki start --gateway --restart-onboarding"),
        "{error}"
    );
    assert!(
        !message.contains("KIMAKI_BOT_TOKEN"),
        "no bot token in gateway mode: {error}"
    );
    let status = k.run(&["status", "--json"]).json();
    let discord = status["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "discord")
        .unwrap()
        .clone();
    assert_eq!(discord["state"], "failed", "{status}");
    stop(&mut d);
}
