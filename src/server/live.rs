//! The state and router the server answers with now, swapped whole by a reload (`arc-swap`):
//! each request loads the current pair once, so a request (and its stream) finishes on the
//! state it began with while new requests see the new one. Handlers keep taking
//! `State<Arc<AppState>>`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;

use crate::config::Config;
use crate::startup::{check_host_safety, log_config_notes};
use crate::state::AppState;

/// Reads and validates the configuration again (the same steps as at start-up).
pub type Loader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

pub struct Current {
    pub state: Arc<AppState>,
    pub router: Router,
}

pub struct Live {
    current: ArcSwap<Current>,
    loader: Loader,
}

impl Live {
    pub fn new(state: Arc<AppState>, loader: Loader) -> Arc<Live> {
        let router = super::router(state.clone());
        Arc::new(Live {
            current: ArcSwap::from_pointee(Current { state, router }),
            loader,
        })
    }

    pub fn current(&self) -> Arc<Current> {
        self.current.load_full()
    }

    pub fn state(&self) -> Arc<AppState> {
        self.current.load().state.clone()
    }

    /// Re-reads the configuration and swaps in a state built from it, logging the request
    /// and its outcome. Blocking (files, token tables): run it off the async workers.
    pub fn reload(&self, why: &str) -> Result<(), String> {
        tracing::info!("reloading the configuration ({why})");
        match self.swap() {
            Ok(()) => {
                let c = &self.current.load().state.config;
                tracing::info!(
                    providers = c.providers.len(),
                    rotations = c.rotations.len(),
                    autoselect = c.autoselect.len(),
                    "configuration reloaded"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!("reload refused, the running configuration stays: {e}");
                Err(e)
            }
        }
    }

    fn swap(&self) -> Result<(), String> {
        let old = self.current.load_full();
        let mut config = (self.loader)().map_err(|e| format!("configuration error: {e}"))?;
        let running = &old.state.config;
        if config.server.host != running.server.host || config.server.port != running.server.port {
            tracing::warn!(
                "aisbf.json: server.host/port changed to {}:{}: that needs a restart; still listening on {}:{}",
                config.server.host,
                config.server.port,
                running.server.host,
                running.server.port
            );
        }
        if config.server.workers != running.server.workers {
            tracing::warn!(
                "aisbf.json: server.workers changed to {}: that needs a restart; still {}",
                config.server.workers,
                running.server.workers
            );
        }
        if config.limits.max_connections != running.limits.max_connections {
            tracing::warn!(
                "aisbf.json: limits.max_connections changed to {}: that needs a restart; still {}",
                config.limits.max_connections,
                running.limits.max_connections
            );
        }
        // The listener does not move: the new state describes the one that is running.
        config.server = running.server.clone();
        config.limits.max_connections = running.limits.max_connections;
        check_host_safety(&config.server.host, config.auth.enabled)?;
        log_config_notes(&config);
        let state = AppState::rebuild(config, &old.state);
        let router = super::router(state.clone());
        self.current.store(Arc::new(Current { state, router }));
        Ok(())
    }
}
