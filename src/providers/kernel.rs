//! The stream half of the translation kernel. Every provider's stream is one
//! `StreamTranslator` (pure: one native event in, canonical deltas out) writing into one
//! `ChunkWriter` (which owns id/model/created, the role chunk, the tool-index map, the
//! finish chunk and token accounting), run by one driver, `drive`.
//!
//! A new provider's stream is then only its event → delta mapping.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use futures::Stream;

use super::{ChatStream, ProviderError, StreamEnd, StreamItem};
use crate::api::openai::{ChatChunk, Delta, FunctionDelta, ToolCallDelta, Usage};

/// What the driver does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading the upstream.
    More,
    /// The answer is complete: the upstream is not read further.
    Done,
}

/// One provider's stream protocol, as a state machine over native events.
pub trait StreamTranslator: Send + 'static {
    /// One native event (an SSE `data:` payload, or one NDJSON line), never empty.
    fn on_event(&mut self, data: &[u8], out: &mut ChunkWriter) -> Result<Flow, ProviderError>;

    /// `on_event` for an event the driver holds as `Bytes`: `data` is a slice of `event`.
    /// A translator that forwards events as they are overrides it to forward a slice of
    /// `event` (`Bytes::slice_ref`) instead of a copy.
    fn on_shared_event(
        &mut self,
        event: &Bytes,
        data: &[u8],
        out: &mut ChunkWriter,
    ) -> Result<Flow, ProviderError> {
        let _ = event;
        self.on_event(data, out)
    }

    /// The upstream closed its stream. Complete when the answer reached its finish chunk;
    /// anything else is a truncated answer.
    fn finish(&mut self, out: &mut ChunkWriter) -> Result<(), ProviderError> {
        if out.is_finished() {
            Ok(())
        } else {
            Err(ProviderError::Protocol(
                "upstream stream ended before the answer was complete".into(),
            ))
        }
    }
}

/// One upstream event as `drive` gets it: its bytes, and the `Bytes` holding them when it
/// is one (so a translator can forward a slice of it without copying).
pub trait Event: AsRef<[u8]> + Send + 'static {
    fn as_shared(&self) -> Option<&Bytes> {
        None
    }
}

impl Event for Bytes {
    fn as_shared(&self) -> Option<&Bytes> {
        Some(self)
    }
}

impl Event for String {}

impl Event for Vec<u8> {}

/// Canonical chunks of one answer, as JSON ready to send.
#[derive(Debug)]
pub struct ChunkWriter {
    id: String,
    model: String,
    created: i64,
    started: bool,
    finished: bool,
    /// The native key of a tool call being streamed (Anthropic's content-block index) → its
    /// OpenAI `index`, assigned in the order the calls start.
    tool_index: HashMap<u32, u32>,
    tools: u32,
    usage: Option<Usage>,
    /// The answer's text (content, reasoning, tool arguments): counted with the BPE table
    /// at the end when the upstream reports no usage. Never more than the answer itself.
    completion: String,
    pending: VecDeque<Bytes>,
}

impl ChunkWriter {
    pub fn new(id: impl Into<String>, model: impl Into<String>, created: i64) -> Self {
        ChunkWriter {
            id: id.into(),
            model: model.into(),
            created,
            started: false,
            finished: false,
            tool_index: HashMap::new(),
            tools: 0,
            usage: None,
            completion: String::new(),
            pending: VecDeque::new(),
        }
    }

    /// The upstream's own id, model name and time replace the defaults until the first
    /// chunk went out (every chunk of one answer carries the same ones).
    pub fn set_id(&mut self, id: impl Into<String>) {
        if !self.started {
            self.id = id.into();
        }
    }

    pub fn set_model(&mut self, model: &str) {
        if !self.started && !model.is_empty() {
            self.model = model.to_string();
        }
    }

    pub fn set_created(&mut self, created: i64) {
        if !self.started && created > 0 {
            self.created = created;
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Tool calls seen so far.
    pub fn tool_calls(&self) -> u32 {
        self.tools
    }

    /// The role chunk, once; every delta sends it first if nothing did.
    pub fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        self.push(
            Delta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        );
    }

    pub fn text(&mut self, text: &str) {
        self.answer_delta(text, |t| Delta {
            content: Some(t),
            ..Delta::default()
        });
    }

    /// Reasoning as `delta.reasoning_content`.
    pub fn reasoning(&mut self, text: &str) {
        self.answer_delta(text, |t| Delta {
            reasoning_content: Some(t),
            ..Delta::default()
        });
    }

    fn answer_delta(&mut self, text: &str, delta: impl FnOnce(String) -> Delta) {
        if text.is_empty() || self.finished {
            return;
        }
        self.completion.push_str(text);
        self.delta(delta(text.to_string()));
    }

    /// A tool call whose arguments follow in pieces under the native `key`.
    pub fn tool_start(&mut self, key: u32, id: String, name: String) {
        if let Some(index) = self.open_call(id, name, String::new()) {
            self.tool_index.insert(key, index);
        }
    }

    /// A piece of the arguments of the call started under `key`.
    pub fn tool_arguments(&mut self, key: u32, arguments: &str) -> Result<(), ProviderError> {
        if arguments.is_empty() || self.finished {
            return Ok(());
        }
        let Some(&index) = self.tool_index.get(&key) else {
            return Err(ProviderError::Protocol(format!(
                "tool arguments for stream block {key}, which started no tool call"
            )));
        };
        self.completion.push_str(arguments);
        self.tool_delta(ToolCallDelta {
            index,
            function: Some(FunctionDelta {
                name: None,
                arguments: Some(arguments.to_string()),
            }),
            ..ToolCallDelta::default()
        });
        Ok(())
    }

    /// A tool call that arrives whole (Gemini, Ollama): one delta with id, name and arguments.
    pub fn tool_call(&mut self, id: String, name: String, arguments: String) {
        if !self.finished {
            self.completion.push_str(&arguments);
        }
        self.open_call(id, name, arguments);
    }

    /// The first delta of a call, at the next OpenAI index (`None` after the finish).
    fn open_call(&mut self, id: String, name: String, arguments: String) -> Option<u32> {
        if self.finished {
            return None;
        }
        let index = self.tools;
        self.tools += 1;
        self.tool_delta(ToolCallDelta {
            index,
            id: Some(id),
            kind: Some("function".into()),
            function: Some(FunctionDelta {
                name: Some(name),
                arguments: Some(arguments),
            }),
        });
        Some(index)
    }

    /// The finish chunk, once; deltas after it are dropped (trailing events carry usage).
    pub fn finish(&mut self, reason: &str) {
        if self.finished {
            return;
        }
        self.start();
        self.finished = true;
        self.push(Delta::default(), Some(reason));
    }

    /// The upstream's own token counts (the latest report wins).
    pub fn usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    /// A chunk the upstream sent already in the canonical format, forwarded as is;
    /// `answer_text` is the text it adds to the answer (for token accounting).
    pub fn verbatim(&mut self, chunk: Bytes, answer_text: &str) {
        self.started = true;
        self.completion.push_str(answer_text);
        self.pending.push_back(chunk);
    }

    /// Answer text of chunks already forwarded with an empty `answer_text`, added later
    /// (in the order the chunks went) by a translator that reads it only when needed.
    pub fn answer_text(&mut self, text: &str) {
        self.completion.push_str(text);
    }

    pub fn pop(&mut self) -> Option<Bytes> {
        self.pending.pop_front()
    }

    /// What the final usage chunk is built from.
    pub fn end(&mut self) -> StreamEnd {
        StreamEnd {
            id: std::mem::take(&mut self.id),
            model: std::mem::take(&mut self.model),
            created: self.created,
            usage: self.usage.take(),
            completion: std::mem::take(&mut self.completion),
        }
    }

    fn tool_delta(&mut self, call: ToolCallDelta) {
        self.delta(Delta {
            tool_calls: Some(vec![call]),
            ..Delta::default()
        });
    }

    fn delta(&mut self, delta: Delta) {
        self.start();
        self.push(delta, None);
    }

    fn push(&mut self, delta: Delta, finish: Option<&str>) {
        let c = ChatChunk::delta(&self.id, self.created, &self.model, delta, finish);
        let json = serde_json::to_vec(&c).expect("a chunk serializes");
        self.pending.push_back(Bytes::from(json));
    }
}

/// Runs `translator` over the upstream's events: chunks are yielded as each event produces
/// them, then one `End` when the answer completed, or one error.
pub fn drive<S, E, T>(events: S, translator: T, writer: ChunkWriter) -> ChatStream
where
    S: Stream<Item = Result<E, ProviderError>> + Send + 'static,
    E: Event,
    T: StreamTranslator,
{
    Box::pin(Driver {
        events: Box::pin(events),
        tr: translator,
        w: writer,
        tail: None,
        over: false,
    })
}

/// The state of `drive`, polled by hand: an `unfold` moved it (the writer included) into a
/// new future and back for every chunk.
struct Driver<S, T> {
    events: std::pin::Pin<Box<S>>,
    tr: T,
    w: ChunkWriter,
    /// What follows the pending chunks once the answer is over: its end or an error.
    tail: Option<Result<StreamItem, ProviderError>>,
    over: bool,
}

// Every field is either Unpin or boxed.
impl<S, T> Unpin for Driver<S, T> {}

impl<S, E, T> Stream for Driver<S, T>
where
    S: Stream<Item = Result<E, ProviderError>>,
    E: Event,
    T: StreamTranslator,
{
    type Item = Result<StreamItem, ProviderError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let s = &mut *self;
        loop {
            if let Some(chunk) = s.w.pop() {
                return Poll::Ready(Some(Ok(StreamItem::Chunk(chunk))));
            }
            if let Some(tail) = s.tail.take() {
                return Poll::Ready(Some(tail));
            }
            if s.over {
                return Poll::Ready(None);
            }
            let step = match std::task::ready!(s.events.as_mut().poll_next(cx)) {
                None => s.tr.finish(&mut s.w).map(|()| Flow::Done),
                Some(Err(e)) => Err(e),
                Some(Ok(ev)) => {
                    let data = ev.as_ref().trim_ascii();
                    if data.is_empty() {
                        continue;
                    }
                    match ev.as_shared() {
                        Some(event) => s.tr.on_shared_event(event, data, &mut s.w),
                        None => s.tr.on_event(data, &mut s.w),
                    }
                }
            };
            match step {
                Ok(Flow::More) => {}
                Ok(Flow::Done) => {
                    s.over = true;
                    s.tail = Some(Ok(StreamItem::End(s.w.end())));
                }
                Err(e) => {
                    s.over = true;
                    s.tail = Some(Err(e));
                }
            }
        }
    }
}

/// Parses one native event into its typed shape.
pub fn parse_event<'a, T: serde::Deserialize<'a>>(
    data: &'a [u8],
    what: &str,
) -> Result<T, ProviderError> {
    serde_json::from_slice(data).map_err(|e| ProviderError::Protocol(format!("{what}: {e}")))
}

/// Feeds a translator events one at a time, as table tests of translators do.
#[cfg(test)]
pub struct Harness<T> {
    pub tr: T,
    pub w: ChunkWriter,
}

#[cfg(test)]
impl<T: StreamTranslator> Harness<T> {
    pub fn new(tr: T, model: &str) -> Self {
        Harness {
            tr,
            w: ChunkWriter::new("chatcmpl-test", model, 1),
        }
    }

    /// The chunks (as JSON) one event produced.
    pub fn feed(&mut self, data: &str) -> Result<Vec<serde_json::Value>, ProviderError> {
        self.tr.on_event(data.as_bytes(), &mut self.w)?;
        Ok(std::iter::from_fn(|| self.w.pop())
            .map(|b| serde_json::from_slice(&b).expect("chunks are JSON"))
            .collect())
    }

    /// The upstream closed the stream here.
    pub fn finish(&mut self) -> Result<StreamEnd, ProviderError> {
        self.tr.finish(&mut self.w)?;
        Ok(self.w.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::Value;

    fn json(b: Bytes) -> Value {
        serde_json::from_slice(&b).unwrap()
    }

    fn drain(w: &mut ChunkWriter) -> Vec<Value> {
        std::iter::from_fn(|| w.pop()).map(json).collect()
    }

    #[test]
    fn role_chunk_once_then_deltas_then_finish() {
        let mut w = ChunkWriter::new("id1", "m", 5);
        w.text("Hel");
        w.reasoning("hmm");
        w.tool_start(3, "call_a".into(), "f".into());
        w.tool_arguments(3, "{\"x\":").unwrap();
        w.tool_call("call_b".into(), "g".into(), "{}".into());
        assert!(w.tool_arguments(9, "x").is_err());
        w.finish("tool_calls");
        w.text("after the finish: dropped");
        let c = drain(&mut w);
        assert_eq!(c.len(), 7);
        assert_eq!(c[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(c[1]["choices"][0]["delta"]["content"], "Hel");
        assert_eq!(c[2]["choices"][0]["delta"]["reasoning_content"], "hmm");
        assert_eq!(c[3]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(c[4]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(c[5]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
        assert_eq!(c[6]["choices"][0]["finish_reason"], "tool_calls");
        assert!(c.iter().all(|c| c["id"] == "id1" && c["created"] == 5));
        let end = w.end();
        assert_eq!(end.completion, "Helhmm{\"x\":{}");
        assert!(end.usage.is_none());
    }

    struct Lines;
    impl StreamTranslator for Lines {
        fn on_event(&mut self, data: &[u8], out: &mut ChunkWriter) -> Result<Flow, ProviderError> {
            match data {
                b"stop" => {
                    out.finish("stop");
                    Ok(Flow::Done)
                }
                b"bad" => Err(ProviderError::Protocol("bad".into())),
                t => {
                    out.text(std::str::from_utf8(t).unwrap());
                    Ok(Flow::More)
                }
            }
        }
    }

    async fn run(events: &[&'static str]) -> Vec<Result<StreamItem, ProviderError>> {
        let events: Vec<Result<Bytes, ProviderError>> = events
            .iter()
            .map(|e| Ok(Bytes::from_static(e.as_bytes())))
            .collect();
        let events = futures::stream::iter(events);
        drive(events, Lines, ChunkWriter::new("i", "m", 1))
            .collect()
            .await
    }

    #[tokio::test]
    async fn driver_ends_with_end_or_one_error() {
        let items = run(&["a", " ", "stop", "never read"]).await;
        assert_eq!(items.len(), 4, "role, a, finish, end");
        assert!(matches!(items[3], Ok(StreamItem::End(ref e)) if e.completion == "a"));
        let items = run(&["a"]).await;
        assert!(matches!(
            items.last(),
            Some(Err(ProviderError::Protocol(_)))
        ));
        let items = run(&["a", "bad", "b"]).await;
        assert_eq!(items.len(), 3, "role, a, error");
        assert!(items[2].is_err());
    }
}
