//! Context management (design.md §8): count what goes upstream, and condense it when it
//! passes the model's threshold, with the configured methods in order, then as a last resort
//! drop the oldest middle turns so the upstream never gets more than `context_size` tokens.

pub mod algorithmic;
pub mod conversational;
pub mod hierarchical;
pub mod model;
pub mod semantic;
pub mod tokens;
pub mod turns;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use crate::api::openai::{ChatRequest, Message};
use crate::config::{CondenseMethod, ModelConfig, ProviderConfig};
use crate::state::AppState;
use model::{Asker, CondenseError, CondenseFor, ModelCaller, Prompts};

/// Why a request cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// Even with every droppable turn gone, the request is over the model's context_size.
    #[error("the request needs {tokens} prompt tokens after condensation, over the model's context_size of {limit}")]
    TooLarge { tokens: u64, limit: u64 },
}

/// What the context pipeline keeps for the process: prompts and counters.
pub struct ContextState {
    pub prompts: Prompts,
    pub stats: Stats,
}

impl ContextState {
    pub fn load(config_dir: &Path) -> ContextState {
        ContextState {
            prompts: Prompts::load(config_dir),
            stats: Stats::default(),
        }
    }
}

/// Condensation decisions, counted.
#[derive(Default)]
pub struct Stats {
    /// Requests that reached their threshold.
    pub condensed: AtomicU64,
    runs: [AtomicU64; 4],
    failures: [AtomicU64; 4],
    /// Requests that needed the last resort, and the messages it dropped.
    pub last_resort: AtomicU64,
    pub dropped_messages: AtomicU64,
    /// Requests still over `context_size` with nothing left to drop (answered 400).
    pub rejected: AtomicU64,
    pub tokens_saved: AtomicU64,
}

fn slot(m: CondenseMethod) -> usize {
    match m {
        CondenseMethod::Hierarchical => 0,
        CondenseMethod::Conversational => 1,
        CondenseMethod::Semantic => 2,
        CondenseMethod::Algorithmic => 3,
    }
}

impl Stats {
    pub fn runs(&self, m: CondenseMethod) -> u64 {
        self.runs[slot(m)].load(Relaxed)
    }
    pub fn failures(&self, m: CondenseMethod) -> u64 {
        self.failures[slot(m)].load(Relaxed)
    }
}

/// What the configuration says about one request's model. `entry` (a rotation's model
/// entry) overrides the provider's model entry, which overrides the provider's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy<'a> {
    pub context_size: u64,
    pub threshold: u64,
    pub methods: Vec<CondenseMethod>,
    pub condense_model: Option<&'a str>,
}

pub fn policy<'a>(
    provider: &'a ProviderConfig,
    model: &str,
    entry: Option<&'a ModelConfig>,
) -> Option<Policy<'a>> {
    let layers = [entry, provider.model(model)];
    let context_size = layered(&layers, |m| m.context_size).or(provider.default_context_size)?;
    let percent = layered(&layers, |m| m.condense_context)
        .or(provider.default_condense_context)
        .unwrap_or(0.0);
    if percent <= 0.0 || context_size == 0 {
        return None;
    }
    let methods = layered(&layers, |m| m.condense_method.as_ref())
        .or(provider.default_condense_method.as_ref())
        .map(|m| m.to_vec())
        .unwrap_or_else(|| vec![CondenseMethod::Algorithmic]);
    let threshold = ((context_size as f64) * percent.min(100.0) / 100.0).ceil() as u64;
    Some(Policy {
        context_size,
        threshold: threshold.max(1),
        methods,
        condense_model: layered(&layers, |m| m.condense_model.as_deref()),
    })
}

/// The first layer that sets a field.
fn layered<'a, T>(
    layers: &[Option<&'a ModelConfig>],
    field: impl Fn(&'a ModelConfig) -> Option<T>,
) -> Option<T> {
    layers.iter().flatten().find_map(|m| field(m))
}

/// Prepares `req` for `provider`/`model` and returns its effective context: the prompt
/// tokens of the messages that will actually be sent. `entry` is the rotation's model entry
/// when a rotation chose this model. `caller` reaches the condensation model; `None` (the
/// condensation call's own request) only counts. A request under its threshold costs
/// exactly one count.
pub async fn prepare(
    state: &AppState,
    req: &mut ChatRequest,
    provider: &ProviderConfig,
    model: &str,
    entry: Option<&ModelConfig>,
    caller: Option<&dyn ModelCaller>,
) -> Result<u64, ContextError> {
    let (messages, tokens) = state
        .tokens
        .count_owned(model, std::mem::take(&mut req.messages))
        .await;
    req.messages = messages;
    let Some(caller) = caller else {
        return Ok(tokens);
    };
    let Some(policy) = policy(provider, model, entry) else {
        return Ok(tokens);
    };
    if tokens < policy.threshold {
        return Ok(tokens);
    }
    condense(state, caller, req, provider, model, &policy, tokens).await
}

async fn condense(
    state: &AppState,
    caller: &dyn ModelCaller,
    req: &mut ChatRequest,
    provider: &ProviderConfig,
    model: &str,
    policy: &Policy<'_>,
    sent: u64,
) -> Result<u64, ContextError> {
    let stats = &state.context.stats;
    let prompts = &state.context.prompts;
    stats.condensed.fetch_add(1, Relaxed);
    let start = Instant::now();
    let asker = Asker {
        caller,
        who: CondenseFor {
            provider_id: &provider.id,
            model,
            own: policy.condense_model,
        },
    };
    let mut tokens = sent;
    for &method in &policy.methods {
        let t0 = Instant::now();
        stats.runs[slot(method)].fetch_add(1, Relaxed);
        let result: Result<(Vec<Message>, u64), CondenseError> = match method {
            CondenseMethod::Algorithmic => Ok(run_algorithmic(state, req, model).await),
            CondenseMethod::Conversational => {
                let m = conversational::condense(&asker, &prompts.conversational, &req.messages);
                counted(state, model, m.await).await
            }
            CondenseMethod::Semantic => {
                let m = semantic::condense(&asker, &prompts.semantic, &req.messages);
                counted(state, model, m.await).await
            }
            CondenseMethod::Hierarchical => {
                let m = hierarchical::condense(&asker, &prompts.hierarchical, &req.messages);
                counted(state, model, m.await).await
            }
        };
        let ms = t0.elapsed().as_millis() as u64;
        state.metrics.condensation(method, &result, tokens);
        match result {
            Ok((messages, after)) if after < tokens => {
                tracing::info!(
                    ?method,
                    before = tokens,
                    after,
                    ms,
                    model,
                    "context condensed"
                );
                req.messages = messages;
                tokens = after;
            }
            Ok((_, after)) => {
                tracing::info!(
                    ?method,
                    before = tokens,
                    after,
                    ms,
                    model,
                    "condensation did not shrink the context, kept the original"
                );
            }
            Err(CondenseError::NothingToCondense) => {
                tracing::debug!(?method, "nothing old enough to condense");
            }
            Err(e) => {
                stats.failures[slot(method)].fetch_add(1, Relaxed);
                tracing::warn!(
                    ?method,
                    ms,
                    model,
                    "condensation failed, trying the next method: {e}"
                );
            }
        }
        if tokens < policy.threshold {
            break;
        }
    }
    if tokens > policy.context_size {
        tokens = last_resort(state, req, model, policy.context_size, tokens).await?;
    }
    stats
        .tokens_saved
        .fetch_add(sent.saturating_sub(tokens), Relaxed);
    tracing::info!(
        before = sent,
        after = tokens,
        threshold = policy.threshold,
        context_size = policy.context_size,
        ms = start.elapsed().as_millis() as u64,
        model,
        "context management done"
    );
    Ok(tokens)
}

/// `algorithmic` and the count of its result, off the runtime when the prompt is big.
async fn run_algorithmic(
    state: &AppState,
    req: &mut ChatRequest,
    model: &str,
) -> (Vec<Message>, u64) {
    let original = std::mem::take(&mut req.messages);
    let bpe = state.tokens.bpe(model).await;
    let (original, out, n) = state
        .tokens
        .offload(tokens::text_bytes(&original), move || {
            let out = algorithmic::condense(&original);
            let n = bpe.count_messages(&out);
            (original, out, n)
        })
        .await;
    req.messages = original;
    (out, n)
}

async fn counted(
    state: &AppState,
    model: &str,
    result: Result<Vec<Message>, CondenseError>,
) -> Result<(Vec<Message>, u64), CondenseError> {
    let messages = result?;
    Ok(state.tokens.count_owned(model, messages).await)
}

/// Drops the oldest middle turns until the request fits `limit` (warn log); a request
/// whose protected messages alone exceed it is refused rather than sent.
async fn last_resort(
    state: &AppState,
    req: &mut ChatRequest,
    model: &str,
    limit: u64,
    before: u64,
) -> Result<u64, ContextError> {
    let stats = &state.context.stats;
    let messages = std::mem::take(&mut req.messages);
    let bpe = state.tokens.bpe(model).await;
    let (messages, after, dropped) = state
        .tokens
        .offload(tokens::text_bytes(&messages), move || {
            turns::drop_oldest(bpe, messages, limit)
        })
        .await;
    req.messages = messages;
    stats.last_resort.fetch_add(1, Relaxed);
    stats.dropped_messages.fetch_add(dropped as u64, Relaxed);
    tracing::warn!(
        dropped,
        before,
        after,
        context_size = limit,
        model,
        "condensation was not enough: dropped the oldest turns"
    );
    if after > limit {
        stats.rejected.fetch_add(1, Relaxed);
        return Err(ContextError::TooLarge {
            tokens: after,
            limit,
        });
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CondenseMethods;

    fn provider(models: Vec<ModelConfig>) -> ProviderConfig {
        serde_json::from_value(serde_json::json!({"type": "openai"}))
            .map(|mut p: ProviderConfig| {
                p.models = models;
                p
            })
            .unwrap()
    }

    fn model(name: &str) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn policy_layers_entry_model_and_provider_defaults() {
        let mut p = provider(vec![ModelConfig {
            context_size: Some(1000),
            condense_context: Some(80.0),
            condense_method: Some(CondenseMethods::Many(vec![
                CondenseMethod::Semantic,
                CondenseMethod::Algorithmic,
            ])),
            condense_model: Some("cm/small".into()),
            ..model("m")
        }]);
        let got = policy(&p, "m", None).unwrap();
        assert_eq!(got.context_size, 1000);
        assert_eq!(got.threshold, 800);
        assert_eq!(
            got.methods,
            vec![CondenseMethod::Semantic, CondenseMethod::Algorithmic]
        );
        assert_eq!(got.condense_model, Some("cm/small"));

        let entry = ModelConfig {
            context_size: Some(500),
            condense_method: Some(CondenseMethods::One(CondenseMethod::Conversational)),
            ..model("m")
        };
        let got = policy(&p, "m", Some(&entry)).unwrap();
        assert_eq!((got.context_size, got.threshold), (500, 400));
        assert_eq!(got.methods, vec![CondenseMethod::Conversational]);

        // Unknown model: the provider's defaults, algorithmic when no method is named.
        assert_eq!(policy(&p, "other", None), None);
        p.default_context_size = Some(2000);
        assert_eq!(policy(&p, "other", None), None, "no percent: off");
        p.default_condense_context = Some(50.0);
        let got = policy(&p, "other", None).unwrap();
        assert_eq!((got.context_size, got.threshold), (2000, 1000));
        assert_eq!(got.methods, vec![CondenseMethod::Algorithmic]);
        // 0 = off, whatever the provider's default.
        let off = ModelConfig {
            condense_context: Some(0.0),
            ..model("m")
        };
        assert_eq!(policy(&p, "m", Some(&off)), None);
    }
}
