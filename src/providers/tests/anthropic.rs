//! Table tests of the Anthropic translation (shapes from Anthropic's API reference).
use super::*;

fn native(req: Value) -> Value {
    native_with(req, None)
}

fn native_with(req: Value, default_max: Option<u32>) -> Value {
    let req: ChatRequest = serde_json::from_value(req).unwrap();
    serde_json::to_value(to_native(&req, "claude-x", default_max)).unwrap()
}

fn msgs(m: Value) -> Value {
    json!({"model": "a/claude-x", "messages": m})
}

#[test]
fn request_translation_table() {
    let pixel = "data:image/png;base64,iVBORw0KGgo=";
    // (what, OpenAI request, expected subset of the Anthropic request)
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "system to top level, plain user text as a string",
            msgs(json!([
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
                {"role": "user", "content": "Hi"}
            ])),
            json!({"model": "claude-x", "max_tokens": 4096, "system": "Be brief.\n\nNo emoji.",
                   "messages": [{"role": "user", "content": "Hi"}]}),
        ),
        (
            "cache_control on system parts keeps blocks",
            msgs(json!([
                {"role": "system", "content": [
                    {"type": "text", "text": "Long doc", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": "Q"}
            ])),
            json!({"system": [{"type": "text", "text": "Long doc", "cache_control": {"type": "ephemeral"}}]}),
        ),
        (
            "consecutive same-role turns merge",
            msgs(json!([
                {"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": "d"},
                {"role": "user", "content": ""}
            ])),
            json!({"messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]}
            ]}),
        ),
        (
            "images: data URL to base64, https to url",
            msgs(json!([{"role": "user", "content": [
                {"type": "text", "text": "What?"},
                {"type": "image_url", "image_url": {"url": pixel}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg", "detail": "low"}}
            ]}])),
            json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "What?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}
            ]}]}),
        ),
        (
            "tool calls and results keep ids, results merge into one user turn",
            msgs(json!([
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "w", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "rain"}]},
                {"role": "user", "content": "thanks"}
            ])),
            json!({"messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "w", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "rain"}]},
                    {"type": "text", "text": "thanks"}
                ]}
            ]}),
        ),
        (
            "Anthropic-native parts pass through, PDFs become documents",
            msgs(json!([
                {"role": "user", "content": [
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
                    {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
                    {"type": "text", "text": "sum up"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "ok"}]}
            ])),
            json!({"messages": [
                {"role": "user", "content": [
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
                    {"type": "text", "text": "sum up"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "ok"}]}
            ]}),
        ),
        (
            "tools and tool_choice required",
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                              "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                             {"type": "function", "function": {"name": "g"}}],
                   "tool_choice": "required"}),
            json!({"tools": [
                    {"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
                    {"name": "g", "input_schema": {"type": "object"}}],
                   "tool_choice": {"type": "any"}}),
        ),
        (
            "named tool_choice and parallel_tool_calls false",
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "function", "function": {"name": "f"}}],
                   "tool_choice": {"type": "function", "function": {"name": "f"}},
                   "parallel_tool_calls": false}),
            json!({"tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": true}}),
        ),
        (
            "sampling, stop string, max_completion_tokens, user",
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                   "temperature": 1.7, "top_p": 0.9, "stop": "END", "max_completion_tokens": 99,
                   "user": "alice", "stream": true}),
            json!({"temperature": 1.0, "top_p": 0.9, "stop_sequences": ["END"], "max_tokens": 99,
                   "metadata": {"user_id": "alice"}, "stream": true}),
        ),
        (
            "stop list, thinking and top_k pass through",
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 20000,
                   "stop": ["a", " ", "b"], "thinking": {"type": "enabled", "budget_tokens": 10000}, "top_k": 5}),
            json!({"stop_sequences": ["a", "b"], "thinking": {"type": "enabled", "budget_tokens": 10000},
                   "top_k": 5, "max_tokens": 20000}),
        ),
    ];
    for (what, req, expected) in cases {
        let out = native(req);
        for (k, v) in expected.as_object().unwrap() {
            assert_eq!(&out[k], v, "{what}: field {k} in {out:#}");
        }
    }
}

#[test]
fn fields_anthropic_cannot_express_are_dropped() {
    let out = native(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "seed": 1, "n": 1, "presence_penalty": 0.5, "response_format": {"type": "json_object"},
        "logprobs": true, "stream_options": {"include_usage": true}, "tool_choice": "auto",
        "metadata": {"tag": "x"}, "service_tier": "flex", "betas": ["b1"], "temperature": null}),
    );
    let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["max_tokens", "messages", "model"], "{out}");
}

#[test]
fn max_tokens_defaults() {
    let req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(native_with(req.clone(), Some(1234))["max_tokens"], 1234);
    assert_eq!(native_with(req.clone(), None)["max_tokens"], 4096);
    let mut with = req.clone();
    with["max_tokens"] = json!(77);
    assert_eq!(native_with(with, Some(1234))["max_tokens"], 77);
    let mut thinking = req;
    thinking["thinking"] = json!({"type": "enabled", "budget_tokens": 8000});
    assert_eq!(native_with(thinking, None)["max_tokens"], 8000 + 4096);
}

#[test]
fn betas_from_body_fields() {
    let req: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [],
        "anthropic-beta": "a-1", "betas": ["b-2", "c-3"]}))
    .unwrap();
    assert_eq!(betas(&req).as_deref(), Some("a-1,b-2,c-3"));
    let req: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": []})).unwrap();
    assert_eq!(betas(&req), None);
}

#[test]
fn response_translation_table() {
    // (native response, content, tool_calls, finish_reason, prompt, completion)
    let cases: Vec<(Value, Value, Value, &str, u64, u64)> = vec![
        (
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                   "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}],
                   "stop_reason": "end_turn", "stop_sequence": null,
                   "usage": {"input_tokens": 10, "output_tokens": 2,
                             "cache_creation_input_tokens": 4, "cache_read_input_tokens": 6}}),
            json!("Hello"),
            Value::Null,
            "stop",
            20,
            2,
        ),
        (
            json!({"id": "msg_2", "model": "claude-x", "stop_reason": "tool_use",
                   "content": [{"type": "tool_use", "id": "toolu_9", "name": "w", "input": {"city": "Paris"}}],
                   "usage": {"input_tokens": 5, "output_tokens": 9}}),
            Value::Null,
            json!([{"id": "toolu_9", "type": "function",
                    "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}}]),
            "tool_calls",
            5,
            9,
        ),
        (
            json!({"id": "m", "content": [{"type": "text", "text": "cut"}], "stop_reason": "max_tokens",
                   "usage": {"input_tokens": 1, "output_tokens": 1}}),
            json!("cut"),
            Value::Null,
            "length",
            1,
            1,
        ),
        (
            json!({"id": "m", "content": [], "stop_reason": "stop_sequence", "usage": {}}),
            json!(""),
            Value::Null,
            "stop",
            0,
            0,
        ),
        (
            json!({"id": "m", "content": [], "stop_reason": "refusal", "usage": {}}),
            json!(""),
            Value::Null,
            "content_filter",
            0,
            0,
        ),
    ];
    for (resp, content, tools, finish, prompt, completion) in cases {
        let r = from_native(serde_json::from_value(resp.clone()).unwrap());
        let v = serde_json::to_value(&r).unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], content, "{resp}");
        assert_eq!(m["tool_calls"], tools, "{resp}");
        assert_eq!(m["refusal"], Value::Null);
        assert!(m.as_object().unwrap().contains_key("refusal"));
        assert!(v["choices"][0]
            .as_object()
            .unwrap()
            .contains_key("logprobs"));
        assert_eq!(v["choices"][0]["finish_reason"], finish);
        assert_eq!(v["usage"]["prompt_tokens"], prompt);
        assert_eq!(v["usage"]["completion_tokens"], completion);
        assert_eq!(v["usage"]["total_tokens"], prompt + completion);
    }
}

#[test]
fn error_bodies_map_by_type() {
    let err = |t: &str| {
        parse_message(
            format!(r#"{{"type":"error","error":{{"type":"{t}","message":"m"}}}}"#).as_bytes(),
        )
        .unwrap_err()
    };
    assert!(matches!(
        err("overloaded_error"),
        ProviderError::Upstream { status: 529, .. }
    ));
    assert!(err("overloaded_error").is_provider_fault());
    assert!(matches!(
        err("api_error"),
        ProviderError::Upstream { status: 500, .. }
    ));
    assert!(matches!(
        err("rate_limit_error"),
        ProviderError::RateLimited { .. }
    ));
    let bad = err("invalid_request_error");
    assert!(matches!(bad, ProviderError::Upstream { status: 400, .. }));
    assert!(!bad.is_provider_fault());
    assert!(matches!(
        parse_message(b"<html>"),
        Err(ProviderError::Protocol(_))
    ));
}

use crate::providers::kernel::Harness;

#[test]
fn stream_translator_text_and_tools() {
    let mut h = Harness::new(StreamTranslator::default(), "m");
    let events = [
        r#"{"type":"message_start","message":{"id":"msg_s","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1,"cache_read_input_tokens":5}}}"#,
        r#"{"type":"ping"}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"w","input":{}}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}"#,
        r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_b","name":"v","input":{}}}"#,
        r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#,
        r#"{"type":"some_future_event"}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        r#"{"type":"message_stop"}"#,
    ];
    let c: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut out = h.feed(e).unwrap();
            assert!(out.len() <= 1, "one chunk per event at most");
            out.pop().unwrap_or(Value::Null)
        })
        .collect();
    assert_eq!(
        c[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(c[0]["id"], "msg_s");
    assert!(c[1].is_null() && c[2].is_null() && c[4].is_null() && c[6].is_null());
    assert_eq!(c[3]["choices"][0]["delta"]["content"], "Hi");
    assert_eq!(
        c[5]["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "w", "arguments": ""}}])
    );
    assert_eq!(
        c[7]["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 0, "function": {"arguments": "{\"city\":"}}])
    );
    assert_eq!(c[8]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
    assert_eq!(c[9]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
    assert_eq!(
        c[10]["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 0, "function": {"arguments": "\"Paris\"}"}}])
    );
    assert!(c[11].is_null() && c[12].is_null());
    assert_eq!(c[13]["choices"][0]["finish_reason"], "tool_calls");
    assert!(h.w.is_finished(), "message_stop finishes");
    let end = h.w.end();
    let u = end.usage.as_ref().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (30, 15, 45)
    );
    assert_eq!(end.id, "msg_s");
    assert_eq!(end.completion, "Hi{\"city\":{}\"Paris\"}");
}

#[test]
fn stream_error_event_is_an_error() {
    let mut t = Harness::new(StreamTranslator::default(), "m");
    let e = t
        .feed(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)
        .unwrap_err();
    assert!(
        matches!(e, ProviderError::Upstream { status: 529, ref message, .. } if message == "Overloaded")
    );
    assert!(t.feed("{not json").is_err());
    assert!(t
        .feed(r#"{"type":"content_block_delta","index":7,"delta":{"type":"input_json_delta","partial_json":"x"}}"#)
        .is_err());
}

#[test]
fn rfc3339_times() {
    assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(rfc3339_seconds("2025-02-19T00:00:00Z"), Some(1_739_923_200));
    assert_eq!(
        rfc3339_seconds("2024-02-29T12:30:15.123Z"),
        Some(1_709_209_815)
    );
    assert_eq!(
        rfc3339_seconds("2025-02-19T02:00:00+02:00"),
        Some(1_739_923_200)
    );
    assert_eq!(rfc3339_seconds("yesterday"), None);
    assert_eq!(rfc3339_seconds("2025-13-19T00:00:00Z"), None);
}
