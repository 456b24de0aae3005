//! Error tracking: consecutive provider-side failures put a provider (or one of its models)
//! in cooldown; one success resets the count; a 429 cools it at once until `Retry-After`.
//!
//! The counters sit behind `HealthStore` (in memory, or on Redis for several instances:
//! `shared_state::RedisHealth`);
//! `Health` holds the policy taken from the configuration once: which key a (provider, model)
//! pair is tracked under and how long its cooldown is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Serialize;

use crate::config::Config;
use crate::providers::ProviderError;

/// What happened to one request, as far as health is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// A provider-side failure: counts toward `max_failures`.
    Fault,
    /// A 429: cools at once, for `Retry-After` when the upstream gave one.
    RateLimited(Option<Duration>),
}

impl Failure {
    /// `None` for errors that say nothing about the provider's health (client errors,
    /// missing keys).
    pub fn of(e: &ProviderError) -> Option<Failure> {
        match e {
            ProviderError::RateLimited { retry_after, .. } => {
                Some(Failure::RateLimited(*retry_after))
            }
            e if e.is_provider_fault() => Some(Failure::Fault),
            _ => None,
        }
    }
}

/// The state of one key, for `GET /` and error messages.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    pub state: &'static str,
    /// Unix seconds when the cooldown ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    pub failures: u32,
}

/// Health counters, keyed by strings (`provider` or `provider/model`). Times are wall-clock
/// (Unix milliseconds) so a shared store can serve several instances.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// When `key`'s cooldown ends, if it is cooling now.
    async fn cooling_until(&self, key: &str) -> Option<SystemTime>;
    async fn record_success(&self, key: &str);
    /// Records one failure; returns true when this failure started a cooldown.
    async fn record_failure(
        &self,
        key: &str,
        failure: Failure,
        max_failures: u32,
        cooldown: Duration,
    ) -> bool;
    async fn status(&self, key: &str) -> KeyStatus;
    /// A store for `keys` (a reloaded configuration) that keeps the counters and cooldowns
    /// of the keys this one already tracks.
    fn rebuilt(&self, keys: Vec<String>) -> Box<dyn HealthStore>;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn to_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One key's counters: two atomics, so the hot path (a success on a healthy provider) is
/// two relaxed loads and no store.
#[derive(Default)]
struct Slot {
    failures: AtomicU32,
    /// Unix ms; 0 or past = not cooling.
    cooling_until: AtomicU64,
}

/// The in-memory store: a map built once from the configuration and never written after,
/// so lookups take no lock; each slot is updated with atomics. Slots are shared with the
/// store a reload builds, so requests still running on the old state count in the new one.
pub struct MemoryStore {
    slots: HashMap<String, Arc<Slot>>,
}

impl MemoryStore {
    pub fn new(keys: impl IntoIterator<Item = String>) -> MemoryStore {
        MemoryStore {
            slots: keys.into_iter().map(|k| (k, Arc::default())).collect(),
        }
    }
}

#[async_trait]
impl HealthStore for MemoryStore {
    async fn cooling_until(&self, key: &str) -> Option<SystemTime> {
        let until = self.slots.get(key)?.cooling_until.load(Ordering::Relaxed);
        (until > now_ms()).then(|| UNIX_EPOCH + Duration::from_millis(until))
    }

    async fn record_success(&self, key: &str) {
        if let Some(s) = self.slots.get(key) {
            if s.failures.load(Ordering::Relaxed) != 0 {
                s.failures.store(0, Ordering::Relaxed);
            }
        }
    }

    async fn record_failure(
        &self,
        key: &str,
        failure: Failure,
        max_failures: u32,
        cooldown: Duration,
    ) -> bool {
        let Some(s) = self.slots.get(key) else {
            return false;
        };
        let now = now_ms();
        let until = match failure {
            Failure::RateLimited(retry_after) => now + to_ms(retry_after.unwrap_or(cooldown)),
            Failure::Fault => {
                // Already cooling: requests that were in flight when it tripped say nothing new.
                if s.cooling_until.load(Ordering::Acquire) > now {
                    return false;
                }
                let n = s.failures.fetch_add(1, Ordering::AcqRel) + 1;
                if n < max_failures {
                    return false;
                }
                now + to_ms(cooldown)
            }
        };
        // Whoever moves `cooling_until` forward from "not cooling" started the cooldown;
        // failures of requests already in flight while cooling neither extend nor restart it.
        let mut cur = s.cooling_until.load(Ordering::Acquire);
        loop {
            if cur > now {
                return false;
            }
            match s.cooling_until.compare_exchange_weak(
                cur,
                until,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // The next window starts counting from zero once the cooldown is over.
                    s.failures.store(0, Ordering::Release);
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    fn rebuilt(&self, keys: Vec<String>) -> Box<dyn HealthStore> {
        let slots = keys
            .into_iter()
            .map(|k| {
                let slot = self.slots.get(&k).cloned().unwrap_or_default();
                (k, slot)
            })
            .collect();
        Box::new(MemoryStore { slots })
    }

    async fn status(&self, key: &str) -> KeyStatus {
        let Some(s) = self.slots.get(key) else {
            return KeyStatus {
                state: "ok",
                until: None,
                failures: 0,
            };
        };
        let until = s.cooling_until.load(Ordering::Relaxed);
        let cooling = until > now_ms();
        KeyStatus {
            state: if cooling { "cooling" } else { "ok" },
            until: cooling.then_some(until.div_ceil(1000)),
            failures: s.failures.load(Ordering::Relaxed),
        }
    }
}

/// The tracking scope of one provider: its own key and cooldown, plus the models that have
/// their own `error_cooldown` (tracked separately, under `provider/model`).
struct Scope {
    key: String,
    cooldown: Duration,
    models: HashMap<String, (String, Duration)>,
}

/// Error tracking for the whole gateway: policy from the configuration plus a store.
pub struct Health {
    store: Box<dyn HealthStore>,
    scopes: HashMap<String, Scope>,
    max_failures: u32,
}

/// A cooldown in progress.
#[derive(Debug, Clone, Copy)]
pub struct Cooling {
    pub until: SystemTime,
}

impl Cooling {
    pub fn remaining(&self) -> Duration {
        self.until
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }
}

fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or(Duration::ZERO)
}

impl Health {
    /// The policy of `config` with the in-memory store.
    pub fn in_memory(config: &Config) -> Health {
        let scopes = scopes(config);
        Health {
            store: Box::new(MemoryStore::new(keys(&scopes))),
            scopes,
            max_failures: config.error_tracking.max_failures.max(1),
        }
    }

    /// The policy of a reloaded `config`; failure counts and cooldowns carry over for the
    /// keys that remain.
    pub fn reloaded(config: &Config, old: &Health) -> Health {
        let scopes = scopes(config);
        Health {
            store: old.store.rebuilt(keys(&scopes)),
            scopes,
            max_failures: config.error_tracking.max_failures.max(1),
        }
    }

    /// Is `provider` serving (its own key not cooling down)?
    pub async fn provider_up(&self, provider: &str) -> bool {
        match self.scopes.get(provider) {
            Some(s) => self.store.cooling_until(&s.key).await.is_none(),
            None => true,
        }
    }

    /// Every provider id tracked.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.scopes.keys().map(String::as_str)
    }

    /// The key and cooldown `provider`/`model` is tracked under.
    fn key(&self, provider: &str, model: &str) -> Option<(&str, Duration)> {
        let scope = self.scopes.get(provider)?;
        Some(match scope.models.get(model) {
            Some((k, d)) => (k.as_str(), *d),
            None => (scope.key.as_str(), scope.cooldown),
        })
    }

    pub async fn cooling(&self, provider: &str, model: &str) -> Option<Cooling> {
        let (key, _) = self.key(provider, model)?;
        self.store
            .cooling_until(key)
            .await
            .map(|until| Cooling { until })
    }

    pub async fn success(&self, provider: &str, model: &str) {
        if let Some((key, _)) = self.key(provider, model) {
            self.store.record_success(key).await;
        }
    }

    /// Records `e` once if it says something about the provider's health.
    pub async fn failure(&self, provider: &str, model: &str, e: &ProviderError) {
        let (Some(failure), Some((key, cooldown))) = (Failure::of(e), self.key(provider, model))
        else {
            return;
        };
        if self
            .store
            .record_failure(key, failure, self.max_failures, cooldown)
            .await
        {
            let until = self.store.status(key).await.until.unwrap_or(0);
            tracing::warn!(
                provider,
                model,
                key,
                until,
                "cooling down after a provider-side failure: {e}"
            );
        }
    }

    /// The policy of `config` with `store` (on Redis: `shared_state::RedisHealth`).
    pub fn with_store(config: &Config, store: Box<dyn HealthStore>) -> Health {
        Health {
            store,
            scopes: scopes(config),
            max_failures: config.error_tracking.max_failures.max(1),
        }
    }

    /// Every tracked key's state, providers first, for `GET /`.
    pub async fn status(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        let mut ids: Vec<&String> = self.scopes.keys().collect();
        ids.sort();
        for id in ids {
            let scope = &self.scopes[id];
            let mut keys: Vec<&str> = vec![scope.key.as_str()];
            let mut models: Vec<&str> = scope.models.values().map(|m| m.0.as_str()).collect();
            models.sort();
            keys.extend(models);
            for k in keys {
                let s = self.store.status(k).await;
                out.insert(
                    k.to_string(),
                    serde_json::to_value(s).unwrap_or(serde_json::Value::Null),
                );
            }
        }
        out
    }
}

fn keys(scopes: &HashMap<String, Scope>) -> Vec<String> {
    scopes
        .values()
        .flat_map(|s| std::iter::once(s.key.clone()).chain(s.models.values().map(|m| m.0.clone())))
        .collect()
}

/// Which keys exist and their cooldowns: a model's `error_cooldown` (in providers.json or in a
/// rotation entry) gives it its own key; otherwise the provider's `default_error_cooldown`,
/// else `error_tracking.cooldown_seconds`.
fn scopes(config: &Config) -> HashMap<String, Scope> {
    let default = config.error_tracking.cooldown_seconds;
    let mut scopes: HashMap<String, Scope> = config
        .providers
        .iter()
        .map(|(id, p)| {
            let models = p
                .models
                .iter()
                .filter_map(|m| {
                    let d = m.error_cooldown?;
                    Some((m.name.clone(), (format!("{id}/{}", m.name), secs(d))))
                })
                .collect();
            let scope = Scope {
                key: id.clone(),
                cooldown: secs(p.default_error_cooldown.unwrap_or(default)),
                models,
            };
            (id.clone(), scope)
        })
        .collect();
    for r in config.rotations.values() {
        for rp in &r.providers {
            let Some(scope) = scopes.get_mut(&rp.provider_id) else {
                continue;
            };
            for m in &rp.models {
                if let Some(d) = m.error_cooldown {
                    scope
                        .models
                        .entry(m.name.clone())
                        .or_insert_with(|| (format!("{}/{}", rp.provider_id, m.name), secs(d)));
                }
            }
        }
    }
    scopes
}

/// An in-memory store with a slot for every key `config` tracks (the local fallback of a
/// shared store).
pub fn memory_store(config: &Config) -> MemoryStore {
    let keys = scopes(config)
        .into_values()
        .flat_map(|s| std::iter::once(s.key).chain(s.models.into_values().map(|m| m.0)))
        .collect::<Vec<_>>();
    MemoryStore::new(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(status: u16) -> ProviderError {
        ProviderError::Upstream {
            status,
            message: "x".into(),
            kind: None,
            code: None,
        }
    }

    #[tokio::test]
    async fn cools_after_max_failures_and_success_resets() {
        let s = MemoryStore::new(["p".to_string()]);
        let cd = Duration::from_secs(60);
        assert!(!s.record_failure("p", Failure::Fault, 3, cd).await);
        assert!(!s.record_failure("p", Failure::Fault, 3, cd).await);
        s.record_success("p").await;
        assert_eq!(s.status("p").await.failures, 0);
        assert!(!s.record_failure("p", Failure::Fault, 3, cd).await);
        assert!(!s.record_failure("p", Failure::Fault, 3, cd).await);
        assert!(s.cooling_until("p").await.is_none());
        assert!(s.record_failure("p", Failure::Fault, 3, cd).await);
        assert!(s.cooling_until("p").await.is_some());
        assert_eq!(s.status("p").await.state, "cooling");
        // Failures of requests still in flight do not restart the cooldown.
        for _ in 0..5 {
            assert!(!s.record_failure("p", Failure::Fault, 3, cd).await);
        }
    }

    #[tokio::test]
    async fn a_rebuilt_store_keeps_the_keys_that_remain_and_shares_them() {
        let old = MemoryStore::new(["a".to_string(), "gone".to_string()]);
        let cd = Duration::from_secs(60);
        assert!(old.record_failure("a", Failure::Fault, 1, cd).await);
        old.record_failure("gone", Failure::Fault, 5, cd).await;
        let new = old.rebuilt(vec!["a".into(), "added".into()]);
        assert!(
            new.cooling_until("a").await.is_some(),
            "cooldown carried over"
        );
        assert!(new.cooling_until("added").await.is_none());
        assert_eq!(
            new.status("gone").await.failures,
            0,
            "removed keys are gone"
        );
        // A request still running on the old state records into the same counters.
        old.record_success("a").await;
        assert_eq!(new.status("a").await.failures, 0);
    }

    #[tokio::test]
    async fn rate_limit_cools_at_once_for_retry_after() {
        let s = MemoryStore::new(["p".to_string()]);
        let started = s
            .record_failure(
                "p",
                Failure::RateLimited(Some(Duration::from_secs(7))),
                3,
                Duration::from_secs(300),
            )
            .await;
        assert!(started);
        let left = s
            .cooling_until("p")
            .await
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(5) && left <= Duration::from_secs(7));
    }

    #[test]
    fn client_errors_say_nothing_about_health() {
        assert!(Failure::of(&upstream(400)).is_none());
        assert!(Failure::of(&upstream(404)).is_none());
        assert!(matches!(Failure::of(&upstream(500)), Some(Failure::Fault)));
        assert!(matches!(Failure::of(&upstream(408)), Some(Failure::Fault)));
    }
}
