//! The router's side of context condensation: `context` asks for a model through the
//! `ModelCaller` given here, which picks the condensation target and routes one
//! non-streaming call. That call's own request is counted, never condensed.

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{dispatch, resolve_model, RouteError, Served, Target};
use crate::api::openai::ChatRequest;
use crate::context::model::{CondenseError, CondenseFor, ModelCaller};
use crate::state::AppState;

tokio::task_local! {
    /// Set while a condensation call runs, whatever path (provider, rotation) it takes
    /// through the router: its attempts get no `ModelCaller`, so they only count.
    static CONDENSING: ();
}

pub fn in_condensation_call() -> bool {
    CONDENSING.try_with(|_| ()).is_ok()
}

pub struct Caller<'a>(pub &'a AppState);

impl Caller<'_> {
    /// A model's own `condense_model`, else providers.json `condensation` (unless disabled),
    /// else the request's own target.
    pub fn target(&self, who: CondenseFor<'_>) -> Result<Target, RouteError> {
        let config = &self.0.config;
        if let Some(name) = who.own.filter(|s| !s.trim().is_empty()) {
            return resolve_model(config, name);
        }
        if let Some(c) = &config.condensation {
            if c.enabled != Some(false) {
                if let Some(r) = c.rotation_id.as_ref().filter(|s| !s.is_empty()) {
                    return Ok(Target::Rotation(r.clone()));
                }
                if let (Some(p), Some(m)) = (&c.provider_id, &c.model) {
                    if !p.is_empty() && !m.is_empty() {
                        return Ok(Target::Provider {
                            provider: p.clone(),
                            model: m.clone(),
                        });
                    }
                }
            }
        }
        Ok(Target::Provider {
            provider: who.provider_id.to_string(),
            model: who.model.to_string(),
        })
    }

    async fn call(
        &self,
        who: CondenseFor<'_>,
        mut req: ChatRequest,
    ) -> Result<String, CondenseError> {
        let state = self.0;
        let target = self.target(who).map_err(call_error)?;
        req.model = match &target {
            Target::Provider { provider, model } => format!("{provider}/{model}"),
            Target::Rotation(n) => format!("rotation/{n}"),
            Target::Autoselect(n) => format!("autoselect/{n}"),
        };
        let limit = state.first_byte_timeout();
        let served = tokio::time::timeout(limit, routed(state, target, req))
            .await
            .map_err(|_| CondenseError::Timeout(limit))?
            .map_err(call_error)?;
        served.outcome.into_text().ok_or_else(|| {
            CondenseError::Call("streamed answer to a non-streaming condensation call".into())
        })
    }
}

fn call_error(e: RouteError) -> CondenseError {
    CondenseError::Call(e.to_string())
}

impl ModelCaller for Caller<'_> {
    fn complete<'a>(
        &'a self,
        who: CondenseFor<'a>,
        req: ChatRequest,
    ) -> BoxFuture<'a, Result<String, CondenseError>> {
        self.call(who, req).boxed()
    }
}

/// dispatch → attempt → prepare → complete → dispatch is async recursion: the boxed future
/// (a named type) is what lets the compiler see it is Send.
fn routed(
    state: &AppState,
    target: Target,
    req: ChatRequest,
) -> BoxFuture<'_, Result<Served, RouteError>> {
    CONDENSING.scope((), dispatch(state, target, req)).boxed()
}
