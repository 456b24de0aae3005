//! Table tests of the Ollama translation (shapes from Ollama's API documentation).
use super::*;
use crate::providers::kernel::Harness;
use crate::providers::StreamItem;
use futures::StreamExt;
use serde_json::json;

fn request(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

fn native(v: Value) -> (Value, Vec<String>) {
    let req = request(v);
    let n = to_native(&req, "llama3.2");
    (serde_json::to_value(&n).unwrap(), n.dropped.clone())
}

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk";

#[test]
fn messages_translate_by_role() {
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "plain text",
            json!({"role": "user", "content": "hi"}),
            json!({"role": "user", "content": "hi"}),
        ),
        (
            "developer is system",
            json!({"role": "developer", "content": "be brief"}),
            json!({"role": "system", "content": "be brief"}),
        ),
        (
            "text parts joined, data image as base64",
            json!({"role": "user", "content": [
                {"type": "text", "text": "what is"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}},
                {"type": "text", "text": "this?"}]}),
            json!({"role": "user", "content": "what is\nthis?", "images": [PNG]}),
        ),
        (
            "https image dropped",
            json!({"role": "user", "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}),
            json!({"role": "user", "content": "see"}),
        ),
        (
            "assistant tool calls with object arguments",
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}]}),
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "now", "arguments": {}}}]}),
        ),
    ];
    for (name, input, want) in cases {
        let (out, _) = native(json!({"model": "m", "messages": [input]}));
        assert_eq!(out["messages"][0], want, "{name}");
    }
}

#[test]
fn tool_results_carry_the_tool_name() {
    let (out, dropped) = native(json!({"model": "m", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "unknown", "content": "?"},
        {"role": "function", "name": "legacy", "content": "old"}
    ]}));
    assert_eq!(
        out["messages"][2],
        json!({"role": "tool", "content": "sunny", "tool_name": "get_weather"})
    );
    assert_eq!(out["messages"][3], json!({"role": "tool", "content": "?"}));
    assert_eq!(
        out["messages"][4],
        json!({"role": "tool", "content": "old", "tool_name": "legacy"})
    );
    assert!(dropped.is_empty(), "{dropped:?}");
}

#[test]
fn options_format_and_stream_flag() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let cases: Vec<(Value, Value)> = vec![
        (json!({}), json!({"stream": false})),
        (json!({"stream": true}), json!({"stream": true})),
        (
            json!({"temperature": 0.2, "top_p": 0.9, "seed": 7, "max_tokens": 50, "stop": "END"}),
            json!({"stream": false, "options": {"temperature": 0.2, "top_p": 0.9, "seed": 7, "num_predict": 50, "stop": ["END"]}}),
        ),
        (
            json!({"max_tokens": 50, "max_completion_tokens": 60, "stop": ["a", "b"]}),
            json!({"stream": false, "options": {"num_predict": 60, "stop": ["a", "b"]}}),
        ),
        (
            json!({"options": {"num_ctx": 8192, "temperature": 1.0}, "temperature": 0.1, "keep_alive": "10m"}),
            json!({"stream": false, "options": {"num_ctx": 8192, "temperature": 0.1}, "keep_alive": "10m"}),
        ),
        (
            json!({"response_format": {"type": "json_object"}}),
            json!({"stream": false, "format": "json"}),
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}),
            json!({"stream": false, "format": schema}),
        ),
        (
            json!({"response_format": {"type": "text"}}),
            json!({"stream": false}),
        ),
    ];
    for (fields, want) in cases {
        let mut req = json!({"model": "m", "messages": []});
        for (k, v) in fields.as_object().unwrap() {
            req[k] = v.clone();
        }
        let (mut out, _) = native(req);
        let o = out.as_object_mut().unwrap();
        assert_eq!(o.remove("model"), Some(json!("llama3.2")));
        assert_eq!(o.remove("messages"), Some(json!([])));
        assert_eq!(out, want, "{fields}");
    }
}

#[test]
fn tools_pass_and_what_cannot_be_expressed_is_named() {
    let tool =
        json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}});
    let (out, dropped) = native(json!({
        "model": "m", "messages": [], "tools": [tool, {"type": "web_search"}],
        "tool_choice": "required", "user": "u", "n": 1, "logprobs": true,
        "stream_options": {"include_usage": true}, "parallel_tool_calls": false
    }));
    assert_eq!(out["tools"], json!([tool]));
    assert_eq!(
        dropped,
        vec![
            "logprobs",
            "parallel_tool_calls",
            "tool_choice (Ollama always chooses)",
            "tools[1] (not a function tool)",
            "user"
        ]
    );
    let (out, dropped) =
        native(json!({"model": "m", "messages": [], "tools": [tool], "tool_choice": "none"}));
    assert!(out.get("tools").is_none());
    assert_eq!(dropped, vec!["tools (tool_choice is none)"]);
}

#[test]
fn dropped_message_parts_are_named() {
    let (_, dropped) = native(json!({"model": "m", "messages": [
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}
    ]}));
    assert_eq!(
        dropped,
        vec![
            "messages[0].content[0] (image not a base64 data: URL)",
            "messages[0].content[1] (input_audio)",
        ]
    );
}

fn parse(v: Value) -> NativeResponse {
    serde_json::from_value(v).unwrap()
}

#[test]
fn non_stream_answers_translate() {
    // Shapes as captured from Ollama's API documentation.
    let text = parse(json!({
        "model": "llama3.2", "created_at": "2023-12-12T14:13:43.416799Z",
        "message": {"role": "assistant", "content": "Hello! How are you today?"},
        "done": true, "done_reason": "stop", "total_duration": 5191566416u64,
        "prompt_eval_count": 26, "eval_count": 298
    }));
    let r = from_native(text, "m", 99).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["created"], 1_702_390_423);
    assert_eq!(v["model"], "llama3.2");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello! How are you today?"
    );
    assert_eq!(v["choices"][0]["message"]["refusal"], Value::Null);
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 26, "completion_tokens": 298, "total_tokens": 324})
    );

    let tools = parse(json!({
        "model": "llama3.2", "created_at": "not a time",
        "message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_current_weather", "arguments": {"format": "celsius", "location": "Paris, FR"}}},
            {"id": "call_up", "function": {"name": "now", "arguments": {}}}]},
        "done_reason": "stop", "done": true
    }));
    let v = serde_json::to_value(from_native(tools, "m", 99).unwrap()).unwrap();
    assert_eq!(v["created"], 99);
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], Value::Null);
    let id = msg["tool_calls"][0]["id"].as_str().unwrap();
    assert!(id.starts_with("call_") && id.len() <= 40, "{id}");
    assert_eq!(msg["tool_calls"][0]["type"], "function");
    let args: Value = serde_json::from_str(
        msg["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"format": "celsius", "location": "Paris, FR"}));
    assert_eq!(
        msg["tool_calls"][1]["id"], "call_up",
        "upstream ids are kept"
    );
    assert_eq!(msg["tool_calls"][1]["function"]["arguments"], "{}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert!(v.get("usage").is_none(), "no counters, no invented usage");

    let err = from_native(parse(json!({"error": "boom"})), "m", 0).unwrap_err();
    assert!(
        matches!(err, ProviderError::Upstream { status: 502, ref message, .. } if message == "boom")
    );
}

#[test]
fn finish_reasons() {
    let cases = [
        (Some("stop"), false, "stop"),
        (Some("length"), false, "length"),
        (Some("load"), false, "stop"),
        (None, false, "stop"),
        (Some("stop"), true, "tool_calls"),
        (Some("length"), true, "tool_calls"),
    ];
    for (reason, tools, want) in cases {
        assert_eq!(finish_reason(reason, tools), want, "{reason:?} {tools}");
    }
}

#[test]
fn rfc3339_times() {
    let cases = [
        ("1970-01-01T00:00:00Z", Some(0)),
        ("2023-08-04T19:22:45.499127Z", Some(1_691_176_965)),
        ("2023-08-04T08:52:19.385406455-07:00", Some(1_691_164_339)),
        ("2024-02-29T12:00:00+02:00", Some(1_709_200_800)),
        ("2023-08-04 19:22:45Z", Some(1_691_176_965)),
        ("2023-13-04T19:22:45Z", None),
        ("2023-08-04T19:22:45", None),
        ("2023-08-04T19:22:45+0700", None),
        ("yesterday", None),
        ("", None),
    ];
    for (s, want) in cases {
        assert_eq!(rfc3339_seconds(s), want, "{s}");
    }
}

fn harness() -> Harness<StreamTranslator> {
    Harness::new(StreamTranslator::new(5), "m")
}

fn chunks(h: &mut Harness<StreamTranslator>, line: Value) -> Vec<Value> {
    h.feed(&line.to_string()).unwrap()
}

#[test]
fn stream_text_then_done() {
    let mut h = harness();
    let first = chunks(
        &mut h,
        json!({"model": "llama3.2", "created_at": "2023-08-04T19:22:45Z",
               "message": {"role": "assistant", "content": "The"}, "done": false}),
    );
    assert_eq!(first.len(), 2, "role chunk, then the content");
    assert_eq!(
        first[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(first[0]["created"], 1_691_176_965);
    assert_eq!(first[0]["model"], "llama3.2");
    assert_eq!(first[1]["choices"][0]["delta"], json!({"content": "The"}));
    assert_eq!(first[1]["choices"][0]["finish_reason"], Value::Null);
    let thinking = chunks(
        &mut h,
        json!({"message": {"role": "assistant", "content": "", "thinking": "hmm"}, "done": false}),
    );
    assert_eq!(
        thinking[0]["choices"][0]["delta"],
        json!({"reasoning_content": "hmm"}),
        "thinking is the reasoning"
    );
    assert!(!h.w.is_finished());
    let last = chunks(
        &mut h,
        json!({"model": "llama3.2", "message": {"role": "assistant", "content": ""},
               "done": true, "done_reason": "length", "prompt_eval_count": 61, "eval_count": 468}),
    );
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["choices"][0]["delta"], json!({}));
    assert_eq!(last[0]["choices"][0]["finish_reason"], "length");
    assert!(h.w.is_finished());
    let end = h.w.end();
    assert_eq!(end.usage, Some(Usage::new(61, 468)));
    assert_eq!(
        (end.created, end.completion.as_str()),
        (1_691_176_965, "Thehmm")
    );
}

#[test]
fn stream_tool_calls_keep_their_index() {
    let mut h = harness();
    let calls = chunks(
        &mut h,
        json!({"model": "llama3.2", "message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "a", "arguments": {"x": 1}}},
            {"function": {"name": "b", "arguments": {}}}]}, "done": false}),
    );
    assert_eq!(calls.len(), 3);
    let first = &calls[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["index"], 0);
    assert_eq!(
        first["function"],
        json!({"name": "a", "arguments": "{\"x\":1}"})
    );
    assert_eq!(calls[2]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
    assert_ne!(
        first["id"],
        calls[2]["choices"][0]["delta"]["tool_calls"][0]["id"]
    );
    let later = chunks(
        &mut h,
        json!({"message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "c", "arguments": {}}}]}, "done": true, "done_reason": "stop"}),
    );
    assert_eq!(later[0]["choices"][0]["delta"]["tool_calls"][0]["index"], 2);
    assert_eq!(later[1]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(h.w.end().usage, None);
}

#[test]
fn stream_error_and_garbage_lines_fail() {
    let mut h = harness();
    let e = h.feed(r#"{"error":"an error was encountered while running the model"}"#);
    assert!(matches!(
        e,
        Err(ProviderError::Upstream { status: 502, .. })
    ));
    assert!(matches!(
        h.feed("{not json"),
        Err(ProviderError::Protocol(_))
    ));
}

async fn run(lines: Vec<&'static [u8]>) -> Vec<Result<StreamItem, ProviderError>> {
    let lines = futures::stream::iter(lines.into_iter().map(|l| Ok(Bytes::from_static(l))));
    translate_stream(lines, 5, "m").collect().await
}

#[tokio::test]
async fn stream_ends_with_end_item_or_an_error() {
    let items = run(vec![
        br#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#,
        br#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":1}"#,
        br#"{"ignored":"after done"}"#,
    ])
    .await;
    assert_eq!(items.len(), 4, "role, content, finish, end");
    match items.last() {
        Some(Ok(StreamItem::End(end))) => assert_eq!(end.usage, Some(Usage::new(3, 1))),
        other => panic!("expected End, got {other:?}"),
    }

    let items = run(vec![
        br#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#,
    ])
    .await;
    assert!(
        matches!(items.last(), Some(Err(ProviderError::Protocol(_)))),
        "EOF without done"
    );

    let items = run(vec![
        br#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#,
        br#"{"error":"out of memory"}"#,
        br#"{"message":{"role":"assistant","content":"never"},"done":true}"#,
    ])
    .await;
    assert_eq!(items.len(), 3);
    assert!(
        matches!(&items[2], Err(ProviderError::Upstream { message, .. }) if message == "out of memory")
    );
}

#[test]
fn tags_become_model_infos() {
    let tags: Tags = serde_json::from_value(json!({"models": [
        {"name": "codellama:13b", "model": "codellama:13b",
         "modified_at": "2023-11-04T14:56:49.277302595-07:00", "size": 7365960935u64,
         "digest": "9f43", "details": {"family": "llama"}},
        {"name": "x:latest", "modified_at": "garbage"}
    ]}))
    .unwrap();
    let infos: Vec<ModelInfo> = tags.models.into_iter().map(model_info).collect();
    assert_eq!(infos[0].id, "codellama:13b");
    assert_eq!(infos[0].owned_by, "ollama");
    assert_eq!(infos[0].created, 1_699_135_009);
    assert_eq!(infos[1].created, 0);
}
