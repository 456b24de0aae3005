//! Gateway authentication: with `auth.enabled`, every route but `/health` needs a Bearer
//! token from `auth.tokens`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::state::AppState;

pub async fn require_token(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let auth = &state.config.auth;
    if !auth.enabled || req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(t)
            if auth
                .tokens
                .iter()
                .any(|k| constant_time_eq(k.expose().as_bytes(), t.as_bytes())) =>
        {
            next.run(req).await
        }
        Some(_) => ApiError::Unauthorized("invalid gateway token".into()).into_response(),
        None => ApiError::Unauthorized(
            "missing gateway token: send 'Authorization: Bearer <token>' (aisbf.json auth.tokens)"
                .into(),
        )
        .into_response(),
    }
}

/// Compares without an early exit, so timing does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
