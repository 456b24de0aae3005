//! Property tests of the two other ingresses: the Anthropic Messages request parser
//! (`MessagesRequest` + `ingress::messages::to_canonical`, what `POST /v1/messages` runs) and
//! the Responses one (`ResponsesRequest` + `ingress::responses::to_chat`), fed arbitrary bytes,
//! arbitrary JSON and plausible requests: never a panic, an error names a field. And their
//! stream state machines (canonical chunks → Anthropic events / Responses events), fed
//! arbitrary chunk sequences: events well-formed and in protocol order, one terminal event,
//! nothing after it. Over HTTP, no body gets a 5xx. (Stable stand-in for cargo-fuzz, which
//! needs a nightly toolchain.)

mod support;

use std::collections::BTreeSet;

use aisbf::api::anthropic::MessagesRequest;
use aisbf::api::responses::ResponsesRequest;
use aisbf::ingress::messages::{self, to_canonical};
use aisbf::ingress::responses::{to_chat, StreamTranslator};
use aisbf::providers::ProviderError;
use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::{json, Value};
use support::openai_mock::OpenAiMock;
use support::*;

/// `PROPTEST_CASES` when set (long fuzz runs), else the small CI default.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Any JSON value, a few levels deep, with the keys both protocols use.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,10}".prop_map(Value::String),
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("text"),
            Just("tool_use"),
            Just("tool_result"),
            Just("function_call"),
            Just("function_call_output"),
            Just("message"),
            Just("input_text"),
            Just("image"),
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("role".to_string()),
                    Just("content".to_string()),
                    Just("type".to_string()),
                    Just("text".to_string()),
                    Just("id".to_string()),
                    Just("name".to_string()),
                    Just("input".to_string()),
                    Just("tool_use_id".to_string()),
                    Just("call_id".to_string()),
                    Just("arguments".to_string()),
                    Just("output".to_string()),
                    Just("source".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn parse_messages(bytes: &[u8]) -> Result<(), String> {
    let req: MessagesRequest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let chat = to_canonical(&req, true).map_err(|e| e.0)?;
    // What goes on to routing must serialize (it is what an upstream receives).
    serde_json::to_vec(&chat).expect("a canonical request serializes");
    Ok(())
}

fn parse_responses(bytes: &[u8]) -> Result<(), String> {
    let req: ResponsesRequest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let t = to_chat(req, None)?;
    serde_json::to_vec(&t.chat).expect("a canonical request serializes");
    Ok(())
}

/// A plausible Messages conversation: alternating turns, tool uses answered or not.
fn messages_body() -> impl Strategy<Value = Value> {
    let block = prop_oneof![
        ".{0,10}".prop_map(|t| json!({"type": "text", "text": t})),
        "[a-z]{1,4}".prop_map(|n| json!({"type": "tool_use", "id": format!("toolu_{n}"),
            "name": n, "input": {"q": 1}})),
        "[a-z]{1,4}".prop_map(|n| json!({"type": "tool_result",
            "tool_use_id": format!("toolu_{n}"), "content": "ok"})),
        Just(
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png",
            "data": "AA=="}})
        ),
        Just(json!({"type": "thinking", "thinking": "hm", "signature": "s"})),
        any_json(),
    ];
    let content = prop_oneof![
        ".{0,10}".prop_map(Value::String),
        prop::collection::vec(block, 0..4).prop_map(Value::Array),
    ];
    let msg = (
        prop_oneof![Just(json!("user")), Just(json!("assistant")), any_json()],
        content,
    )
        .prop_map(|(role, content)| json!({"role": role, "content": content}));
    (
        prop::collection::vec(msg, 0..8),
        proptest::option::of(any_json()),
        proptest::option::of(any_json()),
        proptest::option::of(0u32..5000),
    )
        .prop_map(|(messages, system, tools, max)| {
            let mut b = json!({"model": "p/m", "messages": messages});
            if let Some(s) = system {
                b["system"] = s;
            }
            if let Some(t) = tools {
                b["tools"] = t;
            }
            if let Some(m) = max {
                b["max_tokens"] = json!(m);
            }
            b
        })
}

/// A plausible Responses request: string or item-list input, tools of every kind.
fn responses_body() -> impl Strategy<Value = Value> {
    let item = prop_oneof![
        ".{0,10}".prop_map(|t| json!({"role": "user", "content": t})),
        ".{0,10}".prop_map(|t| json!({"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": t}]})),
        "[a-z]{1,4}".prop_map(
            |n| json!({"type": "function_call", "call_id": format!("c_{n}"),
            "name": n, "arguments": "{}"})
        ),
        "[a-z]{1,4}".prop_map(|n| json!({"type": "function_call_output",
            "call_id": format!("c_{n}"), "output": "ok"})),
        Just(json!({"type": "reasoning", "summary": []})),
        any_json(),
    ];
    let tool = prop_oneof![
        "[a-z]{1,6}".prop_map(|n| json!({"type": "function", "name": n,
            "parameters": {"type": "object"}})),
        Just(json!({"type": "web_search"})),
        "[a-z]{1,6}".prop_map(|n| json!({"type": "custom", "name": n})),
        any_json(),
    ];
    (
        prop_oneof![
            ".{0,10}".prop_map(Value::String),
            prop::collection::vec(item, 0..8).prop_map(Value::Array),
            any_json(),
        ],
        prop::collection::vec(tool, 0..3),
        proptest::option::of(any_json()),
    )
        .prop_map(|(input, tools, choice)| {
            let mut b = json!({"model": "p/m", "input": input, "tools": tools});
            if let Some(c) = choice {
                b["tool_choice"] = c;
            }
            b
        })
}

/// A canonical chunk (what the kernel yields), or something that is not one.
fn canonical_chunk() -> impl Strategy<Value = Vec<u8>> {
    let delta = prop_oneof![
        ".{0,8}".prop_map(|t| json!({"content": t})),
        ".{0,8}".prop_map(|t| json!({"reasoning_content": t})),
        (0u32..3, "[a-z]{1,4}").prop_map(|(i, n)| json!({"tool_calls": [{"index": i,
            "id": format!("call_{n}"), "type": "function",
            "function": {"name": n, "arguments": ""}}]})),
        (0u32..3, ".{0,6}").prop_map(|(i, a)| json!({"tool_calls": [{"index": i,
            "function": {"arguments": a}}]})),
        Just(json!({"role": "assistant", "content": ""})),
        Just(json!({"refusal": "no"})),
    ];
    let finish = proptest::option::of(prop_oneof![
        Just("stop"),
        Just("length"),
        Just("tool_calls"),
        Just("content_filter"),
    ]);
    let chunk = (delta, finish, any::<bool>()).prop_map(|(d, f, usage)| {
        let mut c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": f}]});
        if usage {
            c["usage"] = json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5});
        }
        c.to_string().into_bytes()
    });
    prop_oneof![
        8 => chunk,
        1 => prop::collection::vec(any::<u8>(), 0..24),
        1 => any_json().prop_map(|v| v.to_string().into_bytes()),
    ]
}

/// `event:` name and parsed `data:` of each SSE event in `text`.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("an event without its name: {e}"));
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("an event without data: {e}"));
            let v: Value = serde_json::from_str(data)
                .unwrap_or_else(|err| panic!("event data is not JSON ({err}): {data}"));
            assert_eq!(v["type"], name, "event name and type differ: {e}");
            (name.to_string(), v)
        })
        .collect()
}

/// Anthropic's stream grammar: message_start; blocks opened, filled and closed one at a
/// time with increasing indexes; then message_delta + message_stop, or one error.
fn check_anthropic_events(events: &[(String, Value)], failed: bool) {
    assert_eq!(events[0].0, "message_start", "{events:?}");
    let mut open: Option<u64> = None;
    let mut next = 0;
    let mut tool_blocks = BTreeSet::new();
    let last = events.len() - 1;
    for (i, (name, v)) in events.iter().enumerate().skip(1) {
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "a block opened inside another: {v}");
                assert_eq!(v["index"], next, "blocks numbered in order: {v}");
                if v["content_block"]["type"] == "tool_use" {
                    tool_blocks.insert(next);
                }
                open = Some(next);
                next += 1;
            }
            "content_block_delta" => {
                let index = v["index"].as_u64().expect("index");
                assert_eq!(open, Some(index), "delta off the open block: {v}");
                if v["delta"]["type"] == "input_json_delta" {
                    assert!(
                        tool_blocks.contains(&index),
                        "arguments on a non-tool block: {v}"
                    );
                }
            }
            "content_block_stop" => {
                assert_eq!(v["index"].as_u64(), open, "stop of a closed block: {v}");
                open = None;
            }
            "message_delta" => {
                assert!(
                    open.is_none() && i == last - 1,
                    "message_delta out of place"
                );
                assert!(v["delta"]["stop_reason"].is_string(), "{v}");
                assert!(v["usage"]["output_tokens"].is_u64(), "{v}");
            }
            "message_stop" => assert!(!failed && i == last, "message_stop out of place"),
            "error" => assert!(failed && i == last, "error out of place"),
            other => panic!("unexpected event {other}: {v}"),
        }
    }
}

/// The Responses stream grammar: sequence numbers 0, 1, 2…; items added before their deltas
/// and done once; exactly one terminal event, last.
fn check_responses_events(events: &[aisbf::api::responses::StreamEvent], failed: bool) {
    let mut open: BTreeSet<u64> = BTreeSet::new();
    let mut closed: BTreeSet<u64> = BTreeSet::new();
    let last = events.len() - 1;
    for (i, e) in events.iter().enumerate() {
        let v: Value = serde_json::from_slice(&e.json).expect("event JSON");
        assert_eq!(v["type"], e.kind);
        assert_eq!(
            v["sequence_number"], i as u64,
            "sequence numbers in order: {v}"
        );
        let index = v["output_index"].as_u64();
        match e.kind {
            "response.created" | "response.in_progress" => assert!(i < 2, "{v}"),
            "response.output_item.added" => {
                let index = index.expect("output_index");
                assert!(
                    !open.contains(&index) && !closed.contains(&index),
                    "re-added: {v}"
                );
                open.insert(index);
            }
            "response.output_item.done" => {
                let index = index.expect("output_index");
                assert!(open.remove(&index), "done of an item never added: {v}");
                closed.insert(index);
            }
            "response.completed" | "response.incomplete" => {
                assert!(
                    !failed && i == last && open.is_empty(),
                    "terminal out of place: {v}"
                );
                assert!(v["response"]["usage"]["total_tokens"].is_u64(), "{v}");
            }
            "response.failed" => {
                assert!(failed && i == last, "failed out of place: {v}");
                assert!(v["response"]["error"]["message"].is_string(), "{v}");
            }
            _ => {
                // Deltas and part events refer to an open item.
                let index = index.unwrap_or_else(|| panic!("no output_index: {v}"));
                assert!(open.contains(&index), "event on an item not open: {v}");
            }
        }
    }
}

fn a_shape() -> aisbf::ingress::responses::Shape {
    let req: ResponsesRequest = serde_json::from_value(json!({"model": "p/m", "input": "hi",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]}))
    .unwrap();
    to_chat(req, None).unwrap().shape
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), ..ProptestConfig::default() })]

    #[test]
    fn messages_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_messages(&bytes);
    }

    #[test]
    fn messages_arbitrary_requests(body in prop_oneof![messages_body(), any_json()]) {
        if let Err(e) = parse_messages(&serde_json::to_vec(&body).unwrap()) {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn responses_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_responses(&bytes);
    }

    #[test]
    fn responses_arbitrary_requests(body in prop_oneof![responses_body(), any_json()]) {
        if let Err(e) = parse_responses(&serde_json::to_vec(&body).unwrap()) {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn messages_stream_state_machine(
        chunks in prop::collection::vec(canonical_chunk(), 0..16),
        fail: bool,
    ) {
        let mut tr = messages::StreamTranslator::new("claude-x", 12);
        let mut out = BytesMut::new();
        // A chunk the grammar cannot carry (a resumed tool call) ends the stream in an error.
        let mut ended = false;
        for c in &chunks {
            if !tr.chunk(c, &mut out) {
                ended = true;
                break;
            }
        }
        let fail = fail || ended;
        if fail {
            tr.error("upstream reset", &mut out);
            // Idempotent ends: nothing follows the error.
            tr.finish(None, &mut out);
        } else {
            tr.finish(None, &mut out);
            tr.finish(None, &mut out);
        }
        let text = String::from_utf8(out.to_vec()).expect("UTF-8 events");
        let events = sse_events(&text);
        // An error before anything started is one bare error event.
        if fail && chunks.is_empty() {
            prop_assert!(events.iter().any(|(n, _)| n == "error"));
        } else {
            check_anthropic_events(&events, fail);
        }
    }

    #[test]
    fn responses_stream_state_machine(
        chunks in prop::collection::vec(canonical_chunk(), 0..16),
        fail: bool,
    ) {
        let mut tr = StreamTranslator::new(a_shape());
        let mut events = tr.start();
        for c in &chunks {
            events.extend(tr.feed(c));
        }
        if fail {
            events.extend(tr.fail(&ProviderError::Protocol("upstream reset".into())));
        } else {
            events.extend(tr.finish(None, 100, |chars| chars as u64 / 4));
        }
        check_responses_events(&events, fail);
        // The stored response is the final one.
        let stored = tr.take_stored();
        prop_assert_eq!(stored.response.status, if fail { "failed" } else { tr.response().status });
    }
}

/// Over HTTP: whatever a client sends to `/v1/messages` or `/v1/responses`, streamed or not,
/// the answer is a 2xx or a 4xx with the protocol's error shape, never a 5xx.
#[test]
fn no_ingress_body_gets_a_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (gw, mock) = rt.block_on(async {
        let mock = OpenAiMock::start().await;
        let gw = Gateway::start_with(ConfigDir::new(json!({
            "p": provider("openai", &mock.endpoint, Some("sk-prop"), &["m"]),
        })))
        .await;
        (gw, mock)
    });
    let http = client();
    let strategy = (
        prop_oneof![
            messages_body().prop_map(|b| ("/v1/messages", b)),
            responses_body().prop_map(|b| ("/v1/responses", b)),
        ],
        any::<bool>(),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |((path, mut body), stream)| {
            body["stream"] = json!(stream);
            let (status, text) = rt.block_on(async {
                let resp = http
                    .post(gw.url(path))
                    .header("anthropic-version", "2023-06-01")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            });
            prop_assert!(status < 500, "{} for {} {}: {}", status, path, body, text);
            if status >= 400 {
                let v: Value = serde_json::from_str(&text).unwrap();
                prop_assert!(v["error"]["message"].is_string(), "{}", text);
            }
            Ok(())
        })
        .unwrap();
    assert!(mock.received.count() > 0, "some bodies were valid");
    drop(gw);
}
