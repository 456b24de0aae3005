//! What the translation kernel and the transport promise whatever the provider: usage is
//! counted with the BPE table when an upstream reports none, Gemini's thought signatures
//! never leave the gateway, slow but steady bodies are read, and `rate_limit` waits are
//! bounded. Each upstream here is a small axum app speaking the provider's real API.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use support::openai_mock::OpenAiMock;
use support::*;

/// Bodies each upstream got, in order.
type Seen = Arc<Mutex<Vec<Value>>>;

async fn body_of(req: Request) -> Value {
    let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn sse(pieces: Vec<Vec<u8>>, pause: Duration) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream")],
        chunked_body(pieces, pause, false),
    )
        .into_response()
}

fn data(v: &Value) -> Vec<u8> {
    format!("data: {v}\n\n").into_bytes()
}

fn bpe_count(model: &str, text: &str) -> u64 {
    aisbf::context::tokens::TokenCounter::new().count_text(model, text)
}

async fn stream_chat(gw: &Gateway, model: &str) -> Vec<Value> {
    let text = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_openai_stream(&text)
}

const PIECES: [&str; 2] = ["Hello there,", " friend"];

/// An OpenAI-compatible upstream that ignores `include_usage` (many do).
async fn chat_without_usage(req: Request) -> Response {
    let model = body_of(req).await["model"].clone();
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut pieces = vec![data(&chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ))];
    for p in PIECES {
        pieces.push(data(&chunk(json!({"content": p}), Value::Null)));
    }
    pieces.push(data(&chunk(json!({}), json!("stop"))));
    pieces.push(b"data: [DONE]\n\n".to_vec());
    sse(pieces, Duration::from_millis(2))
}

/// Ollama answering without `prompt_eval_count` / `eval_count` (as it does for cached prompts).
async fn ollama_without_counts(_req: Request) -> Response {
    let mut lines = Vec::new();
    for p in PIECES {
        lines.push(
            format!(
                "{}\n",
                json!({"model": "m", "message": {"role": "assistant", "content": p}, "done": false})
            )
            .into_bytes(),
        );
    }
    lines.push(format!("{}\n", json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop"})).into_bytes());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        chunked_body(lines, Duration::from_millis(2), false),
    )
        .into_response()
}

#[tokio::test]
async fn a_stream_without_upstream_usage_is_counted_with_the_bpe_table() {
    let openai =
        serve_app(Router::new().route("/v1/chat/completions", post(chat_without_usage))).await;
    let ollama = serve_app(Router::new().route("/api/chat", post(ollama_without_counts))).await;
    let cfg = ConfigDir::new(json!({
        "up": provider("openai", &format!("{openai}/v1"), Some("sk-x"), &["gpt-4o"]),
        "local": provider("ollama", &ollama, None, &["llama3"]),
    }));
    let gw = Gateway::start_with(cfg).await;
    for (model, bare) in [("up/gpt-4o", "gpt-4o"), ("local/llama3", "llama3")] {
        let chunks = stream_chat(&gw, model).await;
        assert_eq!(stream_text(&chunks), PIECES.concat(), "{model}");
        let usage = &chunks.last().unwrap()["usage"];
        let expected = bpe_count(bare, &PIECES.concat());
        assert!(
            expected > PIECES.len() as u64 + 1,
            "the count differs from a chunk count"
        );
        assert_eq!(usage["completion_tokens"], expected, "{model}: {usage}");
        assert_eq!(
            usage["prompt_tokens"], usage["effective_context"],
            "{model}"
        );
        assert_eq!(
            usage["total_tokens"].as_u64().unwrap(),
            usage["prompt_tokens"].as_u64().unwrap() + expected
        );
    }
}

const SIGNATURE: &str = "Q2lnQVZTb0RNRjlxS2dNUmVhc29uaW5nU3RhdGVPZkdlbWluaTM=";

async fn gemini_with_signature(State(seen): State<Seen>, req: Request) -> Response {
    let body = body_of(req).await;
    let answered = body.to_string().contains("functionResponse");
    seen.lock().unwrap().push(body);
    let part = if answered {
        json!({"text": "It is sunny."})
    } else {
        json!({"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": SIGNATURE})
    };
    axum::Json(json!({
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7},
        "modelVersion": "gemini-3-pro", "responseId": "r1"
    }))
    .into_response()
}

#[tokio::test]
async fn gemini_thought_signatures_stay_in_the_gateway() {
    let seen = Seen::default();
    let gemini = serve_app(
        Router::new()
            .route("/v1beta/models/{action}", post(gemini_with_signature))
            .with_state(seen.clone()),
    )
    .await;
    let openai = OpenAiMock::start().await;
    let cfg = ConfigDir::new(json!({
        "g": provider("google", &gemini, Some("g-key"), &["gemini-3-pro"]),
        "o": provider("openai", &openai.endpoint, Some("sk-o"), &["gpt-4o"]),
    }));
    let gw = Gateway::start_with(cfg).await;
    let ask = |model: &str, messages: &Value| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&json!({"model": model, "messages": messages}))
            .send()
    };
    let mut messages = json!([{"role": "user", "content": "Weather in Oslo?"}]);
    let v: Value = ask("g/gemini-3-pro", &messages)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = v["choices"][0]["message"].clone();
    let id = message["tool_calls"][0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("call_") && id.len() <= 40, "{id}");
    assert!(
        !v.to_string().contains(SIGNATURE),
        "the client never sees the signature"
    );

    messages.as_array_mut().unwrap().extend([
        message,
        json!({"role": "tool", "tool_call_id": id, "content": "{\"sky\":\"sunny\"}"}),
    ]);
    // Back to Gemini: the call goes up with its signature.
    let resp = ask("g/gemini-3-pro", &messages).await.unwrap();
    assert_eq!(resp.status(), 200);
    let sent = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        sent["contents"][1]["parts"][0]["thoughtSignature"],
        SIGNATURE
    );
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"]["name"],
        "get_weather"
    );
    // The same conversation failing over to OpenAI: short ids, no signature anywhere.
    let resp = ask("o/gpt-4o", &messages).await.unwrap();
    assert_eq!(resp.status(), 200);
    let sent = openai.received.last().body;
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], id);
    assert!(!sent.to_string().contains(SIGNATURE));
}

/// A non-stream answer that arrives in pieces, each well within the idle timeout, the whole
/// longer than the first-byte timeout.
async fn slow_steady_completion(req: Request) -> Response {
    let model = body_of(req).await["model"].clone();
    let body = json!({
        "id": "chatcmpl-slow", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "slow but steady", "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    })
    .to_string()
    .into_bytes();
    let pieces: Vec<Vec<u8>> = body
        .chunks(body.len() / 5 + 1)
        .map(<[u8]>::to_vec)
        .collect();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        chunked_body(pieces, Duration::from_millis(700), false),
    )
        .into_response()
}

#[tokio::test]
async fn a_slow_but_steady_body_is_read_to_its_end() {
    let up =
        serve_app(Router::new().route("/v1/chat/completions", post(slow_steady_completion))).await;
    let cfg = ConfigDir::new(json!({
        "up": provider("openai", &format!("{up}/v1"), Some("sk-x"), &["m"]),
    }));
    cfg.aisbf(
        json!({"timeouts": {"connect_seconds": 10, "first_byte_seconds": 2, "idle_seconds": 10}}),
    );
    let gw = Gateway::start_with(cfg).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "up/m", "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "slow but steady");
}

#[tokio::test]
async fn a_direct_request_waits_for_its_rate_limit_slot_at_most_the_first_byte_timeout() {
    let mock = OpenAiMock::start().await;
    let mut p = provider("openai", &mock.endpoint, Some("sk-x"), &["m"]);
    p["rate_limit"] = json!(600);
    let cfg = ConfigDir::new(json!({ "up": p }));
    cfg.aisbf(
        json!({"timeouts": {"connect_seconds": 10, "first_byte_seconds": 2, "idle_seconds": 10}}),
    );
    let gw = Gateway::start_with(cfg).await;
    let send = || {
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&json!({"model": "up/m", "messages": [{"role": "user", "content": "Hi"}]}))
            .timeout(Duration::from_secs(60))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    let resp = send().await.expect("an answer, not a ten-minute wait");
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 500 && retry <= 600, "{retry}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_spacing");
    assert_eq!(
        mock.received.count(),
        1,
        "the spaced request never went upstream"
    );
}
