//! Serde structs of the four configuration files, as the original aisbf writes them.
//! Every struct keeps unknown keys in `unknown` so they can be named once in the log.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::secret::Secret;

pub type Unknown = BTreeMap<String, Value>;

// ---------- aisbf.json ----------

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct AisbfFile {
    pub server: ServerSection,
    pub auth: AuthSection,
    pub limits: LimitsSection,
    pub timeouts: TimeoutsSection,
    pub error_tracking: ErrorTrackingSection,
    pub responses: ResponsesSection,
    /// `{"NAME": "TARGET"}`: client model names routed to a `/v1` model reference.
    pub model_aliases: BTreeMap<String, String>,
    pub state: StateSection,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `model_aliases`, split once at load into exact names and `prefix*` patterns (longest
/// first), so a lookup is one map probe and a short scan.
#[derive(Debug, Clone, Default)]
pub struct ModelAliases {
    exact: BTreeMap<String, String>,
    /// (prefix without the `*`, target), longest prefix first; `""` is the catch-all `*`.
    prefixes: Vec<(String, String)>,
}

impl ModelAliases {
    pub fn new(map: &BTreeMap<String, String>) -> ModelAliases {
        let mut a = ModelAliases::default();
        for (k, v) in map {
            match k.strip_suffix('*') {
                Some(prefix) => a.prefixes.push((prefix.to_string(), v.clone())),
                None => {
                    a.exact.insert(k.clone(), v.clone());
                }
            }
        }
        a.prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        a
    }

    /// The alias `name` matches: the exact key, else the longest matching prefix. Returns
    /// (key as written in aisbf.json, target).
    pub fn lookup(&self, name: &str) -> Option<(String, &str)> {
        if let Some(t) = self.exact.get(name) {
            return Some((name.to_string(), t));
        }
        self.prefixes
            .iter()
            .find(|(p, _)| name.starts_with(p.as_str()))
            .map(|(p, t)| (format!("{p}*"), t.as_str()))
    }

    /// Exact keys and their targets (patterns are not model names).
    pub fn exact(&self) -> impl Iterator<Item = (&str, &str)> {
        self.exact.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every (key as written, target).
    pub fn all(&self) -> impl Iterator<Item = (String, &str)> {
        self.exact().map(|(k, v)| (k.to_string(), v)).chain(
            self.prefixes
                .iter()
                .map(|(p, t)| (format!("{p}*"), t.as_str())),
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerSection {
    pub host: String,
    pub port: u16,
    /// Worker threads, each with its own single-threaded runtime (`server::workers`);
    /// 0: half the cores, at least one.
    pub workers: usize,
    #[serde(flatten)]
    pub unknown: Unknown,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 17765,
            workers: 0,
            unknown: Unknown::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct AuthSection {
    pub enabled: bool,
    #[serde(deserialize_with = "secrets")]
    pub tokens: Vec<Secret>,
}

fn secrets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    let raw: Vec<String> = Deserialize::deserialize(d)?;
    Ok(raw.into_iter().map(Secret::new).collect())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitsSection {
    pub max_body_bytes: usize,
    /// Open client connections at most; past it new ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024 * 1024,
            max_connections: 4096,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TimeoutsSection {
    pub connect_seconds: f64,
    pub first_byte_seconds: f64,
    pub idle_seconds: f64,
    /// Deadline for a client's whole request head (not per read: a trickling client is cut).
    pub header_seconds: f64,
    /// An idle keep-alive client connection is closed after this long.
    pub keepalive_seconds: f64,
}

impl Default for TimeoutsSection {
    fn default() -> Self {
        Self {
            connect_seconds: 10.0,
            first_byte_seconds: 120.0,
            idle_seconds: 120.0,
            header_seconds: 30.0,
            keepalive_seconds: 75.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ErrorTrackingSection {
    pub max_failures: u32,
    pub cooldown_seconds: f64,
}

impl Default for ErrorTrackingSection {
    fn default() -> Self {
        Self {
            max_failures: 3,
            cooldown_seconds: 300.0,
        }
    }
}

/// Where health, spacing and the autoselect cache live: this process only, or a Redis
/// shared by several instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    #[default]
    Memory,
    Redis,
}

impl StateBackend {
    pub fn name(self) -> &'static str {
        match self {
            StateBackend::Memory => "memory",
            StateBackend::Redis => "redis",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StateSection {
    pub backend: StateBackend,
    /// May carry a password (`redis://:pw@host`): a `Secret` so it never reaches a log.
    #[serde(deserialize_with = "optional_secret")]
    pub redis_url: Option<Secret>,
    pub key_prefix: String,
    #[serde(flatten)]
    pub unknown: Unknown,
}

impl Default for StateSection {
    fn default() -> Self {
        Self {
            backend: StateBackend::Memory,
            redis_url: None,
            key_prefix: "aisbf:".into(),
            unknown: Unknown::new(),
        }
    }
}

/// The Responses store (`POST /v1/responses` with `store` not false).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ResponsesSection {
    /// At most this many responses are kept (the oldest go first); 0 keeps none.
    pub store_max: usize,
    /// A response is forgotten this long after it finished.
    pub store_seconds: f64,
}

impl Default for ResponsesSection {
    fn default() -> Self {
        Self {
            store_max: 1000,
            store_seconds: 3600.0,
        }
    }
}

fn optional_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let raw: Option<String> = Deserialize::deserialize(d)?;
    Ok(raw.map(Secret::new))
}

// ---------- providers.json ----------

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ProvidersFile {
    pub providers: BTreeMap<String, ProviderConfig>,
    pub condensation: Option<CondensationSection>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    Google,
    Ollama,
    /// An original aisbf type we do not serve (codex, kiro, claude OAuth...).
    Unsupported(String),
}

impl ProviderKind {
    pub fn default_endpoint(&self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "https://api.openai.com/v1",
            ProviderKind::Anthropic => "https://api.anthropic.com",
            ProviderKind::Google => "https://generativelanguage.googleapis.com",
            ProviderKind::Ollama => "http://127.0.0.1:11434",
            ProviderKind::Unsupported(_) => "",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Google => "google",
            ProviderKind::Ollama => "ollama",
            ProviderKind::Unsupported(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for ProviderKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.to_ascii_lowercase().as_str() {
            // The original calls several OpenAI-compatible services by their own names.
            "openai" | "openai-compatible" | "openai_compatible" | "openrouter" | "groq"
            | "deepseek" | "mistral" | "together" | "xai" | "lmstudio" | "vllm" => {
                ProviderKind::OpenAi
            }
            "anthropic" => ProviderKind::Anthropic,
            "google" | "gemini" => ProviderKind::Google,
            "ollama" => ProviderKind::Ollama,
            _ => ProviderKind::Unsupported(s),
        })
    }
}

/// Where a provider's key comes from, after `${ENV}` expansion at load.
#[derive(Debug, Clone, Default)]
pub enum ApiKey {
    #[default]
    None,
    Value(Secret),
    /// `"${VAR}"` with VAR unset: the provider loads, requests to it get a 401 naming VAR.
    MissingEnv(String),
}

impl ApiKey {
    fn from_config(raw: Option<String>) -> Self {
        let Some(raw) = raw.filter(|s| !s.trim().is_empty()) else {
            return ApiKey::None;
        };
        let trimmed = raw.trim();
        if let Some(var) = trimmed.strip_prefix("${").and_then(|s| s.strip_suffix('}')) {
            return match std::env::var(var) {
                Ok(v) if !v.is_empty() => ApiKey::Value(Secret::new(v)),
                _ => ApiKey::MissingEnv(var.to_string()),
            };
        }
        ApiKey::Value(Secret::new(raw))
    }
}

fn api_key<'de, D: Deserializer<'de>>(d: D) -> Result<ApiKey, D::Error> {
    Ok(ApiKey::from_config(Option::<String>::deserialize(d)?))
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderConfig {
    /// Filled from the map key at load.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: ProviderKind,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default, deserialize_with = "api_key")]
    pub api_key: ApiKey,
    #[serde(default)]
    pub api_key_required: Option<bool>,
    /// Minimum seconds between two requests to this provider (0 = none), as the original.
    #[serde(default, deserialize_with = "null_as_default")]
    pub rate_limit: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub models: Vec<ModelConfig>,
    #[serde(default)]
    pub default_context_size: Option<u64>,
    #[serde(default)]
    pub default_condense_context: Option<f64>,
    #[serde(default)]
    pub default_condense_method: Option<CondenseMethods>,
    #[serde(default)]
    pub default_error_cooldown: Option<f64>,
    /// Default weight of this provider's entries in rotations.
    #[serde(default)]
    pub weight: Option<f64>,
    /// An `openai` provider that serves the Responses API itself: `/v1/responses` goes to
    /// `{endpoint}/responses` as sent (only `model` replaced).
    #[serde(default)]
    pub responses: bool,
    #[serde(flatten)]
    pub unknown: Unknown,
}

impl ProviderConfig {
    pub fn endpoint(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or_else(|| self.kind.default_endpoint())
            .trim_end_matches('/')
    }

    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CondenseMethod {
    Hierarchical,
    Conversational,
    Semantic,
    Algorithmic,
}

/// `condense_method` is a string or a list of strings, applied in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CondenseMethods {
    One(CondenseMethod),
    Many(Vec<CondenseMethod>),
}

impl CondenseMethods {
    pub fn to_vec(&self) -> Vec<CondenseMethod> {
        match self {
            CondenseMethods::One(m) => vec![*m],
            CondenseMethods::Many(v) => v.clone(),
        }
    }
}

/// A model entry, in providers.json and in rotations.json.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ModelConfig {
    pub name: String,
    #[serde(default, alias = "context_length")]
    pub context_size: Option<u64>,
    #[serde(default)]
    pub condense_context: Option<f64>,
    #[serde(default)]
    pub condense_method: Option<CondenseMethods>,
    /// provider/model or rotation used by model-based condensation methods.
    #[serde(default)]
    pub condense_model: Option<String>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub rate_limit: Option<f64>,
    #[serde(default)]
    pub error_cooldown: Option<f64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct CondensationSection {
    pub provider_id: Option<String>,
    pub model: Option<String>,
    pub rotation_id: Option<String>,
    pub enabled: Option<bool>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

// ---------- rotations.json ----------

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RotationsFile {
    pub rotations: BTreeMap<String, RotationConfig>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct RotationConfig {
    #[serde(default)]
    pub model_name: Option<String>,
    #[serde(default)]
    pub providers: Vec<RotationProvider>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RotationProvider {
    pub provider_id: String,
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

// ---------- autoselect.json ----------

#[derive(Debug, Clone, Deserialize, Default)]
pub struct AutoselectConfig {
    #[serde(default)]
    pub model_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A rotation or provider/model that reads the request and picks a target.
    #[serde(default)]
    pub selection_model: Option<String>,
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default)]
    pub available_models: Vec<AutoselectCandidate>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AutoselectCandidate {
    pub model_id: String,
    #[serde(default)]
    pub description: Option<String>,
}
