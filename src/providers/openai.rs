//! OpenAI and any OpenAI-compatible endpoint: the request goes up as the client sent it (but
//! `model`), the answer comes back as the upstream sent it, chunk by chunk.

use std::borrow::Cow;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::http::{error_fields, Upstream};
use super::sse::sse_events;
use super::{ChatOutcome, ChatStream, Provider, ProviderError, StreamEnd, StreamItem};
use crate::api::openai::{ChatRequest, ChatResponse, Extra, Message, ModelInfo, ModelList, Usage};

pub struct OpenAi {
    up: Upstream,
    chat_url: reqwest::Url,
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
    fn id(&self) -> &str {
        &self.up.id
    }

    async fn chat(&self, req: &ChatRequest, model: &str) -> Result<ChatOutcome, ProviderError> {
        let builder = self
            .up
            .client
            .post(self.chat_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(outgoing_body(req, model));
        let resp = self.up.send(self.authorized(builder)?).await?;
        if req.is_stream() {
            let events = sse_events(resp, self.up.timeouts.idle);
            return Ok(ChatOutcome::Stream(translate_stream(events)));
        }
        let body = self.up.read_body(resp).await?;
        parse_completion(&body).map(ChatOutcome::Complete)
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let resp = self
            .up
            .send(self.authorized(self.up.client.get(&self.models_url))?)
            .await?;
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
                    let (message, kind, code) =
                        error_fields(body, reqwest::StatusCode::BAD_GATEWAY);
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

/// What the gateway reads of each upstream chunk; the rest passes through untouched.
#[derive(Deserialize)]
struct ChunkHead<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    created: Option<i64>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<&'a RawValue>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Default)]
struct StreamState {
    end: StreamEnd,
    finished: bool,
}

impl StreamState {
    /// One upstream `data:` payload → what the client gets of it (maybe nothing).
    fn on_data(&mut self, data: &str) -> Result<Option<Bytes>, ProviderError> {
        let head: ChunkHead = serde_json::from_str(data)
            .map_err(|e| ProviderError::Protocol(format!("stream chunk is not JSON: {e}")))?;
        if let Some(err) = head.error {
            let (message, kind, code) =
                error_fields(err.get().as_bytes(), reqwest::StatusCode::BAD_GATEWAY);
            return Err(ProviderError::Upstream {
                status: 502,
                message,
                kind,
                code,
            });
        }
        if self.end.id.is_empty() {
            if let Some(id) = &head.id {
                self.end.id = id.to_string();
            }
            if let Some(m) = &head.model {
                self.end.model = m.to_string();
            }
            self.end.created = head.created.unwrap_or(0);
        }
        let choices = head.choices.map(RawValue::get).unwrap_or("[]");
        if choices.contains("\"finish_reason\":\"") || choices.contains("\"finish_reason\": \"") {
            self.finished = true;
        }
        if choices.contains("\"content\":\"") || choices.contains("\"arguments\":\"") {
            self.end.content_chunks += 1;
        }
        let usage = head.usage.filter(|u| u.get() != "null");
        let Some(usage) = usage else {
            return Ok(Some(Bytes::copy_from_slice(data.as_bytes())));
        };
        self.end.usage = Some(
            serde_json::from_str::<Usage>(usage.get())
                .map_err(|e| ProviderError::Protocol(format!("stream usage: {e}")))?,
        );
        if choices.trim() == "[]" {
            // The gateway sends its own usage chunk (with effective_context) at the end.
            return Ok(None);
        }
        let mut v: Value =
            serde_json::from_str(data).map_err(|e| ProviderError::Protocol(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.remove("usage");
        }
        Ok(Some(Bytes::from(
            serde_json::to_vec(&v).unwrap_or_default(),
        )))
    }
}

fn translate_stream(
    events: impl futures::Stream<Item = Result<eventsource_stream::Event, ProviderError>>
        + Send
        + 'static,
) -> ChatStream {
    let events = Box::pin(events);
    futures::stream::unfold(
        (events, StreamState::default(), false),
        |(mut events, mut state, done)| async move {
            if done {
                return None;
            }
            loop {
                match events.next().await {
                    None => {
                        if state.finished {
                            let end = std::mem::take(&mut state.end);
                            return Some((Ok(StreamItem::End(end)), (events, state, true)));
                        }
                        return Some((
                            Err(ProviderError::Protocol(
                                "upstream stream ended before the answer was complete".into(),
                            )),
                            (events, state, true),
                        ));
                    }
                    Some(Err(e)) => return Some((Err(e), (events, state, true))),
                    Some(Ok(ev)) => {
                        let data = ev.data.trim();
                        if data.is_empty() {
                            continue;
                        }
                        if data == "[DONE]" {
                            let end = std::mem::take(&mut state.end);
                            return Some((Ok(StreamItem::End(end)), (events, state, true)));
                        }
                        match state.on_data(data) {
                            Ok(Some(bytes)) => {
                                return Some((Ok(StreamItem::Chunk(bytes)), (events, state, false)))
                            }
                            Ok(None) => continue,
                            Err(e) => return Some((Err(e), (events, state, true))),
                        }
                    }
                }
            }
        },
    )
    .boxed()
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
        let mut s = StreamState::default();
        let first = r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
        assert_eq!(s.on_data(first).unwrap().unwrap(), Bytes::from(first));
        let usage = r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
        assert!(s.on_data(usage).unwrap().is_none());
        assert_eq!(s.end.usage.as_ref().unwrap().total_tokens, 4);
        assert_eq!((s.end.id.as_str(), s.end.created), ("c1", 5));
        assert!(s.on_data("{not json").is_err());
    }
}
