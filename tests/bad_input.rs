//! Requests no provider can serve faithfully are refused at parse time with a 400 naming the
//! field, before any upstream is chosen: a function tool without `function`, an unknown
//! message role, a `tool` message answering no earlier tool call.

mod support;

use serde_json::{json, Value};
use support::gemini_mock::GeminiMock;
use support::openai_mock::OpenAiMock;
use support::*;

const KEY: &str = "sk-bad-input-secret-321";

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn call(id: &str) -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]})
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}})
}

async fn post(gw: &Gateway, body: &Value) -> (u16, Value) {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn hostile_shapes_get_a_400_naming_the_field_and_never_reach_a_provider() {
    let g = GeminiMock::start().await;
    let o = OpenAiMock::start().await;
    let gw = Gateway::start_with(ConfigDir::new(json!({
        "g": provider("google", &g.endpoint, Some(KEY), &["gemini-2.5-flash"]),
        "o": provider("openai", &o.endpoint, Some(KEY), &["m"]),
    })))
    .await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"tools": [{"type": "function"}], "messages": [user("Hi")]}),
            "tools[0].function",
        ),
        (
            // The Responses API's flat shape, sent to Chat Completions.
            json!({"tools": [weather_tool(), {"type": "function", "name": "f", "parameters": {}}],
                   "messages": [user("Hi")]}),
            "tools[1].function",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"description": "no name"}}],
                   "messages": [user("Hi")]}),
            "tools[0].function.name",
        ),
        (
            json!({"tools": [{}], "messages": [user("Hi")]}),
            "tools[0].function",
        ),
        (
            json!({"tools": ["get_weather"], "messages": [user("Hi")]}),
            "tools[0]",
        ),
        (
            json!({"tools": {"type": "function"}, "messages": [user("Hi")]}),
            "tools",
        ),
        (
            json!({"messages": [user("Hi"), {"role": "robot", "content": "beep"}]}),
            "messages[1].role",
        ),
        (
            json!({"messages": [{"role": "USER", "content": "Hi"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [user("Hi"), {"role": "tool", "tool_call_id": "call_9", "content": "x"}]}),
            "messages[1].tool_call_id",
        ),
        (
            // Answers a call made *later*: still an orphan where it stands.
            json!({"messages": [user("Hi"), {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                                call("call_1")]}),
            "messages[1].tool_call_id",
        ),
        (
            json!({"messages": [user("Hi"), call("call_1"),
                                {"role": "tool", "tool_call_id": "call_2", "content": "x"}]}),
            "messages[2].tool_call_id",
        ),
        (
            json!({"messages": [user("Hi"), call("call_1"), {"role": "tool", "content": "x"}]}),
            "messages[2].tool_call_id",
        ),
    ];
    for model in ["g/gemini-2.5-flash", "o/m"] {
        for (body, field) in &cases {
            let mut body = body.clone();
            body["model"] = json!(model);
            for stream in [false, true] {
                body["stream"] = json!(stream);
                let (status, v) = post(&gw, &body).await;
                assert_eq!(status, 400, "{model} {body}: {v}");
                assert_schema("ErrorResponse", &v);
                assert_eq!(v["error"]["type"], "invalid_request_error");
                let msg = v["error"]["message"].as_str().unwrap();
                assert!(
                    msg.starts_with(&format!("{field}:")),
                    "'{msg}' names {field}"
                );
            }
        }
    }
    assert_eq!(g.received.count(), 0, "nothing reached Gemini");
    assert_eq!(o.received.count(), 0, "nothing reached OpenAI");
}

#[tokio::test]
async fn well_formed_tools_and_tool_results_still_pass() {
    let o = OpenAiMock::start().await;
    let gw = Gateway::start_with(ConfigDir::new(json!({
        "o": provider("openai", &o.endpoint, Some(KEY), &["m"]),
    })))
    .await;
    let bodies = [
        json!({"tools": [weather_tool()], "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use tools."},
            user("Weather in Oslo and Rome?"),
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
            {"role": "tool", "tool_call_id": "call_1", "content": "sun"},
            user("Thanks")
        ]}),
        // Anthropic's own tool shape and a server tool are left to the translators.
        json!({"tools": [{"name": "get_weather", "input_schema": {"type": "object"}},
                         {"type": "web_search_20250305", "name": "web_search"}],
               "messages": [user("Hi")]}),
        json!({"tools": null, "messages": [user("Hi")]}),
    ];
    for mut body in bodies {
        body["model"] = json!("o/m");
        let (status, v) = post(&gw, &body).await;
        assert_eq!(status, 200, "{body}: {v}");
    }
    assert_eq!(o.received.count(), 3);
    // Forwarded as sent.
    assert_eq!(
        o.received.all()[0].body["messages"][4]["tool_call_id"],
        "call_2"
    );
}
