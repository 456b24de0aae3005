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
use super::{json_scan, json_walk};
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
///
/// Most chunks are plain content deltas or the finish chunk: a chunk that `json_scan` finds
/// to be a JSON object with no error or usage, whose members the full parse reads all have
/// the right types, is forwarded without that parse (the scan says whether it finishes the
/// answer); it would have been forwarded unchanged anyway. Its text only matters when the
/// upstream never reports usage, so the plain chunks are kept until a usage report comes
/// (then dropped) and their text is read from them at the end. The first chunk's id, model
/// and time, and the usage report's counts, come from the same scan (`json_scan::Head`)
/// when it read them as the full parse would; anything else takes the full parse.
#[derive(Default)]
struct StreamTranslator {
    finished: bool,
    /// The current event's answer text; one buffer for the whole stream.
    text: String,
    /// Chunks forwarded whose text is not yet in the answer, in order, each followed by a
    /// 0 byte (which never occurs in valid JSON text).
    kept: Vec<u8>,
    /// The upstream reported usage: the answer's text is no longer needed.
    usage_seen: bool,
    scanner: json_scan::StreamScanner,
}

/// Past this many kept bytes, their text is read into the answer (memory stays bounded).
const KEPT_MAX: usize = 256 * 1024;

/// The kept buffer's first allocation.
const KEPT_START: usize = 8 * 1024;

/// Separates kept chunks: a 0 byte is invalid anywhere in JSON text.
const KEPT_END: u8 = 0;

impl kernel::StreamTranslator for StreamTranslator {
    fn on_event(&mut self, data: &[u8], out: &mut ChunkWriter) -> Result<Flow, ProviderError> {
        self.event(data, None, out)
    }

    fn on_shared_event(
        &mut self,
        event: &Bytes,
        data: &[u8],
        out: &mut ChunkWriter,
    ) -> Result<Flow, ProviderError> {
        self.event(data, Some(event), out)
    }

    fn finish(&mut self, out: &mut ChunkWriter) -> Result<(), ProviderError> {
        self.recover_text(out);
        if self.finished {
            Ok(())
        } else {
            Err(ProviderError::Protocol(
                "upstream stream ended before the answer was complete".into(),
            ))
        }
    }
}

impl StreamTranslator {
    /// One event; `event`, when given, holds `data` (forwarded as a slice of it).
    fn event(
        &mut self,
        data: &[u8],
        event: Option<&Bytes>,
        out: &mut ChunkWriter,
    ) -> Result<Flow, ProviderError> {
        if data == b"[DONE]" {
            self.recover_text(out);
            return Ok(Flow::Done);
        }
        let Some(facts) = self.scanner.scan(data).filter(|f| readable(*f)) else {
            return self.parse_event(data, out);
        };
        if facts.usage {
            return match self.usage_report(data, facts, out) {
                Some(()) => Ok(Flow::More),
                None => self.parse_event(data, out),
            };
        }
        if !out.is_started() && self.start(data, out).is_none() {
            return self.parse_event(data, out);
        }
        // The full parse would set this from the same `finish_reason` members.
        self.finished |= facts.finish;
        let chunk = match event {
            Some(e) => e.slice_ref(data),
            None => Bytes::copy_from_slice(data),
        };
        self.keep(data, out);
        out.verbatim(chunk, "");
        Ok(Flow::More)
    }

    /// The answer's id, model and time from the first chunk's head, as the full parse sets
    /// them; `None` when the scan did not read them (the full parse then does).
    fn start(&self, data: &[u8], out: &mut ChunkWriter) -> Option<()> {
        let head = self.scanner.head()?;
        let id = match head.id {
            Some(s) => Some(decoded(data, s)?),
            None => None,
        };
        let model = match head.model {
            Some(s) => decoded(data, s)?,
            None => Cow::Borrowed(""),
        };
        if let Some(id) = id {
            out.set_id(id);
        }
        out.set_model(&model);
        out.set_created(head.created);
        Some(())
    }

    /// A usage report without choices (how OpenAI sends it), as the full parse reads it:
    /// `None` when the scan cannot say what that gives (usage riding on a content chunk,
    /// which goes on re-serialized without it; a usage object that may not be a `Usage`).
    fn usage_report(
        &mut self,
        data: &[u8],
        facts: json_scan::Facts,
        out: &mut ChunkWriter,
    ) -> Option<()> {
        if facts.choice {
            return None;
        }
        let at = self.scanner.head()?.usage?;
        let usage = match at.counts {
            Some(c) => Usage {
                prompt_tokens: c.prompt_tokens,
                completion_tokens: c.completion_tokens,
                total_tokens: c.total_tokens,
                effective_context: c.effective_context,
                extra: Extra::new(),
            },
            // Parsed alone it is read as in the whole chunk, but for serde_json's depth
            // limit, which counts from the top.
            None if !facts.deep => serde_json::from_slice(&data[at.start..at.end]).ok()?,
            None => return None,
        };
        if !out.is_started() {
            self.start(data, out)?;
        }
        out.usage(usage);
        self.usage_seen = true;
        self.kept = Vec::new();
        Some(())
    }

    /// Keeps a forwarded chunk whose text is not in the answer yet (unless usage came).
    fn keep(&mut self, data: &[u8], out: &mut ChunkWriter) {
        if self.usage_seen {
            return;
        }
        if self.kept.capacity() == 0 {
            // A typical answer's chunks, without a reallocation per doubling.
            self.kept.reserve(KEPT_START);
        }
        self.kept.extend_from_slice(data);
        self.kept.push(KEPT_END);
        if self.kept.len() > KEPT_MAX {
            self.recover_text(out);
        }
    }

    /// The text of the kept chunks into the answer, in order; nothing is kept after.
    fn recover_text(&mut self, out: &mut ChunkWriter) {
        if self.kept.is_empty() {
            return;
        }
        self.text.clear();
        for chunk in self
            .kept
            .split(|&b| b == KEPT_END)
            .filter(|c| !c.is_empty())
        {
            // A kept chunk passed the scan that guarantees this parse succeeds.
            let head = serde_json::from_slice::<ChunkHead>(chunk);
            debug_assert!(
                head.is_ok(),
                "a kept chunk parses: {:?}",
                head.as_ref().err()
            );
            for d in head
                .iter()
                .flat_map(|h| &h.choices)
                .filter_map(|c| c.delta.as_ref())
            {
                d.text_into(&mut self.text);
            }
        }
        self.kept.clear();
        out.answer_text(&self.text);
    }

    /// The full reading of a chunk: the first, and every chunk that is not plain.
    fn parse_event(&mut self, data: &[u8], out: &mut ChunkWriter) -> Result<Flow, ProviderError> {
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
            // Text after kept chunks waits behind them, to keep the answer in order.
            if !self.kept.is_empty() && !self.text.is_empty() {
                self.keep(data, out);
                out.verbatim(Bytes::copy_from_slice(data), "");
            } else {
                out.verbatim(Bytes::copy_from_slice(data), &self.text);
            }
            return Ok(Flow::More);
        };
        out.usage(usage);
        self.usage_seen = true;
        self.kept = Vec::new();
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
            &self.text,
        );
        Ok(Flow::More)
    }
}

/// A chunk read without the full parse (see `StreamTranslator`), if its usage is too: an
/// object the full parse reads without error, not an error report. Forwarded when it has no
/// usage: a content delta, or the finish chunk (whose `finish_reason` the scan reports).
fn readable(f: json_scan::Facts) -> bool {
    f.object && f.typed && !f.error && !f.lone_surrogate
}

/// A string's contents decoded as serde does, `None` when it cannot decode them.
fn decoded(json: &[u8], s: json_walk::Str) -> Option<Cow<'_, str>> {
    if s.escaped {
        // Rare in an id or model name: serde_json itself decodes it.
        return serde_json::from_slice(&json[s.start - 1..=s.end])
            .ok()
            .map(Cow::Owned);
    }
    std::str::from_utf8(&json[s.start..s.end])
        .ok()
        .map(Cow::Borrowed)
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
#[path = "tests/openai.rs"]
mod tests;
