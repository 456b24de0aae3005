//! Anthropic Messages ⇄ canonical Chat Completions (design.md §12), for targets that do not
//! speak Messages natively: `to_canonical` (request, with the checks that keep our
//! translation from causing an upstream 400), `from_canonical` (a complete answer), and
//! `StreamTranslator` (fed one canonical chunk at a time, yields Messages events).

use std::collections::{HashMap, HashSet};

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Value};

use super::InvalidRequest;
use crate::api::anthropic::{
    ContentBlock, ImageSource, InputMessage, MessageContent, MessageResponse, MessageUsage,
    MessagesRequest, ResponseBlock, Role, TextOr, ToolChoice, ToolResultBlock,
};
use crate::api::openai::{
    unix_now, ChatRequest, ChatResponse, Content, ContentPart, Extra, FunctionCall, ImageUrl,
    Message, ToolCall, Usage,
};
use crate::providers::StreamEnd;

fn invalid(msg: impl Into<String>) -> InvalidRequest {
    InvalidRequest(msg.into())
}

// ---------- request ----------

/// The canonical request a translated target receives. `require_max_tokens` is false for
/// `count_tokens`, which (as Anthropic's) does not need it.
pub fn to_canonical(
    req: &MessagesRequest,
    require_max_tokens: bool,
) -> Result<ChatRequest, InvalidRequest> {
    if req.model.trim().is_empty() {
        return Err(invalid("model: must not be empty"));
    }
    let mut extra = Extra::new();
    match req.max_tokens {
        Some(0) => return Err(invalid("max_tokens: must be at least 1")),
        Some(n) => {
            extra.insert("max_tokens".into(), json!(n));
        }
        None if require_max_tokens => return Err(invalid("max_tokens: Field required")),
        None => {}
    }
    if req.messages.is_empty() {
        return Err(invalid("messages: at least one message is required"));
    }
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        let text = system_text(system);
        if !text.is_empty() {
            messages.push(Message::new("system", text));
        }
    }
    translate_turns(&req.messages, &mut messages)?;

    if let Some(stops) = req.stop_sequences.as_ref().filter(|s| !s.is_empty()) {
        extra.insert("stop".into(), json!(stops));
    }
    if let Some(t) = req.temperature {
        extra.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        extra.insert("top_p".into(), json!(p));
    }
    let tools = translate_tools(req);
    if !tools.is_empty() {
        extra.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = &req.tool_choice {
            let (choice, no_parallel) = translate_tool_choice(choice);
            extra.insert("tool_choice".into(), choice);
            if no_parallel {
                extra.insert("parallel_tool_calls".into(), json!(false));
            }
        }
    }
    if let Some(user) = req.metadata.as_ref().and_then(|m| m.user_id.as_deref()) {
        extra.insert("user".into(), json!(user));
    }
    if !req.extra.is_empty() {
        // thinking, top_k, context_management, output_config, ...: Anthropic-only, and an
        // OpenAI-format upstream would reject them.
        let names: Vec<&String> = req.extra.keys().collect();
        tracing::debug!(
            ?names,
            "dropping Anthropic-only fields for a translated target"
        );
    }
    Ok(ChatRequest {
        model: req.model.clone(),
        messages,
        stream: Some(req.is_stream()),
        extra,
        anthropic_beta: None,
        native: None,
    })
}

fn system_text(system: &TextOr<crate::api::anthropic::TextBlock>) -> String {
    match system {
        TextOr::Text(s) => s.clone(),
        TextOr::Blocks(blocks) => blocks
            .iter()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

/// The turns, checked as the Messages API checks them (roles alternate, every `tool_use`
/// answered by a `tool_result` in the next turn and no result without its call), since an
/// OpenAI-format upstream would otherwise reject our translation.
fn translate_turns(turns: &[InputMessage], out: &mut Vec<Message>) -> Result<(), InvalidRequest> {
    let mut last: Option<(usize, Role)> = None;
    // tool_use ids of the previous assistant turn, still waiting for their results.
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in turns.iter().enumerate() {
        if m.role == Role::System {
            // Claude Code sends one inside `messages`: a system message at that place.
            out.push(Message::new("system", content_text(&m.content)));
            continue;
        }
        if let Some((j, role)) = last {
            if role == m.role {
                return Err(invalid(format!(
                    "messages: roles must alternate between \"user\" and \"assistant\", but messages[{j}] and messages[{i}] are both \"{}\"",
                    role_name(role)
                )));
            }
        }
        if m.role == Role::User {
            user_turn(i, &m.content, &pending, out)?;
            pending.clear();
        } else {
            if let Some(id) = pending.first() {
                return Err(missing_result(i - 1, id));
            }
            pending = assistant_turn(i, &m.content, out)?;
        }
        last = Some((i, m.role));
    }
    Ok(())
}

fn missing_result(i: usize, id: &str) -> InvalidRequest {
    invalid(format!(
        "messages[{i}]: `tool_use` id '{id}' has no `tool_result` block in the next user message"
    ))
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
    }
}

fn content_text(c: &MessageContent) -> String {
    match c {
        TextOr::Text(s) => s.clone(),
        TextOr::Blocks(blocks) => blocks
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

fn image_part(source: &ImageSource) -> ContentPart {
    let url = match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url.clone(),
    };
    ContentPart {
        kind: "image_url".into(),
        text: None,
        image_url: Some(ImageUrl { url, detail: None }),
        extra: Extra::new(),
    }
}

fn text_part(text: &str) -> ContentPart {
    ContentPart {
        kind: "text".into(),
        text: Some(text.to_string()),
        image_url: None,
        extra: Extra::new(),
    }
}

/// A user turn: its `tool_result` blocks become `tool` messages (first, as Chat Completions
/// wants them right after the assistant's calls), the rest one user message.
fn user_turn(
    i: usize,
    content: &MessageContent,
    pending: &[String],
    out: &mut Vec<Message>,
) -> Result<(), InvalidRequest> {
    let blocks = match content {
        TextOr::Text(s) => {
            if let Some(id) = pending.first() {
                return Err(missing_result(i - 1, id));
            }
            out.push(Message::new("user", s.clone()));
            return Ok(());
        }
        TextOr::Blocks(b) => b,
    };
    let mut parts = Vec::new();
    let mut answered = HashSet::new();
    for (j, b) in blocks.iter().enumerate() {
        match b {
            ContentBlock::Text { text } => parts.push(text_part(text)),
            ContentBlock::Image { source } => parts.push(image_part(source)),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                if !pending.contains(tool_use_id) {
                    return Err(invalid(format!(
                        "messages[{i}].content[{j}].tool_use_id: no `tool_use` block with id '{tool_use_id}' in the previous assistant message"
                    )));
                }
                answered.insert(tool_use_id.as_str());
                let mut text = match content {
                    None => String::new(),
                    Some(TextOr::Text(s)) => s.clone(),
                    Some(TextOr::Blocks(bs)) => {
                        let texts: Vec<&str> = bs
                            .iter()
                            .filter_map(|b| match b {
                                ToolResultBlock::Text { text } => Some(text.as_str()),
                                ToolResultBlock::Image { .. } => {
                                    tracing::debug!("dropping an image inside a tool_result: Chat Completions tool messages carry text only");
                                    None
                                }
                            })
                            .collect();
                        texts.join("\n")
                    }
                };
                if *is_error == Some(true) {
                    text = format!("Error: {text}");
                }
                let mut m = Message::new("tool", text);
                m.tool_call_id = Some(tool_use_id.clone());
                out.push(m);
            }
            ContentBlock::ToolUse { .. } => {
                return Err(invalid(format!(
                    "messages[{i}].content[{j}]: a `tool_use` block belongs in an assistant message"
                )))
            }
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking {} => {
                tracing::debug!("dropping a thinking block of a user message");
            }
        }
    }
    if let Some(id) = pending.iter().find(|id| !answered.contains(id.as_str())) {
        return Err(missing_result(i - 1, id));
    }
    if !parts.is_empty() {
        let content = match &parts[..] {
            [only] if only.kind == "text" => Content::Text(only.text.clone().unwrap_or_default()),
            _ => Content::Parts(parts),
        };
        out.push(Message {
            content: Some(content),
            ..Message::new("user", "")
        });
    }
    Ok(())
}

/// An assistant turn: text, and `tool_use` blocks as `tool_calls` (arguments a JSON string).
/// Returns the ids its next turn must answer.
fn assistant_turn(
    i: usize,
    content: &MessageContent,
    out: &mut Vec<Message>,
) -> Result<Vec<String>, InvalidRequest> {
    let blocks = match content {
        TextOr::Text(s) => {
            out.push(Message::new("assistant", s.clone()));
            return Ok(Vec::new());
        }
        TextOr::Blocks(b) => b,
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        match b {
            ContentBlock::Text { text: t } => text.push_str(t),
            ContentBlock::ToolUse { id, name, input } => {
                let arguments = match input {
                    Value::Null => "{}".to_string(),
                    v => v.to_string(),
                };
                calls.push(ToolCall {
                    id: id.clone(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: name.clone(),
                        arguments,
                    },
                });
            }
            ContentBlock::ToolResult { .. } => {
                return Err(invalid(format!(
                    "messages[{i}].content[{j}]: a `tool_result` block belongs in a user message"
                )))
            }
            ContentBlock::Image { .. } => {
                tracing::debug!("dropping an image of an assistant message");
            }
            // Signed reasoning of an Anthropic model: no other target can take it back.
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking {} => {}
        }
    }
    let ids = calls.iter().map(|c| c.id.clone()).collect();
    let mut m = Message::new("assistant", text);
    if !calls.is_empty() {
        if m.text().is_empty() {
            m.content = None;
        }
        m.tool_calls = Some(calls);
    }
    out.push(m);
    Ok(ids)
}

fn translate_tools(req: &MessagesRequest) -> Vec<Value> {
    let Some(tools) = &req.tools else {
        return Vec::new();
    };
    tools
        .iter()
        .filter(|t| {
            let client_tool = t.kind.as_deref().is_none_or(|k| k == "custom");
            if !client_tool {
                tracing::debug!(tool = %t.name, "dropping a server tool a translated target cannot run");
            }
            client_tool
        })
        .map(|t| {
            let mut f = json!({
                "name": t.name,
                "parameters": t.input_schema.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(d) = &t.description {
                f["description"] = json!(d);
            }
            json!({"type": "function", "function": f})
        })
        .collect()
}

/// Chat Completions' `tool_choice`, and whether parallel calls are off.
fn translate_tool_choice(c: &ToolChoice) -> (Value, bool) {
    match c {
        ToolChoice::Auto {
            disable_parallel_tool_use: d,
        } => (json!("auto"), *d == Some(true)),
        ToolChoice::Any {
            disable_parallel_tool_use: d,
        } => (json!("required"), *d == Some(true)),
        ToolChoice::Tool {
            name,
            disable_parallel_tool_use: d,
        } => (
            json!({"type": "function", "function": {"name": name}}),
            *d == Some(true),
        ),
        ToolChoice::None {} => (json!("none"), false),
    }
}

// ---------- answer ----------

fn stop_reason(finish: Option<&str>, tool_calls: bool) -> &'static str {
    if tool_calls {
        return "tool_use";
    }
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic counts cache reads apart from `input_tokens`; OpenAI includes them in
/// `prompt_tokens` and says how many in `prompt_tokens_details.cached_tokens`.
fn split_prompt(u: &Usage) -> (u64, Option<u64>) {
    let cached = u
        .extra
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64);
    (u.prompt_tokens.saturating_sub(cached.unwrap_or(0)), cached)
}

fn message_id(upstream: &str) -> String {
    let clean: String = upstream
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if clean.is_empty() {
        new_message_id()
    } else {
        format!("msg_{clean}")
    }
}

/// A complete answer as a `message`; `model` is the name the client asked for. `usage` must
/// be set (the caller counts locally when the upstream sent none).
pub fn from_canonical(r: ChatResponse, model: &str, effective_context: u64) -> MessageResponse {
    let usage = r.usage.clone().unwrap_or_default();
    let (input_tokens, cache_read) = split_prompt(&usage);
    let choice = r.choices.into_iter().next();
    let mut content = Vec::new();
    let mut finish = None;
    let mut has_tools = false;
    if let Some(c) = choice {
        finish = c.finish_reason;
        let m = c.message;
        if let Some(thinking) = m.reasoning_content.filter(|t| !t.is_empty()) {
            content.push(ResponseBlock::Thinking {
                thinking,
                signature: String::new(),
            });
        }
        if let Some(text) = m.content.filter(|t| !t.is_empty()) {
            content.push(ResponseBlock::Text { text });
        }
        for call in m.tool_calls.unwrap_or_default() {
            has_tools = true;
            content.push(ResponseBlock::ToolUse {
                id: call.id,
                name: call.function.name,
                input: tool_input(&call.function.arguments),
            });
        }
    }
    MessageResponse {
        id: message_id(&r.id),
        kind: "message",
        role: "assistant",
        model: model.to_string(),
        content,
        stop_reason: Some(stop_reason(finish.as_deref(), has_tools)),
        stop_sequence: None,
        usage: MessageUsage {
            input_tokens,
            output_tokens: usage.completion_tokens,
            cache_read_input_tokens: cache_read,
            effective_context: Some(effective_context),
        },
    }
}

/// A tool call's `arguments` string as the object Anthropic's `input` is.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ if arguments.trim().is_empty() => json!({}),
        _ => {
            tracing::debug!("tool call arguments are not a JSON object; sent as {{}}");
            json!({})
        }
    }
}

// ---------- stream ----------

use super::chunk::{Chunk, ToolDelta};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool call, by its Chat Completions `index`.
    Tool(u32),
}

/// Canonical chunks in, Messages events out: `message_start` first, one content block per
/// text / thinking run and per tool call (each streamed as it arrives), then
/// `message_delta` and `message_stop` from `finish`.
pub struct StreamTranslator {
    id: String,
    model: String,
    input_tokens: u64,
    started: bool,
    finished: bool,
    next_index: u32,
    open: Option<(u32, Block)>,
    /// Chat Completions tool index → (content block index, call id).
    tools: HashMap<u32, (u32, String)>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    deltas: u64,
}

fn emit<T: serde::Serialize + ?Sized>(out: &mut BytesMut, name: &str, data: &T) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    // Serialized straight into the output buffer: no intermediate Value or Vec per event.
    let _ = serde_json::to_writer((&mut *out).writer(), data);
    out.put_slice(b"\n\n");
}

/// `content_block_delta`, typed so the hot path builds no JSON tree.
#[derive(serde::Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: DeltaBody<'a>,
}

#[derive(serde::Serialize)]
#[serde(tag = "type")]
enum DeltaBody<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

fn emit_delta(out: &mut BytesMut, index: u32, delta: DeltaBody<'_>) {
    emit(
        out,
        "content_block_delta",
        &BlockDelta {
            kind: "content_block_delta",
            index,
            delta,
        },
    );
}

/// A message id unique in this process (time, then a sequence number).
fn new_message_id() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("msg_aisbf{}x{n}", unix_now())
}

impl StreamTranslator {
    /// `model` is the name the client asked for; `input_tokens` what went upstream (known
    /// before the first token, so `message_start` carries it).
    pub fn new(model: &str, input_tokens: u64) -> StreamTranslator {
        StreamTranslator {
            id: new_message_id(),
            model: model.to_string(),
            input_tokens,
            started: false,
            finished: false,
            next_index: 0,
            open: None,
            tools: HashMap::new(),
            finish_reason: None,
            usage: None,
            deltas: 0,
        }
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        emit(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": self.input_tokens, "output_tokens": 0}}}),
        );
    }

    fn close(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            emit(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// The index of an open block of this kind, opening one (after closing the current).
    fn block(&mut self, out: &mut BytesMut, kind: Block, start: Value) -> u32 {
        if let Some((index, open)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        index
    }

    /// One canonical chunk (the JSON of a `chat.completion.chunk`). False when the stream
    /// had to end here (it then ends with one `error` event and nothing follows).
    pub fn chunk(&mut self, json: &[u8], out: &mut BytesMut) -> bool {
        if self.finished {
            return false;
        }
        self.start(out);
        let chunk: Chunk = match serde_json::from_slice(json) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("skipping a canonical chunk that does not parse: {e}");
                return true;
            }
        };
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return true;
        };
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
        let delta = choice.delta;
        if let Some(thinking) = delta.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
            let index = self.block(
                out,
                Block::Thinking,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
            );
            self.deltas += 1;
            emit_delta(out, index, DeltaBody::Thinking { thinking });
        }
        if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
            let index = self.block(out, Block::Text, json!({"type": "text", "text": ""}));
            self.deltas += 1;
            emit_delta(out, index, DeltaBody::Text { text });
        }
        for call in delta.tool_calls.unwrap_or_default() {
            if !self.tool_delta(call, out) {
                return false;
            }
        }
        true
    }

    /// False when the call's arguments cannot be sent: see `resumed_call`.
    fn tool_delta(&mut self, call: ToolDelta, out: &mut BytesMut) -> bool {
        let (name, arguments) = match call.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let index = match self.tools.get(&call.index) {
            // A different id at a known index is a new call (translators that number every
            // call 0); no id, or the same one repeated, continues the call.
            Some((i, id)) if call.id.as_ref().is_none_or(|new| new == id) => {
                let resumed = self.open.is_none_or(|(open, _)| open != *i);
                if resumed && arguments.as_ref().is_some_and(|a| !a.is_empty()) {
                    let id = id.clone();
                    self.resumed_call(&id, out);
                    return false;
                }
                *i
            }
            _ => {
                let n = self.tools.len();
                let id = call.id.unwrap_or_else(|| format!("toolu_aisbf{n}"));
                let index = self.next_index;
                self.close(out);
                self.next_index += 1;
                self.open = Some((index, Block::Tool(call.index)));
                self.tools.insert(call.index, (index, id.clone()));
                emit(
                    out,
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index, "content_block":
                            {"type": "tool_use", "id": id, "name": name.unwrap_or_default(), "input": {}}}),
                );
                index
            }
        };
        if let Some(args) = arguments.filter(|a| !a.is_empty()) {
            self.deltas += 1;
            emit_delta(
                out,
                index,
                DeltaBody::InputJson {
                    partial_json: &args,
                },
            );
        }
        true
    }

    /// An upstream sent more arguments for a tool call after text or another call had
    /// interrupted it, so its block is already stopped. A Messages stream cannot express
    /// that: clients finalise a call's input at its `content_block_stop`, so the fragment
    /// would leave them a truncated call they may run, and a second block with the same id
    /// would run it twice. The answer ends here with one error naming the call.
    fn resumed_call(&mut self, id: &str, out: &mut BytesMut) {
        tracing::warn!(
            tool_call = id,
            "upstream resumed a tool call after another block; ending the stream"
        );
        self.close(out);
        self.error(
            &format!(
                "upstream sent more arguments for tool call {id} after another content block; \
                 a Messages stream cannot reopen a stopped block"
            ),
            out,
        );
    }

    /// The end of the answer: closes the open block, then `message_delta` (stop reason,
    /// usage) and `message_stop`. Idempotent.
    pub fn finish(&mut self, end: Option<StreamEnd>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.start(out);
        self.finished = true;
        self.close(out);
        let usage = end.and_then(|e| e.usage).or(self.usage.take());
        let stop = stop_reason(self.finish_reason.as_deref(), !self.tools.is_empty());
        let mut u =
            json!({"output_tokens": usage.as_ref().map_or(self.deltas, |u| u.completion_tokens)});
        if let Some(usage) = &usage {
            let (input, cached) = split_prompt(usage);
            u["input_tokens"] = json!(input);
            if let Some(c) = cached {
                u["cache_read_input_tokens"] = json!(c);
            }
        }
        emit(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": u}),
        );
        emit(out, "message_stop", &json!({"type": "message_stop"}));
    }

    /// A failure after the stream started: one `error` event; nothing follows it.
    /// Idempotent: a second end (error or finish) writes nothing.
    pub fn error(&mut self, message: &str, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.finished = true;
        out.put_slice(&error_event("api_error", message));
    }
}

/// `event: error` with Anthropic's error body.
pub fn error_event(kind: &str, message: &str) -> Bytes {
    let mut out = BytesMut::new();
    emit(
        &mut out,
        "error",
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    );
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> MessagesRequest {
        serde_json::from_value(v).unwrap()
    }

    fn events(out: &BytesMut) -> Vec<(String, Value)> {
        String::from_utf8(out.to_vec())
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let mut lines = e.lines();
                let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
                let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
                (name.to_string(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    #[test]
    fn tools_images_and_results_translate() {
        let req = parse(json!({
            "model": "m", "max_tokens": 50, "stop_sequences": ["END"],
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "thinking": {"type": "adaptive"}, "context_management": {},
            "metadata": {"user_id": "u-1"},
            "tools": [{"name": "get_weather", "description": "Weather", "defer_loading": true,
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                      {"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "sunny"}], "is_error": false},
                    {"type": "text", "text": "And now?"}]},
                {"role": "system", "content": "Mid-conversation note."}
            ]
        }));
        let c = serde_json::to_value(to_canonical(&req, true).unwrap()).unwrap();
        assert_eq!(
            c,
            json!({
                "model": "m", "stream": false, "max_tokens": 50, "stop": ["END"], "user": "u-1",
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
                "tool_choice": "required", "parallel_tool_calls": false,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Look"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
                    {"role": "assistant", "content": "Checking.", "tool_calls": [{"id": "toolu_1",
                        "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                    {"role": "tool", "content": "sunny", "tool_call_id": "toolu_1"},
                    {"role": "user", "content": "And now?"},
                    {"role": "system", "content": "Mid-conversation note."}
                ]
            })
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let err = |v: Value| to_canonical(&parse(v), true).unwrap_err().0;
        let msg = |role: &str, content: Value| json!({"role": role, "content": content});
        assert!(
            err(json!({"model": "m", "messages": [msg("user", json!("hi"))]}))
                .contains("max_tokens")
        );
        assert!(err(json!({"model": "m", "max_tokens": 5,
            "messages": [msg("user", json!("a")), msg("user", json!("b"))]}))
        .contains("alternate"));
        assert!(err(
            json!({"model": "m", "max_tokens": 5, "messages": [msg("user",
            json!([{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]))]})
        )
        .contains("messages[0].content[0].tool_use_id"));
        assert!(err(json!({"model": "m", "max_tokens": 5, "messages": [
            msg("user", json!("a")),
            msg("assistant", json!([{"type": "tool_use", "id": "t1", "name": "f", "input": {}}])),
            msg("user", json!("no result"))]}))
        .contains("t1"));
        let unknown = serde_path_to_error::deserialize::<_, MessagesRequest>(json!({"model": "m",
            "max_tokens": 5, "messages": [msg("user", json!([{"type": "hologram"}]))]}))
        .unwrap_err();
        let text = format!("{}: {}", unknown.path(), unknown.inner());
        assert!(
            text.contains("messages[0].content") && text.contains("hologram"),
            "{text}"
        );
    }

    #[test]
    fn stream_has_one_block_per_text_run_and_per_tool_call() {
        let mut t = StreamTranslator::new("client-model", 42);
        let mut out = BytesMut::new();
        let chunk = |delta: Value, finish: Value| {
            serde_json::to_vec(
                &json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                "model": "up", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
            )
            .unwrap()
        };
        t.chunk(
            &chunk(
                json!({"role": "assistant", "reasoning_content": "think"}),
                Value::Null,
            ),
            &mut out,
        );
        t.chunk(&chunk(json!({"content": "Hi"}), Value::Null), &mut out);
        t.chunk(&chunk(json!({"content": " there"}), Value::Null), &mut out);
        t.chunk(
            &chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": ""}}]}),
                Value::Null,
            ),
            &mut out,
        );
        t.chunk(
            &chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
                Value::Null,
            ),
            &mut out,
        );
        t.chunk(
            &chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                Value::Null,
            ),
            &mut out,
        );
        t.chunk(
            &chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
            "function": {"name": "g", "arguments": "{}"}}]}),
                json!("tool_calls"),
            ),
            &mut out,
        );
        t.finish(
            Some(StreamEnd {
                usage: Some(Usage::new(40, 9)),
                ..StreamEnd::default()
            }),
            &mut out,
        );
        let ev = events(&out);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[0].1["message"]["usage"]["input_tokens"], 42);
        assert_eq!(ev[0].1["message"]["model"], "client-model");
        assert_eq!(ev[1].1["content_block"]["type"], "thinking");
        assert_eq!(ev[2].1["delta"]["thinking"], "think");
        assert_eq!(
            ev[8].1["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {}})
        );
        assert_eq!(ev[8].1["index"], 2);
        assert_eq!(
            ev[10].1["delta"],
            json!({"type": "input_json_delta", "partial_json": "1}"})
        );
        assert_eq!(ev[12].1["index"], 3);
        assert_eq!(ev[15].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            ev[15].1["usage"],
            json!({"output_tokens": 9, "input_tokens": 40})
        );
    }

    #[test]
    fn a_repeated_tool_id_continues_its_call_and_a_new_id_starts_one() {
        let mut t = StreamTranslator::new("m", 1);
        let mut out = BytesMut::new();
        let tool = |id: &str, name: &str, args: &str| {
            serde_json::to_vec(&json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": id, "function": {"name": name, "arguments": args}}]}}]}))
            .unwrap()
        };
        t.chunk(&tool("call_a", "f", "{\"x\":"), &mut out);
        t.chunk(&tool("call_a", "", "1}"), &mut out);
        t.chunk(&tool("call_b", "g", "{}"), &mut out);
        t.finish(None, &mut out);
        let starts: Vec<Value> = events(&out)
            .into_iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| d["content_block"]["id"].clone())
            .collect();
        assert_eq!(starts, [json!("call_a"), json!("call_b")]);
    }

    #[test]
    fn resumed_tool_arguments_end_the_stream_with_one_error() {
        let mut t = StreamTranslator::new("m", 1);
        let mut out = BytesMut::new();
        let tool = |index: u32, id: Option<&str>, args: &str| {
            let mut call = json!({"index": index, "function": {"arguments": args}});
            if let Some(id) = id {
                call["id"] = json!(id);
                call["function"]["name"] = json!("f");
            }
            serde_json::to_vec(&json!({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}))
                .unwrap()
        };
        assert!(t.chunk(&tool(0, Some("call_a"), "{\"x\":"), &mut out));
        assert!(t.chunk(&tool(1, Some("call_b"), "{}"), &mut out));
        // Call 0 resumes after call 1 opened: its block is stopped, so the stream must end.
        assert!(!t.chunk(&tool(0, None, "1}"), &mut out));
        // Nothing follows the error: neither more chunks nor a finish.
        assert!(!t.chunk(&tool(1, None, ""), &mut out));
        t.finish(None, &mut out);
        t.error("again", &mut out);
        let ev = events(&out);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "error"
            ]
        );
        let message = ev[7].1["error"]["message"].as_str().unwrap();
        assert!(message.contains("call_a"), "{message}");
        // No delta ever went to a stopped block.
        assert!(ev
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .all(|(_, d)| d["index"] != 0 || d["delta"]["partial_json"] == "{\"x\":"));
    }

    #[test]
    fn a_resumed_call_without_arguments_is_harmless() {
        let mut t = StreamTranslator::new("m", 1);
        let mut out = BytesMut::new();
        let chunk = |delta: Value| {
            serde_json::to_vec(&json!({"choices": [{"index": 0, "delta": delta}]})).unwrap()
        };
        assert!(t.chunk(
            &chunk(json!({"tool_calls": [{"index": 0, "id": "call_a",
            "function": {"name": "f", "arguments": "{}"}}]})),
            &mut out
        ));
        assert!(t.chunk(&chunk(json!({"content": "x"})), &mut out));
        assert!(t.chunk(
            &chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": ""}}]})),
            &mut out
        ));
        t.finish(None, &mut out);
        assert_eq!(events(&out).last().unwrap().0, "message_stop");
    }

    #[test]
    fn complete_answer_with_reasoning_and_tools() {
        let r: ChatResponse = serde_json::from_value(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null, "message": {
                "role": "assistant", "content": "Sure.", "reasoning_content": "because",
                "tool_calls": [{"id": "call_9", "type": "function",
                    "function": {"name": "f", "arguments": "{\"x\":[1]}"}}]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34,
                      "prompt_tokens_details": {"cached_tokens": 10}}
        }))
        .unwrap();
        let m = serde_json::to_value(from_canonical(r, "claude-x", 31)).unwrap();
        assert_eq!(
            m,
            json!({"id": "msg_chatcmpl-1", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [{"type": "thinking", "thinking": "because", "signature": ""},
                            {"type": "text", "text": "Sure."},
                            {"type": "tool_use", "id": "call_9", "name": "f", "input": {"x": [1]}}],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 20, "output_tokens": 4, "cache_read_input_tokens": 10,
                          "effective_context": 31}})
        );
    }
}
