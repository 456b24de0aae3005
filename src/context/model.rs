//! The condensation model of the model-based methods (design.md §9): which model is asked,
//! the prompts it gets, and the one non-streaming, temperature-0 call through the routing
//! layer. That call never condenses its own context (see `in_condensation_call`).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use serde_json::json;

use super::turns::is_system;
use crate::api::openai::{ChatRequest, Content, Extra, Message};
use crate::providers::{ChatOutcome, ProviderError};
use crate::routing::{self, RouteError, Served, Target};
use crate::state::AppState;

tokio::task_local! {
    /// Set while a condensation call runs: its own request is counted, never condensed,
    /// whatever path (provider, rotation) it takes through the router.
    static CONDENSING: ();
}

pub fn in_condensation_call() -> bool {
    CONDENSING.try_with(|_| ()).is_ok()
}

#[derive(Debug, thiserror::Error)]
pub enum CondenseError {
    #[error("condensation model: {0}")]
    Route(#[from] RouteError),
    #[error("condensation model timed out after {0:?}")]
    Timeout(Duration),
    #[error("condensation model gave an empty answer")]
    Empty,
    #[error("nothing old enough to condense")]
    NothingToCondense,
}

/// The prompts of the model-based methods: ours, shipped in config/, each overridable by a
/// file of the same name in the configuration directory (read once at startup).
pub struct Prompts {
    pub conversational: String,
    pub semantic: String,
    pub hierarchical: String,
}

pub const PROMPT_FILES: [(&str, &str); 3] = [
    (
        "condense_conversational.md",
        include_str!("../../config/condense_conversational.md"),
    ),
    (
        "condense_semantic.md",
        include_str!("../../config/condense_semantic.md"),
    ),
    (
        "condense_hierarchical.md",
        include_str!("../../config/condense_hierarchical.md"),
    ),
];

impl Prompts {
    pub fn load(dir: &Path) -> Prompts {
        let read = |(name, shipped): (&str, &str)| -> String {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(s) if !s.trim().is_empty() => s,
                _ => shipped.to_string(),
            }
        };
        let [c, s, h] = PROMPT_FILES;
        Prompts {
            conversational: read(c),
            semantic: read(s),
            hierarchical: read(h),
        }
    }
}

/// Who answers condensation requests for one request's target.
pub struct Asker<'a> {
    pub state: &'a AppState,
    pub provider_id: &'a str,
    pub model: &'a str,
    /// The model's own `condense_model`, when it has one.
    pub own: Option<&'a str>,
}

impl Asker<'_> {
    /// A model's own `condense_model`, else providers.json `condensation` (unless disabled),
    /// else the request's own target.
    pub fn target(&self) -> Result<Target, RouteError> {
        if let Some(name) = self.own.filter(|s| !s.trim().is_empty()) {
            return routing::resolve_model(&self.state.config, name);
        }
        if let Some(c) = &self.state.config.condensation {
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
            provider: self.provider_id.to_string(),
            model: self.model.to_string(),
        })
    }

    /// Asks the condensation model, non-streaming at temperature 0; an empty answer is a
    /// failure like an error or a timeout.
    pub async fn ask(&self, prompt: &str, user: String) -> Result<String, CondenseError> {
        let target = self.target()?;
        let model = match &target {
            Target::Provider { provider, model } => format!("{provider}/{model}"),
            Target::Rotation(n) => format!("rotation/{n}"),
            Target::Autoselect(n) => format!("autoselect/{n}"),
        };
        let mut extra = Extra::new();
        extra.insert("temperature".into(), json!(0));
        let req = ChatRequest {
            model,
            messages: vec![Message::new("system", prompt), Message::new("user", user)],
            stream: None,
            extra,
            anthropic_beta: None,
            native: None,
        };
        let call = condensation_call(self.state, target, req);
        let limit = self.state.first_byte_timeout();
        let served = tokio::time::timeout(limit, call)
            .await
            .map_err(|_| CondenseError::Timeout(limit))??;
        let text = match served.outcome {
            ChatOutcome::Complete(r) => r
                .choices
                .into_iter()
                .next()
                .and_then(|c| c.message.content)
                .unwrap_or_default(),
            ChatOutcome::Stream(_) | ChatOutcome::Native(_) => {
                return Err(RouteError::Provider(ProviderError::Protocol(
                    "streamed answer to a non-streaming condensation call".into(),
                ))
                .into())
            }
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(CondenseError::Empty);
        }
        Ok(text.to_string())
    }
}

type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<Served, RouteError>> + Send + 'a>>;

/// dispatch → serve_provider → prepare → ask is a cycle of async fns: boxing it in a plain
/// fn with a named type lets the compiler see the future is Send without looking through it.
fn condensation_call(state: &AppState, target: Target, req: ChatRequest) -> CallFuture<'_> {
    Box::pin(CONDENSING.scope((), routing::dispatch(state, target, req)))
}

/// Messages as plain text for the condensation model, inside `<aisbf_conversation>`.
pub fn transcript<'m>(messages: impl Iterator<Item = &'m Message>) -> String {
    let mut out = String::from("<aisbf_conversation>\n");
    for m in messages {
        let who = match &m.name {
            Some(n) => format!("{} ({n})", m.role),
            None => m.role.clone(),
        };
        if let Some(id) = &m.tool_call_id {
            out.push_str(&format!("[tool result {id}]: "));
        } else {
            out.push_str(&format!("[{who}]: "));
        }
        out.push_str(&m.text());
        if let Some(Content::Parts(parts)) = &m.content {
            for _ in parts.iter().filter(|p| p.image_url.is_some()) {
                out.push_str(" [image]");
            }
        }
        for c in m.tool_calls.iter().flatten() {
            out.push_str(&format!(
                "\n[{who} called {}({}) id={}]",
                c.function.name, c.function.arguments, c.id
            ));
        }
        out.push('\n');
    }
    out.push_str("</aisbf_conversation>");
    out
}

/// The one system message that stands in for condensed history.
pub fn note(text: String) -> Message {
    Message::new("system", text)
}

/// The non-system messages at `indexes`.
pub fn older<'m>(
    messages: &'m [Message],
    indexes: &'m [usize],
) -> impl Iterator<Item = &'m Message> {
    indexes
        .iter()
        .map(|&i| &messages[i])
        .filter(|m| !is_system(m))
}
