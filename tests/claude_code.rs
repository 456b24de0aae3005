//! Claude Code itself (2.1.328, installed by scripts/test.sh into target/node) through aisbf to
//! an OpenAI-format upstream: `claude -p` prints the answer, runs a tool non-interactively
//! and sends its result back. A recording proxy between Claude Code and aisbf checks that
//! every request it made (side requests with its own `claude-…` names included) got a 2xx:
//! Claude Code hides 400s (it drops features and retries) and retries 5xx for minutes.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{json, Value};
use support::agent_mock::AgentMock;
use support::*;

const GATEWAY_TOKEN: &str = "gw-claude-token";

fn claude_bin() -> PathBuf {
    std::env::var("AISBF_TEST_CLAUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/node/node_modules/.bin/claude")
        })
}

/// (method, path and query, status, model) of every request through the proxy.
type Seen = Arc<Mutex<Vec<(String, String, u16, String)>>>;

#[derive(Clone)]
struct Proxy {
    upstream: String,
    seen: Seen,
    http: reqwest::Client,
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let model = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["model"].as_str().map(str::to_string))
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut out = p
        .http
        .request(parts.method.clone(), format!("{}{path}", p.upstream))
        .body(bytes);
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            out = out.header(k, v);
        }
    }
    let resp = out.send().await.unwrap();
    let status = resp.status();
    p.seen
        .lock()
        .unwrap()
        .push((parts.method.to_string(), path, status.as_u16(), model));
    let mut builder = Response::builder().status(status);
    for (k, v) in resp.headers() {
        builder = builder.header(k, v);
    }
    builder
        .body(Body::from_stream(
            resp.bytes_stream()
                .map(|r| r.map_err(std::io::Error::other)),
        ))
        .unwrap()
}

struct Setup {
    mock: AgentMock,
    _gw: Gateway,
    proxy: String,
    seen: Seen,
}

async fn setup() -> Setup {
    let mock = AgentMock::start("PONG").await;
    let cfg = ConfigDir::new(json!({
        "oa": provider("openai", &mock.endpoint, Some("sk-upstream"), &["gpt-4o"]),
    }));
    behind_proxy(mock, cfg, "oa/gpt-4o").await
}

/// aisbf on `cfg` (auth on, every `claude-…` name aliased to `target`) behind the proxy.
async fn behind_proxy(mock: AgentMock, cfg: ConfigDir, target: &str) -> Setup {
    // Claude Code names its own models (a main one, a small one for side tasks).
    cfg.aisbf(json!({
        "auth": {"enabled": true, "tokens": [GATEWAY_TOKEN]},
        "model_aliases": {"claude-*": target},
    }));
    let gw = Gateway::start_with(cfg).await;
    let seen: Seen = Default::default();
    let app = axum::Router::new().fallback(forward).with_state(Proxy {
        upstream: gw.url(""),
        seen: seen.clone(),
        http: reqwest::Client::new(),
    });
    let proxy = serve_app(app).await;
    Setup {
        mock,
        _gw: gw,
        proxy,
        seen,
    }
}

/// Runs `claude -p PROMPT` in `cwd` with a fresh HOME, against `base_url`.
async fn claude(
    base_url: &str,
    cwd: &std::path::Path,
    prompt: &str,
    model: Option<&str>,
) -> (bool, String, String) {
    let home = tempfile::tempdir().unwrap();
    let mut args = vec!["-p", prompt, "--output-format", "text"];
    if let Some(m) = model {
        args.extend(["--model", m]);
    }
    let child = tokio::process::Command::new(claude_bin())
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CLAUDE_CONFIG_DIR", home.path().join(".claude"))
        .env("ANTHROPIC_BASE_URL", base_url)
        .env("ANTHROPIC_API_KEY", GATEWAY_TOKEN)
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("CI", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), child)
        .await
        .expect("claude -p finishes")
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", claude_bin().display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn assert_all_2xx(seen: &Seen) {
    let seen = seen.lock().unwrap().clone();
    eprintln!("requests Claude Code made: {seen:?}");
    assert!(!seen.is_empty(), "Claude Code made no request");
    for (method, path, status, model) in &seen {
        assert!(
            (200..300).contains(status),
            "{method} {path} ({model}) got {status}; all: {seen:?}"
        );
    }
    assert!(
        seen.iter()
            .any(|(m, p, _, _)| m == "POST" && p.starts_with("/v1/messages")),
        "{seen:?}"
    );
}

/// Object keys anywhere in `v`, except inside tool parameter schemas (whose property names
/// are the tool's own).
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                if k != "parameters" {
                    keys(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

fn assert_only_chat_completions(mock: &AgentMock) {
    for r in mock.received.all() {
        let mut found = Vec::new();
        keys(&r.body, &mut found);
        for banned in [
            "cache_control",
            "defer_loading",
            "thinking",
            "context_management",
            "output_config",
            "betas",
        ] {
            assert!(
                !found.iter().any(|k| k == banned),
                "{banned} reached the upstream: {}",
                r.body
            );
        }
        assert!(r.header("anthropic-beta").is_none());
        assert_eq!(r.body["model"], "gpt-4o");
    }
}

#[tokio::test]
async fn claude_code_answers_through_aisbf() {
    let s = setup().await;
    let cwd = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = claude(&s.proxy, cwd.path(), "Reply with PONG", None).await;
    assert!(ok, "claude -p failed\nstdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("PONG"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_all_2xx(&s.seen);
    assert!(s.mock.received.count() >= 1);
    assert_only_chat_completions(&s.mock);
}

#[tokio::test]
async fn claude_code_runs_a_tool_and_sends_its_result_back() {
    let s = setup().await;
    let cwd = tempfile::tempdir().unwrap();
    let notes = cwd.path().join("notes.txt");
    std::fs::write(&notes, "AISBF-TOOL-42\n").unwrap();
    s.mock
        .set_tool("Read", json!({"file_path": notes.to_str().unwrap()}));
    let (ok, stdout, stderr) = claude(&s.proxy, cwd.path(), "RUN_TOOL: read notes.txt", None).await;
    assert!(ok, "claude -p failed\nstdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("TOOL SAID") && stdout.contains("AISBF-TOOL-42"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_all_2xx(&s.seen);
    let with_result = s.mock.received.all().into_iter().find(|r| {
        r.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .is_some_and(|m| m["role"] == "tool" && m.to_string().contains("AISBF-TOOL-42"))
    });
    assert!(
        with_result.is_some(),
        "no upstream request carried the tool result: {:?}",
        s.mock
            .received
            .all()
            .iter()
            .map(|r| &r.body)
            .collect::<Vec<_>>()
    );
    assert_only_chat_completions(&s.mock);
}

#[tokio::test]
async fn claude_code_with_a_gateway_model_name() {
    let s = setup().await;
    let cwd = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) =
        claude(&s.proxy, cwd.path(), "Reply with PONG", Some("oa/gpt-4o")).await;
    assert!(ok, "claude -p failed\nstdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("PONG"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_all_2xx(&s.seen);
    let seen = s.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|(_, _, _, m)| m == "oa/gpt-4o"), "{seen:?}");
}

#[tokio::test]
async fn claude_code_through_a_rotation_with_a_failing_entry_and_an_autoselect() {
    let bad = support::openai_mock::OpenAiMock::start().await;
    bad.set_fault(Fault::Status(500, r#"{"error":{"message":"down"}}"#.into()));
    let selector = support::scripted_mock::ScriptedMock::start(
        "<aisbf_model_autoselection>rotation/r</aisbf_model_autoselection>",
    )
    .await;
    for target in ["rotation/r", "autoselect/auto"] {
        let mock = AgentMock::start("PONG").await;
        let cfg = ConfigDir::new(json!({
            "bad": provider("openai", &bad.endpoint, Some("k1"), &["gpt-4o"]),
            "good": provider("openai", &mock.endpoint, Some("k2"), &["gpt-4o"]),
            "sel": provider("openai", &selector.endpoint, Some("k3"), &["pick"]),
        }));
        cfg.write(
            "rotations.json",
            &json!({"rotations": {"r": {"model_name": "r", "providers": [
                {"provider_id": "bad", "weight": 1000, "models": [{"name": "gpt-4o"}]},
                {"provider_id": "good", "weight": 0, "models": [{"name": "gpt-4o"}]}]}}}),
        );
        cfg.write(
            "autoselect.json",
            &json!({"autoselect": {"auto": {"model_name": "auto", "description": "d",
                "selection_model": "sel/pick", "fallback": "rotation/r",
                "available_models": [{"model_id": "rotation/r", "description": "everything"}]}}}),
        );
        let s = behind_proxy(mock, cfg, target).await;
        let cwd = tempfile::tempdir().unwrap();
        let (ok, stdout, stderr) = claude(&s.proxy, cwd.path(), "Reply with PONG", None).await;
        assert!(
            ok,
            "{target}: claude -p failed\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(
            stdout.contains("PONG"),
            "{target}: stdout: {stdout}\nstderr: {stderr}"
        );
        assert_all_2xx(&s.seen);
        assert_only_chat_completions(&s.mock);
    }
    assert!(bad.received.count() >= 2, "the failing entry was tried");
    assert!(selector.received.count() >= 1, "the selector chose");
}
