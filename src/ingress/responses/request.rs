//! A Responses request as the canonical chat request: input items, tools (namespaces
//! flattened, custom tools as one-string functions, built-ins left out), settings.

use std::collections::HashSet;

use serde_json::{json, Map};

use super::*;
use crate::api::openai::{Content, ContentPart, Extra, FunctionCall, ImageUrl, Message, ToolCall};
use crate::api::responses::*;

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
