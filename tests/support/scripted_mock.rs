//! A mock OpenAI upstream whose non-stream answer text is scripted per test (what a selector
//! model says), and whose error answers are timed: it counts arrivals and answers sent, so a
//! test can tell which requests reached it before it had failed N times.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::json;

use super::{record, serve_app, Recorder};

#[derive(Clone)]
struct Script {
    /// The assistant text of every non-stream answer.
    reply: Arc<Mutex<String>>,
    /// Wait this long before answering.
    delay: Arc<Mutex<Duration>>,
    /// Answer this status with an OpenAI error body instead of a completion.
    fail: Arc<Mutex<Option<u16>>>,
    received: Recorder,
    /// Answers already sent when each request arrived, in arrival order.
    sent_before: Arc<Mutex<Vec<usize>>>,
    sent: Arc<AtomicUsize>,
    /// While false, requests wait in the handler (counted as arrived) until released.
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            reply: Default::default(),
            delay: Default::default(),
            fail: Default::default(),
            received: Default::default(),
            sent_before: Default::default(),
            sent: Default::default(),
            open: Arc::new(tokio::sync::watch::channel(true).0),
        }
    }
}

#[derive(Clone)]
pub struct ScriptedMock {
    /// Base URL to configure as the provider endpoint (ends in `/v1`).
    pub endpoint: String,
    pub received: Recorder,
    script: Script,
}

impl ScriptedMock {
    pub async fn start(reply: &str) -> ScriptedMock {
        let script = Script::default();
        *script.reply.lock().unwrap() = reply.to_string();
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(script.clone());
        let base = serve_app(app).await;
        ScriptedMock {
            endpoint: format!("{base}/v1"),
            received: script.received.clone(),
            script,
        }
    }

    pub fn set_reply(&self, reply: &str) {
        *self.script.reply.lock().unwrap() = reply.to_string();
    }

    pub fn set_delay(&self, d: Duration) {
        *self.script.delay.lock().unwrap() = d;
    }

    pub fn set_fail(&self, status: Option<u16>) {
        *self.script.fail.lock().unwrap() = status;
    }

    /// Holds every request until `release`.
    pub fn hold(&self) {
        self.script.open.send_replace(false);
    }

    pub fn release(&self) {
        self.script.open.send_replace(true);
    }

    /// How many requests arrived while fewer than `n` answers had been sent.
    pub fn arrived_before_answer(&self, n: usize) -> usize {
        self.script
            .sent_before
            .lock()
            .unwrap()
            .iter()
            .filter(|&&s| s < n)
            .count()
    }
}

async fn chat(State(s): State<Script>, req: Request) -> Response {
    s.sent_before
        .lock()
        .unwrap()
        .push(s.sent.load(Ordering::SeqCst));
    let r = record(&s.received, req).await;
    let mut open = s.open.subscribe();
    let _ = open.wait_for(|o| *o).await;
    let delay = *s.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let fail = *s.fail.lock().unwrap();
    let resp = match fail {
        Some(code) => (
            StatusCode::from_u16(code).unwrap(),
            [(header::CONTENT_TYPE, "application/json")],
            json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}).to_string(),
        )
            .into_response(),
        None => {
            let model = r.body["model"].as_str().unwrap_or("unknown");
            let reply = s.reply.lock().unwrap().clone();
            axum::Json(json!({
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": reply, "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop"
                }],
                "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59}
            }))
            .into_response()
        }
    };
    s.sent.fetch_add(1, Ordering::SeqCst);
    resp
}
