//! The OpenAI Responses ingress: a Responses request as the canonical chat request, the chat
//! answer as a `response` object, and the stream state machine that turns canonical chunks
//! into Responses events (design.md §13). Pure functions; the HTTP part is in
//! `server/responses.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::openai::{
    unix_now, ChatRequest, ChatResponse, Content, ContentPart, Extra, FunctionCall, ImageUrl,
    Message, ResponseMessage, ToolCall, ToolCallDelta, Usage,
};
use crate::api::responses::*;
use crate::providers::{ProviderError, StreamEnd};

pub mod store;

use std::sync::Arc;

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

/// The reasoning text of an upstream answer. Upstreams that reason put it in
/// `reasoning_content`; read through this one function so the field can become typed.
pub fn reasoning_content(m: &ResponseMessage) -> Option<&str> {
    m.extra
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
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

/// The Responses request as the canonical chat request. `previous` is the stored
/// conversation of `previous_response_id` (its input and output items). Errors name the
/// field, for a 400.
pub fn to_chat(
    req: ResponsesRequest,
    previous: Option<Arc<StoredResponse>>,
) -> Result<Translated, String> {
    let (tools, names, skipped) = chat_tools(&req.tools)?;
    if !skipped.is_empty() {
        tracing::debug!(
            "responses: built-in tools left out for a chat target: {}",
            skipped.join(", ")
        );
    }
    let tool_choice = match &req.tool_choice {
        Some(tc) => chat_tool_choice(tc, &names)?,
        None => None,
    };

    let stream = req.is_stream();
    let keeps = req.keeps();
    let mut history = previous
        .as_deref()
        .map(StoredResponse::conversation)
        .unwrap_or_default();
    let prior = history.len();
    match req.input {
        None => {}
        Some(Value::String(s)) => history.push(json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": s}]})),
        Some(Value::Array(items)) => history.extend(items),
        Some(Value::Null) => {}
        Some(_) => return Err("input must be a string or a list of items".into()),
    }
    let mut messages = Vec::new();
    if let Some(sys) = req.instructions.as_deref().filter(|s| !s.is_empty()) {
        messages.push(Message::new("system", sys));
    }
    let mut called: HashSet<String> = HashSet::new();
    for (i, value) in history.iter().enumerate() {
        // Items of a stored response are ours and valid; an error names the client's index.
        let index = i.saturating_sub(prior);
        let item = InputItem::parse(index, value)?;
        append_item(&mut messages, &mut called, index, item)?;
    }
    if messages.iter().all(|m| m.role == "system") {
        return Err("input: must contain at least one message".into());
    }

    let mut extra = Extra::new();
    if !tools.is_empty() {
        extra.insert("tools".into(), Value::Array(tools));
        if let Some(tc) = tool_choice {
            extra.insert("tool_choice".into(), tc);
        }
        if let Some(p) = req.parallel_tool_calls {
            extra.insert("parallel_tool_calls".into(), Value::Bool(p));
        }
    }
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            extra.insert(k.into(), v);
        }
    };
    put(
        "max_completion_tokens",
        req.max_output_tokens.map(Value::from),
    );
    put("temperature", req.temperature.map(Value::from));
    put("top_p", req.top_p.map(Value::from));
    put("user", req.user.clone().map(Value::String));
    put(
        "prompt_cache_key",
        req.prompt_cache_key.clone().map(Value::String),
    );
    put(
        "reasoning_effort",
        req.reasoning
            .as_ref()
            .and_then(|r| r.get("effort"))
            .filter(|e| e.is_string())
            .cloned(),
    );
    put(
        "response_format",
        req.text
            .as_ref()
            .and_then(|t| response_format(t).transpose())
            .transpose()?,
    );

    let chat = ChatRequest {
        model: req.model.clone(),
        messages,
        stream: Some(stream),
        extra,
        anthropic_beta: None,
        native: None,
    };
    let shape = Shape {
        store: keeps,
        model: req.model,
        instructions: req.instructions,
        tool_choice: req.tool_choice.unwrap_or_else(|| json!("auto")),
        tools: echo_tools(req.tools),
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        temperature: req.temperature,
        top_p: req.top_p,
        max_output_tokens: req.max_output_tokens,
        previous_response_id: req.previous_response_id,
        reasoning: req.reasoning,
        text: req
            .text
            .unwrap_or_else(|| json!({"format": {"type": "text"}})),
        metadata: req.metadata.unwrap_or_else(|| json!({})),
        user: req.user,
        names,
        input: history.split_off(prior),
        previous,
    };
    Ok(Translated { chat, shape })
}

/// The tools as the response echoes them: as sent, with the fields OpenAI's schema requires
/// filled in as OpenAI's own answers do (`strict` / `parameters` null when not given).
fn echo_tools(mut tools: Vec<Value>) -> Box<serde_json::value::RawValue> {
    for t in &mut tools {
        let Some(obj) = t.as_object_mut() else {
            continue;
        };
        match obj.get("type").and_then(Value::as_str) {
            Some("function") => {
                obj.entry("strict").or_insert(Value::Null);
                obj.entry("parameters").or_insert(Value::Null);
            }
            Some("namespace") => {
                obj.entry("description")
                    .or_insert_with(|| Value::String(String::new()));
            }
            _ => {}
        }
    }
    serde_json::value::to_raw_value(&tools).expect("JSON values serialize")
}

/// Chat tools from Responses tools: flat functions as they are, namespace functions
/// flattened; built-in tools (no chat target can run them) skipped and named.
fn chat_tools(tools: &[Value]) -> Result<(Vec<Value>, ToolNames, Vec<String>), String> {
    let mut out = Vec::new();
    let mut names = ToolNames::default();
    let mut skipped = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "function" => out.push(chat_function(t, None, &format!("tools[{i}]"))?),
            "custom" => {
                out.push(chat_custom(t, None, &format!("tools[{i}]"))?);
                names.add(None, t["name"].as_str().unwrap_or_default(), true);
            }
            "namespace" => {
                let ns = t
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("tools[{i}].name is missing"))?;
                let inner = t.get("tools").and_then(Value::as_array);
                for (j, f) in inner.into_iter().flatten().enumerate() {
                    let at = format!("tools[{i}].tools[{j}]");
                    let custom = match f.get("type").and_then(Value::as_str) {
                        Some("function") => false,
                        Some("custom") => true,
                        _ => {
                            skipped.push(format!("{at} ({})", f["type"]));
                            continue;
                        }
                    };
                    out.push(if custom {
                        chat_custom(f, Some(ns), &at)?
                    } else {
                        chat_function(f, Some(ns), &at)?
                    });
                    names.add(Some(ns), f["name"].as_str().unwrap_or_default(), custom);
                }
            }
            "" => return Err(format!("tools[{i}].type is missing")),
            other => skipped.push(other.to_string()),
        }
    }
    Ok((out, names, skipped))
}

fn chat_function(t: &Value, namespace: Option<&str>, at: &str) -> Result<Value, String> {
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{at}.name is missing"))?;
    let mut f = Map::new();
    f.insert("name".into(), Value::String(flat_name(namespace, name)));
    if let Some(d) = t.get("description").filter(|d| d.is_string()) {
        f.insert("description".into(), d.clone());
    }
    f.insert(
        "parameters".into(),
        t.get("parameters")
            .filter(|p| p.is_object())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    );
    if let Some(s) = t.get("strict").filter(|s| s.is_boolean()) {
        f.insert("strict".into(), s.clone());
    }
    Ok(json!({"type": "function", "function": f}))
}

/// A `custom` tool (free-text input, optionally with a grammar) as a chat function taking
/// one `input` string; the grammar goes into the description so the model can follow it.
fn chat_custom(t: &Value, namespace: Option<&str>, at: &str) -> Result<Value, String> {
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{at}.name is missing"))?;
    let mut description = t
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let format = t.get("format");
    if format.and_then(|f| f.get("type")).and_then(Value::as_str) == Some("grammar") {
        let f = format.expect("checked above");
        let syntax = f.get("syntax").and_then(Value::as_str).unwrap_or("lark");
        let definition = f.get("definition").and_then(Value::as_str).unwrap_or("");
        description.push_str(&format!(
            "\n\nThe input must follow this {syntax} grammar:\n{definition}"
        ));
    }
    Ok(json!({"type": "function", "function": {
        "name": flat_name(namespace, name),
        "description": description,
        "parameters": {"type": "object", "properties": {"input": {"type": "string",
            "description": "The tool's whole input as free text (as described above), not JSON."}},
            "required": ["input"]}}}))
}

/// `tool_choice` for a chat target; one that forces a built-in tool is an error.
fn chat_tool_choice(tc: &Value, names: &ToolNames) -> Result<Option<Value>, String> {
    if let Some(s) = tc.as_str() {
        return match s {
            "auto" | "none" | "required" => Ok(Some(json!(s))),
            other => Err(format!(
                "tool_choice '{other}' is not one of auto, none, required"
            )),
        };
    }
    let kind = tc.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "function" | "custom" => {
            let name = tc
                .get("name")
                .and_then(Value::as_str)
                .ok_or("tool_choice.name is missing")?;
            let ns = tc.get("namespace").and_then(Value::as_str);
            let flat = flat_name(ns, name);
            // A bare name that is declared inside a namespace is found by its declared name.
            let flat = if ns.is_none() {
                names
                    .0
                    .iter()
                    .find(|(_, d)| d.name == name)
                    .map(|(f, _)| f.clone())
                    .unwrap_or(flat)
            } else {
                flat
            };
            Ok(Some(
                json!({"type": "function", "function": {"name": flat}}),
            ))
        }
        "allowed_tools" => Ok(tc
            .get("mode")
            .and_then(Value::as_str)
            .map(|m| json!(if m == "required" { "required" } else { "auto" }))),
        "" => Err("tool_choice.type is missing".into()),
        other => Err(format!(
            "tool_choice forces the built-in tool '{other}', which this target cannot run \
             (aisbf serves it through a chat model): choose a function or 'auto'"
        )),
    }
}

/// `text.format` as `response_format`.
fn response_format(text: &Value) -> Result<Option<Value>, String> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") | None => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for k in ["name", "description", "schema", "strict"] {
                if let Some(v) = format.get(k).filter(|v| !v.is_null()) {
                    schema.insert(k.into(), v.clone());
                }
            }
            if !schema.contains_key("name") {
                return Err("text.format.name is required for json_schema".into());
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        Some(other) => Err(format!("text.format.type '{other}' is not supported")),
    }
}

fn append_item(
    messages: &mut Vec<Message>,
    called: &mut HashSet<String>,
    index: usize,
    item: InputItem,
) -> Result<(), String> {
    match item {
        InputItem::Message(m) => messages.push(chat_message(m, index)?),
        InputItem::CustomToolCall(c) => {
            let call = FunctionCallItem {
                call_id: c.call_id,
                name: c.name,
                namespace: c.namespace,
                arguments: json!({"input": c.input}).to_string(),
            };
            return append_item(messages, called, index, InputItem::FunctionCall(call));
        }
        InputItem::FunctionCall(c) => {
            called.insert(c.call_id.clone());
            let call = ToolCall {
                id: c.call_id,
                kind: "function".into(),
                function: FunctionCall {
                    name: flat_name(c.namespace.as_deref(), &c.name),
                    arguments: c.arguments,
                },
            };
            match messages.last_mut() {
                Some(last) if last.role == "assistant" => {
                    last.tool_calls.get_or_insert_with(Vec::new).push(call)
                }
                _ => {
                    let mut m = Message::new("assistant", "");
                    m.content = None;
                    m.tool_calls = Some(vec![call]);
                    messages.push(m);
                }
            }
        }
        InputItem::FunctionCallOutput(o) => {
            if !called.contains(&o.call_id) {
                return Err(format!(
                    "input[{index}].call_id: no function_call with call_id '{}' comes before \
                     this function_call_output",
                    o.call_id
                ));
            }
            let text = match &o.output {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => return Err(format!("input[{index}].output must be a string or parts")),
            };
            let mut m = Message::new("tool", text);
            m.tool_call_id = Some(o.call_id);
            messages.push(m);
        }
        InputItem::Reasoning => {
            tracing::debug!("responses: reasoning item left out for a chat target")
        }
        InputItem::BuiltinCall(kind) => {
            tracing::debug!("responses: {kind} item left out for a chat target")
        }
    }
    Ok(())
}

fn chat_message(m: MessageItem, index: usize) -> Result<Message, String> {
    let role = match m.role.as_str() {
        "user" | "assistant" | "system" => m.role.clone(),
        // Chat targets other than OpenAI's know only `system`.
        "developer" => "system".to_string(),
        other => {
            return Err(format!(
                "input[{index}].role '{other}' is not one of user, assistant, system, developer"
            ))
        }
    };
    let parts = match m.content {
        Value::String(s) => return Ok(Message::new(&role, s)),
        Value::Array(p) => p,
        _ => {
            return Err(format!(
                "input[{index}].content must be a string or a list of parts"
            ))
        }
    };
    let mut out: Vec<ContentPart> = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        let at = format!("input[{index}].content[{j}]");
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
        let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
        let part = match kind {
            "input_text" | "output_text" | "text" => ContentPart {
                kind: "text".into(),
                text: Some(text("text").ok_or_else(|| format!("{at}.text is missing"))?),
                image_url: None,
                extra: Extra::new(),
            },
            "refusal" => ContentPart {
                kind: "text".into(),
                text: text("refusal"),
                image_url: None,
                extra: Extra::new(),
            },
            "input_image" => {
                let url = text("image_url").ok_or_else(|| {
                    format!("{at}.image_url is missing (file_id images are not supported)")
                })?;
                ContentPart {
                    kind: "image_url".into(),
                    text: None,
                    image_url: Some(ImageUrl {
                        url,
                        detail: text("detail").filter(|d| d != "auto"),
                    }),
                    extra: Extra::new(),
                }
            }
            "" => return Err(format!("{at}.type is missing")),
            other => {
                return Err(format!(
                    "{at}.type '{other}' is not supported (input_text, output_text, input_image)"
                ))
            }
        };
        out.push(part);
    }
    let images = out.iter().any(|p| p.image_url.is_some());
    // Text-only content goes as one string: every chat target takes that in every role.
    if !images || role != "user" {
        let text: Vec<&str> = out.iter().filter_map(|p| p.text.as_deref()).collect();
        return Ok(Message::new(&role, text.join("\n")));
    }
    let mut msg = Message::new(&role, "");
    msg.content = Some(Content::Parts(out));
    Ok(msg)
}

// ---------- answers ----------

fn response_usage(u: Option<&Usage>, effective_context: u64, counted_output: u64) -> ResponseUsage {
    let detail = |u: &Usage, outer: &str, inner: &str| {
        u.extra
            .get(outer)
            .and_then(|d| d.get(inner))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    match u {
        Some(u) => ResponseUsage {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: detail(u, "prompt_tokens_details", "cached_tokens"),
                cache_write_tokens: 0,
            },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: detail(u, "completion_tokens_details", "reasoning_tokens"),
            },
            total_tokens: u.total_tokens.max(u.prompt_tokens + u.completion_tokens),
            effective_context,
        },
        None => ResponseUsage {
            input_tokens: effective_context,
            output_tokens: counted_output,
            total_tokens: effective_context + counted_output,
            effective_context,
            ..ResponseUsage::default()
        },
    }
}

/// `(status, incomplete_details)` of a chat finish reason.
fn finish_status(finish: Option<&str>) -> (&'static str, Option<IncompleteDetails>) {
    match finish {
        Some("length") => (
            "incomplete",
            Some(IncompleteDetails {
                reason: "max_output_tokens",
            }),
        ),
        Some("content_filter") => (
            "incomplete",
            Some(IncompleteDetails {
                reason: "content_filter",
            }),
        ),
        _ => ("completed", None),
    }
}

impl Shape {
    /// A response object with these settings and nothing produced yet.
    pub fn response(&self, id: String, created_at: i64, status: &'static str) -> ResponseObject {
        ResponseObject {
            id,
            object: "response",
            created_at,
            status,
            error: None,
            incomplete_details: None,
            instructions: self.instructions.clone(),
            model: self.model.clone(),
            output: Vec::new(),
            parallel_tool_calls: self.parallel_tool_calls,
            metadata: self.metadata.clone(),
            tool_choice: self.tool_choice.clone(),
            tools: self.tools.clone(),
            temperature: self.temperature,
            top_p: self.top_p,
            max_output_tokens: self.max_output_tokens,
            previous_response_id: self.previous_response_id.clone(),
            reasoning: self.reasoning.clone(),
            store: self.store,
            text: self.text.clone(),
            truncation: "disabled",
            usage: None,
            user: self.user.clone(),
        }
    }

    /// A finished tool call as the client declared the tool: a `function_call`, or a
    /// `custom_tool_call` with the free-text input.
    fn call_item(
        &self,
        id: Option<String>,
        call_id: String,
        flat: &str,
        arguments: String,
    ) -> OutputItem {
        let Declared {
            namespace,
            name,
            custom,
        } = self.names.declared(flat);
        let call_id = if call_id.is_empty() {
            new_id("call")
        } else {
            call_id
        };
        if custom {
            return OutputItem::CustomToolCall {
                id: id.unwrap_or_else(|| new_id("ctc")),
                call_id,
                namespace,
                name,
                input: custom_input(&arguments),
            };
        }
        OutputItem::FunctionCall {
            id: id.unwrap_or_else(|| new_id("fc")),
            call_id,
            namespace,
            name,
            arguments,
            status: "completed",
        }
    }
}

/// A non-stream chat answer as a `response` object. `counted_output` is the local count of
/// the answer's tokens, used when the upstream reported no usage.
pub fn from_chat(
    r: ChatResponse,
    shape: &Shape,
    effective_context: u64,
    counted_output: impl FnOnce(&str) -> u64,
) -> ResponseObject {
    let mut resp = shape.response(new_id("resp"), unix_now(), "completed");
    let mut finish = None;
    let mut all_text = String::new();
    for choice in r.choices.into_iter().take(1) {
        finish = choice.finish_reason;
        let m = choice.message;
        if let Some(reasoning) = reasoning_content(&m) {
            resp.output.push(OutputItem::Reasoning {
                id: new_id("rs"),
                summary: Vec::new(),
                content: vec![ReasoningText::new(reasoning)],
                status: "completed",
            });
        }
        let text = m
            .content
            .clone()
            .filter(|t| !t.is_empty())
            .or(m.refusal.clone());
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            all_text.push_str(&text);
            resp.output.push(OutputItem::Message {
                id: new_id("msg"),
                status: "completed",
                role: "assistant",
                content: vec![OutputText::new(text)],
            });
        }
        for call in m.tool_calls.into_iter().flatten() {
            all_text.push_str(&call.function.arguments);
            resp.output.push(shape.call_item(
                None,
                call.id,
                &call.function.name,
                call.function.arguments,
            ));
        }
    }
    let (status, details) = finish_status(finish.as_deref());
    resp.status = status;
    resp.incomplete_details = details;
    let counted = if r.usage.is_none() {
        counted_output(&all_text)
    } else {
        0
    };
    resp.usage = Some(response_usage(r.usage.as_ref(), effective_context, counted));
    resp
}

// ---------- streams ----------

impl StreamEvent {
    /// `event: TYPE\ndata: {...}\n\n`.
    pub fn write_sse(&self, out: &mut BytesMut) {
        out.put_slice(b"event: ");
        out.put_slice(self.kind.as_bytes());
        out.put_slice(b"\ndata: ");
        out.put_slice(&self.json);
        out.put_slice(b"\n\n");
    }
}

/// An event's data: `type` and `sequence_number` first, then the event's own fields.
#[derive(Serialize)]
struct Envelope<T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    #[serde(flatten)]
    fields: T,
}

#[derive(Serialize)]
struct WithResponse<'a> {
    response: &'a ResponseObject,
}

/// The fields of a text, reasoning or arguments delta: the events of the hot path, typed so
/// that no JSON tree is built per delta.
#[derive(Serialize)]
struct Delta<'a> {
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
}

/// What the state machine reads of a canonical chunk.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: ChunkDelta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

/// An output item being streamed: where it sits and what it has so far.
struct Open {
    index: usize,
    id: String,
    text: String,
}

struct OpenCall {
    index: usize,
    id: String,
    call_id: String,
    name: String,
    arguments: String,
    /// A custom tool's input is sent whole when the call ends: the chat call streams it as
    /// fragments of `{"input": "…"}` JSON, not as the text itself.
    custom: bool,
}

/// Canonical chunks in, Responses events out: fed one chunk at a time, it yields the events
/// that chunk makes (text and argument deltas as they arrive, items opened and closed
/// around them), each with the next `sequence_number`; `finish` closes everything and
/// yields `response.completed` (or `.incomplete`), `fail` one `response.failed`.
pub struct StreamTranslator {
    shape: Shape,
    response: ResponseObject,
    seq: u64,
    next_index: usize,
    reasoning: Option<Open>,
    message: Option<Open>,
    /// By the chunk's tool-call index.
    calls: BTreeMap<u32, OpenCall>,
    /// Finished items by output index.
    done: BTreeMap<usize, OutputItem>,
    finish: Option<String>,
    usage: Option<Usage>,
    output_chars: usize,
}

impl StreamTranslator {
    pub fn new(shape: Shape) -> Self {
        let response = shape.response(new_id("resp"), unix_now(), "in_progress");
        StreamTranslator {
            shape,
            response,
            seq: 0,
            next_index: 0,
            reasoning: None,
            message: None,
            calls: BTreeMap::new(),
            done: BTreeMap::new(),
            finish: None,
            usage: None,
            output_chars: 0,
        }
    }

    /// The response as the store keeps it (taken once, at the end).
    pub fn take_stored(&mut self) -> StoredResponse {
        StoredResponse {
            response: self.response.clone(),
            input: std::mem::take(&mut self.shape.input),
            previous: self.shape.previous.take(),
        }
    }

    /// The response as it stands (the whole one after `finish`).
    pub fn response(&self) -> &ResponseObject {
        &self.response
    }

    fn event<T: Serialize>(&mut self, kind: &'static str, fields: T) -> StreamEvent {
        let json = serde_json::to_vec(&Envelope {
            kind,
            sequence_number: self.seq,
            fields,
        })
        .unwrap_or_default();
        self.seq += 1;
        StreamEvent { kind, json }
    }

    /// An event carrying the whole response as it stands.
    fn response_event(&mut self, kind: &'static str) -> StreamEvent {
        let json = serde_json::to_vec(&Envelope {
            kind,
            sequence_number: self.seq,
            fields: WithResponse {
                response: &self.response,
            },
        })
        .unwrap_or_default();
        self.seq += 1;
        StreamEvent { kind, json }
    }

    /// `response.created` and `response.in_progress`.
    pub fn start(&mut self) -> Vec<StreamEvent> {
        vec![
            self.response_event("response.created"),
            self.response_event("response.in_progress"),
        ]
    }

    /// The events of one canonical chunk (the JSON of a `chat.completion.chunk`).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<StreamEvent> {
        let chunk: Chunk = match serde_json::from_slice(chunk) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("responses: unreadable canonical chunk skipped: {e}");
                return Vec::new();
            }
        };
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let mut out = Vec::new();
        for choice in chunk.choices.into_iter().take(1) {
            let d = choice.delta;
            if let Some(r) = d.reasoning_content.filter(|r| !r.is_empty()) {
                self.reasoning_delta(r, &mut out);
            }
            if let Some(t) = d.content.or(d.refusal).filter(|t| !t.is_empty()) {
                self.text_delta(t, &mut out);
            }
            for call in d.tool_calls.into_iter().flatten() {
                self.call_delta(call, &mut out);
            }
            if choice.finish_reason.is_some() {
                self.finish = choice.finish_reason;
            }
        }
        out
    }

    fn open_item(&mut self, item: Value, out: &mut Vec<StreamEvent>) -> usize {
        let index = self.next_index;
        self.next_index += 1;
        out.push(self.event(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        ));
        index
    }

    fn reasoning_delta(&mut self, delta: String, out: &mut Vec<StreamEvent>) {
        if self.reasoning.is_none() {
            let id = new_id("rs");
            let index = self.open_item(
                json!({"type": "reasoning", "id": id, "summary": [], "content": [], "status": "in_progress"}),
                out,
            );
            out.push(self.event(
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                       "part": {"type": "reasoning_text", "text": ""}}),
            ));
            self.reasoning = Some(Open {
                index,
                id,
                text: String::new(),
            });
        }
        let r = self.reasoning.as_mut().expect("opened above");
        r.text.push_str(&delta);
        self.output_chars += delta.len();
        let (id, index) = (r.id.clone(), r.index);
        out.push(self.event(
            "response.reasoning_text.delta",
            Delta {
                item_id: &id,
                output_index: index,
                content_index: Some(0),
                delta: &delta,
                logprobs: None,
            },
        ));
    }

    fn close_reasoning(&mut self, out: &mut Vec<StreamEvent>) {
        let Some(r) = self.reasoning.take() else {
            return;
        };
        let part = ReasoningText::new(r.text.clone());
        out.push(self.event(
            "response.reasoning_text.done",
            json!({"item_id": r.id, "output_index": r.index, "content_index": 0, "text": r.text}),
        ));
        out.push(self.event(
            "response.content_part.done",
            json!({"item_id": r.id, "output_index": r.index, "content_index": 0, "part": part}),
        ));
        let item = OutputItem::Reasoning {
            id: r.id,
            summary: Vec::new(),
            content: vec![part],
            status: "completed",
        };
        self.close_item(r.index, item, out);
    }

    fn close_item(&mut self, index: usize, item: OutputItem, out: &mut Vec<StreamEvent>) {
        out.push(self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ));
        self.done.insert(index, item);
    }

    fn text_delta(&mut self, delta: String, out: &mut Vec<StreamEvent>) {
        self.close_reasoning(out);
        if self.message.is_none() {
            let id = new_id("msg");
            let index = self.open_item(
                json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []}),
                out,
            );
            out.push(self.event(
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                       "part": OutputText::new("")}),
            ));
            self.message = Some(Open {
                index,
                id,
                text: String::new(),
            });
        }
        let m = self.message.as_mut().expect("opened above");
        m.text.push_str(&delta);
        self.output_chars += delta.len();
        let (id, index) = (m.id.clone(), m.index);
        out.push(self.event(
            "response.output_text.delta",
            Delta {
                item_id: &id,
                output_index: index,
                content_index: Some(0),
                delta: &delta,
                logprobs: Some([]),
            },
        ));
    }

    fn close_message(&mut self, status: &'static str, out: &mut Vec<StreamEvent>) {
        let Some(m) = self.message.take() else {
            return;
        };
        let part = OutputText::new(m.text.clone());
        out.push(self.event(
            "response.output_text.done",
            json!({"item_id": m.id, "output_index": m.index, "content_index": 0, "text": m.text, "logprobs": []}),
        ));
        out.push(self.event(
            "response.content_part.done",
            json!({"item_id": m.id, "output_index": m.index, "content_index": 0, "part": part}),
        ));
        let item = OutputItem::Message {
            id: m.id,
            status,
            role: "assistant",
            content: vec![part],
        };
        self.close_item(m.index, item, out);
    }

    fn call_delta(&mut self, d: ToolCallDelta, out: &mut Vec<StreamEvent>) {
        self.close_reasoning(out);
        let (name, args) = match d.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        if !self.calls.contains_key(&d.index) {
            self.close_message("completed", out);
            let flat = name.clone().unwrap_or_default();
            let declared = self.shape.names.declared(&flat);
            let call_id =
                d.id.clone()
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| new_id("call"));
            let (id, mut item) = if declared.custom {
                let id = new_id("ctc");
                let item = json!({"type": "custom_tool_call", "id": id, "call_id": call_id,
                    "name": declared.name, "input": ""});
                (id, item)
            } else {
                let id = new_id("fc");
                let item = json!({"type": "function_call", "id": id, "call_id": call_id,
                    "name": declared.name, "arguments": "", "status": "in_progress"});
                (id, item)
            };
            if let Some(ns) = &declared.namespace {
                item["namespace"] = json!(ns);
            }
            let index = self.open_item(item, out);
            self.calls.insert(
                d.index,
                OpenCall {
                    index,
                    id,
                    call_id,
                    name: flat,
                    arguments: String::new(),
                    custom: declared.custom,
                },
            );
        } else if let Some(n) = name {
            // A name sent in pieces (rare): the item.added already went out with the first.
            if let Some(c) = self.calls.get_mut(&d.index) {
                c.name.push_str(&n);
            }
        }
        if let Some(a) = args.filter(|a| !a.is_empty()) {
            let c = self.calls.get_mut(&d.index).expect("inserted above");
            c.arguments.push_str(&a);
            self.output_chars += a.len();
            if c.custom {
                return;
            }
            let (id, index) = (c.id.clone(), c.index);
            out.push(self.event(
                "response.function_call_arguments.delta",
                Delta {
                    item_id: &id,
                    output_index: index,
                    content_index: None,
                    delta: &a,
                    logprobs: None,
                },
            ));
        }
    }

    fn close_calls(&mut self, out: &mut Vec<StreamEvent>) {
        let calls = std::mem::take(&mut self.calls);
        for (_, c) in calls {
            let item = self
                .shape
                .call_item(Some(c.id.clone()), c.call_id, &c.name, c.arguments);
            match &item {
                OutputItem::CustomToolCall { input, .. } => {
                    out.push(self.event(
                        "response.custom_tool_call_input.delta",
                        json!({"item_id": c.id, "output_index": c.index, "delta": input}),
                    ));
                    out.push(self.event(
                        "response.custom_tool_call_input.done",
                        json!({"item_id": c.id, "output_index": c.index, "input": input}),
                    ));
                }
                OutputItem::FunctionCall {
                    name, arguments, ..
                } => out.push(self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": c.id, "output_index": c.index, "name": name, "arguments": arguments}),
                )),
                _ => {}
            }
            self.close_item(c.index, item, out);
        }
    }

    fn close_all(&mut self, out: &mut Vec<StreamEvent>) {
        self.close_reasoning(out);
        let status = if self.finish.as_deref() == Some("length") {
            "incomplete"
        } else {
            "completed"
        };
        self.close_message(status, out);
        self.close_calls(out);
        self.response.output = std::mem::take(&mut self.done).into_values().collect();
    }

    /// The end of the upstream answer: every open item closed, then `response.completed`
    /// (`response.incomplete` after a length stop) with the whole response and usage.
    /// `count_output` estimates output tokens when the upstream reported none.
    pub fn finish(
        &mut self,
        end: Option<StreamEnd>,
        effective_context: u64,
        count_output: impl FnOnce(usize) -> u64,
    ) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        self.close_all(&mut out);
        let usage = end.and_then(|e| e.usage).or(self.usage.take());
        let counted = if usage.is_none() {
            count_output(self.output_chars)
        } else {
            0
        };
        let (status, details) = finish_status(self.finish.as_deref());
        self.response.status = status;
        self.response.incomplete_details = details;
        self.response.usage = Some(response_usage(usage.as_ref(), effective_context, counted));
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        out.push(self.response_event(kind));
        out
    }

    /// A failure after the stream was committed: one `response.failed` carrying the error
    /// and whatever output was finished.
    pub fn fail(&mut self, e: &ProviderError) -> Vec<StreamEvent> {
        self.reasoning = None;
        self.message = None;
        self.calls.clear();
        self.response.output = std::mem::take(&mut self.done).into_values().collect();
        self.response.status = "failed";
        self.response.error = Some(ResponseError {
            code: match e {
                ProviderError::RateLimited { .. } => "rate_limit_exceeded",
                _ => "server_error",
            },
            message: e.to_string(),
        });
        vec![self.response_event("response.failed")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
