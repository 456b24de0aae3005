//! Anthropic Messages API: the canonical OpenAI request becomes `POST {endpoint}/v1/messages`,
//! the answer (JSON, or SSE events translated one by one) becomes an OpenAI completion.
//!
//! `to_native` / `from_native` are pure and hold every translation rule; `StreamTranslator`
//! is the stream's state machine; the `Provider` impl at the end is only transport.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::http::{error_fields, rfc3339_seconds, Upstream};
use super::sse::sse_events;
use super::{ChatOutcome, ChatStream, Provider, ProviderError, StreamEnd, StreamItem};
use crate::api::openai::{
    unix_now, ChatChunk, ChatRequest, ChatResponse, Choice, Content, ContentPart, Delta, Extra,
    FunctionCall, FunctionDelta, Message, ModelInfo, ResponseMessage, ToolCall, ToolCallDelta,
    Usage,
};

pub const API_VERSION: &str = "2023-06-01";
/// `max_tokens` when neither the request nor the model's config names one.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Request fields Anthropic understands as the client sent them (a client that knows it talks
/// to Claude may use them): forwarded untouched.
const PASSTHROUGH: &[&str] = &[
    "thinking",
    "top_k",
    "container",
    "mcp_servers",
    "context_management",
];

/// Request fields `to_native` translates itself.
const TRANSLATED: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stop_sequences",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "metadata",
    "service_tier",
    "stream_options",
    "anthropic-beta",
    "anthropic_beta",
    "betas",
];

/// Body fields a client may use to ask for Anthropic beta features (the Provider trait sees
/// the body, not the client's headers); sent upstream as the `anthropic-beta` header.
const BETA_FIELDS: &[&str] = &["anthropic-beta", "anthropic_beta", "betas"];

// ---------- native request ----------

#[derive(Debug, Serialize)]
pub struct NativeRequest {
    pub model: String,
    pub max_tokens: u64,
    pub messages: Vec<NativeMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<NativeTool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// The `PASSTHROUGH` fields the client sent.
    #[serde(flatten)]
    pub passthrough: Map<String, Value>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum System {
    Text(String),
    /// Kept as blocks only when the client marked parts with `cache_control`.
    Blocks(Vec<Block>),
}

#[derive(Debug, Serialize, PartialEq)]
pub struct NativeMessage {
    pub role: &'static str,
    pub content: NativeContent,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum NativeContent {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    Image {
        source: Source,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    Document {
        source: Source,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    ToolUse {
        id: String,
        name: String,
        /// An object, where OpenAI has a JSON *string*.
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<NativeContent>,
    },
    /// A block the client wrote in Anthropic's own shape (thinking, document...): as sent.
    #[serde(untagged)]
    Native(Value),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum NativeTool {
    Custom {
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        input_schema: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    /// An Anthropic-native tool definition (server tools, `input_schema` given): as sent.
    Native(Value),
}

// ---------- native response and stream events ----------

#[derive(Debug, Deserialize)]
pub struct NativeResponse {
    /// Required, so an error object never parses as a message.
    pub id: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub content: Vec<ResponseBlock>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: NativeUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    /// Server tool blocks, redacted thinking...: nothing OpenAI can show.
    #[serde(other)]
    Other,
}

/// Counters as Anthropic sends them; any may be absent or null (message_delta sends only
/// what changed, cumulatively).
#[derive(Debug, Default, Deserialize)]
pub struct NativeUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

impl NativeUsage {
    /// Later counters replace earlier ones (message_delta usage is cumulative).
    fn update(&mut self, later: NativeUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    /// OpenAI's prompt count includes cached tokens; Anthropic reports them apart.
    fn to_openai(&self) -> Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        let prompt =
            self.input_tokens.unwrap_or(0) + cached + self.cache_creation_input_tokens.unwrap_or(0);
        let mut usage = Usage::new(prompt, self.output_tokens.unwrap_or(0));
        if cached > 0 {
            usage.extra.insert(
                "prompt_tokens_details".into(),
                json!({"cached_tokens": cached}),
            );
        }
        usage
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: NativeResponse,
    },
    ContentBlockStart {
        index: u32,
        content_block: ResponseBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        #[serde(default)]
        index: u32,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<NativeUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: NativeError,
    },
    /// Anthropic may add event types; they are skipped, as its docs ask.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    ThinkingDelta {
        #[serde(default)]
        thinking: String,
    },
    /// signature_delta, citations_delta...
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
pub struct MessageDeltaBody {
    #[serde(default)]
    pub stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NativeError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

// ---------- request translation ----------

/// The OpenAI request as Anthropic's: `default_max_tokens` is the model's configured
/// `max_tokens`, used when the client sent none.
pub fn to_native(req: &ChatRequest, model: &str, default_max_tokens: Option<u32>) -> NativeRequest {
    let (system, messages) = translate_messages(&req.messages);

    let client_max = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| req.field(k).and_then(Value::as_u64).filter(|n| *n > 0));
    let default_max = u64::from(default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
    let mut max_tokens = client_max.unwrap_or(default_max);

    let mut passthrough = Map::new();
    for (k, v) in &req.extra {
        if v.is_null() || TRANSLATED.contains(&k.as_str()) {
            continue;
        }
        if PASSTHROUGH.contains(&k.as_str()) {
            passthrough.insert(k.clone(), v.clone());
        } else {
            tracing::debug!(field = %k, "dropped a request field Anthropic cannot express");
        }
    }
    // Extended thinking needs max_tokens above its budget; a default must not cause a 400.
    if client_max.is_none() {
        if let Some(budget) = passthrough
            .get("thinking")
            .and_then(|t| t.get("budget_tokens"))
            .and_then(Value::as_u64)
        {
            if budget >= max_tokens {
                max_tokens = budget + default_max;
            }
        }
    }

    let tools: Option<Vec<NativeTool>> = req
        .field("tools")
        .and_then(Value::as_array)
        .map(|ts| ts.iter().filter_map(native_tool).collect::<Vec<_>>())
        .filter(|ts| !ts.is_empty());
    let tool_choice = if tools.is_some() {
        native_tool_choice(
            req.field("tool_choice"),
            req.field("parallel_tool_calls").and_then(Value::as_bool),
        )
    } else {
        if req.field("tool_choice").is_some() {
            tracing::debug!("dropped tool_choice: the request has no tools");
        }
        None
    };

    NativeRequest {
        model: model.to_string(),
        max_tokens,
        messages,
        system,
        temperature: req.field("temperature").and_then(Value::as_f64).map(|t| {
            // OpenAI allows 0..2, Anthropic 0..1.
            if t > 1.0 {
                tracing::debug!(temperature = t, "temperature clamped to Anthropic's 1.0");
            }
            t.clamp(0.0, 1.0)
        }),
        top_p: req.field("top_p").and_then(Value::as_f64),
        stop_sequences: stop_sequences(req),
        stream: req.stream.filter(|s| *s),
        tools,
        tool_choice,
        metadata: metadata(req),
        service_tier: req
            .field("service_tier")
            .and_then(Value::as_str)
            .filter(|t| matches!(*t, "auto" | "standard_only"))
            .map(str::to_string),
        passthrough,
    }
}

/// The `anthropic-beta` header value the client asked for (its own header, then body
/// fields), if any.
pub fn betas(req: &ChatRequest) -> Option<String> {
    let mut out: Vec<&str> = req.anthropic_beta.iter().map(String::as_str).collect();
    for field in BETA_FIELDS {
        match req.field(field) {
            Some(Value::String(s)) => out.push(s),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    (!out.is_empty()).then(|| out.join(","))
}

/// System messages become the top-level `system`; the rest alternates user/assistant, with
/// consecutive same-role turns (tool results included) merged, as Anthropic requires.
fn translate_messages(messages: &[Message]) -> (Option<System>, Vec<NativeMessage>) {
    let mut system: Vec<Block> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Block>)> = Vec::new();
    for m in messages {
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                system.extend(m.content.as_ref().map(content_blocks).unwrap_or_default());
                continue;
            }
            "user" => (
                "user",
                m.content.as_ref().map(content_blocks).unwrap_or_default(),
            ),
            "assistant" => ("assistant", assistant_blocks(m)),
            "tool" => ("user", vec![tool_result(m)]),
            other => {
                tracing::debug!(
                    role = other,
                    "dropped a message with a role Anthropic lacks"
                );
                continue;
            }
        };
        if blocks.is_empty() {
            tracing::debug!(role, "dropped an empty message (Anthropic rejects them)");
            continue;
        }
        match turns.last_mut() {
            Some((last, acc)) if *last == role => acc.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, blocks)| NativeMessage {
            role,
            content: collapse(blocks),
        })
        .collect();
    (native_system(system), messages)
}

fn native_system(blocks: Vec<Block>) -> Option<System> {
    if blocks.is_empty() {
        return None;
    }
    let plain = blocks.iter().all(|b| {
        matches!(
            b,
            Block::Text {
                cache_control: None,
                ..
            }
        )
    });
    if !plain {
        return Some(System::Blocks(blocks));
    }
    let texts: Vec<String> = blocks
        .into_iter()
        .filter_map(|b| match b {
            Block::Text { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    Some(System::Text(texts.join("\n\n")))
}

/// One plain text block reads best as a string; anything else stays blocks.
fn collapse(mut blocks: Vec<Block>) -> NativeContent {
    if let [Block::Text {
        cache_control: None,
        ..
    }] = blocks.as_slice()
    {
        if let Some(Block::Text { text, .. }) = blocks.pop() {
            return NativeContent::Text(text);
        }
    }
    NativeContent::Blocks(blocks)
}

fn content_blocks(content: &Content) -> Vec<Block> {
    match content {
        Content::Text(s) if s.is_empty() => Vec::new(),
        Content::Text(s) => vec![Block::Text {
            text: s.clone(),
            cache_control: None,
        }],
        Content::Parts(parts) => parts.iter().filter_map(part_block).collect(),
    }
}

fn part_block(part: &ContentPart) -> Option<Block> {
    let cache_control = part.extra.get("cache_control").cloned();
    match part.kind.as_str() {
        // Anthropic rejects empty text blocks.
        "text" => part
            .text
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|t| Block::Text {
                text: t.clone(),
                cache_control,
            }),
        "image_url" => {
            let url = &part.image_url.as_ref()?.url;
            let source = url_source(url);
            if source.is_none() {
                tracing::debug!("dropped an image whose URL is neither base64 data: nor http(s)");
            }
            source.map(|source| Block::Image {
                source,
                cache_control,
            })
        }
        // OpenAI's file part (PDFs as data: URLs) is Anthropic's document block.
        "file" => {
            let data = part.extra.get("file")?.get("file_data")?.as_str()?;
            match data_url(data) {
                Some(source) => Some(Block::Document {
                    source,
                    cache_control,
                }),
                None => {
                    tracing::debug!("dropped a file part that is not a base64 data: URL");
                    None
                }
            }
        }
        "image" | "document" | "thinking" | "redacted_thinking" | "search_result" | "tool_use"
        | "tool_result" => serde_json::to_value(part).ok().map(Block::Native),
        other => {
            tracing::debug!(
                part = other,
                "dropped a content part Anthropic cannot express"
            );
            None
        }
    }
}

fn url_source(url: &str) -> Option<Source> {
    if url.starts_with("data:") {
        return data_url(url);
    }
    (url.starts_with("https://") || url.starts_with("http://")).then(|| Source::Url {
        url: url.to_string(),
    })
}

/// `data:MEDIA;base64,DATA` → a base64 source.
fn data_url(url: &str) -> Option<Source> {
    let (head, data) = url.strip_prefix("data:")?.split_once(',')?;
    let media_type = head.strip_suffix(";base64")?;
    Some(Source::Base64 {
        media_type: media_type.to_string(),
        data: data.to_string(),
    })
}

fn assistant_blocks(m: &Message) -> Vec<Block> {
    let mut blocks = m.content.as_ref().map(content_blocks).unwrap_or_default();
    for call in m.tool_calls.iter().flatten() {
        blocks.push(Block::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input: arguments_object(&call.function.arguments),
        });
    }
    blocks
}

/// OpenAI's arguments string as the object Anthropic requires.
fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            if !arguments.trim().is_empty() {
                tracing::debug!("tool call arguments are not a JSON object; sent as {{}}");
            }
            Value::Object(Map::new())
        }
    }
}

fn tool_result(m: &Message) -> Block {
    let content = match &m.content {
        Some(Content::Text(s)) if !s.is_empty() => Some(NativeContent::Text(s.clone())),
        Some(c @ Content::Parts(_)) => {
            let blocks = content_blocks(c);
            (!blocks.is_empty()).then_some(NativeContent::Blocks(blocks))
        }
        _ => None,
    };
    Block::ToolResult {
        tool_use_id: m.tool_call_id.clone().unwrap_or_default(),
        content,
    }
}

fn native_tool(t: &Value) -> Option<NativeTool> {
    if let Some(f) = t.get("function") {
        let Some(name) = f.get("name").and_then(Value::as_str) else {
            tracing::debug!("dropped a function tool without a name");
            return None;
        };
        let mut schema = match f.get("parameters") {
            Some(Value::Object(o)) => o.clone(),
            _ => Map::new(),
        };
        // Anthropic requires an object schema; OpenAI lets parameters be omitted.
        schema
            .entry("type")
            .or_insert_with(|| Value::String("object".into()));
        return Some(NativeTool::Custom {
            name: name.to_string(),
            description: f
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            input_schema: Value::Object(schema),
            cache_control: t.get("cache_control").cloned(),
        });
    }
    if t.get("name").is_some() && (t.get("input_schema").is_some() || t.get("type").is_some()) {
        return Some(NativeTool::Native(t.clone()));
    }
    tracing::debug!("dropped a tool Anthropic cannot express");
    None
}

fn native_tool_choice(choice: Option<&Value>, parallel: Option<bool>) -> Option<Value> {
    let mut out = match choice {
        None => json!({"type": "auto"}),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            other => {
                tracing::debug!(tool_choice = other, "dropped an unknown tool_choice");
                return None;
            }
        },
        Some(v) => match v.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = v.get("function")?.get("name")?.as_str()?;
                json!({"type": "tool", "name": name})
            }
            Some("auto" | "any" | "tool" | "none") => v.clone(),
            _ => {
                tracing::debug!("dropped a tool_choice Anthropic cannot express");
                return None;
            }
        },
    };
    if parallel == Some(false) && out["type"] != "none" {
        out["disable_parallel_tool_use"] = Value::Bool(true);
    } else if choice.is_none() {
        // Anthropic's default already is auto: send nothing the client did not ask for.
        return None;
    }
    Some(out)
}

fn stop_sequences(req: &ChatRequest) -> Option<Vec<String>> {
    let raw = req.field("stop_sequences").or_else(|| req.field("stop"))?;
    let list: Vec<String> = match raw {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    // Anthropic rejects whitespace-only stop sequences.
    let list: Vec<String> = list.into_iter().filter(|s| !s.trim().is_empty()).collect();
    (!list.is_empty()).then_some(list)
}

/// Anthropic's metadata holds only `user_id`: from the client's Anthropic-shaped metadata,
/// else from OpenAI's `user`. OpenAI's free-form metadata tags are dropped.
fn metadata(req: &ChatRequest) -> Option<Value> {
    if let Some(Value::Object(m)) = req.field("metadata") {
        if m.len() == 1 && m.get("user_id").is_some_and(Value::is_string) {
            return Some(Value::Object(m.clone()));
        }
        tracing::debug!("dropped OpenAI metadata Anthropic cannot express");
    }
    req.field("user")
        .and_then(Value::as_str)
        .map(|u| json!({ "user_id": u }))
}

// ---------- response translation ----------

pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, or none given.
        _ => "stop",
    }
}

pub fn from_native(resp: NativeResponse) -> ChatResponse {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut tool_calls = Vec::new();
    for block in resp.content {
        match block {
            ResponseBlock::Text { text: t } => text.push_str(&t),
            ResponseBlock::Thinking { thinking: t } => thinking.push_str(&t),
            ResponseBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall {
                    name,
                    arguments: serde_json::to_string(&input).unwrap_or_else(|_| "{}".into()),
                },
            }),
            ResponseBlock::Other => {}
        }
    }
    let mut extra = Extra::new();
    if !thinking.is_empty() {
        extra.insert("reasoning_content".into(), Value::String(thinking));
    }
    let content = if text.is_empty() && !tool_calls.is_empty() {
        None
    } else {
        Some(text)
    };
    ChatResponse {
        id: resp.id,
        object: "chat.completion".into(),
        created: unix_now(),
        model: resp.model,
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".into(),
                content,
                refusal: None,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                extra,
            },
            finish_reason: Some(finish_reason(resp.stop_reason.as_deref()).into()),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage: Some(resp.usage.to_openai()),
        extra: Extra::new(),
    }
}

/// A non-stream body: a message, or an error object (even under a 200).
pub fn parse_message(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    match serde_json::from_slice::<NativeResponse>(body) {
        Ok(r) => Ok(from_native(r)),
        Err(e) => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|_| ProviderError::Protocol(format!("messages response: {e}")))?;
            if v.get("type").and_then(Value::as_str) == Some("error") {
                let err: NativeError = serde_json::from_value(v["error"].clone())
                    .map_err(|e| ProviderError::Protocol(format!("error object: {e}")))?;
                return Err(native_error(err));
            }
            Err(ProviderError::Protocol(format!("messages response: {e}")))
        }
    }
}

/// An error Anthropic sent in a body or an `error` event, by its documented types.
pub fn native_error(e: NativeError) -> ProviderError {
    let status = match e.kind.as_str() {
        "rate_limit_error" => {
            return ProviderError::RateLimited {
                retry_after: None,
                message: e.message,
            }
        }
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 502,
    };
    ProviderError::Upstream {
        status,
        message: e.message,
        kind: (!e.kind.is_empty()).then_some(e.kind),
        code: None,
    }
}

// ---------- stream translation ----------

/// What one native event becomes.
#[derive(Debug)]
pub enum Emit {
    Nothing,
    Chunk(Bytes),
    /// The finish chunk, then the end of the stream.
    Finish(Bytes, StreamEnd),
}

/// Anthropic stream events in, OpenAI chunks out. Tool calls get OpenAI indexes in the order
/// their `tool_use` blocks start, kept per Anthropic content-block index.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: i64,
    usage: NativeUsage,
    stop_reason: Option<String>,
    tool_index: HashMap<u32, u32>,
    content_chunks: u64,
    finished: bool,
}

impl StreamTranslator {
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// One SSE `data:` payload (the event name is repeated in its `type`).
    pub fn on_data(&mut self, data: &str) -> Result<Emit, ProviderError> {
        let event: StreamEvent = serde_json::from_str(data)
            .map_err(|e| ProviderError::Protocol(format!("stream event: {e}")))?;
        self.on_event(event)
    }

    pub fn on_event(&mut self, event: StreamEvent) -> Result<Emit, ProviderError> {
        match event {
            StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.created = unix_now();
                self.usage.update(message.usage);
                Ok(self.chunk(
                    Delta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                        ..Delta::default()
                    },
                    None,
                ))
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                ResponseBlock::ToolUse { id, name, .. } => {
                    let openai_index = self.tool_index.len() as u32;
                    self.tool_index.insert(index, openai_index);
                    Ok(self.tool_delta(ToolCallDelta {
                        index: openai_index,
                        id: Some(id),
                        kind: Some("function".into()),
                        function: Some(FunctionDelta {
                            name: Some(name),
                            arguments: Some(String::new()),
                        }),
                    }))
                }
                ResponseBlock::Text { text } if !text.is_empty() => Ok(self.text(text)),
                _ => Ok(Emit::Nothing),
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => Ok(self.text(text)),
                BlockDelta::InputJsonDelta { partial_json } => {
                    if partial_json.is_empty() {
                        return Ok(Emit::Nothing);
                    }
                    let Some(&openai_index) = self.tool_index.get(&index) else {
                        return Err(ProviderError::Protocol(format!(
                            "input_json_delta for content block {index}, which is no tool_use"
                        )));
                    };
                    Ok(self.tool_delta(ToolCallDelta {
                        index: openai_index,
                        function: Some(FunctionDelta {
                            name: None,
                            arguments: Some(partial_json),
                        }),
                        ..ToolCallDelta::default()
                    }))
                }
                BlockDelta::ThinkingDelta { thinking } => Ok(self.reasoning(thinking)),
                BlockDelta::Other => Ok(Emit::Nothing),
            },
            StreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(u) = usage {
                    self.usage.update(u);
                }
                Ok(Emit::Nothing)
            }
            StreamEvent::MessageStop => {
                self.finished = true;
                let finish = finish_reason(self.stop_reason.as_deref());
                let Emit::Chunk(bytes) = self.chunk(Delta::default(), Some(finish)) else {
                    unreachable!("chunk() always makes a chunk")
                };
                let end = StreamEnd {
                    id: std::mem::take(&mut self.id),
                    model: std::mem::take(&mut self.model),
                    created: self.created,
                    usage: Some(self.usage.to_openai()),
                    content_chunks: self.content_chunks,
                };
                Ok(Emit::Finish(bytes, end))
            }
            StreamEvent::Error { error } => Err(native_error(error)),
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping | StreamEvent::Unknown => {
                Ok(Emit::Nothing)
            }
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&str>) -> Emit {
        let c = ChatChunk::delta(&self.id, self.created, &self.model, delta, finish);
        Emit::Chunk(Bytes::from(serde_json::to_vec(&c).unwrap_or_default()))
    }

    fn text(&mut self, text: String) -> Emit {
        self.content_chunks += 1;
        self.chunk(
            Delta {
                content: Some(text),
                ..Delta::default()
            },
            None,
        )
    }

    fn tool_delta(&mut self, call: ToolCallDelta) -> Emit {
        self.content_chunks += 1;
        self.chunk(
            Delta {
                tool_calls: Some(vec![call]),
                ..Delta::default()
            },
            None,
        )
    }

    /// Thinking as `delta.reasoning_content`, the field OpenAI-compatible clients read it from.
    fn reasoning(&mut self, thinking: String) -> Emit {
        if thinking.is_empty() {
            return Emit::Nothing;
        }
        let mut c = serde_json::to_value(ChatChunk::delta(
            &self.id,
            self.created,
            &self.model,
            Delta::default(),
            None,
        ))
        .unwrap_or_default();
        c["choices"][0]["delta"]["reasoning_content"] = Value::String(thinking);
        Emit::Chunk(Bytes::from(serde_json::to_vec(&c).unwrap_or_default()))
    }
}

fn translate_stream(
    events: impl futures::Stream<Item = Result<eventsource_stream::Event, ProviderError>>
        + Send
        + 'static,
) -> ChatStream {
    struct State<S> {
        events: S,
        tr: StreamTranslator,
        pending_end: Option<StreamEnd>,
        done: bool,
    }
    let state = State {
        events: Box::pin(events),
        tr: StreamTranslator::default(),
        pending_end: None,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        if let Some(end) = s.pending_end.take() {
            return Some((Ok(StreamItem::End(end)), s));
        }
        loop {
            if s.done {
                return None;
            }
            let ev = match s.events.next().await {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
                None => {
                    s.done = true;
                    return Some((
                        Err(ProviderError::Protocol(
                            "upstream stream ended before message_stop".into(),
                        )),
                        s,
                    ));
                }
            };
            if ev.data.trim().is_empty() {
                continue;
            }
            match s.tr.on_data(&ev.data) {
                Ok(Emit::Nothing) => {}
                Ok(Emit::Chunk(bytes)) => return Some((Ok(StreamItem::Chunk(bytes)), s)),
                Ok(Emit::Finish(bytes, end)) => {
                    // message_stop is the end: the upstream connection is not read further.
                    s.done = true;
                    s.pending_end = Some(end);
                    return Some((Ok(StreamItem::Chunk(bytes)), s));
                }
                Err(e) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
            }
        }
    })
    .boxed()
}

// ---------- models ----------

#[derive(Debug, Deserialize)]
struct NativeModelList {
    data: Vec<NativeModel>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NativeModel {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

fn model_info(m: NativeModel) -> ModelInfo {
    let mut info = ModelInfo::new(m.id, "anthropic");
    info.created = m
        .created_at
        .as_deref()
        .and_then(rfc3339_seconds)
        .unwrap_or(0);
    if let Some(name) = m.display_name {
        info.extra
            .insert("display_name".into(), Value::String(name));
    }
    info
}

// ---------- transport ----------

pub struct Anthropic {
    up: Upstream,
    messages_url: reqwest::Url,
    models_url: String,
}

impl Anthropic {
    pub fn new(up: Upstream) -> Self {
        // An endpoint configured with the version path (`.../v1`) works too.
        let base = up.endpoint.trim_end_matches("/v1").to_string();
        Anthropic {
            messages_url: Upstream::fixed_url(&format!("{base}/v1/messages")),
            models_url: format!("{base}/v1/models"),
            up,
        }
    }

    fn authorized(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let req = req.header("anthropic-version", API_VERSION);
        let Some(key) = self.up.key()? else {
            return Ok(req);
        };
        let mut value = reqwest::header::HeaderValue::from_str(key.expose()).map_err(|_| {
            ProviderError::Protocol("the configured API key is not a valid header value".into())
        })?;
        value.set_sensitive(true);
        Ok(req.header("x-api-key", value))
    }
}

/// Bounds the model list walk; Anthropic pages hold up to 1000 models.
const MAX_MODEL_PAGES: usize = 10;

#[async_trait]
impl Provider for Anthropic {
    fn id(&self) -> &str {
        &self.up.id
    }

    async fn chat(&self, req: &ChatRequest, model: &str) -> Result<ChatOutcome, ProviderError> {
        let native = to_native(req, model, self.up.max_tokens_for(model));
        let body = serde_json::to_vec(&native)
            .map_err(|e| ProviderError::Protocol(format!("request encoding: {e}")))?;
        let mut builder = self
            .up
            .client
            .post(self.messages_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(b) = betas(req) {
            builder = builder.header("anthropic-beta", b);
        }
        let resp = self.up.send(self.authorized(builder)?).await?;
        if req.is_stream() {
            let events = sse_events(resp, self.up.timeouts.idle);
            return Ok(ChatOutcome::Stream(translate_stream(events)));
        }
        let body = self.up.read_body(resp).await?;
        parse_message(&body).map(ChatOutcome::Complete)
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_MODEL_PAGES {
            let mut url = format!("{}?limit=1000", self.models_url);
            if let Some(id) = &after {
                url.push_str("&after_id=");
                url.push_str(id);
            }
            let resp = self
                .up
                .send(self.authorized(self.up.client.get(&url))?)
                .await?;
            let body = self.up.read_body(resp).await?;
            let page: NativeModelList = serde_json::from_slice(&body).map_err(|e| {
                let (message, _, _) = error_fields(&body, reqwest::StatusCode::BAD_GATEWAY);
                ProviderError::Protocol(format!("model list: {e}: {message}"))
            })?;
            out.extend(page.data.into_iter().map(model_info));
            // Model ids are URL-safe; anything else ends the walk rather than being escaped.
            match page.last_id {
                Some(id)
                    if page.has_more
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b)) =>
                {
                    after = Some(id)
                }
                _ => break,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(req: Value) -> Value {
        native_with(req, None)
    }

    fn native_with(req: Value, default_max: Option<u32>) -> Value {
        let req: ChatRequest = serde_json::from_value(req).unwrap();
        serde_json::to_value(to_native(&req, "claude-x", default_max)).unwrap()
    }

    fn msgs(m: Value) -> Value {
        json!({"model": "a/claude-x", "messages": m})
    }

    #[test]
    fn request_translation_table() {
        let pixel = "data:image/png;base64,iVBORw0KGgo=";
        // (what, OpenAI request, expected subset of the Anthropic request)
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "system to top level, plain user text as a string",
                msgs(json!([
                    {"role": "system", "content": "Be brief."},
                    {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
                    {"role": "user", "content": "Hi"}
                ])),
                json!({"model": "claude-x", "max_tokens": 4096, "system": "Be brief.\n\nNo emoji.",
                       "messages": [{"role": "user", "content": "Hi"}]}),
            ),
            (
                "cache_control on system parts keeps blocks",
                msgs(json!([
                    {"role": "system", "content": [
                        {"type": "text", "text": "Long doc", "cache_control": {"type": "ephemeral"}}]},
                    {"role": "user", "content": "Q"}
                ])),
                json!({"system": [{"type": "text", "text": "Long doc", "cache_control": {"type": "ephemeral"}}]}),
            ),
            (
                "consecutive same-role turns merge",
                msgs(json!([
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": [{"type": "text", "text": "b"}]},
                    {"role": "assistant", "content": "c"},
                    {"role": "assistant", "content": "d"},
                    {"role": "user", "content": ""}
                ])),
                json!({"messages": [
                    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]}
                ]}),
            ),
            (
                "images: data URL to base64, https to url",
                msgs(json!([{"role": "user", "content": [
                    {"type": "text", "text": "What?"},
                    {"type": "image_url", "image_url": {"url": pixel}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg", "detail": "low"}}
                ]}])),
                json!({"messages": [{"role": "user", "content": [
                    {"type": "text", "text": "What?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}
                ]}]}),
            ),
            (
                "tool calls and results keep ids, results merge into one user turn",
                msgs(json!([
                    {"role": "user", "content": "weather?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                        {"id": "toolu_2", "type": "function", "function": {"name": "w", "arguments": ""}}
                    ]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                    {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "rain"}]},
                    {"role": "user", "content": "thanks"}
                ])),
                json!({"messages": [
                    {"role": "user", "content": "weather?"},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "w", "input": {}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "rain"}]},
                        {"type": "text", "text": "thanks"}
                    ]}
                ]}),
            ),
            (
                "Anthropic-native parts pass through, PDFs become documents",
                msgs(json!([
                    {"role": "user", "content": [
                        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
                        {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
                        {"type": "text", "text": "sum up"}]},
                    {"role": "assistant", "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "text", "text": "ok"}]}
                ])),
                json!({"messages": [
                    {"role": "user", "content": [
                        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
                        {"type": "text", "text": "sum up"}]},
                    {"role": "assistant", "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "text", "text": "ok"}]}
                ]}),
            ),
            (
                "tools and tool_choice required",
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                       "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                                  "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                                 {"type": "function", "function": {"name": "g"}}],
                       "tool_choice": "required"}),
                json!({"tools": [
                        {"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
                        {"name": "g", "input_schema": {"type": "object"}}],
                       "tool_choice": {"type": "any"}}),
            ),
            (
                "named tool_choice and parallel_tool_calls false",
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                       "tools": [{"type": "function", "function": {"name": "f"}}],
                       "tool_choice": {"type": "function", "function": {"name": "f"}},
                       "parallel_tool_calls": false}),
                json!({"tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": true}}),
            ),
            (
                "sampling, stop string, max_completion_tokens, user",
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                       "temperature": 1.7, "top_p": 0.9, "stop": "END", "max_completion_tokens": 99,
                       "user": "alice", "stream": true}),
                json!({"temperature": 1.0, "top_p": 0.9, "stop_sequences": ["END"], "max_tokens": 99,
                       "metadata": {"user_id": "alice"}, "stream": true}),
            ),
            (
                "stop list, thinking and top_k pass through",
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 20000,
                       "stop": ["a", " ", "b"], "thinking": {"type": "enabled", "budget_tokens": 10000}, "top_k": 5}),
                json!({"stop_sequences": ["a", "b"], "thinking": {"type": "enabled", "budget_tokens": 10000},
                       "top_k": 5, "max_tokens": 20000}),
            ),
        ];
        for (what, req, expected) in cases {
            let out = native(req);
            for (k, v) in expected.as_object().unwrap() {
                assert_eq!(&out[k], v, "{what}: field {k} in {out:#}");
            }
        }
    }

    #[test]
    fn fields_anthropic_cannot_express_are_dropped() {
        let out = native(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "seed": 1, "n": 1, "presence_penalty": 0.5, "response_format": {"type": "json_object"},
            "logprobs": true, "stream_options": {"include_usage": true}, "tool_choice": "auto",
            "metadata": {"tag": "x"}, "service_tier": "flex", "betas": ["b1"], "temperature": null}),
        );
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["max_tokens", "messages", "model"], "{out}");
    }

    #[test]
    fn max_tokens_defaults() {
        let req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(native_with(req.clone(), Some(1234))["max_tokens"], 1234);
        assert_eq!(native_with(req.clone(), None)["max_tokens"], 4096);
        let mut with = req.clone();
        with["max_tokens"] = json!(77);
        assert_eq!(native_with(with, Some(1234))["max_tokens"], 77);
        let mut thinking = req;
        thinking["thinking"] = json!({"type": "enabled", "budget_tokens": 8000});
        assert_eq!(native_with(thinking, None)["max_tokens"], 8000 + 4096);
    }

    #[test]
    fn betas_from_body_fields() {
        let req: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [],
            "anthropic-beta": "a-1", "betas": ["b-2", "c-3"]}))
        .unwrap();
        assert_eq!(betas(&req).as_deref(), Some("a-1,b-2,c-3"));
        let req: ChatRequest =
            serde_json::from_value(json!({"model": "m", "messages": []})).unwrap();
        assert_eq!(betas(&req), None);
    }

    #[test]
    fn response_translation_table() {
        // (native response, content, tool_calls, finish_reason, prompt, completion)
        let cases: Vec<(Value, Value, Value, &str, u64, u64)> = vec![
            (
                json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                       "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}],
                       "stop_reason": "end_turn", "stop_sequence": null,
                       "usage": {"input_tokens": 10, "output_tokens": 2,
                                 "cache_creation_input_tokens": 4, "cache_read_input_tokens": 6}}),
                json!("Hello"),
                Value::Null,
                "stop",
                20,
                2,
            ),
            (
                json!({"id": "msg_2", "model": "claude-x", "stop_reason": "tool_use",
                       "content": [{"type": "tool_use", "id": "toolu_9", "name": "w", "input": {"city": "Paris"}}],
                       "usage": {"input_tokens": 5, "output_tokens": 9}}),
                Value::Null,
                json!([{"id": "toolu_9", "type": "function",
                        "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}}]),
                "tool_calls",
                5,
                9,
            ),
            (
                json!({"id": "m", "content": [{"type": "text", "text": "cut"}], "stop_reason": "max_tokens",
                       "usage": {"input_tokens": 1, "output_tokens": 1}}),
                json!("cut"),
                Value::Null,
                "length",
                1,
                1,
            ),
            (
                json!({"id": "m", "content": [], "stop_reason": "stop_sequence", "usage": {}}),
                json!(""),
                Value::Null,
                "stop",
                0,
                0,
            ),
            (
                json!({"id": "m", "content": [], "stop_reason": "refusal", "usage": {}}),
                json!(""),
                Value::Null,
                "content_filter",
                0,
                0,
            ),
        ];
        for (resp, content, tools, finish, prompt, completion) in cases {
            let r = from_native(serde_json::from_value(resp.clone()).unwrap());
            let v = serde_json::to_value(&r).unwrap();
            let m = &v["choices"][0]["message"];
            assert_eq!(m["content"], content, "{resp}");
            assert_eq!(m["tool_calls"], tools, "{resp}");
            assert_eq!(m["refusal"], Value::Null);
            assert!(m.as_object().unwrap().contains_key("refusal"));
            assert!(v["choices"][0]
                .as_object()
                .unwrap()
                .contains_key("logprobs"));
            assert_eq!(v["choices"][0]["finish_reason"], finish);
            assert_eq!(v["usage"]["prompt_tokens"], prompt);
            assert_eq!(v["usage"]["completion_tokens"], completion);
            assert_eq!(v["usage"]["total_tokens"], prompt + completion);
        }
    }

    #[test]
    fn error_bodies_map_by_type() {
        let err = |t: &str| {
            parse_message(
                format!(r#"{{"type":"error","error":{{"type":"{t}","message":"m"}}}}"#).as_bytes(),
            )
            .unwrap_err()
        };
        assert!(matches!(
            err("overloaded_error"),
            ProviderError::Upstream { status: 529, .. }
        ));
        assert!(err("overloaded_error").is_provider_fault());
        assert!(matches!(
            err("api_error"),
            ProviderError::Upstream { status: 500, .. }
        ));
        assert!(matches!(
            err("rate_limit_error"),
            ProviderError::RateLimited { .. }
        ));
        let bad = err("invalid_request_error");
        assert!(matches!(bad, ProviderError::Upstream { status: 400, .. }));
        assert!(!bad.is_provider_fault());
        assert!(matches!(
            parse_message(b"<html>"),
            Err(ProviderError::Protocol(_))
        ));
    }

    fn chunk_json(e: &Emit) -> Value {
        match e {
            Emit::Chunk(b) | Emit::Finish(b, _) => serde_json::from_slice(b).unwrap(),
            Emit::Nothing => Value::Null,
        }
    }

    #[test]
    fn stream_translator_text_and_tools() {
        let mut t = StreamTranslator::default();
        let events = [
            r#"{"type":"message_start","message":{"id":"msg_s","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1,"cache_read_input_tokens":5}}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"w","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_b","name":"v","input":{}}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#,
            r#"{"type":"some_future_event"}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let out: Vec<Emit> = events.iter().map(|e| t.on_data(e).unwrap()).collect();
        let c: Vec<Value> = out.iter().map(chunk_json).collect();
        assert_eq!(
            c[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(c[0]["id"], "msg_s");
        assert!(c[1].is_null() && c[2].is_null() && c[4].is_null() && c[6].is_null());
        assert_eq!(c[3]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(
            c[5]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "w", "arguments": ""}}])
        );
        assert_eq!(
            c[7]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "function": {"arguments": "{\"city\":"}}])
        );
        assert_eq!(c[8]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
        assert_eq!(c[9]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
        assert_eq!(
            c[10]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "function": {"arguments": "\"Paris\"}"}}])
        );
        assert!(c[11].is_null() && c[12].is_null());
        assert_eq!(c[13]["choices"][0]["finish_reason"], "tool_calls");
        let Emit::Finish(_, end) = &out[13] else {
            panic!("message_stop finishes")
        };
        let u = end.usage.as_ref().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (30, 15, 45)
        );
        assert_eq!(end.id, "msg_s");
        assert_eq!(end.content_chunks, 6);
        assert!(t.is_finished());
    }

    #[test]
    fn stream_error_event_is_an_error() {
        let mut t = StreamTranslator::default();
        let e = t
            .on_data(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            )
            .unwrap_err();
        assert!(
            matches!(e, ProviderError::Upstream { status: 529, ref message, .. } if message == "Overloaded")
        );
        assert!(t.on_data("{not json").is_err());
        assert!(t
            .on_data(r#"{"type":"content_block_delta","index":7,"delta":{"type":"input_json_delta","partial_json":"x"}}"#)
            .is_err());
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_seconds("2025-02-19T00:00:00Z"), Some(1_739_923_200));
        assert_eq!(
            rfc3339_seconds("2024-02-29T12:30:15.123Z"),
            Some(1_709_209_815)
        );
        assert_eq!(
            rfc3339_seconds("2025-02-19T02:00:00+02:00"),
            Some(1_739_923_200)
        );
        assert_eq!(rfc3339_seconds("yesterday"), None);
        assert_eq!(rfc3339_seconds("2025-13-19T00:00:00Z"), None);
    }
}
