//! Property tests of the verbatim answer check (`providers::completion_scan`, behind
//! `Verbatim::check`) against the serde parse it replaced, kept here as the oracle. On
//! answers close to valid (members missing, repeated, retyped, null, keys and `object`
//! spelled with escapes, lone surrogates, integers at and past their type's bounds, floats,
//! unknown members, `effective_context` already in usage, any whitespace, trailing bytes)
//! and on those answers with bytes changed, the scan accepts exactly what the parse
//! accepted and finds the same usage (where, whether empty, its counts).
//!
//! The scan is stricter in the ways `completion_scan` documents: where the parse accepted
//! and the scan did not, the body must hold invalid UTF-8 (which the parse skips in
//! unknown members) or a usage written as an array (serde's derive reads a struct from an
//! array of its fields). No generated answer nests beyond the scan's depth limit.

mod prop_common;

use std::borrow::Cow;

use aisbf::providers::completion::Verbatim;
use aisbf::providers::completion_scan::{scan, Found};
use bytes::Bytes;
use prop_common::cases;
use proptest::prelude::*;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

// The oracle: `Verbatim::check` as it was, a serde parse of the fields the schema requires.

fn oracle(body: &[u8]) -> Option<Found> {
    let head: Head = serde_json::from_slice(body).ok()?;
    if head.object != "chat.completion" || head.choices.is_empty() {
        return None;
    }
    let raw = head.usage?.get();
    if raw.contains("effective_context") {
        return None;
    }
    let counts: UsageCounts = serde_json::from_str(raw).ok()?;
    Some(Found {
        usage_at: raw.as_ptr() as usize - body.as_ptr() as usize,
        usage_empty: raw[1..].trim_start().starts_with('}'),
        prompt_tokens: counts.prompt_tokens,
        completion_tokens: counts.completion_tokens,
        total_tokens: counts.total_tokens,
    })
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, rename = "id")]
    _id: Cow<'a, str>,
    #[serde(borrow)]
    object: Cow<'a, str>,
    #[serde(rename = "created")]
    _created: i64,
    #[serde(borrow, rename = "model")]
    _model: Cow<'a, str>,
    #[serde(borrow)]
    choices: Vec<ChoiceHead<'a>>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChoiceHead<'a> {
    #[serde(rename = "index")]
    _index: u32,
    #[serde(borrow, rename = "message")]
    _message: MessageHead<'a>,
    #[serde(borrow, rename = "finish_reason", deserialize_with = "present")]
    _finish_reason: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "logprobs", deserialize_with = "present")]
    _logprobs: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MessageHead<'a> {
    #[serde(borrow, rename = "role")]
    _role: Cow<'a, str>,
    #[serde(borrow, rename = "content", deserialize_with = "present")]
    _content: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "refusal", deserialize_with = "present")]
    _refusal: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "tool_calls", default)]
    _tool_calls: Option<Vec<ToolCallHead<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallHead<'a> {
    #[serde(borrow, rename = "id")]
    _id: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    _kind: Cow<'a, str>,
    #[serde(borrow, rename = "function")]
    _function: FunctionHead<'a>,
}

#[derive(Deserialize)]
struct FunctionHead<'a> {
    #[serde(borrow, rename = "name")]
    _name: Cow<'a, str>,
    #[serde(borrow, rename = "arguments")]
    _arguments: Cow<'a, str>,
}

#[derive(Deserialize)]
struct UsageCounts {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// The scan against the oracle on `body`; whether the answer was accepted.
fn agree(body: &[u8]) -> Result<bool, TestCaseError> {
    let got = scan(body);
    let want = oracle(body);
    let shown = String::from_utf8_lossy(body);
    match (got, want) {
        (None, Some(w)) => {
            let stricter = std::str::from_utf8(body).is_err() || body[w.usage_at] == b'[';
            prop_assert!(stricter, "the parse accepted {:?}: {}", w, shown);
        }
        _ => prop_assert_eq!(got, want, "{}", shown),
    }
    // `Verbatim::check` is the scan and nothing else.
    let v = Verbatim::check(Bytes::copy_from_slice(body));
    prop_assert_eq!(
        v.map(|v| (
            v.usage.prompt_tokens,
            v.usage.completion_tokens,
            v.usage.total_tokens
        )),
        got.map(|f| (f.prompt_tokens, f.completion_tokens, f.total_tokens))
    );
    Ok(got.is_some())
}

// The generator: answers as text, each part valid most of the time.

/// A string literal, quotes included: plain, non-ASCII, escaped every way, or with a lone
/// surrogate escape (which serde refuses to decode).
fn string() -> BoxedStrategy<String> {
    prop_oneof![
        40 => "[a-z ]{0,8}".prop_map(|s| format!("\"{s}\"")),
        1 => "[a\u{e9}\u{1F600}\"\\\\/\u{0}-\u{1f}]{0,5}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => "[a\u{e9}\u{1F600}]{0,4}".prop_map(|s| {
            let units: String = s.encode_utf16().map(|u| format!("\\u{u:04x}")).collect();
            format!("\"{units}\"")
        }),
        1 => prop::sample::select(&[r#""\ud800""#, r#""a\udc00""#, r#""\ud83d\ude00""#, r#""\ud83dx""#, r#""\\ud800""#][..])
            .prop_map(str::to_string),
    ]
    .boxed()
}

/// Integers around the bounds of i64, u32 and u64, and numbers serde reads as floats.
fn number() -> BoxedStrategy<String> {
    prop_oneof![
        3 => (0u32..1000).prop_map(|n| n.to_string()),
        4 => prop::sample::select(&[
            "0", "-0", "1", "-1", "0.0", "1.0", "1e3", "1E+0", "-1.5",
            "4294967295", "4294967296", "-4294967295",
            "9223372036854775807", "9223372036854775808",
            "-9223372036854775808", "-9223372036854775809",
            "18446744073709551615", "18446744073709551616",
            "-18446744073709551615", "99999999999999999999999",
        ][..]).prop_map(str::to_string),
        1 => "-?[1-9][0-9]{0,21}",
    ]
    .boxed()
}

/// Any value but an array: an object of the schema written as an array is not generated
/// (but for usage), as the scan refuses that form on purpose.
fn scalar_or_object() -> BoxedStrategy<String> {
    prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        number(),
        string(),
        Just("{}".to_string()),
        (string(), number()).prop_map(|(k, v)| format!("{{{k}:{v}}}")),
    ]
    .boxed()
}

/// Any JSON value, for unknown members and `logprobs`.
fn tree() -> BoxedStrategy<String> {
    scalar_or_object()
        .prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((string(), inner), 0..4).prop_map(|ms| {
                    let ms: Vec<String> = ms.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{{}}}", ms.join(","))
                }),
            ]
        })
        .boxed()
}

/// The names of the schema's members, and one the parse ignores.
const NAMES: &[&str] = &[
    "id",
    "object",
    "created",
    "model",
    "choices",
    "usage",
    "index",
    "message",
    "finish_reason",
    "logprobs",
    "role",
    "content",
    "refusal",
    "tool_calls",
    "type",
    "function",
    "name",
    "arguments",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "system_fingerprint",
];

/// A change to an object's members.
#[derive(Debug, Clone)]
enum Edit {
    Drop(usize),
    Repeat(usize),
    /// The key's first letter as a `\u` escape (serde matches the decoded key).
    EscapeKey(usize),
    /// A lone surrogate escape appended to the key (serde cannot decode it).
    LoneSurrogateKey(usize),
    Retype(usize, String),
    Null(usize),
    Swap(usize, usize),
    /// An unknown member, or one of another object, or a repeat of one, spelled oddly.
    Insert(usize, String, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let i = any::<usize>();
    let name = prop_oneof![
        prop::sample::select(NAMES).prop_map(|n| format!("\"{n}\"")),
        string()
    ];
    prop_oneof![
        i.prop_map(Edit::Drop),
        i.prop_map(Edit::Repeat),
        i.prop_map(Edit::EscapeKey),
        i.prop_map(Edit::LoneSurrogateKey),
        (i, scalar_or_object()).prop_map(|(i, v)| Edit::Retype(i, v)),
        i.prop_map(Edit::Null),
        (i, any::<usize>()).prop_map(|(i, j)| Edit::Swap(i, j)),
        (i, name, tree()).prop_map(|(i, k, v)| Edit::Insert(i, k, v)),
    ]
}

/// Usually no edit; now and then one or two.
fn edits() -> BoxedStrategy<Vec<Edit>> {
    prop_oneof![
        24 => Just(Vec::new()),
        1 => prop::collection::vec(edit(), 1..3),
    ]
    .boxed()
}

const SPACES: &[&str] = &["", "", " ", "\n  ", "\t", "\r\n"];

/// An object of `members` (name, value text) with `edits` made, as text.
fn object(
    members: impl Strategy<Value = Vec<(&'static str, String)>> + 'static,
) -> BoxedStrategy<String> {
    (members, edits(), prop::sample::select(SPACES))
        .prop_map(|(members, edits, ws)| {
            let mut ms: Vec<(String, String)> = members
                .into_iter()
                .map(|(k, v)| (format!("\"{k}\""), v))
                .collect();
            for e in edits {
                let n = ms.len();
                let at = |i: usize| i % n.max(1);
                match e {
                    Edit::Insert(i, k, v) => ms.insert(i % (n + 1), (k, v)),
                    _ if n == 0 => {}
                    Edit::Drop(i) => {
                        ms.remove(at(i));
                    }
                    Edit::Repeat(i) => {
                        let m = ms[at(i)].clone();
                        ms.push(m);
                    }
                    Edit::EscapeKey(i) => {
                        let k = &mut ms[at(i)].0;
                        if let Some(c @ (b'a'..=b'z' | b' ')) = k.as_bytes().get(1).copied() {
                            *k = format!("\"\\u{c:04x}{}", &k[2..]);
                        }
                    }
                    Edit::LoneSurrogateKey(i) => {
                        let k = &mut ms[at(i)].0;
                        k.insert_str(k.len() - 1, "\\udc00");
                    }
                    Edit::Retype(i, v) => ms[at(i)].1 = v,
                    Edit::Null(i) => ms[at(i)].1 = "null".into(),
                    Edit::Swap(i, j) => ms.swap(at(i), at(j)),
                }
            }
            let ms: Vec<String> = ms
                .into_iter()
                .map(|(k, v)| format!("{ws}{k}{ws}:{ws}{v}"))
                .collect();
            format!("{{{}{ws}}}", ms.join(","))
        })
        .boxed()
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![40 => string(), 1 => scalar_or_object()].boxed()
}

fn text_or_null() -> BoxedStrategy<String> {
    prop_oneof![20 => string(), 20 => Just("null".to_string()), 1 => scalar_or_object()].boxed()
}

fn function() -> BoxedStrategy<String> {
    object((text(), text()).prop_map(|(n, a)| vec![("name", n), ("arguments", a)])).boxed()
}

fn tool_call() -> BoxedStrategy<String> {
    object(
        (text(), text(), function())
            .prop_map(|(i, t, f)| vec![("id", i), ("type", t), ("function", f)]),
    )
    .boxed()
}

fn array(
    element: impl Strategy<Value = String>,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = String> {
    prop::collection::vec(element, len).prop_map(|v| format!("[{}]", v.join(", ")))
}

fn message() -> BoxedStrategy<String> {
    let tool_calls = prop_oneof![
        2 => Just(None),
        1 => Just(Some("null".to_string())),
        2 => array(tool_call(), 0..3).prop_map(Some),
    ];
    object(
        (text(), text_or_null(), text_or_null(), tool_calls).prop_map(|(r, c, f, t)| {
            let mut ms = vec![("role", r), ("content", c), ("refusal", f)];
            ms.extend(t.map(|t| ("tool_calls", t)));
            ms
        }),
    )
    .boxed()
}

fn choice() -> BoxedStrategy<String> {
    let index = prop_oneof![20 => (0u32..4).prop_map(|n| n.to_string()), 1 => number()];
    let logprobs = prop_oneof![3 => Just("null".to_string()), 1 => tree()];
    object(
        (index, message(), text_or_null(), logprobs).prop_map(|(i, m, f, l)| {
            vec![
                ("index", i),
                ("message", m),
                ("finish_reason", f),
                ("logprobs", l),
            ]
        }),
    )
    .boxed()
}

fn usage_counts() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let count = prop_oneof![20 => (0u64..100_000).prop_map(|n| n.to_string()), 1 => number()];
    (count.clone(), count.clone(), count).prop_map(|(p, c, t)| {
        vec![
            ("prompt_tokens", p),
            ("completion_tokens", c),
            ("total_tokens", t),
        ]
    })
}

fn usage() -> BoxedStrategy<String> {
    // effective_context already there (refused anywhere in usage's text, but for a key
    // spelled with an escape, as before), or a note that is not it.
    let already = (
        prop::sample::select(
            &[
                r#""effective_context""#,
                r#""effective\u005fcontext""#,
                r#""note""#,
            ][..],
        ),
        prop_oneof![number(), Just(r#""effective_context""#.to_string())],
    );
    prop_oneof![
        16 => object(usage_counts()),
        1 => (object(usage_counts()), already)
            .prop_map(|(o, (k, v))| format!("{{{k}:{v},{}", &o[1..])),
        1 => prop::sample::select(&["{}", "{ \n}", "null", "[]", "[1, 2, 3]", "\"usage\"", "5"][..])
            .prop_map(str::to_string),
    ]
    .boxed()
}

fn answer() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        40 => Just(r#""chat.completion""#),
        1 => Just(r#""chat\u002ecompletion""#),
        1 => Just(r#""\u0063hat.completion""#),
        1 => Just(r#""chat.completion.chunk""#),
        1 => Just(r#""chat.completion\ud800""#),
    ]
    .prop_map(str::to_string);
    let created =
        prop_oneof![20 => Just("1700000000".to_string()), 2 => number(), 1 => scalar_or_object()];
    let choices = prop_oneof![40 => array(choice(), 1..3), 1 => array(choice(), 0..1), 1 => scalar_or_object()];
    let extra = prop_oneof![
        3 => Just(None),
        1 => tree().prop_map(|t| Some(("system_fingerprint", t))),
    ];
    let body = object(
        (text(), kind, created, text(), choices, usage(), extra).prop_map(
            |(id, kind, created, model, choices, usage, extra)| {
                let mut ms = vec![
                    ("id", id),
                    ("object", kind),
                    ("created", created),
                    ("model", model),
                    ("choices", choices),
                    ("usage", usage),
                ];
                ms.extend(extra);
                ms
            },
        ),
    );
    let around = prop_oneof![
        20 => prop::sample::select(&["", " ", "\n", " \t\r\n"][..]),
        1 => prop::sample::select(&["x", "{}", ",", "\u{c}"][..]),
    ];
    (prop::sample::select(SPACES), body, around)
        .prop_map(|(before, body, after)| format!("{before}{body}{after}"))
}

/// An answer with one to three bytes changed, inserted or removed, or cut short.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    prop_common::mutated(
        answer().prop_map(String::into_bytes),
        b"{}[]\",:\\u0-.eE \x01\x80\xffn",
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4096), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn answers(text in answer()) {
        agree(text.as_bytes())?;
    }

    #[test]
    fn mutated_answers(bytes in mutated()) {
        agree(&bytes)?;
    }
}

/// The generator must reach both sides often enough for the agreement to mean something.
#[test]
fn answers_are_often_accepted_and_often_not() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = answer();
    let n = 2000;
    let accepted = (0..n)
        .filter(|_| {
            let text = strategy.new_tree(&mut runner).unwrap().current();
            scan(text.as_bytes()).is_some()
        })
        .count();
    assert!(
        (n / 10..n * 9 / 10).contains(&accepted),
        "{accepted} of {n} accepted"
    );
}
