//! Property tests of the provider stream translators (Anthropic, Gemini, Ollama) run through
//! the kernel driver `kernel::drive`, fed arbitrary bytes and arbitrary-but-plausible event
//! sequences (events in any order, unknown kinds, wrong indexes, garbage between them).
//! Whatever arrives: no panic; the stream is chunks, then exactly one end or one error, then
//! nothing; every chunk is a well-formed `chat.completion.chunk` of one answer (one id, model
//! and created; the role chunk first; at most one finish chunk, last); tool-call indexes are
//! assigned 0, 1, 2… in the order calls start, and only a call's first delta carries its id.
//! (The OpenAI translator is private to its module: tests/prop_openai_stream.rs covers it
//! through the gateway.) cargo-fuzz needs a nightly toolchain; these are its stable stand-in.

use std::collections::BTreeMap;
use std::sync::Arc;

use aisbf::providers::kernel::{drive, ChunkWriter, StreamTranslator};
use aisbf::providers::{anthropic, gemini, ollama, ProviderError, StreamItem};
use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;
use serde_json::{json, Value};

/// What one driven stream produced.
struct Run {
    chunks: Vec<Value>,
    /// `Some(true)` ended, `Some(false)` failed.
    ended: Option<bool>,
}

/// Drives `tr` over `events` (an optional transport error last) and checks the stream's shape.
fn run<T: StreamTranslator>(tr: T, events: Vec<Vec<u8>>, transport_error: bool) -> Run {
    let mut items: Vec<Result<Bytes, ProviderError>> =
        events.into_iter().map(|e| Ok(Bytes::from(e))).collect();
    if transport_error {
        items.push(Err(ProviderError::Protocol("scripted reset".into())));
    }
    let s = drive(
        futures::stream::iter(items),
        tr,
        ChunkWriter::new("chatcmpl-prop", "prop-model", 7),
    );
    let out: Vec<Result<StreamItem, ProviderError>> = futures::executor::block_on(s.collect());
    let mut chunks = Vec::new();
    let mut ended = None;
    for (i, item) in out.iter().enumerate() {
        assert!(
            ended.is_none(),
            "item {i} follows the stream's end or error"
        );
        match item {
            Ok(StreamItem::Chunk(b)) => chunks.push(
                serde_json::from_slice::<Value>(b)
                    .unwrap_or_else(|e| panic!("chunk is not JSON ({e}): {b:?}")),
            ),
            Ok(StreamItem::End(_)) => ended = Some(true),
            Err(_) => ended = Some(false),
        }
    }
    assert!(
        ended.is_some(),
        "the stream stopped without an end or an error"
    );
    Run { chunks, ended }
}

/// The canonical-chunk invariants, for translators that build their chunks with `ChunkWriter`.
fn check_canonical(r: &Run) {
    let mut finishes = 0;
    let mut calls: BTreeMap<u64, ()> = BTreeMap::new();
    for (i, c) in r.chunks.iter().enumerate() {
        assert_eq!(c["object"], "chat.completion.chunk", "chunk {i}: {c}");
        assert!(c["id"].is_string() && c["model"].is_string(), "{c}");
        assert!(c["created"].is_i64(), "{c}");
        for k in ["id", "model", "created"] {
            assert_eq!(c[k], r.chunks[0][k], "chunk {i} changed {k}");
        }
        let choices = c["choices"].as_array().expect("choices");
        assert_eq!(choices.len(), 1, "{c}");
        let delta = &choices[0]["delta"];
        if i == 0 {
            assert_eq!(
                delta["role"], "assistant",
                "the role chunk comes first: {c}"
            );
        } else {
            assert!(delta.get("role").is_none(), "a second role chunk: {c}");
        }
        assert_eq!(finishes, 0, "chunk {i} follows the finish chunk: {c}");
        if !choices[0]["finish_reason"].is_null() {
            assert!(choices[0]["finish_reason"].is_string(), "{c}");
            finishes += 1;
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().expect("a tool call index");
            if calls.contains_key(&index) {
                assert!(
                    call.get("id").is_none(),
                    "a later delta repeats the id: {c}"
                );
            } else {
                assert_eq!(index, calls.len() as u64, "calls numbered in order: {c}");
                assert!(
                    call["id"].is_string(),
                    "first delta of a call has its id: {c}"
                );
                assert!(call["function"]["name"].is_string(), "and its name: {c}");
                calls.insert(index, ());
            }
        }
    }
    if r.ended == Some(true) {
        assert_eq!(finishes, 1, "an ended stream has its finish chunk");
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", Just(String::new()), Just("\"}{\\".to_string())]
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        Just(b"{}".to_vec()),
        Just(b"null".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(b"{\"type\":".to_vec()),
    ]
}

// ---------- Anthropic ----------

fn anthropic_event() -> impl Strategy<Value = Vec<u8>> {
    let idx = 0u32..4;
    let ev = prop_oneof![
        (text(), any::<u16>()).prop_map(|(m, n)| json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": m, "content": [],
            "usage": {"input_tokens": n, "output_tokens": 1}}})),
        (idx.clone(), text()).prop_map(|(i, t)| json!({"type": "content_block_start",
            "index": i, "content_block": {"type": "text", "text": t}})),
        (idx.clone(), text()).prop_map(|(i, n)| json!({"type": "content_block_start",
            "index": i, "content_block": {"type": "tool_use", "id": format!("toolu_{i}"),
            "name": n, "input": {}}})),
        (idx.clone(), text()).prop_map(|(i, t)| json!({"type": "content_block_start",
            "index": i, "content_block": {"type": "thinking", "thinking": t}})),
        (idx.clone(), text()).prop_map(|(i, t)| json!({"type": "content_block_delta",
            "index": i, "delta": {"type": "text_delta", "text": t}})),
        (idx.clone(), text()).prop_map(|(i, t)| json!({"type": "content_block_delta",
            "index": i, "delta": {"type": "input_json_delta", "partial_json": t}})),
        (idx.clone(), text()).prop_map(|(i, t)| json!({"type": "content_block_delta",
            "index": i, "delta": {"type": "thinking_delta", "thinking": t}})),
        idx.clone()
            .prop_map(|i| json!({"type": "content_block_stop", "index": i})),
        prop_oneof![
            Just("end_turn"),
            Just("tool_use"),
            Just("max_tokens"),
            Just("other")
        ]
        .prop_map(
            |s| json!({"type": "message_delta", "delta": {"stop_reason": s},
                "usage": {"output_tokens": 5}})
        ),
        Just(json!({"type": "message_stop"})),
        Just(json!({"type": "ping"})),
        Just(json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})),
        Just(json!({"type": "something_new", "x": 1})),
    ]
    .prop_map(|v| v.to_string().into_bytes());
    prop_oneof![9 => ev, 1 => garbage()]
}

// ---------- Gemini ----------

fn gemini_event() -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        text().prop_map(|t| json!({"text": t})),
        text().prop_map(|t| json!({"text": t, "thought": true})),
        (text(), any::<bool>()).prop_map(|(n, sig)| {
            let mut p = json!({"functionCall": {"name": n, "args": {"a": 1}}});
            if sig {
                p["thoughtSignature"] = json!("c2ln");
            }
            p
        }),
        Just(json!({"inlineData": {"mimeType": "image/png", "data": "AA=="}})),
    ];
    let finish = proptest::option::of(prop_oneof![
        Just("STOP"),
        Just("MAX_TOKENS"),
        Just("SAFETY"),
        Just("MALFORMED_FUNCTION_CALL"),
        Just("NEW_REASON"),
    ]);
    let ev = prop_oneof![
        8 => (prop::collection::vec(part, 0..3), finish, any::<bool>()).prop_map(
            |(parts, finish, usage)| {
                let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
                if let Some(f) = finish {
                    c["finishReason"] = json!(f);
                }
                let mut ev = json!({"candidates": [c], "modelVersion": "gemini-x",
                    "responseId": "r1"});
                if usage {
                    ev["usageMetadata"] = json!({"promptTokenCount": 3,
                        "candidatesTokenCount": 2, "totalTokenCount": 5});
                }
                ev
            }
        ),
        1 => Just(json!({"promptFeedback": {"blockReason": "SAFETY"}})),
        1 => Just(json!({"candidates": []})),
        1 => Just(json!({"error": {"code": 500, "message": "x", "status": "INTERNAL"}})),
    ]
    .prop_map(|v| v.to_string().into_bytes());
    prop_oneof![9 => ev, 1 => garbage()]
}

// ---------- Ollama ----------

fn ollama_line() -> impl Strategy<Value = Vec<u8>> {
    let call = (text(), any::<bool>()).prop_map(|(n, obj)| {
        json!({"function": {"name": n, "arguments": if obj { json!({"a": 1}) } else { json!("{}") }}})
    });
    let line = prop_oneof![
        6 => (text(), proptest::option::of(text()), prop::collection::vec(call, 0..2),
              any::<bool>(), proptest::option::of(prop_oneof![Just("stop"), Just("length"),
              Just("load")]))
            .prop_map(|(content, thinking, calls, done, reason)| {
                let mut m = json!({"role": "assistant", "content": content});
                if let Some(t) = thinking {
                    m["thinking"] = json!(t);
                }
                if !calls.is_empty() {
                    m["tool_calls"] = json!(calls);
                }
                let mut l = json!({"model": "llama", "created_at": "2024-05-01T10:00:00Z",
                    "message": m, "done": done});
                if let Some(r) = reason {
                    l["done_reason"] = json!(r);
                }
                if done {
                    l["prompt_eval_count"] = json!(4);
                    l["eval_count"] = json!(2);
                }
                l
            }),
        1 => Just(json!({"error": "model not found"})),
        1 => Just(json!({"done": true})),
        1 => Just(json!({"model": "llama", "created_at": "not a time", "done": false})),
    ]
    .prop_map(|v| v.to_string().into_bytes());
    prop_oneof![9 => line, 1 => garbage()]
}

/// `PROPTEST_CASES` when set (long fuzz runs), else the small CI default.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn gemini_tr() -> gemini::StreamTranslator {
    gemini::StreamTranslator::new(Arc::new(gemini::Signatures::default()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    #[test]
    fn anthropic_arbitrary_bytes(events in prop::collection::vec(garbage(), 0..6), cut: bool) {
        check_canonical(&run(anthropic::StreamTranslator::default(), events, cut));
    }

    #[test]
    fn anthropic_plausible_sequences(
        events in prop::collection::vec(anthropic_event(), 0..24),
        cut: bool,
    ) {
        let r = run(anthropic::StreamTranslator::default(), events.clone(), cut);
        check_canonical(&r);
        // message_stop ends the answer; nothing before it failed → the stream ended.
        let stop = events.iter().position(|e| e == br#"{"type":"message_stop"}"#);
        if r.ended == Some(true) {
            prop_assert!(stop.is_some(), "ended without message_stop");
        }
    }

    #[test]
    fn gemini_arbitrary_bytes(events in prop::collection::vec(garbage(), 0..6), cut: bool) {
        check_canonical(&run(gemini_tr(), events, cut));
    }

    #[test]
    fn gemini_plausible_sequences(
        events in prop::collection::vec(gemini_event(), 0..16),
        cut: bool,
    ) {
        check_canonical(&run(gemini_tr(), events, cut));
    }

    #[test]
    fn ollama_arbitrary_bytes(events in prop::collection::vec(garbage(), 0..6), cut: bool) {
        check_canonical(&run(ollama::StreamTranslator::new(1), events, cut));
    }

    #[test]
    fn ollama_plausible_sequences(
        events in prop::collection::vec(ollama_line(), 0..16),
        cut: bool,
    ) {
        let r = run(ollama::StreamTranslator::new(1), events.clone(), cut);
        check_canonical(&r);
        if r.ended == Some(true) {
            let done = events.iter().any(|e| {
                serde_json::from_slice::<Value>(e).is_ok_and(|v| v["done"] == true)
            });
            prop_assert!(done, "ended without a done line");
        }
    }
}

/// A well-formed Anthropic answer with two interleaved tool calls: indexes follow the order
/// the calls started, whatever the content-block indexes were.
#[test]
fn anthropic_tool_indexes_follow_start_order() {
    let evs = [
        json!({"type": "message_start", "message": {"id": "msg_1", "model": "c",
            "usage": {"input_tokens": 1, "output_tokens": 0}}}),
        json!({"type": "content_block_start", "index": 3,
            "content_block": {"type": "tool_use", "id": "a", "name": "f", "input": {}}}),
        json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "b", "name": "g", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        json!({"type": "content_block_delta", "index": 3,
            "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
        json!({"type": "message_stop"}),
    ];
    let r = run(
        anthropic::StreamTranslator::default(),
        evs.iter().map(|e| e.to_string().into_bytes()).collect(),
        false,
    );
    check_canonical(&r);
    assert_eq!(r.ended, Some(true));
    let idx: Vec<u64> = r
        .chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["index"].as_u64())
        .collect();
    assert_eq!(idx, [0, 1, 1, 0]);
}
