//! A mock Anthropic upstream speaking the real Messages API: `POST /v1/messages` (JSON, or
//! SSE `event: NAME\ndata: {...}\n\n` with pings, events split across writes and one event
//! whose data spans two `data:` lines) and `GET /v1/models` (paged by `limit`/`after_id`).
//! Like the real API it requires `x-api-key`, `anthropic-version` and `max_tokens`, and
//! rejects turns that do not alternate. It records every request and follows a `Fault`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::{chunked_body, record, serve_app, Fault, Received, Recorder};

/// The text answer, as streamed in three deltas.
pub const REPLY: [&str; 3] = ["Hello", " from", " claude"];
/// The text block before tool calls.
pub const TOOL_PREAMBLE: &str = "Let me check.";
/// `input.city` of the n-th tool_use block of a tool answer.
pub const CITIES: [&str; 2] = ["Paris", "Tokyo"];
pub const INPUT_TOKENS: u64 = 25;
pub const CACHE_READ_TOKENS: u64 = 5;
pub const OUTPUT_TOKENS: u64 = 7;

/// `id` of the n-th tool_use block.
pub fn tool_use_id(n: usize) -> String {
    format!("toolu_01Mock{n}")
}

#[derive(Clone, Default)]
struct Options {
    /// Replaces the natural stop_reason (end_turn / tool_use).
    stop_reason: Option<String>,
    /// Streams: an `error` event (overloaded_error) after the first text delta, then EOF.
    error_event: bool,
    /// Caps a model page below the client's `limit`, to exercise paging.
    models_page_cap: Option<usize>,
}

#[derive(Clone)]
pub struct AnthropicMock {
    /// Base URL to configure as the provider endpoint (as `https://api.anthropic.com`).
    pub endpoint: String,
    pub received: Recorder,
    fault: Arc<Mutex<Fault>>,
    opts: Arc<Mutex<Options>>,
}

#[derive(Clone)]
struct MockState {
    received: Recorder,
    fault: Arc<Mutex<Fault>>,
    opts: Arc<Mutex<Options>>,
}

impl AnthropicMock {
    pub async fn start() -> AnthropicMock {
        let received = Recorder::default();
        let fault = Arc::new(Mutex::new(Fault::None));
        let opts = Arc::new(Mutex::new(Options::default()));
        let state = MockState {
            received: received.clone(),
            fault: fault.clone(),
            opts: opts.clone(),
        };
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/v1/models", get(models))
            .with_state(state);
        AnthropicMock {
            endpoint: serve_app(app).await,
            received,
            fault,
            opts,
        }
    }

    pub fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    pub fn set_stop_reason(&self, r: Option<&str>) {
        self.opts.lock().unwrap().stop_reason = r.map(str::to_string);
    }

    pub fn set_error_event(&self, on: bool) {
        self.opts.lock().unwrap().error_event = on;
    }

    pub fn set_models_page_cap(&self, cap: Option<usize>) {
        self.opts.lock().unwrap().models_page_cap = cap;
    }
}

/// `{"type":"error","error":{"type","message"}}` with a status, as Anthropic answers errors.
pub fn error_body(kind: &str, message: &str) -> String {
    json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        error_body(kind, message),
    )
        .into_response()
}

/// What the real API checks before it answers: auth, version header, max_tokens, roles.
fn validate(r: &Received) -> Option<Response> {
    if r.header("x-api-key").is_none_or(str::is_empty) {
        return Some(error(
            401,
            "authentication_error",
            "x-api-key header is required",
        ));
    }
    if r.header("anthropic-version").is_none() {
        return Some(error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        ));
    }
    if r.path != "/v1/messages" {
        return None;
    }
    if !r.body["max_tokens"].is_u64() {
        return Some(error(
            400,
            "invalid_request_error",
            "max_tokens: Field required",
        ));
    }
    let Some(msgs) = r.body["messages"].as_array() else {
        return Some(error(
            400,
            "invalid_request_error",
            "messages: Field required",
        ));
    };
    for pair in msgs.windows(2) {
        if pair[0]["role"] == pair[1]["role"] {
            return Some(error(
                400,
                "invalid_request_error",
                "messages: roles must alternate between \"user\" and \"assistant\"",
            ));
        }
    }
    if msgs.iter().any(|m| m["role"] == "system") {
        return Some(error(
            400,
            "invalid_request_error",
            "messages: Unexpected role \"system\"",
        ));
    }
    None
}

/// The tools the answer calls: those of the request, unless tool_choice is none.
fn called_tools(body: &Value) -> Vec<String> {
    if body["tool_choice"]["type"] == "none" {
        return Vec::new();
    }
    body["tools"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .take(CITIES.len())
                .collect()
        })
        .unwrap_or_default()
}

fn message(model: &str, tools: &[String], stop: &Option<String>) -> Value {
    let mut content = Vec::new();
    if tools.is_empty() {
        content.push(json!({"type": "text", "text": REPLY.concat()}));
    } else {
        content.push(json!({"type": "text", "text": TOOL_PREAMBLE}));
        for (n, name) in tools.iter().enumerate() {
            content.push(
                json!({"type": "tool_use", "id": tool_use_id(n), "name": name,
                                "input": {"city": CITIES[n]}}),
            );
        }
    }
    let natural = if tools.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    json!({
        "id": "msg_01MockMessage", "type": "message", "role": "assistant", "model": model,
        "content": content,
        "stop_reason": stop.as_deref().unwrap_or(natural), "stop_sequence": null,
        "usage": {"input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": CACHE_READ_TOKENS, "output_tokens": OUTPUT_TOKENS,
                  "service_tier": "standard"}
    })
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The SSE text of a streamed answer, as Anthropic sends it.
fn stream_text(model: &str, tools: &[String], stop: &Option<String>, error_event: bool) -> String {
    let mut s = String::new();
    s += &event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": "msg_01MockStream", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": CACHE_READ_TOKENS, "output_tokens": 1}}}),
    );
    s += &event("ping", &json!({"type": "ping"}));
    s += &event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    let texts: Vec<&str> = if tools.is_empty() {
        REPLY.to_vec()
    } else {
        vec![TOOL_PREAMBLE]
    };
    for (n, t) in texts.iter().enumerate() {
        let delta = json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": t}});
        if n == 1 {
            // Legal SSE: one event's data over two `data:` lines, joined by "\n" (JSON
            // whitespace) on the client side.
            let text = delta.to_string();
            let cut = text.find("\"delta\"").unwrap();
            s += &format!(
                "event: content_block_delta\ndata: {}\ndata: {}\n\n",
                &text[..cut],
                &text[cut..]
            );
        } else {
            s += &event("content_block_delta", &delta);
        }
        if error_event {
            s += &event(
                "error",
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            );
            return s;
        }
    }
    s += &event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    );
    for (n, name) in tools.iter().enumerate() {
        let index = n + 1;
        s += &event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block":
                    {"type": "tool_use", "id": tool_use_id(n), "name": name, "input": {}}}),
        );
        let city = CITIES[n];
        let (a, b) = city.split_at(3);
        for part in ["", "{\"city\": \"", a, &format!("{b}\"}}")] {
            s += &event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": part}}),
            );
        }
        s += &event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
        s += &event("ping", &json!({"type": "ping"}));
    }
    let natural = if tools.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    s += &event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop.as_deref().unwrap_or(natural), "stop_sequence": null},
                "usage": {"output_tokens": OUTPUT_TOKENS}}),
    );
    s += &event("message_stop", &json!({"type": "message_stop"}));
    s
}

/// Cuts a body into writes of uneven sizes: events split across writes, several per write.
fn pieces(body: &str) -> Vec<Vec<u8>> {
    let bytes = body.as_bytes();
    let sizes = [7usize, 90, 13, 200, 31, 64];
    let mut out = Vec::new();
    let mut at = 0;
    let mut n = 0;
    while at < bytes.len() {
        let end = (at + sizes[n % sizes.len()]).min(bytes.len());
        out.push(bytes[at..end].to_vec());
        at = end;
        n += 1;
    }
    out
}

fn sse(body: Body) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `count_tokens`: a fixed count, so a test can tell it was forwarded.
pub const COUNTED_TOKENS: u64 = 4242;

async fn count_tokens(State(s): State<MockState>, req: Request) -> Response {
    let r = record(&s.received, req).await;
    if let Some(resp) = validate(&r) {
        return resp;
    }
    axum::Json(json!({"input_tokens": COUNTED_TOKENS})).into_response()
}

async fn messages(State(s): State<MockState>, req: Request) -> Response {
    let r = record(&s.received, req).await;
    if let Some(resp) = validate(&r) {
        return resp;
    }
    let fault = s.fault.lock().unwrap().clone();
    let opts = s.opts.lock().unwrap().clone();
    let model = r.body["model"].as_str().unwrap_or("unknown").to_string();
    let stream = r.body["stream"] == json!(true);
    let tools = called_tools(&r.body);
    match fault {
        Fault::None => {}
        Fault::Status(code, body) => {
            return (
                StatusCode::from_u16(code).unwrap(),
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Fault::RateLimited(secs) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::RETRY_AFTER, secs.to_string()),
                    (header::CONTENT_TYPE, "application/json".to_string()),
                ],
                error_body(
                    "rate_limit_error",
                    "Number of request tokens has exceeded your per-minute rate limit",
                ),
            )
                .into_response()
        }
        Fault::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Malformed => {
            return if stream {
                sse(Body::from("event: message_start\ndata: {not json\n\n"))
            } else {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    "<html>oops</html>",
                )
                    .into_response()
            }
        }
        Fault::Reset => {
            return (StatusCode::OK, chunked_body(vec![], Duration::ZERO, true)).into_response()
        }
        Fault::BreakMidStream => {
            // Cut inside the second content_block_delta: after the first chunk went out.
            let text = stream_text(&model, &tools, &opts.stop_reason, false);
            let tag = "event: content_block_delta";
            let first = text.find(tag).unwrap();
            let second = first + tag.len() + text[first + tag.len()..].find(tag).unwrap();
            let p = pieces(&text[..second + tag.len() + 10]);
            return sse(chunked_body(p, Duration::from_millis(5), true));
        }
    }
    if stream {
        let text = stream_text(&model, &tools, &opts.stop_reason, opts.error_event);
        sse(chunked_body(pieces(&text), Duration::from_millis(2), false))
    } else {
        axum::Json(message(&model, &tools, &opts.stop_reason)).into_response()
    }
}

pub const MODELS: [(&str, &str, &str); 3] = [
    (
        "claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
    ),
    (
        "claude-opus-4-1-20250805",
        "Claude Opus 4.1",
        "2025-08-05T00:00:00Z",
    ),
    (
        "claude-3-5-haiku-20241022",
        "Claude Haiku 3.5",
        "2024-10-22T00:00:00Z",
    ),
];

async fn models(State(s): State<MockState>, req: Request) -> Response {
    let r = record(&s.received, req).await;
    if let Some(resp) = validate(&r) {
        return resp;
    }
    if let Fault::Status(code, body) = s.fault.lock().unwrap().clone() {
        return (
            StatusCode::from_u16(code).unwrap(),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    let param = |name: &str| {
        r.query.as_deref().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
        })
    };
    let mut limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    if let Some(cap) = s.opts.lock().unwrap().models_page_cap {
        limit = limit.min(cap);
    }
    let start = match param("after_id") {
        Some(after) => match MODELS.iter().position(|m| m.0 == after) {
            Some(i) => i + 1,
            None => return error(400, "invalid_request_error", "after_id: unknown model"),
        },
        None => 0,
    };
    let page: Vec<Value> = MODELS
        .iter()
        .skip(start)
        .take(limit)
        .map(|(id, name, created)| {
            json!({"type": "model", "id": id, "display_name": name, "created_at": created})
        })
        .collect();
    let has_more = start + page.len() < MODELS.len();
    axum::Json(json!({
        "data": page,
        "has_more": has_more,
        "first_id": page.first().map(|m| m["id"].clone()),
        "last_id": page.last().map(|m| m["id"].clone()),
    }))
    .into_response()
}
