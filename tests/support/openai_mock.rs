//! A mock OpenAI upstream speaking the real Chat Completions API: `POST /v1/chat/completions`
//! (JSON, or SSE `data: {chunk}\n\n` ... `data: [DONE]` with events split across writes) and
//! `GET /v1/models`. Like the real API it answers 401 without `Authorization: Bearer KEY`
//! (the exact key once `require_key` names one), and with `include_usage` every chunk carries
//! `"usage": null` but the last. It records every request and follows a scripted `Fault`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::{chunked_body, record, serve_app, Fault, Recorder};

pub const REPLY: [&str; 3] = ["Hello", " from", " mock"];

#[derive(Clone)]
pub struct OpenAiMock {
    /// Base URL to configure as the provider endpoint (ends in `/v1`).
    pub endpoint: String,
    pub received: Recorder,
    fault: Arc<Mutex<Fault>>,
    /// Whether streams end with a usage chunk when asked for one.
    send_usage: Arc<Mutex<bool>>,
    key: Arc<Mutex<Option<String>>>,
}

#[derive(Clone)]
struct MockState {
    received: Recorder,
    fault: Arc<Mutex<Fault>>,
    send_usage: Arc<Mutex<bool>>,
    /// The one key accepted; `None`: any non-empty Bearer token.
    key: Arc<Mutex<Option<String>>>,
}

impl OpenAiMock {
    pub async fn start() -> OpenAiMock {
        let received = Recorder::default();
        let fault = Arc::new(Mutex::new(Fault::None));
        let send_usage = Arc::new(Mutex::new(true));
        let key = Arc::new(Mutex::new(None));
        let state = MockState {
            received: received.clone(),
            fault: fault.clone(),
            send_usage: send_usage.clone(),
            key: key.clone(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .with_state(state);
        let base = serve_app(app).await;
        OpenAiMock {
            endpoint: format!("{base}/v1"),
            received,
            fault,
            send_usage,
            key,
        }
    }

    /// Only `key` is accepted from now on.
    pub fn require_key(&self, key: &str) {
        *self.key.lock().unwrap() = Some(key.to_string());
    }

    pub fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    pub fn set_send_usage(&self, on: bool) {
        *self.send_usage.lock().unwrap() = on;
    }
}

fn completion(model: &str) -> Value {
    json!({
        "id": "chatcmpl-mock1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": REPLY.concat(), "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    })
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-mock1", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": model, "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
    })
}

/// The SSE events of a streamed answer, as separate writes; the first event is split in two
/// writes to exercise reassembly. With `usage`, as the real API does with `include_usage`,
/// every chunk carries `"usage": null` and a last chunk with no choices carries the counts.
pub fn stream_pieces(model: &str, usage: bool) -> Vec<Vec<u8>> {
    let mut events = vec![chunk(
        model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    for t in REPLY {
        events.push(chunk(model, json!({"content": t}), None));
    }
    events.push(chunk(model, json!({}), Some("stop")));
    if usage {
        for e in &mut events {
            e["usage"] = Value::Null;
        }
        events.push(json!({
            "id": "chatcmpl-mock1", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
        }));
    }
    let mut pieces: Vec<Vec<u8>> = events
        .iter()
        .map(|e| format!("data: {e}\n\n").into_bytes())
        .collect();
    let first = pieces.remove(0);
    let (a, b) = first.split_at(first.len() / 2);
    pieces.insert(0, b.to_vec());
    pieces.insert(0, a.to_vec());
    pieces.push(b"data: [DONE]\n\n".to_vec());
    pieces
}

/// The real API's 401 when the key is missing or wrong.
fn unauthorized(s: &MockState, r: &super::Received) -> Option<Response> {
    let given = r
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .filter(|k| !k.is_empty());
    let message = match (given, s.key.lock().unwrap().as_deref()) {
        (None, _) => "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).".to_string(),
        (Some(k), Some(want)) if k != want => format!("Incorrect API key provided: {k}."),
        _ => return None,
    };
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
    Some((StatusCode::UNAUTHORIZED, axum::Json(body)).into_response())
}

async fn chat(State(s): State<MockState>, req: Request) -> Response {
    let r = record(&s.received, req).await;
    if let Some(denied) = unauthorized(&s, &r) {
        return denied;
    }
    let fault = s.fault.lock().unwrap().clone();
    let model = r.body["model"].as_str().unwrap_or("unknown").to_string();
    let stream = r.body["stream"] == json!(true);
    let wants_usage =
        r.body["stream_options"]["include_usage"] == json!(true) && *s.send_usage.lock().unwrap();
    match fault {
        Fault::None => {}
        Fault::Status(code, body) => {
            return (StatusCode::from_u16(code).unwrap(), [(header::CONTENT_TYPE, "application/json")], body)
                .into_response()
        }
        Fault::RateLimited(secs) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                Body::from(r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded","param":null}}"#),
            )
                .into_response()
        }
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Malformed => {
            let body = if stream { "data: {not json\n\n" } else { "<html>oops</html>" };
            let ct = if stream { "text/event-stream" } else { "application/json" };
            return (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response();
        }
        Fault::Reset => {
            // Closest to a reset inside axum: a body that fails before any byte.
            return (StatusCode::OK, chunked_body(vec![], Duration::ZERO, true)).into_response();
        }
        Fault::BreakMidStream => {
            let mut pieces = stream_pieces(&model, false);
            pieces.truncate(3);
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/event-stream")],
                chunked_body(pieces, Duration::from_millis(5), true),
            )
                .into_response();
        }
    }
    if stream {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/event-stream")],
            chunked_body(
                stream_pieces(&model, wants_usage),
                Duration::from_millis(2),
                false,
            ),
        )
            .into_response()
    } else {
        axum::Json(completion(&model)).into_response()
    }
}

async fn models(State(s): State<MockState>, req: Request) -> Response {
    let r = record(&s.received, req).await;
    if let Some(denied) = unauthorized(&s, &r) {
        return denied;
    }
    axum::Json(json!({
        "object": "list",
        "data": [
            {"id": "gpt-4o", "object": "model", "created": 1_700_000_000, "owned_by": "openai"},
            {"id": "gpt-4o-mini", "object": "model", "created": 1_700_000_000, "owned_by": "openai"}
        ]
    }))
    .into_response()
}
