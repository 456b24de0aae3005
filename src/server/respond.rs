//! Response building the ingress handlers share: reading the body, JSON and SSE answers, and
//! the `x-aisbf-*` headers that name what served a request.

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::BoxError;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::ApiError;
use crate::state::AppState;

/// The request body, or the 413 / 400 that says why there is none. `what` names the
/// request the client should have sent ("a JSON Messages request").
pub fn read_body(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<Bytes, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.config.limits.max_body_bytes)
        } else {
            ApiError::BadRequest(format!("cannot read request body: {r}"))
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "request body is empty: expected {what}"
        )));
    }
    Ok(body)
}

/// The whole body of a chat request, read without axum's `Bytes` extractor (the direct chat
/// routes have no router to install `DefaultBodyLimit`): over `limits.max_body_bytes` the
/// same 413, and on a read error the same 400 text, as `read_body` answers after that
/// extractor.
pub async fn collect_body<B>(state: &AppState, body: B) -> Result<Bytes, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = state.config.limits.max_body_bytes;
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge(limit)),
        // "Failed to buffer…" is the text of axum's rejection, kept so the answer is unchanged.
        Err(e) => Err(ApiError::BadRequest(format!(
            "cannot read request body: Failed to buffer the request body: {e}"
        ))),
    }
}

/// 200 with a JSON body already encoded.
pub fn json_bytes(bytes: Bytes) -> Response {
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// 200 with `body` encoded as JSON.
pub fn json<T: serde::Serialize>(body: &T) -> Response {
    json_bytes(serde_json::to_vec(body).unwrap_or_default().into())
}

/// 200 with an event stream; no proxy in between may buffer it.
pub fn sse(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// `x-aisbf-provider`, `x-aisbf-model` and (after an autoselect) `x-aisbf-autoselect`.
pub fn served_headers(
    resp: &mut Response,
    provider: String,
    model: String,
    autoselected: Option<String>,
) {
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-aisbf-provider", Some(provider)),
        ("x-aisbf-model", Some(model)),
        ("x-aisbf-autoselect", autoselected),
    ] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(name, v);
        }
    }
}
