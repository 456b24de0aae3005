//! OpenAI and any OpenAI-compatible endpoint: the request goes up as the client sent it (but
//! `model`), the answer comes back as the upstream sent it, chunk by chunk.

use std::borrow::Cow;

use async_trait::async_trait;
use bytes::Bytes;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::completion::Verbatim;
use super::http::{error_fields, Upstream};
use super::kernel::{self, ChunkWriter, Flow};
use super::sse::sse_data;
use super::{ChatOutcome, ChatStream, Provider, ProviderError};
use crate::api::openai::{ChatRequest, ChatResponse, Extra, Message, ModelInfo, ModelList, Usage};

pub struct OpenAi {
    up: Upstream,
    chat_url: http::Uri,
    models_url: String,
}

impl OpenAi {
    pub fn new(up: Upstream) -> Self {
        OpenAi {
            chat_url: Upstream::fixed_url(&format!("{}/chat/completions", up.endpoint)),
            models_url: format!("{}/models", up.endpoint),
            up,
        }
    }
}

/// The client's request as it goes upstream: every field as sent, `model` replaced, and for
/// streams `stream_options.include_usage` set so the upstream reports usage.
#[derive(Serialize)]
struct Outgoing<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<Value>,
    #[serde(flatten)]
    extra: ExtraExcept<'a>,
}

struct ExtraExcept<'a>(&'a Extra, &'static str);

impl Serialize for ExtraExcept<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0 {
            if k != self.1 {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

pub fn outgoing_body(req: &ChatRequest, model: &str) -> Vec<u8> {
    let stream_options = req.is_stream().then(|| {
        let mut opts = match req.extra.get("stream_options") {
            Some(Value::Object(o)) => o.clone(),
            _ => serde_json::Map::new(),
        };
        opts.insert("include_usage".into(), Value::Bool(true));
        Value::Object(opts)
    });
    let out = Outgoing {
        model,
        messages: &req.messages,
        stream: req.stream,
        stream_options: stream_options.or_else(|| req.extra.get("stream_options").cloned()),
        extra: ExtraExcept(&req.extra, "stream_options"),
    };
    serde_json::to_vec(&out).expect("a parsed request serializes")
}

#[async_trait]
impl Provider for OpenAi {
    async fn chat(&self, req: &ChatRequest, model: &str) -> Result<ChatOutcome, ProviderError> {
        let builder = self
            .up
            .post_json(self.chat_url.clone(), outgoing_body(req, model));
        let resp = self.up.send(builder).await?;
        if req.is_stream() {
            let events = sse_data(resp.bytes_stream(), self.up.timeouts.idle);
            return Ok(ChatOutcome::Stream(translate_stream(events)));
        }
        let body = self.up.read_body(resp).await?;
        // A Chat Completions client (no native request behind it) can take the upstream's
        // bytes as they are; a translating ingress needs the typed answer anyway.
        if req.native.is_none() {
            if let Some(v) = Verbatim::check(body.clone()) {
                return Ok(ChatOutcome::Verbatim(v));
            }
        }
        parse_completion(&body).map(ChatOutcome::Complete)
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let resp = self.up.send(self.up.client.get(&self.models_url)).await?;
        let body = self.up.read_body(resp).await?;
        let list: ModelList = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Protocol(format!("model list: {e}")))?;
        Ok(list.data)
    }
}

/// A non-stream answer; a 200 whose body is an error object is still an error.
pub fn parse_completion(body: &[u8]) -> Result<ChatResponse, ProviderError> {
    match serde_json::from_slice::<ChatResponse>(body) {
        Ok(r) => Ok(r),
        Err(e) => {
            if let Ok(v) = serde_json::from_slice::<Value>(body) {
                if v.get("error").is_some() {
                    let (message, kind, code) = error_fields(body, http::StatusCode::BAD_GATEWAY);
                    return Err(ProviderError::Upstream {
                        status: 502,
                        message,
                        kind,
                        code,
                    });
                }
            }
            Err(ProviderError::Protocol(format!("chat completion: {e}")))
        }
    }
}

/// What the gateway reads of each upstream chunk; the chunk itself passes through untouched.
#[derive(Deserialize)]
struct ChunkHead<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    created: Option<i64>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Vec<ChoiceHead<'a>>,
    /// `null` on every chunk but the last when `include_usage` is set.
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChoiceHead<'a> {
    #[serde(borrow, default)]
    delta: Option<DeltaHead<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

/// The text a delta adds to the answer, for counting when no usage comes.
#[derive(Deserialize)]
struct DeltaHead<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolHead<'a>>>,
}

#[derive(Deserialize)]
struct ToolHead<'a> {
    #[serde(borrow, default)]
    function: Option<FunctionHead<'a>>,
}

#[derive(Deserialize)]
struct FunctionHead<'a> {
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

impl DeltaHead<'_> {
    fn text_into(&self, out: &mut String) {
        out.push_str(self.content.as_deref().unwrap_or_default());
        out.push_str(self.reasoning_content.as_deref().unwrap_or_default());
        for t in self.tool_calls.iter().flatten() {
            if let Some(a) = t.function.as_ref().and_then(|f| f.arguments.as_deref()) {
                out.push_str(a);
            }
        }
    }
}

/// OpenAI chunks in, the same chunks out: the translator only reads what the gateway needs
/// (id, usage, finish, the answer's text) and holds back the upstream's usage chunk, since
/// the gateway sends its own (with `effective_context`) at the end.
#[derive(Default)]
struct StreamTranslator {
    finished: bool,
    /// The current event's answer text; one buffer for the whole stream.
    text: String,
}

impl kernel::StreamTranslator for StreamTranslator {
    fn on_event(&mut self, data: &[u8], out: &mut ChunkWriter) -> Result<Flow, ProviderError> {
        if data == b"[DONE]" {
            return Ok(Flow::Done);
        }
        let head: ChunkHead = serde_json::from_slice(data)
            .map_err(|e| ProviderError::Protocol(format!("stream chunk is not JSON: {e}")))?;
        if let Some(err) = head.error {
            let (message, kind, code) =
                error_fields(err.get().as_bytes(), http::StatusCode::BAD_GATEWAY);
            return Err(ProviderError::Upstream {
                status: 502,
                message,
                kind,
                code,
            });
        }
        if !out.is_started() {
            if let Some(id) = &head.id {
                out.set_id(id.as_ref());
            }
            out.set_model(head.model.as_deref().unwrap_or_default());
            out.set_created(head.created.unwrap_or(0));
        }
        let text = &mut self.text;
        text.clear();
        for c in &head.choices {
            self.finished |= c.finish_reason.is_some();
            if let Some(d) = &c.delta {
                d.text_into(text);
            }
        }
        let Some(usage) = head.usage else {
            out.verbatim(Bytes::copy_from_slice(data), text);
            return Ok(Flow::More);
        };
        out.usage(usage);
        if head.choices.is_empty() {
            return Ok(Flow::More);
        }
        // Usage riding on a content chunk: the chunk goes on without it.
        let mut v: Value =
            serde_json::from_slice(data).map_err(|e| ProviderError::Protocol(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.remove("usage");
        }
        out.verbatim(
            Bytes::from(serde_json::to_vec(&v).expect("a JSON value serializes")),
            text,
        );
        Ok(Flow::More)
    }

    fn finish(&mut self, _out: &mut ChunkWriter) -> Result<(), ProviderError> {
        if self.finished {
            Ok(())
        } else {
            Err(ProviderError::Protocol(
                "upstream stream ended before the answer was complete".into(),
            ))
        }
    }
}

fn translate_stream(
    data: impl futures::Stream<Item = Result<Bytes, ProviderError>> + Send + 'static,
) -> ChatStream {
    kernel::drive(
        data,
        StreamTranslator::default(),
        ChunkWriter::new("", "", 0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ChatRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn outgoing_keeps_every_field_and_replaces_model() {
        let req = request(
            r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"user":"u1","seed":7}"#,
        );
        let out: Value = serde_json::from_slice(&outgoing_body(&req, "gpt-4o")).unwrap();
        assert_eq!(out["model"], "gpt-4o");
        assert_eq!(out["temperature"], 0.2);
        assert_eq!(out["seed"], 7);
        assert_eq!(out["user"], "u1");
        assert_eq!(out["tools"][0]["function"]["name"], "f");
        assert!(out.get("stream").is_none());
        assert!(out.get("stream_options").is_none());
    }

    #[test]
    fn streams_ask_for_usage_keeping_client_options() {
        let req = request(
            r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_obfuscation":false}}"#,
        );
        let out: Value = serde_json::from_slice(&outgoing_body(&req, "m")).unwrap();
        assert_eq!(out["stream"], true);
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(out["stream_options"]["include_obfuscation"], false);
    }

    #[test]
    fn usage_chunk_is_held_back_and_other_chunks_pass_verbatim() {
        use kernel::StreamTranslator as _;
        let mut s = StreamTranslator::default();
        let mut w = ChunkWriter::new("", "", 0);
        let first = r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}"#;
        assert_eq!(s.on_event(first.as_bytes(), &mut w).unwrap(), Flow::More);
        assert_eq!(w.pop().unwrap(), Bytes::from(first));
        let usage = r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        s.on_event(usage.as_bytes(), &mut w).unwrap();
        assert!(w.pop().is_none());
        assert_eq!(s.on_event(b"[DONE]", &mut w).unwrap(), Flow::Done);
        assert!(s.on_event(b"{not json", &mut w).is_err());
        let end = w.end();
        assert_eq!(end.usage.as_ref().unwrap().total_tokens, 4);
        assert_eq!(
            (end.id.as_str(), end.created, end.completion.as_str()),
            ("c1", 5, "hi")
        );
    }
}
