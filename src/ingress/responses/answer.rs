//! A non-stream chat answer as a `response` object.

use super::*;
use crate::api::openai::{unix_now, ChatResponse, Usage};
use crate::api::responses::*;

pub(super) fn response_usage(
    u: Option<&Usage>,
    effective_context: u64,
    counted_output: u64,
) -> ResponseUsage {
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
pub(super) fn finish_status(finish: Option<&str>) -> (&'static str, Option<IncompleteDetails>) {
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
    pub(super) fn call_item(
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
