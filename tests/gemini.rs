//! The Gemini adapter against a mock speaking the real Generative Language API: what Gemini
//! received (translated request, headers) and what the OpenAI client got back.

mod support;

use serde_json::{json, Value};
use support::gemini_mock::{
    call_args, error_body, GeminiMock, Reply, PROMPT_TOKENS, REPLY, TOTAL_TOKENS,
};
use support::*;

const KEY: &str = "AIza-upstream-secret-456";
const MODEL: &str = "gemini-2.0-flash";

async fn setup() -> (GeminiMock, Gateway) {
    let mock = GeminiMock::start().await;
    let cfg = ConfigDir::new(json!({
        "g": provider("google", &mock.endpoint, Some(KEY), &[MODEL, "gemini-configured-only"]),
    }));
    (mock.clone(), Gateway::start_with(cfg).await)
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

async fn post_json(gw: &Gateway, body: &Value) -> (u16, Value) {
    let resp = post(gw, body).await;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

async fn post_stream(gw: &Gateway, mut body: Value) -> String {
    body["stream"] = json!(true);
    let resp = post(gw, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    resp.text().await.unwrap()
}

fn tool(name: &str) -> Value {
    json!({"type": "function", "function": {
        "name": name, "description": format!("{name} for a city"),
        "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                       "properties": {"city": {"type": "string"}, "days": {"type": ["integer", "null"]}},
                       "required": ["city"], "additionalProperties": false}}})
}

/// The key travels in its header only; the client's own Authorization never goes upstream.
fn assert_auth(seen: &Received) {
    assert_eq!(seen.header("x-goog-api-key"), Some(KEY));
    assert_eq!(seen.header("authorization"), None);
    assert!(
        !seen.query.as_deref().unwrap_or("").contains(KEY)
            && !seen.query.as_deref().unwrap_or("").contains("key="),
        "key in the URL: {:?}",
        seen.query
    );
}

#[tokio::test]
async fn request_translation_reaches_gemini() {
    let (mock, gw) = setup().await;
    let body = json!({
        "model": "g/gemini-2.0-flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Look at these"},
            {"role": "user", "content": [
                {"type": "text", "text": "two images"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://img.example/cat.gif", "detail": "high"}}
            ]}
        ],
        "tools": [tool("get_weather")],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.3, "top_p": 0.8, "max_tokens": 256, "stop": ["END", "STOP"], "n": 1,
        "logit_bias": {"50256": -100}, "user": "alice", "parallel_tool_calls": false
    });
    let (status, v) = post_json(&gw, &body).await;
    assert_eq!(status, 200, "{v}");
    assert_schema("CreateChatCompletionResponse", &v);

    let seen = mock.received.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(seen.query, None);
    assert_auth(&seen);
    assert_eq!(
        seen.body,
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello"}]},
                {"role": "user", "parts": [
                    {"text": "Look at these"},
                    {"text": "two images"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    {"fileData": {"mimeType": "image/gif", "fileUri": "https://img.example/cat.gif"}}
                ]}
            ],
            "tools": [{"functionDeclarations": [{
                "name": "get_weather", "description": "get_weather for a city",
                "parameters": {"type": "object",
                               "properties": {"city": {"type": "string"}, "days": {"type": "integer", "nullable": true}},
                               "required": ["city"]}
            }]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {"temperature": 0.3, "topP": 0.8, "maxOutputTokens": 256,
                                 "stopSequences": ["END", "STOP"], "candidateCount": 1}
        }),
        "the exact translated request (unexpressible fields dropped)"
    );

    // The mock answered a functionCall: it comes back as an OpenAI tool call.
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    // Gemini gives no ids: the gateway's are unique and fit OpenAI's 40-character limit.
    assert_generated_call_id(&call["id"]);
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().expect("a string")).unwrap();
    assert_eq!(args, call_args(0));
}

#[tokio::test]
async fn tool_results_round_trip_as_function_responses() {
    let (mock, gw) = setup().await;
    let body = json!({
        "model": "g/gemini-2.0-flash",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{\"city\":\"Tokyo\",\"tz\":{\"dst\":false}}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "09:00"},
            {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp_c\":21,\"sky\":\"clear\"}"}
        ],
        "tools": [tool("get_weather"), tool("get_time")]
    });
    let (status, v) = post_json(&gw, &body).await;
    assert_eq!(status, 200, "{v}");
    assert_schema("CreateChatCompletionResponse", &v);
    let seen = mock.received.last();
    assert_eq!(
        seen.body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Weather in Paris and Tokyo?"}]},
            {"role": "model", "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {"city": "Tokyo", "tz": {"dst": false}}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_time", "response": {"content": "09:00"}}},
                {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21, "sky": "clear"}}}
            ]}
        ])
    );
    assert!(seen.body.get("toolConfig").is_none());
    // With the results in, the mock answers text.
    assert_eq!(v["choices"][0]["message"]["content"], REPLY.concat());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn non_stream_text_usage_and_effective_context() {
    let (_mock, gw) = setup().await;
    let body = json!({"model": "g/gemini-2.0-flash",
                      "messages": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "Hi"}]});
    let resp = post(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-aisbf-provider"], "g");
    assert_eq!(resp.headers()["x-aisbf-model"], MODEL);
    let v: Value = resp.json().await.unwrap();
    assert_schema("CreateChatCompletionResponse", &v);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "chatcmpl-mockresp1");
    assert_eq!(v["choices"][0]["message"]["content"], REPLY.concat());
    assert_eq!(v["choices"][0]["message"]["refusal"], Value::Null);
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], TOTAL_TOKENS);
    let expected = gw.state.tokens.count_messages(
        MODEL,
        &serde_json::from_value::<Vec<aisbf::api::openai::Message>>(body["messages"].clone())
            .unwrap(),
    );
    assert_eq!(v["usage"]["effective_context"], expected);
}

#[tokio::test]
async fn stream_text_with_final_usage_chunk() {
    let (mock, gw) = setup().await;
    let text = post_stream(
        &gw,
        json!({"model": "g/gemini-2.0-flash", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    let chunks = assert_openai_stream(&text);
    assert_eq!(stream_text(&chunks), REPLY.concat());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(|_| c))
        .collect();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0]["choices"][0]["finish_reason"], "stop");
    let last = chunks.last().unwrap();
    assert_eq!(last["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(last["usage"]["total_tokens"], TOTAL_TOKENS);
    assert!(last["usage"]["effective_context"].as_u64().unwrap() > 0);
    assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-mockresp1"));

    let seen = mock.received.last();
    assert_eq!(
        seen.path,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    );
    assert_eq!(seen.query.as_deref(), Some("alt=sse"));
    assert_auth(&seen);
    assert!(seen.body.get("stream").is_none());
}

#[tokio::test]
async fn stream_tool_calls_keep_index_id_and_arguments() {
    let (_mock, gw) = setup().await;
    let text = post_stream(
        &gw,
        json!({"model": "g/gemini-2.0-flash", "messages": [{"role": "user", "content": "Weather?"}],
               "tools": [tool("get_weather"), tool("get_forecast")], "tool_choice": "required"}),
    )
    .await;
    let chunks = assert_openai_stream(&text);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 2, "{text}");
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    for (i, (c, name)) in calls
        .iter()
        .zip(["get_weather", "get_forecast"])
        .enumerate()
    {
        assert_eq!(c["index"], i);
        assert_generated_call_id(&c["id"]);
        assert_eq!(c["type"], "function");
        assert_eq!(c["function"]["name"], name);
        let args: Value =
            serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, call_args(i));
    }
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["tool_calls"]);
}

fn candidate(parts: Value, finish: &str) -> Value {
    json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
           "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1, "totalTokenCount": 5}})
}

#[tokio::test]
async fn finish_reasons_and_blocked_prompts() {
    let (mock, gw) = setup().await;
    let blocked = json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                         "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}});
    let cases = [
        (
            candidate(json!([{"text": "cut"}]), "MAX_TOKENS"),
            "length",
            "cut",
        ),
        (
            candidate(json!([{"text": "no"}]), "SAFETY"),
            "content_filter",
            "no",
        ),
        (
            candidate(json!([{"text": "x"}]), "RECITATION"),
            "content_filter",
            "x",
        ),
        (candidate(json!([{"text": "y"}]), "OTHER"), "stop", "y"),
        (blocked, "content_filter", ""),
    ];
    let req =
        json!({"model": "g/gemini-2.0-flash", "messages": [{"role": "user", "content": "Hi"}]});
    for (native, finish, content) in cases {
        mock.set_reply(Reply::Custom {
            whole: native.clone(),
            events: vec![native.clone()],
        });
        let (status, v) = post_json(&gw, &req).await;
        assert_eq!(status, 200, "{v}");
        assert_schema("CreateChatCompletionResponse", &v);
        assert_eq!(v["choices"][0]["finish_reason"], finish, "{native}");
        assert_eq!(v["choices"][0]["message"]["content"], content);
        assert_eq!(v["usage"]["prompt_tokens"], 4);

        let chunks = assert_openai_stream(&post_stream(&gw, req.clone()).await);
        assert_eq!(stream_text(&chunks), content);
        let f: Vec<&str> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect();
        assert_eq!(f, [finish], "{native}");
    }
}

#[tokio::test]
async fn stream_without_finish_reason_ends_with_an_error_event() {
    let (mock, gw) = setup().await;
    let partial =
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "half"}]}}]});
    mock.set_reply(Reply::Custom {
        whole: partial.clone(),
        events: vec![partial],
    });
    let text = post_stream(
        &gw,
        json!({"model": "g/gemini-2.0-flash", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    let data = sse_data(&text);
    assert!(data.iter().any(|d| d.contains("\"half\"")), "{text}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{text}");
    assert!(!data.iter().any(|d| d == "[DONE]"));

    // A connection cut mid-stream is the same: the chunks that went out, then one error.
    mock.set_reply(Reply::Auto);
    mock.set_fault(Fault::BreakMidStream);
    let text = post_stream(
        &gw,
        json!({"model": "g/gemini-2.0-flash", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    let data = sse_data(&text);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(last["error"].is_object(), "{text}");
}

#[tokio::test]
async fn errors_map_to_openai_shapes() {
    let (mock, gw) = setup().await;
    let req =
        json!({"model": "g/gemini-2.0-flash", "messages": [{"role": "user", "content": "Hi"}]});
    let cases = [
        (
            400,
            error_body(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
            ),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            403,
            error_body(403, "PERMISSION_DENIED", "denied"),
            403,
            "PERMISSION_DENIED",
        ),
        (
            404,
            error_body(404, "NOT_FOUND", "models/x is not found"),
            404,
            "NOT_FOUND",
        ),
        (
            500,
            error_body(500, "INTERNAL", "internal"),
            502,
            "upstream_error",
        ),
        (
            503,
            error_body(503, "UNAVAILABLE", "The model is overloaded."),
            502,
            "upstream_error",
        ),
    ];
    for (native, body, status, kind) in cases {
        mock.set_fault(Fault::Status(native, body.clone()));
        let (got, v) = post_json(&gw, &req).await;
        assert_eq!(got, status, "{native}: {v}");
        assert_eq!(v["error"]["type"], kind, "{native}: {v}");
        assert_eq!(v["error"]["param"], Value::Null);
        if status < 500 {
            let sent: Value = serde_json::from_str(&body).unwrap();
            let message = sent["error"]["message"].as_str().unwrap();
            assert!(
                v["error"]["message"].as_str().unwrap().contains(message),
                "client faults carry the upstream's message: {v}"
            );
            assert_eq!(v["error"]["code"], native.to_string());
        }
        assert!(!v.to_string().contains(KEY));
    }

    mock.set_fault(Fault::RateLimited(7));
    let resp = post(&gw, &req).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("quota"));
}

#[tokio::test]
async fn malformed_answers_are_bad_gateway() {
    let (mock, gw) = setup().await;
    mock.set_fault(Fault::Malformed);
    let req =
        json!({"model": "g/gemini-2.0-flash", "messages": [{"role": "user", "content": "Hi"}]});
    let (status, v) = post_json(&gw, &req).await;
    assert_eq!(status, 502, "{v}");
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let (status, v) = post_json(&gw, &sreq).await;
    assert_eq!(
        status, 502,
        "nothing committed before the first valid event: {v}"
    );
    assert_eq!(v["error"]["type"], "upstream_error");
}

#[tokio::test]
async fn models_list_pages_and_falls_back() {
    let (mock, gw) = setup().await;
    let v: Value = get_json(&gw.url("/api/g/models")).await;
    assert_schema("ListModelsResponse", &v);
    let ids = model_ids(&v);
    assert_eq!(
        ids,
        ["gemini-2.0-flash", "gemini-1.5-pro"],
        "embedding models left out"
    );
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["owned_by"] == "google"));

    let gets: Vec<Received> = mock
        .received
        .all()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 2, "both pages fetched");
    assert!(gets.iter().all(|r| r.path == "/v1beta/models"));
    for r in &gets {
        assert_auth(r);
    }
    assert!(gets[1]
        .query
        .as_deref()
        .unwrap()
        .contains("pageToken=page2"));

    mock.set_fault(Fault::Status(500, error_body(500, "INTERNAL", "boom")));
    let v: Value = get_json(&gw.url("/api/g/models")).await;
    assert_schema("ListModelsResponse", &v);
    let ids = model_ids(&v);
    assert_eq!(
        ids,
        [MODEL, "gemini-configured-only"],
        "configured models on failure"
    );
}

#[tokio::test]
async fn official_openai_sdk_against_gemini() {
    let (mock, gw) = setup().await;
    let model = "g/gemini-2.0-flash";
    let v = openai_sdk(&gw.base_v1(), model, "text").await;
    assert_eq!(v["content"], REPLY.concat());
    assert_eq!(v["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], TOTAL_TOKENS);
    assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);
    assert_eq!(
        mock.received.last().body["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}]})
    );

    let v = openai_sdk(&gw.base_v1(), model, "stream").await;
    assert_eq!(v["content"], REPLY.concat());
    assert_eq!(v["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert!(v["usage"]["effective_context"].as_u64().unwrap() > 0);

    let v = openai_sdk(&gw.base_v1(), model, "tools").await;
    assert_eq!(v["finish_reason"], "tool_calls");
    assert_eq!(v["tool_calls"][0]["name"], "get_weather");
    assert_eq!(v["tool_calls"][0]["arguments"], call_args(0));

    let v = openai_sdk(&gw.base_v1(), model, "tools_stream").await;
    assert_eq!(v["finish_reason"], "tool_calls");
    assert_generated_call_id(&v["tool_calls"][0]["id"]);
    assert_eq!(v["tool_calls"][0]["name"], "get_weather");
    assert_eq!(v["tool_calls"][0]["arguments"], call_args(0));
    assert_eq!(
        mock.received.last().body["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );

    let v = openai_sdk(&gw.base_v1(), model, "image").await;
    assert_eq!(v["content"], REPLY.concat());
    let parts = &mock.received.last().body["contents"][0]["parts"];
    assert_eq!(parts[1]["inlineData"]["mimeType"], "image/png");
}

/// A tool-call id the gateway made up: `call_` plus random characters, at most 40 long.
fn assert_generated_call_id(id: &Value) {
    let id = id.as_str().expect("a string id");
    assert!(id.starts_with("call_") && id.len() <= 40, "{id}");
}
