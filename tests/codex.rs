//! OpenAI's Codex CLI itself (`codex exec`, pinned @openai/codex, installed by
//! scripts/test.sh into target/node) against aisbf in front of an OpenAI chat mock, with a
//! custom provider `wire_api = "responses"` in a temporary CODEX_HOME: a plain answer, and a
//! tool round trip where the mock asks Codex to run a harmless command.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use support::responses::{Turn, TurnsMock};
use support::*;

fn codex_bin() -> PathBuf {
    let bin = std::env::var_os("AISBF_TEST_CODEX")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/node/node_modules/.bin/codex")
        });
    assert!(
        bin.exists(),
        "Codex CLI not found at {} (scripts/test.sh installs @openai/codex into target/node)",
        bin.display()
    );
    bin
}

/// Runs `codex exec PROMPT` against `gw`; returns (exit ok, stdout, stderr).
async fn codex_exec(gw: &Gateway, model: &str, prompt: &str) -> (bool, String, String) {
    codex_exec_with_key(gw, model, prompt, "sk-codex-client").await
}

/// As `codex_exec`, with `key` as the provider's `env_key` value (the gateway token).
async fn codex_exec_with_key(
    gw: &Gateway,
    model: &str,
    prompt: &str,
    key: &str,
) -> (bool, String, String) {
    // Under target/, not /tmp: Codex refuses to set up its helpers under a temp dir.
    let home = tempfile::Builder::new()
        .prefix("codex-home-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let work = tempfile::Builder::new()
        .prefix("codex-work-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::write(
        home.path().join("config.toml"),
        format!(
            r#"model = "{model}"
model_provider = "aisbf"

[model_providers.aisbf]
name = "aisbf"
base_url = "{base}"
wire_api = "responses"
env_key = "AISBF_CODEX_TEST_KEY"
request_max_retries = 0
stream_max_retries = 0
"#,
            base = gw.base_v1()
        ),
    )
    .unwrap();
    let child = tokio::process::Command::new(codex_bin())
        .args(["exec", "--skip-git-repo-check", "--color", "never"])
        .arg(prompt)
        .current_dir(work.path())
        .env("CODEX_HOME", home.path())
        .env("AISBF_CODEX_TEST_KEY", key)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), child)
        .await
        .expect("codex exec finishes")
        .expect("codex runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn gateway(mock: &TurnsMock) -> Gateway {
    let cfg = ConfigDir::new(
        json!({"up": provider("openai", &mock.endpoint, Some("sk-up"), &["gpt-4o"])}),
    );
    Gateway::start_with(cfg).await
}

#[tokio::test]
async fn codex_exec_plain_answer() {
    let mock = TurnsMock::start(vec![Turn::Text("Hello from the aisbf mock.".into())]).await;
    let gw = gateway(&mock).await;
    let (ok, stdout, stderr) = codex_exec(&gw, "up/gpt-4o", "say hi").await;
    assert!(ok, "codex failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("Hello from the aisbf mock."),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let first = &mock.received.all()[0];
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.body["model"], "gpt-4o");
    assert_eq!(first.body["stream"], true);
    assert_eq!(first.header("authorization"), Some("Bearer sk-up"));
    let tools: Vec<&str> = first.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(tools.contains(&"exec_command"), "{tools:?}");
    assert!(
        first.body["messages"][0]["role"] == "system"
            && first.body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("Codex"),
        "Codex's developer prompt becomes the system message"
    );
    let last = first.body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last, json!({"role": "user", "content": "say hi"}));
}

#[tokio::test]
async fn codex_exec_tool_round_trip() {
    let marker = "aisbf-codex-tool-ok";
    let mock = TurnsMock::start(vec![
        Turn::Call(
            "exec_command".into(),
            json!({"cmd": format!("echo {marker}")}),
        ),
        Turn::Text("The command printed the marker.".into()),
    ])
    .await;
    let gw = gateway(&mock).await;
    let (ok, stdout, stderr) = codex_exec(&gw, "up/gpt-4o", "run echo for me").await;
    assert!(ok, "codex failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("The command printed the marker."),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let all = mock.received.all();
    assert!(all.len() >= 2, "two upstream turns: {}", all.len());
    let second = &all[1].body;
    let msgs = second["messages"].as_array().unwrap();
    let call = msgs
        .iter()
        .find(|m| m["tool_calls"].is_array())
        .expect("the assistant's tool call is sent back");
    assert_eq!(call["tool_calls"][0]["id"], "call_turn1");
    assert_eq!(call["tool_calls"][0]["function"]["name"], "exec_command");
    let output = msgs
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the command's output is sent back");
    assert_eq!(output["tool_call_id"], "call_turn1");
    assert!(
        output["content"].as_str().unwrap().contains(marker),
        "the tool message carries the command's output: {output}"
    );
}

#[tokio::test]
async fn codex_exec_through_a_rotation_and_an_autoselect() {
    let mock = TurnsMock::start(vec![Turn::Text("Routed answer.".into())]).await;
    let selector = support::scripted_mock::ScriptedMock::start(
        "<aisbf_model_autoselection>rotation/r</aisbf_model_autoselection>",
    )
    .await;
    let cfg = ConfigDir::new(json!({
        "dead": provider("openai", &dead_endpoint(), Some("sk-up"), &["gpt-4o"]),
        "up": provider("openai", &mock.endpoint, Some("sk-up"), &["gpt-4o"]),
        "sel": provider("openai", &selector.endpoint, Some("sk-up"), &["pick"]),
    }));
    cfg.write(
        "rotations.json",
        &json!({"rotations": {"r": {"providers": [
        {"provider_id": "dead", "weight": 100, "models": [{"name": "gpt-4o"}]},
        {"provider_id": "up", "weight": 1, "models": [{"name": "gpt-4o"}]}]}}}),
    );
    cfg.write(
        "autoselect.json",
        &json!({"autoselect": {"auto": {
        "selection_model": "sel/pick", "fallback": "rotation/r",
        "available_models": [{"model_id": "rotation/r", "description": "Anything"}]}}}),
    );
    let gw = Gateway::start_with(cfg).await;
    for model in ["rotation/r", "autoselect/auto"] {
        let (ok, stdout, stderr) = codex_exec(&gw, model, "say hi").await;
        assert!(ok, "{model}: codex failed:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains("Routed answer."),
            "{model}: stdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }
    assert_eq!(mock.received.count(), 2, "both served by the live entry");
    assert!(
        selector.received.count() >= 1,
        "the autoselect asked its selector"
    );
}

/// A tool round trip through a target of `kind`: the mock asks Codex to run a command whose
/// output differs from its text (`$((6*7))`), so the output in the second upstream request
/// proves the command ran; then it answers.
async fn round_trip_through(kind: &str) {
    let mock = TurnsMock::start(vec![
        Turn::Call(
            "exec_command".into(),
            json!({"cmd": "echo aisbf-$((6*7))-ok"}),
        ),
        Turn::Text(format!("Done through {kind}.")),
    ])
    .await;
    let key = (kind != "ollama").then_some("sk-up");
    let cfg = ConfigDir::new(json!({"up": provider(kind, &mock.endpoint_for(kind), key, &["m1"])}));
    let gw = Gateway::start_with(cfg).await;
    let (ok, stdout, stderr) = codex_exec(&gw, "up/m1", "run echo for me").await;
    assert!(ok, "{kind}: codex failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("Done through {kind}.")),
        "{kind}: stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let all = mock.received.all();
    assert_eq!(all.len(), 2, "{kind}: two upstream turns");
    let second = all[1].body.to_string();
    assert!(
        second.contains("aisbf-42-ok"),
        "{kind}: the second request carries the command's output: {second}"
    );
    assert!(!all[0].body.to_string().contains("aisbf-42-ok"));
}

#[tokio::test]
async fn codex_exec_tool_round_trip_through_anthropic() {
    round_trip_through("anthropic").await;
}

#[tokio::test]
async fn codex_exec_tool_round_trip_through_google() {
    round_trip_through("google").await;
}

#[tokio::test]
async fn codex_exec_tool_round_trip_through_ollama() {
    round_trip_through("ollama").await;
}

#[tokio::test]
async fn codex_exec_through_a_native_responses_provider() {
    let mock = support::responses::ResponsesMock::start().await;
    let mut p = provider("openai", &mock.endpoint, Some("sk-native"), &["gpt-5"]);
    p["responses"] = json!(true);
    let gw = Gateway::start_with(ConfigDir::new(json!({"n": p}))).await;
    let (ok, stdout, stderr) = codex_exec(&gw, "n/gpt-5", "say hi").await;
    assert!(ok, "codex failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(support::responses::NATIVE_TEXT),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let seen = mock.received.last();
    assert_eq!(seen.body["model"], "gpt-5");
    assert_eq!(seen.header("authorization"), Some("Bearer sk-native"));
    // Passed through untouched: Codex's own fields and built-in tools reach the upstream.
    assert_eq!(seen.body["store"], false);
    assert!(seen.body["include"].is_array() && seen.body["client_metadata"].is_object());
    assert!(seen.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["type"] == "web_search"));
}

#[tokio::test]
async fn codex_exec_with_gateway_auth() {
    let mock = TurnsMock::start(vec![Turn::Text("Authorized answer.".into())]).await;
    let cfg = ConfigDir::new(
        json!({"up": provider("openai", &mock.endpoint, Some("sk-up"), &["gpt-4o"])}),
    );
    cfg.aisbf(json!({"auth": {"enabled": true, "tokens": ["gw-token-1"]}}));
    let gw = Gateway::start_with(cfg).await;
    let (ok, stdout, stderr) = codex_exec_with_key(&gw, "up/gpt-4o", "say hi", "gw-token-1").await;
    assert!(
        ok && stdout.contains("Authorized answer."),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(
        mock.received.last().header("authorization"),
        Some("Bearer sk-up")
    );
    let (ok, stdout, _) = codex_exec_with_key(&gw, "up/gpt-4o", "say hi", "wrong").await;
    assert!(!ok, "a wrong gateway token is refused: {stdout}");
    assert_eq!(
        mock.received.count(),
        1,
        "nothing reached the upstream without the token"
    );
}
