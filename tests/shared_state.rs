//! Several aisbf instances on one real `redis-server` (`state.backend: "redis"`): a cooldown, a
//! 429 window and `rate_limit` spacing are shared; Redis killed mid-run leaves both instances
//! answering (degraded) until it returns. Each test starts its own redis-server on a free
//! loopback port with persistence off, in a temp dir.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use serde_json::{json, Value};
use support::openai_mock::OpenAiMock;
use support::*;

const KEY: &str = "sk-shared-state-secret-789";
const PREFIX: &str = "test-aisbf:";

// ---------- a real redis-server ----------

struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// `None` (with a loud message) only when redis-server is not installed: CI installs it.
    fn start() -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            // CI installs it (.ci/run): there a missing binary is a failure, not a skip.
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed"
            );
            eprintln!(
                "\n*** SKIPPED: redis-server is not installed (apt-get install redis-server; \
                 .ci/run installs it) ***\n"
            );
            return None;
        }
        let mut r = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.spawn();
        Some(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP / SIGCONT: a Redis that accepts bytes but does not answer (slow, not gone).
    fn pause(&self, paused: bool) {
        use nix::sys::signal::{kill, Signal};
        let pid = nix::unistd::Pid::from_raw(self.child.as_ref().unwrap().id() as i32);
        let sig = if paused {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        kill(pid, sig).unwrap();
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }

    /// Every key aisbf wrote, with its TTL in ms.
    fn keys(&self) -> Vec<(String, i64)> {
        let mut c = self.conn();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        keys.into_iter()
            .map(|k| {
                let ttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut c).unwrap();
                (k, ttl)
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused server would not die of SIGKILL any later, but let it run first.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
        self.kill();
    }
}

// ---------- gateways ----------

fn state_section(url: &str) -> Value {
    json!({"backend": "redis", "redis_url": url, "key_prefix": PREFIX})
}

/// Two instances on the same providers and the same Redis.
async fn pair(providers: &Value, redis: &RedisServer, tracking: Value) -> (Gateway, Gateway) {
    let mut out = Vec::new();
    for _ in 0..2 {
        let cfg = ConfigDir::new(providers.clone());
        cfg.aisbf(json!({"state": state_section(&redis.url()), "error_tracking": tracking}));
        out.push(Gateway::start_with(cfg).await);
    }
    let b = out.pop().unwrap();
    (out.pop().unwrap(), b)
}

async fn chat(gw: &Gateway, model: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap()
}

async fn state_of(gw: &Gateway) -> Value {
    get_json(&gw.url("/")).await["state"].clone()
}

fn assert_keys_prefixed_and_expiring(redis: &RedisServer) {
    let keys = redis.keys();
    assert!(!keys.is_empty(), "aisbf wrote its state to Redis");
    for (k, ttl) in keys {
        assert!(k.starts_with(PREFIX), "{k} lives under key_prefix");
        assert!(ttl > 0, "{k} carries an expiry (PTTL {ttl})");
    }
}

// ---------- tests ----------

#[tokio::test]
async fn failures_through_one_instance_make_the_other_skip_the_provider() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let m = OpenAiMock::start().await;
    let providers = json!({"p": provider("openai", &m.endpoint, Some(KEY), &["m"])});
    let (a, b) = pair(
        &providers,
        &redis,
        json!({"max_failures": 2, "cooldown_seconds": 60}),
    )
    .await;
    assert_eq!(
        state_of(&a).await,
        json!({"backend": "redis", "status": "ok"})
    );

    m.set_fault(Fault::Status(500, "{}".into()));
    for _ in 0..2 {
        assert_eq!(chat(&a, "p/m").await.status(), 502);
    }
    assert_eq!(m.received.count(), 2);
    // B never failed itself, yet it knows p is cooling and does not call it.
    m.set_fault(Fault::None);
    let resp = chat(&b, "p/m").await;
    assert_eq!(resp.status(), 503, "B refuses the provider A saw fail");
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(m.received.count(), 2, "B did not reach the provider");
    let status = get_json(&b.url("/")).await;
    assert_eq!(status["provider_status"]["p"]["state"], "cooling");
    assert_keys_prefixed_and_expiring(&redis);
}

#[tokio::test]
async fn a_429_window_is_shared() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let m = OpenAiMock::start().await;
    let providers = json!({"p": provider("openai", &m.endpoint, Some(KEY), &["m"])});
    let (a, b) = pair(
        &providers,
        &redis,
        json!({"max_failures": 100, "cooldown_seconds": 300}),
    )
    .await;
    m.set_fault(Fault::RateLimited(30));
    assert_eq!(chat(&a, "p/m").await.status(), 429);
    m.set_fault(Fault::None);
    let resp = chat(&b, "p/m").await;
    assert_ne!(resp.status(), 200, "B waits out A's 429 window");
    assert_eq!(m.received.count(), 1, "B did not reach the provider");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (20..=30).contains(&retry),
        "the window is the upstream's Retry-After ({retry})"
    );
    // The cooldown key expires with the window it holds.
    let keys = redis.keys();
    let cooling = keys
        .iter()
        .find(|(k, _)| k.ends_with(":cooling"))
        .expect("a cooling key");
    assert!(cooling.1 > 20_000 && cooling.1 <= 30_000, "{cooling:?}");
    assert_keys_prefixed_and_expiring(&redis);
}

/// An OpenAI upstream that records when each request arrived.
async fn timestamp_mock() -> (String, Arc<Mutex<Vec<Instant>>>) {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post({
            let arrivals = arrivals.clone();
            move || async move {
                arrivals.lock().unwrap().push(Instant::now());
                axum::Json(json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "ok"}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
                }))
            }
        }),
    );
    (format!("{}/v1", serve_app(app).await), arrivals)
}

/// Sends `n` requests at once through each gateway; returns the smallest gap between two
/// arrivals at the upstream.
async fn smallest_gap(gws: [&Gateway; 2], n: usize, arrivals: &Mutex<Vec<Instant>>) -> Duration {
    let mut calls = Vec::new();
    for gw in gws {
        for _ in 0..n {
            calls.push(chat(gw, "p/m"));
        }
    }
    for resp in futures::future::join_all(calls).await {
        assert_eq!(resp.status(), 200);
    }
    let mut at = arrivals.lock().unwrap().clone();
    assert_eq!(at.len(), 2 * n);
    at.sort();
    at.windows(2).map(|w| w[1] - w[0]).min().unwrap()
}

#[tokio::test]
async fn rate_limit_spacing_holds_across_instances() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    const SPACING: f64 = 1.0;
    let (endpoint, arrivals) = timestamp_mock().await;
    let mut p = provider("openai", &endpoint, Some(KEY), &["m"]);
    p["rate_limit"] = json!(SPACING);
    let providers = json!({ "p": p });
    let (a, b) = pair(
        &providers,
        &redis,
        json!({"max_failures": 3, "cooldown_seconds": 300}),
    )
    .await;
    let gap = smallest_gap([&a, &b], 3, &arrivals).await;
    // Timers fire late, never early; the margin covers the delay between a slot being taken
    // and the request reaching the mock on a loaded machine (without shared state the gap
    // is ~0, see below).
    assert!(
        gap >= Duration::from_secs_f64(SPACING - 0.25),
        "two requests {gap:?} apart, spacing {SPACING}s"
    );
    assert_keys_prefixed_and_expiring(&redis);

    // The control: the same two instances on memory state each keep their own spacing, so
    // the upstream sees requests closer than the limit (what the shared state prevents).
    let (endpoint, arrivals) = timestamp_mock().await;
    let mut p = provider("openai", &endpoint, Some(KEY), &["m"]);
    p["rate_limit"] = json!(SPACING);
    let providers = json!({ "p": p });
    let a = Gateway::start_with(ConfigDir::new(providers.clone())).await;
    let b = Gateway::start_with(ConfigDir::new(providers)).await;
    let gap = smallest_gap([&a, &b], 1, &arrivals).await;
    assert!(
        gap < Duration::from_secs_f64(SPACING - 0.25),
        "memory state is per instance ({gap:?})"
    );
}

/// This thread's log lines (a current-thread test runtime runs every task here, the
/// gateways' included), so parallel tests do not mix their lines in.
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let writer = Buf(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .finish();
    (buf, tracing::subscriber::set_default(subscriber))
}

fn count(logs: &Mutex<Vec<u8>>, needle: &str) -> usize {
    String::from_utf8_lossy(&logs.lock().unwrap())
        .matches(needle)
        .count()
}

#[tokio::test]
async fn redis_killed_mid_run_degrades_then_recovers() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (logs, _guard) = capture_logs();
    let m = OpenAiMock::start().await;
    let providers = json!({"p": provider("openai", &m.endpoint, Some(KEY), &["m"])});
    let (a, b) = pair(
        &providers,
        &redis,
        json!({"max_failures": 2, "cooldown_seconds": 60}),
    )
    .await;
    for gw in [&a, &b] {
        assert_eq!(chat(gw, "p/m").await.status(), 200);
        assert_eq!(state_of(gw).await["status"], "ok");
    }

    redis.kill();
    for round in 0..3 {
        for gw in [&a, &b] {
            let t = Instant::now();
            let resp = chat(gw, "p/m").await;
            assert_eq!(
                resp.status(),
                200,
                "round {round}: Redis down, still served"
            );
            assert_eq!(
                resp.json::<Value>().await.unwrap()["object"],
                "chat.completion"
            );
            // Bounded Redis calls: a request pays at most a few of them, never a hang.
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        }
    }
    for gw in [&a, &b] {
        assert_eq!(
            state_of(gw).await,
            json!({"backend": "redis", "status": "degraded"})
        );
        assert_eq!(backend_up_gauge(gw).await, 0, "/metrics says Redis is down");
    }

    // Warned once per instance for the whole outage, however many requests it served.
    assert_eq!(count(&logs, "state backend redis is unavailable"), 2);

    redis.spawn();
    let back = Instant::now();
    for gw in [&a, &b] {
        loop {
            if state_of(gw).await["status"] == "ok" {
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(20),
                "back on shared state after Redis returned"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "back on shared state {:?} after Redis returned",
        back.elapsed()
    );
    assert_eq!(count(&logs, "state backend redis answers again"), 2);
    for gw in [&a, &b] {
        assert_eq!(backend_up_gauge(gw).await, 1, "/metrics says Redis is back");
    }
    // Shared again: failures through A (recorded on the new, empty Redis) cool p for B.
    m.set_fault(Fault::Status(500, "{}".into()));
    for _ in 0..2 {
        assert_eq!(chat(&a, "p/m").await.status(), 502);
    }
    let before = m.received.count();
    assert_eq!(chat(&b, "p/m").await.status(), 503);
    assert_eq!(m.received.count(), before, "B skips the provider again");
}

#[tokio::test]
async fn a_redis_that_stops_answering_costs_at_most_the_call_bound() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let m = OpenAiMock::start().await;
    let providers = json!({"p": provider("openai", &m.endpoint, Some(KEY), &["m"])});
    let (a, b) = pair(
        &providers,
        &redis,
        json!({"max_failures": 2, "cooldown_seconds": 60}),
    )
    .await;
    assert_eq!(chat(&a, "p/m").await.status(), 200);

    redis.pause(true);
    for gw in [&a, &b] {
        for _ in 0..3 {
            let t = Instant::now();
            assert_eq!(chat(gw, "p/m").await.status(), 200);
            // One call times out (500 ms), then the instance is on local state.
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        }
        assert_eq!(state_of(gw).await["status"], "degraded");
    }
    redis.pause(false);
    let back = Instant::now();
    for gw in [&a, &b] {
        while state_of(gw).await["status"] != "ok" {
            assert!(back.elapsed() < Duration::from_secs(20), "recovers");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(chat(&b, "p/m").await.status(), 200);
}

#[tokio::test]
async fn redis_down_at_startup_serves_on_local_state() {
    // Nothing listens on this port: the instance starts, serves, and says it is degraded.
    let port = free_port();
    let m = OpenAiMock::start().await;
    let cfg = ConfigDir::new(json!({"p": provider("openai", &m.endpoint, Some(KEY), &["m"])}));
    cfg.aisbf(
        json!({"state": state_section(&format!("redis://127.0.0.1:{port}/0")),
        "error_tracking": {"max_failures": 1, "cooldown_seconds": 60}}),
    );
    let gw = Gateway::start_with(cfg).await;
    assert_eq!(chat(&gw, "p/m").await.status(), 200);
    assert_eq!(
        state_of(&gw).await,
        json!({"backend": "redis", "status": "degraded"})
    );
    // Local state still does its job: one failure cools the provider for this instance.
    m.set_fault(Fault::Status(500, "{}".into()));
    assert_eq!(chat(&gw, "p/m").await.status(), 502);
    assert_eq!(chat(&gw, "p/m").await.status(), 503);
    assert_eq!(m.received.count(), 2);
}

#[tokio::test]
async fn the_state_section_is_validated_once_at_load() {
    let bad = [
        (json!({"backend": "mongo"}), "state.backend"),
        (json!({"backend": "redis"}), "state.redis_url"),
        (
            json!({"backend": "redis", "redis_url": "http://127.0.0.1:6379"}),
            "state.redis_url",
        ),
        (
            json!({"backend": "redis", "redis_url": "rediss://127.0.0.1:6379"}),
            "state.redis_url",
        ),
        (json!({"key_prefix": ""}), "state.key_prefix"),
    ];
    for (state, field) in bad {
        let cfg = ConfigDir::new(json!({}));
        cfg.aisbf(json!({ "state": state }));
        let e = aisbf::config::load(cfg.path())
            .expect_err("refused")
            .to_string();
        assert!(e.contains("aisbf.json"), "{e}");
        assert!(e.contains(field), "{e} names {field}");
    }
    // A password in the URL never reaches an error message.
    let cfg = ConfigDir::new(json!({}));
    cfg.aisbf(json!({"state": {"backend": "redis", "redis_url": "redis://:hunter2@[::1"}}));
    let e = aisbf::config::load(cfg.path()).unwrap_err().to_string();
    assert!(
        e.contains("state.redis_url") && !e.contains("hunter2"),
        "{e}"
    );

    // Default: memory, ok.
    let gw = Gateway::start_with(ConfigDir::new(json!({}))).await;
    assert_eq!(
        state_of(&gw).await,
        json!({"backend": "memory", "status": "ok"})
    );
}

#[tokio::test]
async fn an_autoselect_choice_made_by_one_instance_is_reused_by_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let selector = support::scripted_mock::ScriptedMock::start(
        "<aisbf_model_autoselection>c/code-1</aisbf_model_autoselection>",
    )
    .await;
    let coder = OpenAiMock::start().await;
    let providers = json!({
        "sel": provider("openai", &selector.endpoint, Some("sk-sel"), &["pick"]),
        "c": provider("openai", &coder.endpoint, Some(KEY), &["code-1"]),
    });
    let mut gws = Vec::new();
    for _ in 0..2 {
        let cfg = ConfigDir::new(providers.clone());
        cfg.aisbf(json!({"state": state_section(&redis.url())}));
        cfg.write(
            "autoselect.json",
            &json!({"autoselect": {"auto": {
                "selection_model": "sel/pick",
                "fallback": "c/code-1",
                "available_models": [{"model_id": "c/code-1", "description": "code"}]
            }}}),
        );
        gws.push(Gateway::start_with(cfg).await);
    }
    for gw in &gws {
        let resp = chat(gw, "autoselect/auto").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-aisbf-provider"], "c");
    }
    assert_eq!(selector.received.count(), 1, "B reused A's selection");
    assert_eq!(coder.received.count(), 2);
    let keys = redis.keys();
    let cached = keys
        .iter()
        .find(|(k, _)| k.starts_with(&format!("{PREFIX}autoselect:auto:")))
        .expect("the choice is on Redis");
    assert!(cached.1 > 0 && cached.1 <= 60_000, "{cached:?}");
}

/// The Redis store decides exactly as the in-memory one, call for call (the sequence of
/// `health.rs`'s unit tests), on a real Redis.
#[tokio::test]
async fn the_redis_store_decides_like_the_memory_store() {
    use aisbf::routing::health::{Failure, HealthStore, MemoryStore};
    use aisbf::routing::shared_state::{Redis, RedisHealth};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let backend = Redis::connect(&redis.url(), PREFIX).unwrap();
    let shared = RedisHealth::new(
        backend.clone(),
        Box::new(MemoryStore::new(["p".to_string(), "q".to_string()])),
    );
    let memory = MemoryStore::new(["p".to_string(), "q".to_string()]);
    let stores: [&dyn HealthStore; 2] = [&memory, &shared];
    let cd = Duration::from_secs(60);
    for s in stores {
        assert!(!s.record_failure("p", Failure::Fault, 3, cd).await);
        assert!(!s.record_failure("p", Failure::Fault, 3, cd).await);
        assert_eq!(s.status("p").await.failures, 2);
        s.record_success("p").await;
        assert_eq!(s.status("p").await.failures, 0);
        assert!(!s.record_failure("p", Failure::Fault, 3, cd).await);
        assert!(!s.record_failure("p", Failure::Fault, 3, cd).await);
        assert!(s.cooling_until("p").await.is_none());
        assert!(
            s.record_failure("p", Failure::Fault, 3, cd).await,
            "the 3rd trips it"
        );
        let left = s.cooling_until("p").await.expect("cooling");
        let left = left.duration_since(std::time::SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(55) && left <= cd, "{left:?}");
        let st = s.status("p").await;
        assert_eq!((st.state, st.failures), ("cooling", 0));
        // Failures of requests still in flight neither restart nor extend it.
        for _ in 0..5 {
            assert!(!s.record_failure("p", Failure::Fault, 3, cd).await);
            let rl = Failure::RateLimited(Some(Duration::from_secs(600)));
            assert!(!s.record_failure("p", rl, 3, cd).await);
        }
        assert!(s.cooling_until("p").await.unwrap() < std::time::SystemTime::now() + cd);
        // A 429 cools at once, for its Retry-After.
        let rl = Failure::RateLimited(Some(Duration::from_secs(7)));
        assert!(s.record_failure("q", rl, 3, cd).await);
        let left = s.cooling_until("q").await.unwrap();
        let left = left.duration_since(std::time::SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(5) && left <= Duration::from_secs(7));
    }
    // Decided on Redis, not on the local fallback (which would agree trivially).
    assert!(backend.backend_up());
    assert_keys_prefixed_and_expiring(&redis);
}

/// `aisbf_state_backend_up` as `/metrics` reports it.
async fn backend_up_gauge(gw: &Gateway) -> i64 {
    let text = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("aisbf_state_backend_up "))
        .unwrap_or_else(|| panic!("no aisbf_state_backend_up in {text}"));
    line.rsplit(' ').next().unwrap().trim().parse().unwrap()
}
