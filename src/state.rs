//! The application state: built once at startup (and again, whole, by a reload), shared by
//! `Arc`, never cloned per request.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::context::tokens::TokenCounter;
use crate::context::ContextState;
use crate::metrics::Metrics;
use crate::providers::Registry;
use crate::routing::autoselect::Selector;
use crate::routing::health::Health;
use crate::routing::ratelimit::RateLimits;

pub struct AppState {
    pub config: Config,
    pub providers: Registry,
    pub http: reqwest::Client,
    pub tokens: TokenCounter,
    /// Error tracking and cooldowns; an `Arc` so committed streams can record their end.
    pub health: Arc<Health>,
    pub limits: RateLimits,
    pub selector: Selector,
    /// Condensation prompts (config dir overrides read once) and counters.
    pub context: ContextState,
    /// Prometheus series; the same registry across reloads, so counters survive them.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn build(config: Config) -> Result<Arc<AppState>, reqwest::Error> {
        let health = Arc::new(Health::in_memory(&config));
        let http = http_client(&config)?;
        Ok(Self::assemble(
            config,
            health,
            Arc::new(Metrics::new()),
            http,
        ))
    }

    /// The state of a reloaded `config`: metrics and, for the providers that remain, health
    /// counters and cooldowns carry over from `old`; everything else is built anew.
    pub fn rebuild(config: Config, old: &AppState) -> Result<Arc<AppState>, reqwest::Error> {
        let health = Arc::new(Health::reloaded(&config, &old.health));
        // The same client (and its warm upstream connections) unless its settings changed.
        let http = if config.timeouts.connect_seconds == old.config.timeouts.connect_seconds {
            old.http.clone()
        } else {
            http_client(&config)?
        };
        Ok(Self::assemble(config, health, old.metrics.clone(), http))
    }

    fn assemble(
        config: Config,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        http: reqwest::Client,
    ) -> Arc<AppState> {
        let providers = Registry::build(&config, &http);
        Arc::new(AppState {
            health,
            metrics,
            limits: RateLimits::build(&config),
            selector: Selector::new(&config),
            providers,
            tokens: TokenCounter::for_models(configured_models(&config)),
            context: ContextState::load(&config.dir),
            http,
            config,
        })
    }

    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.config.timeouts.first_byte_seconds)
    }
}

fn http_client(config: &Config) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs_f64(config.timeouts.connect_seconds))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        // The gateway never follows redirects: a POST must not be replayed elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
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
