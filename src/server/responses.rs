//! `POST /v1/responses` and `GET /v1/responses/{id}`: parse → resolve → passthrough or
//! translate + dispatch → respond. The translation and the stream state machine are in
//! `ingress/responses.rs`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::{FutureExt, Stream, StreamExt};

use super::error::ApiError;
use super::respond::{json, read_body, served_headers, sse};
use crate::api::native::{NativeFormat, NativeRequest};
use crate::api::openai::ChatRequest;
use crate::api::responses::{ResponsesRequest, StreamEvent};
use crate::ingress::responses::store::{ResponseStore, StoredResponse};
use crate::ingress::responses::{from_chat, to_chat, StreamTranslator, Translated};
use crate::providers::passthrough::{speaks, NativeOutcome, NativeStream};
use crate::providers::{ChatOutcome, ChatStream, ProviderError, StreamItem};
use crate::routing::{self, Served, Target};
use crate::state::AppState;

type AppResult = Result<Response, ApiError>;

pub async fn create(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult {
    let body = read_body(&state, body, "a JSON Responses request")?;
    let req: ResponsesRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    if req.model.trim().is_empty() {
        return Err(ApiError::BadRequest("'model' must not be empty".into()));
    }
    let target = routing::resolve_v1(&state.config, &req.model)?;
    // Every candidate gets the client's body too: one that speaks Responses natively
    // (`responses: true`) is sent it as is by the router.
    let native = Arc::new(NativeRequest {
        format: NativeFormat::OpenAiResponses,
        body: body.clone(),
        headers: Vec::new(),
        stream: req.is_stream(),
    });
    let (mut chat, shape) = if only_native(&state, &target) {
        // Nothing is translated for a native target: its own `previous_response_id`, item
        // types and tools are its business.
        (native_only(req), None)
    } else {
        let previous = match &req.previous_response_id {
            Some(id) => {
                let stored = state
                    .responses
                    .store
                    .get(id)
                    .await
                    .ok_or_else(|| ApiError::PreviousResponseNotFound(id.clone()))?;
                Some(stored)
            }
            None => None,
        };
        let Translated { chat, shape } = to_chat(req, previous).map_err(ApiError::BadRequest)?;
        (chat, Some(shape))
    };
    chat.native = Some(native);
    let Served {
        outcome,
        provider,
        model,
        effective_context,
        autoselected,
    } = routing::dispatch(&state, target, chat).await?;
    let mut resp = match (outcome.typed()?, shape) {
        (ChatOutcome::Native(NativeOutcome::Complete(bytes)), _) => {
            let mut r = (StatusCode::OK, bytes).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        (ChatOutcome::Native(NativeOutcome::Stream(s)), _) => {
            sse(Body::from_stream(native_events(s)))
        }
        (ChatOutcome::Complete(r), Some(shape)) => {
            let counted_model = model.clone();
            let object = from_chat(r, &shape, effective_context, |text| {
                state.tokens.count_text(&counted_model, text)
            });
            let resp = json(&object);
            if shape.store {
                state
                    .responses
                    .store
                    .put(StoredResponse {
                        response: object,
                        input: shape.input,
                        previous: shape.previous,
                    })
                    .await;
            }
            resp
        }
        (ChatOutcome::Stream(s), Some(shape)) => {
            let store = shape.store.then(|| state.responses.store.clone());
            sse(Body::from_stream(events(
                s,
                StreamTranslator::new(shape),
                effective_context,
                store,
            )))
        }
        // `typed` turned any verbatim answer into a typed one above.
        (ChatOutcome::Verbatim(_), _) => {
            return Err(
                ProviderError::Protocol("an untyped answer to a Responses request".into()).into(),
            )
        }
        // A native-only target is always served natively (the router passes it through).
        (ChatOutcome::Complete(_) | ChatOutcome::Stream(_), None) => {
            return Err(ProviderError::Protocol(
                "a translated answer to an untranslated Responses request".into(),
            )
            .into())
        }
    };
    served_headers(&mut resp, provider, model, autoselected);
    Ok(resp)
}

/// Is `target` one provider that speaks Responses natively? (A rotation or autoselect may
/// mix native and chat candidates: those requests are translated too.)
fn only_native(state: &AppState, target: &Target) -> bool {
    match target {
        Target::Provider { provider, .. } => state
            .config
            .providers
            .get(provider)
            .and_then(speaks)
            .is_some_and(|f| f == NativeFormat::OpenAiResponses),
        _ => false,
    }
}

/// The canonical request of an untranslated one: no messages (nothing to count or condense),
/// only what the router reads.
fn native_only(req: ResponsesRequest) -> ChatRequest {
    ChatRequest {
        model: req.model,
        messages: Vec::new(),
        stream: req.stream,
        extra: Default::default(),
        anthropic_beta: None,
        native: None,
    }
}

/// A native Responses stream for the client: the upstream's events as they arrive; a
/// failure after the commit is one `error` event, then the end.
fn native_events(
    s: NativeStream,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures::stream::unfold((s, 0u64, false), |(mut s, n, done)| async move {
        if done {
            return None;
        }
        match s.next().await? {
            Ok(e) => Some((Ok(e.to_sse()), (s, n + 1, false))),
            Err(e) => {
                tracing::warn!("responses passthrough stream failed after it started: {e}");
                let data = serde_json::json!({"type": "error", "sequence_number": n,
                    "code": "server_error", "message": e.to_string(), "param": null});
                let ev = format!("event: error\ndata: {data}\n\n");
                Some((Ok(Bytes::from(ev)), (s, n + 1, true)))
            }
        }
    })
}

pub async fn get(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> AppResult {
    let stored = state
        .responses
        .store
        .get(&id)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("No response with id '{id}' found.")))?;
    Ok(json(&stored.response))
}

/// Events already waiting are sent in one write (as `server/stream.rs` does).
const COALESCE_BYTES: usize = 16 * 1024;

struct Run {
    stream: ChatStream,
    tr: StreamTranslator,
    effective_context: u64,
    store: Option<Arc<dyn ResponseStore>>,
    started: bool,
    done: bool,
}

impl Run {
    /// Writes what one upstream item becomes; true when the stream is over.
    async fn step(
        &mut self,
        item: Option<Result<StreamItem, ProviderError>>,
        out: &mut BytesMut,
    ) -> bool {
        let write = |events: Vec<StreamEvent>, out: &mut BytesMut| {
            for e in &events {
                e.write_sse(out);
            }
        };
        let eff = self.effective_context;
        match item {
            Some(Ok(StreamItem::Chunk(json))) => {
                write(self.tr.feed(&json), out);
                false
            }
            Some(Ok(StreamItem::End(end))) => {
                write(self.tr.finish(Some(end), eff, estimate_tokens), out);
                self.keep().await;
                true
            }
            None => {
                write(self.tr.finish(None, eff, estimate_tokens), out);
                self.keep().await;
                true
            }
            Some(Err(e)) => {
                tracing::warn!("responses stream failed after it started: {e}");
                write(self.tr.fail(&e), out);
                true
            }
        }
    }

    async fn keep(&mut self) {
        if let Some(store) = self.store.take() {
            store.put(self.tr.take_stored()).await;
        }
    }
}

/// Output tokens of a stream whose upstream reported no usage: about four characters each.
fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// The Responses SSE body of a committed canonical stream.
fn events(
    stream: ChatStream,
    tr: StreamTranslator,
    effective_context: u64,
    store: Option<Arc<dyn ResponseStore>>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let run = Run {
        stream,
        tr,
        effective_context,
        store,
        started: false,
        done: false,
    };
    futures::stream::unfold(run, |mut run| async move {
        if run.done {
            return None;
        }
        let mut out = BytesMut::new();
        if !run.started {
            run.started = true;
            for e in run.tr.start() {
                e.write_sse(&mut out);
            }
        }
        let item = run.stream.next().await;
        run.done = run.step(item, &mut out).await;
        while !run.done && out.len() < COALESCE_BYTES {
            match run.stream.next().now_or_never() {
                Some(item) => run.done = run.step(item, &mut out).await,
                None => break,
            }
        }
        Some((Ok(out.freeze()), run))
    })
}
