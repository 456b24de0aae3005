//! Google Gemini (the Generative Language API, `type: "google"`): OpenAI chat requests go up as
//! `generateContent` / `streamGenerateContent?alt=sse` calls, answers come back as OpenAI
//! completions and chunks. The translation is pure (`to_native`, `from_native`,
//! `StreamTranslator`); the HTTP part is thin.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::convert::{
    arguments_object, arguments_string, data_url, new_call_id, new_completion_id, push_turn,
    Answer, ToolNames,
};
use super::http::{error_fields, Auth, Upstream};
use super::kernel::{self, ChunkWriter, Flow};
use super::sse::sse_events;
use super::{ChatOutcome, ChatStream, Provider, ProviderError};
use crate::api::openai::{
    unix_now, ChatRequest, ChatResponse, Content as OaContent, FunctionCall, Message, ModelInfo,
    ToolCall, Usage,
};

/// Pages of the model list followed at most: a misbehaving upstream cannot loop us forever.
const MAX_MODEL_PAGES: usize = 20;

pub struct Gemini {
    up: Upstream,
    signatures: Arc<Signatures>,
}

impl Gemini {
    /// `signatures` is shared by every Gemini provider, so a conversation moved from one to
    /// another (a rotation) still hands its signatures back.
    pub fn new(up: Upstream, signatures: Arc<Signatures>) -> Self {
        Gemini {
            // The key goes in `x-goog-api-key`, never in the URL (URLs end up in logs).
            up: up.with_auth(Auth::Header("x-goog-api-key")),
            signatures,
        }
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
    async fn chat(&self, req: &ChatRequest, model: &str) -> Result<ChatOutcome, ProviderError> {
        let body = serde_json::to_vec(&to_native(req, &self.signatures))
            .map_err(|e| ProviderError::Protocol(format!("request encoding: {e}")))?;
        let stream = req.is_stream();
        let resp = self
            .up
            .send(self.up.post_json(self.url(model, stream), body))
            .await?;
        if stream {
            let events = sse_events(resp.bytes_stream(), self.up.timeouts.idle);
            let signatures = self.signatures.clone();
            return Ok(ChatOutcome::Stream(translate_stream(
                events, model, signatures,
            )));
        }
        let body = self.up.read_body(resp).await?;
        let native = parse_native(&body)?;
        Ok(ChatOutcome::Complete(from_native(
            native,
            model,
            &self.signatures,
        )))
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
            let req = self.up.client.get(&url).query(&query);
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
    /// that does not send it back with that call. Kept in `Signatures`, never in the id.
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

// ---------- thought signatures ----------

/// How many signatures are kept: the newest calls' (a conversation hands its calls back on
/// the next turn, so only recent ones are ever looked up).
const SIGNATURES_KEPT: usize = 4096;

/// Gemini's `thoughtSignature`s by the tool-call id the client was given. They stay in the
/// gateway: the id stays short and provider-neutral, so a conversation that fails over to
/// another upstream carries nothing Gemini-specific, and Gemini gets its signature back.
#[derive(Default)]
pub struct Signatures {
    inner: parking_lot::Mutex<SignatureMap>,
}

#[derive(Default)]
struct SignatureMap {
    by_id: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Signatures {
    pub fn remember(&self, id: &str, signature: String) {
        let mut m = self.inner.lock();
        if m.by_id.insert(id.to_string(), signature).is_none() {
            m.order.push_back(id.to_string());
        }
        while m.order.len() > SIGNATURES_KEPT {
            if let Some(old) = m.order.pop_front() {
                m.by_id.remove(&old);
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<String> {
        self.inner.lock().by_id.get(id).cloned()
    }
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

pub fn to_native(req: &ChatRequest, signatures: &Signatures) -> GenerateRequest {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Part>)> = Vec::new();
    let mut names = ToolNames::default();
    for m in &req.messages {
        let result_name = names.name_for(m);
        names.observe(m);
        let (role, parts) = match m.role.as_str() {
            "system" | "developer" => {
                let text = m.text();
                if !text.is_empty() {
                    system.push(Part::text(text));
                }
                continue;
            }
            "assistant" => ("model", assistant_parts(m, signatures)),
            "tool" | "function" => ("user", vec![tool_result_part(result_name, m)]),
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
        push_turn(&mut turns, role, parts);
    }
    let contents = turns
        .into_iter()
        .map(|(role, parts)| Content {
            role: Some(role.to_string()),
            parts,
        })
        .collect();

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
    if url.starts_with("data:") {
        let Some(d) = data_url(url) else {
            tracing::debug!("gemini: non-base64 data URL dropped");
            return None;
        };
        return Some(Part {
            inline_data: Some(Blob {
                mime_type: if d.media_type.is_empty() {
                    "image/jpeg".into()
                } else {
                    d.media_type.to_string()
                },
                data: d.data.to_string(),
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

fn assistant_parts(m: &Message, signatures: &Signatures) -> Vec<Part> {
    if m.reasoning_content.is_some() {
        // Gemini keeps its reasoning in thought signatures, not in resent text.
        tracing::debug!("gemini: dropped an assistant message's reasoning_content");
    }
    let mut parts = Vec::new();
    let text = m.text();
    if !text.is_empty() {
        parts.push(Part::text(text));
    }
    for call in m.tool_calls.iter().flatten() {
        parts.push(Part {
            function_call: Some(NativeFunctionCall {
                name: call.function.name.clone(),
                args: arguments_object(&call.function.arguments),
            }),
            thought_signature: signatures.get(&call.id),
            ..Part::default()
        });
    }
    parts
}

/// A tool result as a `functionResponse`; Gemini matches it by function name, which OpenAI
/// only carries on the earlier assistant tool call with the same id.
fn tool_result_part(name: Option<&str>, m: &Message) -> Part {
    let name = name.map(str::to_string).unwrap_or_else(|| {
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
    let (message, kind, code) = error_fields(body, http::StatusCode::BAD_GATEWAY);
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
    match native {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => new_completion_id(),
    }
}

/// What one candidate's parts say, in order. The one walk over parts both the whole answer
/// and the stream use.
enum Piece {
    Text(String),
    Thought(String),
    Call { name: String, arguments: String },
}

/// The pieces of `parts`; each function call gets a fresh id (Gemini gives none), and its
/// `thoughtSignature` is remembered under that id.
fn pieces(parts: Vec<Part>, signatures: &Signatures) -> Vec<(Piece, Option<String>)> {
    let mut out = Vec::new();
    for p in parts {
        if let Some(t) = p.text.filter(|t| !t.is_empty()) {
            let piece = if p.thought == Some(true) {
                Piece::Thought(t)
            } else {
                Piece::Text(t)
            };
            out.push((piece, None));
        }
        if let Some(f) = p.function_call {
            let id = new_call_id();
            if let Some(sig) = p.thought_signature {
                signatures.remember(&id, sig);
            }
            let piece = Piece::Call {
                arguments: arguments_string(&f.args),
                name: f.name,
            };
            out.push((piece, Some(id)));
        }
    }
    out
}

fn candidate_finish(
    candidate: &Candidate,
    blocked: Option<&str>,
    has_calls: bool,
) -> Option<&'static str> {
    match (&candidate.finish_reason, blocked) {
        (Some(f), _) => Some(finish_reason(f, has_calls)),
        (None, Some(_)) => Some("content_filter"),
        (None, None) => None,
    }
}

pub fn from_native(r: GenerateResponse, model: &str, signatures: &Signatures) -> ChatResponse {
    let mut candidate = r.candidates.into_iter().next().unwrap_or_default();
    let mut answer = Answer {
        id: response_id(r.response_id.as_deref()),
        model: r.model_version.unwrap_or_else(|| model.to_string()),
        usage: r.usage_metadata.as_ref().map(usage),
        ..Answer::default()
    };
    let parts = candidate
        .content
        .take()
        .map(|c| c.parts)
        .unwrap_or_default();
    for (piece, id) in pieces(parts, signatures) {
        match piece {
            Piece::Text(t) => answer.text.push_str(&t),
            Piece::Thought(t) => answer.reasoning.push_str(&t),
            Piece::Call { name, arguments } => answer.tool_calls.push(ToolCall {
                id: id.unwrap_or_default(),
                kind: "function".into(),
                function: FunctionCall { name, arguments },
            }),
        }
    }
    let blocked = r.prompt_feedback.and_then(|f| f.block_reason);
    let has_calls = !answer.tool_calls.is_empty();
    answer.finish_reason = candidate_finish(&candidate, blocked.as_deref(), has_calls)
        .unwrap_or_else(|| finish_reason("STOP", has_calls));
    answer.into_response()
}

// ---------- streaming ----------

/// Gemini stream events (each a whole `GenerateContentResponse` carrying the new parts) in,
/// canonical deltas out. Usage may follow the finish, so the stream is read to its end.
pub struct StreamTranslator {
    signatures: Arc<Signatures>,
}

impl StreamTranslator {
    pub fn new(signatures: Arc<Signatures>) -> Self {
        StreamTranslator { signatures }
    }
}

impl kernel::StreamTranslator for StreamTranslator {
    fn on_event(&mut self, data: &[u8], out: &mut ChunkWriter) -> Result<Flow, ProviderError> {
        let v: Value = serde_json::from_slice(data).map_err(|e| {
            ProviderError::Protocol(format!("gemini stream event is not JSON: {e}"))
        })?;
        if v.get("error").is_some() {
            return Err(error_in_body(data));
        }
        let ev: GenerateResponse = serde_json::from_value(v)
            .map_err(|e| ProviderError::Protocol(format!("gemini stream event: {e}")))?;
        if !out.is_started() {
            out.set_id(response_id(ev.response_id.as_deref()));
            out.set_model(ev.model_version.as_deref().unwrap_or_default());
            out.start();
        }
        if let Some(m) = &ev.usage_metadata {
            out.usage(usage(m));
        }
        let mut candidate = ev.candidates.into_iter().next().unwrap_or_default();
        let parts = candidate
            .content
            .take()
            .map(|c| c.parts)
            .unwrap_or_default();
        for (piece, id) in pieces(parts, &self.signatures) {
            match piece {
                Piece::Text(t) => out.text(&t),
                Piece::Thought(t) => out.reasoning(&t),
                // Gemini sends each call whole: id, name and all arguments in one delta.
                Piece::Call { name, arguments } => {
                    out.tool_call(id.unwrap_or_default(), name, arguments)
                }
            }
        }
        let blocked = ev.prompt_feedback.and_then(|f| f.block_reason);
        if let Some(f) = candidate_finish(&candidate, blocked.as_deref(), out.tool_calls() > 0) {
            out.finish(f);
        }
        Ok(Flow::More)
    }

    fn finish(&mut self, out: &mut ChunkWriter) -> Result<(), ProviderError> {
        if out.is_finished() {
            return Ok(());
        }
        Err(ProviderError::Protocol(
            "gemini stream ended before a finishReason".into(),
        ))
    }
}

fn translate_stream(
    events: impl futures::Stream<Item = Result<eventsource_stream::Event, ProviderError>>
        + Send
        + 'static,
    model: &str,
    signatures: Arc<Signatures>,
) -> ChatStream {
    let data = events.map(|r| r.map(|ev| ev.data));
    let writer = ChunkWriter::new(new_completion_id(), model, unix_now());
    kernel::drive(data, StreamTranslator::new(signatures), writer)
}

#[cfg(test)]
#[path = "tests/gemini.rs"]
mod tests;
