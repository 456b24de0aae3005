//! A mock Google Gemini upstream speaking the real Generative Language API:
//! `POST /v1beta/models/{model}:generateContent` (JSON), `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`
//! (SSE `data: {GenerateContentResponse}\r\n\r\n`, no `[DONE]`, events split across writes),
//! and `GET /v1beta/models` (paged). Requests need `x-goog-api-key`. It records every request,
//! follows a scripted `Fault`, and answers text, or `functionCall`s when the request declares
//! functions and does not already carry their results.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::{chunked_body, record, serve_app, Fault, Received, Recorder};

pub const REPLY: [&str; 3] = ["Hello", " from", " Gemini"];
/// usageMetadata of every answer: prompt 9, candidates 3, total 12.
pub const PROMPT_TOKENS: u64 = 9;
pub const TOTAL_TOKENS: u64 = 12;

/// What the mock answers when no fault is scripted.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Text, or function calls when the request declares functions.
    Auto,
    /// This whole response (non-stream) or these events (stream), verbatim.
    Custom { whole: Value, events: Vec<Value> },
}

#[derive(Clone)]
pub struct GeminiMock {
    /// Base URL to configure as the provider endpoint (no `/v1beta`).
    pub endpoint: String,
    pub received: Recorder,
    fault: Arc<Mutex<Fault>>,
    reply: Arc<Mutex<Reply>>,
}

#[derive(Clone)]
struct MockState {
    received: Recorder,
    fault: Arc<Mutex<Fault>>,
    reply: Arc<Mutex<Reply>>,
}

impl GeminiMock {
    pub async fn start() -> GeminiMock {
        let received = Recorder::default();
        let fault = Arc::new(Mutex::new(Fault::None));
        let reply = Arc::new(Mutex::new(Reply::Auto));
        let state = MockState {
            received: received.clone(),
            fault: fault.clone(),
            reply: reply.clone(),
        };
        // `models/{model}:method` is one path segment with a colon: matched whole and split here.
        let app = Router::new()
            .route("/v1beta/models", get(models))
            .route("/v1beta/models/{*rest}", post(generate))
            .with_state(state);
        GeminiMock {
            endpoint: serve_app(app).await,
            received,
            fault,
            reply,
        }
    }

    pub fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    pub fn set_reply(&self, r: Reply) {
        *self.reply.lock().unwrap() = r;
    }
}

/// Google's error envelope.
pub fn error_body(code: u16, status: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message, "status": status}}).to_string()
}

fn error(code: u16, status: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        error_body(code, status, message),
    )
        .into_response()
}

fn usage(candidates: u64) -> Value {
    json!({"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": candidates,
           "totalTokenCount": PROMPT_TOKENS + candidates})
}

fn event(parts: Value, finish: Option<&str>, candidates: u64, model: &str) -> Value {
    let mut cand = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(f) = finish {
        cand["finishReason"] = json!(f);
    }
    json!({"candidates": [cand], "usageMetadata": usage(candidates),
           "modelVersion": model, "responseId": "mockresp1"})
}

/// The functions the request declares.
fn declared(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["functionDeclarations"].as_array().into_iter().flatten())
        .filter_map(|d| d["name"].as_str().map(str::to_string))
        .collect()
}

fn has_function_response(body: &Value) -> bool {
    body["contents"]
        .as_array()
        .and_then(|c| c.last())
        .and_then(|c| c["parts"].as_array())
        .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()))
}

/// Arguments of the n-th call: nested values, to test object ↔ string conversion.
pub fn call_args(n: usize) -> Value {
    json!({"city": if n == 0 { "Paris" } else { "Tokyo" }, "days": n + 1, "opts": {"metric": true}})
}

/// The answer as stream events; the whole answer is their parts merged.
fn auto_events(r: &Received, model: &str) -> Vec<Value> {
    let functions = declared(&r.body);
    if !functions.is_empty() && !has_function_response(&r.body) {
        let n = functions.len().min(2);
        return (0..n)
            .map(|i| {
                event(
                    json!([{"functionCall": {"name": functions[i], "args": call_args(i)}}]),
                    (i + 1 == n).then_some("STOP"),
                    (i + 1) as u64,
                    model,
                )
            })
            .collect();
    }
    REPLY
        .iter()
        .enumerate()
        .map(|(i, t)| {
            event(
                json!([{"text": t}]),
                (i + 1 == REPLY.len()).then_some("STOP"),
                (i + 1) as u64,
                model,
            )
        })
        .collect()
}

fn merged(events: &[Value]) -> Value {
    let mut whole = events.last().cloned().unwrap_or(json!({}));
    let parts: Vec<Value> = events
        .iter()
        .flat_map(|e| {
            e["candidates"][0]["content"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    if whole["candidates"][0].is_object() {
        whole["candidates"][0]["content"]["parts"] = Value::Array(parts);
    }
    whole
}

/// SSE framing as Google sends it (`\r\n\r\n`); the first event is split across two writes.
pub fn sse_pieces(events: &[Value]) -> Vec<Vec<u8>> {
    let mut pieces: Vec<Vec<u8>> = events
        .iter()
        .map(|e| format!("data: {e}\r\n\r\n").into_bytes())
        .collect();
    if !pieces.is_empty() {
        let first = pieces.remove(0);
        let (a, b) = first.split_at(first.len() / 2);
        pieces.insert(0, b.to_vec());
        pieces.insert(0, a.to_vec());
    }
    pieces
}

fn has_key(r: &Received) -> bool {
    r.header("x-goog-api-key").is_some_and(|k| !k.is_empty())
}

async fn generate(State(s): State<MockState>, Path(rest): Path<String>, req: Request) -> Response {
    let r = record(&s.received, req).await;
    let Some((model, method)) = rest.rsplit_once(':') else {
        return error(404, "NOT_FOUND", "method not found");
    };
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return error(404, "NOT_FOUND", "method not found"),
    };
    let sse = r
        .query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    if !has_key(&r) {
        return error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers",
        );
    }
    if r.body["contents"].as_array().is_none_or(|c| c.is_empty()) {
        return error(
            400,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified",
        );
    }
    let fault = s.fault.lock().unwrap().clone();
    let reply = s.reply.lock().unwrap().clone();
    let (whole, events) = match reply {
        Reply::Auto => {
            let events = auto_events(&r, model);
            (merged(&events), events)
        }
        Reply::Custom { whole, events } => (whole, events),
    };
    match fault {
        Fault::None => {}
        Fault::Status(code, body) => {
            return (
                StatusCode::from_u16(code).unwrap(),
                [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
                body,
            )
                .into_response()
        }
        Fault::RateLimited(secs) => {
            let body = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s")}]}});
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                Body::from(body.to_string()),
            )
                .into_response();
        }
        Fault::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Malformed => {
            let (ct, body) = if stream {
                ("text/event-stream", "data: {not json\r\n\r\n")
            } else {
                ("application/json", "<html>oops</html>")
            };
            return (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response();
        }
        Fault::Reset => {
            return (StatusCode::OK, chunked_body(vec![], Duration::ZERO, true)).into_response()
        }
        Fault::BreakMidStream => {
            let mut pieces = sse_pieces(&events);
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
        if !sse {
            // Without alt=sse Google streams one JSON array: not what the gateway reads.
            return error(400, "INVALID_ARGUMENT", "mock only serves alt=sse streams");
        }
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/event-stream")],
            chunked_body(sse_pieces(&events), Duration::from_millis(2), false),
        )
            .into_response()
    } else {
        axum::Json(whole).into_response()
    }
}

async fn models(State(s): State<MockState>, req: Request) -> Response {
    let r = record(&s.received, req).await;
    if !has_key(&r) {
        return error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers",
        );
    }
    if let Fault::Status(code, body) = s.fault.lock().unwrap().clone() {
        return (StatusCode::from_u16(code).unwrap(), body).into_response();
    }
    let second = r
        .query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv == "pageToken=page2"));
    let page = if second {
        json!({"models": [
            {"name": "models/gemini-1.5-pro", "version": "001", "displayName": "Gemini 1.5 Pro",
             "inputTokenLimit": 2_000_000, "outputTokenLimit": 8192,
             "supportedGenerationMethods": ["generateContent", "countTokens"]}
        ]})
    } else {
        json!({"models": [
            {"name": "models/gemini-2.0-flash", "version": "2.0", "displayName": "Gemini 2.0 Flash",
             "description": "Fast", "inputTokenLimit": 1_048_576, "outputTokenLimit": 8192,
             "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent"]},
            {"name": "models/text-embedding-004", "version": "004", "displayName": "Text Embedding 004",
             "supportedGenerationMethods": ["embedContent"]}
        ], "nextPageToken": "page2"})
    };
    axum::Json(page).into_response()
}
