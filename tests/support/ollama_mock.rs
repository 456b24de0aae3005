//! A mock Ollama speaking its real native API: `POST /api/chat` (one JSON object when the
//! request says `"stream": false`, else NDJSON lines cut across writes at arbitrary bytes, the
//! last with `done: true`) and `GET /api/tags`. It records every request, follows the shared
//! `Fault`, and answers with tool calls when offered tools (one call per tool, up to two).
//! Like the real server, it streams unless told otherwise.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::support::{chunked_body, record, serve_app, Fault, Recorder};

pub const REPLY: [&str; 3] = ["Hello", " from", " ollama"];
pub const PROMPT_EVAL_COUNT: u64 = 26;
pub const CREATED_AT: &str = "2024-07-22T20:33:28.123648Z";
/// `CREATED_AT` in seconds since the epoch.
pub const CREATED: i64 = 1_721_680_408;
/// Arguments of every tool call the mock makes.
pub fn tool_arguments() -> Value {
    json!({"city": "Paris", "days": 2})
}

/// Ollama-specific stream behaviours the shared `Fault` has no value for.
#[derive(Debug, Clone, PartialEq)]
pub enum Script {
    Normal,
    /// After the first content line, an `{"error": ...}` line, then the stream ends.
    ErrorMidStream(String),
    /// Every line but the `done: true` one, then a clean end of the body.
    NoDoneLine,
}

#[derive(Clone)]
pub struct OllamaMock {
    /// Base URL to configure as the provider endpoint (no path, as Ollama's).
    pub endpoint: String,
    pub received: Recorder,
    state: MockState,
}

#[derive(Clone)]
struct MockState {
    received: Recorder,
    fault: Arc<Mutex<Fault>>,
    script: Arc<Mutex<Script>>,
    done_reason: Arc<Mutex<String>>,
}

impl OllamaMock {
    pub async fn start() -> OllamaMock {
        let state = MockState {
            received: Recorder::default(),
            fault: Arc::new(Mutex::new(Fault::None)),
            script: Arc::new(Mutex::new(Script::Normal)),
            done_reason: Arc::new(Mutex::new("stop".into())),
        };
        let app = Router::new()
            .route("/api/chat", post(chat))
            .route("/api/tags", get(tags))
            .with_state(state.clone());
        OllamaMock {
            endpoint: serve_app(app).await,
            received: state.received.clone(),
            state,
        }
    }

    pub fn set_fault(&self, f: Fault) {
        *self.state.fault.lock().unwrap() = f;
    }

    pub fn set_script(&self, s: Script) {
        *self.state.script.lock().unwrap() = s;
    }

    pub fn set_done_reason(&self, r: &str) {
        *self.state.done_reason.lock().unwrap() = r.to_string();
    }

    /// The `/api/chat` requests only (not the model list).
    pub fn chats(&self) -> Vec<Value> {
        self.received
            .all()
            .into_iter()
            .filter(|r| r.path == "/api/chat")
            .map(|r| r.body)
            .collect()
    }
}

/// What the model "says": tool calls when offered tools (and not answering a tool result).
fn tool_calls(body: &Value) -> Vec<Value> {
    let answering_tool = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "tool");
    if answering_tool {
        return Vec::new();
    }
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .take(2)
        .map(
            |t| json!({"function": {"name": t["function"]["name"], "arguments": tool_arguments()}}),
        )
        .collect()
}

fn line(model: &str, message: Value) -> Value {
    json!({"model": model, "created_at": CREATED_AT, "message": message, "done": false})
}

fn done_line(model: &str, message: Value, done_reason: &str, eval_count: u64) -> Value {
    json!({
        "model": model, "created_at": CREATED_AT, "message": message,
        "done_reason": done_reason, "done": true,
        "total_duration": 885_095_291u64, "load_duration": 3_753_500u64,
        "prompt_eval_count": PROMPT_EVAL_COUNT, "prompt_eval_duration": 328_493_000u64,
        "eval_count": eval_count, "eval_duration": 552_222_000u64
    })
}

/// The NDJSON lines of a streamed answer.
fn stream_lines(model: &str, calls: &[Value], done_reason: &str, script: &Script) -> Vec<Value> {
    let mut lines = Vec::new();
    let eval_count = if calls.is_empty() {
        for t in REPLY {
            lines.push(line(model, json!({"role": "assistant", "content": t})));
            if let Script::ErrorMidStream(msg) = script {
                lines.push(json!({"error": msg}));
                return lines;
            }
        }
        REPLY.len() as u64
    } else {
        lines.push(line(
            model,
            json!({"role": "assistant", "content": "", "tool_calls": calls}),
        ));
        12
    };
    if *script != Script::NoDoneLine {
        lines.push(done_line(
            model,
            json!({"role": "assistant", "content": ""}),
            done_reason,
            eval_count,
        ));
    }
    lines
}

/// The lines as bytes cut every 23 bytes: lines split across writes, several in one write.
fn pieces(lines: &[Value]) -> Vec<Vec<u8>> {
    let mut bytes = Vec::new();
    for l in lines {
        bytes.extend_from_slice(l.to_string().as_bytes());
        bytes.push(b'\n');
    }
    bytes.chunks(23).map(<[u8]>::to_vec).collect()
}

fn ndjson(body: Body) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response()
}

async fn chat(State(s): State<MockState>, req: Request) -> Response {
    let r = record(&s.received, req).await;
    let fault = s.fault.lock().unwrap().clone();
    let script = s.script.lock().unwrap().clone();
    let done_reason = s.done_reason.lock().unwrap().clone();
    let model = r.body["model"].as_str().unwrap_or("unknown").to_string();
    // Ollama's default is to stream.
    let stream = r.body["stream"] != json!(false);
    let calls = tool_calls(&r.body);
    match fault {
        Fault::None => {}
        Fault::Status(code, body) => {
            return (
                StatusCode::from_u16(code).unwrap(),
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                body,
            )
                .into_response()
        }
        Fault::RateLimited(secs) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                Body::from(r#"{"error":"too many requests"}"#),
            )
                .into_response()
        }
        Fault::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Malformed => {
            if stream {
                return ndjson(Body::from("this is not json\n"));
            }
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "<html>oops</html>",
            )
                .into_response();
        }
        Fault::Reset => {
            return ndjson(chunked_body(vec![], Duration::ZERO, true));
        }
        Fault::BreakMidStream => {
            let mut lines = stream_lines(&model, &calls, &done_reason, &Script::Normal);
            lines.truncate(2);
            return ndjson(chunked_body(pieces(&lines), Duration::from_millis(2), true));
        }
    }
    if stream {
        let lines = stream_lines(&model, &calls, &done_reason, &script);
        return ndjson(chunked_body(
            pieces(&lines),
            Duration::from_millis(2),
            false,
        ));
    }
    let (message, eval_count) = if calls.is_empty() {
        (json!({"role": "assistant", "content": REPLY.concat()}), 3)
    } else {
        (
            json!({"role": "assistant", "content": "", "tool_calls": calls}),
            12,
        )
    };
    axum::Json(done_line(&model, message, &done_reason, eval_count)).into_response()
}

async fn tags(State(s): State<MockState>, req: Request) -> Response {
    record(&s.received, req).await;
    if let Fault::Status(code, body) = s.fault.lock().unwrap().clone() {
        return (StatusCode::from_u16(code).unwrap(), body).into_response();
    }
    axum::Json(json!({"models": [
        {
            "name": "llama3.2:latest", "model": "llama3.2:latest",
            "modified_at": "2024-10-01T12:00:00.123456789-07:00", "size": 2_019_393_189u64,
            "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
            "details": {"parent_model": "", "format": "gguf", "family": "llama",
                        "families": ["llama"], "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}
        },
        {
            "name": "llava:7b", "model": "llava:7b",
            "modified_at": "2024-09-12T21:17:29.110811Z", "size": 4_733_363_377u64,
            "digest": "8dd30f6b0cb19f555f2c7a7ebda861449ea2cc76bf1f44e262931f45fc81d081",
            "details": {"format": "gguf", "family": "llama", "families": ["llama", "clip"],
                        "parameter_size": "7B", "quantization_level": "Q4_0"}
        }
    ]}))
    .into_response()
}
