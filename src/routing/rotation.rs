//! Rotations: a weighted random draw over (provider, model) entries that are neither cooling
//! down nor spaced out by their `rate_limit`, with failover before the first byte until
//! every entry was tried once.

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};

use super::{attempt, Attempt, Attempts, RouteError, Served};
use crate::api::openai::ChatRequest;
use crate::config::{Config, IssueKind, ModelConfig, RotationConfig, Routed};
use crate::providers::ProviderError;
use crate::state::AppState;

/// One (provider, model) of a rotation.
pub struct Entry<'a> {
    pub provider: &'a str,
    pub model: &'a ModelConfig,
    pub weight: f64,
}

impl Entry<'_> {
    fn target(&self) -> String {
        format!("{}/{}", self.provider, self.model.name)
    }
}

/// The entries of `rot`; an entry's weight is its model's `weight`, else its rotation
/// provider's, else the provider's in providers.json, else 1.
pub fn entries<'a>(config: &'a Config, rot: &'a RotationConfig) -> Vec<Entry<'a>> {
    rot.providers
        .iter()
        .flat_map(|rp| {
            let provider_weight = config.providers.get(&rp.provider_id).and_then(|p| p.weight);
            rp.models.iter().map(move |m| Entry {
                provider: &rp.provider_id,
                model: m,
                weight: m.weight.or(rp.weight).or(provider_weight).unwrap_or(1.0),
            })
        })
        .collect()
}

/// Picks one of `candidates` (indices into `entries`) with probability proportional to its
/// weight. Entries of weight 0 are standbys: drawn (uniformly) only when every remaining
/// candidate has weight 0.
pub fn draw(entries: &[Entry<'_>], candidates: &[usize], rng: &mut impl Rng) -> Option<usize> {
    let total: f64 = candidates.iter().map(|&i| entries[i].weight).sum();
    if candidates.is_empty() {
        return None;
    }
    if total <= 0.0 {
        return Some(candidates[rng.random_range(0..candidates.len())]);
    }
    let mut x = rng.random::<f64>() * total;
    for &i in candidates {
        let w = entries[i].weight;
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    // Rounding left x at the very end: the last entry with a weight.
    candidates
        .iter()
        .rev()
        .copied()
        .find(|&i| entries[i].weight > 0.0)
}

/// Why a rotation cannot be used, from config validation.
fn unusable_message(config: &Config, what: Routed, kind: &str, name: &str) -> String {
    let section = what.file().trim_end_matches(".json");
    let prefix = format!("{section}.{name}");
    let reasons: Vec<String> = config
        .issues
        .iter()
        .filter(|i| {
            i.kind == IssueKind::Unresolved
                && (i.path == prefix || i.path.starts_with(&format!("{prefix}.")))
        })
        .map(ToString::to_string)
        .collect();
    format!(
        "{kind} '{name}' is unusable: its configuration does not resolve ({}); run `aisbf check-config`",
        reasons.join("; ")
    )
}

pub(super) fn check_usable(
    config: &Config,
    what: Routed,
    kind: &str,
    name: &str,
) -> Result<(), RouteError> {
    if config.is_unusable(what, name) {
        // Only an unusable request pays for the message.
        return Err(RouteError::Unusable(unusable_message(
            config, what, kind, name,
        )));
    }
    Ok(())
}

/// What the draw found when it looked at the entries not tried yet.
enum Next {
    /// A free entry, its rate-limit slot taken.
    Go(usize),
    /// Every candidate is spaced out: this one frees first, its slot reserved.
    WaitFor(usize),
    /// Nothing left to try (all tried or cooling).
    Done,
}

async fn next(state: &AppState, entries: &[Entry<'_>], tried: &[bool]) -> Next {
    loop {
        let mut candidates = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            if !tried[i]
                && state
                    .health
                    .cooling(e.provider, &e.model.name)
                    .await
                    .is_none()
            {
                candidates.push(i);
            }
        }
        if candidates.is_empty() {
            return Next::Done;
        }
        let limits = &state.limits;
        let mut earliest: Option<(Instant, usize)> = None;
        let mut free = Vec::with_capacity(candidates.len());
        for &i in &candidates {
            match limits
                .next_free(entries[i].provider, &entries[i].model.name)
                .await
            {
                None => free.push(i),
                Some(t) if earliest.is_none_or(|(e, _)| t < e) => earliest = Some((t, i)),
                Some(_) => {}
            }
        }
        if free.is_empty() {
            return match earliest {
                Some((_, i)) => Next::WaitFor(i),
                None => Next::Done,
            };
        }
        let Some(i) = draw(entries, &free, &mut rand::rng()) else {
            return Next::Done;
        };
        // Another request may have taken the slot since we looked: look again.
        if limits
            .try_acquire(entries[i].provider, &entries[i].model.name)
            .await
            .is_ok()
        {
            return Next::Go(i);
        }
    }
}

/// Serves `req` through rotation `name`.
pub async fn serve(state: &AppState, name: &str, req: ChatRequest) -> Result<Served, RouteError> {
    let config = &state.config;
    let rot = config
        .rotations
        .get(name)
        .ok_or_else(|| RouteError::UnknownRotation(name.to_string()))?;
    check_usable(config, Routed::Rotation, "rotation", name)?;
    let entries = entries(config, rot);
    let mut tried = vec![false; entries.len()];
    let mut attempts = Vec::new();
    let mut rate_limited: Vec<Option<Duration>> = Vec::new();
    let mut req = Some(req);
    loop {
        let i = match next(state, &entries, &tried).await {
            Next::Done => break,
            Next::Go(i) => i,
            Next::WaitFor(i) => {
                let e = &entries[i];
                let limit = state.first_byte_timeout();
                if let Err(next) = state
                    .limits
                    .wait_for_slot(e.provider, &e.model.name, limit)
                    .await
                {
                    return Err(RouteError::Spaced {
                        target: format!("rotation '{name}'"),
                        retry_after: next.saturating_duration_since(Instant::now()),
                    });
                }
                i
            }
        };
        tried[i] = true;
        let e = &entries[i];
        // The request moves into the last possible attempt; earlier ones get a copy, since
        // the context pipeline may rewrite it for one model.
        let this = if tried.iter().all(|t| *t) {
            req.take()
        } else {
            req.clone()
        };
        let Some(this) = this else { break };
        match attempt(state, e.provider, &e.model.name, Some(e.model), this).await {
            Ok(served) => return Ok(served),
            Err(RouteError::Provider(err)) if err.should_failover() => {
                tracing::info!(rotation = name, target = %e.target(), "failing over: {err}");
                state.metrics.failover(config, name);
                if let ProviderError::RateLimited { retry_after, .. } = &err {
                    rate_limited.push(*retry_after);
                }
                attempts.push(Attempt {
                    target: e.target(),
                    reason: err.to_string(),
                });
            }
            Err(other) => return Err(other),
        }
    }
    Err(all_failed(state, name, &entries, &tried, attempts, rate_limited).await)
}

/// The error when no entry served: 503 when nothing could be tried because all cool down,
/// 429 when every try was rate limited, 502 otherwise. The message lists every entry.
async fn all_failed(
    state: &AppState,
    name: &str,
    entries: &[Entry<'_>],
    tried: &[bool],
    mut attempts: Vec<Attempt>,
    rate_limited: Vec<Option<Duration>>,
) -> RouteError {
    let tries = attempts.len();
    let mut soonest: Option<Duration> = None;
    for (i, e) in entries.iter().enumerate() {
        if tried[i] {
            continue;
        }
        if let Some(c) = state.health.cooling(e.provider, &e.model.name).await {
            let left = c.remaining();
            soonest = Some(soonest.map_or(left, |s| s.min(left)));
            attempts.push(Attempt {
                target: e.target(),
                reason: format!("cooling down for {}s", super::ceil_secs(left)),
            });
        }
    }
    let what = format!("rotation '{name}'");
    let attempts = Attempts(attempts);
    if tries == 0 {
        if let Some(retry_after) = soonest {
            return RouteError::AllCooling {
                what,
                attempts,
                retry_after,
            };
        }
    }
    if tries > 0 && rate_limited.len() == tries {
        let retry_after = rate_limited.into_iter().flatten().chain(soonest).min();
        return RouteError::AllRateLimited {
            what,
            attempts,
            retry_after,
        };
    }
    RouteError::AllFailed { what, attempts }
}

/// `GET /api/rotations`: each rotation's entries as the original lists them (no secrets:
/// rotations hold none), plus whether it is usable.
pub fn describe(config: &Config) -> Value {
    let mut out = serde_json::Map::new();
    for (name, rot) in &config.rotations {
        let models: Vec<Value> = entries(config, rot)
            .iter()
            .map(|e| {
                json!({
                    "name": e.model.name,
                    "provider_id": e.provider,
                    "weight": e.weight,
                    "rate_limit": e.model.rate_limit,
                })
            })
            .collect();
        out.insert(
            name.clone(),
            json!({
                "model_name": rot.model_name.as_deref().unwrap_or(name),
                "models": models,
                "usable": !config.is_unusable(Routed::Rotation, name),
            }),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn model(name: &str) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn draw_follows_weights_and_standbys() {
        let (a, b, c) = (model("a"), model("b"), model("c"));
        let entries = vec![
            Entry {
                provider: "p",
                model: &a,
                weight: 1.0,
            },
            Entry {
                provider: "p",
                model: &b,
                weight: 3.0,
            },
            Entry {
                provider: "p",
                model: &c,
                weight: 0.0,
            },
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = [0usize; 3];
        for _ in 0..4000 {
            counts[draw(&entries, &[0, 1, 2], &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 is never drawn while others remain");
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
        assert_eq!(
            draw(&entries, &[2], &mut rng),
            Some(2),
            "standby when alone"
        );
        assert_eq!(draw(&entries, &[], &mut rng), None);
    }
}
