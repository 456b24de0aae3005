//! OpenAI Chat Completions wire types: the canonical request/response format of the gateway.
//!
//! Every struct keeps the fields it does not name in `extra`, so an OpenAI-compatible upstream
//! receives exactly what the client sent, and the client exactly what the upstream answered.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub type Extra = Map<String, Value>;

/// Deserialized by hand (`openai_de.rs`): every member read once.
#[derive(Debug, Clone, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
    /// The client's `anthropic-beta` header: not part of the body, forwarded only to
    /// Anthropic upstreams.
    #[serde(skip)]
    pub anthropic_beta: Option<String>,
    /// The client's own-format body (Messages, Responses ingress): a candidate whose
    /// provider speaks that format natively is sent this instead of a translation.
    #[serde(skip)]
    pub native: Option<std::sync::Arc<crate::api::native::NativeRequest>>,
}

impl ChatRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// A field the gateway does not model (temperature, tools, ...), as sent.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.extra.get(name).filter(|v| !v.is_null())
    }

    /// What no provider can serve faithfully, refused once at parse time instead of being
    /// guessed at (or silently dropped) by each translator: a function tool without
    /// `function`, a role no API knows, a `tool` message answering no earlier tool call.
    /// The error names the field (`messages[2].tool_call_id: ...`).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(tools) = self.field("tools") {
            let Value::Array(tools) = tools else {
                return Err("tools: must be an array of tool definitions".into());
            };
            for (i, t) in tools.iter().enumerate() {
                validate_tool(t).map_err(|e| format!("tools[{i}]{e}"))?;
            }
        }
        let mut calls: Vec<&str> = Vec::new();
        for (i, m) in self.messages.iter().enumerate() {
            match m.role.as_str() {
                "system" | "developer" | "user" | "function" => {}
                "assistant" => {
                    calls.extend(m.tool_calls.iter().flatten().map(|c| c.id.as_str()));
                }
                "tool" => match m.tool_call_id.as_deref() {
                    None => {
                        return Err(format!(
                            "messages[{i}].tool_call_id: required in a tool message (the id of \
                             the assistant tool call it answers)"
                        ))
                    }
                    Some(id) if !calls.contains(&id) => {
                        return Err(format!(
                            "messages[{i}].tool_call_id: '{id}' matches no tool call of an \
                             earlier assistant message"
                        ))
                    }
                    Some(_) => {}
                },
                other => {
                    return Err(format!(
                        "messages[{i}].role: unknown role '{other}' (expected system, \
                         developer, user, assistant or tool)"
                    ))
                }
            }
        }
        Ok(())
    }
}

/// One entry of `tools`: an object; a `function` tool (the default type) needs a `function`
/// object with a non-empty `name`, as OpenAI requires. Other types (server tools) and
/// Anthropic-native definitions pass as sent.
fn validate_tool(t: &Value) -> Result<(), String> {
    let Value::Object(t) = t else {
        return Err(": must be an object".into());
    };
    let kind = match t.get("type") {
        // Anthropic's own shape (`name` + `input_schema`, no type), which its translator keeps.
        None if t.contains_key("input_schema") => return Ok(()),
        None => "function",
        Some(Value::String(k)) => k.as_str(),
        Some(_) => return Err(".type: must be a string".into()),
    };
    if kind != "function" {
        return Ok(());
    }
    match t.get("function") {
        None | Some(Value::Null) => Err(".function: required for a tool of type 'function'".into()),
        Some(Value::Object(f)) => match f.get("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => Ok(()),
            _ => Err(".function.name: required, a non-empty string".into()),
        },
        Some(_) => Err(".function: must be an object".into()),
    }
}

/// Deserialized by hand (`openai_de.rs`): every member read once.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    pub role: String,
    /// Serialized as null when absent: OpenAI accepts `content: null` next to tool calls.
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The model's reasoning (Anthropic thinking, Gemini thought parts, Ollama `thinking`),
    /// under the name OpenAI-compatible servers (DeepSeek, vLLM) give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Message {
    pub fn new(role: &str, text: impl Into<String>) -> Self {
        Message {
            role: role.to_string(),
            content: Some(Content::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            reasoning_content: None,
            extra: Extra::new(),
        }
    }

    /// The message's text parts joined (images and other parts skipped).
    pub fn text(&self) -> String {
        match &self.content {
            Some(c) => c.text(),
            None => String::new(),
        }
    }
}

/// `content` is a string or a list of typed parts (text, image_url, input_audio...).
/// Deserialized by hand (`openai_de.rs`) rather than untagged (no buffering).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => {
                let mut out = String::new();
                for p in parts {
                    if let Some(t) = &p.text {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(t);
                    }
                }
                out
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageUrl {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionCall {
    pub name: String,
    /// A JSON document *as a string*, as OpenAI sends it.
    #[serde(default)]
    pub arguments: String,
}

// ---------- responses ----------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatResponse {
    pub id: String,
    #[serde(default = "completion_object")]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn completion_object() -> String {
    "chat.completion".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: ResponseMessage,
    /// Required by the schema, null when unknown.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Required by the schema, null when unknown.
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ResponseMessage {
    #[serde(default = "assistant_role")]
    pub role: String,
    /// Always serialized (null when the answer is only tool calls), as the schema requires.
    #[serde(default)]
    pub content: Option<String>,
    /// Always serialized, null unless the model refused.
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The model's reasoning, as on `Message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn assistant_role() -> String {
    "assistant".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    /// Prompt tokens actually sent upstream after condensation, counted by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_context: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            effective_context: None,
            extra: Extra::new(),
        }
    }
}

// ---------- streaming ----------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatChunk {
    pub id: String,
    #[serde(default = "chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Extra,
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    pub delta: Delta,
    /// Required by the schema in every chunk, null until the last.
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Reasoning text, as on `Message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct FunctionDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl ChatChunk {
    /// A chunk with one choice carrying `delta`, as translators emit them.
    pub fn delta(id: &str, created: i64, model: &str, delta: Delta, finish: Option<&str>) -> Self {
        ChatChunk {
            id: id.to_string(),
            object: chunk_object(),
            created,
            model: model.to_string(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish.map(str::to_string),
                logprobs: None,
            }],
            usage: None,
            extra: Extra::new(),
        }
    }
}

// ---------- models ----------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    #[serde(default = "model_object")]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default = "owned_by_default")]
    pub owned_by: String,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ModelInfo {
    pub fn new(id: impl Into<String>, owned_by: impl Into<String>) -> Self {
        ModelInfo {
            id: id.into(),
            object: model_object(),
            created: 0,
            owned_by: owned_by.into(),
            extra: Extra::new(),
        }
    }
}

fn model_object() -> String {
    "model".to_string()
}

fn owned_by_default() -> String {
    "unknown".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelInfo>,
}

impl ModelList {
    pub fn new(data: Vec<ModelInfo>) -> Self {
        ModelList {
            object: "list".to_string(),
            data,
        }
    }
}

/// Seconds since the epoch, for `created` fields the gateway makes itself.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
