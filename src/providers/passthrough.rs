//! Native passthrough: a client's own-format body (Anthropic Messages, OpenAI Responses)
//! sent to a provider that speaks that format, with only `model` replaced, and the answer
//! returned as the upstream's JSON bytes or its SSE events, forwarded as they arrive.
//! The router (`routing::attempt`) decides when to use it; health, failover and the
//! first-event commit are the router's, exactly as for translated requests.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::StatusCode;
use serde_json::value::RawValue;

use super::http::{error_fields, Auth, Upstream};
use super::sse::sse_events;
use super::ProviderError;
use crate::api::native::{NativeFormat, NativeRequest};
use crate::config::{ProviderConfig, ProviderKind};

/// The `anthropic-version` sent when the client named none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// One SSE event of a native stream, as the upstream framed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeEvent {
    /// The `event:` name (`message_start`, `response.output_text.delta`, `error`, ...).
    pub event: String,
    pub data: String,
}

impl NativeEvent {
    /// `event: NAME\ndata: DATA\n\n`, as the client's SDK expects it (every event named).
    pub fn to_sse(&self) -> Bytes {
        let mut s = String::with_capacity(self.event.len() + self.data.len() + 16);
        if !self.event.is_empty() {
            s.push_str("event: ");
            s.push_str(&self.event);
            s.push('\n');
        }
        for line in self.data.split('\n') {
            s.push_str("data: ");
            s.push_str(line);
            s.push('\n');
        }
        s.push('\n');
        Bytes::from(s)
    }
}

pub type NativeStream = BoxStream<'static, Result<NativeEvent, ProviderError>>;

/// A natively served answer.
pub enum NativeOutcome {
    /// The upstream's JSON body.
    Complete(Bytes),
    /// The upstream's events; the stream ends after an `error` event.
    Stream(NativeStream),
}

/// A provider's native endpoint for one format.
pub struct Passthrough {
    up: Upstream,
    format: NativeFormat,
    url: http::Uri,
    /// Anthropic's token counter (`/v1/messages/count_tokens`); none for Responses.
    count_url: Option<http::Uri>,
}

/// Does `p` speak `format` natively? The one place that says which provider types do.
pub fn speaks(p: &ProviderConfig) -> Option<NativeFormat> {
    match p.kind {
        ProviderKind::Anthropic => Some(NativeFormat::AnthropicMessages),
        ProviderKind::OpenAi if p.responses => Some(NativeFormat::OpenAiResponses),
        _ => None,
    }
}

impl Passthrough {
    pub fn new(up: Upstream, format: NativeFormat) -> Passthrough {
        let (url, count_url) = match format {
            NativeFormat::AnthropicMessages => {
                // An endpoint configured with the version path (`.../v1`) works too.
                let base = up.endpoint.trim_end_matches("/v1").to_string();
                (
                    Upstream::fixed_url(&format!("{base}/v1/messages")),
                    Some(Upstream::fixed_url(&format!(
                        "{base}/v1/messages/count_tokens"
                    ))),
                )
            }
            NativeFormat::OpenAiResponses => (
                Upstream::fixed_url(&format!("{}/responses", up.endpoint)),
                None,
            ),
        };
        // `Upstream::send` presents the key, in the header this format's API expects.
        let up = match format {
            NativeFormat::AnthropicMessages => up.with_auth(Auth::Header("x-api-key")),
            NativeFormat::OpenAiResponses => up.with_auth(Auth::Bearer),
        };
        Passthrough {
            up,
            format,
            url,
            count_url,
        }
    }

    pub fn format(&self) -> NativeFormat {
        self.format
    }

    /// Sends the client's body as `model`. A stream is returned once the upstream answered
    /// with a success status; the router peeks its first event before committing.
    pub async fn send(
        &self,
        req: &NativeRequest,
        model: &str,
    ) -> Result<NativeOutcome, ProviderError> {
        let body = with_model(&req.body, model)?;
        let builder = self.request(self.url.clone(), req, body)?;
        let resp = self.up.send(builder).await?;
        if req.stream {
            let events = sse_events(resp.bytes_stream(), self.up.timeouts.idle).map(|r| {
                r.map(|e| NativeEvent {
                    event: e.event,
                    data: e.data,
                })
            });
            return Ok(NativeOutcome::Stream(end_after_error(events).boxed()));
        }
        Ok(NativeOutcome::Complete(self.up.read_body(resp).await?))
    }

    /// Anthropic's `count_tokens`, forwarded; `None` when this format has no such endpoint.
    pub async fn count_tokens(
        &self,
        req: &NativeRequest,
        model: &str,
    ) -> Option<Result<Bytes, ProviderError>> {
        let url = self.count_url.clone()?;
        let result = async {
            let body = with_model(&req.body, model)?;
            let resp = self.up.send(self.request(url, req, body)?).await?;
            self.up.read_body(resp).await
        };
        Some(result.await)
    }

    fn request(
        &self,
        url: http::Uri,
        req: &NativeRequest,
        body: Vec<u8>,
    ) -> Result<super::client::RequestBuilder, ProviderError> {
        let mut b = self.up.post_json(url, body);
        match self.format {
            NativeFormat::AnthropicMessages => {
                b = b.header(
                    "anthropic-version",
                    req.header("anthropic-version").unwrap_or(ANTHROPIC_VERSION),
                );
                if let Some(beta) = req.header("anthropic-beta") {
                    b = b.header("anthropic-beta", beta);
                }
            }
            NativeFormat::OpenAiResponses => {
                for (name, value) in &req.headers {
                    b = b.header(name.as_str(), value.as_str());
                }
            }
        }
        Ok(b)
    }
}

/// The client's body with `model` replaced and every other field byte for byte as sent
/// (values are kept as raw JSON, never re-encoded).
pub fn with_model(body: &[u8], model: &str) -> Result<Vec<u8>, ProviderError> {
    let mut fields: BTreeMap<String, &RawValue> = serde_json::from_slice(body)
        .map_err(|e| ProviderError::Protocol(format!("native body is not a JSON object: {e}")))?;
    let model_json = serde_json::to_string(model).unwrap_or_default();
    let model_raw = RawValue::from_string(model_json)
        .map_err(|e| ProviderError::Protocol(format!("model name: {e}")))?;
    fields.insert("model".into(), &model_raw);
    serde_json::to_vec(&fields)
        .map_err(|e| ProviderError::Protocol(format!("request encoding: {e}")))
}

/// Stops a native stream after the upstream's `error` event (Anthropic can send one after
/// its 200): nothing the upstream sends after it is part of an answer.
fn end_after_error<S>(events: S) -> impl futures::Stream<Item = Result<NativeEvent, ProviderError>>
where
    S: futures::Stream<Item = Result<NativeEvent, ProviderError>> + Send + 'static,
{
    futures::stream::unfold((Box::pin(events), false), |(mut s, done)| async move {
        if done {
            return None;
        }
        let item = s.next().await?;
        let done = matches!(&item, Ok(e) if e.event == "error") || item.is_err();
        Some((item, (s, done)))
    })
}

/// The provider error an in-band `error` event stands for, so the router can count it
/// and, when it is the very first event, fail over as for an error status.
pub fn event_error(e: &NativeEvent) -> Option<ProviderError> {
    if e.event != "error" {
        return None;
    }
    let status = match serde_json::from_str::<serde_json::Value>(&e.data)
        .ok()
        .as_ref()
        .and_then(|v| v.pointer("/error/type").or_else(|| v.get("code")))
        .and_then(|t| t.as_str())
    {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("overloaded_error") => 529,
        _ => 500,
    };
    let (message, kind, code) = error_fields(
        e.data.as_bytes(),
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    if status == 429 {
        return Some(ProviderError::RateLimited {
            retry_after: None,
            message,
        });
    }
    Some(ProviderError::Upstream {
        status,
        message,
        kind,
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_model_is_replaced() {
        let body = br#"{"model":"claude-x","max_tokens":5,"thinking":{"type":"adaptive"},"messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}]}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&with_model(body, "claude-real").unwrap()).unwrap();
        let mut want: serde_json::Value = serde_json::from_slice(body).unwrap();
        want["model"] = "claude-real".into();
        assert_eq!(out, want);
        assert!(with_model(b"[1]", "m").is_err());
    }

    #[test]
    fn error_events_become_provider_errors() {
        let ev = |data: &str| NativeEvent {
            event: "error".into(),
            data: data.into(),
        };
        let overloaded = event_error(&ev(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ))
        .unwrap();
        assert!(overloaded.is_provider_fault(), "{overloaded:?}");
        assert!(matches!(
            event_error(&ev(
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}"#
            )),
            Some(ProviderError::RateLimited { .. })
        ));
        let not_error = NativeEvent {
            event: "ping".into(),
            data: "{}".into(),
        };
        assert!(event_error(&not_error).is_none());
    }

    #[test]
    fn events_are_framed_with_their_name() {
        let e = NativeEvent {
            event: "message_stop".into(),
            data: r#"{"type":"message_stop"}"#.into(),
        };
        assert_eq!(
            &e.to_sse()[..],
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
    }
}
