//! A complete OpenAI-format answer kept as the upstream's own bytes.
//!
//! Parsing a `chat.completion` into `ChatResponse` (whose `#[serde(flatten)]` extras go
//! through serde's buffered content) and writing it back cost ~20k instructions per request
//! (callgrind, issue 13), to change one thing: add `usage.effective_context`. When the
//! upstream's answer already has every field OpenAI's schema requires and its own usage, a
//! Chat Completions client gets it byte for byte with `"effective_context":N` spliced in as
//! the first member of `usage`. Anything else takes the typed path, which fills the gaps.

use bytes::{BufMut, Bytes, BytesMut};

use super::{completion_scan, ProviderError};
use crate::api::openai::{ChatResponse, Usage};

/// A schema-complete answer with its own usage, as the upstream sent it.
#[derive(Debug, Clone)]
pub struct Verbatim {
    body: Bytes,
    /// Where the `usage` object's `{` is in `body`.
    usage_at: usize,
    /// Whether `usage` is `{}` (the splice then needs no comma).
    usage_empty: bool,
    pub usage: Usage,
}

impl Verbatim {
    /// `body` as a verbatim answer, or `None` when it lacks a field the schema requires, has
    /// no usage, or is not a `chat.completion` at all (the typed path then decides).
    pub fn check(body: Bytes) -> Option<Verbatim> {
        let found = completion_scan::scan(&body)?;
        Some(Verbatim {
            body,
            usage_at: found.usage_at,
            usage_empty: found.usage_empty,
            usage: Usage {
                prompt_tokens: found.prompt_tokens,
                completion_tokens: found.completion_tokens,
                total_tokens: found.total_tokens,
                ..Usage::default()
            },
        })
    }

    /// The answer for the client: the upstream's bytes with `effective_context` first in
    /// `usage`.
    pub fn with_effective_context(&self, effective_context: u64) -> Bytes {
        let mut out = BytesMut::with_capacity(self.body.len() + 32);
        let (before, after) = self.body.split_at(self.usage_at + 1);
        out.put_slice(before);
        out.put_slice(b"\"effective_context\":");
        out.put_slice(itoa::Buffer::new().format(effective_context).as_bytes());
        if !self.usage_empty {
            out.put_u8(b',');
        }
        out.put_slice(after);
        out.freeze()
    }

    /// The typed answer, for callers that translate it (Messages, Responses, internal calls).
    pub fn parse(&self) -> Result<ChatResponse, ProviderError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ProviderError::Protocol(format!("chat completion: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn answer() -> Value {
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi",
                "refusal": null}, "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            "system_fingerprint": "fp"})
    }

    fn check(v: &Value) -> Option<Verbatim> {
        Verbatim::check(Bytes::from(serde_json::to_vec(v).unwrap()))
    }

    #[test]
    fn a_complete_answer_goes_back_byte_for_byte_with_effective_context() {
        let raw = br#"{"id":"c","object":"chat.completion","created":5,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"a\"b","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage": {"prompt_tokens":3,"completion_tokens":1,"total_tokens":4},"x":1}"#;
        let v = Verbatim::check(Bytes::from_static(raw)).expect("verbatim");
        assert_eq!((v.usage.prompt_tokens, v.usage.total_tokens), (3, 4));
        let out = v.with_effective_context(17);
        let expected = String::from_utf8(raw.to_vec())
            .unwrap()
            .replace(r#""usage": {"#, r#""usage": {"effective_context":17,"#);
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["usage"]["effective_context"], 17);
        assert_eq!(
            v.parse().unwrap().choices[0].message.content.as_deref(),
            Some("a\"b")
        );
    }

    #[test]
    fn empty_usage_gets_no_dangling_comma() {
        let mut a = answer();
        a["usage"] = json!({});
        let out = check(&a).unwrap().with_effective_context(2);
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["usage"], json!({"effective_context": 2}));
    }

    #[test]
    fn anything_incomplete_takes_the_typed_path() {
        assert!(check(&answer()).is_some());
        let without = |path: &[&str]| {
            let mut a = answer();
            let mut v = &mut a;
            for p in &path[..path.len() - 1] {
                v = if let Ok(i) = p.parse::<usize>() {
                    &mut v[i]
                } else {
                    &mut v[*p]
                };
            }
            v.as_object_mut().unwrap().remove(path[path.len() - 1]);
            check(&a)
        };
        for path in [
            &["usage"][..],
            &["id"],
            &["created"],
            &["model"],
            &["object"],
            &["choices", "0", "logprobs"],
            &["choices", "0", "finish_reason"],
            &["choices", "0", "index"],
            &["choices", "0", "message", "refusal"],
            &["choices", "0", "message", "content"],
            &["choices", "0", "message", "role"],
        ] {
            assert!(without(path).is_none(), "{path:?}");
        }
        let mut a = answer();
        a["object"] = json!("chat.completion.chunk");
        assert!(check(&a).is_none());
        a = answer();
        a["choices"] = json!([]);
        assert!(check(&a).is_none());
        a = answer();
        a["usage"]["effective_context"] = json!(9);
        assert!(check(&a).is_none());
        a = answer();
        a["choices"][0]["message"]["tool_calls"] = json!([{"id": "call_1", "type": "function"}]);
        assert!(check(&a).is_none());
        a["choices"][0]["message"]["tool_calls"] = json!([{"id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": "{}"}}]);
        assert!(check(&a).is_some());
        assert!(Verbatim::check(Bytes::from_static(b"{\"error\":{}}")).is_none());
        assert!(Verbatim::check(Bytes::from_static(b"not json")).is_none());
    }

    const RAW: &str = r#"{"id":"c","object":"chat.completion","created":5,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

    /// `RAW` with `from` replaced by `to`, checked.
    fn with(from: &str, to: &str) -> Option<Verbatim> {
        assert!(RAW.contains(from), "{from}");
        Verbatim::check(Bytes::from(RAW.replacen(from, to, 1)))
    }

    #[test]
    fn keys_and_kind_match_as_serde_decodes_them() {
        assert!(with(r#""id""#, r#""\u0069d""#).is_some());
        assert!(with(r#""content""#, r#""c\u006fntent""#).is_some());
        assert!(with("chat.completion", r"chat\u002ecompletion").is_some());
        assert!(with("chat.completion", r"chat.c\u006fmpletion.chunk").is_none());
        // The usage spelled with an escape is still found, where it is.
        let v = with(r#""usage""#, r#""us\u0061ge""#).expect("verbatim");
        let out = v.with_effective_context(7);
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["usage"]["effective_context"], 7);
        assert_eq!(parsed["usage"]["total_tokens"], 4);
    }

    #[test]
    fn a_known_member_twice_is_refused_an_unknown_one_is_not() {
        assert!(with(r#""model":"m""#, r#""model":"m","model":"m""#).is_none());
        assert!(with(r#""index":0"#, r#""index":0,"index":0"#).is_none());
        assert!(with(r#""refusal":null"#, r#""refusal":null,"refusal":null"#).is_none());
        assert!(with(
            r#""total_tokens":4"#,
            r#""total_tokens":4,"total_tokens":4"#
        )
        .is_none());
        assert!(with(r#""usage""#, r#""x":1,"x":2,"usage""#).is_some());
        // An escaped spelling of a member already there is that member again.
        assert!(with(r#""model":"m""#, r#""model":"m","m\u006fdel":"m""#).is_none());
    }

    #[test]
    fn lone_surrogates_only_where_serde_decodes() {
        // Strings serde decodes, and every key of the objects it reads into structs.
        assert!(with(r#""hi""#, r#""\ud800""#).is_none());
        assert!(with(r#""role""#, r#""role\udc00""#).is_none());
        assert!(with(r#""prompt_tokens""#, r#""x\ud800":1,"prompt_tokens""#).is_none());
        // Values it skips (unknown members, logprobs, usage's other members).
        assert!(with(r#""model""#, r#""x":"\ud800","model""#).is_some());
        assert!(with(r#""logprobs":null"#, r#""logprobs":{"\ud800":"\udc00"}"#).is_some());
        assert!(with(r#""prompt_tokens""#, r#""x":"\ud800","prompt_tokens""#).is_some());
        // A pair is a character.
        assert!(with(r#""hi""#, r#""\ud83d\ude00""#).is_some());
    }

    #[test]
    fn integers_within_their_types_only() {
        for (created, ok) in [
            ("-9223372036854775808", true),
            ("9223372036854775807", true),
            ("9223372036854775808", false),
            ("-9223372036854775809", false),
            ("-0", false),
            ("5.0", false),
            ("5e0", false),
            ("\"5\"", false),
            ("null", false),
        ] {
            assert_eq!(
                with(r#""created":5"#, &format!(r#""created":{created}"#)).is_some(),
                ok,
                "{created}"
            );
        }
        for (index, ok) in [
            ("4294967295", true),
            ("4294967296", false),
            ("-1", false),
            ("-0", false),
        ] {
            assert_eq!(
                with(r#""index":0"#, &format!(r#""index":{index}"#)).is_some(),
                ok,
                "{index}"
            );
        }
        let v = with(
            r#""prompt_tokens":3"#,
            r#""prompt_tokens":18446744073709551615"#,
        )
        .unwrap();
        assert_eq!(v.usage.prompt_tokens, u64::MAX);
        for count in ["18446744073709551616", "-1", "-0", "1.5", "null"] {
            assert!(
                with(
                    r#""prompt_tokens":3"#,
                    &format!(r#""prompt_tokens":{count}"#)
                )
                .is_none(),
                "{count}"
            );
        }
        // Counts serde defaults when missing.
        let v = with(r#""prompt_tokens":3,"#, "").unwrap();
        assert_eq!((v.usage.prompt_tokens, v.usage.total_tokens), (0, 4));
    }

    #[test]
    fn present_may_be_null_but_not_missing_and_text_not_null() {
        assert!(with(r#""hi""#, "null").is_some());
        assert!(with(r#""stop""#, "null").is_some());
        assert!(with(r#""logprobs":null"#, r#""logprobs":[1,{"a":"b"}]"#).is_some());
        assert!(with(r#""assistant""#, "null").is_none());
        assert!(with(r#""model":"m""#, r#""model":null"#).is_none());
        assert!(with(r#""role""#, r#""tool_calls":null,"role""#).is_some());
        assert!(with(r#""usage":{"#, r#""usage":null,"x":{"#).is_none());
    }

    #[test]
    fn one_json_text_and_nothing_after_but_whitespace() {
        assert!(Verbatim::check(Bytes::from(format!(" \n{RAW}\r\n\t "))).is_some());
        for after in ["x", "{}", ",", "\u{c}"] {
            assert!(
                Verbatim::check(Bytes::from(format!("{RAW}{after}"))).is_none(),
                "{after}"
            );
        }
        assert!(with(r#""hi""#, "\"h\u{1}\"").is_none());
        assert!(with(r#""hi""#, "\"h\\x\"").is_none());
    }

    #[test]
    fn stricter_than_serde_where_it_does_not_matter() {
        // serde's derive reads a struct from an array of its fields: a usage of `[]` passed
        // and was spliced into `["effective_context":N]`, which is not JSON.
        assert!(with(
            r#"{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}"#,
            "[]"
        )
        .is_none());
        assert!(with(
            r#"{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}"#,
            "[3,1,4]"
        )
        .is_none());
        // Invalid UTF-8 where serde only skipped.
        let mut raw = RAW
            .replacen(r#""model""#, r#""x":"\xff","model""#, 1)
            .into_bytes();
        let at = raw.windows(4).position(|w| w == b"\\xff").unwrap();
        raw.splice(at..at + 4, [0xff]);
        assert!(Verbatim::check(Bytes::from(raw)).is_none());
    }
}
