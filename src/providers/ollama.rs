//! Ollama's native API: `POST {endpoint}/api/chat` (one JSON object, or NDJSON lines when
//! streaming, the last with `done: true` and the token counters) and `GET {endpoint}/api/tags`.
//!
//! Translation is pure (`to_native`, `from_native`, `StreamTranslator`); the HTTP part is thin.
//! Request parts Ollama cannot express are dropped and named in one debug line, never sent:
//! - `https://` image URLs: Ollama only takes base64 payloads and the gateway does not fetch
//!   remote images on a client's behalf (latency, and a request forgery vector);
//! - `n` > 1, `logprobs`, `user`, `tool_choice` other than `auto`/`none`, ...
//!
//! In answers, the `thinking` text of reasoning models is `reasoning_content`.
//!
//! Ollama-native knobs a client may send along (`options`, `keep_alive`) pass through.

use std::borrow::Cow;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::convert::{
    arguments_object, arguments_string, data_url, new_call_id, new_completion_id, Answer, ToolNames,
};
use super::http::{rfc3339_seconds, Upstream};
use super::kernel::{self, parse_event, ChunkWriter, Flow};
use super::sse::ndjson_lines;
use super::{ChatOutcome, ChatStream, Provider, ProviderError};
use crate::api::openai::{
    unix_now, ChatRequest, ChatResponse, Content, FunctionCall, Message, ModelInfo, ToolCall, Usage,
};

pub struct Ollama {
    up: Upstream,
    chat_url: http::Uri,
    tags_url: String,
}

impl Ollama {
    pub fn new(up: Upstream) -> Self {
        Ollama {
            chat_url: Upstream::fixed_url(&format!("{}/api/chat", up.endpoint)),
            tags_url: format!("{}/api/tags", up.endpoint),
            up,
        }
    }
}

#[async_trait]
impl Provider for Ollama {
    async fn chat(&self, req: &ChatRequest, model: &str) -> Result<ChatOutcome, ProviderError> {
        let native = to_native(req, model);
        if !native.dropped.is_empty() {
            tracing::debug!(
                provider = %self.up.id,
                dropped = ?native.dropped,
                "request parts Ollama cannot express were dropped"
            );
        }
        let body = serde_json::to_vec(&native)
            .map_err(|e| ProviderError::Protocol(format!("encoding the Ollama request: {e}")))?;
        // Local Ollama needs no key; hosted Ollama behind an auth proxy takes a Bearer token.
        let resp = self
            .up
            .send(self.up.post_json(self.chat_url.clone(), body))
            .await?;
        if req.is_stream() {
            let lines = ndjson_lines(resp.bytes_stream(), self.up.timeouts.idle);
            return Ok(ChatOutcome::Stream(translate_stream(
                lines,
                unix_now(),
                model,
            )));
        }
        let body = self.up.read_body(resp).await?;
        let native: NativeResponse = parse_event(&body, "Ollama chat response")?;
        from_native(native, model, unix_now()).map(ChatOutcome::Complete)
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let resp = self.up.send(self.up.client.get(&self.tags_url)).await?;
        let body = self.up.read_body(resp).await?;
        let tags: Tags = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Protocol(format!("Ollama model list: {e}")))?;
        Ok(tags.models.into_iter().map(model_info).collect())
    }
}

// ---------- native wire types ----------

/// The body of `POST /api/chat`. Borrows the client's request: images can be megabytes.
#[derive(Debug, Serialize)]
pub struct NativeRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<NativeMessage<'a>>,
    /// Always explicit: Ollama streams unless told `false`.
    pub stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<&'a Value>,
    /// `"json"` or a JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<&'a Value>,
    /// Ollama's switch for the reasoning of thinking models, as the client sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub think: Option<&'a Value>,
    /// What the client sent that Ollama cannot express: logged by the caller, never sent.
    #[serde(skip)]
    pub dropped: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct NativeMessage<'a> {
    pub role: &'a str,
    pub content: Cow<'a, str>,
    /// Base64 payloads, without any `data:` prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<NativeCallOut<'a>>,
    /// On `tool` messages: which tool produced this result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<&'a str>,
    /// An earlier answer's reasoning, handed back as Ollama takes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct NativeCallOut<'a> {
    pub function: NativeFunctionOut<'a>,
}

#[derive(Debug, Serialize)]
pub struct NativeFunctionOut<'a> {
    pub name: &'a str,
    /// An object, where OpenAI has a JSON string.
    pub arguments: Value,
}

/// A non-stream answer, and equally one NDJSON line of a stream.
#[derive(Debug, Default, Deserialize)]
pub struct NativeResponse {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub message: Option<NativeReply>,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub done_reason: Option<String>,
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    #[serde(default)]
    pub eval_count: Option<u64>,
    /// `{"error":"..."}`: a 200 body or a stream line can still be a failure.
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NativeReply {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub thinking: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<NativeCall>>,
}

#[derive(Debug, Deserialize)]
pub struct NativeCall {
    /// Recent Ollama versions send one; older ones do not.
    #[serde(default)]
    pub id: Option<String>,
    pub function: NativeFunction,
}

#[derive(Debug, Deserialize)]
pub struct NativeFunction {
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

#[derive(Debug, Deserialize)]
struct Tags {
    #[serde(default)]
    models: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
struct Tag {
    name: String,
    #[serde(default)]
    modified_at: Option<String>,
}

fn model_info(t: Tag) -> ModelInfo {
    let mut m = ModelInfo::new(t.name, "ollama");
    m.created = t
        .modified_at
        .as_deref()
        .and_then(rfc3339_seconds)
        .unwrap_or(0);
    m
}

// ---------- request translation ----------

/// The client's OpenAI request as Ollama's native chat request for `model`.
pub fn to_native<'a>(req: &'a ChatRequest, model: &'a str) -> NativeRequest<'a> {
    let mut dropped = Vec::new();
    // Tool results name their call by id; Ollama wants the tool's name.
    let mut names = ToolNames::default();
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        messages.push(message(i, m, &names, &mut dropped));
        names.observe(m);
    }

    let mut out = NativeRequest {
        model,
        messages,
        stream: req.is_stream(),
        tools: Vec::new(),
        format: None,
        options: Map::new(),
        keep_alive: None,
        think: None,
        dropped: Vec::new(),
    };
    // Ollama-native options the client sent go first; the mapped OpenAI fields win.
    if let Some(Value::Object(o)) = req.field("options") {
        out.options = o.clone();
    }
    let mut tools_off = false;
    for (key, value) in &req.extra {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "temperature" | "top_p" | "top_k" | "seed" | "presence_penalty"
            | "frequency_penalty" => {
                out.options.insert(key.clone(), value.clone());
            }
            "max_tokens" => {
                if req.field("max_completion_tokens").is_none() {
                    out.options.insert("num_predict".into(), value.clone());
                }
            }
            "max_completion_tokens" => {
                out.options.insert("num_predict".into(), value.clone());
            }
            "stop" => match value {
                Value::String(_) => {
                    out.options
                        .insert("stop".into(), Value::Array(vec![value.clone()]));
                }
                Value::Array(_) => {
                    out.options.insert("stop".into(), value.clone());
                }
                _ => dropped.push("stop (neither a string nor a list)".into()),
            },
            "tools" => out.tools = tools(value, &mut dropped),
            "tool_choice" => match value.as_str() {
                Some("auto") => {}
                Some("none") => tools_off = true,
                _ => dropped.push("tool_choice (Ollama always chooses)".into()),
            },
            "response_format" => out.format = format(value, &mut dropped),
            "keep_alive" => out.keep_alive = Some(value),
            "think" => out.think = Some(value),
            // Handled above, or always honoured: Ollama reports usage on every answer.
            "options" | "stream_options" => {}
            "n" if value.as_u64() == Some(1) => {}
            _ => dropped.push(key.clone()),
        }
    }
    if tools_off && !out.tools.is_empty() {
        out.tools.clear();
        dropped.push("tools (tool_choice is none)".into());
    }
    dropped.sort();
    out.dropped = dropped;
    out
}

fn message<'a>(
    i: usize,
    m: &'a Message,
    names: &ToolNames<'a>,
    dropped: &mut Vec<String>,
) -> NativeMessage<'a> {
    let role = match m.role.as_str() {
        "developer" => "system",
        // The legacy OpenAI function-result role is a tool result by another name.
        "function" => "tool",
        r => r,
    };
    let mut images = Vec::new();
    let content = match &m.content {
        None => Cow::Borrowed(""),
        Some(Content::Text(s)) => Cow::Borrowed(s.as_str()),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.kind.as_str(), &p.text, &p.image_url) {
                    ("text", Some(t), _) => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(t);
                    }
                    ("image_url", _, Some(img)) => match data_url(&img.url) {
                        Some(d) => images.push(d.data),
                        None => dropped.push(format!(
                            "messages[{i}].content[{j}] (image not a base64 data: URL)"
                        )),
                    },
                    (kind, _, _) => dropped.push(format!("messages[{i}].content[{j}] ({kind})")),
                }
            }
            Cow::Owned(text)
        }
    };
    let tool_calls = m
        .tool_calls
        .iter()
        .flatten()
        .map(|c| NativeCallOut {
            function: NativeFunctionOut {
                name: &c.function.name,
                arguments: arguments_object(&c.function.arguments),
            },
        })
        .collect();
    let tool_name = (role == "tool").then(|| names.name_for(m)).flatten();
    NativeMessage {
        role,
        content,
        images,
        tool_calls,
        tool_name,
        thinking: m.reasoning_content.as_deref().filter(|t| !t.is_empty()),
    }
}

/// OpenAI function tools go up in the same shape; other tool kinds do not exist in Ollama.
fn tools<'a>(value: &'a Value, dropped: &mut Vec<String>) -> Vec<&'a Value> {
    let Some(list) = value.as_array() else {
        dropped.push("tools (not a list)".into());
        return Vec::new();
    };
    list.iter()
        .enumerate()
        .filter(|(i, t)| {
            let function = t.get("function").is_some()
                && matches!(
                    t.get("type").and_then(Value::as_str),
                    None | Some("function")
                );
            if !function {
                dropped.push(format!("tools[{i}] (not a function tool)"));
            }
            function
        })
        .map(|(_, t)| t)
        .collect()
}

fn format(value: &Value, dropped: &mut Vec<String>) -> Option<Value> {
    match value.get("type").and_then(Value::as_str) {
        Some("json_object") => Some(Value::String("json".into())),
        Some("json_schema") => match value.get("json_schema").and_then(|s| s.get("schema")) {
            Some(schema) => Some(schema.clone()),
            None => {
                dropped.push("response_format (json_schema without a schema)".into());
                None
            }
        },
        Some("text") => None,
        _ => {
            dropped.push("response_format".into());
            None
        }
    }
}

// ---------- response translation ----------

/// Ollama's one-object answer as an OpenAI chat completion; `now` is the `created` fallback
/// when `created_at` does not parse.
pub fn from_native(
    n: NativeResponse,
    model: &str,
    now: i64,
) -> Result<ChatResponse, ProviderError> {
    if let Some(e) = &n.error {
        return Err(upstream_error(e));
    }
    let reply = n.message.unwrap_or_default();
    let tool_calls: Vec<ToolCall> = reply
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|c| ToolCall {
            id: call_id(c.id),
            kind: "function".into(),
            function: FunctionCall {
                name: c.function.name,
                arguments: arguments_string(&c.function.arguments),
            },
        })
        .collect();
    let finish = finish_reason(n.done_reason.as_deref(), !tool_calls.is_empty());
    Ok(Answer {
        id: new_completion_id(),
        model: n
            .model
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| model.into()),
        created: created(n.created_at.as_deref(), now),
        text: reply.content.unwrap_or_default(),
        reasoning: reply.thinking.unwrap_or_default(),
        tool_calls,
        finish_reason: finish,
        usage: usage(n.prompt_eval_count, n.eval_count),
    }
    .into_response())
}

pub fn finish_reason(done_reason: Option<&str>, tool_calls: bool) -> &'static str {
    if tool_calls {
        return "tool_calls";
    }
    match done_reason {
        Some("length") => "length",
        _ => "stop",
    }
}

fn usage(prompt: Option<u64>, completion: Option<u64>) -> Option<Usage> {
    (prompt.is_some() || completion.is_some())
        .then(|| Usage::new(prompt.unwrap_or(0), completion.unwrap_or(0)))
}

fn created(created_at: Option<&str>, now: i64) -> i64 {
    created_at
        .and_then(rfc3339_seconds)
        .filter(|t| *t > 0)
        .unwrap_or(now)
}

/// Recent Ollama versions name their calls; older ones do not.
fn call_id(native: Option<String>) -> String {
    native
        .filter(|id| !id.is_empty() && id.len() <= 40)
        .unwrap_or_else(new_call_id)
}

fn upstream_error(e: &Value) -> ProviderError {
    let message = match e {
        Value::String(s) => s.clone(),
        v => v
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string()),
    };
    ProviderError::Upstream {
        status: 502,
        message,
        kind: None,
        code: None,
    }
}

// ---------- streaming ----------

/// Ollama's NDJSON lines → canonical deltas. Ollama sends each tool call whole in one line;
/// `thinking` is the reasoning of thinking models.
pub struct StreamTranslator {
    /// The `created` fallback.
    now: i64,
}

impl StreamTranslator {
    pub fn new(now: i64) -> Self {
        StreamTranslator { now }
    }
}

impl kernel::StreamTranslator for StreamTranslator {
    fn on_event(&mut self, line: &[u8], out: &mut ChunkWriter) -> Result<Flow, ProviderError> {
        let n: NativeResponse = parse_event(line, "Ollama stream line")?;
        if let Some(e) = &n.error {
            return Err(upstream_error(e));
        }
        if !out.is_started() {
            out.set_model(n.model.as_deref().unwrap_or_default());
            out.set_created(created(n.created_at.as_deref(), self.now));
            out.start();
        }
        let reply = n.message.unwrap_or_default();
        out.reasoning(reply.thinking.as_deref().unwrap_or_default());
        out.text(reply.content.as_deref().unwrap_or_default());
        for c in reply.tool_calls.unwrap_or_default() {
            let arguments = arguments_string(&c.function.arguments);
            out.tool_call(call_id(c.id), c.function.name, arguments);
        }
        if !n.done {
            return Ok(Flow::More);
        }
        if let Some(u) = usage(n.prompt_eval_count, n.eval_count) {
            out.usage(u);
        }
        out.finish(finish_reason(
            n.done_reason.as_deref(),
            out.tool_calls() > 0,
        ));
        // Lines after `done: true` (there should be none) are not waited for.
        Ok(Flow::Done)
    }

    fn finish(&mut self, _out: &mut ChunkWriter) -> Result<(), ProviderError> {
        Err(ProviderError::Protocol(
            "Ollama stream ended before its done line".into(),
        ))
    }
}

pub fn translate_stream<S>(lines: S, now: i64, model: &str) -> ChatStream
where
    S: futures::Stream<Item = Result<Bytes, ProviderError>> + Send + 'static,
{
    let writer = ChunkWriter::new(new_completion_id(), model, now);
    kernel::drive(lines, StreamTranslator::new(now), writer)
}

#[cfg(test)]
#[path = "tests/ollama.rs"]
mod tests;
