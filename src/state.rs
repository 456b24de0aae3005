//! The application state: built once at startup, shared by `Arc`, never cloned per request.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::context::tokens::TokenCounter;
use crate::context::ContextState;
use crate::ingress::responses::ResponsesState;
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
    /// The Responses ingress: its store and passthrough upstreams.
    pub responses: ResponsesState,
}

impl AppState {
    pub fn build(config: Config) -> Result<Arc<AppState>, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs_f64(config.timeouts.connect_seconds))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            // The gateway never follows redirects: a POST must not be replayed elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let providers = Registry::build(&config, &http);
        Ok(Arc::new(AppState {
            health: Arc::new(Health::in_memory(&config)),
            limits: RateLimits::build(&config),
            selector: Selector::new(&config),
            providers,
            tokens: TokenCounter::for_models(configured_models(&config)),
            context: ContextState::load(&config.dir),
            responses: ResponsesState::build(&config),
            http,
            config,
        }))
    }

    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.config.timeouts.first_byte_seconds)
    }
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
