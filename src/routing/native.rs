//! The native passthrough leg of `attempt`: a request that carries the client's own-format
//! body goes to a candidate that speaks that format as is, with the same first-event commit
//! and health record as a translated stream.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::health::Health;
use crate::api::openai::ChatRequest;
use crate::config::ModelConfig;
use crate::providers::passthrough::{event_error, NativeOutcome, NativeStream, Passthrough};
use crate::providers::{ChatOutcome, Phase, ProviderError};
use crate::state::AppState;

/// The native endpoint that serves `req` on `provider_id`, when the request carries a
/// native body and the provider speaks its format.
pub fn route<'a>(
    state: &'a AppState,
    provider_id: &str,
    req: &ChatRequest,
) -> Option<&'a Passthrough> {
    let native = req.native.as_ref()?;
    state.providers.native(provider_id, native.format)
}

/// Sends the native body; a stream is returned only once its first event arrived.
pub async fn call(
    state: &AppState,
    p: &Passthrough,
    req: &ChatRequest,
    model: &str,
) -> Result<ChatOutcome, ProviderError> {
    let Some(native) = req.native.as_ref() else {
        return Err(ProviderError::Protocol(
            "no native body to pass through".into(),
        ));
    };
    match p.send(native, model).await? {
        NativeOutcome::Stream(s) => Ok(ChatOutcome::Native(NativeOutcome::Stream(
            commit_after_first_event(s, state.first_byte_timeout()).await?,
        ))),
        complete => Ok(ChatOutcome::Native(complete)),
    }
}

/// As `routing::commit_after_first_event`, and an `error` event in first place (Anthropic
/// answers 200 then `overloaded_error`) is an ordinary failure the router can fail over.
async fn commit_after_first_event(
    mut stream: NativeStream,
    first_byte: Duration,
) -> Result<NativeStream, ProviderError> {
    let first = match tokio::time::timeout(first_byte, stream.next()).await {
        Err(_) => return Err(ProviderError::Timeout(Phase::FirstByte)),
        Ok(None) => {
            return Err(ProviderError::Protocol(
                "upstream stream ended before its first event".into(),
            ))
        }
        Ok(Some(Err(e))) => return Err(e),
        Ok(Some(Ok(event))) => event,
    };
    if let Some(e) = event_error(&first) {
        return Err(e);
    }
    Ok(futures::stream::once(async move { Ok(first) })
        .chain(stream)
        .boxed())
}

/// The health record of a native answer: success now for a complete one, at its end for a
/// stream (see `track`).
pub async fn tracked(
    state: &AppState,
    outcome: NativeOutcome,
    provider: &str,
    model: &str,
) -> NativeOutcome {
    match outcome {
        NativeOutcome::Complete(body) => {
            state.health.success(provider, model).await;
            NativeOutcome::Complete(body)
        }
        NativeOutcome::Stream(s) => NativeOutcome::Stream(track(
            s,
            state.health.clone(),
            provider.to_string(),
            model.to_string(),
        )),
    }
}

/// A committed native stream's health record: success at its end, a failure on an error
/// event or a broken stream. A client that hangs up mid-stream records nothing.
fn track(
    stream: NativeStream,
    health: Arc<Health>,
    provider: String,
    model: String,
) -> NativeStream {
    futures::stream::unfold(
        (stream, health, provider, model, false),
        |(mut stream, health, provider, model, failed)| async move {
            let Some(item) = stream.next().await else {
                if !failed {
                    health.success(&provider, &model).await;
                }
                return None;
            };
            let error = match &item {
                Ok(event) => event_error(event),
                Err(e) => Some(e.clone()),
            };
            if let Some(e) = &error {
                health.failure(&provider, &model, e).await;
            }
            Some((
                item,
                (stream, health, provider, model, failed || error.is_some()),
            ))
        },
    )
    .boxed()
}

/// A translated request from a client of another format (Claude Code asks for 32000 or more
/// output tokens) gets at most the model's configured `max_tokens`, so an upstream with a
/// smaller limit does not refuse our translation. Chat Completions clients are left as sent.
pub fn fit_max_tokens(req: &mut ChatRequest, model: Option<&ModelConfig>) {
    let (Some(_), Some(limit)) = (&req.native, model.and_then(|m| m.max_tokens)) else {
        return;
    };
    if let Some(v) = req.extra.get_mut("max_tokens") {
        if v.as_u64().is_some_and(|n| n > u64::from(limit)) {
            tracing::debug!(
                limit,
                "lowering max_tokens to the model's configured max_tokens"
            );
            *v = serde_json::Value::from(limit);
        }
    }
}
