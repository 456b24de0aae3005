//! Tests of the OpenAI request and stream translation.
use super::*;

fn request(json: &str) -> ChatRequest {
    serde_json::from_str(json).unwrap()
}

#[test]
fn outgoing_keeps_every_field_and_replaces_model() {
    let req = request(
        r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"user":"u1","seed":7}"#,
    );
    let out: Value = serde_json::from_slice(&outgoing_body(&req, "gpt-4o")).unwrap();
    assert_eq!(out["model"], "gpt-4o");
    assert_eq!(out["temperature"], 0.2);
    assert_eq!(out["seed"], 7);
    assert_eq!(out["user"], "u1");
    assert_eq!(out["tools"][0]["function"]["name"], "f");
    assert!(out.get("stream").is_none());
    assert!(out.get("stream_options").is_none());
}

#[test]
fn streams_ask_for_usage_keeping_client_options() {
    let req = request(
        r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_obfuscation":false}}"#,
    );
    let out: Value = serde_json::from_slice(&outgoing_body(&req, "m")).unwrap();
    assert_eq!(out["stream"], true);
    assert_eq!(out["stream_options"]["include_usage"], true);
    assert_eq!(out["stream_options"]["include_obfuscation"], false);
}

#[test]
fn usage_chunk_is_held_back_and_other_chunks_pass_verbatim() {
    use kernel::StreamTranslator as _;
    let mut s = StreamTranslator::default();
    let mut w = ChunkWriter::new("", "", 0);
    let first = r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}"#;
    assert_eq!(s.on_event(first.as_bytes(), &mut w).unwrap(), Flow::More);
    assert_eq!(w.pop().unwrap(), Bytes::from(first));
    let usage = r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    s.on_event(usage.as_bytes(), &mut w).unwrap();
    assert!(w.pop().is_none());
    assert_eq!(s.on_event(b"[DONE]", &mut w).unwrap(), Flow::Done);
    assert!(s.on_event(b"{not json", &mut w).is_err());
    let end = w.end();
    assert_eq!(end.usage.as_ref().unwrap().total_tokens, 4);
    // The answer's text is not collected once usage came: it is only counted without it.
    assert_eq!(
        (end.id.as_str(), end.model.as_str(), end.created),
        ("c1", "m", 5)
    );
}

// The stream fast path: plain chunks forwarded without the full parse, their text read at
// the end when no usage came. Everything it does must be what the full parse does.

use kernel::StreamTranslator as _;
use proptest::prelude::*;

/// Today's translator before the fast path: every event through the full parse.
#[derive(Default)]
struct Reference(StreamTranslator);

impl kernel::StreamTranslator for Reference {
    fn on_event(&mut self, data: &[u8], out: &mut ChunkWriter) -> Result<Flow, ProviderError> {
        if data == b"[DONE]" {
            return Ok(Flow::Done);
        }
        self.0.parse_event(data, out)
    }

    fn finish(&mut self, out: &mut ChunkWriter) -> Result<(), ProviderError> {
        self.0.finish(out)
    }
}

/// Everything one translator made of a stream: per event its flow (or error) and chunks,
/// then the upstream's close, then the end.
#[derive(Debug, PartialEq)]
struct Outcome {
    steps: Vec<(Result<Flow, String>, Vec<Bytes>)>,
    close: Option<Result<(), String>>,
    end: Option<(String, String, i64, Option<Usage>)>,
    /// The answer's text, when no usage came (the only time it is read).
    completion: Option<String>,
}

/// Runs `tr` over `events` as `kernel::drive` does; `shared`: as `Bytes` events.
fn outcome(mut tr: impl kernel::StreamTranslator, events: &[Vec<u8>], shared: bool) -> Outcome {
    let mut w = ChunkWriter::new("", "", 0);
    let mut steps = Vec::new();
    let mut done = false;
    for e in events {
        let event = Bytes::from(e.clone());
        let data = event.trim_ascii();
        if data.is_empty() {
            continue;
        }
        let r = if shared {
            tr.on_shared_event(&event, data, &mut w)
        } else {
            tr.on_event(data, &mut w)
        };
        let failed = r.is_err();
        done = r.as_ref().is_ok_and(|f| *f == Flow::Done);
        steps.push((
            r.map_err(|e| format!("{e:?}")),
            std::iter::from_fn(|| w.pop()).collect(),
        ));
        if failed {
            return Outcome {
                steps,
                close: None,
                end: None,
                completion: None,
            };
        }
        if done {
            break;
        }
    }
    let close = (!done).then(|| tr.finish(&mut w).map_err(|e| format!("{e:?}")));
    if close.as_ref().is_some_and(|c| c.is_err()) {
        return Outcome {
            steps,
            close,
            end: None,
            completion: None,
        };
    }
    let end = w.end();
    Outcome {
        steps,
        close,
        completion: end.usage.is_none().then_some(end.completion),
        end: Some((end.id, end.model, end.created, end.usage)),
    }
}

/// The members before `object` in most chunks (each followed by a comma).
const HEAD: &str = r#""id":"chatcmpl-1","created":7,"model":"m","#;

fn chunk(delta: &str, finish: &str, tail: &str) -> String {
    chunk_under(HEAD, delta, finish, tail)
}

fn chunk_under(head: &str, delta: &str, finish: &str, tail: &str) -> String {
    format!(
        r#"{{{head}"object":"chat.completion.chunk","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]{tail}}}"#
    )
}

fn content(text: &str) -> String {
    chunk(
        &format!(r#"{{"content":"{text}"}}"#),
        "null",
        r#","usage":null"#,
    )
}

const USAGE: &str = r#"{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#;

fn events(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|e| e.as_bytes().to_vec()).collect()
}

fn assert_same(list: &[Vec<u8>]) -> Outcome {
    let want = outcome(Reference::default(), list, false);
    for shared in [false, true] {
        let got = outcome(StreamTranslator::default(), list, shared);
        assert_eq!(got, want, "shared: {shared}");
    }
    want
}

#[test]
fn plain_chunks_go_as_slices_of_the_event() {
    let mut s = StreamTranslator::default();
    let mut w = ChunkWriter::new("", "", 0);
    for text in ["a", "b"] {
        let event = Bytes::from(format!(" {} \n", content(text)));
        let data = event.trim_ascii();
        assert_eq!(s.on_shared_event(&event, data, &mut w).unwrap(), Flow::More);
        let out = w.pop().unwrap();
        assert_eq!(&out[..], data);
        // The first chunk too: its id, model and time come from the scan.
        assert_eq!(out.as_ptr(), data.as_ptr(), "{text}");
    }
    assert_eq!(s.kept.len(), content("a").len() + content("b").len() + 2);
    let end = w.end();
    assert_eq!(
        (end.id.as_str(), end.model.as_str(), end.created),
        ("chatcmpl-1", "m", 7)
    );
}

#[test]
fn answer_text_without_usage_is_in_order() {
    let with_text_in_finish = chunk(r#"{"content":"d"}"#, r#""stop""#, "");
    let tool = chunk(
        r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":1}"}}]}"#,
        "null",
        "",
    );
    let reasoning = chunk(r#"{"reasoning_content":"r\u00e9\n"}"#, "null", "");
    let list = events(&[
        &content("a"),
        &content("b"),
        &reasoning,
        &tool,
        &with_text_in_finish,
        &content("e"),
        "[DONE]",
    ]);
    let out = assert_same(&list);
    assert_eq!(
        out.completion.as_deref(),
        Some("abr\u{e9}\n{\"x\":1}de"),
        "{out:?}"
    );
    // Closed without [DONE]: the same text.
    let out = assert_same(&list[..list.len() - 1]);
    assert_eq!(out.completion.as_deref(), Some("abr\u{e9}\n{\"x\":1}de"));
}

#[test]
fn usage_ends_the_keeping() {
    let mut s = StreamTranslator::default();
    let mut w = ChunkWriter::new("", "", 0);
    for e in [content("a"), content("b"), USAGE.to_string(), content("c")] {
        s.on_event(e.as_bytes(), &mut w).unwrap();
    }
    assert!(s.kept.is_empty() && s.kept.capacity() == 0);
    assert_same(&events(&[
        &content("a"),
        &content("b"),
        USAGE,
        &content("c"),
        "[DONE]",
    ]));
}

#[test]
fn kept_bytes_stay_bounded() {
    let mut s = StreamTranslator::default();
    let mut w = ChunkWriter::new("", "", 0);
    let c = content(&"x".repeat(1000));
    let mut list = Vec::new();
    for _ in 0..1000 {
        s.on_event(c.as_bytes(), &mut w).unwrap();
        assert!(s.kept.len() <= KEPT_MAX + c.len() + 1);
        while w.pop().is_some() {}
        list.push(c.clone().into_bytes());
    }
    list.push(b"[DONE]".to_vec());
    let out = assert_same(&list);
    assert_eq!(out.completion.unwrap().len(), 1000 * 1000);
}

#[test]
fn anything_but_a_plain_chunk_is_read_in_full() {
    for odd in [
        "4",
        "[]",
        "[{\"delta\":{\"content\":\"seq\"}}]",
        "\"x\"",
        "null",
        "{not json",
        "{\"choices\":[]} x",
        r#"{"id":5,"choices":[]}"#,
        r#"{"created":1.5,"choices":[]}"#,
        r#"{"choices":null}"#,
        r#"{"choices":[{"delta":{"content":"a"}}],"choices":[]}"#,
        r#"{"choices":[[{"content":"x"}]]}"#,
        r#"{"choices":[{"delta":{"content":"\ud800"}}]}"#,
        r#"{"x":"\udc00","choices":[{"delta":{"content":"lone in an ignored member"}}]}"#,
        r#"{"us\u0061ge":{"total_tokens":3},"choices":[]}"#,
        r#"{"choices":[{"delta":{"content":"a"}}],"error":{"message":"boom"}}"#,
        r#"{"choices":[{"delta":{"content":"a"}}],"error":null}"#,
    ] {
        let list = events(&[&content("a"), &content("b"), odd, &content("c"), "[DONE]"]);
        assert_same(&list);
    }
}

/// A JSON string literal's contents for `text`, escaped one of several ways.
fn literal(text: String, how: u8) -> String {
    let json = serde_json::to_string(&text).unwrap();
    let json = &json[1..json.len() - 1];
    match how {
        // Every non-ASCII character as \u escapes (surrogate pairs beyond the BMP).
        0 => json
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    let mut units = [0u16; 2];
                    c.encode_utf16(&mut units)
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect()
                }
            })
            .collect(),
        1 => format!("{json}\\ud83d"),
        _ => json.to_string(),
    }
}

fn text() -> impl Strategy<Value = String> {
    (
        prop_oneof!["[a-z ]{0,6}", ".{0,6}", "[\"\\\\\n\t\u{e9}\u{1F600}]{0,4}"],
        0u8..8,
    )
        .prop_map(|(t, how)| literal(t, how))
}

/// A chunk's `id`, `model` and `created` (each followed by a comma): mostly the usual
/// ones, now and then escaped, null, missing, or of a value the full parse refuses.
fn head() -> BoxedStrategy<String> {
    let text = || {
        prop_oneof![
            2 => text().prop_map(|t| format!("\"{t}\"")),
            1 => Just("null".to_string()),
            1 => Just(String::new()),
            1 => Just("5".to_string()),
        ]
    };
    let created = prop::sample::select(
        &[
            "",
            "null",
            "0",
            "-5",
            "1700000000",
            "123456789012345678",
            "-123456789012345678",
            "1234567890123456789",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "18446744073709551616",
            "1.5",
            "-0",
            "1e3",
            "\"7\"",
        ][..],
    );
    let member = |name: &str, v: &str| {
        if v.is_empty() {
            String::new()
        } else {
            format!("\"{name}\":{v},")
        }
    };
    prop_oneof![
        3 => Just(HEAD.to_string()),
        2 => (text(), text(), created).prop_map(move |(id, model, created)| {
            member("id", &id) + &member("model", &model) + &member("created", created)
        }),
    ]
    .boxed()
}

/// A `usage` object: mostly counts (now and then one `Usage` refuses, or a repeat), else
/// also what `Usage` keeps in its `extra` (details objects, other values) and escaped keys.
fn usage_object() -> BoxedStrategy<String> {
    let count_key = || {
        prop::sample::select(
            &[
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "effective_context",
            ][..],
        )
    };
    let count = || {
        prop_oneof![
            3 => "0|[1-9][0-9]{0,3}",
            1 => prop::sample::select(
                &[
                    "18446744073709551615", "18446744073709551616", "-1", "-0", "1.0", "1e2",
                    "null", "\"3\"", "true", "[]",
                ][..],
            )
            .prop_map(str::to_string),
        ]
    };
    let key = prop_oneof![
        3 => count_key(),
        1 => prop::sample::select(
            &["prompt_tokens_details", "x", "pr\\u006fmpt_tokens", "\\u0078"][..]
        ),
    ];
    let value = prop_oneof![
        6 => count(),
        1 => Just(r#"{"cached_tokens":2,"audio_tokens":0}"#.to_string()),
        1 => text().prop_map(|t| format!("\"{t}\"")),
        1 => Just(r#"[1,{"a":null},"b"]"#.to_string()),
    ];
    let members = prop_oneof![
        2 => prop::collection::vec((count_key(), count()), 0..4),
        1 => prop::collection::vec((key, value), 0..5),
    ];
    members
        .prop_map(|members| {
            let members: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            format!("{{{}}}", members.join(","))
        })
        .boxed()
}

/// A usage report: under a head, with no choices (as OpenAI sends it), or riding on a
/// content chunk; now and then nesting as deep as serde_json allows, or one level more
/// (inside the usage, where serde builds values, or beside it, where serde skips them).
fn usage_event() -> BoxedStrategy<String> {
    let choices = prop_oneof![
        Just(r#""choices":[],"#),
        Just(""),
        Just(r#""choices":[{"delta":{"content":"u"},"finish_reason":"stop"}],"#),
    ];
    let report =
        (head(), choices, usage_object()).prop_map(|(h, c, u)| format!(r#"{{{h}{c}"usage":{u}}}"#));
    let deep = (124usize..128, any::<bool>(), any::<bool>()).prop_map(|(n, inside, more)| {
        let nested = format!("{}{}", "[".repeat(n), "]".repeat(n));
        let extra = if more { r#","x":1"# } else { "" };
        if inside {
            format!(r#"{{"choices":[],"usage":{{"total_tokens":3,"d":{nested}{extra}}}}}"#)
        } else {
            format!(r#"{{"choices":[],"d":{nested},"usage":{{"total_tokens":3{extra}}}}}"#)
        }
    });
    prop_oneof![8 => report, 1 => deep].boxed()
}

fn upstream_event() -> impl Strategy<Value = String> {
    let delta = prop_oneof![
        text().prop_map(|t| format!(r#"{{"content":"{t}"}}"#)),
        text().prop_map(|t| format!(r#"{{"reasoning_content":"{t}","content":null}}"#)),
        text().prop_map(|t| format!(
            r#"{{"tool_calls":[{{"index":0,"id":"c","function":{{"name":"f","arguments":"{t}"}}}}]}}"#
        )),
        Just(r#"{"role":"assistant","content":""}"#.to_string()),
        Just("{}".to_string()),
        Just("null".to_string()),
    ];
    // Now and then a finish_reason the full parse refuses (not a string).
    let finish = prop_oneof![8 => Just("null"), 2 => Just(r#""stop""#), 1 => Just("1"),
        1 => Just("{}"), 1 => Just("[\"stop\"]")];
    let tail = prop_oneof![
        Just(""),
        Just(r#","usage":null"#),
        Just(r#","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}"#),
        Just(r#","error":null"#),
        Just(r#","error":{"message":"boom","type":"server_error"}"#),
        Just(r#","id":"again""#),
        Just(r#","x":{"finish_reason":"stop","usage":{}}"#),
    ];
    let ev = prop_oneof![
        12 => (head(), delta, finish, prop_oneof![6 => Just(""), 1 => tail])
            .prop_map(|(h, d, f, t)| chunk_under(&h, &d, f, t)),
        1 => Just(USAGE.to_string()),
        2 => usage_event(),
        1 => Just("[DONE]".to_string()),
        1 => prop_oneof![Just("4"), Just("[]"), Just("\"x\""), Just("null"), Just("{}"),
            Just(r#"{"choices":null}"#), Just(r#"{"created":-0,"choices":[]}"#)]
            .prop_map(str::to_string),
        1 => "[^\r\n]{0,12}",
    ];
    // Some events spread over lines, as a multi-line SSE data field gives them.
    (ev, any::<bool>()).prop_map(|(e, spread)| {
        if spread {
            e.replace(",\"", ",\n \"")
        } else {
            e
        }
    })
}

/// An event, maybe with one byte changed, inserted or removed.
fn mutated_event() -> impl Strategy<Value = Vec<u8>> {
    (upstream_event(), 0u8..4, any::<usize>(), any::<u8>()).prop_map(|(e, how, at, b)| {
        let mut e = e.into_bytes();
        let at = if e.is_empty() { 0 } else { at % e.len() };
        match how {
            0 if !e.is_empty() => e[at] = b,
            1 => e.insert(at, b),
            2 if !e.is_empty() => {
                e.remove(at);
            }
            _ => {}
        }
        e
    })
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    /// Whatever the upstream sends: the same chunks, flows, errors and end as the full
    /// parse of every chunk, and the same answer text when no usage came.
    #[test]
    fn fast_path_matches_the_full_parse(
        list in prop::collection::vec(
            prop_oneof![4 => upstream_event().prop_map(String::into_bytes), 1 => mutated_event()],
            0..16,
        ),
    ) {
        let want = outcome(Reference::default(), &list, false);
        for shared in [false, true] {
            let got = outcome(StreamTranslator::default(), &list, shared);
            prop_assert_eq!(&got, &want, "shared: {}", shared);
        }
    }
}
