//! Ollama's native API: `POST {endpoint}/api/chat` (one JSON object, or NDJSON lines when
//! streaming, the last with `done: true` and the token counters) and `GET {endpoint}/api/tags`.
//!
//! Translation is pure (`to_native`, `from_native`, `StreamTranslator`); the HTTP part is thin.
//! Request parts Ollama cannot express are dropped and named in one debug line, never sent:
//! - `https://` image URLs: Ollama only takes base64 payloads and the gateway does not fetch
//!   remote images on a client's behalf (latency, and a request forgery vector);
//! - `n` > 1, `logprobs`, `user`, `tool_choice` other than `auto`/`none`, ...
//!
//! In answers, the `thinking` text of reasoning models is skipped: the canonical OpenAI types
//! have no field for it.
//!
//! Ollama-native knobs a client may send along (`options`, `keep_alive`) pass through.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::http::{rfc3339_seconds, Upstream};
use super::sse::ndjson_lines;
use super::{ChatOutcome, ChatStream, Provider, ProviderError, StreamEnd, StreamItem};
use crate::api::openai::{
    unix_now, ChatChunk, ChatRequest, ChatResponse, Choice, Content, Delta, Extra, FunctionCall,
    FunctionDelta, Message, ModelInfo, ResponseMessage, ToolCall, ToolCallDelta, Usage,
};

pub struct Ollama {
    up: Upstream,
    chat_url: reqwest::Url,
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

    /// Local Ollama needs no key; hosted Ollama behind an auth proxy takes a Bearer token.
    fn authorized(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        Ok(match self.up.key()? {
            Some(key) => req.bearer_auth(key.expose()),
            None => req,
        })
    }
}

#[async_trait]
impl Provider for Ollama {
    fn id(&self) -> &str {
        &self.up.id
    }

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
        let builder = self
            .up
            .client
            .post(self.chat_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let resp = self.up.send(self.authorized(builder)?).await?;
        let token = unique_token();
        if req.is_stream() {
            let lines = ndjson_lines(resp, self.up.timeouts.idle);
            let translator = StreamTranslator::new(model, token, unix_now());
            return Ok(ChatOutcome::Stream(translate_stream(lines, translator)));
        }
        let body = self.up.read_body(resp).await?;
        let native: NativeResponse = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Protocol(format!("Ollama chat response: {e}")))?;
        from_native(native, model, &token, unix_now()).map(ChatOutcome::Complete)
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let resp = self
            .up
            .send(self.authorized(self.up.client.get(&self.tags_url))?)
            .await?;
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
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        messages.push(message(i, m, &mut call_names, &mut dropped));
    }

    let mut out = NativeRequest {
        model,
        messages,
        stream: req.is_stream(),
        tools: Vec::new(),
        format: None,
        options: Map::new(),
        keep_alive: None,
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
    call_names: &mut HashMap<&'a str, &'a str>,
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
                    ("image_url", _, Some(img)) => match base64_payload(&img.url) {
                        Some(b64) => images.push(b64),
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
    let mut tool_calls = Vec::new();
    for (k, c) in m.tool_calls.iter().flatten().enumerate() {
        if !c.id.is_empty() {
            call_names.insert(c.id.as_str(), c.function.name.as_str());
        }
        tool_calls.push(NativeCallOut {
            function: NativeFunctionOut {
                name: &c.function.name,
                arguments: arguments_object(&c.function.arguments).unwrap_or_else(|| {
                    dropped.push(format!(
                        "messages[{i}].tool_calls[{k}].function.arguments (not a JSON object)"
                    ));
                    Value::Object(Map::new())
                }),
            },
        });
    }
    let tool_name = (role == "tool")
        .then(|| {
            m.tool_call_id
                .as_deref()
                .and_then(|id| call_names.get(id).copied())
                .or(m.name.as_deref())
        })
        .flatten();
    NativeMessage {
        role,
        content,
        images,
        tool_calls,
        tool_name,
    }
}

/// The base64 payload of a `data:...;base64,` URL; `None` for anything else.
pub fn base64_payload(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("data:")?;
    let (meta, payload) = rest.split_once(',')?;
    meta.ends_with(";base64").then_some(payload)
}

/// OpenAI's arguments string as the object Ollama wants; empty means no arguments.
fn arguments_object(args: &str) -> Option<Value> {
    if args.trim().is_empty() {
        return Some(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
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

/// Ollama's one-object answer as an OpenAI chat completion. `token` makes the ids unique,
/// `now` is the `created` fallback when `created_at` does not parse.
pub fn from_native(
    n: NativeResponse,
    model: &str,
    token: &str,
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
        .enumerate()
        .map(|(i, c)| ToolCall {
            id: c
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| call_id(token, i)),
            kind: "function".into(),
            function: FunctionCall {
                name: c.function.name,
                arguments: arguments_string(c.function.arguments),
            },
        })
        .collect();
    let content = reply.content.unwrap_or_default();
    let has_tools = !tool_calls.is_empty();
    let usage = usage(n.prompt_eval_count, n.eval_count);
    Ok(ChatResponse {
        id: format!("chatcmpl-{token}"),
        object: "chat.completion".into(),
        created: created(n.created_at.as_deref(), now),
        model: n
            .model
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| model.into()),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".into(),
                // OpenAI sends null content next to tool calls, never an empty string.
                content: (!content.is_empty() || !has_tools).then_some(content),
                refusal: None,
                tool_calls: has_tools.then_some(tool_calls),
                extra: Extra::new(),
            },
            finish_reason: Some(finish_reason(n.done_reason.as_deref(), has_tools).into()),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage,
        extra: Extra::new(),
    })
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

/// Ollama's arguments object as OpenAI's JSON string.
fn arguments_string(args: Value) -> String {
    match args {
        Value::Null => "{}".into(),
        // Some Ollama-compatible servers already send a string.
        Value::String(s) => s,
        v => v.to_string(),
    }
}

fn call_id(token: &str, n: usize) -> String {
    format!("call_{token}_{n}")
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

fn unique_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

// ---------- streaming ----------

/// Ollama's NDJSON lines → OpenAI chunks. Ollama sends each tool call whole in one line, so a
/// call becomes one delta carrying its id, name and complete arguments at a stable `index`.
pub struct StreamTranslator {
    token: String,
    model: String,
    created: i64,
    now: i64,
    started: bool,
    tool_calls: u32,
    content_chunks: u64,
    usage: Option<Usage>,
    done: bool,
}

impl StreamTranslator {
    pub fn new(model: &str, token: String, now: i64) -> Self {
        StreamTranslator {
            token,
            model: model.to_string(),
            created: now,
            now,
            started: false,
            tool_calls: 0,
            content_chunks: 0,
            usage: None,
            done: false,
        }
    }

    fn id(&self) -> String {
        format!("chatcmpl-{}", self.token)
    }

    /// Whether the `done: true` line was seen: the answer is complete.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// One NDJSON line → the chunks (JSON) the client gets of it, in order.
    pub fn on_line(&mut self, line: &[u8]) -> Result<Vec<Bytes>, ProviderError> {
        let n: NativeResponse = serde_json::from_slice(line)
            .map_err(|e| ProviderError::Protocol(format!("Ollama stream line: {e}")))?;
        if let Some(e) = &n.error {
            return Err(upstream_error(e));
        }
        if self.done {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            if let Some(m) = n.model.as_deref().filter(|m| !m.is_empty()) {
                self.model = m.to_string();
            }
            self.created = created(n.created_at.as_deref(), self.now);
            out.push(self.chunk(
                Delta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                    ..Delta::default()
                },
                None,
            ));
        }
        let reply = n.message.unwrap_or_default();
        if let Some(text) = reply.content.filter(|t| !t.is_empty()) {
            self.content_chunks += 1;
            out.push(self.chunk(
                Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                None,
            ));
        }
        for c in reply.tool_calls.unwrap_or_default() {
            let index = self.tool_calls;
            self.tool_calls += 1;
            self.content_chunks += 1;
            let id =
                c.id.filter(|id| !id.is_empty())
                    .unwrap_or_else(|| call_id(&self.token, index as usize));
            out.push(self.chunk(
                Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index,
                        id: Some(id),
                        kind: Some("function".into()),
                        function: Some(FunctionDelta {
                            name: Some(c.function.name),
                            arguments: Some(arguments_string(c.function.arguments)),
                        }),
                    }]),
                    ..Delta::default()
                },
                None,
            ));
        }
        if n.done {
            self.done = true;
            self.usage = usage(n.prompt_eval_count, n.eval_count);
            let finish = finish_reason(n.done_reason.as_deref(), self.tool_calls > 0);
            out.push(self.chunk(Delta::default(), Some(finish)));
        }
        Ok(out)
    }

    fn chunk(&self, delta: Delta, finish: Option<&str>) -> Bytes {
        let c = ChatChunk::delta(&self.id(), self.created, &self.model, delta, finish);
        Bytes::from(serde_json::to_vec(&c).unwrap_or_default())
    }

    /// What the final usage chunk is built from.
    pub fn end(&self) -> StreamEnd {
        StreamEnd {
            id: self.id(),
            model: self.model.clone(),
            created: self.created,
            usage: self.usage.clone(),
            content_chunks: self.content_chunks,
        }
    }
}

struct StreamState<S> {
    lines: std::pin::Pin<Box<S>>,
    tr: StreamTranslator,
    pending: VecDeque<Bytes>,
    over: bool,
}

fn translate_stream<S>(lines: S, tr: StreamTranslator) -> ChatStream
where
    S: Stream<Item = Result<Bytes, ProviderError>> + Send + 'static,
{
    let state = StreamState {
        lines: Box::pin(lines),
        tr,
        pending: VecDeque::new(),
        over: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(chunk) = s.pending.pop_front() {
                return Some((Ok(StreamItem::Chunk(chunk)), s));
            }
            if s.over {
                return None;
            }
            if s.tr.is_done() {
                // Lines after `done: true` (there should be none) are not waited for.
                s.over = true;
                return Some((Ok(StreamItem::End(s.tr.end())), s));
            }
            match s.lines.next().await {
                None => {
                    s.over = true;
                    return Some((
                        Err(ProviderError::Protocol(
                            "Ollama stream ended before its done line".into(),
                        )),
                        s,
                    ));
                }
                Some(Err(e)) => {
                    s.over = true;
                    return Some((Err(e), s));
                }
                Some(Ok(line)) => match s.tr.on_line(&line) {
                    Ok(chunks) => s.pending.extend(chunks),
                    Err(e) => {
                        s.over = true;
                        return Some((Err(e), s));
                    }
                },
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn native(v: Value) -> (Value, Vec<String>) {
        let req = request(v);
        let n = to_native(&req, "llama3.2");
        (serde_json::to_value(&n).unwrap(), n.dropped.clone())
    }

    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk";

    #[test]
    fn messages_translate_by_role() {
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "plain text",
                json!({"role": "user", "content": "hi"}),
                json!({"role": "user", "content": "hi"}),
            ),
            (
                "developer is system",
                json!({"role": "developer", "content": "be brief"}),
                json!({"role": "system", "content": "be brief"}),
            ),
            (
                "text parts joined, data image as base64",
                json!({"role": "user", "content": [
                    {"type": "text", "text": "what is"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}},
                    {"type": "text", "text": "this?"}]}),
                json!({"role": "user", "content": "what is\nthis?", "images": [PNG]}),
            ),
            (
                "https image dropped",
                json!({"role": "user", "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}),
                json!({"role": "user", "content": "see"}),
            ),
            (
                "assistant tool calls with object arguments",
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}]}),
                json!({"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                    {"function": {"name": "now", "arguments": {}}}]}),
            ),
        ];
        for (name, input, want) in cases {
            let (out, _) = native(json!({"model": "m", "messages": [input]}));
            assert_eq!(out["messages"][0], want, "{name}");
        }
    }

    #[test]
    fn tool_results_carry_the_tool_name() {
        let (out, dropped) = native(json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "unknown", "content": "?"},
            {"role": "function", "name": "legacy", "content": "old"}
        ]}));
        assert_eq!(
            out["messages"][2],
            json!({"role": "tool", "content": "sunny", "tool_name": "get_weather"})
        );
        assert_eq!(out["messages"][3], json!({"role": "tool", "content": "?"}));
        assert_eq!(
            out["messages"][4],
            json!({"role": "tool", "content": "old", "tool_name": "legacy"})
        );
        assert!(dropped.is_empty(), "{dropped:?}");
    }

    #[test]
    fn options_format_and_stream_flag() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let cases: Vec<(Value, Value)> = vec![
            (json!({}), json!({"stream": false})),
            (json!({"stream": true}), json!({"stream": true})),
            (
                json!({"temperature": 0.2, "top_p": 0.9, "seed": 7, "max_tokens": 50, "stop": "END"}),
                json!({"stream": false, "options": {"temperature": 0.2, "top_p": 0.9, "seed": 7, "num_predict": 50, "stop": ["END"]}}),
            ),
            (
                json!({"max_tokens": 50, "max_completion_tokens": 60, "stop": ["a", "b"]}),
                json!({"stream": false, "options": {"num_predict": 60, "stop": ["a", "b"]}}),
            ),
            (
                json!({"options": {"num_ctx": 8192, "temperature": 1.0}, "temperature": 0.1, "keep_alive": "10m"}),
                json!({"stream": false, "options": {"num_ctx": 8192, "temperature": 0.1}, "keep_alive": "10m"}),
            ),
            (
                json!({"response_format": {"type": "json_object"}}),
                json!({"stream": false, "format": "json"}),
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}),
                json!({"stream": false, "format": schema}),
            ),
            (
                json!({"response_format": {"type": "text"}}),
                json!({"stream": false}),
            ),
        ];
        for (fields, want) in cases {
            let mut req = json!({"model": "m", "messages": []});
            for (k, v) in fields.as_object().unwrap() {
                req[k] = v.clone();
            }
            let (mut out, _) = native(req);
            let o = out.as_object_mut().unwrap();
            assert_eq!(o.remove("model"), Some(json!("llama3.2")));
            assert_eq!(o.remove("messages"), Some(json!([])));
            assert_eq!(out, want, "{fields}");
        }
    }

    #[test]
    fn tools_pass_and_what_cannot_be_expressed_is_named() {
        let tool = json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}});
        let (out, dropped) = native(json!({
            "model": "m", "messages": [], "tools": [tool, {"type": "web_search"}],
            "tool_choice": "required", "user": "u", "n": 1, "logprobs": true,
            "stream_options": {"include_usage": true}, "parallel_tool_calls": false
        }));
        assert_eq!(out["tools"], json!([tool]));
        assert_eq!(
            dropped,
            vec![
                "logprobs",
                "parallel_tool_calls",
                "tool_choice (Ollama always chooses)",
                "tools[1] (not a function tool)",
                "user"
            ]
        );
        let (out, dropped) =
            native(json!({"model": "m", "messages": [], "tools": [tool], "tool_choice": "none"}));
        assert!(out.get("tools").is_none());
        assert_eq!(dropped, vec!["tools (tool_choice is none)"]);
    }

    #[test]
    fn dropped_message_parts_are_named() {
        let (_, dropped) = native(json!({"model": "m", "messages": [
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}
        ]}));
        assert_eq!(
            dropped,
            vec![
                "messages[0].content[0] (image not a base64 data: URL)",
                "messages[0].content[1] (input_audio)",
                "messages[1].tool_calls[0].function.arguments (not a JSON object)",
            ]
        );
    }

    #[test]
    fn base64_payloads() {
        assert_eq!(base64_payload("data:image/png;base64,QUJD"), Some("QUJD"));
        assert_eq!(base64_payload("data:;base64,QUJD"), Some("QUJD"));
        assert_eq!(base64_payload("data:text/plain,hello"), None);
        assert_eq!(base64_payload("https://example.com/a.png"), None);
    }

    fn parse(v: Value) -> NativeResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn non_stream_answers_translate() {
        // Shapes as captured from Ollama's API documentation.
        let text = parse(json!({
            "model": "llama3.2", "created_at": "2023-12-12T14:13:43.416799Z",
            "message": {"role": "assistant", "content": "Hello! How are you today?"},
            "done": true, "done_reason": "stop", "total_duration": 5191566416u64,
            "prompt_eval_count": 26, "eval_count": 298
        }));
        let r = from_native(text, "m", "tok", 99).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["id"], "chatcmpl-tok");
        assert_eq!(v["created"], 1_702_390_423);
        assert_eq!(v["model"], "llama3.2");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Hello! How are you today?"
        );
        assert_eq!(v["choices"][0]["message"]["refusal"], Value::Null);
        assert_eq!(v["choices"][0]["logprobs"], Value::Null);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 26, "completion_tokens": 298, "total_tokens": 324})
        );

        let tools = parse(json!({
            "model": "llama3.2", "created_at": "not a time",
            "message": {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_current_weather", "arguments": {"format": "celsius", "location": "Paris, FR"}}},
                {"id": "call_up", "function": {"name": "now", "arguments": {}}}]},
            "done_reason": "stop", "done": true
        }));
        let v = serde_json::to_value(from_native(tools, "m", "tok", 99).unwrap()).unwrap();
        assert_eq!(v["created"], 99);
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], Value::Null);
        assert_eq!(msg["tool_calls"][0]["id"], "call_tok_0");
        assert_eq!(msg["tool_calls"][0]["type"], "function");
        let args: Value = serde_json::from_str(
            msg["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(args, json!({"format": "celsius", "location": "Paris, FR"}));
        assert_eq!(
            msg["tool_calls"][1]["id"], "call_up",
            "upstream ids are kept"
        );
        assert_eq!(msg["tool_calls"][1]["function"]["arguments"], "{}");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert!(v.get("usage").is_none(), "no counters, no invented usage");

        let err = from_native(parse(json!({"error": "boom"})), "m", "t", 0).unwrap_err();
        assert!(
            matches!(err, ProviderError::Upstream { status: 502, ref message, .. } if message == "boom")
        );
    }

    #[test]
    fn finish_reasons() {
        let cases = [
            (Some("stop"), false, "stop"),
            (Some("length"), false, "length"),
            (Some("load"), false, "stop"),
            (None, false, "stop"),
            (Some("stop"), true, "tool_calls"),
            (Some("length"), true, "tool_calls"),
        ];
        for (reason, tools, want) in cases {
            assert_eq!(finish_reason(reason, tools), want, "{reason:?} {tools}");
        }
    }

    #[test]
    fn rfc3339_times() {
        let cases = [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2023-08-04T19:22:45.499127Z", Some(1_691_176_965)),
            ("2023-08-04T08:52:19.385406455-07:00", Some(1_691_164_339)),
            ("2024-02-29T12:00:00+02:00", Some(1_709_200_800)),
            ("2023-08-04 19:22:45Z", Some(1_691_176_965)),
            ("2023-13-04T19:22:45Z", None),
            ("2023-08-04T19:22:45", None),
            ("2023-08-04T19:22:45+0700", None),
            ("yesterday", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(rfc3339_seconds(s), want, "{s}");
        }
    }

    fn chunks(tr: &mut StreamTranslator, line: Value) -> Vec<Value> {
        tr.on_line(line.to_string().as_bytes())
            .unwrap()
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    }

    #[test]
    fn stream_text_then_done() {
        let mut tr = StreamTranslator::new("m", "tok".into(), 5);
        let first = chunks(
            &mut tr,
            json!({"model": "llama3.2", "created_at": "2023-08-04T19:22:45Z",
                   "message": {"role": "assistant", "content": "The"}, "done": false}),
        );
        assert_eq!(first.len(), 2, "role chunk, then the content");
        assert_eq!(
            first[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(first[0]["id"], "chatcmpl-tok");
        assert_eq!(first[0]["created"], 1_691_176_965);
        assert_eq!(first[0]["model"], "llama3.2");
        assert_eq!(first[1]["choices"][0]["delta"], json!({"content": "The"}));
        assert_eq!(first[1]["choices"][0]["finish_reason"], Value::Null);
        let thinking = chunks(
            &mut tr,
            json!({"message": {"role": "assistant", "content": "", "thinking": "hmm"}, "done": false}),
        );
        assert!(thinking.is_empty());
        assert!(!tr.is_done());
        let last = chunks(
            &mut tr,
            json!({"model": "llama3.2", "message": {"role": "assistant", "content": ""},
                   "done": true, "done_reason": "length", "prompt_eval_count": 61, "eval_count": 468}),
        );
        assert_eq!(last.len(), 1);
        assert_eq!(last[0]["choices"][0]["delta"], json!({}));
        assert_eq!(last[0]["choices"][0]["finish_reason"], "length");
        assert!(tr.is_done());
        let end = tr.end();
        assert_eq!(end.usage, Some(Usage::new(61, 468)));
        assert_eq!(
            (end.id.as_str(), end.created, end.content_chunks),
            ("chatcmpl-tok", 1_691_176_965, 1)
        );
    }

    #[test]
    fn stream_tool_calls_keep_their_index() {
        let mut tr = StreamTranslator::new("m", "tok".into(), 5);
        let calls = chunks(
            &mut tr,
            json!({"model": "llama3.2", "message": {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "a", "arguments": {"x": 1}}},
                {"function": {"name": "b", "arguments": {}}}]}, "done": false}),
        );
        assert_eq!(calls.len(), 3);
        assert_eq!(
            calls[1]["choices"][0]["delta"]["tool_calls"],
            json!([{"index": 0, "id": "call_tok_0", "type": "function",
                    "function": {"name": "a", "arguments": "{\"x\":1}"}}])
        );
        assert_eq!(calls[2]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
        assert_eq!(
            calls[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "call_tok_1"
        );
        let later = chunks(
            &mut tr,
            json!({"message": {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "c", "arguments": {}}}]}, "done": true, "done_reason": "stop"}),
        );
        assert_eq!(later[0]["choices"][0]["delta"]["tool_calls"][0]["index"], 2);
        assert_eq!(later[1]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(tr.end().usage, None);
    }

    #[test]
    fn stream_error_and_garbage_lines_fail() {
        let mut tr = StreamTranslator::new("m", "tok".into(), 5);
        let e = tr.on_line(br#"{"error":"an error was encountered while running the model"}"#);
        assert!(matches!(
            e,
            Err(ProviderError::Upstream { status: 502, .. })
        ));
        assert!(matches!(
            tr.on_line(b"{not json"),
            Err(ProviderError::Protocol(_))
        ));
    }

    async fn run(lines: Vec<&'static [u8]>) -> Vec<Result<StreamItem, ProviderError>> {
        let lines = futures::stream::iter(lines.into_iter().map(|l| Ok(Bytes::from_static(l))));
        translate_stream(lines, StreamTranslator::new("m", "tok".into(), 5))
            .collect()
            .await
    }

    #[tokio::test]
    async fn stream_ends_with_end_item_or_an_error() {
        let items = run(vec![
            br#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#,
            br#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":1}"#,
            br#"{"ignored":"after done"}"#,
        ])
        .await;
        assert_eq!(items.len(), 4, "role, content, finish, end");
        match items.last() {
            Some(Ok(StreamItem::End(end))) => assert_eq!(end.usage, Some(Usage::new(3, 1))),
            other => panic!("expected End, got {other:?}"),
        }

        let items = run(vec![
            br#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#,
        ])
        .await;
        assert!(
            matches!(items.last(), Some(Err(ProviderError::Protocol(_)))),
            "EOF without done"
        );

        let items = run(vec![
            br#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#,
            br#"{"error":"out of memory"}"#,
            br#"{"message":{"role":"assistant","content":"never"},"done":true}"#,
        ])
        .await;
        assert_eq!(items.len(), 3);
        assert!(
            matches!(&items[2], Err(ProviderError::Upstream { message, .. }) if message == "out of memory")
        );
    }

    #[test]
    fn tags_become_model_infos() {
        let tags: Tags = serde_json::from_value(json!({"models": [
            {"name": "codellama:13b", "model": "codellama:13b",
             "modified_at": "2023-11-04T14:56:49.277302595-07:00", "size": 7365960935u64,
             "digest": "9f43", "details": {"family": "llama"}},
            {"name": "x:latest", "modified_at": "garbage"}
        ]}))
        .unwrap();
        let infos: Vec<ModelInfo> = tags.models.into_iter().map(model_info).collect();
        assert_eq!(infos[0].id, "codellama:13b");
        assert_eq!(infos[0].owned_by, "ollama");
        assert_eq!(infos[0].created, 1_699_135_009);
        assert_eq!(infos[1].created, 0);
    }
}
