//! Anthropic Messages API: the canonical OpenAI request becomes `POST {endpoint}/v1/messages`,
//! the answer (JSON, or SSE events translated one by one) becomes an OpenAI completion.
//!
//! `to_native` / `from_native` are pure and hold every translation rule; `StreamTranslator`
//! is the stream's state machine; the `Provider` impl at the end is only transport.

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::convert::{
    arguments_object, arguments_string, data_url, new_completion_id, push_turn, Answer,
};
use super::http::{error_fields, rfc3339_seconds, Auth, Upstream};
use super::kernel::{self, parse_event, ChunkWriter, Flow};
use super::sse::sse_events;
use super::{ChatOutcome, ChatStream, Provider, ProviderError};
use crate::api::openai::{
    unix_now, ChatRequest, ChatResponse, Content, ContentPart, FunctionCall, Message, ModelInfo,
    ToolCall, Usage,
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
        push_turn(&mut turns, role, blocks);
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
            match data_url_source(data) {
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
        return data_url_source(url);
    }
    (url.starts_with("https://") || url.starts_with("http://")).then(|| Source::Url {
        url: url.to_string(),
    })
}

/// `data:MEDIA;base64,DATA` → a base64 source.
fn data_url_source(url: &str) -> Option<Source> {
    data_url(url).map(|d| Source::Base64 {
        media_type: d.media_type.to_string(),
        data: d.data.to_string(),
    })
}

fn assistant_blocks(m: &Message) -> Vec<Block> {
    if m.reasoning_content.is_some() {
        // A thinking block goes back only with Anthropic's signature, which text lacks.
        tracing::debug!("dropped an assistant message's reasoning_content");
    }
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
    let mut answer = Answer {
        id: resp.id,
        model: resp.model,
        finish_reason: finish_reason(resp.stop_reason.as_deref()),
        usage: Some(resp.usage.to_openai()),
        ..Answer::default()
    };
    for block in resp.content {
        match block {
            ResponseBlock::Text { text } => answer.text.push_str(&text),
            ResponseBlock::Thinking { thinking } => answer.reasoning.push_str(&thinking),
            ResponseBlock::ToolUse { id, name, input } => answer.tool_calls.push(ToolCall {
                id,
                kind: "function".into(),
                function: FunctionCall {
                    name,
                    arguments: arguments_string(&input),
                },
            }),
            ResponseBlock::Other => {}
        }
    }
    answer.into_response()
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

/// Anthropic stream events in, canonical deltas out. Tool calls get OpenAI indexes in the
/// order their `tool_use` blocks start, kept per Anthropic content-block index.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    usage: NativeUsage,
    stop_reason: Option<String>,
}

impl kernel::StreamTranslator for StreamTranslator {
    /// One SSE `data:` payload (the event name is repeated in its `type`).
    fn on_event(&mut self, data: &[u8], out: &mut ChunkWriter) -> Result<Flow, ProviderError> {
        match parse_event::<StreamEvent>(data, "stream event")? {
            StreamEvent::MessageStart { message } => {
                out.set_id(message.id);
                out.set_model(&message.model);
                self.usage.update(message.usage);
                out.start();
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                ResponseBlock::ToolUse { id, name, .. } => out.tool_start(index, id, name),
                ResponseBlock::Text { text } => out.text(&text),
                ResponseBlock::Thinking { thinking } => out.reasoning(&thinking),
                ResponseBlock::Other => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => out.text(&text),
                BlockDelta::InputJsonDelta { partial_json } => {
                    out.tool_arguments(index, &partial_json)?
                }
                BlockDelta::ThinkingDelta { thinking } => out.reasoning(&thinking),
                BlockDelta::Other => {}
            },
            StreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(u) = usage {
                    self.usage.update(u);
                }
            }
            StreamEvent::MessageStop => {
                out.usage(self.usage.to_openai());
                out.finish(finish_reason(self.stop_reason.as_deref()));
                // message_stop is the end: the upstream connection is not read further.
                return Ok(Flow::Done);
            }
            StreamEvent::Error { error } => return Err(native_error(error)),
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping | StreamEvent::Unknown => {}
        }
        Ok(Flow::More)
    }

    fn finish(&mut self, _out: &mut ChunkWriter) -> Result<(), ProviderError> {
        Err(ProviderError::Protocol(
            "upstream stream ended before message_stop".into(),
        ))
    }
}

fn translate_stream(
    events: impl futures::Stream<Item = Result<eventsource_stream::Event, ProviderError>>
        + Send
        + 'static,
    model: &str,
) -> ChatStream {
    let data = events.map(|r| r.map(|ev| ev.data));
    let writer = ChunkWriter::new(new_completion_id(), model, unix_now());
    kernel::drive(data, StreamTranslator::default(), writer)
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
    messages_url: http::Uri,
    models_url: String,
}

impl Anthropic {
    pub fn new(up: Upstream) -> Self {
        // An endpoint configured with the version path (`.../v1`) works too.
        let base = up.endpoint.trim_end_matches("/v1").to_string();
        Anthropic {
            messages_url: Upstream::fixed_url(&format!("{base}/v1/messages")),
            models_url: format!("{base}/v1/models"),
            up: up.with_auth(Auth::Header("x-api-key")),
        }
    }
}

/// Bounds the model list walk; Anthropic pages hold up to 1000 models.
const MAX_MODEL_PAGES: usize = 10;

#[async_trait]
impl Provider for Anthropic {
    async fn chat(&self, req: &ChatRequest, model: &str) -> Result<ChatOutcome, ProviderError> {
        let native = to_native(req, model, self.up.max_tokens_for(model));
        let body = serde_json::to_vec(&native)
            .map_err(|e| ProviderError::Protocol(format!("request encoding: {e}")))?;
        let mut builder = self
            .up
            .post_json(self.messages_url.clone(), body)
            .header("anthropic-version", API_VERSION);
        if let Some(b) = betas(req) {
            builder = builder.header("anthropic-beta", b);
        }
        let resp = self.up.send(builder).await?;
        if req.is_stream() {
            let events = sse_events(resp.bytes_stream(), self.up.timeouts.idle);
            return Ok(ChatOutcome::Stream(translate_stream(events, model)));
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
                .send(
                    self.up
                        .client
                        .get(&url)
                        .header("anthropic-version", API_VERSION),
                )
                .await?;
            let body = self.up.read_body(resp).await?;
            let page: NativeModelList = serde_json::from_slice(&body).map_err(|e| {
                let (message, _, _) = error_fields(&body, http::StatusCode::BAD_GATEWAY);
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
#[path = "tests/anthropic.rs"]
mod tests;
