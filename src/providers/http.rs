//! The HTTP plumbing every provider shares: the pooled client, key lookup, timeouts, and the
//! mapping of transport failures and error statuses to `ProviderError`.

use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use http::{StatusCode, Uri};
use serde_json::Value;

use super::client::{HttpClient, IntoUri, RequestBuilder, Response, TransportError};
use super::{Phase, ProviderError, Timeouts};
use crate::config::{ApiKey, ProviderConfig};
use crate::secret::Secret;

/// One configured upstream: where it is, how to authenticate, and the shared client.
#[derive(Clone)]
pub struct Upstream {
    pub id: String,
    pub endpoint: String,
    key: ApiKey,
    /// How the key is presented; `send` applies it to every request.
    auth: Auth,
    /// The key's header value, built once (sensitive); `None` when there is no usable key,
    /// and `authorized` then says why.
    auth_value: Option<HeaderValue>,
    pub client: HttpClient,
    pub timeouts: Timeouts,
    /// Per-model `max_tokens` defaults (Anthropic requires the field).
    pub model_max_tokens: Vec<(String, u32)>,
}

impl Upstream {
    pub fn new(p: &ProviderConfig, client: HttpClient, timeouts: Timeouts) -> Self {
        Upstream {
            id: p.id.clone(),
            endpoint: p.endpoint().to_string(),
            key: p.api_key.clone(),
            auth: Auth::Bearer,
            auth_value: auth_value(&p.api_key, Auth::Bearer),
            client,
            timeouts,
            model_max_tokens: p
                .models
                .iter()
                .filter_map(|m| m.max_tokens.map(|t| (m.name.clone(), t)))
                .collect(),
        }
    }

    /// A fixed upstream URL, parsed once here rather than on every request.
    pub fn fixed_url(url: &str) -> Uri {
        url.parse()
            .expect("endpoints are validated as URLs when the config loads")
    }

    /// The configured key; `None` when the provider needs none.
    pub fn key(&self) -> Result<Option<&Secret>, ProviderError> {
        match &self.key {
            ApiKey::None => Ok(None),
            ApiKey::Value(s) => Ok(Some(s)),
            ApiKey::MissingEnv(var) => Err(ProviderError::MissingKey {
                provider: self.id.clone(),
                var: var.clone(),
            }),
        }
    }

    /// The provider's way of presenting its key (Bearer by default).
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self.auth_value = auth_value(&self.key, auth);
        self
    }

    /// A POST of a JSON body.
    pub fn post_json(&self, url: impl IntoUri, body: Vec<u8>) -> RequestBuilder {
        self.client.post(url).json_body(body)
    }

    /// `req` with the configured key in the provider's header (marked sensitive, so it
    /// never shows in a debug print); unchanged when the provider needs no key.
    fn authorized(&self, req: RequestBuilder) -> Result<RequestBuilder, ProviderError> {
        let Some(key) = self.key()? else {
            return Ok(req);
        };
        let auth = self.auth;
        let name = match auth {
            Auth::Bearer => AUTHORIZATION.as_str(),
            Auth::Header(name) => name,
        };
        if let Some(value) = &self.auth_value {
            return Ok(req.header(name, value.clone()));
        }
        let value = match auth {
            Auth::Bearer => format!("Bearer {}", key.expose()),
            Auth::Header(_) => key.expose().to_string(),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            ProviderError::Protocol("the configured API key is not a valid header value".into())
        })?;
        value.set_sensitive(true);
        Ok(req.header(name, value))
    }

    pub fn max_tokens_for(&self, model: &str) -> Option<u32> {
        self.model_max_tokens
            .iter()
            .find(|(m, _)| m == model)
            .map(|(_, t)| *t)
    }

    /// Sends the request, authorized, and waits for the response head within the first-byte
    /// timeout. Error statuses become `ProviderError`s carrying the upstream's own message.
    pub async fn send(&self, req: RequestBuilder) -> Result<Response, ProviderError> {
        let req = self.authorized(req)?;
        let resp = match tokio::time::timeout(self.timeouts.first_byte, req.send()).await {
            Err(_) => return Err(ProviderError::Timeout(Phase::FirstByte)),
            Ok(Err(e)) => return Err(transport_error(e)),
            Ok(Ok(resp)) => resp,
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.error_from_response(resp).await)
    }

    /// Reads a whole (non-stream) body: its first bytes within the first-byte timeout (some
    /// upstreams send the head before they have the answer), each later read within the
    /// idle timeout, so a slow but steady body is read to its end.
    pub async fn read_body(&self, mut resp: Response) -> Result<bytes::Bytes, ProviderError> {
        let mut body = bytes::BytesMut::new();
        let mut limit = (self.timeouts.first_byte, Phase::FirstByte);
        loop {
            match tokio::time::timeout(limit.0, resp.chunk()).await {
                Err(_) => return Err(ProviderError::Timeout(limit.1)),
                Ok(Err(e)) => return Err(transport_error(e)),
                Ok(Ok(None)) => return Ok(body.freeze()),
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            }
            limit = (self.timeouts.idle, Phase::Idle);
        }
    }

    async fn error_from_response(&self, resp: Response) -> ProviderError {
        let status = resp.status();
        let header_retry = retry_after(resp.headers());
        let body = tokio::time::timeout(self.timeouts.idle, resp.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let (mut message, kind, code) = error_fields(&body, status);
        let retry_after = header_retry.or_else(|| retry_delay_in_body(&body));
        // Upstreams echo the key they were given ("Incorrect API key provided: sk-..."):
        // that text goes to the client and the log, so the key is masked out of it.
        if let ApiKey::Value(key) = &self.key {
            if key.expose().len() >= 4 && message.contains(key.expose()) {
                message = message.replace(key.expose(), "*****");
            }
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return ProviderError::RateLimited {
                retry_after,
                message,
            };
        }
        ProviderError::Upstream {
            status: status.as_u16(),
            message,
            kind,
            code,
        }
    }
}

/// The header value presenting `key` the `auth` way, marked sensitive; `None` without a
/// usable key (no key, a missing variable, bytes a header cannot carry).
fn auth_value(key: &ApiKey, auth: Auth) -> Option<HeaderValue> {
    let ApiKey::Value(key) = key else {
        return None;
    };
    let mut value = match auth {
        Auth::Bearer => HeaderValue::from_str(&format!("Bearer {}", key.expose())),
        Auth::Header(_) => HeaderValue::from_str(key.expose()),
    }
    .ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// How a provider presents its key.
#[derive(Debug, Clone, Copy)]
pub enum Auth {
    /// `Authorization: Bearer KEY` (OpenAI, Ollama behind a proxy).
    Bearer,
    /// The key alone in the named header (`x-api-key`, `x-goog-api-key`).
    Header(&'static str),
}

/// A transport failure as the provider error the router acts on (never naming the URL: a
/// key could sit in a query string).
pub fn transport_error(e: TransportError) -> ProviderError {
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let msg = e.to_string();
    if timeout {
        ProviderError::Timeout(if connect {
            Phase::Connect
        } else {
            Phase::FirstByte
        })
    } else if connect {
        ProviderError::Connect(msg)
    } else {
        ProviderError::Protocol(msg)
    }
}

/// The message, type and code of an upstream error body in any of the native shapes:
/// OpenAI/Anthropic `{"error":{"message","type"}}`, Gemini `{"error":{"message","status"}}`,
/// Ollama `{"error":"..."}`, or plain text.
pub fn error_fields(body: &[u8], status: StatusCode) -> (String, Option<String>, Option<String>) {
    let fallback = || {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            status.to_string()
        } else {
            text.chars().take(500).collect()
        }
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (fallback(), None, None);
    };
    let err = v.get("error").unwrap_or(&v);
    if let Some(s) = err.as_str() {
        return (s.to_string(), None, None);
    }
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(fallback);
    let kind = err
        .get("type")
        .or_else(|| err.get("status"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let code = match err.get("code") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    (message, kind, code)
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Seconds since the epoch of an RFC 3339 time (`2025-02-19T00:00:00Z`,
/// `2023-11-04T14:56:49.277302595-07:00`), as native model lists write them.
pub fn rfc3339_seconds(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

/// Gemini states its back-off in the body, not a header:
/// `{"error":{"details":[{"@type":"...RetryInfo","retryDelay":"7s"}]}}`.
pub fn retry_delay_in_body(body: &[u8]) -> Option<Duration> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error")?
        .get("details")?
        .as_array()?
        .iter()
        .find_map(|d| d.get("retryDelay")?.as_str())
        .and_then(|s| s.trim().strip_suffix('s')?.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shapes_of_each_provider() {
        let s = StatusCode::BAD_REQUEST;
        let openai = br#"{"error":{"message":"bad model","type":"invalid_request_error","code":"model_not_found"}}"#;
        assert_eq!(
            error_fields(openai, s),
            (
                "bad model".into(),
                Some("invalid_request_error".into()),
                Some("model_not_found".into())
            )
        );
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(error_fields(anthropic, s).0, "Overloaded");
        let gemini =
            br#"{"error":{"code":400,"message":"API key not valid","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            error_fields(gemini, s),
            (
                "API key not valid".into(),
                Some("INVALID_ARGUMENT".into()),
                Some("400".into())
            )
        );
        assert_eq!(
            error_fields(br#"{"error":"model not found"}"#, s).0,
            "model not found"
        );
        assert_eq!(error_fields(b"oops", s).0, "oops");
        assert_eq!(error_fields(b"", s).0, "400 Bad Request");
    }

    #[test]
    fn gemini_retry_delay_from_the_body() {
        let body = br#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7.5s"}]}}"#;
        assert_eq!(retry_delay_in_body(body), Some(Duration::from_millis(7500)));
        assert_eq!(retry_delay_in_body(b"{}"), None);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let future = SystemTime::now() + Duration::from_secs(60);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(future).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(55) && d <= Duration::from_secs(60));
    }
}
