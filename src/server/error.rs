//! The one place that knows HTTP statuses and the error shapes: OpenAI's, and Anthropic's for
//! the Messages ingress (the same `ApiError`, the same statuses, rendered in its shape).

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::providers::ProviderError;
use crate::routing::RouteError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("request body is larger than the limit of {0} bytes (limits.max_body_bytes)")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// `previous_response_id` names no stored response (unknown, expired or `store:false`).
    #[error("Previous response with id '{0}' not found.")]
    PreviousResponseNotFound(String),
    #[error(transparent)]
    Route(#[from] RouteError),
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        ApiError::Route(RouteError::Provider(e))
    }
}

/// Status, type, code and Retry-After of an error, by the contract's table.
pub struct ErrorParts {
    pub status: StatusCode,
    pub kind: String,
    pub code: Option<String>,
    pub retry_after: Option<Duration>,
    /// The request field at fault, when one is.
    pub param: Option<&'static str>,
}

fn parts(status: StatusCode, kind: &str, code: Option<&str>) -> ErrorParts {
    ErrorParts {
        status,
        kind: kind.to_string(),
        code: code.map(str::to_string),
        retry_after: None,
        param: None,
    }
}

pub fn provider_error_parts(e: &ProviderError) -> ErrorParts {
    match e {
        ProviderError::Connect(_) | ProviderError::Protocol(_) => parts(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            Some("upstream_error"),
        ),
        ProviderError::Timeout(_) => parts(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            Some("upstream_timeout"),
        ),
        ProviderError::RateLimited { retry_after, .. } => ErrorParts {
            retry_after: *retry_after,
            ..parts(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
            )
        },
        ProviderError::Upstream {
            status, kind, code, ..
        } => {
            let s = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            if s.is_client_error() && *status != 408 {
                ErrorParts {
                    status: s,
                    kind: kind
                        .clone()
                        .unwrap_or_else(|| "invalid_request_error".into()),
                    code: code.clone(),
                    retry_after: None,
                    param: None,
                }
            } else {
                parts(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    Some("upstream_error"),
                )
            }
        }
        ProviderError::MissingKey { .. } => parts(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            Some("missing_api_key"),
        ),
    }
}

impl ApiError {
    pub fn parts(&self) -> ErrorParts {
        match self {
            ApiError::BadRequest(_) => {
                parts(StatusCode::BAD_REQUEST, "invalid_request_error", None)
            }
            ApiError::Unauthorized(_) => parts(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                Some("invalid_api_key"),
            ),
            ApiError::PayloadTooLarge(_) => parts(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                Some("request_too_large"),
            ),
            ApiError::NotFound(_) => {
                parts(StatusCode::NOT_FOUND, "not_found_error", Some("not_found"))
            }
            ApiError::PreviousResponseNotFound(_) => ErrorParts {
                param: Some("previous_response_id"),
                ..parts(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("previous_response_not_found"),
                )
            },
            ApiError::MethodNotAllowed(_) => parts(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                Some("method_not_allowed"),
            ),
            ApiError::Route(r) => match r {
                RouteError::UnknownProvider(_)
                | RouteError::UnknownRotation(_)
                | RouteError::UnknownAutoselect(_)
                | RouteError::UnknownModel(_)
                | RouteError::UnresolvedAlias { .. } => parts(
                    StatusCode::NOT_FOUND,
                    "not_found_error",
                    Some("model_not_found"),
                ),
                RouteError::UnsupportedProvider(..) => parts(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("unsupported_provider"),
                ),
                RouteError::Unusable(_) => parts(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    Some("misconfigured"),
                ),
                RouteError::Cooling { retry_after, .. }
                | RouteError::AllCooling { retry_after, .. } => ErrorParts {
                    retry_after: Some(*retry_after),
                    ..parts(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "service_unavailable",
                        Some("cooling_down"),
                    )
                },
                RouteError::Spaced { retry_after, .. } => ErrorParts {
                    retry_after: Some(*retry_after),
                    ..parts(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit_error",
                        Some("rate_limit_spacing"),
                    )
                },
                RouteError::AllRateLimited { retry_after, .. } => ErrorParts {
                    retry_after: *retry_after,
                    ..parts(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit_error",
                        Some("rate_limit_exceeded"),
                    )
                },
                RouteError::AllFailed { .. } => parts(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    Some("all_candidates_failed"),
                ),
                RouteError::ContextTooLarge { .. } => parts(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("context_length_exceeded"),
                ),
                RouteError::Provider(p) => provider_error_parts(p),
            },
        }
    }
}

/// `{"error":{"message","type","code","param"}}`.
pub fn error_json(message: &str, p: &ErrorParts) -> serde_json::Value {
    json!({"error": {"message": message, "type": p.kind, "code": p.code, "param": p.param}})
}

/// Anthropic's error `type` for a status (design.md §12); an upstream 4xx keeps its status
/// and gets the type that status has here.
pub fn anthropic_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        s if (400..500).contains(&s) => "invalid_request_error",
        _ => "api_error",
    }
}

/// `{"type":"error","error":{"type","message"}}`.
pub fn anthropic_error_json(message: &str, status: StatusCode) -> serde_json::Value {
    json!({"type": "error", "error": {"type": anthropic_kind(status), "message": message}})
}

/// Which error shape a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
}

/// An `ApiError` answered in Anthropic's shape (`/v1/messages`).
pub struct AnthropicError(pub ApiError);

impl<E: Into<ApiError>> From<E> for AnthropicError {
    fn from(e: E) -> Self {
        AnthropicError(e.into())
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        self.0.render(Shape::Anthropic)
    }
}

impl From<crate::ingress::InvalidRequest> for ApiError {
    fn from(e: crate::ingress::InvalidRequest) -> Self {
        ApiError::BadRequest(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.render(Shape::OpenAi)
    }
}

impl ApiError {
    /// What the client is told: a client-fault upstream error keeps the upstream's words.
    pub fn client_message(&self) -> String {
        let p = self.parts();
        match self {
            ApiError::Route(RouteError::Provider(ProviderError::Upstream { message, .. }))
                if p.status.is_client_error() =>
            {
                message.clone()
            }
            other => other.to_string(),
        }
    }

    pub fn render(self, shape: Shape) -> Response {
        let p = self.parts();
        let message = self.client_message();
        if p.status.is_server_error() || p.status == StatusCode::TOO_MANY_REQUESTS {
            tracing::warn!(status = p.status.as_u16(), "{message}");
        } else {
            tracing::debug!(status = p.status.as_u16(), "{message}");
        }
        let body = match shape {
            Shape::OpenAi => error_json(&message, &p),
            Shape::Anthropic => anthropic_error_json(&message, p.status),
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (p.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(d) = p.retry_after {
            // Never 0: a client told "retry after 0s" would hammer a cooling provider.
            let secs = crate::routing::ceil_secs(d).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
