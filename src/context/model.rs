//! The condensation model of the model-based methods (design.md §9): the prompts it gets,
//! and the one non-streaming, temperature-0 call, made through a `ModelCaller` the router
//! passes in (context never imports routing).

use std::path::Path;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;

use super::turns::is_system;
use crate::api::openai::{ChatRequest, Content, Extra, Message};

/// Whose request is being condensed: the caller picks the condensation model from it (the
/// model's own `condense_model`, else the configured default, else the model itself).
#[derive(Debug, Clone, Copy)]
pub struct CondenseFor<'a> {
    pub provider_id: &'a str,
    pub model: &'a str,
    /// The model's own `condense_model`, when it has one.
    pub own: Option<&'a str>,
}

/// How the context pipeline reaches a model. The router implements it; its answer is the
/// text of one non-streaming completion, or why there is none.
pub trait ModelCaller: Send + Sync {
    fn complete<'a>(
        &'a self,
        who: CondenseFor<'a>,
        req: ChatRequest,
    ) -> BoxFuture<'a, Result<String, CondenseError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum CondenseError {
    /// The call failed (routing, upstream, or a streamed answer), as the router says it.
    #[error("condensation model: {0}")]
    Call(String),
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
    pub caller: &'a dyn ModelCaller,
    pub who: CondenseFor<'a>,
}

impl Asker<'_> {
    /// Asks the condensation model, non-streaming at temperature 0; an empty answer is a
    /// failure like an error or a timeout.
    pub async fn ask(&self, prompt: &str, user: String) -> Result<String, CondenseError> {
        let mut extra = Extra::new();
        extra.insert("temperature".into(), json!(0));
        let req = ChatRequest {
            // The caller names the model it routes to.
            model: String::new(),
            messages: vec![Message::new("system", prompt), Message::new("user", user)],
            stream: None,
            extra,
            anthropic_beta: None,
            native: None,
        };
        let text = self.caller.complete(self.who, req).await?;
        let text = text.trim();
        if text.is_empty() {
            return Err(CondenseError::Empty);
        }
        Ok(text.to_string())
    }
}

/// The older turns of `messages` (all but the last `keep_units`) and the condensation
/// model's summary of them: the first step of `conversational` and `hierarchical`.
pub async fn summarize_older(
    asker: &Asker<'_>,
    prompt: &str,
    messages: &[Message],
    keep_units: usize,
) -> Result<(super::turns::Split, String), CondenseError> {
    let s = super::turns::split(messages, keep_units);
    if s.older.is_empty() {
        return Err(CondenseError::NothingToCondense);
    }
    let summary = asker
        .ask(prompt, transcript(older(messages, &s.older)))
        .await?;
    Ok((s, summary))
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
