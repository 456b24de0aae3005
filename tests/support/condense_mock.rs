//! A mock condensation model speaking the OpenAI Chat Completions API
//! (`POST /v1/chat/completions`, JSON): it records what it was asked and answers a canned
//! text, an empty answer, or a scripted fault.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::json;

use super::{record, serve_app, Fault, Recorder};

#[derive(Debug, Clone)]
pub enum Answer {
    Text(String),
    /// A well-formed completion whose content is empty.
    Empty,
    Fault(Fault),
}

#[derive(Clone)]
pub struct CondenseMock {
    /// Base URL to configure as the provider endpoint (ends in `/v1`).
    pub endpoint: String,
    pub received: Recorder,
    answer: Arc<Mutex<Answer>>,
}

#[derive(Clone)]
struct MockState {
    received: Recorder,
    answer: Arc<Mutex<Answer>>,
}

impl CondenseMock {
    pub async fn start(answer: Answer) -> CondenseMock {
        let received = Recorder::default();
        let answer = Arc::new(Mutex::new(answer));
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(MockState {
                received: received.clone(),
                answer: answer.clone(),
            });
        let base = serve_app(app).await;
        CondenseMock {
            endpoint: format!("{base}/v1"),
            received,
            answer,
        }
    }

    pub fn set_answer(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }
}

async fn chat(State(s): State<MockState>, req: Request) -> Response {
    let r = record(&s.received, req).await;
    let model = r.body["model"].as_str().unwrap_or("unknown").to_string();
    let answer = s.answer.lock().unwrap().clone();
    let content = match answer {
        Answer::Text(t) => t,
        Answer::Empty => String::new(),
        Answer::Fault(Fault::Status(code, body)) => {
            return (
                StatusCode::from_u16(code).unwrap(),
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Answer::Fault(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            String::new()
        }
        Answer::Fault(f) => panic!("condense mock does not script {f:?}"),
    };
    axum::Json(json!({
        "id": "chatcmpl-condense1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    }))
    .into_response()
}
