//! The HTTP server: every route on one screen, middleware, graceful shutdown.

mod auth;
pub mod error;
mod handlers;
mod messages;
mod responses;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use crate::state::AppState;

/// How long SIGTERM/SIGINT waits for in-flight requests and streams before exiting anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/", get(handlers::root))
        .route("/health", get(handlers::health))
        .route("/v1/chat/completions", post(handlers::v1_chat))
        .route("/api/v1/chat/completions", post(handlers::v1_chat))
        .route("/v1/responses", post(responses::create))
        .route("/api/v1/responses", post(responses::create))
        .route("/v1/responses/{id}", get(responses::get))
        .route("/api/v1/responses/{id}", get(responses::get))
        .route("/v1/messages", post(messages::messages))
        .route("/api/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route(
            "/api/v1/messages/count_tokens",
            post(messages::count_tokens),
        )
        .route("/v1/models", get(handlers::all_models))
        .route("/api/v1/models", get(handlers::all_models))
        .route("/api/models", get(handlers::all_models))
        .route("/api/rotations", get(handlers::rotations))
        .route("/api/autoselect", get(handlers::autoselects))
        .route(
            "/api/{provider}/chat/completions",
            post(handlers::provider_chat),
        )
        .route("/api/{provider}/models", get(handlers::provider_models))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static("x-goog-api-key"),
        ]))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then drains in-flight requests for at most
/// `DRAIN_TIMEOUT`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // Without TCP_NODELAY, small SSE writes wait for the client's delayed ACK (~40 ms each).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let server =
        axum::serve(listener, app.into_make_service()).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(());
        });
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    tokio::select! {
        r = &mut server => return r,
        _ = rx => {}
    }
    tracing::info!(
        "shutting down: draining in-flight requests (at most {}s)",
        DRAIN_TIMEOUT.as_secs()
    );
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
