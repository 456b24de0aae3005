//! Responses passthrough: an `openai` provider with `"responses": true` serves
//! `/v1/responses` itself, so the client's body goes to `{endpoint}/responses` with only
//! `model` replaced (reasoning items, `include`, built-in tools and the upstream's own
//! `previous_response_id` state intact), and its answer or events come back as they arrive.
//!
//! Health, cooldowns, `rate_limit` spacing and the first-event commit apply as on the
//! translated path.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;

use crate::config::{Config, ProviderKind};
use crate::providers::http::{transport_error, Upstream};
use crate::providers::{Phase, ProviderError, Timeouts};
use crate::routing::RouteError;
use crate::state::AppState;

/// The upstreams of `responses: true` providers, built once with the state.
#[derive(Default)]
pub struct Native {
    upstreams: HashMap<String, (Upstream, reqwest::Url)>,
}

impl Native {
    pub fn build(config: &Config, http: &reqwest::Client) -> Native {
        let timeouts = Timeouts {
            first_byte: Duration::from_secs_f64(config.timeouts.first_byte_seconds),
            idle: Duration::from_secs_f64(config.timeouts.idle_seconds),
        };
        let upstreams = config
            .providers
            .iter()
            .filter(|(_, p)| p.responses && p.kind == ProviderKind::OpenAi)
            .map(|(id, p)| {
                let up = Upstream::new(p, http.clone(), timeouts.clone());
                let url = Upstream::fixed_url(&format!("{}/responses", up.endpoint));
                (id.clone(), (up, url))
            })
            .collect();
        Native { upstreams }
    }

    pub fn serves(&self, provider: &str) -> bool {
        self.upstreams.contains_key(provider)
    }
}

/// What the upstream answered: a whole JSON body, or SSE bytes as they arrive.
pub enum NativeAnswer {
    Complete(Bytes),
    Stream(BoxStream<'static, Bytes>),
}

enum Sent {
    Complete(Bytes),
    Stream(Raw),
}

/// Sends `body` (the client's, `model` replaced) to `provider`'s `/responses`.
pub async fn serve(
    state: &AppState,
    provider: &str,
    model: &str,
    mut body: Value,
) -> Result<NativeAnswer, RouteError> {
    let Some((up, url)) = state.responses.native.upstreams.get(provider) else {
        return Err(RouteError::UnknownProvider(provider.to_string()));
    };
    if let Some(c) = state.health.cooling(provider, model).await {
        return Err(RouteError::Cooling {
            target: format!("{provider}/{model}"),
            retry_after: c.remaining(),
        });
    }
    state.limits.wait_for_slot(provider, model).await;
    body["model"] = Value::String(model.to_string());
    let stream = body.get("stream") == Some(&Value::Bool(true));
    match send(up, url.clone(), &body, stream).await {
        Ok(Sent::Complete(b)) => {
            state.health.success(provider, model).await;
            Ok(NativeAnswer::Complete(b))
        }
        Ok(Sent::Stream(s)) => Ok(NativeAnswer::Stream(track(s, state, provider, model))),
        Err(e) => {
            state.health.failure(provider, model, &e).await;
            Err(e.into())
        }
    }
}

type Raw = BoxStream<'static, Result<Bytes, ProviderError>>;

async fn send(
    up: &Upstream,
    url: reqwest::Url,
    body: &Value,
    stream: bool,
) -> Result<Sent, ProviderError> {
    let mut rb = up
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default());
    if let Some(key) = up.key()? {
        rb = rb.bearer_auth(key.expose());
    }
    let resp = up.send(rb).await?;
    if !stream {
        return Ok(Sent::Complete(up.read_body(resp).await?));
    }
    let idle = up.timeouts.idle;
    let mut raw: Raw = resp
        .bytes_stream()
        .map(|r| r.map_err(transport_error))
        .boxed();
    // Committed only after the first bytes: silence or an error before them fails over.
    let first = match tokio::time::timeout(up.timeouts.first_byte, raw.next()).await {
        Err(_) => return Err(ProviderError::Timeout(Phase::FirstByte)),
        Ok(None) => {
            return Err(ProviderError::Protocol(
                "upstream stream ended before its first event".into(),
            ))
        }
        Ok(Some(r)) => r?,
    };
    let rest = futures::stream::unfold(raw, move |mut raw| async move {
        match tokio::time::timeout(idle, raw.next()).await {
            Err(_) => Some((Err(ProviderError::Timeout(Phase::Idle)), raw)),
            Ok(item) => item.map(|i| (i, raw)),
        }
    });
    Ok(Sent::Stream(
        futures::stream::once(async move { Ok(first) })
            .chain(rest)
            .boxed(),
    ))
}

/// Success recorded at the stream's end; a failure mid-way is recorded, logged and ends the
/// stream (the upstream's own events are already with the client).
fn track(s: Raw, state: &AppState, provider: &str, model: &str) -> BoxStream<'static, Bytes> {
    let health = state.health.clone();
    let (provider, model) = (provider.to_string(), model.to_string());
    futures::stream::unfold(Some(s), move |s| {
        let (health, provider, model) = (health.clone(), provider.clone(), model.clone());
        async move {
            let mut s = s?;
            match s.next().await {
                Some(Ok(b)) => Some((b, Some(s))),
                Some(Err(e)) => {
                    tracing::warn!(provider = %provider, "responses passthrough stream failed: {e}");
                    health.failure(&provider, &model, &e).await;
                    None
                }
                None => {
                    health.success(&provider, &model).await;
                    None
                }
            }
        }
    })
    .boxed()
}
