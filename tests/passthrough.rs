//! Native passthrough in the router: a request that carries the client's own Messages body
//! reaches an Anthropic candidate byte for byte (only `model` replaced, protocol headers
//! forwarded), and the upstream's JSON or events come back as sent; failover and health
//! work as on the translated path.

mod support;

use std::sync::Arc;

use aisbf::api::native::{NativeFormat, NativeRequest};
use aisbf::api::openai::{ChatRequest, Message};
use aisbf::providers::passthrough::NativeOutcome;
use aisbf::providers::ChatOutcome;
use aisbf::routing::{self, Target};
use futures::StreamExt;
use serde_json::{json, Value};
use support::anthropic_mock::{AnthropicMock, REPLY};
use support::*;

fn native_request(body: &Value, stream: bool) -> ChatRequest {
    let mut req = ChatRequest {
        model: "ignored".into(),
        messages: vec![Message::new("user", "hi")],
        stream: Some(stream),
        extra: Default::default(),
        anthropic_beta: None,
        native: None,
    };
    req.native = Some(Arc::new(NativeRequest {
        format: NativeFormat::AnthropicMessages,
        body: serde_json::to_vec(body).unwrap().into(),
        headers: vec![
            ("anthropic-version".into(), "2023-06-01".into()),
            (
                "anthropic-beta".into(),
                "context-management-2025-06-27".into(),
            ),
        ],
        stream,
    }));
    req
}

fn client_body(stream: bool) -> Value {
    json!({
        "model": "claude-alias", "max_tokens": 100, "stream": stream,
        "thinking": {"type": "adaptive"}, "context_management": {"edits": []},
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}],
        "some_future_field": [1, 2, 3]
    })
}

async fn setup() -> (AnthropicMock, Gateway) {
    let mock = AnthropicMock::start().await;
    let p = provider(
        "anthropic",
        &mock.endpoint,
        Some("sk-ant-k"),
        &["claude-real"],
    );
    let gw = Gateway::start_with(ConfigDir::new(json!({ "claude": p }))).await;
    (mock, gw)
}

fn target() -> Target {
    Target::Provider {
        provider: "claude".into(),
        model: "claude-real".into(),
    }
}

#[tokio::test]
async fn body_goes_upstream_as_sent_with_only_model_replaced() {
    let (mock, gw) = setup().await;
    let served = routing::dispatch(
        &gw.state,
        target(),
        native_request(&client_body(false), false),
    )
    .await
    .unwrap();
    let ChatOutcome::Native(NativeOutcome::Complete(bytes)) = served.outcome else {
        panic!("expected a native answer");
    };
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"][0]["text"], REPLY.concat());
    let got = mock.received.last();
    let mut want = client_body(false);
    want["model"] = json!("claude-real");
    assert_eq!(got.body, want, "only model is replaced");
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        got.header("anthropic-beta"),
        Some("context-management-2025-06-27")
    );
    assert_eq!(got.header("x-api-key"), Some("sk-ant-k"));
}

#[tokio::test]
async fn events_come_back_as_the_upstream_sent_them() {
    let (mock, gw) = setup().await;
    let served = routing::dispatch(
        &gw.state,
        target(),
        native_request(&client_body(true), true),
    )
    .await
    .unwrap();
    let ChatOutcome::Native(NativeOutcome::Stream(s)) = served.outcome else {
        panic!("expected a native stream");
    };
    let events: Vec<_> = s.map(|e| e.unwrap()).collect().await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.contains(&"ping"));
    let text: String = events
        .iter()
        .filter(|e| e.event == "content_block_delta")
        .filter_map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["delta"]["text"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, REPLY.concat());
    assert_eq!(mock.received.last().body["stream"], json!(true));
}

#[tokio::test]
async fn an_overloaded_candidate_fails_over_and_counts() {
    // A rotation of an overloaded (529) Anthropic entry and a good one.
    let bad = AnthropicMock::start().await;
    bad.set_fault(Fault::Status(
        529,
        support::anthropic_mock::error_body("overloaded_error", "Overloaded"),
    ));
    let good = AnthropicMock::start().await;
    let dir = ConfigDir::new(json!({
        "bad": provider("anthropic", &bad.endpoint, Some("k1"), &["m"]),
        "good": provider("anthropic", &good.endpoint, Some("k2"), &["m"]),
    }));
    dir.write(
        "rotations.json",
        &json!({"rotations": {"r": {"model_name": "r", "providers": [
            {"provider_id": "bad", "weight": 1000, "models": [{"name": "m"}]},
            {"provider_id": "good", "weight": 0, "models": [{"name": "m"}]}]}}}),
    );
    let gw = Gateway::start_with(dir).await;
    let served = routing::dispatch(
        &gw.state,
        Target::Rotation("r".into()),
        native_request(&client_body(true), true),
    )
    .await
    .unwrap();
    assert_eq!(served.provider, "good");
    assert!(matches!(
        served.outcome,
        ChatOutcome::Native(NativeOutcome::Stream(_))
    ));
    assert_eq!(bad.received.count(), 1);
    let status = get_json(&gw.url("/")).await;
    assert_eq!(status["provider_status"]["bad"]["failures"], 1, "{status}");
    assert_eq!(status["provider_status"]["good"]["failures"], 0, "{status}");
}
