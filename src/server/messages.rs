//! `POST /v1/messages` and `/v1/messages/count_tokens` (design.md §12): parse → translate →
//! resolve → dispatch → translate back. Errors are the shared `ApiError`s in Anthropic's
//! shape; streams are forwarded event by event as they arrive.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::BytesMut;
use futures::{FutureExt, Stream, StreamExt};

use super::error::{AnthropicError, ApiError};
use super::respond::{json, json_bytes, read_body, served_headers, sse};
use crate::api::anthropic::{MessagesRequest, TokenCount};
use crate::api::native::{NativeFormat, NativeRequest};
use crate::api::openai::{Message, Usage};
use crate::ingress::messages::{error_event, from_canonical, to_canonical, StreamTranslator};
use crate::providers::passthrough::{NativeOutcome, NativeStream};
use crate::providers::{ChatOutcome, ChatStream, ProviderError, StreamItem};
use crate::routing::{self, Served, Target};
use crate::state::AppState;

type Answer = Result<Response, AnthropicError>;

/// The headers of Anthropic's protocol that a native target gets as the client sent them.
const FORWARDED: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// Events already waiting are sent in one write, as on `/v1/chat/completions`.
const COALESCE_BYTES: usize = 16 * 1024;

/// The typed request; an error names the JSON path of the bad value.
fn parse(body: &[u8]) -> Result<MessagesRequest, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // "." is the root; "?" a syntax error before any key could be read.
        if path == "." || path == "?" || e.inner().is_syntax() || e.inner().is_eof() {
            ApiError::BadRequest(format!("invalid JSON body: {}", e.inner()))
        } else {
            ApiError::BadRequest(format!("{path}: {}", e.inner()))
        }
    })
}

fn native(headers: &HeaderMap, body: Bytes, stream: bool) -> NativeRequest {
    NativeRequest {
        format: NativeFormat::AnthropicMessages,
        body,
        headers: FORWARDED
            .iter()
            .filter_map(|name| {
                let v = headers.get(*name)?.to_str().ok()?;
                Some((name.to_string(), v.to_string()))
            })
            .collect(),
        stream,
    }
}

pub async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let body = read_body(&state, body, "a JSON Messages request")?;
    let req = parse(&body)?;
    let mut chat = to_canonical(&req, true)?;
    chat.native = Some(Arc::new(native(&headers, body, req.is_stream())));
    let target = routing::resolve_v1(&state.config, &req.model)?;
    let Served {
        outcome,
        provider,
        model,
        effective_context,
        autoselected,
    } = routing::dispatch(&state, target, chat).await?;
    let client_model = req.model;
    let mut resp = match outcome.typed()? {
        ChatOutcome::Complete(mut r) => {
            if r.usage.is_none() {
                let text: String = r
                    .choices
                    .iter()
                    .filter_map(|c| c.message.content.as_deref())
                    .collect();
                r.usage = Some(Usage::new(
                    effective_context,
                    state.tokens.count_text(&r.model, &text),
                ));
            }
            let m = from_canonical(r, &client_model, effective_context);
            json(&m)
        }
        ChatOutcome::Stream(s) => sse(Body::from_stream(translated(
            s,
            client_model,
            effective_context,
        ))),
        ChatOutcome::Native(NativeOutcome::Complete(bytes)) => json_bytes(bytes),
        // `typed` turned any verbatim answer into a typed one above.
        ChatOutcome::Verbatim(_) => {
            return Err(
                ProviderError::Protocol("an untyped answer to a Messages request".into()).into(),
            )
        }
        ChatOutcome::Native(NativeOutcome::Stream(s)) => sse(Body::from_stream(forwarded(s))),
    };
    served_headers(&mut resp, provider, model, autoselected);
    Ok(resp)
}

/// `count_tokens`: an Anthropic target counts it itself; any other target's count is the
/// local one of the canonical request it would receive (tools included), off the runtime
/// when large.
pub async fn count_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let body = read_body(&state, body, "a JSON Messages request")?;
    let req = parse(&body)?;
    let chat = to_canonical(&req, false)?;
    let target = routing::resolve_v1(&state.config, &req.model)?;
    let model = match &target {
        Target::Provider { provider, model } => {
            if let Some(p) = state
                .providers
                .native(provider, NativeFormat::AnthropicMessages)
            {
                match p.count_tokens(&native(&headers, body, false), model).await {
                    Some(Ok(answer)) => return Ok(json_bytes(answer)),
                    // An upstream without the endpoint (an Anthropic-compatible proxy) or a
                    // failing one: the local count still answers.
                    Some(Err(e))
                        if e.should_failover()
                            || matches!(
                                e,
                                ProviderError::Upstream {
                                    status: 404 | 405,
                                    ..
                                }
                            ) =>
                    {
                        tracing::debug!("count_tokens upstream failed, counting locally: {e}");
                    }
                    Some(Err(e)) => return Err(ApiError::from(e).into()),
                    None => {}
                }
            }
            model.clone()
        }
        _ => req.model.clone(),
    };
    let mut messages = chat.messages;
    if let Some(tools) = chat.extra.get("tools") {
        messages.push(Message::new("system", tools.to_string()));
    }
    let (_, input_tokens) = state.tokens.count_owned(&model, messages).await;
    Ok(json(&TokenCount { input_tokens }))
}

/// One upstream item through the translator; true when the stream is over.
fn step(
    t: &mut StreamTranslator,
    item: Option<Result<StreamItem, ProviderError>>,
    out: &mut BytesMut,
) -> bool {
    match item {
        // A chunk the Messages grammar cannot carry ends the stream (with its error event).
        Some(Ok(StreamItem::Chunk(json))) => !t.chunk(&json, out),
        Some(Ok(StreamItem::End(end))) => {
            t.finish(Some(end), out);
            true
        }
        Some(Err(e)) => {
            tracing::warn!("stream failed after it started: {e}");
            t.error(&e.to_string(), out);
            true
        }
        None => {
            t.finish(None, out);
            true
        }
    }
}

/// A canonical stream as Messages events, each write holding what was ready.
fn translated(
    stream: ChatStream,
    model: String,
    effective_context: u64,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let t = StreamTranslator::new(&model, effective_context);
    futures::stream::unfold((stream, t, false), |(mut stream, mut t, done)| async move {
        if done {
            return None;
        }
        let mut out = BytesMut::new();
        let mut done = step(&mut t, stream.next().await, &mut out);
        while !done && out.len() < COALESCE_BYTES {
            match stream.next().now_or_never() {
                Some(item) => done = step(&mut t, item, &mut out),
                None => break,
            }
        }
        Some((Ok(out.freeze()), (stream, t, done)))
    })
}

/// A native stream forwarded event by event; a broken upstream ends it with one `error`.
fn forwarded(stream: NativeStream) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    futures::stream::unfold((stream, false), |(mut stream, done)| async move {
        if done {
            return None;
        }
        match stream.next().await? {
            Ok(event) => Some((Ok(event.to_sse()), (stream, false))),
            Err(e) => {
                tracing::warn!("native stream failed after it started: {e}");
                Some((Ok(error_event("api_error", &e.to_string())), (stream, true)))
            }
        }
    })
}
