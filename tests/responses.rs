//! The OpenAI Responses ingress (`/v1/responses`) against every target kind: what the client
//! got (validated against OpenAI's published Response / ResponseStreamEvent schemas) and
//! what the upstream received.

#[path = "support/ollama_mock.rs"]
#[allow(dead_code)]
mod ollama_mock;
mod support;

use serde_json::{json, Value};
use support::responses::*;
use support::*;

async fn post(gw: &Gateway, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = client()
        .post(gw.url("/v1/responses"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// A non-stream answer: 200, a valid response object with usage.
async fn create(gw: &Gateway, body: Value) -> Value {
    let (status, _, text) = post(gw, &body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_response(&v);
    assert_usage(&v);
    v
}

/// A stream: 200, every event valid, the last one `response.completed`.
async fn stream(gw: &Gateway, mut body: Value) -> Vec<Value> {
    body["stream"] = json!(true);
    let (status, headers, text) = post(gw, &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = assert_events(&text);
    let k = kinds(&events);
    assert_eq!(k[0], "response.created");
    assert_eq!(k[1], "response.in_progress");
    let last = events.last().unwrap();
    assert_response(&last["response"]);
    events
}

fn output_text(v: &Value) -> String {
    v["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|c| c["text"].as_str())
        .collect()
}

async fn error(gw: &Gateway, body: Value, status: u16) -> Value {
    let (s, _, text) = post(gw, &body).await;
    assert_eq!(s, status, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_schema("ErrorResponse", &v);
    v
}

async fn openai() -> (openai_mock::OpenAiMock, Gateway) {
    let mock = openai_mock::OpenAiMock::start().await;
    let cfg = ConfigDir::new(
        json!({"up": provider("openai", &mock.endpoint, Some("sk-up"), &["gpt-4o"])}),
    );
    (mock.clone(), Gateway::start_with(cfg).await)
}

#[tokio::test]
async fn openai_target_non_stream_translated_and_stored() {
    let (mock, gw) = openai().await;
    let v = create(
        &gw,
        json!({"model": "up/gpt-4o", "instructions": "Be brief.", "input": "Hi",
               "max_output_tokens": 64, "temperature": 0.5, "metadata": {"k": "v"}}),
    )
    .await;
    assert_eq!(output_text(&v), openai_mock::REPLY.concat());
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "up/gpt-4o");
    assert_eq!(v["instructions"], "Be brief.");
    assert_eq!(v["metadata"], json!({"k": "v"}));
    assert_eq!(v["usage"]["input_tokens"], 11);
    assert_eq!(v["usage"]["output_tokens"], 3);
    assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);
    let seen = mock.received.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.body,
        json!({"model": "gpt-4o", "stream": false, "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "max_completion_tokens": 64, "temperature": 0.5})
    );
    // Stored: GET returns the same object.
    let got = get_json(&gw.url(&format!("/v1/responses/{}", v["id"].as_str().unwrap()))).await;
    assert_eq!(got, v);
    let got = get_json(&gw.url(&format!("/api/v1/responses/{}", v["id"].as_str().unwrap()))).await;
    assert_eq!(got, v);
}

#[tokio::test]
async fn openai_target_stream_events_and_store() {
    let (mock, gw) = openai().await;
    let events = stream(&gw, json!({"model": "up/gpt-4o", "input": "Hi"})).await;
    assert_eq!(events_text(&events), openai_mock::REPLY.concat());
    assert_eq!(
        kinds(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let done = &events.last().unwrap()["response"];
    assert_usage(done);
    assert_eq!(done["usage"]["input_tokens"], 11);
    assert_eq!(output_text(done), openai_mock::REPLY.concat());
    assert_eq!(mock.received.last().body["stream"], true);
    let got = get_json(&gw.url(&format!("/v1/responses/{}", done["id"].as_str().unwrap()))).await;
    assert_eq!(&got, done);
}

#[tokio::test]
async fn previous_response_id_prepends_the_conversation() {
    let (mock, gw) = openai().await;
    let first = create(&gw, json!({"model": "up/gpt-4o", "input": "Hi"})).await;
    let second = create(
        &gw,
        json!({"model": "up/gpt-4o", "input": "And again?", "previous_response_id": first["id"]}),
    )
    .await;
    assert_eq!(second["previous_response_id"], first["id"]);
    assert_eq!(
        mock.received.last().body["messages"],
        json!([{"role": "user", "content": "Hi"},
               {"role": "assistant", "content": openai_mock::REPLY.concat()},
               {"role": "user", "content": "And again?"}])
    );
    // store:false keeps nothing: neither GET nor previous_response_id find it.
    let unstored = create(
        &gw,
        json!({"model": "up/gpt-4o", "input": "x", "store": false}),
    )
    .await;
    let id = unstored["id"].as_str().unwrap();
    let resp = client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_schema("ErrorResponse", &v);
    assert_eq!(v["error"]["type"], "not_found_error");
    let v = error(
        &gw,
        json!({"model": "up/gpt-4o", "input": "x", "previous_response_id": id}),
        400,
    )
    .await;
    assert_eq!(v["error"]["code"], "previous_response_not_found");
    assert_eq!(v["error"]["param"], "previous_response_id");
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn store_expires_after_store_seconds() {
    let mock = openai_mock::OpenAiMock::start().await;
    let cfg =
        ConfigDir::new(json!({"up": provider("openai", &mock.endpoint, Some("sk-up"), &["m"])}));
    cfg.aisbf(json!({"responses": {"store_max": 10, "store_seconds": 0.2}}));
    let gw = Gateway::start_with(cfg).await;
    let v = create(&gw, json!({"model": "up/m", "input": "x"})).await;
    let url = gw.url(&format!("/v1/responses/{}", v["id"].as_str().unwrap()));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(client().get(url).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn tool_calls_round_trip_with_namespaces() {
    let mock = TurnsMock::start(vec![
        Turn::Call("agents__spawn".into(), json!({"task": "x"})),
        Turn::Text("done".into()),
    ])
    .await;
    let cfg =
        ConfigDir::new(json!({"t": provider("openai", &mock.endpoint, Some("sk-up"), &["m"])}));
    let gw = Gateway::start_with(cfg).await;
    let tools = json!([
        {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
        {"type": "namespace", "name": "agents", "description": "sub-agents", "tools": [
            {"type": "function", "name": "spawn", "description": "Spawn one", "parameters": {"type": "object"}}]},
        {"type": "web_search"}
    ]);
    let v = create(
        &gw,
        json!({"model": "t/m", "input": "go", "tools": tools, "tool_choice": "auto"}),
    )
    .await;
    let call = &v["output"][0];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "spawn");
    assert_eq!(call["namespace"], "agents");
    assert_eq!(call["call_id"], "call_turn1");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"task": "x"})
    );
    assert_eq!(v["tools"][1], tools[1], "tools echoed as sent");
    assert_eq!(
        v["tools"][0]["strict"],
        Value::Null,
        "filled in as OpenAI echoes it"
    );
    let seen = mock.received.last().body;
    let names: Vec<&str> = seen["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["exec_command", "agents__spawn"],
        "web_search left out: {seen}"
    );

    // The next turn sends the call and its output back.
    let events = stream(&gw, json!({"model": "t/m", "tools": tools, "input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "call_turn1", "namespace": "agents", "name": "spawn", "arguments": "{\"task\":\"x\"}"},
        {"type": "function_call_output", "call_id": "call_turn1", "output": "spawned"}]})).await;
    assert_eq!(events_text(&events), "done");
    let seen = mock.received.last().body;
    assert_eq!(
        seen["messages"][1]["tool_calls"][0]["function"]["name"],
        "agents__spawn"
    );
    assert_eq!(
        seen["messages"][2],
        json!({"role": "tool", "content": "spawned", "tool_call_id": "call_turn1"})
    );
}

#[tokio::test]
async fn streamed_tool_call_arguments_arrive_as_deltas() {
    let mock = TurnsMock::start(vec![Turn::Call(
        "exec_command".into(),
        json!({"cmd": "ls -la"}),
    )])
    .await;
    let cfg =
        ConfigDir::new(json!({"t": provider("openai", &mock.endpoint, Some("sk-up"), &["m"])}));
    let gw = Gateway::start_with(cfg).await;
    let events = stream(
        &gw,
        json!({"model": "t/m", "input": "list", "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]}),
    )
    .await;
    let deltas: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas.len(), 2, "arguments streamed as they arrive");
    assert_eq!(deltas.concat(), json!({"cmd": "ls -la"}).to_string());
    let done = events
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done["name"], "exec_command");
    let item = &events.last().unwrap()["response"]["output"][0];
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["arguments"], deltas.concat());
}

#[tokio::test]
async fn codex_shaped_request_reaches_a_chat_target_clean() {
    let mock = TurnsMock::start(vec![Turn::Text("hi there".into())]).await;
    let cfg =
        ConfigDir::new(json!({"t": provider("openai", &mock.endpoint, Some("sk-up"), &["m"])}));
    let gw = Gateway::start_with(cfg).await;
    let body = json!({"model": "t/m", "stream": true, "store": false,
        "include": ["reasoning.encrypted_content"], "reasoning": {"summary": "auto"},
        "tool_choice": "auto", "parallel_tool_calls": true, "prompt_cache_key": "k1",
        "client_metadata": {"session_id": "s"},
        "input": [
            {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "id": "msg_2", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}],
        "tools": [{"type": "function", "name": "exec_command", "strict": false, "parameters": {"type": "object"}},
                  {"type": "web_search", "external_web_access": false}]});
    let events = stream(&gw, body).await;
    assert_eq!(events_text(&events), "hi there");
    let seen = mock.received.last().body;
    let keys: Vec<&String> = seen.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "messages",
            "model",
            "parallel_tool_calls",
            "prompt_cache_key",
            "stream",
            "stream_options",
            "tool_choice",
            "tools"
        ],
        "{seen}"
    );
    assert_eq!(
        seen["messages"][0],
        json!({"role": "system", "content": "You are Codex."})
    );
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let (mock, gw) = openai().await;
    let m = "up/gpt-4o";
    let v = error(
        &gw,
        json!({"model": m, "input": [{"type": "telepathy"}]}),
        400,
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input[0].type"),
        "{v}"
    );
    let v = error(
        &gw,
        json!({"model": m, "input": [{"role": "user", "content": "x"},
        {"type": "function_call_output", "call_id": "call_x", "output": "y"}]}),
        400,
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input[1].call_id"),
        "{v}"
    );
    let v = error(
        &gw,
        json!({"model": m, "input": "x", "tools": [{"type": "web_search"}],
        "tool_choice": {"type": "web_search"}}),
        400,
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("web_search"),
        "{v}"
    );
    let v = error(&gw, json!({"model": m, "input": 7}), 400).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input must be a string"),
        "{v}"
    );
    error(&gw, json!({"model": m}), 400).await;
    let v = error(&gw, json!({"model": "nope/x", "input": "x"}), 404).await;
    assert_eq!(v["error"]["type"], "not_found_error");
    assert_eq!(mock.received.count(), 0, "nothing bad reached the upstream");
    let resp = client()
        .get(gw.url("/v1/responses/resp_unknown"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn mid_stream_failure_is_one_response_failed() {
    let (mock, gw) = openai().await;
    mock.set_fault(Fault::BreakMidStream);
    let (status, _, text) = post(
        &gw,
        &json!({"model": "up/gpt-4o", "input": "Hi", "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    let events = assert_events(&text);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert_eq!(
        kinds(&events)
            .iter()
            .filter(|k| *k == "response.failed")
            .count(),
        1
    );
}

#[tokio::test]
async fn anthropic_target() {
    let mock = anthropic_mock::AnthropicMock::start().await;
    let cfg = ConfigDir::new(
        json!({"a": provider("anthropic", &mock.endpoint, Some("sk-ant"), &["claude-x"])}),
    );
    let gw = Gateway::start_with(cfg).await;
    let v = create(&gw, json!({"model": "a/claude-x", "instructions": "Be brief.", "input": "Hi", "max_output_tokens": 100})).await;
    assert_eq!(output_text(&v), anthropic_mock::REPLY.concat());
    assert_eq!(
        v["usage"]["input_tokens_details"]["cached_tokens"],
        anthropic_mock::CACHE_READ_TOKENS
    );
    let seen = mock.received.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.body["system"], "Be brief.");
    assert_eq!(seen.body["max_tokens"], 100);
    let events = stream(&gw, json!({"model": "a/claude-x", "input": "Hi"})).await;
    assert_eq!(events_text(&events), anthropic_mock::REPLY.concat());
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    // A max_tokens stop is an incomplete response.
    mock.set_stop_reason(Some("max_tokens"));
    let v = create(&gw, json!({"model": "a/claude-x", "input": "Hi"})).await;
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    let events = stream(&gw, json!({"model": "a/claude-x", "input": "Hi"})).await;
    assert_eq!(events.last().unwrap()["type"], "response.incomplete");
}

#[tokio::test]
async fn google_target() {
    let mock = gemini_mock::GeminiMock::start().await;
    let cfg = ConfigDir::new(
        json!({"g": provider("google", &mock.endpoint, Some("g-key"), &["gemini-x"])}),
    );
    let gw = Gateway::start_with(cfg).await;
    let v = create(&gw, json!({"model": "g/gemini-x", "input": "Hi"})).await;
    assert_eq!(output_text(&v), gemini_mock::REPLY.concat());
    assert!(mock.received.last().path.ends_with(":generateContent"));
    let events = stream(&gw, json!({"model": "g/gemini-x", "input": "Hi"})).await;
    assert_eq!(events_text(&events), gemini_mock::REPLY.concat());
    assert!(mock
        .received
        .last()
        .path
        .ends_with(":streamGenerateContent"));
}

#[tokio::test]
async fn ollama_target() {
    let mock = ollama_mock::OllamaMock::start().await;
    let cfg = ConfigDir::new(json!({"o": provider("ollama", &mock.endpoint, None, &["llama3"])}));
    let gw = Gateway::start_with(cfg).await;
    let v = create(&gw, json!({"model": "o/llama3", "input": "Hi"})).await;
    assert_eq!(output_text(&v), ollama_mock::REPLY.concat());
    assert_eq!(v["usage"]["input_tokens"], ollama_mock::PROMPT_EVAL_COUNT);
    let events = stream(&gw, json!({"model": "o/llama3", "input": "Hi"})).await;
    assert_eq!(events_text(&events), ollama_mock::REPLY.concat());
    assert_eq!(mock.received.last().path, "/api/chat");
}

#[tokio::test]
async fn rotation_fails_over_a_dead_entry() {
    let good = openai_mock::OpenAiMock::start().await;
    let cfg = ConfigDir::new(json!({
        "dead": provider("openai", &dead_endpoint(), Some("sk-up"), &["m"]),
        "good": provider("openai", &good.endpoint, Some("sk-up"), &["m"]),
    }));
    cfg.write(
        "rotations.json",
        &json!({"rotations": {"r": {"providers": [
        {"provider_id": "dead", "weight": 100, "models": [{"name": "m"}]},
        {"provider_id": "good", "weight": 1, "models": [{"name": "m"}]}]}}}),
    );
    let gw = Gateway::start_with(cfg).await;
    for i in 0..3 {
        let body = json!({"model": "rotation/r", "input": "Hi", "stream": i % 2 == 1});
        let (status, headers, text) = post(&gw, &body).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(headers["x-aisbf-provider"], "good");
        if i % 2 == 1 {
            assert_eq!(
                events_text(&assert_events(&text)),
                openai_mock::REPLY.concat()
            );
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_response(&v);
            assert_eq!(output_text(&v), openai_mock::REPLY.concat());
        }
    }
    assert_eq!(good.received.count(), 3);
}

#[tokio::test]
async fn autoselect_routes_the_translated_request() {
    let selector = scripted_mock::ScriptedMock::start(
        "<aisbf_model_autoselection>c/code-1</aisbf_model_autoselection>",
    )
    .await;
    let coder = openai_mock::OpenAiMock::start().await;
    let cfg = ConfigDir::new(json!({
        "sel": provider("openai", &selector.endpoint, Some("sk-up"), &["pick"]),
        "c": provider("openai", &coder.endpoint, Some("sk-up"), &["code-1"]),
    }));
    cfg.write(
        "autoselect.json",
        &json!({"autoselect": {"auto": {
        "model_name": "auto", "selection_model": "sel/pick", "fallback": "c/code-1",
        "available_models": [{"model_id": "c/code-1", "description": "Programming"}]}}}),
    );
    let gw = Gateway::start_with(cfg).await;
    let (status, headers, text) = post(
        &gw,
        &json!({"model": "autoselect/auto", "input": "Fix my Rust code"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-aisbf-autoselect"], "c/code-1");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_response(&v);
    assert_eq!(v["model"], "autoselect/auto");
    assert_eq!(output_text(&v), openai_mock::REPLY.concat());
    let task = selector.received.last().body["messages"].to_string();
    assert!(task.contains("Fix my Rust code"), "{task}");
    let events = stream(&gw, json!({"model": "auto", "input": "Fix my Rust code"})).await;
    assert_eq!(events_text(&events), openai_mock::REPLY.concat());
}

#[tokio::test]
async fn passthrough_to_a_native_responses_provider() {
    let mock = ResponsesMock::start().await;
    let mut p = provider("openai", &mock.endpoint, Some("sk-native"), &["gpt-5"]);
    p["responses"] = json!(true);
    let gw = Gateway::start_with(ConfigDir::new(json!({"n": p}))).await;
    let body = json!({"model": "n/gpt-5", "input": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "abc"},
            {"role": "user", "content": "hi"}],
        "include": ["reasoning.encrypted_content"], "tools": [{"type": "web_search"}],
        "previous_response_id": "resp_upstream_own", "store": true, "client_metadata": {"a": "b"}});
    let (status, headers, text) = post(&gw, &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-aisbf-provider"], "n");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v,
        native_response("gpt-5", "completed"),
        "the upstream's own answer"
    );
    let seen = mock.received.last();
    assert_eq!(seen.path, "/v1/responses");
    assert_eq!(seen.header("authorization"), Some("Bearer sk-native"));
    let mut expected = body.clone();
    expected["model"] = json!("gpt-5");
    assert_eq!(seen.body, expected, "only model replaced");

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (status, _, text) = post(&gw, &sbody).await;
    assert_eq!(status, 200);
    let events = assert_events(&text);
    assert_eq!(events_text(&events), NATIVE_TEXT);
    assert_eq!(events.last().unwrap()["response"]["id"], "resp_native1");
}

#[tokio::test]
async fn official_sdk_client_responses() {
    let (_mock, gw) = openai().await;
    let v = openai_sdk_responses(&gw.base_v1(), "up/gpt-4o", "create").await;
    assert_eq!(v["text"], openai_mock::REPLY.concat());
    assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);
    let v = openai_sdk_responses(&gw.base_v1(), "up/gpt-4o", "stream").await;
    assert_eq!(v["text"], openai_mock::REPLY.concat());
    assert_eq!(v["last"], "response.completed");
    let v = openai_sdk_responses(&gw.base_v1(), "up/gpt-4o", "helper").await;
    assert_eq!(v["text"], openai_mock::REPLY.concat());
    assert_eq!(v["status"], "completed");
    let v = openai_sdk_responses(&gw.base_v1(), "up/gpt-4o", "previous").await;
    assert_eq!(v["text"], openai_mock::REPLY.concat());
}

#[tokio::test]
async fn official_sdk_tool_call() {
    let mock = TurnsMock::start(vec![Turn::Call(
        "get_weather".into(),
        json!({"city": "Paris"}),
    )])
    .await;
    let cfg =
        ConfigDir::new(json!({"t": provider("openai", &mock.endpoint, Some("sk-up"), &["m"])}));
    let gw = Gateway::start_with(cfg).await;
    let v = openai_sdk_responses(&gw.base_v1(), "t/m", "tools").await;
    assert_eq!(
        v["calls"],
        json!([{"name": "get_weather", "arguments": {"city": "Paris"}, "call_id": "call_turn1"}])
    );
}

#[tokio::test]
async fn rotation_passthrough_fails_over_and_mixes_with_chat_targets() {
    let native = ResponsesMock::start().await;
    let chat = openai_mock::OpenAiMock::start().await;
    let native_p = |endpoint: &str| {
        let mut p = provider("openai", endpoint, Some("sk-up"), &["gpt-5"]);
        p["responses"] = json!(true);
        p
    };
    let cfg = ConfigDir::new(json!({
        "dead": native_p(&dead_endpoint()),
        "n": native_p(&native.endpoint),
        "c": provider("openai", &chat.endpoint, Some("sk-up"), &["gpt-5"]),
    }));
    cfg.write(
        "rotations.json",
        &json!({"rotations": {
        "natives": {"providers": [
            {"provider_id": "dead", "weight": 100, "models": [{"name": "gpt-5"}]},
            {"provider_id": "n", "weight": 1, "models": [{"name": "gpt-5"}]}]},
        "mixed": {"providers": [
            {"provider_id": "dead", "weight": 100, "models": [{"name": "gpt-5"}]},
            {"provider_id": "c", "weight": 1, "models": [{"name": "gpt-5"}]}]}}}),
    );
    let gw = Gateway::start_with(cfg).await;
    let body = json!({"model": "rotation/natives", "input": "hi", "include": ["reasoning.encrypted_content"],
                      "tools": [{"type": "web_search"}]});
    let (status, headers, text) = post(&gw, &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-aisbf-provider"], "n");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["id"],
        "resp_native1"
    );
    let mut expected = body.clone();
    expected["model"] = json!("gpt-5");
    assert_eq!(
        native.received.last().body,
        expected,
        "the client's body, failed over as is"
    );

    // A chat candidate of the same rotation gets the translation.
    let v = create(
        &gw,
        json!({"model": "rotation/mixed", "input": "hi", "tools": [{"type": "web_search"}]}),
    )
    .await;
    assert_eq!(output_text(&v), openai_mock::REPLY.concat());
    let seen = chat.received.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert!(
        seen.body.get("tools").is_none(),
        "web_search left out: {}",
        seen.body
    );
}

#[tokio::test]
async fn config_responses_fields_are_validated() {
    let mut p = provider("anthropic", "http://127.0.0.1:1", None, &["m"]);
    p["responses"] = json!(true);
    let cfg = ConfigDir::new(json!({"a": p}));
    let err = aisbf::config::load(cfg.path()).unwrap_err().to_string();
    assert!(
        err.contains("providers.json") && err.contains("providers.a.responses"),
        "{err}"
    );
    let cfg = ConfigDir::new(json!({}));
    cfg.aisbf(json!({"responses": {"store_seconds": 0}}));
    let err = aisbf::config::load(cfg.path()).unwrap_err().to_string();
    assert!(
        err.contains("aisbf.json") && err.contains("responses.store_seconds"),
        "{err}"
    );
    cfg.aisbf(json!({"responses": {"store_max": "many"}}));
    let err = aisbf::config::load(cfg.path()).unwrap_err().to_string();
    assert!(err.contains("responses.store_max"), "{err}");
}

#[tokio::test]
async fn custom_tools_become_one_string_functions_and_map_back() {
    let patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch";
    let mock = TurnsMock::start(vec![Turn::Call(
        "apply_patch".into(),
        json!({"input": patch}),
    )])
    .await;
    let cfg =
        ConfigDir::new(json!({"t": provider("openai", &mock.endpoint, Some("sk-up"), &["m"])}));
    let gw = Gateway::start_with(cfg).await;
    let tools = json!([{"type": "custom", "name": "apply_patch", "description": "Edit files.",
        "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}}]);
    let v = create(
        &gw,
        json!({"model": "t/m", "input": "edit", "tools": tools}),
    )
    .await;
    let call = &v["output"][0];
    assert_eq!(call["type"], "custom_tool_call");
    assert_eq!(call["name"], "apply_patch");
    assert_eq!(call["input"], patch);
    let f = &mock.received.last().body["tools"][0]["function"];
    assert_eq!(f["name"], "apply_patch");
    assert_eq!(f["parameters"]["required"], json!(["input"]));
    assert!(
        f["description"]
            .as_str()
            .unwrap()
            .contains("start: begin_patch"),
        "{f}"
    );

    let events = stream(
        &gw,
        json!({"model": "t/m", "input": "edit", "tools": tools}),
    )
    .await;
    let done = events
        .iter()
        .find(|e| e["type"] == "response.custom_tool_call_input.done")
        .unwrap();
    assert_eq!(done["input"], patch);
    assert_eq!(
        events.last().unwrap()["response"]["output"][0]["input"],
        patch
    );

    // The call and its output sent back reach the chat target as a tool call and result.
    stream(
        &gw,
        json!({"model": "t/m", "tools": tools, "input": [
        {"role": "user", "content": "edit"},
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": patch},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"}]}),
    )
    .await;
    let msgs = mock.received.last().body["messages"].clone();
    assert_eq!(
        msgs[1]["tool_calls"][0]["function"]["arguments"],
        json!({"input": patch}).to_string()
    );
    assert_eq!(
        msgs[2],
        json!({"role": "tool", "content": "Done!", "tool_call_id": "call_p"})
    );
}

#[tokio::test]
async fn images_reach_an_anthropic_target() {
    let mock = anthropic_mock::AnthropicMock::start().await;
    let cfg = ConfigDir::new(
        json!({"a": provider("anthropic", &mock.endpoint, Some("k"), &["claude-x"])}),
    );
    let gw = Gateway::start_with(cfg).await;
    let pixel = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    create(
        &gw,
        json!({"model": "a/claude-x", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": pixel, "detail": "auto"}]}]}),
    )
    .await;
    let content = mock.received.last().body["messages"][0]["content"].clone();
    assert_eq!(content[0], json!({"type": "text", "text": "What is this?"}));
    assert_eq!(content[1]["type"], "image");
    assert_eq!(content[1]["source"]["type"], "base64");
}

#[tokio::test]
async fn function_call_output_continues_a_stored_tool_call() {
    let mock = TurnsMock::start(vec![
        Turn::Call("get_weather".into(), json!({"city": "Paris"})),
        Turn::Text("Sunny.".into()),
    ])
    .await;
    let cfg =
        ConfigDir::new(json!({"t": provider("openai", &mock.endpoint, Some("sk-up"), &["m"])}));
    let gw = Gateway::start_with(cfg).await;
    let tools =
        json!([{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]);
    let first = create(
        &gw,
        json!({"model": "t/m", "input": "Weather in Paris?", "tools": tools}),
    )
    .await;
    let call_id = first["output"][0]["call_id"].as_str().unwrap();
    let second = create(&gw, json!({"model": "t/m", "tools": tools, "previous_response_id": first["id"],
        "input": [{"type": "function_call_output", "call_id": call_id, "output": "{\"sky\":\"clear\"}"}]})).await;
    assert_eq!(output_text(&second), "Sunny.");
    assert_eq!(
        mock.received.last().body["messages"],
        json!([{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": null, "tool_calls": [{"id": call_id, "type": "function",
                   "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
               {"role": "tool", "content": "{\"sky\":\"clear\"}", "tool_call_id": call_id}])
    );
}

#[tokio::test]
async fn condensation_applies_to_translated_requests() {
    let mock = openai_mock::OpenAiMock::start().await;
    let cfg = ConfigDir::new(
        json!({"up": {"type": "openai", "endpoint": mock.endpoint, "api_key": "sk-up", "models": [
        {"name": "small", "context_size": 100000, "condense_context": 10, "condense_method": "algorithmic"}]}}),
    );
    let gw = Gateway::start_with(cfg).await;
    let log = "ERROR connection refused to db:5432 while serving the request\n".repeat(4000);
    let v = create(
        &gw,
        json!({"model": "up/small", "input": [
        {"role": "user", "content": "Why did it crash?"},
        {"type": "function_call", "call_id": "call_log", "name": "read_log", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_log", "output": log},
        {"role": "user", "content": "List every distinct error."}]}),
    )
    .await;
    let sent = mock.received.last().body["messages"].clone();
    let tool = sent[2]["content"].as_str().unwrap();
    assert!(
        tool.len() < log.len() / 10,
        "the log was condensed: {} bytes",
        tool.len()
    );
    assert_eq!(sent[2]["tool_call_id"], "call_log", "tool pairing kept");
    assert!(
        v["usage"]["effective_context"].as_u64().unwrap() < 10_000,
        "{}",
        v["usage"]
    );
}

#[tokio::test]
async fn official_sdk_through_every_target_kind() {
    let a = anthropic_mock::AnthropicMock::start().await;
    let g = gemini_mock::GeminiMock::start().await;
    let o = ollama_mock::OllamaMock::start().await;
    let up = openai_mock::OpenAiMock::start().await;
    let selector = scripted_mock::ScriptedMock::start(
        "<aisbf_model_autoselection>a/claude-x</aisbf_model_autoselection>",
    )
    .await;
    let cfg = ConfigDir::new(json!({
        "a": provider("anthropic", &a.endpoint, Some("k"), &["claude-x"]),
        "g": provider("google", &g.endpoint, Some("k"), &["gemini-x"]),
        "o": provider("ollama", &o.endpoint, None, &["llama3"]),
        "up": provider("openai", &up.endpoint, Some("sk-up"), &["gpt-4o"]),
        "dead": provider("openai", &dead_endpoint(), Some("sk-up"), &["gpt-4o"]),
        "sel": provider("openai", &selector.endpoint, Some("sk-up"), &["pick"]),
    }));
    cfg.write(
        "rotations.json",
        &json!({"rotations": {"r": {"providers": [
        {"provider_id": "dead", "weight": 100, "models": [{"name": "gpt-4o"}]},
        {"provider_id": "up", "weight": 1, "models": [{"name": "gpt-4o"}]}]}}}),
    );
    cfg.write(
        "autoselect.json",
        &json!({"autoselect": {"auto": {
        "selection_model": "sel/pick", "fallback": "rotation/r",
        "available_models": [{"model_id": "a/claude-x", "description": "Anything"}]}}}),
    );
    let gw = Gateway::start_with(cfg).await;
    for (model, text) in [
        ("a/claude-x", anthropic_mock::REPLY.concat()),
        ("g/gemini-x", gemini_mock::REPLY.concat()),
        ("o/llama3", ollama_mock::REPLY.concat()),
        ("rotation/r", openai_mock::REPLY.concat()),
        ("autoselect/auto", anthropic_mock::REPLY.concat()),
    ] {
        for mode in ["create", "helper"] {
            let v = openai_sdk_responses(&gw.base_v1(), model, mode).await;
            assert_eq!(v["text"], text, "{model} {mode}: {v}");
        }
    }
}

/// The first text delta reaches the client while the upstream is still holding the rest of
/// its answer: nothing is buffered.
#[tokio::test]
async fn stream_events_flow_as_they_arrive() {
    use axum::response::IntoResponse;
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let rx = rx.clone();
            async move {
                let chunk = |d: Value, f: Value| {
                    let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                        "choices": [{"index": 0, "delta": d, "logprobs": null, "finish_reason": f}]});
                    bytes::Bytes::from(format!("data: {c}\n\n"))
                };
                let first = chunk(json!({"role": "assistant", "content": "early"}), Value::Null);
                let rest = async move {
                    let rx = rx.lock().await.take().unwrap();
                    let _ = rx.await;
                    let mut b = chunk(json!({"content": " late"}), json!("stop")).to_vec();
                    b.extend_from_slice(b"data: [DONE]\n\n");
                    bytes::Bytes::from(b)
                };
                let body = futures::stream::once(async move { first })
                    .chain(futures::stream::once(rest))
                    .map(Ok::<_, std::io::Error>);
                ([("content-type", "text/event-stream")], axum::body::Body::from_stream(body)).into_response()
            }
        }),
    );
    let base = serve_app(app).await;
    let cfg = ConfigDir::new(
        json!({"up": provider("openai", &format!("{base}/v1"), Some("sk-up"), &["m"])}),
    );
    let gw = Gateway::start_with(cfg).await;
    let resp = client()
        .post(gw.url("/v1/responses"))
        .json(&json!({"model": "up/m", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let wait = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while !seen.contains("\"delta\":\"early\"") {
            let b = body.next().await.expect("more bytes").unwrap();
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    })
    .await;
    assert!(
        wait.is_ok(),
        "the first delta did not arrive before the upstream finished: {seen}"
    );
    tx.send(()).unwrap();
    while let Some(b) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(&b.unwrap()));
    }
    let events = assert_events(&seen);
    assert_eq!(events_text(&events), "early late");
    assert_eq!(events.last().unwrap()["type"], "response.completed");
}

#[tokio::test]
async fn model_aliases_route_responses_requests() {
    let (mock, _) = openai().await;
    let cfg = ConfigDir::new(
        json!({"up": provider("openai", &mock.endpoint, Some("sk-up"), &["gpt-4o"])}),
    );
    cfg.aisbf(json!({"model_aliases": {"gpt-5*": "up/gpt-4o", "broken": "nope/x"}}));
    let gw = Gateway::start_with(cfg).await;
    let v = create(&gw, json!({"model": "gpt-5.1-codex", "input": "Hi"})).await;
    assert_eq!(
        v["model"], "gpt-5.1-codex",
        "the client's own name is echoed"
    );
    assert_eq!(output_text(&v), openai_mock::REPLY.concat());
    assert_eq!(mock.received.last().body["model"], "gpt-4o");
    let e = error(&gw, json!({"model": "broken", "input": "Hi"}), 404).await;
    assert_eq!(e["error"]["type"], "not_found_error");
}
