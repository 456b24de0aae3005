//! The Anthropic adapter against a mock speaking the real Messages API: what the upstream
//! saw (translated request, headers) and what the client got (OpenAI bodies and streams).

mod support;

use std::time::Duration;

use futures::StreamExt;

use serde_json::{json, Value};
use support::anthropic_mock::{
    error_body, tool_use_id, AnthropicMock, CACHE_READ_TOKENS, CITIES, INPUT_TOKENS, MODELS,
    OUTPUT_TOKENS, REPLY, TOOL_PREAMBLE,
};
use support::*;

const KEY: &str = "sk-ant-upstream-secret-456";
const PROMPT: u64 = INPUT_TOKENS + CACHE_READ_TOKENS;
const PIXEL_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/// Provider `claude` with a configured max_tokens on its first model only.
async fn setup() -> (AnthropicMock, Gateway) {
    let mock = AnthropicMock::start().await;
    let mut p = provider(
        "anthropic",
        &mock.endpoint,
        Some(KEY),
        &["claude-sonnet-4-5", "claude-small"],
    );
    p["models"][0]["max_tokens"] = json!(1234);
    let gw = Gateway::start_with(ConfigDir::new(json!({ "claude": p }))).await;
    (mock, gw)
}

fn weather_tool(name: &str) -> Value {
    json!({"type": "function", "function": {"name": name, "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

async fn chat(gw: &Gateway, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer client-own-key")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn request_is_translated_to_the_messages_api() {
    let (mock, gw) = setup().await;
    let body = json!({
        "model": "claude/claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Look at these"},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PIXEL_B64}")}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_prev", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "toolu_prev", "content": "sunny"},
            {"role": "user", "content": "And now?"}
        ],
        "tools": [weather_tool("get_weather")],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.5, "top_p": 0.8, "stop": ["STOP"], "max_tokens": 300,
        "seed": 7, "frequency_penalty": 0.1, "betas": ["prompt-caching-2024-07-31"]
    });
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer client-own-key")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-aisbf-provider"], "claude");
    let v: Value = resp.json().await.unwrap();

    let seen = mock.received.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(seen.header("x-api-key"), Some(KEY));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        seen.header("anthropic-beta"),
        Some("interleaved-thinking-2025-05-14,prompt-caching-2024-07-31"),
        "the client's anthropic-beta header and body betas both reach Anthropic"
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(
        seen.header("authorization"),
        None,
        "the client's key stays with aisbf"
    );
    assert_eq!(
        seen.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 300,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Look at these"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL_B64}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_prev", "name": "get_weather", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_prev", "content": "sunny"},
                    {"type": "text", "text": "And now?"}]}
            ],
            "tools": [{"name": "get_weather", "description": "Weather for a city", "input_schema":
                {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "temperature": 0.5, "top_p": 0.8, "stop_sequences": ["STOP"]
        }),
        "seed, frequency_penalty and betas never reach the body"
    );

    // The mock answered with a tool call: translated back to OpenAI's shape.
    assert_schema("CreateChatCompletionResponse", &v);
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], TOOL_PREAMBLE);
    assert_eq!(m["tool_calls"][0]["id"], tool_use_id(0));
    assert_eq!(m["tool_calls"][0]["type"], "function");
    assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(
        m["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"city": CITIES[0]}));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["usage"]["prompt_tokens"], PROMPT);
    assert_eq!(v["usage"]["completion_tokens"], OUTPUT_TOKENS);
    assert_eq!(v["usage"]["total_tokens"], PROMPT + OUTPUT_TOKENS);
    assert_eq!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"],
        CACHE_READ_TOKENS
    );
    let expected = gw.state.tokens.count_messages(
        "claude-sonnet-4-5",
        &serde_json::from_value::<Vec<aisbf::api::openai::Message>>(body["messages"].clone())
            .unwrap(),
    );
    assert_eq!(v["usage"]["effective_context"], expected);
}

#[tokio::test]
async fn max_tokens_defaults_to_model_config_then_4096() {
    let (mock, gw) = setup().await;
    for (model, expected) in [("claude-sonnet-4-5", 1234), ("claude-small", 4096)] {
        let resp = client()
            .post(gw.url("/api/claude/chat/completions"))
            .json(&json!({"model": model, "messages": user("Hi")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let seen = mock.received.last();
        assert_eq!(seen.body["max_tokens"], expected, "{model}");
        assert_eq!(
            seen.body["messages"],
            json!([{"role": "user", "content": "Hi"}])
        );
        assert!(seen.body.get("system").is_none());
    }
    chat(
        &gw,
        &json!({"model": "claude/claude-small", "messages": user("Hi"), "max_completion_tokens": 55}),
    )
    .await;
    assert_eq!(mock.received.last().body["max_tokens"], 55);
}

#[tokio::test]
async fn non_stream_text_and_finish_reasons() {
    let (mock, gw) = setup().await;
    for (stop_reason, finish) in [
        (None, "stop"),
        (Some("max_tokens"), "length"),
        (Some("stop_sequence"), "stop"),
        (Some("refusal"), "content_filter"),
    ] {
        mock.set_stop_reason(stop_reason);
        let resp = chat(
            &gw,
            &json!({"model": "claude/claude-small", "messages": user("Hi")}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_schema("CreateChatCompletionResponse", &v);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["id"], "msg_01MockMessage");
        assert_eq!(v["model"], "claude-small");
        assert_eq!(v["choices"][0]["message"]["content"], REPLY.concat());
        assert!(v["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], finish, "{stop_reason:?}");
        assert_eq!(v["usage"]["total_tokens"], PROMPT + OUTPUT_TOKENS);
        assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn stream_text_is_translated_event_by_event() {
    let (mock, gw) = setup().await;
    let resp = chat(
        &gw,
        &json!({"model": "claude/claude-small", "stream": true, "messages": user("Hi")}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let chunks = assert_openai_stream(&text);
    assert_eq!(mock.received.last().body["stream"], true);

    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(stream_text(&chunks), REPLY.concat());
    let content_chunks = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert_eq!(content_chunks, REPLY.len(), "one chunk per text_delta");
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(|_| c))
        .collect();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0]["choices"][0]["finish_reason"], "stop");
    for c in &chunks {
        assert_eq!(c["id"], "msg_01MockStream");
        assert_eq!(c["model"], "claude-small");
    }
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], PROMPT);
    assert_eq!(usage["completion_tokens"], OUTPUT_TOKENS);
    assert_eq!(usage["total_tokens"], PROMPT + OUTPUT_TOKENS);
    let expected = gw.state.tokens.count_messages(
        "claude-small",
        &[aisbf::api::openai::Message::new("user", "Hi")],
    );
    assert_eq!(usage["effective_context"], expected);

    mock.set_stop_reason(Some("max_tokens"));
    let text = chat(
        &gw,
        &json!({"model": "claude/claude-small", "stream": true, "messages": user("Hi")}),
    )
    .await
    .text()
    .await
    .unwrap();
    let chunks = assert_openai_stream(&text);
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "length"));
}

#[tokio::test]
async fn stream_tool_calls_keep_their_index_and_ids() {
    let (mock, gw) = setup().await;
    let text = chat(
        &gw,
        &json!({"model": "claude/claude-small", "stream": true, "messages": user("Weather?"),
                "tools": [weather_tool("get_weather"), weather_tool("get_forecast")]}),
    )
    .await
    .text()
    .await
    .unwrap();
    let chunks = assert_openai_stream(&text);
    assert_eq!(
        mock.received.last().body["tools"][1]["name"],
        "get_forecast"
    );
    assert_eq!(stream_text(&chunks), TOOL_PREAMBLE);

    // Reassemble as the SDK does, and check the first delta of each call is complete.
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for c in &chunks {
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                assert_eq!(tc["type"], "function", "first delta of call {i}: {tc}");
                assert_eq!(tc["function"]["arguments"], "", "first delta of call {i}");
                calls.push((
                    tc["id"].as_str().unwrap().to_string(),
                    tc["function"]["name"].as_str().unwrap().to_string(),
                    String::new(),
                ));
            } else {
                assert!(i < calls.len(), "index {i} skipped ahead");
                assert!(tc.get("id").is_none(), "only the first delta has the id");
                calls[i].2 += tc["function"]["arguments"].as_str().unwrap();
            }
        }
    }
    assert_eq!(calls.len(), 2);
    for (n, name) in ["get_weather", "get_forecast"].iter().enumerate() {
        assert_eq!(calls[n].0, tool_use_id(n));
        assert_eq!(calls[n].1, *name);
        let args: Value = serde_json::from_str(&calls[n].2).unwrap();
        assert_eq!(args, json!({"city": CITIES[n]}));
    }
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["tool_calls"]);
}

/// A fresh mock and gateway per fault: a failure may put the provider in cooldown.
async fn answer_to(fault: Fault, stream: bool) -> (u16, Option<String>, Value) {
    let (mock, gw) = setup().await;
    mock.set_fault(fault);
    let resp = chat(
        &gw,
        &json!({"model": "claude/claude-small", "stream": stream, "messages": user("Hi")}),
    )
    .await;
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    assert!(!text.contains(KEY), "the key leaked: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_schema("ErrorResponse", &v);
    (status, retry, v)
}

#[tokio::test]
async fn client_errors_pass_through() {
    let (status, _, v) = answer_to(
        Fault::Status(
            400,
            error_body(
                "invalid_request_error",
                "messages.0.content: Input should be a valid list",
            ),
        ),
        false,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Input should be a valid list"));
    let (status, _, v) = answer_to(
        Fault::Status(404, error_body("not_found_error", "model: claude-small")),
        true,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["type"], "not_found_error");
    let (status, _, v) = answer_to(
        Fault::Status(401, error_body("authentication_error", "invalid x-api-key")),
        false,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["type"], "authentication_error");
}

#[tokio::test]
async fn rate_limits_and_provider_faults() {
    let (status, retry, v) = answer_to(Fault::RateLimited(17), false).await;
    assert_eq!((status, retry.as_deref()), (429, Some("17")));
    assert_eq!(v["error"]["type"], "rate_limit_error");
    for (fault, stream) in [
        (
            Fault::Status(529, error_body("overloaded_error", "Overloaded")),
            false,
        ),
        (
            Fault::Status(529, error_body("overloaded_error", "Overloaded")),
            true,
        ),
        (
            Fault::Status(500, error_body("api_error", "Internal server error")),
            false,
        ),
        (Fault::Malformed, false),
        (Fault::Malformed, true),
        (Fault::Reset, true),
    ] {
        let what = format!("{fault:?} stream={stream}");
        let (status, _, v) = answer_to(fault, stream).await;
        assert_eq!(status, 502, "{what}");
        assert_eq!(v["error"]["type"], "upstream_error", "{what}");
    }
}

/// The stream of an answer that failed after it started: chunks, one error event, no [DONE].
fn split_failed_stream(text: &str) -> (Vec<Value>, Value) {
    let data = sse_data(text);
    assert!(!data.iter().any(|d| d == "[DONE]"), "{text}");
    let (last, chunks) = data.split_last().unwrap();
    let chunks: Vec<Value> = chunks
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for c in &chunks {
        assert_schema("CreateChatCompletionStreamResponse", c);
    }
    let err: Value = serde_json::from_str(last).unwrap();
    assert_schema("ErrorResponse", &err);
    (chunks, err)
}

#[tokio::test]
async fn error_event_after_200_becomes_one_in_band_error() {
    let (mock, gw) = setup().await;
    mock.set_error_event(true);
    let resp = chat(
        &gw,
        &json!({"model": "claude/claude-small", "stream": true, "messages": user("Hi")}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (chunks, err) = split_failed_stream(&resp.text().await.unwrap());
    assert_eq!(stream_text(&chunks), REPLY[0]);
    assert_eq!(err["error"]["type"], "upstream_error");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Overloaded"));

    let (mock, gw) = setup().await;
    mock.set_fault(Fault::BreakMidStream);
    let resp = chat(
        &gw,
        &json!({"model": "claude/claude-small", "stream": true, "messages": user("Hi")}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (chunks, err) = split_failed_stream(&resp.text().await.unwrap());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(err["error"]["message"].is_string());
}

#[tokio::test]
async fn models_from_upstream_paged_with_fallback() {
    let (mock, gw) = setup().await;
    mock.set_models_page_cap(Some(2));
    let v: Value = get_json(&gw.url("/api/claude/models")).await;
    assert_schema("ListModelsResponse", &v);
    let ids = model_ids(&v);
    assert_eq!(ids, MODELS.iter().map(|m| m.0).collect::<Vec<_>>());
    assert_eq!(v["data"][0]["owned_by"], "anthropic");
    assert_eq!(v["data"][0]["created"], 1_759_104_000); // 2025-09-29T00:00:00Z
    assert_eq!(v["data"][0]["display_name"], MODELS[0].1);
    let reqs = mock.received.all();
    assert_eq!(reqs.len(), 2, "two pages");
    assert_eq!(reqs[0].path, "/v1/models");
    assert_eq!(reqs[0].header("x-api-key"), Some(KEY));
    assert_eq!(reqs[0].header("anthropic-version"), Some("2023-06-01"));
    assert!(reqs[1]
        .query
        .as_deref()
        .unwrap()
        .contains(&format!("after_id={}", MODELS[1].0)));

    mock.set_fault(Fault::Status(500, error_body("api_error", "boom")));
    let v: Value = get_json(&gw.url("/api/claude/models")).await;
    assert_schema("ListModelsResponse", &v);
    assert_eq!(v["data"][0]["id"], "claude-sonnet-4-5");
    assert_eq!(v["data"][1]["id"], "claude-small");
}

#[tokio::test]
async fn slow_upstream_still_streams() {
    // The mock holds the rest of its answer until the client has the first text: a gateway
    // that buffered the stream could not deliver it, and the wait below would time out.
    let (mock, gw) = setup().await;
    let gate = mock.hold_after_first_text();
    let resp = chat(
        &gw,
        &json!({"model": "claude/claude-small", "stream": true, "messages": user("Hi")}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let first = tokio::time::timeout(Duration::from_secs(30), async {
        while !text.contains(&format!("\"content\":\"{}\"", REPLY[0])) {
            let bytes = body.next().await.expect("more body").unwrap();
            text.push_str(std::str::from_utf8(&bytes).unwrap());
        }
    })
    .await;
    assert!(
        first.is_ok(),
        "the first text arrived before the upstream finished: {text}"
    );
    gate.notify_one();
    while let Some(bytes) = body.next().await {
        text.push_str(std::str::from_utf8(&bytes.unwrap()).unwrap());
    }
    assert_eq!(stream_text(&assert_openai_stream(&text)), REPLY.concat());
}

#[tokio::test]
async fn official_openai_sdk_against_anthropic() {
    let (mock, gw) = setup().await;
    let model = "claude/claude-sonnet-4-5";

    let v = openai_sdk(&gw.base_v1(), model, "text").await;
    assert_eq!(v["content"], REPLY.concat());
    assert_eq!(v["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], PROMPT);
    assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);
    let seen = mock.received.last();
    assert_eq!(seen.body["system"], "You are terse.");
    assert_eq!(seen.header("authorization"), None);

    let v = openai_sdk(&gw.base_v1(), model, "stream").await;
    assert_eq!(v["content"], REPLY.concat());
    assert_eq!(v["usage"]["total_tokens"], PROMPT + OUTPUT_TOKENS);
    assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);

    let expected_calls =
        json!([{"id": tool_use_id(0), "name": "get_weather", "arguments": {"city": CITIES[0]}}]);
    let v = openai_sdk(&gw.base_v1(), model, "tools").await;
    assert_eq!(v["tool_calls"], expected_calls);
    assert_eq!(v["finish_reason"], "tool_calls");

    let v = openai_sdk(&gw.base_v1(), model, "tools_stream").await;
    assert_eq!(v["tool_calls"], expected_calls);
    assert_eq!(v["finish_reason"], "tool_calls");
    assert_eq!(v["usage"]["completion_tokens"], OUTPUT_TOKENS);

    let v = openai_sdk(&gw.base_v1(), model, "image").await;
    assert_eq!(v["content"], REPLY.concat());
    let image = &mock.received.last().body["messages"][0]["content"][1];
    assert_eq!(image["type"], "image");
    assert_eq!(image["source"]["type"], "base64");
    assert_eq!(image["source"]["media_type"], "image/png");
}
