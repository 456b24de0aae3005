//! The HTTP server: every route on one screen, middleware, the listener, reload and
//! graceful shutdown.

pub mod alloc;
mod auth;
mod conn;
pub mod error;
mod fast;
mod handlers;
pub mod live;
mod messages;
pub mod observe;
mod respond;
mod responses;
mod stream;
pub mod workers;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use crate::state::AppState;
use conn::{Activity, Guarded};
use live::Live;
use observe::Observed;

/// How long SIGTERM/SIGINT waits for in-flight requests and streams before exiting anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Every route. Three of them are also served without this router, before it, by `fast`
/// (the hot path: no routing, extractors or layers); same handler logic, same answers:
///
/// | method | path                                | handler logic            |
/// |--------|-------------------------------------|--------------------------|
/// | POST   | `/v1/chat/completions`              | `handlers::chat_v1`      |
/// | POST   | `/api/v1/chat/completions`          | `handlers::chat_v1`      |
/// | POST   | `/api/{provider}/chat/completions`  | `handlers::chat_provider`|
///
/// Other methods on these paths still come here (405). Auth, the body limit and the
/// sensitive headers below are applied there too (`fast::serve`).
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.limits.max_body_bytes;
    let routes = Router::new()
        .route("/", get(handlers::root))
        .route("/health", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
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
        .method_not_allowed_fallback(handlers::method_not_allowed);
    // Without gateway auth there is nothing to check, so the layer is not installed: a
    // `from_fn` layer clones the boxed inner service on every request (~3k instructions,
    // callgrind). A reload builds a new router, so turning auth on takes effect at once.
    let routes = if state.config.auth.enabled {
        routes.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
    } else {
        routes
    };
    routes
        .layer(DefaultBodyLimit::max(limit))
        .layer(SetSensitiveRequestHeadersLayer::new(
            SENSITIVE_HEADERS.map(HeaderName::from_static),
        ))
        .with_state(state)
}

/// Request headers that carry keys: marked sensitive so no layer or log prints them.
const SENSITIVE_HEADERS: [&str; 3] = ["authorization", "x-api-key", "x-goog-api-key"];

/// Serves `state` (never reloaded) until `shutdown` resolves; see `serve_live`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let live = Live::new(
        state,
        Box::new(|| Err("this server was started without a configuration loader".into())),
    );
    serve_live(listener, live, shutdown).await
}

/// Serves whatever `live` holds until `shutdown` resolves, then drains in-flight requests
/// for at most `DRAIN_TIMEOUT`.
pub async fn serve_live(
    listener: tokio::net::TcpListener,
    live: Arc<Live>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = connection_slots(&live);
    serve_worker(listener, live, slots, shutdown).await
}

/// One permit per open connection, taken before `accept`: past the limit, new clients wait
/// in the kernel's backlog instead of costing a file descriptor each. One set for all
/// workers.
pub fn connection_slots(live: &Live) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(live.state().config.limits.max_connections))
}

/// One worker's accept loop (see `workers`): serves the connections it accepts from
/// `listener`, within the shared `slots`, until `shutdown` resolves, then drains them for at
/// most `DRAIN_TIMEOUT`.
pub async fn serve_worker(
    listener: tokio::net::TcpListener,
    live: Arc<Live>,
    slots: Arc<Semaphore>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    alloc::bound_heap();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Without TCP_NODELAY, small SSE writes wait for the client's delayed ACK (~40 ms each).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let timeouts = &live.state().config.timeouts;
        let activity = Arc::new(Activity::default());
        let io = Guarded::new(
            tcp,
            activity.clone(),
            Duration::from_secs_f64(timeouts.header_seconds),
            Duration::from_secs_f64(timeouts.keepalive_seconds),
        );
        let service = Observed {
            live: live.clone(),
            activity,
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            // Our `Guarded` socket keeps the head deadline (hyper's would cut idle keep-alive).
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection closed: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        "shutting down: draining in-flight requests (at most {}s)",
        DRAIN_TIMEOUT.as_secs()
    );
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    }
    Ok(())
}

/// Reloads `live` on every SIGHUP (design.md §15), off the async workers.
pub async fn reload_on_sighup(live: Arc<Live>) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP, reload is unavailable: {e}");
            return;
        }
    };
    while hup.recv().await.is_some() {
        let live = live.clone();
        let _ = tokio::task::spawn_blocking(move || live.reload("SIGHUP")).await;
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
