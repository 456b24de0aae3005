//! The stream state machine: canonical chunks in, Responses events out.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::json;

use super::answer::{finish_status, response_usage};
use super::*;
use crate::api::openai::{unix_now, Usage};
use crate::api::responses::*;
use crate::ingress::chunk::{Chunk, ToolDelta};
use crate::providers::{ProviderError, StreamEnd};

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

    fn call_delta(&mut self, d: ToolDelta, out: &mut Vec<StreamEvent>) {
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
