//! Property tests of the chat request parser (`ChatRequest` + `validate`, what
//! `POST /v1/chat/completions` runs on every body): arbitrary bytes and arbitrary JSON never
//! panic; generated well-formed conversations are accepted and survive a round trip; an
//! orphan tool result is refused naming its index; and over HTTP no body gets a 5xx.

mod support;

use aisbf::api::openai::ChatRequest;
use proptest::prelude::*;
use serde_json::{json, Value};
use support::openai_mock::OpenAiMock;
use support::*;

fn parse(bytes: &[u8]) -> Result<ChatRequest, String> {
    let req: ChatRequest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    req.validate()?;
    Ok(req)
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("role"),
            Just("content"),
            Just("tool_calls"),
            Just("function"),
            Just("tool"),
            Just("assistant"),
            Just("type"),
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("role".to_string()),
                    Just("content".to_string()),
                    Just("tool_calls".to_string()),
                    Just("tool_call_id".to_string()),
                    Just("function".to_string()),
                    Just("name".to_string()),
                    Just("id".to_string()),
                    Just("type".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A message-shaped object whose fields are arbitrary JSON.
fn any_message() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just(json!("user")),
            Just(json!("assistant")),
            Just(json!("tool")),
            Just(json!("system")),
            any_json(),
        ],
        any_json(),
        proptest::option::of(any_json()),
        proptest::option::of(any_json()),
    )
        .prop_map(|(role, content, calls, id)| {
            let mut m = json!({"role": role, "content": content});
            if let Some(c) = calls {
                m["tool_calls"] = c;
            }
            if let Some(i) = id {
                m["tool_call_id"] = i;
            }
            m
        })
}

/// One turn of a well-formed conversation: a user message, or an assistant message with
/// tool calls followed by one result per call (in any order), or a plain assistant reply.
#[derive(Debug, Clone)]
enum Turn {
    User(String),
    Reply(String),
    Tools { ids: Vec<u8>, reversed: bool },
}

fn turn() -> impl Strategy<Value = Turn> {
    prop_oneof![
        ".{0,40}".prop_map(Turn::User),
        ".{0,40}".prop_map(Turn::Reply),
        (prop::collection::vec(any::<u8>(), 1..4), any::<bool>())
            .prop_map(|(ids, reversed)| Turn::Tools { ids, reversed }),
    ]
}

fn conversation(turns: &[Turn], tools: bool) -> Value {
    let mut messages = vec![json!({"role": "system", "content": "Be brief."})];
    for (t, turn) in turns.iter().enumerate() {
        match turn {
            Turn::User(text) => messages.push(json!({"role": "user", "content": text})),
            Turn::Reply(text) => messages.push(json!({"role": "assistant", "content": text})),
            Turn::Tools { ids, reversed } => {
                let ids: Vec<String> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, b)| format!("call_{t}_{i}_{b}"))
                    .collect();
                let calls: Vec<Value> = ids
                    .iter()
                    .map(|id| {
                        json!({"id": id, "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}})
                    })
                    .collect();
                messages.push(json!({"role": "assistant", "content": null, "tool_calls": calls}));
                let mut results: Vec<&String> = ids.iter().collect();
                if *reversed {
                    results.reverse();
                }
                for id in results {
                    messages.push(json!({"role": "tool", "tool_call_id": id, "content": "sunny"}));
                }
            }
        }
    }
    messages.push(json!({"role": "user", "content": "And now?"}));
    let mut body = json!({"model": "p/m", "messages": messages, "temperature": 0.2});
    if tools {
        body["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(
        messages in prop::collection::vec(any_message(), 0..8),
        tools in proptest::option::of(any_json()),
        extra in any_json(),
    ) {
        let mut body = json!({"model": "p/m", "messages": messages, "extra": extra});
        if let Some(t) = tools {
            body["tools"] = t;
        }
        let bytes = serde_json::to_vec(&body).unwrap();
        if let Err(e) = parse(&bytes) {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn well_formed_conversations_are_accepted_and_round_trip(
        turns in prop::collection::vec(turn(), 0..10),
        tools in any::<bool>(),
    ) {
        let body = conversation(&turns, tools);
        let req = parse(&serde_json::to_vec(&body).unwrap());
        prop_assert!(req.is_ok(), "{:?}", req.err());
        // What the gateway forwards to an OpenAI-compatible upstream is what the client sent.
        let again = serde_json::to_value(req.unwrap()).unwrap();
        prop_assert_eq!(again, body);
    }

    #[test]
    fn an_orphan_tool_result_is_refused_where_it_stands(
        turns in prop::collection::vec(turn(), 0..8),
        at in any::<prop::sample::Index>(),
    ) {
        let mut body = conversation(&turns, false);
        let messages = body["messages"].as_array_mut().unwrap();
        let i = at.index(messages.len()) + 1;
        messages.insert(i, json!({"role": "tool", "tool_call_id": "call_nobody_made", "content": "x"}));
        let e = parse(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        prop_assert!(
            e.starts_with(&format!("messages[{i}].tool_call_id:")),
            "{}", e
        );
    }
}

/// Over HTTP: whatever JSON a client sends, the answer is a 2xx or a 4xx with the OpenAI
/// error shape, never a 5xx (the upstream mock answers every request it gets).
#[test]
fn no_body_gets_a_5xx() {
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
    let url = gw.url("/v1/chat/completions");
    let http = client();
    // Half hostile, half well-formed (so the valid path, translation included, runs too).
    let random = (
        prop::collection::vec(any_message(), 0..6),
        proptest::option::of(any_json()),
    )
        .prop_map(|(messages, tools)| {
            let mut body = json!({"model": "p/m", "messages": messages});
            if let Some(t) = tools {
                body["tools"] = t;
            }
            body
        });
    let valid = (prop::collection::vec(turn(), 0..6), any::<bool>())
        .prop_map(|(turns, tools)| conversation(&turns, tools));
    let strategy = (prop_oneof![random, valid], any::<bool>());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |(mut body, stream)| {
            body["stream"] = json!(stream);
            let (status, text) = rt.block_on(async {
                let resp = http.post(&url).json(&body).send().await.unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            });
            prop_assert!(status < 500, "{} for {}: {}", status, body, text);
            if status >= 400 {
                let v: Value = serde_json::from_str(&text).unwrap();
                prop_assert!(v["error"]["message"].is_string(), "{}", text);
            }
            Ok(())
        })
        .unwrap();
    // Some generated bodies were valid and reached the upstream.
    assert!(mock.received.count() > 0);
    drop(gw);
}
