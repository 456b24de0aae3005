//! Responses API test helpers: validation against OpenAI's published `Response` and
//! `ResponseStreamEvent` schemas (tests/fixtures/openai-responses-schemas.json), SSE event
//! parsing, a chat upstream whose turns are scripted (text or a tool call, JSON or SSE), and
//! a mock of the native Responses API for the passthrough.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::{chunked_body, record, serve_app, Recorder};

fn doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/openai-responses-schemas.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    })
}

/// Compiled validators by `$defs` name: the document is large, compile each root once.
fn validator(def: &str) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(def) {
        return v.clone();
    }
    let mut root = doc().clone();
    root["$ref"] = json!(format!("#/$defs/{def}"));
    let v = Arc::new(jsonschema::draft202012::new(&root).expect("schema compiles"));
    cache.lock().unwrap().insert(def.to_string(), v.clone());
    v
}

fn check(def: &str, value: &Value) {
    let errors: Vec<String> = validator(def)
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{def} schema violations: {errors:#?}\nin: {}",
        serde_json::to_string_pretty(value).unwrap()
    );
}

/// A `response` object: valid by the `Response` schema, with complete usage.
pub fn assert_response(v: &Value) {
    check("Response", v);
    assert_eq!(v["object"], "response");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
}

pub fn assert_usage(v: &Value) {
    let u = &v["usage"];
    for k in [
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "effective_context",
    ] {
        assert!(u[k].is_u64(), "usage.{k} missing in {v}");
    }
    assert!(u["input_tokens_details"]["cached_tokens"].is_u64(), "{v}");
    assert!(
        u["output_tokens_details"]["reasoning_tokens"].is_u64(),
        "{v}"
    );
}

/// The `$defs` name of the stream event whose `type` is `kind`.
fn event_def(kind: &str) -> Option<String> {
    let branches = doc()["$defs"]["ResponseStreamEvent"]["anyOf"].as_array()?;
    branches.iter().find_map(|b| {
        let name = b["$ref"].as_str()?.rsplit('/').next()?;
        let def = &doc()["$defs"][name];
        let fixed = def["properties"]["type"]["enum"].as_array()?;
        (fixed.len() == 1 && fixed[0] == kind).then(|| name.to_string())
    })
}

/// Parses a Responses SSE body into `(event name, data)` pairs and checks each: an `event:`
/// line equal to `data.type`, valid by its own branch of `ResponseStreamEvent`, and
/// `sequence_number` counting 0, 1, 2, ...; no `[DONE]`.
pub fn assert_events(body: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, block) in body
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .enumerate()
    {
        let mut event = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = Some(e.trim().to_string());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        let data = data.join("\n");
        assert_ne!(data, "[DONE]", "a Responses stream has no [DONE]");
        let v: Value = serde_json::from_str(&data)
            .unwrap_or_else(|e| panic!("event data not JSON ({e}): {data}"));
        let kind = v["type"].as_str().expect("event has a type").to_string();
        assert_eq!(
            event.as_deref(),
            Some(kind.as_str()),
            "event: line in {block}"
        );
        let def = event_def(&kind).unwrap_or_else(|| panic!("unknown event type {kind}"));
        check(&def, &v);
        assert_eq!(v["sequence_number"], i as u64, "sequence_number of {v}");
        out.push(v);
    }
    assert!(!out.is_empty(), "no events in {body:?}");
    out
}

/// The concatenated `response.output_text.delta` of a stream's events.
pub fn events_text(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect()
}

pub fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

// ---------- a scripted chat upstream ----------

/// One scripted answer of the chat upstream.
#[derive(Debug, Clone)]
pub enum Turn {
    Text(String),
    /// One tool call: name and arguments (a JSON document, sent as a string).
    Call(String, Value),
}

/// An upstream that answers each request with the next scripted turn (the last one
/// repeats), as JSON or as a stream, in the native API of each provider type on one port:
/// OpenAI Chat Completions (`POST /v1/chat/completions`, SSE), Anthropic Messages
/// (`POST /v1/messages`, named SSE events), Gemini (`POST /v1beta/models/M:generateContent` /
/// `:streamGenerateContent?alt=sse`) and Ollama (`POST /api/chat`, NDJSON). It records what
/// it received.
#[derive(Clone)]
pub struct TurnsMock {
    /// The OpenAI-type endpoint (ends in `/v1`).
    pub endpoint: String,
    /// The bare base URL: the endpoint of the anthropic, google and ollama types.
    pub base: String,
    pub received: Recorder,
}

type TurnsState = (Recorder, Arc<Mutex<VecDeque<Turn>>>);

impl TurnsMock {
    pub async fn start(turns: Vec<Turn>) -> TurnsMock {
        let received = Recorder::default();
        let turns = Arc::new(Mutex::new(VecDeque::from(turns)));
        let app = Router::new()
            .route("/v1/chat/completions", post(turn))
            .route("/v1/messages", post(anthropic_turn))
            .route("/v1beta/models/{call}", post(gemini_turn))
            .route("/api/chat", post(ollama_turn))
            .with_state((received.clone(), turns.clone()));
        let base = serve_app(app).await;
        TurnsMock {
            endpoint: format!("{base}/v1"),
            base,
            received,
        }
    }

    /// The endpoint to configure for a provider of `kind`.
    pub fn endpoint_for(&self, kind: &str) -> String {
        if kind == "openai" {
            self.endpoint.clone()
        } else {
            self.base.clone()
        }
    }
}

fn next_turn(turns: &Mutex<VecDeque<Turn>>) -> Turn {
    let mut q = turns.lock().unwrap();
    if q.len() > 1 {
        q.pop_front().unwrap()
    } else {
        q.front().cloned().expect("a scripted turn")
    }
}

fn streamed(content_type: &'static str, pieces: Vec<String>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        chunked_body(
            pieces.into_iter().map(String::into_bytes).collect(),
            Duration::from_millis(2),
            false,
        ),
    )
        .into_response()
}

async fn anthropic_turn(State((received, turns)): State<TurnsState>, req: Request) -> Response {
    let r = record(&received, req).await;
    let model = r.body["model"].as_str().unwrap_or("m").to_string();
    let t = next_turn(&turns);
    let (block, stop) = match &t {
        Turn::Text(s) => (json!({"type": "text", "text": s}), "end_turn"),
        Turn::Call(name, args) => (
            json!({"type": "tool_use", "id": "toolu_turn1", "name": name, "input": args}),
            "tool_use",
        ),
    };
    let message = |content: Value, stop: Option<&str>, out: u64| {
        json!({"id": "msg_turn", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": out}})
    };
    if r.body["stream"] != json!(true) {
        return axum::Json(message(json!([block]), Some(stop), 4)).into_response();
    }
    let ev = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap());
    let (start, delta) = match &t {
        Turn::Text(s) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": s}),
        ),
        Turn::Call(name, args) => (
            json!({"type": "tool_use", "id": "toolu_turn1", "name": name, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": args.to_string()}),
        ),
    };
    streamed(
        "text/event-stream",
        vec![
            ev(json!({"type": "message_start", "message": message(json!([]), None, 1)})),
            ev(json!({"type": "content_block_start", "index": 0, "content_block": start})),
            ev(json!({"type": "content_block_delta", "index": 0, "delta": delta})),
            ev(json!({"type": "content_block_stop", "index": 0})),
            ev(
                json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                      "usage": {"output_tokens": 4}}),
            ),
            ev(json!({"type": "message_stop"})),
        ],
    )
}

async fn gemini_turn(State((received, turns)): State<TurnsState>, req: Request) -> Response {
    let r = record(&received, req).await;
    let part = match next_turn(&turns) {
        Turn::Text(s) => json!({"text": s}),
        Turn::Call(name, args) => json!({"functionCall": {"name": name, "args": args}}),
    };
    let body = json!({"candidates": [{"content": {"role": "model", "parts": [part]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 4, "totalTokenCount": 24},
        "modelVersion": "gemini-turn"});
    if r.path.ends_with(":streamGenerateContent") {
        return streamed("text/event-stream", vec![format!("data: {body}\r\n\r\n")]);
    }
    axum::Json(body).into_response()
}

async fn ollama_turn(State((received, turns)): State<TurnsState>, req: Request) -> Response {
    let r = record(&received, req).await;
    let model = r.body["model"].as_str().unwrap_or("m").to_string();
    let message = match next_turn(&turns) {
        Turn::Text(s) => json!({"role": "assistant", "content": s}),
        Turn::Call(name, args) => json!({"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": name, "arguments": args}}]}),
    };
    let at = "2024-07-22T20:33:28.123648Z";
    let last = |message: Value| {
        json!({"model": model, "created_at": at, "message": message, "done": true,
            "done_reason": "stop", "prompt_eval_count": 20, "eval_count": 4})
    };
    // Like the real server, it streams unless told otherwise.
    if r.body["stream"] == json!(false) {
        return axum::Json(last(message)).into_response();
    }
    let first = json!({"model": model, "created_at": at, "message": message, "done": false});
    streamed(
        "application/x-ndjson",
        vec![
            format!("{first}\n"),
            format!("{}\n", last(json!({"role": "assistant", "content": ""}))),
        ],
    )
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "chatcmpl-turn", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

async fn turn(State((received, turns)): State<TurnsState>, req: Request) -> Response {
    let r = record(&received, req).await;
    let model = r.body["model"].as_str().unwrap_or("m").to_string();
    let t = next_turn(&turns);
    let usage = json!({"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24});
    if r.body["stream"] != json!(true) {
        let message = match &t {
            Turn::Text(s) => json!({"role": "assistant", "content": s, "refusal": null}),
            Turn::Call(name, args) => json!({"role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": "call_turn1", "type": "function",
                    "function": {"name": name, "arguments": args.to_string()}}]}),
        };
        let finish = if matches!(t, Turn::Call(..)) {
            "tool_calls"
        } else {
            "stop"
        };
        return axum::Json(json!({"id": "chatcmpl-turn", "object": "chat.completion",
            "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": usage}))
        .into_response();
    }
    let mut pieces = vec![chunk(
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    match &t {
        Turn::Text(s) => {
            for w in s.split_inclusive(' ') {
                pieces.push(chunk(&model, json!({"content": w}), None));
            }
            pieces.push(chunk(&model, json!({}), Some("stop")));
        }
        Turn::Call(name, args) => {
            let a = args.to_string();
            let (x, y) = a.split_at(a.len() / 2);
            pieces.push(chunk(
                &model,
                json!({"tool_calls": [{"index": 0, "id": "call_turn1", "type": "function",
                "function": {"name": name, "arguments": x}}]}),
                None,
            ));
            pieces.push(chunk(
                &model,
                json!({"tool_calls": [{"index": 0, "function": {"arguments": y}}]}),
                None,
            ));
            pieces.push(chunk(&model, json!({}), Some("tool_calls")));
        }
    }
    if r.body["stream_options"]["include_usage"] == json!(true) {
        let u = json!({"id": "chatcmpl-turn", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [], "usage": usage});
        pieces.push(format!("data: {u}\n\n"));
    }
    pieces.push("data: [DONE]\n\n".into());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream")],
        chunked_body(
            pieces.into_iter().map(String::into_bytes).collect(),
            Duration::from_millis(2),
            false,
        ),
    )
        .into_response()
}

// ---------- the native Responses API ----------

pub const NATIVE_TEXT: &str = "Native hello";

/// OpenAI's own Responses API (`POST /v1/responses`), for the passthrough: a fixed answer
/// with the upstream's own ids, JSON or SSE (events split across writes).
#[derive(Clone)]
pub struct ResponsesMock {
    pub endpoint: String,
    pub received: Recorder,
}

impl ResponsesMock {
    pub async fn start() -> ResponsesMock {
        let received = Recorder::default();
        let app = Router::new()
            .route("/v1/responses", post(native))
            .with_state(received.clone());
        ResponsesMock {
            endpoint: format!("{}/v1", serve_app(app).await),
            received,
        }
    }
}

pub fn native_response(model: &str, status: &str) -> Value {
    let mut output = json!([]);
    if status == "completed" {
        output = json!([{"type": "message", "id": "msg_native1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": NATIVE_TEXT, "annotations": [], "logprobs": []}]}]);
    }
    let mut r = json!({"id": "resp_native1", "object": "response", "created_at": 1_700_000_000,
        "status": status, "error": null, "incomplete_details": null, "instructions": null,
        "model": model, "output": output, "parallel_tool_calls": true, "metadata": {},
        "tool_choice": "auto", "tools": [], "temperature": 1.0, "top_p": 1.0});
    if status == "completed" {
        r["usage"] = json!({"input_tokens": 8, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 10});
    }
    r
}

async fn native(State(received): State<Recorder>, req: Request) -> Response {
    let r = record(&received, req).await;
    let model = r.body["model"].as_str().unwrap_or("m").to_string();
    if r.body["stream"] != json!(true) {
        return axum::Json(native_response(&model, "completed")).into_response();
    }
    let ev = |n: u64, kind: &str, mut v: Value| {
        v["type"] = json!(kind);
        v["sequence_number"] = json!(n);
        format!("event: {kind}\ndata: {v}\n\n").into_bytes()
    };
    let item = json!({"type": "message", "id": "msg_native1", "status": "in_progress", "role": "assistant", "content": []});
    let part =
        json!({"type": "output_text", "text": NATIVE_TEXT, "annotations": [], "logprobs": []});
    let empty = json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
    let at = |v: Value| {
        let mut base = json!({"item_id": "msg_native1", "output_index": 0, "content_index": 0});
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        base
    };
    let done_item = native_response(&model, "completed")["output"][0].clone();
    let pieces = vec![
        ev(
            0,
            "response.created",
            json!({"response": native_response(&model, "in_progress")}),
        ),
        ev(
            1,
            "response.in_progress",
            json!({"response": native_response(&model, "in_progress")}),
        ),
        ev(
            2,
            "response.output_item.added",
            json!({"output_index": 0, "item": item}),
        ),
        ev(3, "response.content_part.added", at(json!({"part": empty}))),
        ev(
            4,
            "response.output_text.delta",
            at(json!({"delta": NATIVE_TEXT, "logprobs": []})),
        ),
        ev(
            5,
            "response.output_text.done",
            at(json!({"text": NATIVE_TEXT, "logprobs": []})),
        ),
        ev(6, "response.content_part.done", at(json!({"part": part}))),
        ev(
            7,
            "response.output_item.done",
            json!({"output_index": 0, "item": done_item}),
        ),
        ev(
            8,
            "response.completed",
            json!({"response": native_response(&model, "completed")}),
        ),
    ];
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream")],
        chunked_body(pieces, Duration::from_millis(2), false),
    )
        .into_response()
}
