//! `POST /v1/messages` against mocks of every target kind: what the Anthropic client got
//! (bodies, the exact event sequence, errors in Anthropic's shape) and what each upstream
//! received (a Chat Completions request with only Chat Completions parameters, or the
//! client's own body for an Anthropic target).

#[path = "support/ollama_mock.rs"]
#[allow(dead_code)] // this test uses only part of the Ollama mock
mod ollama_mock;
mod support;

use std::collections::BTreeSet;

use ollama_mock::OllamaMock;
use serde_json::{json, Value};
use support::agent_mock::{AgentMock, TOOL_CALL_ID};
use support::anthropic_mock::{AnthropicMock, COUNTED_TOKENS};
use support::gemini_mock::GeminiMock;
use support::openai_mock::OpenAiMock;
use support::scripted_mock::ScriptedMock;
use support::*;

/// Every top-level parameter of OpenAI's Chat Completions request (API reference,
/// `POST /v1/chat/completions`; the schema fixture holds only the response side).
fn chat_completions_params() -> BTreeSet<&'static str> {
    [
        "messages",
        "model",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    ]
    .into_iter()
    .collect()
}

/// What Claude Code 2.1.328 sends, in miniature: thinking, context_management,
/// output_config, metadata, cache_control on system/text/tool_result, a deferred tool and a
/// system message inside `messages`.
fn claude_code_like(stream: bool, model: &str) -> Value {
    json!({
        "model": model, "max_tokens": 32000, "stream": stream,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "user_abc_session_1"},
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "tools": [
            {"name": "Read", "description": "Read a file", "input_schema": {"type": "object",
                "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}},
            {"name": "WebFetch", "description": "Fetch", "defer_loading": true,
                "input_schema": {"type": "object", "properties": {}}}
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "RUN_TOOL please", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01A", "name": "Read", "input": {"file_path": "/x"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "file body",
                "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": "Reminder: be careful."},
            {"role": "assistant", "content": "Done reading."},
            {"role": "user", "content": "Reply with PONG"}
        ]
    })
}

async fn post(gw: &Gateway, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,context-management-2025-06-27",
        )
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The `(event, data)` pairs of a Messages stream; every event must be named.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("event without an event: line: {e}"));
            let data: String = e
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect::<Vec<_>>()
                .join("\n");
            (name.to_string(), serde_json::from_str(&data).unwrap())
        })
        .collect()
}

/// Checks the grammar of a Messages stream: message_start first, blocks opened, deltas
/// into the open block and closed in index order, message_delta then message_stop.
fn assert_stream_grammar(ev: &[(String, Value)]) {
    assert_eq!(ev[0].0, "message_start", "{ev:?}");
    assert!(
        ev[0].1["message"]["usage"]["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let mut open: Option<u64> = None;
    let mut next = 0;
    for (name, data) in &ev[1..ev.len() - 2] {
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "block opened while another is open: {ev:?}");
                assert_eq!(data["index"], next);
                open = Some(next);
                next += 1;
            }
            "content_block_delta" => assert_eq!(data["index"].as_u64(), open),
            "content_block_stop" => {
                assert_eq!(data["index"].as_u64(), open);
                open = None;
            }
            "ping" => {}
            other => panic!("unexpected {other} in {ev:?}"),
        }
    }
    assert!(open.is_none());
    let n = ev.len();
    assert_eq!(ev[n - 2].0, "message_delta");
    assert!(ev[n - 2].1["usage"]["output_tokens"].is_u64());
    assert_eq!(ev[n - 1].0, "message_stop");
}

fn text_of(ev: &[(String, Value)]) -> String {
    ev.iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect()
}

fn assert_anthropic_error(v: &Value, kind: &str) {
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

async fn openai_gateway() -> (AgentMock, Gateway) {
    let mock = AgentMock::start("PONG").await;
    mock.set_tool("Read", json!({"file_path": "/tmp/notes.txt"}));
    let cfg = ConfigDir::new(json!({
        "oa": provider("openai", &mock.endpoint, Some("sk-oa"), &["gpt-4o"]),
    }));
    cfg.aisbf(
        json!({"model_aliases": {"claude-*": "oa/gpt-4o", "claude-exact": "oa/gpt-4o",
                                       "broken": "nowhere/x"}}),
    );
    (mock, Gateway::start_with(cfg).await)
}

#[tokio::test]
async fn openai_target_gets_only_chat_completions_parameters() {
    let (mock, gw) = openai_gateway().await;
    let resp = post(
        &gw,
        "/v1/messages?beta=true",
        &claude_code_like(false, "claude-sonnet-4-5"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-aisbf-provider"], "oa");
    let m: Value = resp.json().await.unwrap();
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], "claude-sonnet-4-5");
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(m["content"], json!([{"type": "text", "text": "PONG"}]));
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["usage"]["input_tokens"], 17);
    assert_eq!(m["usage"]["output_tokens"], 5);
    assert!(m["usage"]["effective_context"].as_u64().unwrap() > 0);

    let got = mock.received.last();
    let allowed = chat_completions_params();
    for k in got.body.as_object().unwrap().keys() {
        assert!(
            allowed.contains(k.as_str()),
            "'{k}' is not a Chat Completions parameter: {}",
            got.body
        );
    }
    assert_eq!(got.body["model"], "gpt-4o");
    assert_eq!(got.body["max_tokens"], 32000);
    assert_eq!(got.body["user"], "user_abc_session_1");
    assert_eq!(got.header("authorization"), Some("Bearer sk-oa"));
    assert!(got.header("anthropic-beta").is_none());
    let body = got.body.to_string();
    for banned in [
        "cache_control",
        "defer_loading",
        "thinking",
        "context_management",
        "output_config",
    ] {
        assert!(
            !body.contains(banned),
            "{banned} reached the upstream: {body}"
        );
    }
    let msgs = got.body["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "system",
            "user",
            "assistant",
            "tool",
            "system",
            "assistant",
            "user"
        ]
    );
    assert_eq!(msgs[2]["tool_calls"][0]["id"], "toolu_01A");
    assert_eq!(
        msgs[2]["tool_calls"][0]["function"]["arguments"],
        "{\"file_path\":\"/x\"}"
    );
    assert_eq!(msgs[3]["tool_call_id"], "toolu_01A");
    assert_eq!(msgs[3]["content"], "file body");
    let tools: Vec<&str> = got.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["Read", "WebFetch"]);
}

#[tokio::test]
async fn openai_stream_is_the_exact_messages_event_sequence() {
    let (mock, gw) = openai_gateway().await;
    mock.set_reasoning(Some("Thinking it over."));
    let resp = post(&gw, "/v1/messages", &claude_code_like(true, "claude-exact")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let ev = events(&resp.text().await.unwrap());
    assert_stream_grammar(&ev);
    assert_eq!(ev[0].1["message"]["model"], "claude-exact");
    assert_eq!(ev[1].1["content_block"]["type"], "thinking");
    assert_eq!(
        ev[2].1["delta"],
        json!({"type": "thinking_delta", "thinking": "Thinking it over."})
    );
    assert_eq!(text_of(&ev), "PONG");
    let n = ev.len();
    assert_eq!(ev[n - 2].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(ev[n - 2].1["usage"]["output_tokens"], 5);
    assert_eq!(ev[n - 2].1["usage"]["input_tokens"], 17);
    let got = mock.received.last();
    assert_eq!(got.body["stream"], true);
    assert_eq!(got.body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn streamed_tool_call_is_one_tool_use_block_of_input_json_deltas() {
    let (_mock, gw) = openai_gateway().await;
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 100, "stream": true,
        "tools": [{"name": "Read", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}],
        "tool_choice": {"type": "auto"},
        "messages": [{"role": "user", "content": "RUN_TOOL now"}]});
    let ev = events(&post(&gw, "/v1/messages", &body).await.text().await.unwrap());
    assert_stream_grammar(&ev);
    let start = ev.iter().find(|(n, _)| n == "content_block_start").unwrap();
    assert_eq!(
        start.1["content_block"],
        json!({"type": "tool_use", "id": TOOL_CALL_ID, "name": "Read", "input": {}})
    );
    let json: String = ev
        .iter()
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        json!({"file_path": "/tmp/notes.txt"})
    );
    assert!(
        ev.iter()
            .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
            .count()
            >= 2
    );
    assert_eq!(ev[ev.len() - 2].1["delta"]["stop_reason"], "tool_use");

    // Non-stream: the same call as a tool_use block with an object input.
    let mut body = body;
    body["stream"] = json!(false);
    let m: Value = post(&gw, "/v1/messages", &body).await.json().await.unwrap();
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(
        m["content"],
        json!([{"type": "tool_use", "id": TOOL_CALL_ID, "name": "Read", "input": {"file_path": "/tmp/notes.txt"}}])
    );
}

#[tokio::test]
async fn anthropic_target_is_a_native_passthrough() {
    let mock = AnthropicMock::start().await;
    let gw = Gateway::start_with(ConfigDir::new(json!({
        "claude": provider("anthropic", &mock.endpoint, Some("sk-ant-up"), &["claude-real"]),
    })))
    .await;
    let mut body = claude_code_like(false, "claude/claude-real");
    // The mock (as the real API) refuses a system message inside `messages`.
    body["messages"].as_array_mut().unwrap().remove(3);
    let resp = post(&gw, "/v1/messages?beta=true", &body).await;
    assert_eq!(resp.status(), 200);
    let m: Value = resp.json().await.unwrap();
    assert_eq!(m["id"], "msg_01MockMessage", "the upstream's own answer");
    let got = mock.received.last();
    let mut want = body.clone();
    want["model"] = json!("claude-real");
    assert_eq!(got.body, want, "the client's body, only model replaced");
    assert_eq!(
        got.header("anthropic-beta"),
        Some("claude-code-20250219,context-management-2025-06-27")
    );
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(got.header("x-api-key"), Some("sk-ant-up"));

    body["stream"] = json!(true);
    let resp = post(&gw, "/v1/messages", &body).await;
    assert_eq!(resp.status(), 200);
    let ev = events(&resp.text().await.unwrap());
    assert_stream_grammar(&ev);
    assert_eq!(ev[0].1["message"]["id"], "msg_01MockStream");
    assert!(ev.iter().any(|(n, _)| n == "ping"), "pings pass through");

    // count_tokens is the target's own.
    let resp = post(&gw, "/v1/messages/count_tokens", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"input_tokens": COUNTED_TOKENS})
    );
    assert_eq!(mock.received.last().path, "/v1/messages/count_tokens");
}

fn simple(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
           "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]})
}

#[tokio::test]
async fn google_and_ollama_targets_are_translated() {
    let g = GeminiMock::start().await;
    let o = OllamaMock::start().await;
    let gw = Gateway::start_with(ConfigDir::new(json!({
        "g": provider("google", &g.endpoint, Some("gk"), &["gemini-2.5-flash"]),
        "local": provider("ollama", &o.endpoint, None, &["llama3.2"]),
    })))
    .await;
    for (model, reply) in [
        ("g/gemini-2.5-flash", support::gemini_mock::REPLY.concat()),
        ("local/llama3.2", ollama_mock::REPLY.concat()),
    ] {
        let m: Value = post(&gw, "/v1/messages", &simple(model, false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(m["content"][0]["text"], reply, "{model}: {m}");
        assert_eq!(m["stop_reason"], "end_turn");
        assert!(m["usage"]["input_tokens"].as_u64().unwrap() > 0, "{m}");
        let ev = events(
            &post(&gw, "/v1/messages", &simple(model, true))
                .await
                .text()
                .await
                .unwrap(),
        );
        assert_stream_grammar(&ev);
        assert_eq!(text_of(&ev), reply, "{model}");
    }
    assert_eq!(
        g.received.last().body["systemInstruction"]["parts"][0]["text"],
        "Be brief."
    );
    assert_eq!(o.received.last().body["messages"][0]["role"], "system");
}

#[tokio::test]
async fn a_rotation_fails_over_from_a_broken_entry() {
    let bad = OpenAiMock::start().await;
    bad.set_fault(Fault::Status(
        500,
        r#"{"error":{"message":"boom","type":"server_error"}}"#.into(),
    ));
    let good = AgentMock::start("from the good one").await;
    let cfg = ConfigDir::new(json!({
        "bad": provider("openai", &bad.endpoint, Some("k1"), &["m"]),
        "good": provider("openai", &good.endpoint, Some("k2"), &["m"]),
    }));
    cfg.write(
        "rotations.json",
        &json!({"rotations": {"r": {"model_name": "r", "providers": [
            {"provider_id": "bad", "weight": 1000, "models": [{"name": "m"}]},
            {"provider_id": "good", "weight": 0, "models": [{"name": "m"}]}]}}}),
    );
    let gw = Gateway::start_with(cfg).await;
    for stream in [false, true] {
        let resp = post(&gw, "/v1/messages", &simple("rotation/r", stream)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-aisbf-provider"], "good");
        let text = resp.text().await.unwrap();
        if stream {
            assert_eq!(text_of(&events(&text)), "from the good one");
        } else {
            let m: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(m["content"][0]["text"], "from the good one");
        }
    }
    assert_eq!(bad.received.count(), 2);
}

#[tokio::test]
async fn an_autoselect_routes_messages() {
    let selector =
        ScriptedMock::start("<aisbf_model_autoselection>c/code-1</aisbf_model_autoselection>")
            .await;
    let coder = AgentMock::start("code answer").await;
    let cfg = ConfigDir::new(json!({
        "sel": provider("openai", &selector.endpoint, Some("s"), &["pick"]),
        "c": provider("openai", &coder.endpoint, Some("c"), &["code-1"]),
    }));
    cfg.write(
        "autoselect.json",
        &json!({"autoselect": {"auto": {"model_name": "auto", "description": "d",
            "selection_model": "sel/pick", "fallback": "c/code-1",
            "available_models": [{"model_id": "c/code-1", "description": "Programming"}]}}}),
    );
    let gw = Gateway::start_with(cfg).await;
    let resp = post(&gw, "/v1/messages", &simple("autoselect/auto", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-aisbf-autoselect"], "c/code-1");
    assert_eq!(text_of(&events(&resp.text().await.unwrap())), "code answer");
    assert_eq!(selector.received.count(), 1);
    assert_eq!(coder.received.last().body["model"], "code-1");
}

#[tokio::test]
async fn bad_input_is_an_anthropic_400_naming_the_field() {
    let (mock, gw) = openai_gateway().await;
    let user = |c: Value| json!({"role": "user", "content": c});
    let cases = [
        (
            json!({"model": "claude-x", "messages": [user(json!("hi"))]}),
            "max_tokens",
        ),
        (
            json!({"model": "claude-x", "max_tokens": 5, "messages": [user(json!("a")), user(json!("b"))]}),
            "alternate",
        ),
        (
            json!({"model": "claude-x", "max_tokens": 5, "messages": [user(json!([
                {"type": "tool_result", "tool_use_id": "toolu_missing", "content": "x"}]))]}),
            "messages[0].content[0].tool_use_id",
        ),
        (
            json!({"model": "claude-x", "max_tokens": 5, "messages": [user(json!([{"type": "hologram"}]))]}),
            "hologram",
        ),
        (
            json!({"model": "claude-x", "max_tokens": 5, "messages": []}),
            "messages",
        ),
        (
            json!({"max_tokens": 5, "messages": [user(json!("hi"))]}),
            "model",
        ),
    ];
    for (body, needle) in cases {
        let resp = post(&gw, "/v1/messages", &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_anthropic_error(&v, "invalid_request_error");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{needle}: {v}"
        );
    }
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_anthropic_error(&v, "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body: "),
        "{v}"
    );
    let cfg = ConfigDir::new(json!({}));
    cfg.aisbf(json!({"limits": {"max_body_bytes": 1000}}));
    let small = Gateway::start_with(cfg).await;
    let big = json!({"model": "m", "max_tokens": 5, "messages": [user(json!("x".repeat(5000)))]});
    let resp = post(&small, "/v1/messages", &big).await;
    assert_eq!(resp.status(), 413);
    assert_anthropic_error(&resp.json().await.unwrap(), "request_too_large");
    assert_eq!(mock.received.count(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn errors_have_anthropic_types_and_statuses() {
    let (_mock, gw) = openai_gateway().await;
    let resp = post(&gw, "/v1/messages", &simple("nope/none", false)).await;
    assert_eq!(resp.status(), 404);
    assert_anthropic_error(&resp.json().await.unwrap(), "not_found_error");
    let resp = post(&gw, "/v1/messages", &simple("broken", false)).await;
    assert_eq!(resp.status(), 404, "an alias to an unknown target");
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model_aliases.broken"),
        "{v}"
    );

    let limited = OpenAiMock::start().await;
    limited.set_fault(Fault::RateLimited(7));
    let gw = Gateway::start_with(ConfigDir::new(json!({
        "oa": provider("openai", &limited.endpoint, Some("k"), &["m"]),
    })))
    .await;
    let resp = post(&gw, "/v1/messages", &simple("oa/m", false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_anthropic_error(&resp.json().await.unwrap(), "rate_limit_error");
    // Now cooling down: 503 overloaded_error with retry-after.
    let resp = post(&gw, "/v1/messages", &simple("oa/m", true)).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_anthropic_error(&resp.json().await.unwrap(), "overloaded_error");

    // An upstream 4xx keeps its status, with the type that status has.
    let refusing = OpenAiMock::start().await;
    refusing.set_fault(Fault::Status(
        403,
        r#"{"error":{"message":"not allowed","type":"permission"}}"#.into(),
    ));
    let gw = Gateway::start_with(ConfigDir::new(json!({
        "oa": provider("openai", &refusing.endpoint, Some("k"), &["m"]),
    })))
    .await;
    let resp = post(&gw, "/v1/messages", &simple("oa/m", false)).await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_anthropic_error(&v, "permission_error");
    assert_eq!(v["error"]["message"], "not allowed");
}

#[tokio::test]
async fn a_failure_mid_stream_is_one_error_event() {
    let mock = OpenAiMock::start().await;
    mock.set_fault(Fault::BreakMidStream);
    let gw = Gateway::start_with(ConfigDir::new(json!({
        "oa": provider("openai", &mock.endpoint, Some("k"), &["m"]),
    })))
    .await;
    let resp = post(&gw, "/v1/messages", &simple("oa/m", true)).await;
    assert_eq!(resp.status(), 200);
    let ev = events(&resp.text().await.unwrap());
    assert_eq!(ev[0].0, "message_start");
    let errors: Vec<_> = ev.iter().filter(|(n, _)| n == "error").collect();
    assert_eq!(errors.len(), 1, "{ev:?}");
    assert_eq!(ev.last().unwrap().0, "error", "nothing after the error");
    assert_eq!(errors[0].1["type"], "error");
    assert_eq!(errors[0].1["error"]["type"], "api_error");
}

#[tokio::test]
async fn gateway_auth_accepts_x_api_key_and_answers_in_anthropic_shape() {
    let (_mock, gw) = {
        let mock = AgentMock::start("PONG").await;
        let cfg =
            ConfigDir::new(json!({"oa": provider("openai", &mock.endpoint, Some("k"), &["m"])}));
        cfg.aisbf(json!({"auth": {"enabled": true, "tokens": ["gw-token-1"]}}));
        (mock, Gateway::start_with(cfg).await)
    };
    let send = |h: Option<(&'static str, &'static str)>| {
        let mut r = client()
            .post(gw.url("/v1/messages"))
            .json(&simple("oa/m", false));
        if let Some((k, v)) = h {
            r = r.header(k, v);
        }
        r.send()
    };
    assert_eq!(
        send(Some(("x-api-key", "gw-token-1")))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(Some(("authorization", "Bearer gw-token-1")))
            .await
            .unwrap()
            .status(),
        200
    );
    let resp = send(Some(("x-api-key", "wrong"))).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_anthropic_error(&resp.json().await.unwrap(), "authentication_error");
    let resp = send(None).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_anthropic_error(&resp.json().await.unwrap(), "authentication_error");
}

#[tokio::test]
async fn aliases_are_listed_and_count_tokens_counts_locally() {
    let (_mock, gw) = openai_gateway().await;
    let models = get_json(&gw.url("/v1/models")).await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"claude-exact"), "{ids:?}");
    assert!(
        !ids.contains(&"claude-*") && !ids.contains(&"broken"),
        "{ids:?}"
    );

    let short = post(
        &gw,
        "/v1/messages/count_tokens",
        &simple("claude-haiku", false),
    )
    .await;
    assert_eq!(short.status(), 200);
    let short = short.json::<Value>().await.unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    let long = post(
        &gw,
        "/api/v1/messages/count_tokens",
        &claude_code_like(false, "claude-haiku"),
    )
    .await;
    let long = long.json::<Value>().await.unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    assert!(short > 0 && long > short, "{short} {long}");
    // Aliases are the /v1 namespace's, Chat Completions included.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "claude-exact", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-aisbf-model"], "gpt-4o");
    // count_tokens does not need max_tokens.
    let mut body = simple("claude-haiku", false);
    body.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(
        post(&gw, "/v1/messages/count_tokens", &body).await.status(),
        200
    );
}

// ---------- the official anthropic Python SDK ----------

#[tokio::test]
async fn the_anthropic_sdk_works_through_aisbf() {
    let (mock, gw) = openai_gateway().await;
    let base = gw.url("");
    let text = anthropic_sdk(&base, "claude-sonnet-4-5", "text").await;
    assert_eq!(text["text"], "PONG");
    assert_eq!(text["stop_reason"], "end_turn");
    assert_eq!(text["usage"]["input_tokens"], 17);

    let stream = anthropic_sdk(&base, "claude-sonnet-4-5", "stream").await;
    assert_eq!(stream["text"], "PONG");
    assert_eq!(stream["usage"]["output_tokens"], 5);
    assert_eq!(stream["events"][0], "message_start");
    assert_eq!(
        stream["events"].as_array().unwrap().last().unwrap(),
        "message_stop"
    );

    let tools = anthropic_sdk(&base, "claude-sonnet-4-5", "tools").await;
    assert_eq!(
        tools["calls"],
        json!([{"file_path": "/tmp/notes.txt"}, {"file_path": "/tmp/notes.txt"}])
    );
    assert_eq!(tools["ids"], json!([TOOL_CALL_ID, TOOL_CALL_ID]));
    assert_eq!(tools["answer"], "TOOL SAID: the notes say 42");
    let follow = mock
        .received
        .all()
        .into_iter()
        .find(|r| {
            r.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["role"] == "tool")
        })
        .expect("the tool result reached the upstream");
    let tool_msg = follow.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()
        .clone();
    assert_eq!(tool_msg["tool_call_id"], TOOL_CALL_ID);

    let errors = anthropic_sdk(&base, "claude-sonnet-4-5", "errors").await;
    assert_eq!(errors["not_found"], "NotFoundError");
    assert_eq!(errors["bad_request"], "BadRequestError");
    assert!(errors["bad_request_message"]
        .as_str()
        .unwrap()
        .contains("alternate"));

    let limited = OpenAiMock::start().await;
    limited.set_fault(Fault::RateLimited(30));
    let gw = Gateway::start_with(ConfigDir::new(json!({
        "oa": provider("openai", &limited.endpoint, Some("k"), &["m"]),
    })))
    .await;
    let e = anthropic_sdk(&gw.url(""), "oa/m", "error").await;
    assert_eq!(e, json!({"error": "RateLimitError", "status": 429}));
    let e = anthropic_sdk(&gw.url(""), "oa/m", "error").await;
    assert_eq!(e["status"], 503);
}

#[tokio::test]
async fn a_condensed_request_to_an_anthropic_target_takes_the_translated_path() {
    let mock = AnthropicMock::start().await;
    let mut p = provider(
        "anthropic",
        &mock.endpoint,
        Some("sk-ant"),
        &["claude-real"],
    );
    p["models"][0] = json!({"name": "claude-real", "context_size": 400, "condense_context": 50,
                            "condense_method": "algorithmic", "max_tokens": 100});
    let gw = Gateway::start_with(ConfigDir::new(json!({ "claude": p }))).await;
    // An old turn full of repeated lines (the algorithmic method folds them); the last
    // message is small and protected.
    let log = "ERROR disk full on /var\n".repeat(300);
    let body = json!({"model": "claude/claude-real", "max_tokens": 50, "future_field": true,
        "messages": [{"role": "user", "content": format!("Here is a log:\n{log}")},
                     {"role": "assistant", "content": "I see the log."},
                     {"role": "user", "content": "What failed?"}]});
    let resp = post(&gw, "/v1/messages", &body).await;
    let status = resp.status();
    let m: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["type"], "message");
    assert_eq!(
        m["model"], "claude/claude-real",
        "translated back: the client's model name"
    );
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    let got = mock.received.last();
    assert!(
        got.body.get("future_field").is_none(),
        "not the client's body: {}",
        got.body
    );
    assert!(
        got.body.to_string().len() < body.to_string().len(),
        "the upstream got the condensed request"
    );
    assert!(m["usage"]["effective_context"].as_u64().unwrap() <= 400);
}

#[tokio::test]
async fn an_anthropic_error_event_mid_stream_is_forwarded_once_and_counted() {
    let mock = AnthropicMock::start().await;
    mock.set_error_event(true);
    let gw = Gateway::start_with(ConfigDir::new(json!({
        "claude": provider("anthropic", &mock.endpoint, Some("sk-ant"), &["claude-real"]),
    })))
    .await;
    let resp = post(&gw, "/v1/messages", &simple("claude/claude-real", true)).await;
    assert_eq!(resp.status(), 200);
    let ev = events(&resp.text().await.unwrap());
    assert_eq!(ev[0].0, "message_start");
    assert_eq!(ev.iter().filter(|(n, _)| n == "error").count(), 1);
    assert_eq!(ev.last().unwrap().1["error"]["type"], "overloaded_error");
    let status = get_json(&gw.url("/")).await;
    assert_eq!(
        status["provider_status"]["claude"]["failures"], 1,
        "{status}"
    );
}

#[tokio::test]
async fn the_anthropic_sdk_works_with_every_target_kind() {
    let anthropic = AnthropicMock::start().await;
    let g = GeminiMock::start().await;
    let o = OllamaMock::start().await;
    let good = AgentMock::start("rotated").await;
    let bad = OpenAiMock::start().await;
    bad.set_fault(Fault::Status(503, "{}".into()));
    let cfg = ConfigDir::new(json!({
        "claude": provider("anthropic", &anthropic.endpoint, Some("sk-ant"), &["claude-real"]),
        "g": provider("google", &g.endpoint, Some("gk"), &["gemini-2.5-flash"]),
        "local": provider("ollama", &o.endpoint, None, &["llama3.2"]),
        "good": provider("openai", &good.endpoint, Some("k"), &["m"]),
        "bad": provider("openai", &bad.endpoint, Some("k"), &["m"]),
    }));
    cfg.write(
        "rotations.json",
        &json!({"rotations": {"r": {"model_name": "r", "providers": [
            {"provider_id": "bad", "weight": 1000, "models": [{"name": "m"}]},
            {"provider_id": "good", "weight": 0, "models": [{"name": "m"}]}]}}}),
    );
    let gw = Gateway::start_with(cfg).await;
    for (model, reply) in [
        (
            "claude/claude-real",
            support::anthropic_mock::REPLY.concat(),
        ),
        ("g/gemini-2.5-flash", support::gemini_mock::REPLY.concat()),
        ("local/llama3.2", ollama_mock::REPLY.concat()),
        ("rotation/r", "rotated".to_string()),
    ] {
        let out = anthropic_sdk(&gw.url(""), model, "text").await;
        assert_eq!(out["text"], reply.as_str(), "{model}: {out}");
        let out = anthropic_sdk(&gw.url(""), model, "stream").await;
        assert_eq!(out["text"], reply.as_str(), "{model}: {out}");
    }
}

#[tokio::test]
async fn max_tokens_is_lowered_to_the_configured_model_limit() {
    let mock = AgentMock::start("PONG").await;
    let mut p = provider("openai", &mock.endpoint, Some("k"), &["gpt-4o"]);
    p["models"][0]["max_tokens"] = json!(16384);
    let gw = Gateway::start_with(ConfigDir::new(json!({ "oa": p }))).await;
    let resp = post(&gw, "/v1/messages", &claude_code_like(false, "oa/gpt-4o")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.received.last().body["max_tokens"], 16384);
    let mut small = simple("oa/gpt-4o", false);
    small["max_tokens"] = json!(10);
    post(&gw, "/v1/messages", &small).await;
    assert_eq!(
        mock.received.last().body["max_tokens"],
        10,
        "a smaller ask is kept"
    );
}
