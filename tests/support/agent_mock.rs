//! A mock OpenAI upstream that behaves like a tool-using model, for agent clients (the
//! Messages ingress, Claude Code): `POST /v1/chat/completions`, JSON or SSE.
//! - the last message is a `tool` result → a text answer quoting it (`TOOL SAID: …`);
//! - the request offers the configured tool and the last user text contains `RUN_TOOL` → a
//!   call of that tool (streamed as id/name, then its arguments in two fragments);
//! - otherwise → the configured reply, optionally after `reasoning_content`.
//!
//! Streams end with a usage chunk when `stream_options.include_usage` asks for one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::{chunked_body, record, serve_app, Recorder};

pub const TOOL_CALL_ID: &str = "call_agent_1";

#[derive(Clone)]
struct Behaviour {
    reply: String,
    reasoning: Option<String>,
    tool: Option<(String, Value)>,
}

#[derive(Clone)]
pub struct AgentMock {
    /// Base URL to configure as the provider endpoint (ends in `/v1`).
    pub endpoint: String,
    pub received: Recorder,
    behaviour: Arc<Mutex<Behaviour>>,
}

#[derive(Clone)]
struct MockState {
    received: Recorder,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl AgentMock {
    pub async fn start(reply: &str) -> AgentMock {
        let received = Recorder::default();
        let behaviour = Arc::new(Mutex::new(Behaviour {
            reply: reply.to_string(),
            reasoning: None,
            tool: None,
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(MockState {
                received: received.clone(),
                behaviour: behaviour.clone(),
            });
        AgentMock {
            endpoint: format!("{}/v1", serve_app(app).await),
            received,
            behaviour,
        }
    }

    /// The tool to call (by name, with these arguments) when asked to `RUN_TOOL`.
    pub fn set_tool(&self, name: &str, arguments: Value) {
        self.behaviour.lock().unwrap().tool = Some((name.to_string(), arguments));
    }

    pub fn set_reasoning(&self, r: Option<&str>) {
        self.behaviour.lock().unwrap().reasoning = r.map(str::to_string);
    }
}

enum Answer {
    Text {
        reasoning: Option<String>,
        text: String,
    },
    Call {
        name: String,
        arguments: String,
    },
}

fn text_of(m: &Value) -> String {
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn decide(b: &Behaviour, body: &Value) -> Answer {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if let Some(last) = messages.last().filter(|m| m["role"] == "tool") {
        let said: String = text_of(last).chars().take(200).collect();
        return Answer::Text {
            reasoning: None,
            text: format!("TOOL SAID: {said}"),
        };
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(text_of)
        .unwrap_or_default();
    if let Some((name, args)) = &b.tool {
        let offered = body["tools"].as_array().is_some_and(|ts| {
            ts.iter()
                .any(|t| t["function"]["name"].as_str() == Some(name.as_str()))
        });
        if offered && last_user.contains("RUN_TOOL") {
            return Answer::Call {
                name: name.clone(),
                arguments: args.to_string(),
            };
        }
    }
    Answer::Text {
        reasoning: b.reasoning.clone(),
        text: b.reply.clone(),
    }
}

const USAGE: (u64, u64) = (17, 5);

fn usage() -> Value {
    json!({"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1, "total_tokens": USAGE.0 + USAGE.1})
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-agent", "object": "chat.completion.chunk", "created": 1_700_000_000,
           "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
}

async fn chat(State(s): State<MockState>, req: Request) -> Response {
    let r = record(&s.received, req).await;
    let b = s.behaviour.lock().unwrap().clone();
    let model = r.body["model"].as_str().unwrap_or("unknown").to_string();
    let answer = decide(&b, &r.body);
    if r.body["stream"] != json!(true) {
        let (message, finish) = match answer {
            Answer::Text { reasoning, text } => {
                let mut m = json!({"role": "assistant", "content": text, "refusal": null});
                if let Some(r) = reasoning {
                    m["reasoning_content"] = json!(r);
                }
                (m, "stop")
            }
            Answer::Call { name, arguments } => (
                json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"id": TOOL_CALL_ID, "type": "function", "function": {"name": name, "arguments": arguments}}]}),
                "tool_calls",
            ),
        };
        return axum::Json(json!({
            "id": "chatcmpl-agent", "object": "chat.completion", "created": 1_700_000_000,
            "model": model, "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": usage()
        }))
        .into_response();
    }
    let mut events = vec![chunk(
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    match answer {
        Answer::Text { reasoning, text } => {
            if let Some(r) = reasoning {
                events.push(chunk(&model, json!({"reasoning_content": r}), None));
            }
            let cut = text
                .char_indices()
                .nth(text.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            for part in [&text[..cut], &text[cut..]] {
                events.push(chunk(&model, json!({"content": part}), None));
            }
            events.push(chunk(&model, json!({}), Some("stop")));
        }
        Answer::Call { name, arguments } => {
            events.push(chunk(
                &model,
                json!({"tool_calls": [{"index": 0, "id": TOOL_CALL_ID, "type": "function",
                "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            let cut = arguments.len() / 2;
            for part in [&arguments[..cut], &arguments[cut..]] {
                events.push(chunk(
                    &model,
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                    None,
                ));
            }
            events.push(chunk(&model, json!({}), Some("tool_calls")));
        }
    }
    if r.body["stream_options"]["include_usage"] == json!(true) {
        events.push(
            json!({"id": "chatcmpl-agent", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": model, "choices": [], "usage": usage()}),
        );
    }
    let mut pieces: Vec<Vec<u8>> = events
        .iter()
        .map(|e| format!("data: {e}\n\n").into_bytes())
        .collect();
    pieces.push(b"data: [DONE]\n\n".to_vec());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream")],
        chunked_body(pieces, Duration::from_millis(2), false),
    )
        .into_response()
}
