//! Table tests of the Gemini translation (shapes from the Gemini API reference).
use super::*;

fn request(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

fn native(v: Value) -> Value {
    serde_json::to_value(to_native(&request(v), &Signatures::default())).unwrap()
}

#[test]
fn messages_translate() {
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "system becomes systemInstruction, assistant becomes model",
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Bye"}
            ]),
            json!({
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Hi"}]},
                    {"role": "model", "parts": [{"text": "Hello"}]},
                    {"role": "user", "parts": [{"text": "Bye"}]}
                ]
            }),
        ),
        (
            "consecutive same-role turns merge, developer is system",
            json!([
                {"role": "developer", "content": "A"},
                {"role": "system", "content": "B"},
                {"role": "user", "content": "one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]}
            ]),
            json!({
                "systemInstruction": {"parts": [{"text": "A"}, {"text": "B"}]},
                "contents": [{"role": "user", "parts": [{"text": "one"}, {"text": "two"}]}]
            }),
        ),
        (
            "images: data URL inline, https by reference",
            json!([{"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a/cat.webp?s=1", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/dog"}}
            ]}]),
            json!({"contents": [{"role": "user", "parts": [
                {"text": "look"},
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/a/cat.webp?s=1"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/dog"}}
            ]}]}),
        ),
        (
            "tool calls and results round trip by name",
            json!([
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\":21}"},
                {"role": "tool", "tool_call_id": "call_b", "content": "noon"}
            ]),
            json!({"contents": [
                {"role": "user", "parts": [{"text": "weather?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}}
                ]}
            ]}),
        ),
        (
            "empty messages are dropped",
            json!([{"role": "user", "content": ""}, {"role": "user", "content": "x"}]),
            json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}]}),
        ),
    ];
    for (name, messages, expected) in cases {
        assert_eq!(
            native(json!({"model": "m", "messages": messages})),
            expected,
            "{name}"
        );
    }
}

#[test]
fn tool_results_take_the_name_of_the_newest_matching_call() {
    let out = native(json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "call_0", "function": {"name": "old", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "1"},
        {"role": "assistant", "tool_calls": [{"id": "call_0", "function": {"name": "new", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "[1,2]"}
    ]}));
    assert_eq!(
        out["contents"][1]["parts"][0]["functionResponse"]["name"],
        "old"
    );
    assert_eq!(
        out["contents"][3]["parts"][0]["functionResponse"],
        json!({"name": "new", "response": {"content": "[1,2]"}})
    );
}

#[test]
fn tool_choice_modes() {
    let cases = [
        (json!("auto"), Some(json!({"mode": "AUTO"}))),
        (json!("required"), Some(json!({"mode": "ANY"}))),
        (json!("none"), Some(json!({"mode": "NONE"}))),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            Some(json!({"mode": "ANY", "allowedFunctionNames": ["f"]})),
        ),
        (json!("weird"), None),
    ];
    for (choice, expected) in cases {
        assert_eq!(
            tool_config(&choice),
            expected.map(|e| json!({"functionCallingConfig": e})),
            "{choice}"
        );
    }
}

#[test]
fn schemas_lose_what_gemini_rejects() {
    let cases = [
        (
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                   "additionalProperties": false,
                   "properties": {"additionalProperties": {"type": ["string", "null"], "const": "x"},
                                  "list": {"type": "array", "items": {"type": "object", "additionalProperties": {}, "properties": {"a": {"type": "integer"}}}}},
                   "required": ["list"]}),
            json!({"type": "object",
                   "properties": {"additionalProperties": {"type": "string", "nullable": true, "enum": ["x"]},
                                  "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
                   "required": ["list"]}),
        ),
        (
            json!({"oneOf": [{"type": "string", "title": "t"}, {"type": "number", "exclusiveMinimum": 0}]}),
            json!({"anyOf": [{"type": "string", "title": "t"}, {"type": "number"}]}),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(gemini_schema(&input), expected);
    }
    assert_eq!(
        parameters_schema(&json!({"type": "object", "properties": {}})),
        None
    );
    assert_eq!(parameters_schema(&json!({})), None);
}

#[test]
fn tools_and_generation_config() {
    let out = native(json!({
        "model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                   "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": false}, "strict": true}},
                  {"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": "required",
        "temperature": 0.5, "top_p": 0.9, "max_tokens": 100, "stop": "END", "n": 1,
        "seed": 3, "logit_bias": {"1": 2}, "user": "u"
    }));
    assert_eq!(
        out["tools"],
        json!([{"functionDeclarations": [
            {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
            {"name": "g"}
        ]}])
    );
    assert_eq!(
        out["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    assert_eq!(
        out["generationConfig"],
        json!({"temperature": 0.5, "topP": 0.9, "maxOutputTokens": 100,
               "stopSequences": ["END"], "candidateCount": 1, "seed": 3})
    );
    let out = native(
        json!({"model": "m", "messages": [], "max_completion_tokens": 7,
                            "max_tokens": 9, "stop": ["a", "b"], "n": 3, "tool_choice": "auto"}),
    );
    assert_eq!(
        out["generationConfig"],
        json!({"maxOutputTokens": 7, "stopSequences": ["a", "b"]})
    );
    assert!(out.get("toolConfig").is_none(), "no tools, no toolConfig");
    assert!(out.get("systemInstruction").is_none());
}

fn response(v: Value) -> ChatResponse {
    from_native(
        serde_json::from_value(v).unwrap(),
        "gemini-x",
        &Signatures::default(),
    )
}

#[test]
fn thought_signatures_stay_in_the_gateway_and_go_back() {
    let signatures = Signatures::default();
    let r = from_native(
        serde_json::from_value(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln+MQ=="},
                {"functionCall": {"name": "get_time", "args": {}}}
            ]}, "finishReason": "STOP"}]
        }))
        .unwrap(),
        "gemini-x",
        &signatures,
    );
    let calls = r.choices[0].message.tool_calls.clone().unwrap();
    for c in &calls {
        assert!(c.id.starts_with("call_") && c.id.len() <= 40, "{}", c.id);
        assert!(!c.id.contains("c2ln"), "the signature is not in the id");
    }
    assert_ne!(calls[0].id, calls[1].id);
    let req = request(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [
                {"id": calls[0].id, "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": calls[1].id, "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": "{\"temp\":3}"},
            {"role": "tool", "tool_call_id": calls[1].id, "content": "noon"}
        ]
    }));
    let out = serde_json::to_value(to_native(&req, &signatures)).unwrap();
    assert_eq!(
        out["contents"][1]["parts"],
        json!([
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln+MQ=="},
            {"functionCall": {"name": "get_time", "args": {}}}
        ])
    );
    assert_eq!(
        out["contents"][2]["parts"][0]["functionResponse"]["name"],
        "get_weather"
    );
    assert_eq!(
        out["contents"][2]["parts"][1]["functionResponse"]["name"],
        "get_time"
    );
}

#[test]
fn responses_translate() {
    let r = response(json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}, {"text": "lo"}, {"text": "hmm", "thought": true}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "thoughtsTokenCount": 3, "totalTokenCount": 10},
        "modelVersion": "gemini-2.0-flash-001", "responseId": "abc"
    }));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["id"], "chatcmpl-abc");
    assert_eq!(v["model"], "gemini-2.0-flash-001");
    assert_eq!(
        v["choices"][0],
        json!({"index": 0, "message": {"role": "assistant", "content": "Hello", "refusal": null,
                                       "reasoning_content": "hmm"},
               "finish_reason": "stop", "logprobs": null}),
        "thought parts are the reasoning"
    );
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10,
               "completion_tokens_details": {"reasoning_tokens": 3}})
    );

    let r = response(
        json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "a", "args": {"x": [1, {"y": null}]}}},
        {"functionCall": {"name": "b"}}
    ]}, "finishReason": "STOP"}]}),
    );
    let m = &r.choices[0].message;
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(m.content, None);
    let calls = m.tool_calls.as_ref().unwrap();
    assert_eq!(calls[0].function.arguments, r#"{"x":[1,{"y":null}]}"#);
    assert_eq!(calls[1].function.arguments, "{}");
    assert_ne!(calls[0].id, calls[1].id);

    for (native, expected) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ] {
        let r = response(json!({"candidates": [{"finishReason": native}]}));
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some(expected));
    }

    let r = response(json!({"promptFeedback": {"blockReason": "SAFETY"},
                            "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}}));
    assert_eq!(
        r.choices[0].finish_reason.as_deref(),
        Some("content_filter")
    );
    assert_eq!(r.choices[0].message.content.as_deref(), Some(""));
    assert_eq!(r.usage.unwrap().prompt_tokens, 4);
}

#[test]
fn error_bodies_keep_their_status() {
    let e = parse_native(br#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#)
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Upstream { status: 400, message, .. } if message == "bad"),
        "{e:?}"
    );
    let e =
        parse_native(br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#)
            .unwrap_err();
    assert!(matches!(e, ProviderError::RateLimited { .. }));
    assert!(matches!(
        parse_native(b"<html>").unwrap_err(),
        ProviderError::Protocol(_)
    ));
}

use crate::providers::kernel::Harness;
use crate::providers::StreamEnd;

fn stream(events: &[Value]) -> (Vec<Value>, Result<StreamEnd, ProviderError>) {
    let mut h = Harness::new(StreamTranslator::new(Arc::default()), "gemini-x");
    let mut chunks = Vec::new();
    for e in events {
        chunks.extend(h.feed(&e.to_string()).unwrap());
    }
    (chunks, h.finish())
}

#[test]
fn stream_text_then_finish_with_usage() {
    let (chunks, end) = stream(&[
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}],
               "usageMetadata": {"promptTokenCount": 3}, "responseId": "r1"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": " there"}]}, "finishReason": "MAX_TOKENS"}],
               "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}, "responseId": "r1"}),
    ]);
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(
        deltas,
        [
            &json!({"role": "assistant", "content": ""}),
            &json!({"content": "Hi"}),
            &json!({"content": " there"}),
            &json!({})
        ]
    );
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
    assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-r1"));
    let end = end.unwrap();
    assert_eq!(end.usage.unwrap().total_tokens, 5);
    assert_eq!(end.completion, "Hi there");
}

#[test]
fn stream_tool_calls_keep_their_index() {
    let (chunks, end) = stream(&[
        json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {"k": 1}}}]}}]}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "b", "args": {}}}]}, "finishReason": "STOP"}]}),
    ]);
    let tc: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    let ids: Vec<&str> = tc.iter().map(|t| t[0]["id"].as_str().unwrap()).collect();
    assert!(ids
        .iter()
        .all(|id| id.starts_with("call_") && id.len() <= 40));
    assert_ne!(ids[0], ids[1], "ids never repeat");
    let mut tc: Vec<Value> = tc.into_iter().cloned().collect();
    for t in &mut tc {
        t[0].as_object_mut().unwrap().remove("id");
    }
    assert_eq!(
        tc,
        [
            json!([{"index": 0, "type": "function", "function": {"name": "a", "arguments": "{\"k\":1}"}}]),
            json!([{"index": 1, "type": "function", "function": {"name": "b", "arguments": "{}"}}])
        ]
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert!(end.unwrap().usage.is_none());
}

#[test]
fn stream_edge_cases() {
    let (chunks, end) = stream(&[json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})]);
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "content_filter");
    assert!(end.is_ok());

    let (_, end) = stream(&[json!({"candidates": [{"content": {"parts": [{"text": "x"}]}}]})]);
    assert!(matches!(end, Err(ProviderError::Protocol(_))));

    let mut t = Harness::new(StreamTranslator::new(Arc::default()), "m");
    let e = t
        .feed(r#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#)
        .unwrap_err();
    assert!(e.is_provider_fault());
    assert!(t.feed("{nope").is_err());
}

#[test]
fn model_entries() {
    let list: NativeModelList = serde_json::from_value(json!({"models": [
        {"name": "models/gemini-2.0-flash", "displayName": "Gemini 2.0 Flash", "inputTokenLimit": 1048576,
         "supportedGenerationMethods": ["generateContent", "countTokens"]},
        {"name": "models/text-embedding-004", "supportedGenerationMethods": ["embedContent"]}
    ]}))
    .unwrap();
    let ids: Vec<ModelInfo> = list.models.into_iter().filter_map(model_info).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].id, "gemini-2.0-flash");
    assert_eq!(ids[0].owned_by, "google");
}

#[test]
fn mime_guesses() {
    for (url, mime) in [
        ("https://a/b.PNG", "image/png"),
        ("https://a/b.jpg", "image/jpeg"),
        ("https://a/b.gif#x", "image/gif"),
        ("https://a/doc.pdf", "application/pdf"),
        ("https://a/noext", "image/jpeg"),
    ] {
        assert_eq!(mime_from_extension(url), mime, "{url}");
    }
}
