//! Providers: the trait every upstream implements, its error type, and the registry.
//! One file of pure translation per provider on the shared kernel (`kernel`: streams,
//! `convert`: conversions, `http`: transport); a new provider is one file plus one line in
//! `make`.

pub mod anthropic;
pub mod client;
pub mod completion;
pub mod completion_scan;
pub mod convert;
pub mod gemini;
pub mod http;
pub mod json_scan;
pub mod json_walk;
pub mod kernel;
pub mod ollama;
pub mod openai;
pub mod passthrough;
pub mod sse;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::api::openai::{ChatRequest, ChatResponse, ModelInfo, Usage};
use crate::config::{Config, ProviderConfig, ProviderKind};

#[async_trait]
pub trait Provider: Send + Sync {
    /// Sends `req` to the upstream as `model`. A stream is returned as soon as the upstream
    /// answered with a success status; the caller peeks its first item before committing.
    async fn chat(&self, req: &ChatRequest, model: &str) -> Result<ChatOutcome, ProviderError>;
    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError>;
}

pub type ChatStream = BoxStream<'static, Result<StreamItem, ProviderError>>;

pub enum ChatOutcome {
    Complete(ChatResponse),
    /// A complete OpenAI-format answer kept as the upstream's bytes (see `completion`):
    /// only for Chat Completions clients, who get it byte for byte.
    Verbatim(completion::Verbatim),
    Stream(ChatStream),
    /// Served by native passthrough (`routing::attempt`): the client's own format, never
    /// produced by `Provider::chat`.
    Native(passthrough::NativeOutcome),
}

impl ChatOutcome {
    /// The first choice's text of a complete answer (empty when it has none); `None` for a
    /// stream, which an internal non-streaming call (selector, condensation) never expects.
    pub fn into_text(self) -> Option<String> {
        match self {
            ChatOutcome::Complete(r) => Some(
                r.choices
                    .into_iter()
                    .next()
                    .and_then(|c| c.message.content)
                    .unwrap_or_default(),
            ),
            ChatOutcome::Verbatim(v) => v
                .parse()
                .ok()
                .map(|r| ChatOutcome::Complete(r).into_text())?,
            ChatOutcome::Stream(_) | ChatOutcome::Native(_) => None,
        }
    }

    /// A verbatim answer as a typed one, for callers that translate it; anything else as
    /// it is.
    pub fn typed(self) -> Result<ChatOutcome, ProviderError> {
        match self {
            ChatOutcome::Verbatim(v) => v.parse().map(ChatOutcome::Complete),
            other => Ok(other),
        }
    }
}

/// One item of a translated stream.
#[derive(Debug)]
pub enum StreamItem {
    /// The JSON of one `chat.completion.chunk`, forwarded as one `data:` event.
    Chunk(Bytes),
    /// The end of the answer: what the final usage chunk is built from.
    End(StreamEnd),
}

#[derive(Debug, Default)]
pub struct StreamEnd {
    pub id: String,
    pub model: String,
    pub created: i64,
    /// The upstream's own count, when it sent one.
    pub usage: Option<Usage>,
    /// The answer's text (content, reasoning, tool arguments), for the gateway to count
    /// when the upstream sent no usage. Complete only then: a translator may stop
    /// collecting it once the upstream reported usage (the OpenAI one does).
    pub completion: String,
}

/// When in the exchange a timeout hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    FirstByte,
    Idle,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connecting",
            Phase::FirstByte => "waiting for the first byte",
            Phase::Idle => "waiting for the next stream event",
        })
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("upstream unreachable: {0}")]
    Connect(String),
    #[error("upstream timed out {0}")]
    Timeout(Phase),
    /// An error status from the upstream, with its own message.
    #[error("upstream returned {status}: {message}")]
    Upstream {
        status: u16,
        message: String,
        kind: Option<String>,
        code: Option<String>,
    },
    #[error("upstream rate limited: {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// Bytes that do not follow the provider's protocol.
    #[error("malformed upstream response: {0}")]
    Protocol(String),
    #[error("no API key: set the environment variable {var} (providers.json: providers.{provider}.api_key)")]
    MissingKey { provider: String, var: String },
}

impl ProviderError {
    /// The provider's fault: counts toward its cooldown and triggers failover. The client's
    /// fault (4xx other than 408/429) is returned as is.
    pub fn is_provider_fault(&self) -> bool {
        match self {
            ProviderError::Connect(_)
            | ProviderError::Timeout(_)
            | ProviderError::RateLimited { .. }
            | ProviderError::Protocol(_) => true,
            ProviderError::Upstream { status, .. } => *status >= 500 || *status == 408,
            ProviderError::MissingKey { .. } => false,
        }
    }

    /// A failure another candidate may not share: a rotation tries the next entry. Missing
    /// keys are configuration, not health: failed over, never counted.
    pub fn should_failover(&self) -> bool {
        self.is_provider_fault() || matches!(self, ProviderError::MissingKey { .. })
    }
}

/// Knobs every provider shares, taken from aisbf.json once.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub first_byte: Duration,
    pub idle: Duration,
}

/// Provider id → implementation, built once at startup.
pub struct Registry {
    providers: HashMap<String, Arc<dyn Provider>>,
    /// The native endpoint of each provider that speaks a client format as is.
    native: HashMap<String, passthrough::Passthrough>,
}

impl Registry {
    pub fn build(config: &Config, client: &client::HttpClient) -> Registry {
        let timeouts = Timeouts {
            first_byte: Duration::from_secs_f64(config.timeouts.first_byte_seconds),
            idle: Duration::from_secs_f64(config.timeouts.idle_seconds),
        };
        let shared = Shared::default();
        let mut providers: HashMap<String, Arc<dyn Provider>> = HashMap::new();
        let mut native = HashMap::new();
        for (id, p) in &config.providers {
            if let Some(provider) = make(p, client, &timeouts, &shared) {
                providers.insert(id.clone(), provider);
            }
            if let Some(format) = passthrough::speaks(p) {
                let base = http::Upstream::new(p, client.clone(), timeouts.clone());
                native.insert(id.clone(), passthrough::Passthrough::new(base, format));
            }
        }
        Registry { providers, native }
    }

    /// `id`'s native endpoint for `format`, when it speaks that format.
    pub fn native(
        &self,
        id: &str,
        format: crate::api::native::NativeFormat,
    ) -> Option<&passthrough::Passthrough> {
        self.native.get(id).filter(|p| p.format() == format)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(id)
    }
}

/// State the providers of one kind share across their instances.
#[derive(Default)]
struct Shared {
    gemini_signatures: Arc<gemini::Signatures>,
}

fn make(
    p: &ProviderConfig,
    client: &client::HttpClient,
    timeouts: &Timeouts,
    shared: &Shared,
) -> Option<Arc<dyn Provider>> {
    let base = http::Upstream::new(p, client.clone(), timeouts.clone());
    match &p.kind {
        ProviderKind::OpenAi => Some(Arc::new(openai::OpenAi::new(base))),
        ProviderKind::Anthropic => Some(Arc::new(anthropic::Anthropic::new(base))),
        ProviderKind::Google => Some(Arc::new(gemini::Gemini::new(
            base,
            shared.gemini_signatures.clone(),
        ))),
        ProviderKind::Ollama => Some(Arc::new(ollama::Ollama::new(base))),
        ProviderKind::Unsupported(_) => None,
    }
}
