//! A complete OpenAI-format answer kept as the upstream's own bytes.
//!
//! Parsing a `chat.completion` into `ChatResponse` (whose `#[serde(flatten)]` extras go
//! through serde's buffered content) and writing it back cost ~20k instructions per request
//! (callgrind, issue 13), to change one thing: add `usage.effective_context`. When the
//! upstream's answer already has every field OpenAI's schema requires and its own usage, a
//! Chat Completions client gets it byte for byte with `"effective_context":N` spliced in as
//! the first member of `usage`. Anything else takes the typed path, which fills the gaps.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::ProviderError;
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
        let head: Head = serde_json::from_slice(&body).ok()?;
        if head.object != "chat.completion" || head.choices.is_empty() {
            return None;
        }
        let raw = head.usage?.get();
        // Another gateway's answer may already say effective_context: ours replaces it, and
        // a second key in one object is not something to send. The typed path rewrites it.
        if raw.contains("effective_context") {
            return None;
        }
        let counts: UsageCounts = serde_json::from_str(raw).ok()?;
        // The raw value is a slice of `body`: its offset is where the object starts.
        let usage_at = raw.as_ptr() as usize - body.as_ptr() as usize;
        let usage_empty = raw[1..].trim_start().starts_with('}');
        let usage = Usage {
            prompt_tokens: counts.prompt_tokens,
            completion_tokens: counts.completion_tokens,
            total_tokens: counts.total_tokens,
            ..Usage::default()
        };
        Some(Verbatim {
            body,
            usage_at,
            usage_empty,
            usage,
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

/// What the schema requires of a `chat.completion`, checked without keeping anything but
/// the usage: a missing required field fails the parse (no `default`), so the answer takes
/// the typed path.
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

/// A field that must be present, though it may be null (serde would otherwise take a
/// missing `Option` as `None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
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
}
