//! Property tests of the stream chunk scanner (`providers::json_scan`) against serde_json:
//! on generated JSON (chunk-shaped and arbitrary trees, escaped every way, duplicate keys),
//! on that JSON mutated, on JSON-like token soup and on arbitrary bytes, the scanner calls
//! valid exactly what serde_json parses, and on valid text reports what serde_json's own
//! reading of the same text says (object, non-null `error`/`usage`/`finish_reason`, types).
//! serde_json refuses lone surrogate escapes, numbers beyond f64 and nesting of 128, which
//! RFC 8259 allows: there the scanner may say valid (reporting a lone surrogate as such).
//! The stream scanner (which reads only the strings that changed since a chunk it scanned
//! in full) says what the scanner says of every chunk of a stream of chunk variants.

mod prop_common;

use std::collections::HashSet;
use std::fmt;

use aisbf::providers::json_scan::{scan, scan_head, Facts, StreamScanner, MAX_DEPTH};
use prop_common::cases;
use proptest::prelude::*;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// serde_json's reading of a JSON value, as much as the facts need; object members keep
/// their order and duplicates, and whether the key was spelled with an escape.
#[derive(Debug)]
enum Node {
    Null,
    /// An integer of at most 18 digits (what the scanner accepts for `created`).
    Int,
    Str,
    Other,
    Arr(Vec<Node>),
    Obj(Vec<(String, bool, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Other)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(if v < 10u64.pow(18) {
            Node::Int
        } else {
            Node::Other
        })
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(if v > -10i64.pow(18) {
            Node::Int
        } else {
            Node::Other
        })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Str)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut v = Vec::new();
        while let Some(n) = seq.next_element()? {
            v.push(n);
        }
        Ok(Node::Arr(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut v = Vec::new();
        while let Some(Key(k, escaped)) = map.next_key()? {
            v.push((k, escaped, map.next_value()?));
        }
        Ok(Node::Obj(v))
    }
}

/// A key, and whether serde_json had to unescape it (it borrows it from the input when not).
struct Key(String, bool);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key, E> {
                Ok(Key(s.to_string(), false))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key, E> {
                Ok(Key(s.to_string(), true))
            }
        }
        d.deserialize_str(V)
    }
}

type Check = fn(&Node) -> bool;

/// The members of an object the translator reads: none twice, none escaped, each typed.
fn members(n: &Node, known: &[(&str, Check)]) -> bool {
    let Node::Obj(entries) = n else { return false };
    let mut seen = HashSet::new();
    entries.iter().all(|(k, escaped, v)| {
        !escaped
            && match known.iter().find(|(name, _)| name == k) {
                Some((name, check)) => seen.insert(*name) && check(v),
                None => true,
            }
    })
}

fn anything(_: &Node) -> bool {
    true
}
fn text(n: &Node) -> bool {
    matches!(n, Node::Null | Node::Str)
}
fn int(n: &Node) -> bool {
    matches!(n, Node::Null | Node::Int)
}
fn choices(n: &Node) -> bool {
    matches!(n, Node::Arr(cs) if cs.iter().all(|c| members(c, &[("delta", delta), ("finish_reason", text)])))
}
fn delta(n: &Node) -> bool {
    matches!(n, Node::Null)
        || members(
            n,
            &[
                ("content", text),
                ("reasoning_content", text),
                ("tool_calls", tool_calls),
            ],
        )
}
fn tool_calls(n: &Node) -> bool {
    match n {
        Node::Null => true,
        Node::Arr(ts) => ts.iter().all(|t| members(t, &[("function", function)])),
        _ => false,
    }
}
fn function(n: &Node) -> bool {
    matches!(n, Node::Null) || members(n, &[("arguments", text)])
}

/// The facts as serde_json's reading gives them.
fn expected(n: &Node) -> Facts {
    let mut f = Facts::default();
    let Node::Obj(top) = n else { return f };
    f.object = true;
    f.typed = members(
        n,
        &[
            ("id", text),
            ("model", text),
            ("created", int),
            ("choices", choices),
            ("usage", anything),
            ("error", anything),
        ],
    );
    let present = |v: &Node| !matches!(v, Node::Null);
    for (k, escaped, v) in top.iter().filter(|m| !m.1) {
        let _ = escaped;
        match (k.as_str(), v) {
            ("usage", v) => f.usage |= present(v),
            ("error", v) => f.error |= present(v),
            ("choices", Node::Arr(cs)) => {
                for c in cs {
                    if let Node::Obj(ms) = c {
                        f.choice = true;
                        f.finish |= ms
                            .iter()
                            .any(|(k, esc, v)| !esc && k == "finish_reason" && present(v));
                    }
                }
            }
            _ => {}
        }
    }
    f
}

/// What the translator's full parse reads of a chunk's head, as the scan's `Head` has it.
#[derive(serde::Deserialize, Debug, PartialEq)]
struct HeadOracle {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    created: Option<i64>,
}

/// The head of a typed chunk against serde_json's reading of it.
fn head_agrees(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (_, head) = scan_head(bytes).expect("valid");
    let oracle: HeadOracle = serde_json::from_slice(bytes).expect("a typed chunk's head parses");
    let text = |s: Option<aisbf::providers::json_walk::Str>| {
        s.map(|s| serde_json::from_slice::<String>(&bytes[s.start - 1..=s.end]).unwrap())
    };
    prop_assert_eq!(
        HeadOracle {
            id: text(head.id),
            model: text(head.model),
            created: Some(head.created),
        },
        HeadOracle {
            created: Some(oracle.created.unwrap_or(0)),
            ..oracle
        }
    );
    Ok(())
}

/// The scanner against serde_json on any bytes.
fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    let got = scan(bytes);
    match serde_json::from_slice::<Node>(bytes) {
        Ok(node) => {
            let f =
                got.ok_or_else(|| TestCaseError::fail("serde_json parses it, the scanner not"))?;
            prop_assert_eq!(f, expected(&node));
            if f.object && f.typed && !f.lone_surrogate {
                head_agrees(bytes)?;
            }
        }
        Err(e) => {
            let msg = e.to_string();
            if msg.starts_with("lone leading surrogate")
                || msg.starts_with("unexpected end of hex escape")
            {
                prop_assert!(got.is_none_or(|f| f.lone_surrogate), "{}: {:?}", msg, got);
            } else if !msg.starts_with("number out of range")
                && !msg.starts_with("recursion limit exceeded")
            {
                prop_assert_eq!(got, None, "serde_json: {}", msg);
            }
            // Against serde_json with a valid Value too (the oracle's visitor is its own).
            prop_assert!(serde_json::from_slice::<serde_json::Value>(bytes).is_err());
        }
    }
    Ok(())
}

/// A JSON value as text is written: keys may repeat, strings may be escaped.
#[derive(Debug, Clone)]
enum J {
    Lit(&'static str),
    Num(String),
    /// Contents of a string literal, already escaped.
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

fn render(j: &J, ws: &str, out: &mut String) {
    match j {
        J::Lit(l) => out.push_str(l),
        J::Num(n) => out.push_str(n),
        J::Str(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        J::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                render(item, ws, out);
            }
            out.push_str(ws);
            out.push(']');
        }
        J::Obj(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                out.push('"');
                out.push_str(k);
                out.push_str("\":");
                out.push_str(ws);
                render(v, ws, out);
            }
            out.push_str(ws);
            out.push('}');
        }
    }
}

/// `text` as a string literal's contents: as serde_json writes it, with every non-ASCII
/// character as `\u` escapes, or with a lone surrogate escape before or after it.
fn escaped(text: &str, how: u8) -> String {
    let json = serde_json::to_string(text).unwrap();
    let json = &json[1..json.len() - 1];
    let all_escaped = || -> String {
        json.chars()
            .map(|c| {
                let mut units = [0u16; 2];
                if c.is_ascii() {
                    c.to_string()
                } else {
                    c.encode_utf16(&mut units)
                        .iter()
                        .map(|u| format!("\\u{u:04X}"))
                        .collect()
                }
            })
            .collect()
    };
    match how {
        0 | 1 => all_escaped(),
        2 => format!("{json}\\udc00"),
        3 => format!("\\ud83d{json}"),
        4 => format!("\\ud83d{}", all_escaped()),
        5 => format!("{}\\ud83d", all_escaped()),
        _ => json.to_string(),
    }
}

fn string() -> impl Strategy<Value = String> {
    (
        prop_oneof![".{0,8}", "[a\"\\\\/\u{0}-\u{1f}\u{7f}\u{e9}\u{1F600}]{0,6}"],
        0u8..24,
    )
        .prop_map(|(t, how)| escaped(&t, how))
}

const NAMES: &[&str] = &[
    "id",
    "model",
    "created",
    "choices",
    "usage",
    "error",
    "delta",
    "finish_reason",
    "content",
    "reasoning_content",
    "tool_calls",
    "function",
    "arguments",
    "index",
    "x",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(NAMES).prop_map(str::to_string),
        // A known name spelled with an escape (serde_json matches it all the same).
        1 => prop::sample::select(NAMES).prop_map(|n| format!("\\u{:04x}{}", n.as_bytes()[0], &n[1..])),
        1 => string(),
    ]
}

fn number() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?"
}

fn leaf() -> impl Strategy<Value = J> {
    prop_oneof![
        Just(J::Lit("null")),
        Just(J::Lit("true")),
        Just(J::Lit("false")),
        number().prop_map(J::Num),
        string().prop_map(J::Str),
    ]
}

fn tree() -> impl Strategy<Value = J> {
    leaf().prop_recursive(6, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
            prop::collection::vec((key(), inner), 0..5).prop_map(J::Obj),
        ]
    })
}

/// Mostly a well-typed chunk, with now and then a member of another type or a repeat.
fn chunk() -> impl Strategy<Value = J> {
    let text = prop_oneof![6 => string().prop_map(J::Str), 1 => Just(J::Lit("null")), 1 => leaf()];
    let function = prop::collection::vec(("arguments|name|x", text.clone()), 0..3).prop_map(J::Obj);
    let tool = prop::collection::vec(
        ("function|index|id", prop_oneof![4 => function, 1 => leaf()]),
        0..3,
    )
    .prop_map(J::Obj);
    let delta = prop::collection::vec(
        (
            "content|reasoning_content|tool_calls|role",
            prop_oneof![
                3 => text.clone(),
                1 => prop::collection::vec(prop_oneof![4 => tool, 1 => leaf()], 0..3).prop_map(J::Arr),
            ],
        ),
        0..4,
    )
    .prop_map(J::Obj);
    let finish =
        prop_oneof![3 => Just(J::Lit("null")), 1 => string().prop_map(J::Str), 1 => leaf()];
    let choice = prop::collection::vec(
        (
            "delta|finish_reason|index|logprobs",
            prop_oneof![2 => delta, 1 => finish],
        ),
        0..4,
    )
    .prop_map(J::Obj);
    let choices = prop::collection::vec(prop_oneof![6 => choice, 1 => leaf(), 1 => tree()], 0..3)
        .prop_map(J::Arr);
    let member = prop_oneof![
        ("id|model", text),
        (
            "created",
            prop_oneof![
                number().prop_map(J::Num),
                "-?[1-9][0-9]{16,19}".prop_map(J::Num),
                leaf()
            ]
        ),
        ("choices", prop_oneof![6 => choices, 1 => leaf()]),
        (
            "usage|error",
            prop_oneof![2 => Just(J::Lit("null")), 1 => tree()]
        ),
        (key(), tree()),
    ];
    prop::collection::vec(member, 0..7).prop_map(J::Obj)
}

fn rendered(j: impl Strategy<Value = J>) -> impl Strategy<Value = Vec<u8>> {
    (j, prop::sample::select(&["", " ", "\n\t", "\r\n  "][..])).prop_map(|(j, ws)| {
        let mut s = String::new();
        render(&j, ws, &mut s);
        s.into_bytes()
    })
}

/// Valid JSON with one to three bytes changed, inserted or removed, or cut short.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let json = prop_oneof![rendered(chunk()), rendered(tree())];
    prop_common::mutated(json, b"{}[]\",:\\u0-.eE \x01\x80\xff")
}

/// JSON-like tokens in any order.
fn soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(
        &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\n",
            "\"a\"",
            "\"\\u00e9\"",
            "\"\\ud800\"",
            "\"\\\"",
            "\"\\x\"",
            "1",
            "-0",
            "01",
            "1.",
            "1.5",
            "1e5",
            "-",
            "true",
            "nul",
            "null",
            "\"usage\"",
            "\"error\"",
            "\"choices\"",
            "\"finish_reason\"",
            "\"\u{e9}\"",
        ][..],
    );
    prop::collection::vec(token, 0..16).prop_map(|t| t.concat().into_bytes())
}

/// `j` with its string values (not keys) replaced in turn where `new` gives a string.
fn vary(j: &J, new: &mut impl Iterator<Item = Option<String>>) -> J {
    match j {
        J::Str(s) => J::Str(new.next().flatten().unwrap_or_else(|| s.clone())),
        J::Arr(items) => J::Arr(items.iter().map(|i| vary(i, new)).collect()),
        J::Obj(ms) => J::Obj(ms.iter().map(|(k, v)| (k.clone(), vary(v, new))).collect()),
        other => other.clone(),
    }
}

/// A chunk, then variants of it: some string values changed, now and then a byte too.
fn stream() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let variant = (
        prop::collection::vec(proptest::option::of(string()), 1..8),
        0u8..6,
        any::<usize>(),
        any::<u8>(),
    );
    (
        prop_oneof![3 => chunk(), 1 => tree()],
        prop::collection::vec(variant, 1..8),
        prop::sample::select(&["", " ", "\n"][..]),
    )
        .prop_map(|(j, variants, ws)| {
            let text = |j: &J| {
                let mut s = String::new();
                render(j, ws, &mut s);
                s.into_bytes()
            };
            let mut out = vec![text(&j)];
            for (new, how, at, byte) in variants {
                let mut b = text(&vary(&j, &mut new.into_iter().cycle()));
                if how == 0 && !b.is_empty() {
                    let at = at % b.len();
                    b[at] = byte;
                }
                out.push(b);
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1024), ..ProptestConfig::default() })]

    /// Generated JSON is valid; the facts are serde_json's, and a lone surrogate (which
    /// serde_json refuses) is reported as one.
    #[test]
    fn generated_json(json in prop_oneof![rendered(chunk()), rendered(tree())]) {
        let f = scan(&json);
        prop_assert!(f.is_some(), "{}", String::from_utf8_lossy(&json));
        let text = String::from_utf8(json.clone()).unwrap();
        prop_assert_eq!(
            f.unwrap().lone_surrogate,
            text.contains("\\udc00") || text.contains("\\ud83d"),
        );
        agree(&json)?;
    }

    #[test]
    fn mutated_json(bytes in mutated()) {
        agree(&bytes)?;
    }

    #[test]
    fn json_like_soup(bytes in soup()) {
        agree(&bytes)?;
    }

    #[test]
    fn stream_scanner_says_what_scan_says(chunks in stream()) {
        let mut s = StreamScanner::default();
        for c in &chunks {
            prop_assert_eq!(s.scan(c), scan(c), "{}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
        agree(&bytes)?;
    }
}

#[test]
fn depth_limits() {
    let nested = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
    // serde_json's limit stops one level short of the scanner's.
    assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_DEPTH - 1)).is_ok());
    assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_DEPTH)).is_err());
    assert!(scan(nested(MAX_DEPTH).as_bytes()).is_some());
    assert!(scan(nested(MAX_DEPTH + 1).as_bytes()).is_none());
}
