//! Autoselect: a selector model reads the recent conversation and the list of targets and
//! answers `<aisbf_model_autoselection>ID</aisbf_model_autoselection>`; the chosen target (a
//! rotation or `provider/model`) then serves the client's request. A missing, unknown or late
//! answer routes to the configured `fallback`.

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::rotation::check_usable;
use super::{resolve_model, rotation, serve_provider, RouteError, Served, Target};
use crate::api::openai::{ChatRequest, Extra, Message};
use crate::config::{AutoselectConfig, Config};
use crate::providers::ChatOutcome;
use crate::state::AppState;

/// The shipped selector system prompt; `{config dir}/autoselect.md` replaces it.
pub const DEFAULT_PROMPT: &str = include_str!("../../config/autoselect.md");

const OPEN: &str = "<aisbf_model_autoselection>";
const CLOSE: &str = "</aisbf_model_autoselection>";
/// How many of the latest messages the selector sees, and how much of each.
const RECENT_MESSAGES: usize = 6;
const MESSAGE_CHARS: usize = 1000;
/// The answer is one short tag.
const SELECTOR_MAX_TOKENS: u32 = 32;
/// Identical requests within this time reuse the previous selection.
const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_CAP: usize = 1024;

type Choice = Arc<OnceCell<Arc<str>>>;

struct Cached {
    at: Instant,
    choice: Choice,
}

/// The selector prompt and the selection cache, built once.
pub struct Selector {
    system_prompt: String,
    cache: parking_lot::Mutex<HashMap<u64, Cached>>,
}

impl Selector {
    pub fn new(config: &Config) -> Selector {
        let path = config.dir.join("autoselect.md");
        // Read once at startup, never on the request path.
        let system_prompt = match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => {
                tracing::info!(
                    "autoselect: using the selector prompt in {}",
                    path.display()
                );
                s
            }
            _ => DEFAULT_PROMPT.to_string(),
        };
        Selector {
            system_prompt,
            cache: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// The shared selection of `key`: a fresh or still-running one is reused (single-flight),
    /// otherwise a new empty one replaces it. Full: expired entries go, then the oldest.
    fn choice(&self, key: u64) -> Choice {
        let mut cache = self.cache.lock();
        if let Some(c) = cache.get(&key) {
            if !c.choice.initialized() || c.at.elapsed() < CACHE_TTL {
                return c.choice.clone();
            }
        }
        if cache.len() >= CACHE_CAP && !cache.contains_key(&key) {
            cache.retain(|_, c| !c.choice.initialized() || c.at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_CAP {
                if let Some(oldest) = cache.iter().min_by_key(|(_, c)| c.at).map(|(k, _)| *k) {
                    cache.remove(&oldest);
                }
            }
        }
        let choice = Choice::default();
        cache.insert(
            key,
            Cached {
                at: Instant::now(),
                choice: choice.clone(),
            },
        );
        choice
    }

    pub fn cached_len(&self) -> usize {
        self.cache.lock().len()
    }
}

/// One message as the selector sees it: its role and its text, trimmed and shortened.
fn brief(m: &Message) -> String {
    let mut text = m.text();
    if text.trim().is_empty() {
        if let Some(calls) = &m.tool_calls {
            let names: Vec<&str> = calls.iter().map(|c| c.function.name.as_str()).collect();
            text = format!("[tool calls: {}]", names.join(", "));
        }
    }
    let text = text.trim();
    let mut out: String = text.chars().take(MESSAGE_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    format!("{}: {}", m.role, out)
}

/// The selector's user message, in the original's tags.
pub fn user_prompt(cfg: &AutoselectConfig, fallback: &str, req: &ChatRequest) -> String {
    let recent: Vec<&Message> = req
        .messages
        .iter()
        .filter(|m| m.role != "system" && m.role != "developer")
        .collect();
    let start = recent.len().saturating_sub(RECENT_MESSAGES);
    let mut p = String::from("<aisbf_current_task>\n");
    for m in &recent[start..] {
        p.push_str(&brief(m));
        p.push('\n');
    }
    p.push_str("</aisbf_current_task>\n<aisbf_autoselect_list>\n");
    for m in &cfg.available_models {
        let _ = writeln!(
            p,
            "<model><model_id>{}</model_id><model_description>{}</model_description></model>",
            m.model_id,
            m.description.as_deref().unwrap_or("")
        );
    }
    let _ = write!(
        p,
        "</aisbf_autoselect_list>\n<aisbf_autoselect_fallback>{fallback}</aisbf_autoselect_fallback>"
    );
    p
}

/// The first tag whose id is one of `cfg`'s models.
pub fn parse_choice<'a>(cfg: &AutoselectConfig, answer: &'a str) -> Option<&'a str> {
    let mut rest = answer;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let end = after.find(CLOSE)?;
        let id = after[..end].trim();
        if cfg.available_models.iter().any(|m| m.model_id.trim() == id) {
            return Some(id);
        }
        rest = &after[end + CLOSE.len()..];
    }
    None
}

fn key(name: &str, prompt: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    prompt.hash(&mut h);
    h.finish()
}

/// A rotation or `provider/model`: what autoselect may name.
fn plain_target(config: &Config, id: &str) -> Result<Target, RouteError> {
    match resolve_model(config, id)? {
        Target::Autoselect(n) => Err(RouteError::Unusable(format!(
            "autoselect target '{n}' is itself an autoselect; name a rotation or provider/model"
        ))),
        t => Ok(t),
    }
}

async fn serve_plain(
    state: &AppState,
    target: Target,
    req: ChatRequest,
) -> Result<Served, RouteError> {
    match target {
        Target::Provider { provider, model } => serve_provider(state, &provider, &model, req).await,
        Target::Rotation(name) => rotation::serve(state, &name, req).await,
        Target::Autoselect(name) => Err(RouteError::UnknownAutoselect(name)),
    }
}

/// Asks the selector; any failure is the fallback, logged with its reason.
async fn select(
    state: &AppState,
    name: &str,
    cfg: &AutoselectConfig,
    fallback: &str,
    prompt: String,
) -> Arc<str> {
    let selector = cfg.selection_model.as_deref().unwrap_or(fallback);
    let answer = async {
        let target = plain_target(&state.config, selector)?;
        let mut extra = Extra::new();
        extra.insert("temperature".into(), json!(0));
        extra.insert("max_tokens".into(), json!(SELECTOR_MAX_TOKENS));
        let req = ChatRequest {
            model: selector.to_string(),
            messages: vec![
                Message::new("system", state.selector.system_prompt.as_str()),
                Message::new("user", prompt),
            ],
            stream: Some(false),
            extra,
            anthropic_beta: None,
            native: None,
        };
        match serve_plain(state, target, req).await?.outcome {
            ChatOutcome::Complete(r) => Ok(r
                .choices
                .into_iter()
                .next()
                .and_then(|c| c.message.content)
                .unwrap_or_default()),
            ChatOutcome::Stream(_) | ChatOutcome::Native(_) => Err(RouteError::Unusable(
                "the selector answered with a stream".into(),
            )),
        }
    };
    let why = match tokio::time::timeout(state.first_byte_timeout(), answer).await {
        Ok(Ok(text)) => match parse_choice(cfg, &text) {
            Some(id) => return Arc::from(id),
            None => format!(
                "no known model in its answer {:?}",
                text.chars().take(200).collect::<String>()
            ),
        },
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!(
            "no answer within {}s",
            state.first_byte_timeout().as_secs_f64()
        ),
    };
    tracing::warn!(
        autoselect = name,
        selector,
        "selector failed, using the fallback '{fallback}': {why}"
    );
    Arc::from(fallback)
}

/// Serves `req` through autoselect `name`.
pub async fn serve(state: &AppState, name: &str, req: ChatRequest) -> Result<Served, RouteError> {
    let config = &state.config;
    let cfg = config
        .autoselect
        .get(name)
        .ok_or_else(|| RouteError::UnknownAutoselect(name.to_string()))?;
    check_usable(config, "autoselect.json", "autoselect", name)?;
    let fallback = cfg
        .fallback
        .as_deref()
        .ok_or_else(|| RouteError::Unusable(format!("autoselect '{name}' has no fallback")))?;
    let prompt = user_prompt(cfg, fallback, &req);
    let choice = state.selector.choice(key(name, &prompt));
    let chosen = choice
        .get_or_init(|| select(state, name, cfg, fallback, prompt))
        .await
        .clone();
    tracing::info!(autoselect = name, chosen = %chosen, "autoselect decision");
    let target = plain_target(config, &chosen)?;
    let mut served = serve_plain(state, target, req).await?;
    served.autoselected = Some(chosen.to_string());
    Ok(served)
}

/// `GET /api/autoselect`: each autoselect's configuration (it holds no secrets).
pub fn describe(config: &Config) -> Value {
    let mut out = serde_json::Map::new();
    for (name, a) in &config.autoselect {
        let models: Vec<Value> = a
            .available_models
            .iter()
            .map(|m| json!({"model_id": m.model_id, "description": m.description}))
            .collect();
        out.insert(
            name.clone(),
            json!({
                "model_name": a.model_name.as_deref().unwrap_or(name),
                "description": a.description,
                "selection_model": a.selection_model,
                "fallback": a.fallback,
                "available_models": models,
                "usable": !config.is_unusable("autoselect.json", name),
            }),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AutoselectCandidate;

    fn cfg() -> AutoselectConfig {
        AutoselectConfig {
            available_models: ["coder", "p/general"]
                .iter()
                .map(|id| AutoselectCandidate {
                    model_id: id.to_string(),
                    description: Some(format!("{id} things")),
                })
                .collect(),
            fallback: Some("p/general".into()),
            ..Default::default()
        }
    }

    #[test]
    fn first_known_tag_wins() {
        let c = cfg();
        let t = |s: &'static str| parse_choice(&c, s);
        assert_eq!(
            t("<aisbf_model_autoselection>coder</aisbf_model_autoselection>"),
            Some("coder")
        );
        assert_eq!(
            t("sure: <aisbf_model_autoselection> p/general </aisbf_model_autoselection> ok"),
            Some("p/general")
        );
        assert_eq!(
            t("<aisbf_model_autoselection>nope</aisbf_model_autoselection><aisbf_model_autoselection>coder</aisbf_model_autoselection>"),
            Some("coder")
        );
        assert_eq!(t("coder"), None);
        assert_eq!(t("<aisbf_model_autoselection>coder"), None);
        assert_eq!(
            t("<aisbf_model_autoselection>nope</aisbf_model_autoselection>"),
            None
        );
    }

    #[test]
    fn prompt_has_the_originals_tags_and_recent_messages_only() {
        let mut messages = vec![Message::new("system", "SYSTEM SECRET SAUCE")];
        for i in 0..10 {
            messages.push(Message::new("user", format!("  message {i}  ")));
        }
        messages.push(Message::new("user", "x".repeat(5000)));
        let req = ChatRequest {
            model: "a".into(),
            messages,
            stream: None,
            extra: Extra::new(),
            anthropic_beta: None,
            native: None,
        };
        let p = user_prompt(&cfg(), "p/general", &req);
        assert!(p.starts_with("<aisbf_current_task>\n"));
        assert!(!p.contains("SYSTEM SECRET SAUCE"));
        assert!(
            !p.contains("message 4"),
            "only the last {RECENT_MESSAGES} messages"
        );
        assert!(p.contains("user: message 5\n"), "trimmed: {p}");
        assert!(p.contains(&format!("user: {}…\n", "x".repeat(MESSAGE_CHARS))));
        assert!(p.contains("<model><model_id>coder</model_id><model_description>coder things</model_description></model>"));
        assert!(p.ends_with("<aisbf_autoselect_fallback>p/general</aisbf_autoselect_fallback>"));
    }

    #[test]
    fn cache_is_single_flight_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        crate::config::ensure_defaults(dir.path()).unwrap();
        let s = Selector::new(&crate::config::load(dir.path()).unwrap());
        assert_eq!(s.system_prompt, DEFAULT_PROMPT);
        let a = s.choice(1);
        let b = s.choice(1);
        assert!(Arc::ptr_eq(&a, &b), "a selection in flight is shared");
        for k in 0..(CACHE_CAP as u64 + 50) {
            let _ = s.choice(k + 10);
        }
        assert!(s.cached_len() <= CACHE_CAP);
    }
}
