//! Route handlers: parse → resolve target → dispatch → respond.

use std::sync::Arc;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::BoxError;
use serde_json::json;

use super::error::ApiError;
use super::respond::{collect_body, json_bytes};
use super::stream::sse_body;
use crate::api::openai::{ChatRequest, ChatResponse, ModelInfo, ModelList, Usage};
use crate::config::{ProviderKind, Routed};
use crate::providers::ChatOutcome;
use crate::routing::{self, RouteError, Served, Target};
use crate::state::AppState;

type AppResult = Result<Response, ApiError>;

pub async fn root(State(state): State<Arc<AppState>>) -> Response {
    let c = &state.config;
    let unsupported: Vec<&String> = c
        .providers
        .iter()
        .filter(|(_, p)| matches!(p.kind, ProviderKind::Unsupported(_)))
        .map(|(id, _)| id)
        .collect();
    let unusable: Vec<String> = c
        .rotations
        .keys()
        .filter(|n| c.is_unusable(Routed::Rotation, n))
        .map(|n| format!("rotation/{n}"))
        .chain(
            c.autoselect
                .keys()
                .filter(|n| c.is_unusable(Routed::Autoselect, n))
                .map(|n| format!("autoselect/{n}")),
        )
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "providers": c.providers.keys().collect::<Vec<_>>(),
            "rotations": c.rotations.keys().collect::<Vec<_>>(),
            "autoselect": c.autoselect.keys().collect::<Vec<_>>(),
            "unsupported_providers": unsupported,
            "unusable": unusable,
            "provider_status": state.health.status().await,
            "state": state.state_status(),
        }),
    )
}

/// `GET /api/rotations`: the rotation configs (they hold no secrets).
pub async fn rotations(State(state): State<Arc<AppState>>) -> Response {
    json_response(StatusCode::OK, &routing::rotation::describe(&state.config))
}

/// `GET /api/autoselect`: the autoselect configs.
pub async fn autoselects(State(state): State<Arc<AppState>>) -> Response {
    json_response(
        StatusCode::OK,
        &routing::autoselect::describe(&state.config),
    )
}

/// `GET /health`: names this process, so `aisbf daemon` can tell its own server from
/// another one already on the port.
pub async fn health() -> Response {
    let mut resp = "ok".into_response();
    if let Ok(pid) = HeaderValue::from_str(&std::process::id().to_string()) {
        resp.headers_mut().insert("x-aisbf-pid", pid);
    }
    resp
}

/// `GET /metrics`: Prometheus series (OpenMetrics text), provider up/cooling read now.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut up = Vec::new();
    for (id, p) in &state.config.providers {
        if !matches!(p.kind, ProviderKind::Unsupported(_)) {
            up.push((id.clone(), state.health.provider_up(id).await));
        }
    }
    let backend_up = state.redis.as_ref().is_none_or(|r| r.backend_up());
    let mut resp = state.metrics.render(up, backend_up).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    resp
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

fn parse_request(headers: &HeaderMap, body: Bytes) -> Result<ChatRequest, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "request body is empty: expected a JSON chat request".into(),
        ));
    }
    let mut req: ChatRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    req.anthropic_beta = headers
        .get("anthropic-beta")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if req.model.trim().is_empty() {
        return Err(ApiError::BadRequest("'model' must not be empty".into()));
    }
    if req.messages.is_empty() {
        return Err(ApiError::BadRequest(
            "'messages' must contain at least one message".into(),
        ));
    }
    req.validate().map_err(ApiError::BadRequest)?;
    Ok(req)
}

/// `POST /api/{provider}/chat/completions` as the router serves it; see `chat_provider`.
pub async fn provider_chat(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    chat_provider(&state, &provider, &headers, body).await
}

/// `POST /v1/chat/completions` as the router serves it; see `chat_v1`.
pub async fn v1_chat(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    chat_v1(&state, &headers, body).await
}

/// The chat answer on `/api/{provider}`: the one implementation behind the router's handler
/// and the direct route (`fast`), so the two cannot answer differently.
pub async fn chat_provider<B>(
    state: &AppState,
    provider: &str,
    headers: &HeaderMap,
    body: B,
) -> AppResult
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let body = collect_body(state, body).await?;
    let req = parse_request(headers, body)?;
    let target = routing::resolve_path(&state.config, provider, &req.model)?;
    respond(state, target, req).await
}

/// The chat answer on `/v1`, shared like `chat_provider`.
pub async fn chat_v1<B>(state: &AppState, headers: &HeaderMap, body: B) -> AppResult
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let body = collect_body(state, body).await?;
    let req = parse_request(headers, body)?;
    let target = routing::resolve_v1(&state.config, &req.model)?;
    respond(state, target, req).await
}

async fn respond(state: &AppState, target: Target, req: ChatRequest) -> AppResult {
    let served = routing::dispatch(state, target, req).await?;
    let Served {
        outcome,
        provider,
        model,
        effective_context,
        autoselected,
    } = served;
    let mut resp = match outcome {
        ChatOutcome::Complete(r) => complete_response(state, r, effective_context),
        ChatOutcome::Verbatim(v) => json_bytes(v.with_effective_context(effective_context)),
        ChatOutcome::Stream(s) => {
            let mut resp = Response::new(Body::from_stream(sse_body(s, effective_context)));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            resp
        }
        // Chat Completions requests carry no native body, so nothing passes through here.
        ChatOutcome::Native(_) => {
            return Err(crate::providers::ProviderError::Protocol(
                "a native answer to a Chat Completions request".into(),
            )
            .into())
        }
    };
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
    Ok(resp)
}

/// A non-stream answer with `usage.effective_context`, usage counted locally when the
/// upstream sent none.
fn complete_response(state: &AppState, mut r: ChatResponse, effective_context: u64) -> Response {
    let usage = r.usage.get_or_insert_with(|| {
        let text: String = r
            .choices
            .iter()
            .filter_map(|c| c.message.content.as_deref())
            .collect();
        Usage::new(effective_context, state.tokens.count_text(&r.model, &text))
    });
    usage.effective_context = Some(effective_context);
    json_response(StatusCode::OK, &r)
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub async fn provider_models(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
) -> AppResult {
    let c = &state.config;
    match provider.as_str() {
        "rotations" | "rotation" => {
            return Ok(json_response(
                StatusCode::OK,
                &ModelList::new(rotation_models(&state, Listing::OwnEndpoint)),
            ))
        }
        "autoselect" | "autoselections" => {
            return Ok(json_response(
                StatusCode::OK,
                &ModelList::new(autoselect_models(&state, Listing::OwnEndpoint)),
            ))
        }
        _ => {}
    }
    let config = c
        .providers
        .get(&provider)
        .ok_or_else(|| RouteError::UnknownProvider(provider.clone()))?;
    if let ProviderKind::Unsupported(kind) = &config.kind {
        return Err(RouteError::UnsupportedProvider(provider.clone(), kind.clone()).into());
    }
    let p = state
        .providers
        .get(&provider)
        .ok_or_else(|| RouteError::UnknownProvider(provider.clone()))?;
    let models = match p.models().await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(provider = %provider, "model list failed, serving the configured models: {e}");
            config
                .models
                .iter()
                .map(|m| ModelInfo::new(m.name.clone(), provider.clone()))
                .collect()
        }
    };
    Ok(json_response(StatusCode::OK, &ModelList::new(models)))
}

/// Where a list of rotations or autoselects is served: its ids are what that endpoint's
/// chat route takes.
#[derive(Clone, Copy, PartialEq)]
enum Listing {
    /// `/api/rotations/models`, `/api/autoselect/models`: bare names, every one of them.
    OwnEndpoint,
    /// `/v1/models`: `rotation/NAME`, only the usable ones (GET / names the others).
    V1,
}

fn rotation_models(state: &AppState, listing: Listing) -> Vec<ModelInfo> {
    let c = &state.config;
    c.rotations
        .keys()
        .filter(|n| listing == Listing::OwnEndpoint || !c.is_unusable(Routed::Rotation, n))
        .map(|n| match listing {
            Listing::OwnEndpoint => ModelInfo::new(n.clone(), "aisbf-rotation"),
            Listing::V1 => ModelInfo::new(format!("rotation/{n}"), "aisbf-rotation"),
        })
        .collect()
}

fn autoselect_models(state: &AppState, listing: Listing) -> Vec<ModelInfo> {
    let c = &state.config;
    c.autoselect
        .keys()
        .filter(|n| listing == Listing::OwnEndpoint || !c.is_unusable(Routed::Autoselect, n))
        .map(|n| match listing {
            Listing::OwnEndpoint => ModelInfo::new(n.clone(), "aisbf-autoselect"),
            Listing::V1 => ModelInfo::new(format!("autoselect/{n}"), "aisbf-autoselect"),
        })
        .collect()
}

/// Every routable model of the `/v1` namespace, from the configuration (no upstream calls).
pub async fn all_models(State(state): State<Arc<AppState>>) -> Response {
    let mut data: Vec<ModelInfo> = Vec::new();
    for (id, p) in &state.config.providers {
        if matches!(p.kind, ProviderKind::Unsupported(_)) {
            continue;
        }
        data.extend(
            p.models
                .iter()
                .map(|m| ModelInfo::new(format!("{id}/{}", m.name), id.clone())),
        );
    }
    data.extend(rotation_models(&state, Listing::V1));
    data.extend(autoselect_models(&state, Listing::V1));
    data.extend(alias_models(&state));
    json_response(StatusCode::OK, &ModelList::new(data))
}

/// The exact `model_aliases` keys whose target resolves (patterns are not model names).
fn alias_models(state: &AppState) -> impl Iterator<Item = ModelInfo> + '_ {
    let c = &state.config;
    c.model_aliases
        .exact()
        .filter(|(_, target)| crate::config::v1_target_exists(c, target))
        .map(|(key, _)| ModelInfo::new(key, "aisbf-alias"))
}
