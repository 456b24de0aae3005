//! Google Gemini (the Generative Language API, `type: "google"`): OpenAI chat requests go up as
//! `generateContent` / `streamGenerateContent?alt=sse` calls, answers come back as OpenAI
//! completions and chunks. The translation is pure (`to_native`, `from_native`,
//! `StreamTranslator`); the HTTP part is thin.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::http::{error_fields, Upstream};
use super::sse::sse_events;
use super::{ChatOutcome, ChatStream, Provider, ProviderError, StreamEnd, StreamItem};
use crate::api::openai::{
    unix_now, ChatChunk, ChatRequest, ChatResponse, Choice, Content as OaContent, Delta, Extra,
    FunctionCall, FunctionDelta, Message, ModelInfo, ResponseMessage, ToolCall, ToolCallDelta,
    Usage,
};

/// Pages of the model list followed at most: a misbehaving upstream cannot loop us forever.
const MAX_MODEL_PAGES: usize = 20;

pub struct Gemini {
    up: Upstream,
}

impl Gemini {
    pub fn new(up: Upstream) -> Self {
        Gemini { up }
    }

    /// The key goes in `x-goog-api-key`, never in the URL (URLs end up in logs and errors).
    fn authorized(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        Ok(match self.up.key()? {
            Some(key) => {
                let mut v = HeaderValue::from_str(key.expose()).map_err(|_| {
                    ProviderError::Protocol("the API key is not a valid header value".into())
                })?;
                v.set_sensitive(true);
                req.header("x-goog-api-key", v)
            }
            None => req,
        })
    }

    fn url(&self, model: &str, stream: bool) -> String {
        // Clients sometimes pass the resource name ("models/gemini-2.0-flash").
        let model = model.strip_prefix("models/").unwrap_or(model);
        if stream {
            format!(
                "{}/v1beta/models/{model}:streamGenerateContent?alt=sse",
                self.up.endpoint
            )
        } else {
            format!("{}/v1beta/models/{model}:generateContent", self.up.endpoint)
        }
    }
}

#[async_trait]
impl Provider for Gemini {
    fn id(&self) -> &str {
        &self.up.id
    }

    async fn chat(&self, req: &ChatRequest, model: &str) -> Result<ChatOutcome, ProviderError> {
        let body = serde_json::to_vec(&to_native(req))
            .map_err(|e| ProviderError::Protocol(format!("request encoding: {e}")))?;
        let stream = req.is_stream();
        let builder = self
            .up
            .client
            .post(self.url(model, stream))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let resp = self.up.send(self.authorized(builder)?).await?;
        if stream {
            let events = sse_events(resp, self.up.timeouts.idle);
            return Ok(ChatOutcome::Stream(translate_stream(events, model)));
        }
        let body = self.up.read_body(resp).await?;
        let native = parse_native(&body)?;
        Ok(ChatOutcome::Complete(from_native(native, model)))
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let url = format!("{}/v1beta/models", self.up.endpoint);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_MODEL_PAGES {
            let mut query = vec![("pageSize", "1000".to_string())];
            if let Some(t) = token.take() {
                query.push(("pageToken", t));
            }
            let req = self.authorized(self.up.client.get(&url).query(&query))?;
            let resp = self.up.send(req).await?;
            let body = self.up.read_body(resp).await?;
            let page: NativeModelList = serde_json::from_slice(&body)
                .map_err(|e| ProviderError::Protocol(format!("model list: {e}")))?;
            out.extend(page.models.into_iter().filter_map(model_info));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(out)
    }
}

// ---------- native wire types ----------

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateRequest {
    pub contents: Vec<Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub generation_config: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// One part: Gemini's `oneof data` (text, inlineData, fileData, functionCall,
/// functionResponse...) plus metadata; unknown kinds (executableCode...) deserialize empty.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<NativeFunctionCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse>,
    /// A thinking summary, not answer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    /// Opaque reasoning state on a functionCall part: Gemini 3 rejects a tool conversation
    /// that does not send it back with that call, so it rides in the OpenAI tool-call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<String>,
}

impl Part {
    fn text(t: impl Into<String>) -> Part {
        Part {
            text: Some(t.into()),
            ..Part::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    pub mime_type: String,
    pub data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    pub mime_type: String,
    pub file_uri: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NativeFunctionCall {
    pub name: String,
    /// An object, where OpenAI has a JSON *string*.
    #[serde(default)]
    pub args: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionResponse {
    pub name: String,
    pub response: Value,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub function_declarations: Vec<FunctionDeclaration>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FunctionDeclaration {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenerateResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub response_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u64,
    #[serde(default)]
    pub candidates_token_count: u64,
    #[serde(default)]
    pub thoughts_token_count: u64,
    #[serde(default)]
    pub cached_content_token_count: u64,
    #[serde(default)]
    pub total_token_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NativeModelList {
    #[serde(default)]
    models: Vec<NativeModel>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NativeModel {
    name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    input_token_limit: Option<u64>,
    #[serde(default)]
    supported_generation_methods: Option<Vec<String>>,
}

/// A chat-capable model as an OpenAI model entry; embedding-only models are left out.
fn model_info(m: NativeModel) -> Option<ModelInfo> {
    if let Some(methods) = &m.supported_generation_methods {
        if !methods.iter().any(|x| x == "generateContent") {
            return None;
        }
    }
    let id = m.name.strip_prefix("models/").unwrap_or(&m.name);
    let mut info = ModelInfo::new(id, "google");
    if let Some(d) = m.display_name {
        info.extra.insert("display_name".into(), Value::String(d));
    }
    if let Some(n) = m.input_token_limit {
        info.extra.insert("context_length".into(), Value::from(n));
    }
    Some(info)
}

// ---------- request: OpenAI → Gemini ----------

/// Request fields translated by `to_native`; any other field is dropped with a debug log.
const TRANSLATED: &[&str] = &[
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "response_format",
    // Meaningful to the gateway, not to the upstream.
    "stream_options",
];

pub fn to_native(req: &ChatRequest) -> GenerateRequest {
    let mut system = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, parts) = match m.role.as_str() {
            "system" | "developer" => {
                let text = m.text();
                if !text.is_empty() {
                    system.push(Part::text(text));
                }
                continue;
            }
            "assistant" => ("model", assistant_parts(m)),
            "tool" | "function" => ("user", vec![tool_result_part(&req.messages[..i], m)]),
            "user" => ("user", user_parts(m)),
            other => {
                tracing::debug!(role = other, "gemini: unknown role sent as user");
                ("user", user_parts(m))
            }
        };
        if parts.is_empty() {
            // Gemini rejects a turn without parts.
            tracing::debug!(role = %m.role, "gemini: empty message dropped");
            continue;
        }
        // Gemini wants alternating turns: consecutive same-role messages become one turn.
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(Content {
                role: Some(role.to_string()),
                parts,
            }),
        }
    }

    let tools = tools(req);
    let tool_config = if tools.is_empty() {
        None
    } else {
        req.field("tool_choice").and_then(tool_config)
    };
    for key in req.extra.keys() {
        if !TRANSLATED.contains(&key.as_str()) {
            tracing::debug!(field = %key, "gemini: field not expressible, dropped");
        }
    }
    GenerateRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content {
            role: None,
            parts: system,
        }),
        tools,
        tool_config,
        generation_config: generation_config(req),
    }
}

fn user_parts(m: &Message) -> Vec<Part> {
    match &m.content {
        None => Vec::new(),
        Some(OaContent::Text(t)) if t.is_empty() => Vec::new(),
        Some(OaContent::Text(t)) => vec![Part::text(t.clone())],
        Some(OaContent::Parts(parts)) => parts
            .iter()
            .filter_map(|p| match p.kind.as_str() {
                "text" => p
                    .text
                    .as_ref()
                    .filter(|t| !t.is_empty())
                    .map(|t| Part::text(t.clone())),
                "image_url" => p.image_url.as_ref().and_then(|u| image_part(&u.url)),
                "input_audio" => audio_part(p.extra.get("input_audio")),
                other => {
                    tracing::debug!(
                        part = other,
                        "gemini: content part not expressible, dropped"
                    );
                    None
                }
            })
            .collect(),
    }
}

/// `data:` URLs go inline, other URLs by reference.
pub fn image_part(url: &str) -> Option<Part> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',')?;
        let Some(mime) = meta.strip_suffix(";base64") else {
            tracing::debug!("gemini: non-base64 data URL dropped");
            return None;
        };
        return Some(Part {
            inline_data: Some(Blob {
                mime_type: if mime.is_empty() {
                    "image/jpeg".into()
                } else {
                    mime.to_string()
                },
                data: data.to_string(),
            }),
            ..Part::default()
        });
    }
    Some(Part {
        file_data: Some(FileData {
            mime_type: mime_from_extension(url).to_string(),
            file_uri: url.to_string(),
        }),
        ..Part::default()
    })
}

pub fn mime_from_extension(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let ext = file
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    }
}

fn audio_part(audio: Option<&Value>) -> Option<Part> {
    let a = audio?;
    let data = a.get("data")?.as_str()?;
    let format = a.get("format").and_then(Value::as_str).unwrap_or("wav");
    Some(Part {
        inline_data: Some(Blob {
            mime_type: format!("audio/{format}"),
            data: data.to_string(),
        }),
        ..Part::default()
    })
}

fn assistant_parts(m: &Message) -> Vec<Part> {
    let mut parts = Vec::new();
    let text = m.text();
    if !text.is_empty() {
        parts.push(Part::text(text));
    }
    for call in m.tool_calls.iter().flatten() {
        parts.push(Part {
            function_call: Some(NativeFunctionCall {
                name: call.function.name.clone(),
                args: args_object(&call.function.arguments),
            }),
            thought_signature: call
                .id
                .split_once(SIGNATURE_IN_ID)
                .map(|(_, sig)| sig.to_string()),
            ..Part::default()
        });
    }
    parts
}

/// OpenAI's arguments string as the object Gemini wants.
pub fn args_object(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            tracing::debug!("gemini: tool call arguments are not a JSON object, wrapped");
            json!({ "arguments": arguments })
        }
    }
}

/// A tool result as a `functionResponse`; Gemini matches it by function name, which OpenAI
/// only carries on the earlier assistant tool call with the same id.
fn tool_result_part(earlier: &[Message], m: &Message) -> Part {
    let name = m
        .tool_call_id
        .as_deref()
        .and_then(|id| {
            // Newest first: ids may repeat across turns.
            earlier
                .iter()
                .rev()
                .flat_map(|e| e.tool_calls.iter().flatten())
                .find(|c| c.id == id)
                .map(|c| c.function.name.clone())
        })
        .or_else(|| m.name.clone())
        .unwrap_or_else(|| {
            tracing::debug!("gemini: tool result without a matching tool call");
            "unknown_function".to_string()
        });
    let text = m.text();
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "content": text }),
    };
    Part {
        function_response: Some(FunctionResponse { name, response }),
        ..Part::default()
    }
}

fn tools(req: &ChatRequest) -> Vec<Tool> {
    let Some(Value::Array(list)) = req.field("tools") else {
        return Vec::new();
    };
    let decls: Vec<FunctionDeclaration> = list
        .iter()
        .filter_map(|t| {
            if t.get("type").and_then(Value::as_str).unwrap_or("function") != "function" {
                tracing::debug!("gemini: non-function tool dropped");
                return None;
            }
            let f = t.get("function")?;
            Some(FunctionDeclaration {
                name: f.get("name")?.as_str()?.to_string(),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                parameters: f.get("parameters").and_then(parameters_schema),
            })
        })
        .collect();
    if decls.is_empty() {
        return Vec::new();
    }
    vec![Tool {
        function_declarations: decls,
    }]
}

/// A function's parameters, or none when it takes none: Gemini rejects an OBJECT schema
/// with empty `properties`.
fn parameters_schema(p: &Value) -> Option<Value> {
    let s = gemini_schema(p);
    let empty_object = s
        .get("properties")
        .is_none_or(|p| p.as_object().is_none_or(Map::is_empty))
        && s.get("type").and_then(Value::as_str) == Some("object");
    (!empty_object && s.as_object().is_some_and(|o| !o.is_empty())).then_some(s)
}

/// Keys of Gemini's `Schema` (a subset of OpenAPI 3.0); everything else (`additionalProperties`,
/// `$schema`, `$ref`, `strict`, `patternProperties`...) is rejected by the API with a 400.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// A JSON schema reduced to what Gemini accepts, recursively.
pub fn gemini_schema(v: &Value) -> Value {
    let Value::Object(o) = v else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, val) in o {
        match k.as_str() {
            // `["string","null"]` → `string` + nullable.
            "type" => match val {
                Value::Array(types) => {
                    let non_null: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                    if non_null.len() < types.len() {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    if let Some(t) = non_null.first() {
                        out.insert("type".into(), (*t).clone());
                    }
                }
                other => {
                    out.insert("type".into(), other.clone());
                }
            },
            "properties" => {
                if let Value::Object(props) = val {
                    let props = props
                        .iter()
                        .map(|(name, s)| (name.clone(), gemini_schema(s)))
                        .collect();
                    out.insert("properties".into(), Value::Object(props));
                }
            }
            "items" => {
                let item = match val {
                    Value::Array(a) => a.first().cloned().unwrap_or(json!({})),
                    other => other.clone(),
                };
                out.insert("items".into(), gemini_schema(&item));
            }
            "anyOf" | "oneOf" => {
                if let Value::Array(a) = val {
                    out.insert(
                        "anyOf".into(),
                        Value::Array(a.iter().map(gemini_schema).collect()),
                    );
                }
            }
            "const" => {
                out.insert("enum".into(), json!([val]));
            }
            key if SCHEMA_KEYS.contains(&key) => {
                out.insert(k.clone(), val.clone());
            }
            key => tracing::debug!(key, "gemini: schema keyword not supported, dropped"),
        }
    }
    Value::Object(out)
}

pub fn tool_config(choice: &Value) -> Option<Value> {
    let (mode, allowed) = match choice {
        Value::String(s) => match s.as_str() {
            "auto" => ("AUTO", None),
            "required" => ("ANY", None),
            "none" => ("NONE", None),
            other => {
                tracing::debug!(choice = other, "gemini: unknown tool_choice dropped");
                return None;
            }
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)?;
            ("ANY", Some(name))
        }
        _ => return None,
    };
    let mut cfg = json!({ "mode": mode });
    if let Some(name) = allowed {
        cfg["allowedFunctionNames"] = json!([name]);
    }
    Some(json!({ "functionCallingConfig": cfg }))
}

pub fn generation_config(req: &ChatRequest) -> Map<String, Value> {
    let mut g = Map::new();
    let mut copy = |from: &str, to: &str| {
        if let Some(v) = req.field(from) {
            g.insert(to.to_string(), v.clone());
        }
    };
    copy("temperature", "temperature");
    copy("top_p", "topP");
    copy("presence_penalty", "presencePenalty");
    copy("frequency_penalty", "frequencyPenalty");
    copy("seed", "seed");
    if let Some(v) = req
        .field("max_completion_tokens")
        .or_else(|| req.field("max_tokens"))
    {
        g.insert("maxOutputTokens".into(), v.clone());
    }
    match req.field("stop") {
        Some(Value::String(s)) => {
            g.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            g.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    match req.field("n").and_then(Value::as_u64) {
        Some(1) => {
            g.insert("candidateCount".into(), json!(1));
        }
        Some(n) => tracing::debug!(n, "gemini: only one candidate is translated, n dropped"),
        None => {}
    }
    if let Some(Value::Object(rf)) = req.field("response_format") {
        match rf.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                g.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                g.insert("responseMimeType".into(), json!("application/json"));
                if let Some(s) = rf.get("json_schema").and_then(|j| j.get("schema")) {
                    g.insert("responseSchema".into(), gemini_schema(s));
                }
            }
            _ => {}
        }
    }
    g
}

// ---------- response: Gemini → OpenAI ----------

/// A non-stream body; a 200 carrying an error object is still an error.
pub fn parse_native(body: &[u8]) -> Result<GenerateResponse, ProviderError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ProviderError::Protocol(format!("gemini response is not JSON: {e}")))?;
    if v.get("error").is_some() {
        return Err(error_in_body(body));
    }
    serde_json::from_value(v).map_err(|e| ProviderError::Protocol(format!("gemini response: {e}")))
}

/// An `{"error":{"code","message","status"}}` object inside a 200 body or stream.
fn error_in_body(body: &[u8]) -> ProviderError {
    let (message, kind, code) = error_fields(body, reqwest::StatusCode::BAD_GATEWAY);
    let status = code
        .as_deref()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|s| (400..600).contains(s))
        .unwrap_or(502);
    if status == 429 {
        return ProviderError::RateLimited {
            retry_after: None,
            message,
        };
    }
    ProviderError::Upstream {
        status,
        message,
        kind,
        code,
    }
}

pub fn finish_reason(native: &str, has_tool_calls: bool) -> &'static str {
    match native {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

pub fn usage(m: &UsageMetadata) -> Usage {
    // OpenAI counts reasoning inside completion_tokens.
    let completion = m.candidates_token_count + m.thoughts_token_count;
    let mut u = Usage::new(m.prompt_token_count, completion);
    if let Some(total) = m.total_token_count {
        u.total_tokens = total;
    }
    if m.thoughts_token_count > 0 {
        u.extra.insert(
            "completion_tokens_details".into(),
            json!({ "reasoning_tokens": m.thoughts_token_count }),
        );
    }
    if m.cached_content_token_count > 0 {
        u.extra.insert(
            "prompt_tokens_details".into(),
            json!({ "cached_tokens": m.cached_content_token_count }),
        );
    }
    u
}

fn response_id(native: Option<&str>) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    match native {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => format!(
            "chatcmpl-gemini-{}-{}",
            unix_now(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

/// Separates the call number from a carried `thoughtSignature` inside a tool-call id.
const SIGNATURE_IN_ID: &str = "__ts_";

/// Tool call ids Gemini does not give: `call_<n>` in the order the calls came, plus the
/// call's `thoughtSignature` when it has one (the client sends the id back unchanged).
fn call_id(n: usize, signature: Option<&str>) -> String {
    match signature {
        Some(sig) => format!("call_{n}{SIGNATURE_IN_ID}{sig}"),
        None => format!("call_{n}"),
    }
}

fn call_arguments(args: &Value) -> String {
    match args {
        Value::Null => "{}".to_string(),
        v => v.to_string(),
    }
}

pub fn from_native(r: GenerateResponse, model: &str) -> ChatResponse {
    let candidate = r.candidates.into_iter().next().unwrap_or_default();
    let mut text = String::new();
    let mut calls = Vec::new();
    for p in candidate.content.map(|c| c.parts).unwrap_or_default() {
        if p.thought == Some(true) {
            continue;
        }
        if let Some(t) = p.text {
            text.push_str(&t);
        }
        if let Some(f) = p.function_call {
            calls.push(ToolCall {
                id: call_id(calls.len(), p.thought_signature.as_deref()),
                kind: "function".into(),
                function: FunctionCall {
                    arguments: call_arguments(&f.args),
                    name: f.name,
                },
            });
        }
    }
    let blocked = r.prompt_feedback.and_then(|f| f.block_reason);
    let finish = match (&candidate.finish_reason, &blocked) {
        (Some(f), _) => finish_reason(f, !calls.is_empty()),
        (None, Some(_)) => "content_filter",
        (None, None) => finish_reason("STOP", !calls.is_empty()),
    };
    let content = if text.is_empty() && !calls.is_empty() {
        None
    } else {
        Some(text)
    };
    ChatResponse {
        id: response_id(r.response_id.as_deref()),
        object: "chat.completion".into(),
        created: unix_now(),
        model: r.model_version.unwrap_or_else(|| model.to_string()),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".into(),
                content,
                refusal: None,
                tool_calls: (!calls.is_empty()).then_some(calls),
                extra: Extra::new(),
            },
            finish_reason: Some(finish.to_string()),
            logprobs: None,
            extra: Extra::new(),
        }],
        usage: r.usage_metadata.as_ref().map(usage),
        extra: Extra::new(),
    }
}

// ---------- streaming ----------

/// Gemini stream events (each a whole `GenerateContentResponse` carrying the new parts) in,
/// OpenAI chunks out.
pub struct StreamTranslator {
    id: String,
    model: String,
    created: i64,
    started: bool,
    tool_calls: usize,
    finished: bool,
    usage: Option<Usage>,
    content_chunks: u64,
}

impl StreamTranslator {
    pub fn new(model: &str) -> Self {
        StreamTranslator {
            id: String::new(),
            model: model.to_string(),
            created: unix_now(),
            started: false,
            tool_calls: 0,
            finished: false,
            usage: None,
            content_chunks: 0,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&str>) -> ChatChunk {
        ChatChunk::delta(&self.id, self.created, &self.model, delta, finish)
    }

    /// One `data:` payload → zero or more chunks.
    pub fn on_data(&mut self, data: &str) -> Result<Vec<ChatChunk>, ProviderError> {
        let v: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::Protocol(format!("gemini stream event is not JSON: {e}"))
        })?;
        if v.get("error").is_some() {
            return Err(error_in_body(data.as_bytes()));
        }
        let ev: GenerateResponse = serde_json::from_value(v)
            .map_err(|e| ProviderError::Protocol(format!("gemini stream event: {e}")))?;
        Ok(self.on_event(ev))
    }

    pub fn on_event(&mut self, ev: GenerateResponse) -> Vec<ChatChunk> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            self.id = response_id(ev.response_id.as_deref());
            if let Some(m) = &ev.model_version {
                self.model = m.clone();
            }
            out.push(self.chunk(
                Delta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                    ..Delta::default()
                },
                None,
            ));
        }
        if let Some(m) = &ev.usage_metadata {
            self.usage = Some(usage(m));
        }
        let blocked = ev.prompt_feedback.and_then(|f| f.block_reason);
        let candidate = ev.candidates.into_iter().next().unwrap_or_default();
        let mut text = String::new();
        let mut calls = Vec::new();
        for p in candidate.content.map(|c| c.parts).unwrap_or_default() {
            if p.thought == Some(true) {
                continue;
            }
            if let Some(t) = p.text {
                text.push_str(&t);
            }
            if let Some(f) = p.function_call {
                // Gemini sends each call whole: id, name and all arguments in one delta.
                let index = self.tool_calls;
                self.tool_calls += 1;
                calls.push(ToolCallDelta {
                    index: index as u32,
                    id: Some(call_id(index, p.thought_signature.as_deref())),
                    kind: Some("function".into()),
                    function: Some(FunctionDelta {
                        name: Some(f.name),
                        arguments: Some(call_arguments(&f.args)),
                    }),
                });
            }
        }
        if self.finished {
            // Trailing events after the finish carry usage only.
            return out;
        }
        if !text.is_empty() {
            self.content_chunks += 1;
            out.push(self.chunk(
                Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                None,
            ));
        }
        if !calls.is_empty() {
            self.content_chunks += 1;
            out.push(self.chunk(
                Delta {
                    tool_calls: Some(calls),
                    ..Delta::default()
                },
                None,
            ));
        }
        let finish = match (&candidate.finish_reason, &blocked) {
            (Some(f), _) => Some(finish_reason(f, self.tool_calls > 0)),
            (None, Some(_)) => Some("content_filter"),
            (None, None) => None,
        };
        if let Some(f) = finish {
            self.finished = true;
            out.push(self.chunk(Delta::default(), Some(f)));
        }
        out
    }

    /// The end of the upstream stream: the answer must have finished.
    pub fn finish(&mut self) -> Result<StreamEnd, ProviderError> {
        if !self.finished {
            return Err(ProviderError::Protocol(
                "gemini stream ended before a finishReason".into(),
            ));
        }
        Ok(StreamEnd {
            id: std::mem::take(&mut self.id),
            model: std::mem::take(&mut self.model),
            created: self.created,
            usage: self.usage.take(),
            content_chunks: self.content_chunks,
        })
    }
}

fn translate_stream(
    events: impl futures::Stream<Item = Result<eventsource_stream::Event, ProviderError>>
        + Send
        + 'static,
    model: &str,
) -> ChatStream {
    struct State<S> {
        events: std::pin::Pin<Box<S>>,
        tr: StreamTranslator,
        pending: VecDeque<Bytes>,
        done: bool,
    }
    let state = State {
        events: Box::pin(events),
        tr: StreamTranslator::new(model),
        pending: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(b) = s.pending.pop_front() {
                return Some((Ok(StreamItem::Chunk(b)), s));
            }
            if s.done {
                return None;
            }
            match s.events.next().await {
                None => {
                    s.done = true;
                    let item = s.tr.finish().map(StreamItem::End);
                    return Some((item, s));
                }
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
                Some(Ok(ev)) => {
                    let data = ev.data.trim();
                    if data.is_empty() {
                        continue;
                    }
                    match s.tr.on_data(data) {
                        Ok(chunks) => s.pending.extend(
                            chunks
                                .iter()
                                .map(|c| Bytes::from(serde_json::to_vec(c).unwrap_or_default())),
                        ),
                        Err(e) => {
                            s.done = true;
                            return Some((Err(e), s));
                        }
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn native(v: Value) -> Value {
        serde_json::to_value(to_native(&request(v))).unwrap()
    }

    #[test]
    fn messages_translate() {
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "system becomes systemInstruction, assistant becomes model",
                json!([
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Bye"}
                ]),
                json!({
                    "systemInstruction": {"parts": [{"text": "Be brief."}]},
                    "contents": [
                        {"role": "user", "parts": [{"text": "Hi"}]},
                        {"role": "model", "parts": [{"text": "Hello"}]},
                        {"role": "user", "parts": [{"text": "Bye"}]}
                    ]
                }),
            ),
            (
                "consecutive same-role turns merge, developer is system",
                json!([
                    {"role": "developer", "content": "A"},
                    {"role": "system", "content": "B"},
                    {"role": "user", "content": "one"},
                    {"role": "user", "content": [{"type": "text", "text": "two"}]}
                ]),
                json!({
                    "systemInstruction": {"parts": [{"text": "A"}, {"text": "B"}]},
                    "contents": [{"role": "user", "parts": [{"text": "one"}, {"text": "two"}]}]
                }),
            ),
            (
                "images: data URL inline, https by reference",
                json!([{"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a/cat.webp?s=1", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/dog"}}
                ]}]),
                json!({"contents": [{"role": "user", "parts": [
                    {"text": "look"},
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                    {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/a/cat.webp?s=1"}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/dog"}}
                ]}]}),
            ),
            (
                "tool calls and results round trip by name",
                json!([
                    {"role": "user", "content": "weather?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\":21}"},
                    {"role": "tool", "tool_call_id": "call_b", "content": "noon"}
                ]),
                json!({"contents": [
                    {"role": "user", "parts": [{"text": "weather?"}]},
                    {"role": "model", "parts": [
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "get_time", "args": {}}}
                    ]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                        {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}}
                    ]}
                ]}),
            ),
            (
                "empty messages are dropped",
                json!([{"role": "user", "content": ""}, {"role": "user", "content": "x"}]),
                json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}]}),
            ),
        ];
        for (name, messages, expected) in cases {
            assert_eq!(
                native(json!({"model": "m", "messages": messages})),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn tool_results_take_the_name_of_the_newest_matching_call() {
        let out = native(json!({"model": "m", "messages": [
            {"role": "assistant", "tool_calls": [{"id": "call_0", "function": {"name": "old", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "1"},
            {"role": "assistant", "tool_calls": [{"id": "call_0", "function": {"name": "new", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "[1,2]"}
        ]}));
        assert_eq!(
            out["contents"][1]["parts"][0]["functionResponse"]["name"],
            "old"
        );
        assert_eq!(
            out["contents"][3]["parts"][0]["functionResponse"],
            json!({"name": "new", "response": {"content": "[1,2]"}})
        );
    }

    #[test]
    fn tool_choice_modes() {
        let cases = [
            (json!("auto"), Some(json!({"mode": "AUTO"}))),
            (json!("required"), Some(json!({"mode": "ANY"}))),
            (json!("none"), Some(json!({"mode": "NONE"}))),
            (
                json!({"type": "function", "function": {"name": "f"}}),
                Some(json!({"mode": "ANY", "allowedFunctionNames": ["f"]})),
            ),
            (json!("weird"), None),
        ];
        for (choice, expected) in cases {
            assert_eq!(
                tool_config(&choice),
                expected.map(|e| json!({"functionCallingConfig": e})),
                "{choice}"
            );
        }
    }

    #[test]
    fn schemas_lose_what_gemini_rejects() {
        let cases = [
            (
                json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                       "additionalProperties": false,
                       "properties": {"additionalProperties": {"type": ["string", "null"], "const": "x"},
                                      "list": {"type": "array", "items": {"type": "object", "additionalProperties": {}, "properties": {"a": {"type": "integer"}}}}},
                       "required": ["list"]}),
                json!({"type": "object",
                       "properties": {"additionalProperties": {"type": "string", "nullable": true, "enum": ["x"]},
                                      "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
                       "required": ["list"]}),
            ),
            (
                json!({"oneOf": [{"type": "string", "title": "t"}, {"type": "number", "exclusiveMinimum": 0}]}),
                json!({"anyOf": [{"type": "string", "title": "t"}, {"type": "number"}]}),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(gemini_schema(&input), expected);
        }
        assert_eq!(
            parameters_schema(&json!({"type": "object", "properties": {}})),
            None
        );
        assert_eq!(parameters_schema(&json!({})), None);
    }

    #[test]
    fn tools_and_generation_config() {
        let out = native(json!({
            "model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                       "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": false}, "strict": true}},
                      {"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {}}}}],
            "tool_choice": "required",
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 100, "stop": "END", "n": 1,
            "seed": 3, "logit_bias": {"1": 2}, "user": "u"
        }));
        assert_eq!(
            out["tools"],
            json!([{"functionDeclarations": [
                {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
                {"name": "g"}
            ]}])
        );
        assert_eq!(
            out["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        assert_eq!(
            out["generationConfig"],
            json!({"temperature": 0.5, "topP": 0.9, "maxOutputTokens": 100,
                   "stopSequences": ["END"], "candidateCount": 1, "seed": 3})
        );
        let out = native(
            json!({"model": "m", "messages": [], "max_completion_tokens": 7,
                                "max_tokens": 9, "stop": ["a", "b"], "n": 3, "tool_choice": "auto"}),
        );
        assert_eq!(
            out["generationConfig"],
            json!({"maxOutputTokens": 7, "stopSequences": ["a", "b"]})
        );
        assert!(out.get("toolConfig").is_none(), "no tools, no toolConfig");
        assert!(out.get("systemInstruction").is_none());
    }

    fn response(v: Value) -> ChatResponse {
        from_native(serde_json::from_value(v).unwrap(), "gemini-x")
    }

    #[test]
    fn thought_signatures_ride_in_the_tool_call_id_and_go_back() {
        let r = response(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln+MQ=="},
                {"functionCall": {"name": "get_time", "args": {}}}
            ]}, "finishReason": "STOP"}]
        }));
        let calls = r.choices[0].message.tool_calls.clone().unwrap();
        assert_eq!(calls[0].id, "call_0__ts_c2ln+MQ==");
        assert_eq!(calls[1].id, "call_1", "no signature, plain id");
        let out = native(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "tool_calls": [
                    {"id": calls[0].id, "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                    {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": calls[0].id, "content": "{\"temp\":3}"},
                {"role": "tool", "tool_call_id": "call_1", "content": "noon"}
            ]
        }));
        assert_eq!(
            out["contents"][1]["parts"],
            json!([
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln+MQ=="},
                {"functionCall": {"name": "get_time", "args": {}}}
            ])
        );
        assert_eq!(
            out["contents"][2]["parts"][0]["functionResponse"]["name"],
            "get_weather"
        );
    }

    #[test]
    fn responses_translate() {
        let r = response(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}, {"text": "lo"}, {"text": "hmm", "thought": true}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "thoughtsTokenCount": 3, "totalTokenCount": 10},
            "modelVersion": "gemini-2.0-flash-001", "responseId": "abc"
        }));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["id"], "chatcmpl-abc");
        assert_eq!(v["model"], "gemini-2.0-flash-001");
        assert_eq!(
            v["choices"][0],
            json!({"index": 0, "message": {"role": "assistant", "content": "Hello", "refusal": null},
                   "finish_reason": "stop", "logprobs": null})
        );
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10,
                   "completion_tokens_details": {"reasoning_tokens": 3}})
        );

        let r = response(
            json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "a", "args": {"x": [1, {"y": null}]}}},
            {"functionCall": {"name": "b"}}
        ]}, "finishReason": "STOP"}]}),
        );
        let m = &r.choices[0].message;
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(m.content, None);
        let calls = m.tool_calls.as_ref().unwrap();
        assert_eq!(
            (calls[0].id.as_str(), calls[0].function.arguments.as_str()),
            ("call_0", r#"{"x":[1,{"y":null}]}"#)
        );
        assert_eq!(
            (calls[1].id.as_str(), calls[1].function.arguments.as_str()),
            ("call_1", "{}")
        );

        for (native, expected) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("OTHER", "stop"),
            ("MALFORMED_FUNCTION_CALL", "stop"),
        ] {
            let r = response(json!({"candidates": [{"finishReason": native}]}));
            assert_eq!(r.choices[0].finish_reason.as_deref(), Some(expected));
        }

        let r = response(json!({"promptFeedback": {"blockReason": "SAFETY"},
                                "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}}));
        assert_eq!(
            r.choices[0].finish_reason.as_deref(),
            Some("content_filter")
        );
        assert_eq!(r.choices[0].message.content.as_deref(), Some(""));
        assert_eq!(r.usage.unwrap().prompt_tokens, 4);
    }

    #[test]
    fn error_bodies_keep_their_status() {
        let e =
            parse_native(br#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#)
                .unwrap_err();
        assert!(
            matches!(&e, ProviderError::Upstream { status: 400, message, .. } if message == "bad"),
            "{e:?}"
        );
        let e = parse_native(
            br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#,
        )
        .unwrap_err();
        assert!(matches!(e, ProviderError::RateLimited { .. }));
        assert!(matches!(
            parse_native(b"<html>").unwrap_err(),
            ProviderError::Protocol(_)
        ));
    }

    fn stream(events: &[Value]) -> (Vec<Value>, Result<StreamEnd, ProviderError>) {
        let mut t = StreamTranslator::new("gemini-x");
        let mut chunks = Vec::new();
        for e in events {
            for c in t.on_data(&e.to_string()).unwrap() {
                chunks.push(serde_json::to_value(c).unwrap());
            }
        }
        (chunks, t.finish())
    }

    #[test]
    fn stream_text_then_finish_with_usage() {
        let (chunks, end) = stream(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}],
                   "usageMetadata": {"promptTokenCount": 3}, "responseId": "r1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": " there"}]}, "finishReason": "MAX_TOKENS"}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}, "responseId": "r1"}),
        ]);
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(
            deltas,
            [
                &json!({"role": "assistant", "content": ""}),
                &json!({"content": "Hi"}),
                &json!({"content": " there"}),
                &json!({})
            ]
        );
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
        assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-r1"));
        let end = end.unwrap();
        assert_eq!(end.usage.unwrap().total_tokens, 5);
        assert_eq!(end.content_chunks, 2);
    }

    #[test]
    fn stream_tool_calls_keep_their_index() {
        let (chunks, end) = stream(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {"k": 1}}}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "b", "args": {}}}]}, "finishReason": "STOP"}]}),
        ]);
        let tc: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(
            tc,
            [
                &json!([{"index": 0, "id": "call_0", "type": "function", "function": {"name": "a", "arguments": "{\"k\":1}"}}]),
                &json!([{"index": 1, "id": "call_1", "type": "function", "function": {"name": "b", "arguments": "{}"}}])
            ]
        );
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert!(end.unwrap().usage.is_none());
    }

    #[test]
    fn stream_edge_cases() {
        let (chunks, end) =
            stream(&[json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})]);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "content_filter");
        assert!(end.is_ok());

        let (_, end) = stream(&[json!({"candidates": [{"content": {"parts": [{"text": "x"}]}}]})]);
        assert!(matches!(end, Err(ProviderError::Protocol(_))));

        let mut t = StreamTranslator::new("m");
        let e = t
            .on_data(r#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#)
            .unwrap_err();
        assert!(e.is_provider_fault());
        assert!(t.on_data("{nope").is_err());
    }

    #[test]
    fn model_entries() {
        let list: NativeModelList = serde_json::from_value(json!({"models": [
            {"name": "models/gemini-2.0-flash", "displayName": "Gemini 2.0 Flash", "inputTokenLimit": 1048576,
             "supportedGenerationMethods": ["generateContent", "countTokens"]},
            {"name": "models/text-embedding-004", "supportedGenerationMethods": ["embedContent"]}
        ]}))
        .unwrap();
        let ids: Vec<ModelInfo> = list.models.into_iter().filter_map(model_info).collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].id, "gemini-2.0-flash");
        assert_eq!(ids[0].owned_by, "google");
    }

    #[test]
    fn mime_guesses() {
        for (url, mime) in [
            ("https://a/b.PNG", "image/png"),
            ("https://a/b.jpg", "image/jpeg"),
            ("https://a/b.gif#x", "image/gif"),
            ("https://a/doc.pdf", "application/pdf"),
            ("https://a/noext", "image/jpeg"),
        ] {
            assert_eq!(mime_from_extension(url), mime, "{url}");
        }
    }
}
