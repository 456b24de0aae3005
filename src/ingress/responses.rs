//! The OpenAI Responses ingress: a Responses request as the canonical chat request, the chat
//! answer as a `response` object, and the stream state machine that turns canonical chunks
//! into Responses events (design.md §13). Pure functions; the HTTP part is in
//! `server/responses.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::api::openai::{ChatRequest, ResponseMessage};

mod answer;
mod request;
pub mod store;
mod stream;

pub use answer::from_chat;
pub use request::to_chat;
pub use stream::StreamTranslator;

use store::StoredResponse;

/// What the Responses ingress keeps in the application state, built once. (Passthrough to
/// `responses: true` providers is the router's generic native passthrough.)
pub struct ResponsesState {
    pub store: std::sync::Arc<dyn store::ResponseStore>,
}

impl ResponsesState {
    pub fn build(config: &crate::config::Config) -> ResponsesState {
        ResponsesState {
            store: std::sync::Arc::new(store::MemoryStore::new(&config.responses)),
        }
    }
}

/// The reasoning text of an upstream answer (the canonical `reasoning_content`), if any.
pub fn reasoning_content(m: &ResponseMessage) -> Option<&str> {
    m.reasoning_content.as_deref().filter(|s| !s.is_empty())
}

/// Separator of a flattened namespace tool name: `{namespace}__{name}`.
const NS_SEP: &str = "__";

/// A tool as the client declared it: its namespace, its name, and whether it is a `custom`
/// (free-text input) tool, which a chat target sees as a function of one `input` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub namespace: Option<String>,
    pub name: String,
    pub custom: bool,
}

/// Chat tool name → the declared tool, to map calls back. Plain functions are not listed:
/// their chat name is their name.
#[derive(Debug, Clone, Default)]
pub struct ToolNames(HashMap<String, Declared>);

impl ToolNames {
    /// The declared tool behind a chat tool call's name.
    pub fn declared(&self, flat: &str) -> Declared {
        self.0.get(flat).cloned().unwrap_or_else(|| Declared {
            namespace: None,
            name: flat.to_string(),
            custom: false,
        })
    }

    fn add(&mut self, namespace: Option<&str>, name: &str, custom: bool) {
        let declared = Declared {
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            custom,
        };
        self.0.insert(flat_name(namespace, name), declared);
    }
}

/// The free-text input of a custom tool call, from the chat call's `{"input": …}` arguments
/// (the arguments as they are when the model did not follow that shape).
fn custom_input(arguments: &str) -> String {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .and_then(|v| v.get("input")?.as_str().map(str::to_string))
        .unwrap_or_else(|| arguments.to_string())
}

fn flat_name(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}{NS_SEP}{name}"),
        _ => name.to_string(),
    }
}

/// What the answer needs from the request: the settings the response echoes, the tool names
/// to map back, and the conversation to store.
#[derive(Debug, Clone)]
pub struct Shape {
    pub model: String,
    pub instructions: Option<String>,
    pub tools: Box<serde_json::value::RawValue>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_output_tokens: Option<u64>,
    pub previous_response_id: Option<String>,
    pub reasoning: Option<Value>,
    pub store: bool,
    pub text: Value,
    pub metadata: Value,
    pub user: Option<String>,
    pub names: ToolNames,
    /// This request's own input items and the stored response it continues: what the store
    /// keeps, so a chain of `previous_response_id`s shares its earlier turns (memory grows
    /// with the conversation, not with its square).
    pub input: Vec<Value>,
    pub previous: Option<Arc<StoredResponse>>,
}

pub struct Translated {
    pub chat: ChatRequest,
    pub shape: Shape,
}

/// A random id with OpenAI's prefix style (`resp_…`, `msg_…`, `fc_…`).
pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::openai::{ChatResponse, Usage};
    use crate::api::responses::*;
    use crate::providers::StreamEnd;

    fn req(v: Value) -> ResponsesRequest {
        serde_json::from_value(v).unwrap()
    }

    fn chat(v: Value) -> Translated {
        to_chat(req(v), None).unwrap()
    }

    #[test]
    fn string_input_and_instructions() {
        let t = chat(
            json!({"model": "m", "input": "Hi", "instructions": "Be brief.",
            "max_output_tokens": 50, "temperature": 0.2, "reasoning": {"effort": "low"},
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
            "include": ["reasoning.encrypted_content"], "store": false}),
        );
        let v = serde_json::to_value(&t.chat).unwrap();
        assert_eq!(
            v,
            json!({"model": "m", "stream": false, "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"}],
                "max_completion_tokens": 50, "temperature": 0.2, "reasoning_effort": "low",
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}})
        );
        assert!(!t.shape.store);
    }

    #[test]
    fn items_with_calls_outputs_and_developer_messages() {
        let t = chat(json!({"model": "m", "input": [
            {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "sys"}]},
            {"role": "user", "content": "list files"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
            {"type": "function_call", "call_id": "call_2", "namespace": "ns", "name": "spawn", "arguments": "{}"},
            {"type": "function_call_output", "id": "fco_1", "call_id": "call_1", "output": "a.txt"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "ok"}]},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"}
        ]}));
        let v = serde_json::to_value(&t.chat.messages).unwrap();
        assert_eq!(
            v,
            json!([
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "list files"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "ns__spawn", "arguments": "{}"}}]},
                {"role": "tool", "content": "a.txt", "tool_call_id": "call_1"},
                {"role": "tool", "content": "ok", "tool_call_id": "call_2"}
            ])
        );
    }

    #[test]
    fn tools_flattened_builtins_left_out() {
        let t = chat(
            json!({"model": "m", "input": "x", "tool_choice": "auto", "parallel_tool_calls": true,
            "tools": [
                {"type": "function", "name": "exec_command", "strict": false, "parameters": {"type": "object"}},
                {"type": "namespace", "name": "multi_agent", "description": "d", "tools": [
                    {"type": "function", "name": "spawn", "description": "s", "parameters": {"type": "object"}}]},
                {"type": "web_search", "external_web_access": false}]}),
        );
        assert_eq!(
            t.chat.extra["tools"],
            json!([
                {"type": "function", "function": {"name": "exec_command", "parameters": {"type": "object"}, "strict": false}},
                {"type": "function", "function": {"name": "multi_agent__spawn", "description": "s", "parameters": {"type": "object"}}}])
        );
        assert_eq!(t.chat.extra["tool_choice"], "auto");
        assert_eq!(t.chat.extra["parallel_tool_calls"], true);
        let d = t.shape.names.declared("multi_agent__spawn");
        assert_eq!(
            (d.namespace.as_deref(), d.name.as_str(), d.custom),
            (Some("multi_agent"), "spawn", false)
        );
        assert_eq!(
            t.shape.names.declared("exec_command"),
            Declared {
                namespace: None,
                name: "exec_command".into(),
                custom: false
            }
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let err = |v: Value| to_chat(req(v), None).err().unwrap();
        assert!(err(json!({"model": "m", "input": [{"type": "bogus"}]}))
            .contains("input[0].type 'bogus'"));
        assert!(err(
            json!({"model": "m", "input": [{"role": "user", "content": "x"},
            {"type": "function_call_output", "call_id": "nope", "output": "x"}]})
        )
        .contains("input[1].call_id"));
        assert!(err(
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}],
            "tool_choice": {"type": "web_search"}})
        )
        .contains("'web_search'"));
        assert!(err(
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]})
        )
        .contains("input[0].content[0].type"));
        assert!(
            err(json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}))
                .contains("input[0].role")
        );
    }

    fn run(chunks: &[Value], end_usage: Option<Usage>) -> (Vec<StreamEvent>, ResponseObject) {
        let t = chat(
            json!({"model": "client-model", "input": "x", "stream": true,
            "tools": [{"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]}]}),
        );
        let mut tr = StreamTranslator::new(t.shape);
        let mut events = tr.start();
        for c in chunks {
            events.extend(tr.feed(c.to_string().as_bytes()));
        }
        let end = StreamEnd {
            usage: end_usage,
            ..StreamEnd::default()
        };
        events.extend(tr.finish(Some(end), 9, |_| 1));
        (events, tr.response().clone())
    }

    fn delta(d: Value, finish: Option<&str>) -> Value {
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": d, "finish_reason": finish}]})
    }

    #[test]
    fn stream_text_then_tool_call_sequence() {
        let (events, resp) = run(
            &[
                delta(
                    json!({"role": "assistant", "reasoning_content": "hmm"}),
                    None,
                ),
                delta(json!({"content": "Hel"}), None),
                delta(json!({"content": "lo"}), None),
                delta(
                    json!({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                    "function": {"name": "ns__f", "arguments": "{\"a\""}}]}),
                    None,
                ),
                delta(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                    None,
                ),
                delta(json!({}), Some("tool_calls")),
            ],
            Some(Usage::new(5, 3)),
        );
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, e) in events.iter().enumerate() {
            let d = e.data();
            assert_eq!(d["sequence_number"], i as u64);
            assert_eq!(d["type"], e.kind);
        }
        let delta = events[10].data();
        assert_eq!(
            delta,
            json!({"type": "response.output_text.delta", "sequence_number": 10, "item_id": delta["item_id"],
                   "output_index": 1, "content_index": 0, "delta": "Hel", "logprobs": []})
        );
        assert_eq!(resp.status, "completed");
        assert_eq!(resp.output.len(), 3);
        let v = serde_json::to_value(&resp.output[2]).unwrap();
        assert_eq!(v["name"], "f");
        assert_eq!(v["namespace"], "ns");
        assert_eq!(v["call_id"], "call_9");
        assert_eq!(v["arguments"], "{\"a\":1}");
        let u = resp.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.effective_context),
            (5, 3, 9)
        );
    }

    #[test]
    fn non_stream_answer_with_reasoning_calls_and_usage_details() {
        let t = chat(json!({"model": "client-model", "input": "x",
            "tools": [{"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]}]}));
        let r: ChatResponse = serde_json::from_value(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "upstream",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null, "message": {
                "role": "assistant", "content": "Let me see.", "refusal": null,
                "reasoning_content": "thinking hard",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "ns__f", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                      "prompt_tokens_details": {"cached_tokens": 4},
                      "completion_tokens_details": {"reasoning_tokens": 2}}}))
        .unwrap();
        let v = serde_json::to_value(from_chat(r, &t.shape, 12, |_| 0)).unwrap();
        assert_eq!(v["model"], "client-model");
        assert_eq!(v["output"][0]["type"], "reasoning");
        assert_eq!(v["output"][0]["content"][0]["text"], "thinking hard");
        assert_eq!(v["output"][1]["content"][0]["text"], "Let me see.");
        assert_eq!(v["output"][2]["name"], "f");
        assert_eq!(v["output"][2]["namespace"], "ns");
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
                   "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2},
                   "total_tokens": 15, "effective_context": 12})
        );
    }

    #[test]
    fn length_stop_is_incomplete() {
        let (events, resp) = run(&[delta(json!({"content": "x"}), Some("length"))], None);
        assert_eq!(events.last().unwrap().kind, "response.incomplete");
        assert_eq!(resp.status, "incomplete");
        assert_eq!(resp.incomplete_details.unwrap().reason, "max_output_tokens");
        assert_eq!(resp.usage.unwrap().input_tokens, 9);
    }
}
