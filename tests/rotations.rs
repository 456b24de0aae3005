//! Rotations against mock OpenAI upstreams that can be told to fail: weighted draw, failover,
//! cooldowns, 4xx passthrough, all-fail errors, rate-limit spacing, concurrency.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use support::openai_mock::{OpenAiMock, REPLY};
use support::scripted_mock::ScriptedMock;
use support::*;

const KEY: &str = "sk-rotation-secret-456";

/// Providers `a`, `b` (and more) on their own mocks, model `m` each.
async fn mocks(n: usize) -> Vec<OpenAiMock> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(OpenAiMock::start().await);
    }
    v
}

fn providers(mocks: &[OpenAiMock]) -> Value {
    let mut p = json!({});
    for (i, m) in mocks.iter().enumerate() {
        let id = ((b'a' + i as u8) as char).to_string();
        p[id] = provider("openai", &m.endpoint, Some(KEY), &["m"]);
    }
    p
}

/// A rotation `r` over (provider id, weight) entries, weight on the model entry.
fn rotation(entries: &[(&str, f64)]) -> Value {
    let providers: Vec<Value> = entries
        .iter()
        .map(|(id, w)| json!({"provider_id": id, "models": [{"name": "m", "weight": w}]}))
        .collect();
    json!({"rotations": {"r": {"model_name": "r", "providers": providers}}})
}

async fn chat(gw: &Gateway, path: &str, model: &str, stream: bool) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .json(&json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap()
}

async fn rot(gw: &Gateway) -> reqwest::Response {
    chat(gw, "/api/rotations/chat/completions", "r", false).await
}

fn served_by(resp: &reqwest::Response) -> String {
    resp.headers()["x-aisbf-provider"]
        .to_str()
        .unwrap()
        .to_string()
}

async fn error_body(resp: reqwest::Response) -> Value {
    let v: Value = resp.json().await.unwrap();
    for k in ["message", "type"] {
        assert!(v["error"][k].is_string(), "error.{k} in {v}");
    }
    assert!(
        v["error"].get("code").is_some() && v["error"]["param"].is_null(),
        "{v}"
    );
    v
}

async fn root(gw: &Gateway) -> Value {
    get_json(&gw.url("/")).await
}

#[tokio::test]
async fn weighted_draw_follows_weights() {
    let m = mocks(2).await;
    let cfg = ConfigDir::new(providers(&m));
    // a's weight comes from its model entry, b's from its rotation provider entry.
    cfg.write(
        "rotations.json",
        &json!({"rotations": {"r": {"providers": [
            {"provider_id": "a", "models": [{"name": "m", "weight": 1}]},
            {"provider_id": "b", "weight": 3, "models": [{"name": "m"}]}
        ]}}}),
    );
    let gw = Gateway::start_with(cfg).await;
    let headers: Vec<String> = futures::stream::iter(0..400)
        .map(|_| async { served_by(&rot(&gw).await) })
        .buffer_unordered(16)
        .collect()
        .await;
    let a = headers.iter().filter(|h| *h == "a").count();
    assert_eq!(a, m[0].received.count(), "the header names who served");
    assert_eq!(400 - a, m[1].received.count());
    // Binomial(400, 1/4): mean 100, sd 8.7; ±6 sd cannot flake.
    assert!((48..=152).contains(&a), "a served {a} of 400 at weight 1:3");
}

#[tokio::test]
async fn failover_is_invisible_to_the_client() {
    let m = mocks(2).await;
    let cfg = ConfigDir::new(providers(&m));
    // b has weight 0: a standby drawn only once a was tried, so a is always first.
    cfg.write("rotations.json", &rotation(&[("a", 1.0), ("b", 0.0)]))
        .aisbf(json!({"error_tracking": {"max_failures": 100, "cooldown_seconds": 300}}));
    let gw = Gateway::start_with(cfg).await;
    let faults = [
        Fault::Status(
            500,
            r#"{"error":{"message":"boom","type":"server_error"}}"#.into(),
        ),
        Fault::Status(503, "overloaded".into()),
        Fault::Reset,
        Fault::Malformed,
        Fault::RateLimited(0),
    ];
    for (i, f) in faults.iter().enumerate() {
        m[0].set_fault(f.clone());
        for stream in [false, true] {
            let resp = chat(&gw, "/v1/chat/completions", "rotation/r", stream).await;
            assert_eq!(resp.status(), 200, "{f:?} stream={stream}");
            assert_eq!(served_by(&resp), "b");
            assert_eq!(resp.headers()["x-aisbf-model"], "m");
            let text = resp.text().await.unwrap();
            if stream {
                assert_eq!(stream_text(&assert_openai_stream(&text)), REPLY.concat());
            } else {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_schema("CreateChatCompletionResponse", &v);
                assert_eq!(v["choices"][0]["message"]["content"], REPLY.concat());
            }
            // A 429 with Retry-After 0 cools a for no time at all: it is tried again.
        }
        assert_eq!(
            m[0].received.count(),
            2 * (i + 1),
            "a tried once per request"
        );
        assert_eq!(m[1].received.count(), 2 * (i + 1));
    }
    // b received the client's request, not a's leftovers.
    assert_eq!(m[1].received.last().body["messages"][0]["content"], "Hi");
    assert_eq!(m[1].received.last().body["model"], "m");
}

#[tokio::test]
async fn cooldown_after_exactly_max_failures_then_recovers() {
    let m = mocks(2).await;
    let cfg = ConfigDir::new(providers(&m));
    cfg.write("rotations.json", &rotation(&[("a", 1.0), ("b", 0.0)]))
        .aisbf(json!({"error_tracking": {"max_failures": 2, "cooldown_seconds": 1}}));
    let gw = Gateway::start_with(cfg).await;
    m[0].set_fault(Fault::Status(500, "{}".into()));

    assert_eq!(served_by(&rot(&gw).await), "b");
    assert_eq!(root(&gw).await["provider_status"]["a"]["state"], "ok");
    assert_eq!(root(&gw).await["provider_status"]["a"]["failures"], 1);
    assert_eq!(served_by(&rot(&gw).await), "b");
    assert_eq!(m[0].received.count(), 2);
    let st = root(&gw).await;
    assert_eq!(st["provider_status"]["a"]["state"], "cooling", "{st}");
    assert!(st["provider_status"]["a"]["until"].as_u64().unwrap() > 0);
    assert_eq!(st["provider_status"]["b"]["state"], "ok");
    assert!(
        st["providers"].is_array() && st["status"] == "ok",
        "existing keys kept"
    );

    // Cooling: a is not tried at all, and direct requests to it get 503 + Retry-After.
    for _ in 0..3 {
        assert_eq!(served_by(&rot(&gw).await), "b");
    }
    assert_eq!(
        m[0].received.count(),
        2,
        "no request reaches a cooling provider"
    );
    let direct = chat(&gw, "/api/a/chat/completions", "m", false).await;
    assert_eq!(direct.status(), 503);
    assert_eq!(direct.headers()["retry-after"], "1");
    let v = error_body(direct).await;
    assert_eq!(v["error"]["type"], "service_unavailable");
    assert_eq!(m[0].received.count(), 2);

    // After the cooldown a serves again, and one success resets its count.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    m[0].set_fault(Fault::None);
    assert_eq!(served_by(&rot(&gw).await), "a");
    let st = root(&gw).await;
    assert_eq!(st["provider_status"]["a"]["state"], "ok");
    assert_eq!(st["provider_status"]["a"]["failures"], 0);
}

#[tokio::test]
async fn mid_stream_failure_counts_toward_cooldown() {
    let m = mocks(1).await;
    let cfg = ConfigDir::new(providers(&m));
    cfg.aisbf(json!({"error_tracking": {"max_failures": 2, "cooldown_seconds": 60}}));
    let gw = Gateway::start_with(cfg).await;
    m[0].set_fault(Fault::BreakMidStream);
    for _ in 0..2 {
        let resp = chat(&gw, "/api/a/chat/completions", "m", true).await;
        assert_eq!(resp.status(), 200, "committed before the break");
        let text = resp.text().await.unwrap();
        assert!(
            sse_data(&text).iter().any(|d| d.contains("\"error\"")),
            "{text}"
        );
    }
    assert_eq!(root(&gw).await["provider_status"]["a"]["state"], "cooling");
    assert_eq!(
        chat(&gw, "/api/a/chat/completions", "m", true)
            .await
            .status(),
        503
    );
}

#[tokio::test]
async fn client_errors_pass_through_uncounted() {
    let m = mocks(2).await;
    let cfg = ConfigDir::new(providers(&m));
    cfg.write("rotations.json", &rotation(&[("a", 1.0), ("b", 0.0)]))
        .aisbf(json!({"error_tracking": {"max_failures": 2, "cooldown_seconds": 60}}));
    let gw = Gateway::start_with(cfg).await;
    m[0].set_fault(Fault::Status(
        400,
        r#"{"error":{"message":"'messages' is too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#.into(),
    ));
    for _ in 0..4 {
        let resp = rot(&gw).await;
        assert_eq!(resp.status(), 400);
        let v = error_body(resp).await;
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("'messages' is too long"), "{msg}");
        assert_eq!(v["error"]["code"], "context_length_exceeded");
    }
    assert_eq!(m[0].received.count(), 4, "never cooled");
    assert_eq!(
        m[1].received.count(),
        0,
        "no failover on the client's fault"
    );
    let st = root(&gw).await;
    assert_eq!(st["provider_status"]["a"]["state"], "ok");
    assert_eq!(st["provider_status"]["a"]["failures"], 0);
}

#[tokio::test]
async fn all_fail_error_shapes() {
    let m = mocks(2).await;
    let cfg = ConfigDir::new(providers(&m));
    cfg.write("rotations.json", &rotation(&[("a", 1.0), ("b", 1.0)]))
        .aisbf(json!({"error_tracking": {"max_failures": 100, "cooldown_seconds": 60}}));
    let gw = Gateway::start_with(cfg).await;

    // 502: both fail on the provider's side; the message lists each attempt.
    m[0].set_fault(Fault::Status(
        500,
        r#"{"error":{"message":"a broke"}}"#.into(),
    ));
    m[1].set_fault(Fault::Reset);
    let resp = rot(&gw).await;
    assert_eq!(resp.status(), 502);
    let v = error_body(resp).await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert_eq!(v["error"]["type"], "upstream_error");
    assert!(msg.contains("rotation 'r'"), "{msg}");
    assert!(msg.contains("a/m: upstream returned 500: a broke"), "{msg}");
    assert!(msg.contains("b/m: "), "{msg}");
    assert!(
        !msg.contains(KEY) && !msg.contains("127.0.0.1"),
        "no secrets or URLs: {msg}"
    );
    assert_eq!((m[0].received.count(), m[1].received.count()), (1, 1));

    // 429: both rate limited; Retry-After is the soonest the upstreams gave.
    m[0].set_fault(Fault::RateLimited(30));
    m[1].set_fault(Fault::RateLimited(20));
    let resp = rot(&gw).await;
    assert_eq!(resp.status(), 429);
    let ra: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((19..=20).contains(&ra), "retry-after {ra}");
    let v = error_body(resp).await;
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("a/m: upstream rate limited"));

    // 503: a 429 cools at once, so now every entry is cooling and nothing is tried.
    let resp = rot(&gw).await;
    assert_eq!(resp.status(), 503);
    let ra: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((19..=20).contains(&ra), "retry-after {ra}");
    let v = error_body(resp).await;
    assert_eq!(v["error"]["type"], "service_unavailable");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("b/m: cooling down"));
    assert_eq!((m[0].received.count(), m[1].received.count()), (2, 2));
}

#[tokio::test]
async fn rate_limit_skips_busy_entries_and_waits_only_when_all_are() {
    let m = mocks(3).await;
    let mut p = providers(&m);
    p["a"]["rate_limit"] = json!(1);
    p["b"]["rate_limit"] = json!(1);
    let cfg = ConfigDir::new(p);
    cfg.write("rotations.json", &rotation(&[("a", 1.0), ("b", 1.0)]));
    let gw = Gateway::start_with(cfg).await;

    let t = Instant::now();
    let first = served_by(&rot(&gw).await);
    let second = served_by(&rot(&gw).await);
    assert_ne!(
        first, second,
        "the spaced-out entry is skipped for the free one"
    );
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "no wait while one is free"
    );

    // Both busy: the third request waits for the earliest slot; c is not held up meanwhile.
    let third = tokio::spawn({
        let url = gw.url("/api/rotations/chat/completions");
        async move {
            let t = Instant::now();
            let resp = client()
                .post(url)
                .json(&json!({"model": "r", "messages": [{"role": "user", "content": "Hi"}]}))
                .send()
                .await
                .unwrap();
            (resp.status(), served_by(&resp), t.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let tc = Instant::now();
    assert_eq!(
        chat(&gw, "/api/c/chat/completions", "m", false)
            .await
            .status(),
        200
    );
    assert!(
        tc.elapsed() < Duration::from_millis(500),
        "other providers never wait"
    );
    let (status, who, waited) = third.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(who, first, "the entry that frees first");
    assert!(waited >= Duration::from_millis(600), "waited {waited:?}");

    // Direct requests wait for their slot too.
    let t = Instant::now();
    assert_eq!(
        chat(&gw, "/api/a/chat/completions", "m", false)
            .await
            .status(),
        200
    );
    assert_eq!(
        chat(&gw, "/api/a/chat/completions", "m", false)
            .await
            .status(),
        200
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

// Several threads, as the server runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_survive_a_failing_provider() {
    let good = OpenAiMock::start().await;
    let bad = ScriptedMock::start("").await;
    bad.set_fail(Some(500));
    let cfg = ConfigDir::new(json!({
        "good": provider("openai", &good.endpoint, Some(KEY), &["m"]),
        "bad": provider("openai", &bad.endpoint, Some(KEY), &["m"]),
    }));
    cfg.write(
        "rotations.json",
        &json!({"rotations": {"r": {"providers": [
            {"provider_id": "good", "models": [{"name": "m"}]},
            {"provider_id": "bad", "models": [{"name": "m"}]}
        ]}}}),
    );
    let gw = Gateway::start_with(cfg).await;
    let max_failures = 3;
    let http = client();

    let burst = |n: usize| {
        let (url, http) = (gw.url("/api/rotations/chat/completions"), http.clone());
        (0..n)
            .map(|_| {
                let (url, http) = (url.clone(), http.clone());
                tokio::spawn(async move {
                    let resp = http
                        .post(url)
                        .json(
                            &json!({"model": "r", "messages": [{"role": "user", "content": "Hi"}]}),
                        )
                        .send()
                        .await
                        .unwrap();
                    (resp.status().as_u16(), served_by(&resp))
                })
            })
            .collect::<Vec<_>>()
    };

    // Phase 1: the failing provider holds what it receives, so "in flight when it tripped"
    // is exact: every request that reached it before it failed even once.
    bad.hold();
    let tasks = burst(200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while good.received.count() + bad.received.count() < 200 {
        assert!(Instant::now() < deadline, "requests did not settle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_flight = bad.received.count();
    assert!(
        in_flight > max_failures,
        "the draw spread the burst: {in_flight}"
    );
    bad.release();
    for t in tasks {
        let (status, who) = t.await.unwrap();
        assert_eq!(
            (status, who.as_str()),
            (200, "good"),
            "every request succeeds"
        );
    }
    let hits = bad.received.count();
    assert!(
        hits <= max_failures + in_flight,
        "bad got {hits}, in flight {in_flight}"
    );
    assert_eq!(good.received.count(), 200);
    assert_eq!(
        root(&gw).await["provider_status"]["bad"]["state"],
        "cooling"
    );

    // Phase 2: tripped, it gets nothing from another burst of 200.
    for t in burst(200) {
        assert_eq!(t.await.unwrap().0, 200);
    }
    assert_eq!(
        bad.received.count(),
        hits,
        "a cooling provider gets nothing"
    );
    assert_eq!(good.received.count(), 400);
}

#[tokio::test]
async fn rotation_listing_and_unusable_rotation() {
    let m = mocks(2).await;
    let cfg = ConfigDir::new(providers(&m));
    cfg.write(
        "rotations.json",
        &json!({"rotations": {
            "r": {"model_name": "r", "providers": [
                {"provider_id": "a", "models": [{"name": "m", "weight": 2, "rate_limit": 0}]},
                {"provider_id": "b", "weight": 5, "models": [{"name": "m"}]}
            ]},
            "broken": {"providers": [{"provider_id": "nope", "models": [{"name": "m"}]}]}
        }}),
    );
    let gw = Gateway::start_with(cfg).await;
    let v: Value = get_json(&gw.url("/api/rotations")).await;
    assert_eq!(
        v["r"]["models"][0],
        json!({"name": "m", "provider_id": "a", "weight": 2.0, "rate_limit": 0.0})
    );
    assert_eq!(v["r"]["models"][1]["weight"], 5.0);
    assert_eq!(v["r"]["usable"], true);
    assert_eq!(v["broken"]["usable"], false);
    assert!(!v.to_string().contains(KEY));

    let v: Value = get_json(&gw.url("/api/rotations/models")).await;
    assert_schema("ListModelsResponse", &v);
    let ids = model_ids(&v);
    // The ids this endpoint's chat route takes, as the original listed them.
    assert_eq!(ids, ["broken", "r"]);
    let resp = chat(&gw, "/api/rotations/chat/completions", ids[1], false).await;
    assert_eq!(resp.status(), 200, "a listed id works on its endpoint");

    // Every namespace form reaches the rotation.
    for model in ["r", "rotation/r", "rotations/r"] {
        let resp = chat(&gw, "/v1/chat/completions", model, false).await;
        assert_eq!(resp.status(), 200, "{model}");
    }
    let resp = chat(&gw, "/api/rotations/chat/completions", "broken", false).await;
    assert_eq!(resp.status(), 503);
    let v = error_body(resp).await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("rotation 'broken' is unusable") && msg.contains("nope"),
        "{msg}"
    );
    let resp = chat(&gw, "/api/rotations/chat/completions", "missing", false).await;
    assert_eq!(resp.status(), 404);
}
