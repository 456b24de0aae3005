//! The one service every request passes through before the router (design.md §14): it loads
//! the current state (reload), gives the request its id and tracing span, counts it in the
//! request metrics, and writes its access-log line when the response, whole stream
//! included, has ended. The API label comes from the path, so every ingress route is covered
//! without its handler knowing.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use futures::future::Either;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tower_service::Service;
use tracing::Instrument;

use super::conn::{Activity, Busy};
use super::fast;
use super::live::Live;
use crate::metrics::{Metrics, Record, SharedRecord, CURRENT};

pub const REQUEST_ID: &str = "x-request-id";

/// Which API a path belongs to, for the `api` label; `None` is not counted (`/metrics`,
/// `/health`, `/`, the config listings).
pub fn api_of(path: &str) -> Option<&'static str> {
    let rest = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/api/v1/"));
    if let Some(rest) = rest {
        return match rest.split('/').next() {
            Some("chat") if rest == "chat/completions" => Some("chat"),
            Some("messages") => Some("messages"),
            Some("responses") => Some("responses"),
            Some("models") => Some("models"),
            _ => None,
        };
    }
    let rest = path.strip_prefix("/api/")?;
    if rest == "models" {
        return Some("models");
    }
    match rest.split_once('/') {
        Some((_, "chat/completions")) => Some("chat"),
        Some((_, "models")) => Some("models"),
        _ => None,
    }
}

/// A request's id: in its span, its access-log line and its `x-request-id` answer.
pub enum RequestId {
    /// The client's, when it is 1–128 printable ASCII characters.
    Client(HeaderValue),
    /// Else a new random one, 32 hex digits. Kept as bytes: the answer's header is the only
    /// copy that needs an allocation (a `format!`ed String and its copies cost ~1.5k
    /// instructions per request, callgrind).
    New([u8; 32]),
}

impl RequestId {
    pub fn of(headers: &HeaderMap) -> RequestId {
        if let Some(v) = headers.get(REQUEST_ID) {
            let b = v.as_bytes();
            if (1..=128).contains(&b.len()) && b.iter().all(|c| (0x20..=0x7e).contains(c)) {
                return RequestId::Client(v.clone());
            }
        }
        RequestId::New(hex(rand::random::<u128>()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            RequestId::Client(v) => v.to_str().unwrap_or(""),
            RequestId::New(b) => std::str::from_utf8(b).unwrap_or(""),
        }
    }

    pub fn to_header(&self) -> HeaderValue {
        match self {
            RequestId::Client(v) => v.clone(),
            RequestId::New(b) => {
                HeaderValue::from_bytes(b).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
            }
        }
    }
}

/// `n` as 32 lowercase hex digits, as `format!("{n:032x}")` writes it.
fn hex(n: u128) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, d) in out.iter_mut().enumerate() {
        *d = DIGITS[(n >> (124 - 4 * i)) as usize & 0xf];
    }
    out
}

/// The server's per-connection service.
#[derive(Clone)]
pub struct Observed {
    pub live: Arc<Live>,
    pub activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Observed {
    type Response = Response<ObservedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        // Counted busy from here, synchronously: the socket's header deadline stops now.
        let busy = Busy::new(&self.activity);
        let current = self.live.current();
        // Only the answer carries the id: nothing reads it from the request.
        let id = RequestId::of(req.headers());
        let id_header = id.to_header();
        let span = tracing::info_span!("request", id = %id.as_str());
        let record = SharedRecord::default();
        let api = api_of(req.uri().path());
        let metrics = current.state.metrics.clone();
        if api.is_some() {
            metrics.inflight(1);
        }
        let mut finish = Finish {
            metrics,
            api,
            method: req.method().clone(),
            // A clone shares the request's bytes: no copy of the path.
            uri: req.uri().clone(),
            id,
            start: Instant::now(),
            head: None,
            // Until a response exists: the client went away while it was being prepared.
            status: 499,
            record: record.clone(),
            _busy: busy,
        };
        // The chat routes skip the router (`fast`); the rest, and 405s on those paths, take it.
        // The chat future is boxed where it is made, as the router boxes its handlers': held
        // inline it made this service's own future ~13 kB, copied whole into its box
        // (memcpy, +13k instructions per request, callgrind).
        let handled = match fast::route(req.method(), req.uri().path()) {
            Some(chat) => Either::Left(Box::pin(fast::serve(current.state.clone(), chat, req))),
            None => Either::Right(current.router.clone().call(req)),
        };
        let handled = async move {
            match handled {
                Either::Left(chat) => chat.await,
                Either::Right(routed) => match routed.await {
                    Ok(r) => r,
                    Err(never) => match never {},
                },
            }
        };
        let handled = CURRENT
            .scope(record.clone(), handled)
            .instrument(span.clone());
        Box::pin(async move {
            let resp = handled.await;
            let (mut parts, body) = resp.into_parts();
            parts.headers.insert(REQUEST_ID, id_header);
            finish.status = parts.status.as_u16();
            finish.head = Some(finish.start.elapsed());
            Ok(Response::from_parts(
                parts,
                ObservedBody {
                    inner: body,
                    record,
                    span,
                    finish: Some(finish),
                },
            ))
        })
    }
}

/// A response body that runs inside its request's span and record (streams are produced
/// while it is polled) and accounts for the request when it ends or is dropped.
pub struct ObservedBody {
    inner: Body,
    record: SharedRecord,
    span: tracing::Span,
    finish: Option<Finish>,
}

impl HttpBody for ObservedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        let inner = &mut this.inner;
        let polled = CURRENT.sync_scope(this.record.clone(), || Pin::new(inner).poll_frame(cx));
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.finish.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Everything needed to account for one request once its response has ended.
struct Finish {
    metrics: Arc<Metrics>,
    api: Option<&'static str>,
    method: Method,
    uri: Uri,
    id: RequestId,
    start: Instant,
    head: Option<Duration>,
    status: u16,
    record: SharedRecord,
    _busy: Busy,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let duration = self.start.elapsed();
        let r: &Record = &self.record.lock();
        if let Some(api) = self.api {
            self.metrics.inflight(-1);
            let head = self.head.unwrap_or(duration);
            self.metrics
                .request_done(api, r, self.status, duration, head);
        }
        // Never a key or a body: method, path (no query), outcome, names and counts only.
        tracing::info!(
            target: "aisbf::access",
            method = %self.method,
            path = %self.uri.path(),
            status = self.status,
            provider = r.provider.as_deref().unwrap_or("-"),
            model = r.model.as_deref().unwrap_or("-"),
            duration_ms = (duration.as_secs_f64() * 10_000.0).round() / 10.0,
            // Absent when unknown (no upstream answered, or it reported none).
            prompt_tokens = r.prompt_tokens.or(r.effective_context),
            completion_tokens = r.completion_tokens,
            id = %self.id.as_str(),
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_api() {
        for (p, api) in [
            ("/v1/chat/completions", Some("chat")),
            ("/api/v1/chat/completions", Some("chat")),
            ("/api/openai/chat/completions", Some("chat")),
            ("/api/rotations/chat/completions", Some("chat")),
            ("/v1/messages", Some("messages")),
            ("/v1/messages/count_tokens", Some("messages")),
            ("/api/v1/messages", Some("messages")),
            ("/v1/responses", Some("responses")),
            ("/v1/responses/resp_1", Some("responses")),
            ("/v1/models", Some("models")),
            ("/api/models", Some("models")),
            ("/api/ollama/models", Some("models")),
            ("/metrics", None),
            ("/health", None),
            ("/", None),
            ("/api/rotations", None),
            ("/v1/embeddings", None),
        ] {
            assert_eq!(api_of(p), api, "{p}");
        }
    }

    fn request_id(h: &HeaderMap) -> HeaderValue {
        let id = RequestId::of(h);
        assert_eq!(id.as_str(), id.to_header().to_str().unwrap());
        id.to_header()
    }

    #[test]
    fn client_ids_are_kept_only_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_str(&"x".repeat(129)).unwrap());
        let generated = request_id(&h);
        assert_eq!(generated.len(), 32);
        h.insert(REQUEST_ID, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(request_id(&h).len(), 32);
        h.insert(REQUEST_ID, HeaderValue::from_static(""));
        assert_eq!(request_id(&h).len(), 32);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn new_ids_are_hex_as_format_writes_it() {
        for n in [0, 1, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210] {
            assert_eq!(hex(n), format!("{n:032x}").as_bytes());
        }
    }
}
