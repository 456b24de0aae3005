//! Hand-written `Deserialize` for the request types every chat request is parsed into.
//!
//! serde's derive handles `#[serde(flatten)] extra` and `#[serde(untagged)]` by buffering each
//! value into an intermediate tree, then deserializing it a second time: for a chat request
//! that is every message, twice (callgrind: the request parse was ~7 % of a request's
//! instructions, and it grows with the conversation). These visitors read each member once:
//! the named fields into their types, everything else into `extra` as sent. Behaviour is the
//! derive's: same required fields, `null` as absent for optional ones, duplicate fields
//! refused. `tests/prop_chat_request.rs` checks the round trip.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::openai::{ChatRequest, Content, ContentPart, Extra, Message, ToolCall};

/// Sets `slot` from the map's next value; a second occurrence of the key is an error.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// As `once` for an optional field: `null` reads as absent (but still counts as present for
/// the duplicate check, as the derive does).
fn once_opt<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<Option<T>>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value::<Option<T>>()?);
    Ok(())
}

impl<'de> Deserialize<'de> for ChatRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChatRequest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a chat completion request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatRequest, A::Error> {
                let (mut model, mut messages, mut stream) = (None, None, None);
                let mut extra = Extra::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "model" => once(&mut map, &mut model, "model")?,
                        "messages" => once(&mut map, &mut messages, "messages")?,
                        "stream" => once_opt(&mut map, &mut stream, "stream")?,
                        _ => {
                            let v: Value = map.next_value()?;
                            extra.insert(key, v);
                        }
                    }
                }
                Ok(ChatRequest {
                    model: model.ok_or_else(|| de::Error::missing_field("model"))?,
                    messages: messages.ok_or_else(|| de::Error::missing_field("messages"))?,
                    stream: stream.flatten(),
                    extra,
                    anthropic_beta: None,
                    native: None,
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Message;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
                let mut role = None;
                let mut content: Option<Option<Content>> = None;
                let mut name = None;
                let mut tool_calls: Option<Option<Vec<ToolCall>>> = None;
                let mut tool_call_id = None;
                let mut reasoning_content = None;
                let mut extra = Extra::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "role" => once(&mut map, &mut role, "role")?,
                        "content" => once_opt(&mut map, &mut content, "content")?,
                        "name" => once_opt(&mut map, &mut name, "name")?,
                        "tool_calls" => once_opt(&mut map, &mut tool_calls, "tool_calls")?,
                        "tool_call_id" => once_opt(&mut map, &mut tool_call_id, "tool_call_id")?,
                        "reasoning_content" => {
                            once_opt(&mut map, &mut reasoning_content, "reasoning_content")?
                        }
                        _ => {
                            let v: Value = map.next_value()?;
                            extra.insert(key, v);
                        }
                    }
                }
                Ok(Message {
                    role: role.ok_or_else(|| de::Error::missing_field("role"))?,
                    content: content.flatten(),
                    name: name.flatten(),
                    tool_calls: tool_calls.flatten(),
                    tool_call_id: tool_call_id.flatten(),
                    reasoning_content: reasoning_content.flatten(),
                    extra,
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Content, E> {
                Ok(Content::Text(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Content, E> {
                Ok(Content::Text(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(p) = seq.next_element::<ContentPart>()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_typed_or_kept_and_nulls_read_as_absent() {
        let m: Message = serde_json::from_value(json!({"role": "user", "content": "hi",
            "name": null, "x": [1], "tool_calls": null}))
        .unwrap();
        assert_eq!(m.role, "user");
        assert_eq!(m.content, Some(Content::Text("hi".into())));
        assert_eq!((m.name, m.tool_calls), (None, None));
        assert_eq!(m.extra["x"], json!([1]));
        let parts: Message = serde_json::from_value(json!({"role": "user",
            "content": [{"type": "text", "text": "a"}]}))
        .unwrap();
        assert!(matches!(parts.content, Some(Content::Parts(ref p)) if p[0].kind == "text"));
        let r: ChatRequest = serde_json::from_value(json!({"model": "m", "stream": null,
            "messages": [{"role": "user", "content": null}], "temperature": 0.5}))
        .unwrap();
        assert_eq!(
            (r.stream, r.extra["temperature"].clone()),
            (None, json!(0.5))
        );
    }

    #[test]
    fn what_the_derive_refused_is_still_refused() {
        let err = |v: Value| {
            serde_json::from_value::<ChatRequest>(v)
                .unwrap_err()
                .to_string()
        };
        assert!(err(json!({"messages": []})).contains("missing field `model`"));
        assert!(err(json!({"model": "m"})).contains("missing field `messages`"));
        assert!(err(json!({"model": "m", "messages": [{"content": "x"}]}))
            .contains("missing field `role`"));
        assert!(
            err(json!({"model": "m", "messages": [{"role": "user", "content": 5}]}))
                .contains("a string or an array of content parts")
        );
        assert!(err(json!({"model": 5, "messages": []})).contains("invalid type"));
        assert!(
            err(json!({"model": "m", "messages": [], "stream": "yes"})).contains("invalid type")
        );
        let dup = serde_json::from_str::<ChatRequest>(r#"{"model":"a","model":"b","messages":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(dup.contains("duplicate field `model`"), "{dup}");
        assert!(serde_json::from_str::<ChatRequest>("[]").is_err());
    }
}
