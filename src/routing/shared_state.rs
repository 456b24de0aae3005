//! State shared by several instances on one Redis (`aisbf.json` `state.backend: "redis"`):
//! failure counts and cooldowns (`RedisHealth`, a second `HealthStore`), `rate_limit` spacing
//! (`RedisSpacing`) and the autoselect selection cache (`Redis::cached_choice`).
//!
//! Each decision is one Lua script (atomic on the server), every key lives under `key_prefix`
//! and carries an expiry. Redis is an optimisation, never a dependency of a request: every
//! call is bounded by `CALL_TIMEOUT`; on an error or a timeout the instance marks the backend
//! down, warns once, serves on its own in-memory state, and a monitor pings Redis every
//! `PROBE_EVERY` until it answers, then the instance is back on shared state.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::health::{Failure, HealthStore, KeyStatus};

/// The bound of every Redis call (the contract says ≤ 500 ms).
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a down backend is pinged: back on shared state well within 5 s of Redis answering.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A failure count with no new failure for this long is forgotten (every key expires).
const FAILURES_TTL: Duration = Duration::from_secs(3600);
/// How long a cached autoselect choice is reused (as the in-memory cache).
pub const CHOICE_TTL: Duration = Duration::from_secs(60);

/// The connection and whether it currently answers.
pub struct Redis {
    conn: ConnectionManager,
    prefix: String,
    up: AtomicBool,
    me: Weak<Redis>,
}

#[derive(Debug, thiserror::Error)]
#[error("state.redis_url: {0}")]
pub struct RedisSetupError(String);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Redis {
    /// Builds the client without any I/O: the first call connects (so a Redis that is down at
    /// startup does not stop the server; it starts degraded and catches up).
    pub fn connect(url: &str, prefix: &str) -> Result<Arc<Redis>, RedisSetupError> {
        // The URL may hold a password: errors name the kind of problem only.
        let client = redis::Client::open(url).map_err(|e| RedisSetupError(e.category().into()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            // Few, short reconnect attempts: the monitor retries every PROBE_EVERY anyway, and a
            // long backoff would keep the instance on local state after Redis is back.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(250));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RedisSetupError(e.category().into()))?;
        Ok(Arc::new_cyclic(|me| Redis {
            conn,
            prefix: prefix.to_string(),
            // Optimistic: the first call finds out; a failure then warns once.
            up: AtomicBool::new(true),
            me: me.clone(),
        }))
    }

    /// Is the shared state in use (`false`: Redis is unreachable and this instance serves on
    /// its local state)? For `GET /` and the `aisbf_state_backend_up` gauge.
    pub fn backend_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// Runs one Redis call, bounded; `None` when the backend is down or the call failed (the
    /// caller then uses local state). A failure marks the backend down.
    async fn call<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.backend_up() {
            return None;
        }
        match tokio::time::timeout(CALL_TIMEOUT, f(self.conn.clone())).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.down(&format!("{} error", e.category()));
                None
            }
            Err(_) => {
                self.down(&format!("no answer within {} ms", CALL_TIMEOUT.as_millis()));
                None
            }
        }
    }

    /// The first failure of an outage warns and starts the monitor; later ones say nothing.
    fn down(&self, why: &str) {
        if self
            .up
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        tracing::warn!(
            "state backend redis is unavailable ({why}): serving on local state until it answers"
        );
        let me = self.me.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                // The state was dropped (a reload replaced it): nothing left to watch.
                let Some(redis) = me.upgrade() else { return };
                let mut conn = redis.conn.clone();
                let ping = redis::cmd("PING");
                let answer =
                    tokio::time::timeout(CALL_TIMEOUT, ping.query_async::<String>(&mut conn));
                if let Ok(Ok(_)) = answer.await {
                    redis.up.store(true, Ordering::Release);
                    tracing::info!("state backend redis answers again: back on shared state");
                    return;
                }
            }
        });
    }

    /// The autoselect choice cached under `key` by any instance, if fresh.
    pub async fn cached_choice(&self, name: &str, key: u64) -> Option<String> {
        let k = self.key("autoselect", &format!("{name}:{key:016x}"));
        self.call(|mut c| async move { redis::cmd("GET").arg(k).query_async(&mut c).await })
            .await
            .flatten()
    }

    /// Shares a choice for `CHOICE_TTL`.
    pub async fn store_choice(&self, name: &str, key: u64, choice: &str) {
        let k = self.key("autoselect", &format!("{name}:{key:016x}"));
        let choice = choice.to_string();
        let _: Option<()> = self
            .call(|mut c| async move {
                redis::cmd("SET")
                    .arg(k)
                    .arg(choice)
                    .arg("PX")
                    .arg(ms(CHOICE_TTL))
                    .query_async(&mut c)
                    .await
            })
            .await;
    }
}

// ---------- health ----------

/// One failure, atomically: while cooling nothing changes; a fault counts (the count expires
/// after FAILURES_TTL without a new one) and trips the cooldown at `max_failures`; a 429 trips
/// it at once. Starting a cooldown clears the count. Returns 1 when this call started it.
/// KEYS: failures, cooling. ARGV: "fault"|"rate", max_failures, cooldown ms, failures TTL ms.
static RECORD_FAILURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[1] == 'fault' then
  local n = redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  if n < tonumber(ARGV[2]) then return 0 end
end
redis.call('DEL', KEYS[1])
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
end
return 1
",
    )
});

/// A key's failure count and the milliseconds left of its cooldown (<= 0: not cooling).
static STATUS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
return {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('PTTL', KEYS[2])}
",
    )
});

/// `HealthStore` on Redis, with the in-memory store as the fallback. Every update is also
/// applied locally, so an outage starts from what this instance has seen itself. Cooldowns
/// are read as the key's remaining TTL, so instances with skewed clocks agree.
pub struct RedisHealth {
    redis: Arc<Redis>,
    /// The fallback (a `MemoryStore`), behind the trait so a reload can rebuild it.
    local: Box<dyn HealthStore>,
}

impl RedisHealth {
    pub fn new(redis: Arc<Redis>, local: Box<dyn HealthStore>) -> RedisHealth {
        RedisHealth { redis, local }
    }

    fn keys(&self, key: &str) -> (String, String) {
        (
            self.redis.key("health", &format!("{key}:failures")),
            self.redis.key("health", &format!("{key}:cooling")),
        )
    }
}

#[async_trait]
impl HealthStore for RedisHealth {
    /// A reload keeps the shared connection and rebuilds the local fallback for the new keys.
    fn rebuilt(&self, keys: Vec<String>) -> Box<dyn HealthStore> {
        Box::new(RedisHealth::new(
            self.redis.clone(),
            self.local.rebuilt(keys),
        ))
    }

    async fn cooling_until(&self, key: &str) -> Option<SystemTime> {
        let (_, cooling) = self.keys(key);
        let left: Option<i64> = self
            .redis
            .call(|mut c| async move { redis::cmd("PTTL").arg(cooling).query_async(&mut c).await })
            .await;
        match left {
            Some(ms) if ms > 0 => Some(SystemTime::now() + Duration::from_millis(ms as u64)),
            Some(_) => None,
            None => self.local.cooling_until(key).await,
        }
    }

    async fn record_success(&self, key: &str) {
        self.local.record_success(key).await;
        let (failures, _) = self.keys(key);
        let _: Option<()> = self
            .redis
            .call(|mut c| async move { redis::cmd("DEL").arg(failures).query_async(&mut c).await })
            .await;
    }

    async fn record_failure(
        &self,
        key: &str,
        failure: Failure,
        max_failures: u32,
        cooldown: Duration,
    ) -> bool {
        let local = self
            .local
            .record_failure(key, failure, max_failures, cooldown)
            .await;
        let (failures, cooling) = self.keys(key);
        let (kind, cool) = match failure {
            Failure::Fault => ("fault", cooldown),
            Failure::RateLimited(after) => ("rate", after.unwrap_or(cooldown)),
        };
        let started: Option<i64> = self
            .redis
            .call(|mut c| async move {
                RECORD_FAILURE
                    .key(failures)
                    .key(cooling)
                    .arg(kind)
                    .arg(max_failures)
                    .arg(ms(cool))
                    .arg(ms(FAILURES_TTL))
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        started.map_or(local, |s| s == 1)
    }

    async fn status(&self, key: &str) -> KeyStatus {
        let (failures, cooling) = self.keys(key);
        let shared: Option<(u32, i64)> = self
            .redis
            .call(
                |mut c| async move { STATUS.key(failures).key(cooling).invoke_async(&mut c).await },
            )
            .await;
        let Some((failures, left)) = shared else {
            return self.local.status(key).await;
        };
        let until = (left > 0).then(|| {
            let t = SystemTime::now() + Duration::from_millis(left as u64);
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
                .unwrap_or(0)
        });
        KeyStatus {
            state: if until.is_some() { "cooling" } else { "ok" },
            until,
            failures,
        }
    }
}

// ---------- rate_limit spacing ----------

/// Takes the slot of KEYS[1] if it is free now, by Redis's own clock (so every instance uses
/// one clock): the next free instant becomes now + interval. Returns 0 when taken, else the
/// microseconds until it is free. ARGV: interval µs.
static TAKE_SLOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt > now then return nxt - now end
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', now + interval), 'PX', math.ceil(interval / 1000) + 1000)
return 0
",
    )
});

/// Microseconds until KEYS[1] is free (0: free now), taking nothing.
static UNTIL_FREE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt > now then return nxt - now end
return 0
",
    )
});

/// Spacing decisions that several instances share. `None` from a method: the shared state is
/// unavailable and the caller decides on its local gate.
#[async_trait]
pub trait SharedSpacing: Send + Sync {
    /// Takes `key`'s slot if it is free now (`Ok`), else says how long until it is.
    async fn try_take(&self, key: &str, interval: Duration) -> Option<Result<(), Duration>>;
    /// How long until `key` is free (`None` inside: free now), taking nothing.
    async fn until_free(&self, key: &str) -> Option<Option<Duration>>;
}

pub struct RedisSpacing {
    redis: Arc<Redis>,
}

impl RedisSpacing {
    pub fn new(redis: Arc<Redis>) -> RedisSpacing {
        RedisSpacing { redis }
    }
}

fn wait(us: i64) -> Option<Duration> {
    (us > 0).then(|| Duration::from_micros(us as u64))
}

#[async_trait]
impl SharedSpacing for RedisSpacing {
    async fn try_take(&self, key: &str, interval: Duration) -> Option<Result<(), Duration>> {
        let k = self.redis.key("spacing", key);
        let interval = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX / 4);
        let us: i64 = self
            .redis
            .call(|mut c| async move { TAKE_SLOT.key(k).arg(interval).invoke_async(&mut c).await })
            .await?;
        Some(wait(us).map_or(Ok(()), Err))
    }

    async fn until_free(&self, key: &str) -> Option<Option<Duration>> {
        let k = self.redis.key("spacing", key);
        let us: i64 = self
            .redis
            .call(|mut c| async move { UNTIL_FREE.key(k).invoke_async(&mut c).await })
            .await?;
        Some(wait(us))
    }
}
