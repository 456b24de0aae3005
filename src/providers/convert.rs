//! The request/response half of the translation kernel: conversions every non-OpenAI
//! provider needs, written once (data URLs, tool arguments both ways, same-role turn
//! merging, tool-name lookup, tool-call ids, the canonical completion).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::api::openai::{
    unix_now, ChatResponse, Choice, Extra, Message, ResponseMessage, ToolCall, Usage,
};

/// A base64 `data:MEDIA;base64,DATA` URL, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataUrl<'a> {
    /// Empty when the URL names none (`data:;base64,...`).
    pub media_type: &'a str,
    pub data: &'a str,
}

/// `None` for anything that is not a base64 data URL (plain-text data URLs included:
/// no provider takes them as images).
pub fn data_url(url: &str) -> Option<DataUrl<'_>> {
    let (head, data) = url.strip_prefix("data:")?.split_once(',')?;
    let media_type = head.strip_suffix(";base64")?;
    Some(DataUrl { media_type, data })
}

/// OpenAI's tool-call `arguments` (a JSON *string*) as the JSON *object* Anthropic, Gemini
/// and Ollama require.
///
/// The one fallback, for every provider: empty arguments are `{}`; arguments that are not a
/// JSON object (invalid JSON, a bare string or list, as weak models emit) are kept under
/// `{"arguments": RAW}` so the upstream model still sees what it wrote instead of nothing.
pub fn arguments_object(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            tracing::debug!(
                "tool call arguments are not a JSON object: sent as {{\"arguments\": raw}}"
            );
            json!({ "arguments": arguments })
        }
    }
}

/// A native arguments object as OpenAI's JSON string. Missing is `{}`; a string (some
/// Ollama-compatible servers send one) is taken as the JSON text it already is.
pub fn arguments_string(arguments: &Value) -> String {
    match arguments {
        Value::Null => "{}".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Appends `items` as a turn of `role`, merged into the previous turn when it has the same
/// role: Anthropic and Gemini reject two consecutive turns of one role.
pub fn push_turn<R: PartialEq, T>(turns: &mut Vec<(R, Vec<T>)>, role: R, items: Vec<T>) {
    match turns.last_mut() {
        Some((last, acc)) if *last == role => acc.extend(items),
        _ => turns.push((role, items)),
    }
}

/// Tool results name their call by id; Gemini and Ollama want the function's name. Fed the
/// messages in order, it answers for each result with the newest earlier call of that id
/// (ids may repeat across turns), or the result's own `name`.
#[derive(Default)]
pub struct ToolNames<'a> {
    by_id: HashMap<&'a str, &'a str>,
}

impl<'a> ToolNames<'a> {
    /// Records the calls of `m`; call it for every message, in order.
    pub fn observe(&mut self, m: &'a Message) {
        for c in m.tool_calls.iter().flatten() {
            if !c.id.is_empty() {
                self.by_id.insert(&c.id, &c.function.name);
            }
        }
    }

    /// The function a tool result answers.
    pub fn name_for(&self, result: &'a Message) -> Option<&'a str> {
        result
            .tool_call_id
            .as_deref()
            .and_then(|id| self.by_id.get(id).copied())
            .or(result.name.as_deref())
    }
}

/// A tool-call id for an upstream that gives none: `call_` and 24 random characters, so ids
/// never repeat within a conversation and stay under OpenAI's 40-character limit.
pub fn new_call_id() -> String {
    format!("call_{}", random_token(24))
}

/// A completion id for an upstream that gives none.
pub fn new_completion_id() -> String {
    format!("chatcmpl-{}", random_token(24))
}

fn random_token(len: usize) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// One whole answer in canonical terms, as every provider's non-stream translation ends.
#[derive(Debug, Default)]
pub struct Answer {
    pub id: String,
    pub model: String,
    /// 0: now.
    pub created: i64,
    pub text: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: &'static str,
    pub usage: Option<Usage>,
}

impl Answer {
    pub fn into_response(self) -> ChatResponse {
        let has_calls = !self.tool_calls.is_empty();
        ChatResponse {
            id: self.id,
            object: "chat.completion".into(),
            created: if self.created > 0 {
                self.created
            } else {
                unix_now()
            },
            model: self.model,
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: "assistant".into(),
                    // OpenAI sends null content next to tool calls, never an empty string.
                    content: (!self.text.is_empty() || !has_calls).then_some(self.text),
                    refusal: None,
                    tool_calls: has_calls.then_some(self.tool_calls),
                    reasoning_content: (!self.reasoning.is_empty()).then_some(self.reasoning),
                    extra: Extra::new(),
                },
                finish_reason: Some(self.finish_reason.to_string()),
                logprobs: None,
                extra: Extra::new(),
            }],
            usage: self.usage,
            extra: Extra::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::FunctionCall;

    #[test]
    fn data_urls() {
        assert_eq!(
            data_url("data:image/png;base64,AAAA"),
            Some(DataUrl {
                media_type: "image/png",
                data: "AAAA"
            })
        );
        assert_eq!(data_url("data:;base64,AA").unwrap().media_type, "");
        assert_eq!(data_url("data:text/plain,hello"), None);
        assert_eq!(data_url("https://x/y.png"), None);
    }

    #[test]
    fn arguments_both_ways_with_one_fallback() {
        assert_eq!(arguments_object(""), json!({}));
        assert_eq!(arguments_object(" {\"a\":1} "), json!({"a": 1}));
        assert_eq!(arguments_object("{\"a\":"), json!({"arguments": "{\"a\":"}));
        assert_eq!(arguments_object("[1]"), json!({"arguments": "[1]"}));
        assert_eq!(arguments_string(&Value::Null), "{}");
        assert_eq!(arguments_string(&json!({"a": 1})), "{\"a\":1}");
        assert_eq!(arguments_string(&json!("{\"a\":1}")), "{\"a\":1}");
    }

    #[test]
    fn turns_of_one_role_merge() {
        let mut turns = Vec::new();
        push_turn(&mut turns, "user", vec![1]);
        push_turn(&mut turns, "user", vec![2]);
        push_turn(&mut turns, "assistant", vec![3]);
        push_turn(&mut turns, "user", vec![4]);
        assert_eq!(
            turns,
            vec![
                ("user", vec![1, 2]),
                ("assistant", vec![3]),
                ("user", vec![4])
            ]
        );
    }

    fn call(id: &str, name: &str) -> Message {
        let mut m = Message::new("assistant", "");
        m.tool_calls = Some(vec![ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments: "{}".into(),
            },
        }]);
        m
    }

    #[test]
    fn tool_names_take_the_newest_earlier_call() {
        let msgs = [call("c1", "old"), call("c1", "new")];
        let mut result = Message::new("tool", "r");
        result.tool_call_id = Some("c1".into());
        let mut named = Message::new("tool", "r");
        named.name = Some("by_name".into());
        let mut names = ToolNames::default();
        names.observe(&msgs[0]);
        assert_eq!(names.name_for(&result), Some("old"));
        names.observe(&msgs[1]);
        assert_eq!(names.name_for(&result), Some("new"));
        assert_eq!(names.name_for(&named), Some("by_name"));
    }

    #[test]
    fn generated_ids_are_unique_and_short() {
        let a = new_call_id();
        assert!(a.len() <= 40 && a.starts_with("call_"));
        assert_ne!(a, new_call_id());
    }
}
