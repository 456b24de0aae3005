//! OpenAI Responses API wire types (`POST /v1/responses`): the request as clients send it and
//! the `response` object and stream events as aisbf answers them.
//!
//! Input items are typed one kind at a time (`InputItem::parse`) so that an unknown or
//! malformed item is a 400 naming `input[i]`, not a serde error about an untagged enum.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    /// A string (one user message) or a list of items. A plain `Value`, not an untagged
    /// enum, which would make serde buffer the whole input once more.
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub instructions: Option<String>,
    /// Kept as sent: echoed in the response, and the source of the chat target's tools.
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub reasoning: Option<Value>,
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub prompt_cache_key: Option<String>,
    // Everything else (`include`, `client_metadata`, `truncation`, ...) is not read: a chat
    // target would not understand it. No `flatten` map: it would make serde buffer the
    // whole (Codex: ~40 KB) body once more.
}

impl ResponsesRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// `store` defaults to true, as OpenAI's.
    pub fn keeps(&self) -> bool {
        self.store.unwrap_or(true)
    }
}

/// One input item, by its `type` (a message may leave `type` out).
#[derive(Debug, Clone, PartialEq)]
pub enum InputItem {
    Message(MessageItem),
    FunctionCall(FunctionCallItem),
    FunctionCallOutput(FunctionCallOutputItem),
    CustomToolCall(CustomToolCallItem),
    Reasoning,
    /// The record of a built-in tool call (`web_search_call`, ...): nothing a chat target
    /// can be shown.
    BuiltinCall(String),
}

/// Item types that record a built-in tool run by OpenAI itself.
const BUILTIN_CALLS: [&str; 9] = [
    "web_search_call",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "image_generation_call",
    "code_interpreter_call",
    "mcp_call",
    "mcp_list_tools",
    "mcp_approval_request",
];

impl InputItem {
    /// Parses `value`, the item at `input[index]`; the error names the field.
    pub fn parse(index: usize, value: &Value) -> Result<InputItem, String> {
        let at = format!("input[{index}]");
        let Some(obj) = value.as_object() else {
            return Err(format!("{at} must be an object"));
        };
        let kind = match obj.get("type") {
            None if obj.contains_key("role") => "message",
            None => return Err(format!("{at}.type is missing")),
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(format!("{at}.type must be a string")),
        };
        let typed = |e: serde_json::Error| format!("{at}: {e}");
        // Deserialized from the borrowed value: no copy of the item first.
        Ok(match kind {
            "message" => InputItem::Message(MessageItem::deserialize(value).map_err(typed)?),
            "function_call" => {
                InputItem::FunctionCall(FunctionCallItem::deserialize(value).map_err(typed)?)
            }
            "custom_tool_call" => {
                InputItem::CustomToolCall(CustomToolCallItem::deserialize(value).map_err(typed)?)
            }
            "function_call_output" | "custom_tool_call_output" => InputItem::FunctionCallOutput(
                FunctionCallOutputItem::deserialize(value).map_err(typed)?,
            ),
            "reasoning" => InputItem::Reasoning,
            k if BUILTIN_CALLS.contains(&k) => InputItem::BuiltinCall(k.to_string()),
            other => {
                return Err(format!(
                    "{at}.type '{other}' is not an input item aisbf can serve (message, \
                     function_call, function_call_output, custom_tool_call, \
                     custom_tool_call_output, reasoning)"
                ))
            }
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MessageItem {
    pub role: String,
    /// A string or a list of parts.
    pub content: Value,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct FunctionCallItem {
    pub call_id: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub arguments: String,
}

/// A call of a `custom` (free-text input) tool.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CustomToolCallItem {
    pub call_id: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub input: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct FunctionCallOutputItem {
    pub call_id: String,
    /// A string, or a list of `input_text` / `input_image` parts.
    pub output: Value,
}

// ---------- the response object ----------

/// A `response` object, as `POST /v1/responses` answers it and events carry it.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseObject {
    pub id: String,
    pub object: &'static str,
    pub created_at: i64,
    pub status: &'static str,
    /// Required by the schema, null unless the response failed.
    pub error: Option<ResponseError>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<String>,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub parallel_tool_calls: bool,
    pub metadata: Value,
    pub tool_choice: Value,
    /// Serialized once per request: every event that carries the response repeats it.
    pub tools: Box<RawValue>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_output_tokens: Option<u64>,
    pub previous_response_id: Option<String>,
    pub reasoning: Option<Value>,
    pub store: bool,
    pub text: Value,
    pub truncation: &'static str,
    /// Typed without null by the schema: left out until known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResponseUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResponseError {
    /// One of the schema's `ResponseErrorCode` values.
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IncompleteDetails {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    Message {
        id: String,
        status: &'static str,
        role: &'static str,
        content: Vec<OutputText>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        name: String,
        arguments: String,
        status: &'static str,
    },
    CustomToolCall {
        id: String,
        call_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        name: String,
        input: String,
    },
    Reasoning {
        id: String,
        summary: Vec<Value>,
        content: Vec<ReasoningText>,
        status: &'static str,
    },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutputText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
    pub annotations: Vec<Value>,
    pub logprobs: Vec<Value>,
}

impl OutputText {
    pub fn new(text: impl Into<String>) -> Self {
        OutputText {
            kind: "output_text",
            text: text.into(),
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReasoningText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

impl ReasoningText {
    pub fn new(text: impl Into<String>) -> Self {
        ReasoningText {
            kind: "reasoning_text",
            text: text.into(),
        }
    }
}

impl OutputItem {
    /// The item as the next request's input would carry it (for `previous_response_id`).
    pub fn as_input(&self) -> Option<Value> {
        match self {
            OutputItem::Message { content, .. } => {
                let parts: Vec<Value> = content
                    .iter()
                    .map(|t| serde_json::json!({"type": "output_text", "text": t.text}))
                    .collect();
                Some(serde_json::json!({"type": "message", "role": "assistant", "content": parts}))
            }
            OutputItem::FunctionCall {
                call_id,
                namespace,
                name,
                arguments,
                ..
            } => {
                let mut v = serde_json::json!({"type": "function_call", "call_id": call_id,
                    "name": name, "arguments": arguments});
                if let Some(ns) = namespace {
                    v["namespace"] = Value::String(ns.clone());
                }
                Some(v)
            }
            OutputItem::CustomToolCall {
                call_id,
                namespace,
                name,
                input,
                ..
            } => {
                let mut v = serde_json::json!({"type": "custom_tool_call", "call_id": call_id,
                    "name": name, "input": input});
                if let Some(ns) = namespace {
                    v["namespace"] = Value::String(ns.clone());
                }
                Some(v)
            }
            OutputItem::Reasoning { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ResponseUsage {
    pub input_tokens: u64,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u64,
    /// Prompt tokens actually sent upstream after condensation, counted by the gateway.
    pub effective_context: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct InputTokensDetails {
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u64,
}

/// One stream event: `event: TYPE` + `data: {"type": TYPE, "sequence_number": n, ...}`,
/// its data already serialized (events are written once, never edited).
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub kind: &'static str,
    pub json: Vec<u8>,
}

impl StreamEvent {
    /// The data as a JSON value (for tests and logs).
    pub fn data(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}
