//! Gateway authentication: with `auth.enabled`, every route but `/health` needs a token from
//! `auth.tokens`, as `Authorization: Bearer` or (as Anthropic clients send it) `x-api-key`.
//! One check, `refusal`, serves both the router's layer and the direct chat routes (`fast`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;

use super::error::{ApiError, Shape};
use crate::config::AuthSection;
use crate::state::AppState;

/// The router's layer (installed only when auth is enabled).
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    match refusal(&state.config.auth, req.uri().path(), req.headers()) {
        None => next.run(req).await,
        Some(refused) => refused,
    }
}

/// The 401 to answer a request to `path` with `headers` with, or `None` when it may be served.
pub fn refusal(auth: &AuthSection, path: &str, headers: &HeaderMap) -> Option<Response> {
    if !auth.enabled || path == "/health" {
        return None;
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim);
    // Anthropic clients read errors in Anthropic's shape.
    let shape = if path.contains("/v1/messages") {
        Shape::Anthropic
    } else {
        Shape::OpenAi
    };
    match presented {
        Some(t)
            if auth
                .tokens
                .iter()
                .any(|k| constant_time_eq(k.expose().as_bytes(), t.as_bytes())) =>
        {
            None
        }
        Some(_) => Some(ApiError::Unauthorized("invalid gateway token".into()).render(shape)),
        None => Some(ApiError::Unauthorized(
            "missing gateway token: send 'Authorization: Bearer <token>' or 'x-api-key: <token>' (aisbf.json auth.tokens)"
                .into(),
        )
        .render(shape)),
    }
}

/// Compares without an early exit, so timing does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
