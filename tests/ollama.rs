//! The Ollama provider against a mock speaking Ollama's native API: what the upstream saw
//! (translated requests) and what the client got (OpenAI bodies and streams).

#[path = "support/ollama_mock.rs"]
mod ollama_mock;
mod support;

use ollama_mock::{tool_arguments, OllamaMock, Script, CREATED, PROMPT_EVAL_COUNT, REPLY};
use serde_json::{json, Value};
use support::*;

const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

async fn setup_with_key(key: Option<&str>) -> (OllamaMock, Gateway) {
    let mock = OllamaMock::start().await;
    let cfg = ConfigDir::new(json!({
        "local": provider("ollama", &mock.endpoint, key, &["llama3.2"]),
    }));
    (mock.clone(), Gateway::start_with(cfg).await)
}

async fn setup() -> (OllamaMock, Gateway) {
    setup_with_key(None).await
}

fn tool(name: &str) -> Value {
    json!({"type": "function", "function": {
        "name": name, "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    }})
}

async fn post(gw: &Gateway, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer client-own-key")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn local_count(gw: &Gateway, messages: &Value) -> u64 {
    let msgs: Vec<aisbf::api::openai::Message> = serde_json::from_value(messages.clone()).unwrap();
    gw.state.tokens.count_messages("llama3.2", &msgs)
}

#[tokio::test]
async fn request_is_translated_to_the_native_api() {
    let (mock, gw) = setup().await;
    let messages = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "text", "text": "these pictures?"}
        ]},
        {"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_abc", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}
        }]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "{\"temp\":21}"}
    ]);
    let body = json!({
        "model": "local/llama3.2", "messages": messages,
        "temperature": 0.3, "top_p": 0.8, "seed": 42, "max_tokens": 64, "stop": ["\n\n", "END"],
        "tools": [tool("get_weather")],
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
        "keep_alive": "10m", "user": "alice", "logprobs": true
    });
    let resp = post(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-aisbf-provider"], "local");
    let v: Value = resp.json().await.unwrap();
    assert_schema("CreateChatCompletionResponse", &v);

    let seen = mock.received.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/api/chat")
    );
    assert_eq!(
        seen.header("authorization"),
        None,
        "no key configured, none sent"
    );
    assert_eq!(
        seen.body,
        json!({
            "model": "llama3.2",
            "stream": false,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is in\nthese pictures?", "images": [PNG_B64]},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "{\"temp\":21}", "tool_name": "get_weather"}
            ],
            "tools": [tool("get_weather")],
            "format": {"type": "object"},
            "options": {"temperature": 0.3, "top_p": 0.8, "seed": 42, "num_predict": 64, "stop": ["\n\n", "END"]},
            "keep_alive": "10m"
        })
    );
    // The mock answers a tool result with text.
    assert_eq!(v["choices"][0]["message"]["content"], REPLY.concat());
    assert_eq!(v["usage"]["effective_context"], local_count(&gw, &messages));
}

#[tokio::test]
async fn key_is_sent_as_bearer_when_configured() {
    let (mock, gw) = setup_with_key(Some("hosted-ollama-key")).await;
    let resp = post(
        &gw,
        &json!({"model": "local/llama3.2", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        mock.received.last().header("authorization"),
        Some("Bearer hosted-ollama-key")
    );
}

#[tokio::test]
async fn non_stream_text_with_usage() {
    let (mock, gw) = setup().await;
    let messages = json!([{"role": "user", "content": "Hi"}]);
    let resp = client()
        .post(gw.url("/api/local/chat/completions"))
        .json(&json!({"model": "llama3.2", "messages": messages}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_schema("CreateChatCompletionResponse", &v);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["created"], CREATED);
    assert_eq!(v["model"], "llama3.2");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["content"], REPLY.concat());
    assert_eq!(choice["message"]["refusal"], Value::Null);
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": PROMPT_EVAL_COUNT, "completion_tokens": 3,
               "total_tokens": PROMPT_EVAL_COUNT + 3, "effective_context": local_count(&gw, &messages)})
    );
    assert_eq!(mock.chats()[0]["stream"], false);
    assert!(mock.chats()[0].get("options").is_none());

    // Two answers never share an id.
    let again: Value = post(
        &gw,
        &json!({"model": "local/llama3.2", "messages": messages}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_ne!(again["id"], v["id"]);
}

#[tokio::test]
async fn non_stream_tool_calls() {
    let (_mock, gw) = setup().await;
    let resp = post(
        &gw,
        &json!({"model": "local/llama3.2", "tools": [tool("get_weather"), tool("get_time")],
                "messages": [{"role": "user", "content": "Weather and time in Paris?"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_schema("CreateChatCompletionResponse", &v);
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], Value::Null);
    let calls = msg["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[1]["function"]["name"], "get_time");
    for c in calls {
        assert_eq!(c["type"], "function");
        assert!(c["id"].as_str().unwrap().starts_with("call_"));
        let args: Value = serde_json::from_str(c["function"]["arguments"].as_str().unwrap())
            .expect("arguments are a JSON string");
        assert_eq!(args, tool_arguments());
    }
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["usage"]["completion_tokens"], 12);
}

#[tokio::test]
async fn length_finish_reason_stream_and_non_stream() {
    let (mock, gw) = setup().await;
    mock.set_done_reason("length");
    let v: Value = post(
        &gw,
        &json!({"model": "local/llama3.2", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let text = post(
        &gw,
        &json!({"model": "local/llama3.2", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    let chunks = assert_openai_stream(&text);
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(|_| c))
        .collect();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0]["choices"][0]["finish_reason"], "length");
    assert_eq!(mock.chats()[0]["options"]["num_predict"], 3);
}

#[tokio::test]
async fn stream_text_with_final_usage_chunk() {
    let (mock, gw) = setup().await;
    let messages = json!([{"role": "user", "content": "Hi"}]);
    let resp = post(
        &gw,
        &json!({"model": "local/llama3.2", "stream": true, "messages": messages}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let chunks = assert_openai_stream(&text);
    assert_eq!(mock.chats()[0]["stream"], true);

    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(stream_text(&chunks), REPLY.concat());
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id, "one id across the stream");
        assert_eq!(c["created"], CREATED);
        assert_eq!(c["model"], "llama3.2");
    }
    // role, 3 content deltas, finish, usage
    assert_eq!(chunks.len(), 6);
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    let usage = &chunks[5]["usage"];
    assert_eq!(usage["prompt_tokens"], PROMPT_EVAL_COUNT);
    assert_eq!(usage["completion_tokens"], 3);
    assert_eq!(usage["total_tokens"], PROMPT_EVAL_COUNT + 3);
    assert_eq!(usage["effective_context"], local_count(&gw, &messages));
}

#[tokio::test]
async fn stream_tool_calls_as_indexed_deltas() {
    let (_mock, gw) = setup().await;
    let text = post(
        &gw,
        &json!({"model": "local/llama3.2", "stream": true,
                "tools": [tool("get_weather"), tool("get_time")],
                "messages": [{"role": "user", "content": "Weather and time?"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    let chunks = assert_openai_stream(&text);
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(deltas.len(), 2);
    for (i, (d, name)) in deltas.iter().zip(["get_weather", "get_time"]).enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["type"], "function");
        assert_eq!(d["function"]["name"], name);
        assert!(d["id"].as_str().unwrap().starts_with("call_"));
        let args: Value =
            serde_json::from_str(d["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, tool_arguments());
    }
    assert_ne!(deltas[0]["id"], deltas[1]["id"]);
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, vec!["tool_calls"]);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 12);
}

fn error_of(v: &Value) -> (&str, &str) {
    (
        v["error"]["message"].as_str().unwrap(),
        v["error"]["type"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn model_not_found_is_passed_through() {
    let (mock, gw) = setup().await;
    mock.set_fault(Fault::Status(
        404,
        r#"{"error":"model \"nope\" not found, try pulling it first"}"#.into(),
    ));
    for stream in [false, true] {
        let resp = post(
            &gw,
            &json!({"model": "local/nope", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
        assert_eq!(resp.status(), 404, "stream={stream}");
        let v: Value = resp.json().await.unwrap();
        let (message, kind) = error_of(&v);
        assert!(
            message.contains("model \"nope\" not found, try pulling it first"),
            "{message}"
        );
        assert_eq!(kind, "invalid_request_error");
        assert_eq!(v["error"]["param"], Value::Null);
    }
    assert_eq!(mock.chats()[0]["model"], "nope");
}

#[tokio::test]
async fn server_error_becomes_502() {
    let (mock, gw) = setup().await;
    mock.set_fault(Fault::Status(
        500,
        r#"{"error":"llama runner process has terminated: exit status 2"}"#.into(),
    ));
    let resp = post(
        &gw,
        &json!({"model": "local/llama3.2", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    let (message, kind) = error_of(&v);
    assert!(
        message.contains("llama runner process has terminated"),
        "{message}"
    );
    assert_eq!(kind, "upstream_error");
}

#[tokio::test]
async fn malformed_answers_become_502() {
    let (mock, gw) = setup().await;
    mock.set_fault(Fault::Malformed);
    for stream in [false, true] {
        let resp = post(
            &gw,
            &json!({"model": "local/llama3.2", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
        assert_eq!(resp.status(), 502, "stream={stream}");
        assert_eq!(
            error_of(&resp.json::<Value>().await.unwrap()).1,
            "upstream_error"
        );
    }
}

/// The data events of a stream that failed after it started: chunks, then exactly one error.
fn failed_stream(body: &str) -> (Vec<Value>, Value) {
    let data = sse_data(body);
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "no [DONE] after a failure: {body}"
    );
    let events: Vec<Value> = data
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let errors = events.iter().filter(|e| e.get("error").is_some()).count();
    assert_eq!(errors, 1, "{body}");
    let (last, chunks) = events.split_last().unwrap();
    assert!(
        last.get("error").is_some(),
        "the error is the last event: {body}"
    );
    for c in chunks {
        assert_schema("CreateChatCompletionStreamResponse", c);
    }
    (chunks.to_vec(), last.clone())
}

#[tokio::test]
async fn error_line_mid_stream_is_one_in_band_error() {
    let (mock, gw) = setup().await;
    mock.set_script(Script::ErrorMidStream(
        "an error was encountered while running the model: unexpected EOF".into(),
    ));
    let resp = post(
        &gw,
        &json!({"model": "local/llama3.2", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(
        resp.status(),
        200,
        "the stream was committed before the error"
    );
    let (chunks, err) = failed_stream(&resp.text().await.unwrap());
    assert_eq!(stream_text(&chunks), REPLY[0]);
    let (message, kind) = error_of(&err);
    assert!(
        message.contains("an error was encountered while running the model"),
        "{message}"
    );
    assert_eq!(kind, "upstream_error");
}

#[tokio::test]
async fn stream_without_done_line_ends_in_an_error() {
    let (mock, gw) = setup().await;
    mock.set_script(Script::NoDoneLine);
    let text = post(
        &gw,
        &json!({"model": "local/llama3.2", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    let (chunks, err) = failed_stream(&text);
    assert_eq!(stream_text(&chunks), REPLY.concat());
    assert!(error_of(&err).0.contains("done"), "{err}");
}

#[tokio::test]
async fn connection_cut_mid_stream_is_one_in_band_error() {
    let (mock, gw) = setup().await;
    mock.set_fault(Fault::BreakMidStream);
    let text = post(
        &gw,
        &json!({"model": "local/llama3.2", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    let (chunks, err) = failed_stream(&text);
    // The cut may swallow the last write in flight: what arrived is a prefix of what was sent.
    let got = stream_text(&chunks);
    assert!(
        got.starts_with(REPLY[0]) && REPLY[..2].concat().starts_with(&got),
        "{got}"
    );
    assert_eq!(error_of(&err).1, "upstream_error");
}

#[tokio::test]
async fn models_from_tags() {
    let (mock, gw) = setup().await;
    let v: Value = get_json(&gw.url("/api/local/models")).await;
    assert_schema("ListModelsResponse", &v);
    assert_eq!(
        v["data"],
        json!([
            {"id": "llama3.2:latest", "object": "model", "created": 1_727_809_200, "owned_by": "ollama"},
            {"id": "llava:7b", "object": "model", "created": 1_726_175_849, "owned_by": "ollama"}
        ])
    );
    let seen = mock.received.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/api/tags")
    );
}

#[tokio::test]
async fn models_fall_back_to_configured_ones() {
    let (mock, gw) = setup().await;
    mock.set_fault(Fault::Status(500, r#"{"error":"boom"}"#.into()));
    let v: Value = get_json(&gw.url("/api/local/models")).await;
    assert_schema("ListModelsResponse", &v);
    let ids = model_ids(&v);
    assert_eq!(ids, vec!["llama3.2"]);
    assert_eq!(
        mock.received.last().path,
        "/api/tags",
        "the list was asked for"
    );
}

#[tokio::test]
async fn official_openai_sdk_against_ollama() {
    let (mock, gw) = setup().await;
    let base = gw.base_v1();
    let model = "local/llama3.2";

    let v = openai_sdk(&base, model, "text").await;
    assert_eq!(v["content"], REPLY.concat());
    assert_eq!(v["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], PROMPT_EVAL_COUNT);
    assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);
    let seen = mock.received.last();
    assert_eq!(
        seen.header("authorization"),
        None,
        "the client's key is not forwarded"
    );
    assert_eq!(seen.body["stream"], false);
    assert_eq!(
        seen.body["messages"][0],
        json!({"role": "system", "content": "You are terse."})
    );

    let v = openai_sdk(&base, model, "stream").await;
    assert_eq!(v["content"], REPLY.concat());
    assert_eq!(v["usage"]["total_tokens"], PROMPT_EVAL_COUNT + 3);
    assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);

    let v = openai_sdk(&base, model, "tools").await;
    assert_eq!(v["finish_reason"], "tool_calls");
    assert_eq!(v["tool_calls"][0]["name"], "get_weather");
    assert_eq!(v["tool_calls"][0]["arguments"], tool_arguments());

    let v = openai_sdk(&base, model, "tools_stream").await;
    assert_eq!(v["finish_reason"], "tool_calls");
    assert_eq!(v["tool_calls"][0]["name"], "get_weather");
    assert_eq!(v["tool_calls"][0]["arguments"], tool_arguments());
    assert!(v["tool_calls"][0]["id"]
        .as_str()
        .unwrap()
        .starts_with("call_"));
    assert_eq!(v["usage"]["completion_tokens"], 12);
    assert_eq!(
        mock.received.last().body["tools"][0]["function"]["name"],
        "get_weather"
    );

    let v = openai_sdk(&base, model, "image").await;
    assert_eq!(v["content"], REPLY.concat());
    let seen = mock.received.last().body;
    assert_eq!(seen["messages"][0]["content"], "What is this?");
    assert_eq!(seen["messages"][0]["images"], json!([PNG_B64]));
}
