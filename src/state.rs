//! The application state: built once at startup (and again, whole, by a reload), shared by
//! `Arc`, never cloned per request.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::config::StateBackend;
use crate::context::tokens::TokenCounter;
use crate::context::ContextState;
use crate::ingress::responses::ResponsesState;
use crate::metrics::Metrics;
use crate::providers::client::{ClientOptions, HttpClient};
use crate::providers::Registry;
use crate::routing::autoselect::Selector;
use crate::routing::health::{self, Health};
use crate::routing::ratelimit::RateLimits;
use crate::routing::shared_state::{Redis, RedisHealth, RedisSpacing};

pub struct AppState {
    pub config: Config,
    pub providers: Registry,
    pub http: HttpClient,
    pub tokens: TokenCounter,
    /// Error tracking and cooldowns; an `Arc` so committed streams can record their end.
    pub health: Arc<Health>,
    pub limits: RateLimits,
    pub selector: Selector,
    /// Condensation prompts (config dir overrides read once) and counters.
    pub context: ContextState,
    /// Prometheus series; the same registry across reloads, so counters survive them.
    pub metrics: Arc<Metrics>,
    /// The shared state backend (`state.backend: "redis"`); `None` = this process only.
    pub redis: Option<Arc<Redis>>,
    /// The Responses ingress: its store and passthrough upstreams.
    pub responses: ResponsesState,
}

impl AppState {
    pub fn build(config: Config) -> Arc<AppState> {
        let redis = shared_backend(&config);
        let health = Arc::new(health_for(&config, redis.as_ref()));
        let http = http_client(&config);
        let responses = ResponsesState::build(&config);
        Self::assemble(
            config,
            health,
            Arc::new(Metrics::new()),
            http,
            redis,
            responses,
        )
    }

    /// The state of a reloaded `config`: metrics and, for the providers that remain, health
    /// counters and cooldowns carry over from `old`; everything else is built anew.
    pub fn rebuild(config: Config, old: &AppState) -> Arc<AppState> {
        let health = Arc::new(Health::reloaded(&config, &old.health));
        // The same client (and its warm upstream connections) unless its settings changed.
        let http = if config.timeouts.connect_seconds == old.config.timeouts.connect_seconds {
            old.http.clone()
        } else {
            http_client(&config)
        };
        // The Redis connection is kept: shared state lives in Redis, not in this process.
        let (new, was) = (&config.state, &old.config.state);
        let url =
            |s: &crate::config::StateSection| s.redis_url.as_ref().map(|u| u.expose().to_string());
        if new.backend != was.backend || new.key_prefix != was.key_prefix || url(new) != url(was) {
            tracing::warn!(
                "aisbf.json: state: a change of the state backend needs a restart; keeping the current one"
            );
        }
        let redis = old.redis.clone();
        // Stored responses survive a reload unless the store's own settings changed.
        let responses = if config.responses.store_max == old.config.responses.store_max
            && config.responses.store_seconds == old.config.responses.store_seconds
        {
            ResponsesState {
                store: old.responses.store.clone(),
            }
        } else {
            ResponsesState::build(&config)
        };
        Self::assemble(config, health, old.metrics.clone(), http, redis, responses)
    }

    fn assemble(
        config: Config,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        http: HttpClient,
        redis: Option<Arc<Redis>>,
        responses: ResponsesState,
    ) -> Arc<AppState> {
        let providers = Registry::build(&config, &http);
        Arc::new(AppState {
            health,
            metrics,
            limits: limits_for(&config, redis.as_ref()),
            redis,
            selector: Selector::new(&config),
            providers,
            tokens: TokenCounter::for_models(configured_models(&config)),
            context: ContextState::load(&config.dir),
            responses,
            http,
            config,
        })
    }

    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.config.timeouts.first_byte_seconds)
    }

    /// `GET /`'s `state`: which backend holds health and spacing, and whether it answers.
    pub fn state_status(&self) -> serde_json::Value {
        let status = match &self.redis {
            Some(r) if !r.backend_up() => "degraded",
            _ => "ok",
        };
        serde_json::json!({"backend": self.config.state.backend.name(), "status": status})
    }
}

/// Error tracking on the shared backend when there is one, else in memory.
fn health_for(config: &Config, redis: Option<&Arc<Redis>>) -> Health {
    match redis {
        Some(r) => {
            let local = Box::new(health::memory_store(config));
            Health::with_store(config, Box::new(RedisHealth::new(r.clone(), local)))
        }
        None => Health::in_memory(config),
    }
}

/// `rate_limit` spacing, decided on the shared backend when there is one.
fn limits_for(config: &Config, redis: Option<&Arc<Redis>>) -> RateLimits {
    let limits = RateLimits::build(config);
    match redis {
        Some(r) => limits.with_shared(Arc::new(RedisSpacing::new(r.clone()))),
        None => limits,
    }
}

/// The Redis client of `state.backend: "redis"` (no I/O yet: a Redis that is down at startup
/// leaves the server up, on local state). The URL was validated at load, so a failure here is
/// unexpected; it is logged and the process runs on local state rather than not at all.
fn shared_backend(config: &Config) -> Option<Arc<Redis>> {
    if config.state.backend != StateBackend::Redis {
        return None;
    }
    let url = config.state.redis_url.as_ref()?;
    match Redis::connect(url.expose(), &config.state.key_prefix) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!("cannot use the redis state backend, running on local state: {e}");
            None
        }
    }
}

/// The one pooled client every provider shares. It never follows redirects (a POST must not
/// be replayed elsewhere) and never retries by itself: failover is the router's.
fn http_client(config: &Config) -> HttpClient {
    HttpClient::new(&ClientOptions {
        connect_timeout: Duration::from_secs_f64(config.timeouts.connect_seconds),
    })
}

/// Every model name the configuration routes to: they decide which token tables load at boot.
fn configured_models(config: &Config) -> impl Iterator<Item = &str> {
    let providers = config.providers.values().flat_map(|p| p.models.iter());
    let rotations = config
        .rotations
        .values()
        .flat_map(|r| r.providers.iter().flat_map(|p| p.models.iter()));
    providers.chain(rotations).map(|m| m.name.as_str()).chain(
        config
            .condensation
            .iter()
            .filter_map(|c| c.model.as_deref()),
    )
}
