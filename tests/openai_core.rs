//! The gateway core against a mock OpenAI upstream: bodies, headers, what the upstream saw.

mod support;

use serde_json::{json, Value};
use support::openai_mock::{OpenAiMock, REPLY};
use support::*;

async fn setup() -> (OpenAiMock, Gateway) {
    let mock = OpenAiMock::start().await;
    mock.require_key("sk-upstream-secret-123");
    let cfg = ConfigDir::new(json!({
        "up": provider("openai", &mock.endpoint, Some("sk-upstream-secret-123"), &["gpt-4o"]),
    }));
    (mock.clone(), Gateway::start_with(cfg).await)
}

#[tokio::test]
async fn non_stream_passthrough_with_effective_context() {
    let (mock, gw) = setup().await;
    let body = json!({
        "model": "up/gpt-4o",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "temperature": 0.3, "seed": 42, "user": "alice",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    });
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer client-own-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-aisbf-provider"], "up");
    assert_eq!(resp.headers()["x-aisbf-model"], "gpt-4o");
    let v: Value = resp.json().await.unwrap();
    assert_schema("CreateChatCompletionResponse", &v);
    assert_eq!(v["choices"][0]["message"]["content"], REPLY.concat());
    assert_eq!(v["system_fingerprint"], "fp_mock");
    let expected = gw.state.tokens.count_messages(
        "gpt-4o",
        &serde_json::from_value::<Vec<aisbf::api::openai::Message>>(body["messages"].clone())
            .unwrap(),
    );
    assert_eq!(v["usage"]["effective_context"], expected);
    assert_eq!(v["usage"]["prompt_tokens"], 11);

    let seen = mock.received.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-upstream-secret-123")
    );
    let mut expected_body = body.clone();
    expected_body["model"] = json!("gpt-4o");
    assert_eq!(
        seen.body, expected_body,
        "every field but model reaches the upstream unchanged"
    );
}

#[tokio::test]
async fn stream_forwarded_with_final_usage_chunk() {
    let (mock, gw) = setup().await;
    let resp = client()
        .post(gw.url("/api/up/chat/completions"))
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let chunks = assert_openai_stream(&text);
    assert_eq!(stream_text(&chunks), REPLY.concat());
    let last = chunks.last().unwrap();
    assert_eq!(last["usage"]["prompt_tokens"], 11);
    assert_eq!(last["id"], "chatcmpl-mock1");
    assert!(last["usage"]["effective_context"].as_u64().unwrap() > 0);
    assert_eq!(
        mock.received.last().body["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test]
async fn stream_without_upstream_usage_still_gets_a_usage_chunk() {
    let (mock, gw) = setup().await;
    mock.set_send_usage(false);
    let text = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "up/gpt-4o", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks = assert_openai_stream(&text);
    let u = &chunks.last().unwrap()["usage"];
    assert_eq!(u["prompt_tokens"], u["effective_context"]);
}

#[tokio::test]
async fn models_lists() {
    let (_mock, gw) = setup().await;
    let v: Value = get_json(&gw.url("/api/up/models")).await;
    assert_schema("ListModelsResponse", &v);
    assert_eq!(v["data"][0]["id"], "gpt-4o");
    for path in ["/v1/models", "/api/v1/models", "/api/models"] {
        let v: Value = get_json(&gw.url(path)).await;
        assert_schema("ListModelsResponse", &v);
        assert!(
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["id"] == "up/gpt-4o"),
            "{path}: {v}"
        );
    }
}

#[tokio::test]
async fn official_openai_sdk_text_and_stream() {
    let (_mock, gw) = setup().await;
    let v = openai_sdk(&gw.base_v1(), "up/gpt-4o", "text").await;
    assert_eq!(v["content"], REPLY.concat());
    assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);
    let v = openai_sdk(&gw.base_v1(), "up/gpt-4o", "stream").await;
    assert_eq!(v["content"], REPLY.concat());
    assert_eq!(v["usage"]["total_tokens"], 14);
    assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);
}

/// An upstream that answers every chat request with `body`, byte for byte.
async fn fixed_upstream(body: &'static str) -> Gateway {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }),
    );
    let endpoint = format!("{}/v1", serve_app(app).await);
    let cfg = ConfigDir::new(json!({"up": provider("openai", &endpoint, None, &["m"])}));
    Gateway::start_with(cfg).await
}

async fn ask(gw: &Gateway) -> (String, Value) {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "up/m", "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_schema("CreateChatCompletionResponse", &v);
    (text, v)
}

#[tokio::test]
async fn complete_answers_go_back_byte_for_byte_with_effective_context_spliced() {
    // Key order, spacing, escapes and unknown fields as the upstream wrote them.
    const UP: &str = r#"{"object":"chat.completion", "id":"c-1","created":7,"model":"m","choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"role":"assistant","content":"caf\u00e9 \"x\"","refusal":null}}],"usage": {"total_tokens":5,"prompt_tokens":3,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1}},"service_tier":"default"}"#;
    let gw = fixed_upstream(UP).await;
    let (text, v) = ask(&gw).await;
    let n = v["usage"]["effective_context"]
        .as_u64()
        .expect("effective_context");
    assert!(n > 0);
    assert_eq!(
        text,
        UP.replace(
            r#""usage": {"#,
            &format!(r#""usage": {{"effective_context":{n},"#)
        )
    );
}

#[tokio::test]
async fn incomplete_answers_are_completed_by_the_typed_path() {
    // No logprobs, refusal or usage: the gateway fills them in (and counts the usage).
    const UP: &str = r#"{"id":"c-2","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}]}"#;
    let gw = fixed_upstream(UP).await;
    let (_, v) = ask(&gw).await;
    assert_eq!(v["choices"][0]["message"]["content"], "hello there");
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);
}
