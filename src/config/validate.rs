//! Value checks and cross-file references, run once at load.

use super::files::*;
use super::{Config, ConfigError, ConfigIssue, IssueKind};

/// Provider ids that would shadow the gateway's own namespaces.
pub const RESERVED_IDS: [&str; 6] = [
    "rotation",
    "rotations",
    "autoselect",
    "autoselections",
    "v1",
    "models",
];

/// The most `server.workers` accepted.
const MAX_WORKERS: usize = 1024;

fn invalid(file: &'static str, path: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file,
        path,
        message: message.into(),
    }
}

/// `state`: a Redis backend needs a `redis://` URL the client accepts (no TLS: the crate is
/// built without it, so `rediss://` is refused here rather than at the first request).
fn validate_state(s: &StateSection) -> Result<(), ConfigError> {
    const A: &str = "aisbf.json";
    if s.key_prefix.is_empty() {
        return Err(invalid(
            A,
            "state.key_prefix".into(),
            "must not be empty (every key aisbf writes lives under it)",
        ));
    }
    if s.backend != StateBackend::Redis {
        return Ok(());
    }
    let Some(url) = s.redis_url.as_ref().filter(|u| !u.is_empty()) else {
        return Err(invalid(
            A,
            "state.redis_url".into(),
            "required when state.backend is \"redis\" (e.g. \"redis://127.0.0.1:6379/0\")",
        ));
    };
    let url = url.expose();
    if !(url.starts_with("redis://")
        || url.starts_with("unix://")
        || url.starts_with("redis+unix://"))
    {
        return Err(invalid(
            A,
            "state.redis_url".into(),
            "must be a redis://host:port[/db] (or unix://) URL; TLS (rediss://) is not supported",
        ));
    }
    // The message of a parse error never includes the URL (it may hold a password).
    redis::Client::open(url).map_err(|e| {
        invalid(
            A,
            "state.redis_url".into(),
            format!("not a valid Redis URL: {}", e.category()),
        )
    })?;
    Ok(())
}

pub(super) fn validate(c: &mut Config) -> Result<(), ConfigError> {
    const A: &str = "aisbf.json";
    const P: &str = "providers.json";
    const R: &str = "rotations.json";
    const S: &str = "autoselect.json";

    if c.server.host.trim().is_empty() {
        return Err(invalid(A, "server.host".into(), "must not be empty"));
    }
    if c.auth.enabled && c.auth.tokens.iter().all(|t| t.is_empty()) {
        return Err(invalid(
            A,
            "auth.tokens".into(),
            "auth is enabled but no token is configured",
        ));
    }
    if c.limits.max_body_bytes == 0 {
        return Err(invalid(A, "limits.max_body_bytes".into(), "must be > 0"));
    }
    if c.limits.max_connections == 0 {
        return Err(invalid(A, "limits.max_connections".into(), "must be > 0"));
    }
    // A thread and a runtime each: more than this is a typo, not a machine.
    if c.server.workers > MAX_WORKERS {
        return Err(invalid(
            A,
            "server.workers".into(),
            format!("must be at most {MAX_WORKERS} (0: half the cores)"),
        ));
    }
    for (field, v) in [
        ("connect_seconds", c.timeouts.connect_seconds),
        ("first_byte_seconds", c.timeouts.first_byte_seconds),
        ("idle_seconds", c.timeouts.idle_seconds),
        ("header_seconds", c.timeouts.header_seconds),
        ("keepalive_seconds", c.timeouts.keepalive_seconds),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(invalid(
                A,
                format!("timeouts.{field}"),
                "must be a positive number of seconds",
            ));
        }
    }
    if c.error_tracking.max_failures == 0 {
        return Err(invalid(
            A,
            "error_tracking.max_failures".into(),
            "must be >= 1",
        ));
    }
    if !(c.error_tracking.cooldown_seconds.is_finite() && c.error_tracking.cooldown_seconds >= 0.0)
    {
        return Err(invalid(
            A,
            "error_tracking.cooldown_seconds".into(),
            "must be >= 0",
        ));
    }
    validate_state(&c.state)?;

    if !(c.responses.store_seconds.is_finite() && c.responses.store_seconds > 0.0) {
        return Err(invalid(
            A,
            "responses.store_seconds".into(),
            "must be a positive number of seconds",
        ));
    }

    let mut issues = Vec::new();
    for (id, p) in &c.providers {
        let at = |f: &str| format!("providers.{id}.{f}");
        if RESERVED_IDS.contains(&id.as_str()) {
            return Err(invalid(
                P,
                format!("providers.{id}"),
                format!("'{id}' is reserved for the gateway's own routes; rename the provider"),
            ));
        }
        if id.is_empty() || id.contains('/') {
            return Err(invalid(
                P,
                format!("providers.{id}"),
                "a provider id must be non-empty and contain no '/'",
            ));
        }
        if let ProviderKind::Unsupported(t) = &p.kind {
            issues.push(ConfigIssue {
                kind: IssueKind::Unsupported,
                file: P,
                path: at("type"),
                message: format!(
                    "provider type '{t}' is not supported by aisbf; provider disabled"
                ),
            });
            continue;
        }
        if p.responses && p.kind != ProviderKind::OpenAi {
            return Err(invalid(
                P,
                at("responses"),
                format!(
                    "only an 'openai' provider can serve the Responses API natively (this one is '{}')",
                    p.kind.name()
                ),
            ));
        }
        let endpoint = p.endpoint();
        // The client sends to an `http::Uri` parsed from the same text: both must accept it.
        let as_uri = endpoint.parse::<http::Uri>().is_ok();
        match url::Url::parse(endpoint) {
            Ok(u) if as_uri && (u.scheme() == "http" || u.scheme() == "https") => {}
            _ => {
                return Err(invalid(
                    P,
                    at("endpoint"),
                    format!("'{endpoint}' is not an http(s) URL"),
                ))
            }
        }
        check_rate(P, at("rate_limit"), Some(p.rate_limit))?;
        check_percent(
            P,
            at("default_condense_context"),
            p.default_condense_context,
        )?;
        for (i, m) in p.models.iter().enumerate() {
            check_model(P, &format!("providers.{id}.models[{i}]"), m)?;
        }
    }

    for (name, r) in &c.rotations {
        if r.providers.is_empty() {
            issues.push(unresolved(
                R,
                format!("rotations.{name}.providers"),
                "no providers",
            ));
        }
        for (i, rp) in r.providers.iter().enumerate() {
            let at = format!("rotations.{name}.providers[{i}]");
            match c.providers.get(&rp.provider_id) {
                None => issues.push(unresolved(
                    R,
                    format!("{at}.provider_id"),
                    format!(
                        "unknown provider '{}' (not in providers.json)",
                        rp.provider_id
                    ),
                )),
                Some(p) if matches!(p.kind, ProviderKind::Unsupported(_)) => {
                    issues.push(unresolved(
                        R,
                        format!("{at}.provider_id"),
                        format!("provider '{}' has an unsupported type", rp.provider_id),
                    ))
                }
                Some(_) => {}
            }
            if rp.models.is_empty() {
                issues.push(unresolved(R, format!("{at}.models"), "no models"));
            }
            if let Some(w) = rp.weight {
                check_weight(R, format!("{at}.weight"), w)?;
            }
            for (j, m) in rp.models.iter().enumerate() {
                check_model(R, &format!("{at}.models[{j}]"), m)?;
            }
        }
    }

    for (name, a) in &c.autoselect {
        let at = |f: &str| format!("autoselect.{name}.{f}");
        if a.available_models.is_empty() {
            issues.push(unresolved(
                S,
                at("available_models"),
                "no models to choose from",
            ));
        }
        match &a.fallback {
            None => issues.push(unresolved(S, at("fallback"), "missing")),
            Some(f) if !target_exists(c, f) => issues.push(unresolved(
                S,
                at("fallback"),
                format!("'{f}' is neither a rotation nor provider/model"),
            )),
            Some(_) => {}
        }
        if let Some(sel) = &a.selection_model {
            if !target_exists(c, sel) {
                issues.push(unresolved(
                    S,
                    at("selection_model"),
                    format!("'{sel}' is neither a rotation nor provider/model"),
                ));
            }
        }
        for (i, m) in a.available_models.iter().enumerate() {
            if !target_exists(c, &m.model_id) {
                issues.push(unresolved(
                    S,
                    format!("autoselect.{name}.available_models[{i}].model_id"),
                    format!("'{}' is neither a rotation nor provider/model", m.model_id),
                ));
            }
        }
    }

    if let Some(cond) = &c.condensation {
        if let Some(pid) = &cond.provider_id {
            if !c.providers.contains_key(pid) {
                issues.push(unresolved(
                    P,
                    "condensation.provider_id".into(),
                    format!("unknown provider '{pid}'"),
                ));
            }
        }
        if let Some(rid) = &cond.rotation_id {
            if !c.rotations.contains_key(rid) {
                issues.push(unresolved(
                    P,
                    "condensation.rotation_id".into(),
                    format!("unknown rotation '{rid}'"),
                ));
            }
        }
    }

    for (key, target) in c.model_aliases.all() {
        let at = format!("model_aliases.{key}");
        let pattern = key.strip_suffix('*').unwrap_or(&key);
        if key.is_empty() || pattern.contains('*') {
            return Err(invalid(
                A,
                at,
                "a key is a model name, or a prefix ending in '*' ('*' alone matches any name)",
            ));
        }
        if !v1_target_exists(c, target) {
            issues.push(unresolved(
                A,
                at,
                format!("'{target}' is not a /v1 model (provider/model, rotation/NAME, autoselect/NAME); aliases do not chain"),
            ));
        }
    }

    c.unusable = super::Unusable::from_issues(&issues, c.rotations.keys(), c.autoselect.keys());
    c.issues = issues;
    Ok(())
}

/// A `/v1` model reference that names something configured, resolved without aliases.
pub fn v1_target_exists(c: &Config, target: &str) -> bool {
    match crate::routing::resolve_model(c, target) {
        Ok(crate::routing::Target::Provider { provider, .. }) => c
            .providers
            .get(&provider)
            .is_some_and(|p| !matches!(p.kind, ProviderKind::Unsupported(_))),
        Ok(crate::routing::Target::Rotation(n)) => c.rotations.contains_key(&n),
        Ok(crate::routing::Target::Autoselect(n)) => c.autoselect.contains_key(&n),
        Err(_) => false,
    }
}

/// A target named in autoselect: a rotation (bare, `rotation/`, `rotations/`) or a
/// `provider/model` whose provider is configured and supported.
pub fn target_exists(c: &Config, target: &str) -> bool {
    let bare = target
        .strip_prefix("rotation/")
        .or_else(|| target.strip_prefix("rotations/"))
        .unwrap_or(target);
    if c.rotations.contains_key(bare) {
        return true;
    }
    match target.split_once('/') {
        Some((pid, model)) if !model.is_empty() => c
            .providers
            .get(pid)
            .is_some_and(|p| !matches!(p.kind, ProviderKind::Unsupported(_))),
        _ => false,
    }
}

fn unresolved(file: &'static str, path: String, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        kind: IssueKind::Unresolved,
        file,
        path,
        message: message.into(),
    }
}

fn check_model(file: &'static str, at: &str, m: &ModelConfig) -> Result<(), ConfigError> {
    if m.name.trim().is_empty() {
        return Err(invalid(file, format!("{at}.name"), "must not be empty"));
    }
    check_percent(file, format!("{at}.condense_context"), m.condense_context)?;
    check_rate(file, format!("{at}.rate_limit"), m.rate_limit)?;
    if let Some(w) = m.weight {
        check_weight(file, format!("{at}.weight"), w)?;
    }
    if m.context_size == Some(0) {
        return Err(invalid(file, format!("{at}.context_size"), "must be > 0"));
    }
    Ok(())
}

fn check_percent(file: &'static str, at: String, v: Option<f64>) -> Result<(), ConfigError> {
    match v {
        Some(p) if !(0.0..=100.0).contains(&p) => Err(invalid(
            file,
            at,
            format!("{p} is not a percentage (0-100)"),
        )),
        _ => Ok(()),
    }
}

fn check_rate(file: &'static str, at: String, v: Option<f64>) -> Result<(), ConfigError> {
    match v {
        Some(r) if !(r.is_finite() && r >= 0.0) => Err(invalid(file, at, "must be >= 0 seconds")),
        _ => Ok(()),
    }
}

fn check_weight(file: &'static str, at: String, w: f64) -> Result<(), ConfigError> {
    if !(w.is_finite() && w >= 0.0) {
        return Err(invalid(file, at, "weight must be >= 0"));
    }
    Ok(())
}
