//! From a request to the upstream that serves it: target resolution (one provider, a
//! rotation, an autoselect), the context pipeline, and the first-event commit of streams.

use std::time::Duration;

use futures::StreamExt;

use crate::api::openai::ChatRequest;
use crate::config::{Config, ProviderKind};
use crate::context;
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
    #[error("{0}")]
    Unusable(String),
    /// Even with every droppable turn gone, the request is over the model's context_size.
    #[error("the request needs {tokens} prompt tokens after condensation, over the model's context_size of {limit}: shorten the last message")]
    ContextTooLarge { tokens: u64, limit: u64 },
    #[error(transparent)]
    Provider(#[from] ProviderError),
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

/// Serves `req` through `target`.
pub async fn dispatch(
    state: &AppState,
    target: Target,
    req: ChatRequest,
) -> Result<Served, RouteError> {
    match target {
        Target::Provider { provider, model } => serve_provider(state, &provider, &model, req).await,
        Target::Rotation(name) => Err(RouteError::UnknownRotation(name)),
        Target::Autoselect(name) => Err(RouteError::UnknownAutoselect(name)),
    }
}

/// One attempt at one provider: context pipeline, upstream call, first-event commit.
pub async fn serve_provider(
    state: &AppState,
    provider_id: &str,
    model: &str,
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
    let effective_context = context::prepare(state, &mut req, config, model, None).await?;
    let outcome = provider.chat(&req, model).await?;
    let outcome = match outcome {
        ChatOutcome::Stream(stream) => {
            ChatOutcome::Stream(commit_after_first_event(stream, state.first_byte_timeout()).await?)
        }
        complete => complete,
    };
    Ok(Served {
        outcome,
        provider: provider_id.to_string(),
        model: model.to_string(),
        effective_context,
        autoselected: None,
    })
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
    Ok(futures::stream::once(async move { Ok(first) })
        .chain(stream)
        .boxed())
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
