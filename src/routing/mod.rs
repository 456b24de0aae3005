//! From a request to the upstream that serves it: target resolution (one provider, a
//! rotation, an autoselect), the context pipeline, health tracking, and the first-event
//! commit of streams.

pub mod autoselect;
pub mod condense;
pub mod health;
pub mod native;
pub mod ratelimit;
pub mod rotation;
pub mod shared_state;
pub mod stream_end;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::api::openai::{ChatRequest, Usage};
use crate::config::{Config, ModelConfig, ProviderKind};
use crate::context::{self, model::ModelCaller};
use crate::metrics::StreamMeter;
use crate::providers::{ChatOutcome, ChatStream, Phase, ProviderError, StreamItem};
use crate::state::AppState;

/// What a request asked for, before any upstream is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Provider { provider: String, model: String },
    Rotation(String),
    Autoselect(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("unknown provider '{0}'")]
    UnknownProvider(String),
    #[error("provider '{0}' has type '{1}', which aisbf does not serve")]
    UnsupportedProvider(String, String),
    #[error("unknown rotation '{0}'")]
    UnknownRotation(String),
    #[error("unknown autoselect '{0}'")]
    UnknownAutoselect(String),
    #[error("unknown model '{0}': use provider/model, rotation/NAME or autoselect/NAME (see GET /v1/models)")]
    UnknownModel(String),
    /// A `model_aliases` entry whose target names nothing configured.
    #[error("model '{model}' is aliased by aisbf.json model_aliases.{key} to '{target}', which does not resolve (run `aisbf check-config`)")]
    UnresolvedAlias {
        model: String,
        key: String,
        target: String,
    },
    #[error("{0}")]
    Unusable(String),
    /// A direct request to a provider (or model) in cooldown.
    #[error("'{target}' is cooling down after provider-side failures; retry in {}s", ceil_secs(*retry_after))]
    Cooling {
        target: String,
        retry_after: Duration,
    },
    /// The target's `rate_limit` spacing has no slot within the first-byte timeout.
    #[error("'{target}' is spaced by its rate_limit; next slot in {}s", ceil_secs(*retry_after))]
    Spaced {
        target: String,
        retry_after: Duration,
    },
    /// Every candidate of a rotation failed on the provider's side.
    #[error("{what}: every candidate failed: {attempts}")]
    AllFailed { what: String, attempts: Attempts },
    /// Every candidate answered 429 (or was cooling after one).
    #[error("{what}: every candidate is rate limited: {attempts}")]
    AllRateLimited {
        what: String,
        attempts: Attempts,
        retry_after: Option<Duration>,
    },
    /// Every candidate is cooling down: nothing was tried.
    #[error("{what}: every candidate is cooling down after failures: {attempts}")]
    AllCooling {
        what: String,
        attempts: Attempts,
        retry_after: Duration,
    },
    /// Even with every droppable turn gone, the request is over the model's context_size.
    #[error("the request needs {tokens} prompt tokens after condensation, over the model's context_size of {limit}: shorten the last message")]
    ContextTooLarge { tokens: u64, limit: u64 },
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// Whole seconds, rounded up, as Retry-After says them.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// One candidate of a rotation and why it did not serve: `provider/model: reason`.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub target: String,
    pub reason: String,
}

/// The attempts of a failed rotation, in order; printed `a/m: why; b/m: why`.
#[derive(Debug, Clone, Default)]
pub struct Attempts(pub Vec<Attempt>);

impl std::fmt::Display for Attempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no candidates");
        }
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", a.target, a.reason)?;
        }
        Ok(())
    }
}

/// What served a request, and how.
pub struct Served {
    pub outcome: ChatOutcome,
    pub provider: String,
    pub model: String,
    /// Prompt tokens actually sent upstream.
    pub effective_context: u64,
    /// The autoselect choice, when an autoselect routed the request.
    pub autoselected: Option<String>,
}

/// `/api/{provider}/chat/completions`: the path names the provider (or `rotations`,
/// `autoselect`); a `model` prefixed with `{provider}/` has the prefix stripped.
pub fn resolve_path(config: &Config, provider: &str, model: &str) -> Result<Target, RouteError> {
    match provider {
        "rotations" | "rotation" => Ok(Target::Rotation(strip_any(
            model,
            &["rotations/", "rotation/"],
        ))),
        "autoselect" | "autoselections" => Ok(Target::Autoselect(strip_any(
            model,
            &["autoselect/", "autoselections/"],
        ))),
        _ => {
            if !config.providers.contains_key(provider) {
                return Err(RouteError::UnknownProvider(provider.to_string()));
            }
            let model = model
                .strip_prefix(provider)
                .and_then(|m| m.strip_prefix('/'))
                .unwrap_or(model);
            Ok(Target::Provider {
                provider: provider.to_string(),
                model: model.to_string(),
            })
        }
    }
}

fn strip_any(model: &str, prefixes: &[&str]) -> String {
    prefixes
        .iter()
        .find_map(|p| model.strip_prefix(p))
        .unwrap_or(model)
        .to_string()
}

/// The one `/v1` namespace: `provider/model`, `rotation/NAME`, `rotations/NAME`,
/// `autoselect/NAME`, or a bare rotation or autoselect name.
pub fn resolve_model(config: &Config, model: &str) -> Result<Target, RouteError> {
    if let Some((head, rest)) = model.split_once('/') {
        match head {
            "rotation" | "rotations" => return Ok(Target::Rotation(rest.to_string())),
            "autoselect" | "autoselections" => return Ok(Target::Autoselect(rest.to_string())),
            _ if config.providers.contains_key(head) && !rest.is_empty() => {
                return Ok(Target::Provider {
                    provider: head.to_string(),
                    model: rest.to_string(),
                })
            }
            _ => {}
        }
    }
    if config.rotations.contains_key(model) {
        return Ok(Target::Rotation(model.to_string()));
    }
    if config.autoselect.contains_key(model) {
        return Ok(Target::Autoselect(model.to_string()));
    }
    Err(RouteError::UnknownModel(model.to_string()))
}

/// The resolution every `/v1` ingress uses: `resolve_model`, and for a name that does not
/// resolve on its own, `model_aliases` (exact key, else the longest `prefix*`); the alias
/// target is resolved without aliases, so aliases never chain.
pub fn resolve_v1(config: &Config, model: &str) -> Result<Target, RouteError> {
    let unknown = match resolve_model(config, model) {
        Err(e @ RouteError::UnknownModel(_)) => e,
        resolved => return resolved,
    };
    let Some((key, target)) = config.model_aliases.lookup(model) else {
        return Err(unknown);
    };
    if !crate::config::v1_target_exists(config, target) {
        return Err(RouteError::UnresolvedAlias {
            model: model.to_string(),
            key,
            target: target.to_string(),
        });
    }
    resolve_model(config, target)
}

/// Serves `req` through `target`.
pub async fn dispatch(
    state: &AppState,
    target: Target,
    req: ChatRequest,
) -> Result<Served, RouteError> {
    state.metrics.resolved(&state.config, &target);
    match target {
        Target::Provider { provider, model } => serve_provider(state, &provider, &model, req).await,
        Target::Rotation(name) => rotation::serve(state, &name, req).await,
        Target::Autoselect(name) => autoselect::serve(state, &name, req).await,
    }
}

/// A direct request to one provider: refused while it cools down, spaced by its
/// `rate_limit` (waiting for its slot), then one attempt.
pub async fn serve_provider(
    state: &AppState,
    provider_id: &str,
    model: &str,
    req: ChatRequest,
) -> Result<Served, RouteError> {
    if !state.config.providers.contains_key(provider_id) {
        return Err(RouteError::UnknownProvider(provider_id.to_string()));
    }
    if let Some(c) = state.health.cooling(provider_id, model).await {
        return Err(RouteError::Cooling {
            target: format!("{provider_id}/{model}"),
            retry_after: c.remaining(),
        });
    }
    // Bounded like any wait for an upstream: a client is not kept past the first-byte
    // timeout for a slot that far away.
    let spaced = state
        .limits
        .wait_for_slot(provider_id, model, state.first_byte_timeout())
        .await;
    if let Err(next) = spaced {
        return Err(RouteError::Spaced {
            target: format!("{provider_id}/{model}"),
            retry_after: next.saturating_duration_since(std::time::Instant::now()),
        });
    }
    attempt(state, provider_id, model, None, req).await
}

/// One attempt at one provider: context pipeline, upstream call, first-event commit, and
/// the health record (here only, so a failure is counted once whoever called).
pub async fn attempt(
    state: &AppState,
    provider_id: &str,
    model: &str,
    // A rotation entry's own settings (context_size, condense_*) override the provider's.
    entry: Option<&ModelConfig>,
    mut req: ChatRequest,
) -> Result<Served, RouteError> {
    let config = state
        .config
        .providers
        .get(provider_id)
        .ok_or_else(|| RouteError::UnknownProvider(provider_id.to_string()))?;
    if let ProviderKind::Unsupported(kind) = &config.kind {
        return Err(RouteError::UnsupportedProvider(
            provider_id.to_string(),
            kind.clone(),
        ));
    }
    let provider = state
        .providers
        .get(provider_id)
        .ok_or_else(|| RouteError::UnknownProvider(provider_id.to_string()))?;
    let passthrough = native::route(state, provider_id, &req);
    // Only a model with a condensation policy can have its messages rewritten: only then is
    // a copy kept to tell whether it happened.
    let before = passthrough
        .filter(|_| context::policy(config, model, entry).is_some())
        .map(|_| req.messages.clone());
    let caller = condense::Caller(state);
    let caller = (!condense::in_condensation_call()).then_some(&caller as &dyn ModelCaller);
    let effective_context = context::prepare(state, &mut req, config, model, entry, caller)
        .await
        .map_err(|e| match e {
            context::ContextError::TooLarge { tokens, limit } => {
                RouteError::ContextTooLarge { tokens, limit }
            }
        })?;
    // The client's own body would undo a condensation: a condensed request takes the
    // translated path instead.
    let passthrough = passthrough.filter(|_| before.is_none_or(|m| m == req.messages));
    let started = Instant::now();
    let result = match passthrough {
        Some(p) => native::call(state, p, &req, model).await,
        None => {
            native::fit_max_tokens(&mut req, entry.or_else(|| config.model(model)));
            call(state, provider.as_ref(), &req, model).await
        }
    };
    let outcome = match result {
        Ok(ChatOutcome::Complete(mut r)) => {
            state.health.success(provider_id, model).await;
            if r.usage.is_none() {
                let counter = state.tokens.answer_counter(state.tokens.bpe(model).await);
                let completion = counter.count(answer_text(&r)).await;
                r.usage = Some(Usage::new(effective_context, completion));
            }
            ChatOutcome::Complete(r)
        }
        Ok(ChatOutcome::Verbatim(v)) => {
            state.health.success(provider_id, model).await;
            ChatOutcome::Verbatim(v)
        }
        Ok(ChatOutcome::Stream(s)) => {
            let counter = state.tokens.answer_counter(state.tokens.bpe(model).await);
            ChatOutcome::Stream(stream_end::on_end(
                s,
                end_of_stream(
                    counter,
                    effective_context,
                    state.health.clone(),
                    state.metrics.meter(&state.config, provider_id, model),
                    provider_id.to_string(),
                    model.to_string(),
                ),
            ))
        }
        Ok(ChatOutcome::Native(n)) => {
            ChatOutcome::Native(native::tracked(state, n, provider_id, model).await)
        }
        Err(e) => {
            state.health.failure(provider_id, model, &e).await;
            state
                .metrics
                .upstream_failure(&state.config, provider_id, model, &e);
            return Err(e.into());
        }
    };
    let (m, waited) = (&state.metrics, started.elapsed());
    m.served(
        &state.config,
        provider_id,
        model,
        &outcome,
        effective_context,
        waited,
    );
    Ok(Served {
        outcome,
        provider: provider_id.to_string(),
        model: model.to_string(),
        effective_context,
        autoselected: None,
    })
}

async fn call(
    state: &AppState,
    provider: &dyn crate::providers::Provider,
    req: &ChatRequest,
    model: &str,
) -> Result<ChatOutcome, ProviderError> {
    match provider.chat(req, model).await? {
        ChatOutcome::Stream(stream) => Ok(ChatOutcome::Stream(
            commit_after_first_event(stream, state.first_byte_timeout()).await?,
        )),
        complete => Ok(complete),
    }
}

/// What an answer's completion tokens are counted from when its upstream reports none: its
/// text, reasoning and tool arguments, as for a stream.
fn answer_text(r: &crate::api::openai::ChatResponse) -> String {
    let mut text = String::new();
    for c in &r.choices {
        let m = &c.message;
        text.push_str(m.content.as_deref().unwrap_or_default());
        text.push_str(m.reasoning_content.as_deref().unwrap_or_default());
        for call in m.tool_calls.iter().flatten() {
            text.push_str(&call.function.arguments);
        }
    }
    text
}

/// What a committed stream's last item goes through: a stream whose upstream reported no
/// usage gets it counted here, as a non-stream answer does (the prompt as sent, the answer's
/// text with the model's BPE table); then its health record and metrics: success (and its
/// usage) at its end, a failure on an error mid-way. A client that hangs up mid-stream
/// records nothing.
fn end_of_stream(
    counter: crate::context::tokens::AnswerCounter,
    effective_context: u64,
    health: Arc<health::Health>,
    meter: StreamMeter,
    provider: String,
    model: String,
) -> impl FnOnce(stream_end::Item) -> futures::future::BoxFuture<'static, stream_end::Item> + Send {
    move |item| {
        Box::pin(async move {
            let item = match item {
                Ok(StreamItem::End(mut end)) if end.usage.is_none() => {
                    let text = std::mem::take(&mut end.completion);
                    let completion = counter.count(text).await;
                    end.usage = Some(Usage::new(effective_context, completion));
                    Ok(StreamItem::End(end))
                }
                other => other,
            };
            match &item {
                Ok(StreamItem::End(end)) => {
                    health.success(&provider, &model).await;
                    meter.ended(end.usage.as_ref());
                }
                Err(e) => {
                    health.failure(&provider, &model, e).await;
                    meter.failed(e);
                }
                Ok(StreamItem::Chunk(_)) => {}
            }
            item
        })
    }
}

/// Waits for the stream's first item: an error or silence before it is still an ordinary
/// failure (the caller can fail over); after it, the stream is the client's.
pub async fn commit_after_first_event(
    mut stream: ChatStream,
    first_byte: Duration,
) -> Result<ChatStream, ProviderError> {
    let first: StreamItem = match tokio::time::timeout(first_byte, stream.next()).await {
        Err(_) => return Err(ProviderError::Timeout(Phase::FirstByte)),
        Ok(None) => {
            return Err(ProviderError::Protocol(
                "upstream stream ended before its first event".into(),
            ))
        }
        Ok(Some(Err(e))) => return Err(e),
        Ok(Some(Ok(item))) => item,
    };
    Ok(stream_end::prepend(Ok(first), stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        crate::config::ensure_defaults(dir.path()).unwrap();
        crate::config::load(dir.path()).unwrap()
    }

    #[test]
    fn v1_namespace_forms() {
        let c = config();
        let p = |p: &str, m: &str| Target::Provider {
            provider: p.into(),
            model: m.into(),
        };
        assert_eq!(
            resolve_model(&c, "openai/gpt-4o").unwrap(),
            p("openai", "gpt-4o")
        );
        assert_eq!(
            resolve_model(&c, "ollama/library/llama3:8b").unwrap(),
            p("ollama", "library/llama3:8b")
        );
        assert_eq!(
            resolve_model(&c, "rotation/general").unwrap(),
            Target::Rotation("general".into())
        );
        assert_eq!(
            resolve_model(&c, "rotations/general").unwrap(),
            Target::Rotation("general".into())
        );
        assert_eq!(
            resolve_model(&c, "general").unwrap(),
            Target::Rotation("general".into())
        );
        assert_eq!(
            resolve_model(&c, "autoselect/autoselect").unwrap(),
            Target::Autoselect("autoselect".into())
        );
        assert_eq!(
            resolve_model(&c, "autoselect").unwrap(),
            Target::Autoselect("autoselect".into())
        );
        assert!(matches!(
            resolve_model(&c, "nope/x"),
            Err(RouteError::UnknownModel(_))
        ));
        assert!(matches!(
            resolve_model(&c, "gpt-4o"),
            Err(RouteError::UnknownModel(_))
        ));
    }

    fn with_aliases(pairs: &[(&str, &str)]) -> Config {
        let mut c = config();
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c.model_aliases = crate::config::ModelAliases::new(&map);
        c
    }

    #[test]
    fn aliases_exact_then_longest_prefix_then_catch_all() {
        let c = with_aliases(&[
            ("claude-haiku-4-5", "openai/gpt-4o-mini"),
            ("claude-*", "rotation/general"),
            ("claude-opus-*", "openai/gpt-4o"),
            ("*", "autoselect/autoselect"),
            ("broken", "nowhere/x"),
            ("chained", "claude-haiku-4-5"),
        ]);
        let p = |p: &str, m: &str| Target::Provider {
            provider: p.into(),
            model: m.into(),
        };
        assert_eq!(
            resolve_v1(&c, "claude-haiku-4-5").unwrap(),
            p("openai", "gpt-4o-mini")
        );
        assert_eq!(
            resolve_v1(&c, "claude-opus-4-1").unwrap(),
            p("openai", "gpt-4o")
        );
        assert_eq!(
            resolve_v1(&c, "claude-sonnet-4-5").unwrap(),
            Target::Rotation("general".into())
        );
        assert_eq!(
            resolve_v1(&c, "gpt-5").unwrap(),
            Target::Autoselect("autoselect".into())
        );
        // A name that resolves on its own is never captured.
        assert_eq!(
            resolve_v1(&c, "openai/gpt-4o").unwrap(),
            p("openai", "gpt-4o")
        );
        assert!(matches!(
            resolve_v1(&c, "broken"),
            Err(RouteError::UnresolvedAlias { ref key, .. }) if key == "broken"
        ));
        // No chains: the target of `chained` is itself only an alias.
        assert!(matches!(
            resolve_v1(&c, "chained"),
            Err(RouteError::UnresolvedAlias { .. })
        ));
        // Without aliases, resolve_model (used for internal targets) is unchanged.
        assert!(matches!(
            resolve_model(&c, "claude-haiku-4-5"),
            Err(RouteError::UnknownModel(_))
        ));
    }

    #[test]
    fn provider_path_strips_only_its_own_prefix() {
        let c = config();
        let p = |p: &str, m: &str| Target::Provider {
            provider: p.into(),
            model: m.into(),
        };
        assert_eq!(
            resolve_path(&c, "openai", "openai/gpt-4o").unwrap(),
            p("openai", "gpt-4o")
        );
        assert_eq!(
            resolve_path(&c, "openai", "gpt-4o").unwrap(),
            p("openai", "gpt-4o")
        );
        assert_eq!(
            resolve_path(&c, "openai", "meta/llama-3").unwrap(),
            p("openai", "meta/llama-3")
        );
        assert!(matches!(
            resolve_path(&c, "nope", "m"),
            Err(RouteError::UnknownProvider(_))
        ));
        assert_eq!(
            resolve_path(&c, "rotations", "general").unwrap(),
            Target::Rotation("general".into())
        );
    }
}
