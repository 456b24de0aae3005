//! Client-side spacing (`rate_limit`: minimum seconds between two requests to a provider, or
//! to a model when the model sets its own), as the original.
//!
//! Each limited key holds one atomic "next allowed instant". A request either takes a free
//! slot without waiting (`try_acquire`, what a rotation does so it can skip a busy entry) or
//! sleeps until the slot is free and takes it then (`wait_for_slot`, bounded): nothing is
//! reserved while sleeping, so a client that hangs up holds no slot. We do not use `governor`:
//! its GCRA answers "may I go now", while a rotation needs "which of these keys is free, and
//! when is the earliest one free" plus a reservation of that exact slot, which is a dozen
//! lines on one atomic per key.
//!
//! With `state.backend: "redis"` the decision is taken on Redis (`SharedSpacing`), so the
//! spacing holds across every instance; the local gate decides while Redis is unavailable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shared_state::SharedSpacing;
use crate::config::Config;

struct Gate {
    /// `provider` or `provider/model`: the name of the shared key.
    key: String,
    interval: u64,
    /// Nanoseconds since `RateLimits::base` of the next free slot.
    next: AtomicU64,
}

impl Gate {
    fn try_acquire(&self, now: u64) -> Result<(), u64> {
        let mut cur = self.next.load(Ordering::Acquire);
        loop {
            if cur > now {
                return Err(cur);
            }
            match self.next.compare_exchange_weak(
                cur,
                now + self.interval,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }
}

#[derive(Default)]
struct Scope {
    provider: Option<Gate>,
    models: HashMap<String, Gate>,
}

/// Every limited key, built once from the configuration; unlimited keys have no gate and
/// cost one map lookup.
pub struct RateLimits {
    base: Instant,
    scopes: HashMap<String, Scope>,
    shared: Option<Arc<dyn SharedSpacing>>,
}

fn gate(key: String, seconds: f64) -> Option<Gate> {
    let d = Duration::try_from_secs_f64(seconds).ok()?;
    (!d.is_zero()).then(|| Gate {
        key,
        interval: u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 4),
        next: AtomicU64::new(0),
    })
}

impl RateLimits {
    /// A model's `rate_limit` in providers.json or in a rotation entry gives it its own key
    /// (the larger value when both set one); otherwise the provider's applies.
    pub fn build(config: &Config) -> RateLimits {
        let mut seconds: HashMap<&str, (f64, HashMap<&str, f64>)> = HashMap::new();
        for (id, p) in &config.providers {
            let models = p
                .models
                .iter()
                .filter_map(|m| Some((m.name.as_str(), m.rate_limit?)))
                .collect();
            seconds.insert(id, (p.rate_limit, models));
        }
        for r in config.rotations.values() {
            for rp in &r.providers {
                let Some((_, models)) = seconds.get_mut(rp.provider_id.as_str()) else {
                    continue;
                };
                for m in &rp.models {
                    if let Some(s) = m.rate_limit {
                        let v = models.entry(m.name.as_str()).or_insert(s);
                        *v = v.max(s);
                    }
                }
            }
        }
        let scopes = seconds
            .into_iter()
            .map(|(id, (p, models))| {
                let scope = Scope {
                    provider: gate(id.to_string(), p),
                    models: models
                        .into_iter()
                        .filter_map(|(m, s)| Some((m.to_string(), gate(format!("{id}/{m}"), s)?)))
                        .collect(),
                };
                (id.to_string(), scope)
            })
            .collect();
        RateLimits {
            base: Instant::now(),
            scopes,
            shared: None,
        }
    }

    /// Takes the spacing decisions on `shared` (several instances), the local gates standing
    /// in while it is unavailable.
    pub fn with_shared(mut self, shared: Arc<dyn SharedSpacing>) -> RateLimits {
        self.shared = Some(shared);
        self
    }

    /// Takes `g`'s slot if it is free now, else says when it is.
    async fn take(&self, g: &Gate) -> Result<(), Instant> {
        if let Some(shared) = &self.shared {
            let interval = Duration::from_nanos(g.interval);
            if let Some(taken) = shared.try_take(&g.key, interval).await {
                return taken.map_err(|wait| Instant::now() + wait);
            }
        }
        g.try_acquire(self.now()).map_err(|ns| self.instant(ns))
    }

    fn gate(&self, provider: &str, model: &str) -> Option<&Gate> {
        let scope = self.scopes.get(provider)?;
        scope.models.get(model).or(scope.provider.as_ref())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX / 4)
    }

    fn instant(&self, ns: u64) -> Instant {
        self.base + Duration::from_nanos(ns)
    }

    /// Takes the slot if it is free now; otherwise says when the next one is.
    pub async fn try_acquire(&self, provider: &str, model: &str) -> Result<(), Instant> {
        match self.gate(provider, model) {
            None => Ok(()),
            Some(g) => self.take(g).await,
        }
    }

    /// When the key is next free (`None`: free now), without taking anything.
    pub async fn next_free(&self, provider: &str, model: &str) -> Option<Instant> {
        let g = self.gate(provider, model)?;
        if let Some(shared) = &self.shared {
            if let Some(wait) = shared.until_free(&g.key).await {
                return wait.map(|w| Instant::now() + w);
            }
        }
        let next = g.next.load(Ordering::Acquire);
        (next > self.now()).then(|| self.instant(next))
    }

    /// Waits for the key's next free slot and takes it, waiting at most `max_wait`
    /// (`Err(when it is next free)` otherwise, at once). The slot is taken only once it is
    /// free: dropping this future (a client that hung up) holds nothing. Other keys are
    /// never blocked.
    pub async fn wait_for_slot(
        &self,
        provider: &str,
        model: &str,
        max_wait: Duration,
    ) -> Result<(), Instant> {
        let Some(g) = self.gate(provider, model) else {
            return Ok(());
        };
        let deadline = Instant::now() + max_wait;
        // Another waiter (here or on another instance) may take this slot first: then the
        // loop waits for the next.
        loop {
            let next = match self.take(g).await {
                Ok(()) => return Ok(()),
                Err(next) => next,
            };
            if next > deadline {
                return Err(next);
            }
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing() {
        let g = gate("p".into(), 1.0).unwrap();
        let s = 1_000_000_000;
        assert!(g.try_acquire(0).is_ok());
        assert_eq!(g.try_acquire(s / 2), Err(s));
        assert!(g.try_acquire(s).is_ok());
        assert!(gate("p".into(), 0.0).is_none());
    }

    fn limits(seconds: f64) -> RateLimits {
        let dir = tempfile::tempdir().unwrap();
        crate::config::ensure_defaults(dir.path()).unwrap();
        let mut config = crate::config::load(dir.path()).unwrap();
        config.providers.get_mut("openai").unwrap().rate_limit = seconds;
        RateLimits::build(&config)
    }

    /// A waiter that goes away (its client hung up) leaves the next slot free.
    #[tokio::test]
    async fn a_dropped_waiter_holds_no_slot() {
        let l = limits(10.0);
        assert!(l.try_acquire("openai", "m").await.is_ok());
        let free_at = l.next_free("openai", "m").await.unwrap();
        let waiter = l.wait_for_slot("openai", "m", Duration::from_secs(60));
        let gave_up = tokio::time::timeout(Duration::from_millis(50), waiter).await;
        assert!(gave_up.is_err(), "still waiting when dropped");
        assert_eq!(
            l.next_free("openai", "m").await,
            Some(free_at),
            "nothing reserved"
        );
    }

    /// The wait is bounded: a slot further away than `max_wait` is refused at once; one
    /// within it is waited for.
    #[tokio::test]
    async fn the_wait_is_bounded() {
        let l = limits(30.0);
        assert!(l.wait_for_slot("openai", "m", Duration::ZERO).await.is_ok());
        let started = Instant::now();
        let refused = l.wait_for_slot("openai", "m", Duration::from_secs(5)).await;
        assert!(refused.is_err_and(|next| next > started + Duration::from_secs(25)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused without waiting"
        );

        let l = limits(0.2);
        assert!(l.try_acquire("openai", "m").await.is_ok());
        let started = Instant::now();
        let waited = l
            .wait_for_slot("openai", "m", Duration::from_secs(30))
            .await;
        assert!(waited.is_ok(), "a slot within the bound is waited for");
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}
