//! Running it in production, in-process: `/metrics` parsed by a real Prometheus parser and
//! checked against the requests made (failures, failovers, a provider cooling down, random
//! model names), request ids, and a reload swapping the state under a stream in flight.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use prometheus_parse::{Sample, Scrape, Value as PromValue};
use serde_json::{json, Value};

use support::openai_mock::OpenAiMock;
use support::{client, provider, sse_data, ConfigDir, Fault, Gateway};

const KEY: &str = "sk-ops-secret-789";

async fn scrape(gw: &Gateway) -> Vec<Sample> {
    let resp = client().get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = resp.text().await.unwrap();
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF: {text}"
    );
    Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the exposition parses")
        .samples
}

fn num(v: &PromValue) -> f64 {
    match v {
        PromValue::Counter(n) | PromValue::Gauge(n) | PromValue::Untyped(n) => *n,
        other => panic!("not a number: {other:?}"),
    }
}

/// The value of the one series of `name` with exactly these labels (0 when absent).
fn get(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
    found.first().map_or(0.0, |s| num(&s.value))
}

fn series(samples: &[Sample], name: &str) -> Vec<Sample> {
    samples
        .iter()
        .filter(|s| s.metric == name)
        .cloned()
        .collect()
}

async fn chat(gw: &Gateway, path: &str, model: &str, stream: bool) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .json(&json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap()
}

/// Waits (generously) until every response has been accounted for.
async fn settle(gw: &Gateway) -> Vec<Sample> {
    for _ in 0..100 {
        let s = scrape(gw).await;
        if get(&s, "aisbf_inflight_requests", &[]) == 0.0 {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("aisbf_inflight_requests never returned to 0");
}

async fn two_providers() -> (OpenAiMock, OpenAiMock, ConfigDir) {
    let a = OpenAiMock::start().await;
    let b = OpenAiMock::start().await;
    let cfg = ConfigDir::new(json!({
        "a": provider("openai", &a.endpoint, Some(KEY), &["m"]),
        "b": provider("openai", &b.endpoint, Some(KEY), &["m"]),
    }));
    cfg.write(
        "rotations.json",
        &json!({"rotations": {"r": {"model_name": "r", "providers": [
            {"provider_id": "a", "models": [{"name": "m", "weight": 1}]},
            {"provider_id": "b", "models": [{"name": "m", "weight": 1}]}
        ]}}}),
    );
    cfg.aisbf(json!({"error_tracking": {"max_failures": 2, "cooldown_seconds": 300}}));
    (a, b, cfg)
}

#[tokio::test]
async fn metrics_count_requests_failures_failovers_and_a_cooldown() {
    let (a, b, cfg) = two_providers().await;
    let gw = Gateway::start_with(cfg).await;

    for _ in 0..3 {
        let r = chat(&gw, "/v1/chat/completions", "a/m", false).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let r = chat(&gw, "/v1/chat/completions", "a/m", true).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    let r = chat(&gw, "/v1/chat/completions", "no-such-model", false).await;
    assert_eq!(r.status(), 404);
    r.bytes().await.unwrap();
    let r = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    for p in ["/health", "/"] {
        client().get(gw.url(p)).send().await.unwrap();
    }

    let s = settle(&gw).await;
    let req = |target: &str, provider: &str, model: &str, status: &str| {
        get(
            &s,
            "aisbf_requests_total",
            &[
                ("api", "chat"),
                ("target", target),
                ("provider", provider),
                ("model", model),
                ("status", status),
            ],
        )
    };
    assert_eq!(req("a/m", "a", "m", "200"), 4.0);
    assert_eq!(req("other", "none", "other", "404"), 1.0);
    let models = &[
        ("api", "models"),
        ("target", "other"),
        ("provider", "none"),
        ("model", "other"),
        ("status", "200"),
    ];
    assert_eq!(get(&s, "aisbf_requests_total", models), 1.0);
    // /metrics, /health and / are not requests of an API.
    let counted: f64 = series(&s, "aisbf_requests_total")
        .iter()
        .map(|x| num(&x.value))
        .sum();
    assert_eq!(counted, 6.0);
    let dur = &[("api", "chat"), ("provider", "a")];
    assert_eq!(get(&s, "aisbf_request_duration_seconds_count", dur), 4.0);
    let pm = &[("provider", "a"), ("model", "m")];
    assert_eq!(get(&s, "aisbf_time_to_first_token_seconds_count", pm), 1.0);
    assert_eq!(get(&s, "aisbf_gateway_overhead_seconds_count", &[]), 4.0);
    // The mock reports 11 prompt and 3 completion tokens per answer, streamed or not.
    let tok = |kind: &str| {
        get(
            &s,
            "aisbf_tokens_total",
            &[("provider", "a"), ("model", "m"), ("kind", kind)],
        )
    };
    assert_eq!(tok("prompt"), 44.0);
    assert_eq!(tok("completion"), 12.0);
    assert!(tok("effective_context") > 0.0);
    assert_eq!(get(&s, "aisbf_provider_up", &[("provider", "a")]), 1.0);

    // a fails from now on: the rotation fails over to b until a cools down (2 failures).
    a.set_fault(Fault::Status(500, "boom".into()));
    let before_a = a.received.count();
    let mut rotation_requests = 0;
    while a.received.count() - before_a < 2 {
        rotation_requests += 1;
        assert!(rotation_requests < 200, "the draw never picked a");
        let r = chat(&gw, "/v1/chat/completions", "rotation/r", false).await;
        assert_eq!(r.status(), 200, "b serves");
        r.bytes().await.unwrap();
    }
    let a_failed = (a.received.count() - before_a) as f64;
    // Cooling: a direct request to a is refused without reaching it.
    let r = chat(&gw, "/v1/chat/completions", "a/m", false).await;
    assert_eq!(r.status(), 503);
    r.bytes().await.unwrap();
    assert_eq!(a.received.count() - before_a, 2);

    let s = settle(&gw).await;
    let req = |target: &str, provider: &str, status: &str| {
        let model = if provider == "none" { "other" } else { "m" };
        get(
            &s,
            "aisbf_requests_total",
            &[
                ("api", "chat"),
                ("target", target),
                ("provider", provider),
                ("model", model),
                ("status", status),
            ],
        )
    };
    assert_eq!(req("rotation/r", "b", "200"), rotation_requests as f64);
    assert_eq!(req("a/m", "none", "503"), 1.0);
    assert_eq!(
        get(&s, "aisbf_failovers_total", &[("rotation", "r")]),
        a_failed
    );
    let fail = &[("provider", "a"), ("reason", "status_5xx")];
    assert_eq!(get(&s, "aisbf_upstream_failures_total", fail), a_failed);
    assert_eq!(get(&s, "aisbf_provider_up", &[("provider", "a")]), 0.0);
    assert_eq!(get(&s, "aisbf_provider_up", &[("provider", "b")]), 1.0);
    assert_eq!(b.received.count(), rotation_requests);
}

#[tokio::test]
async fn a_thousand_random_model_names_add_no_label_values() {
    let (_a, _b, cfg) = two_providers().await;
    let gw = Gateway::start_with(cfg).await;
    let warm = ["a/m", "a/unlisted", "unknown-name", "rotation/nope"];
    for m in warm {
        chat(&gw, "/v1/chat/completions", m, false)
            .await
            .bytes()
            .await
            .unwrap();
    }
    let before = settle(&gw).await;
    let c = client();
    let names: Vec<String> = (0..1000)
        .map(|i| {
            let r: u64 = rand::random();
            match i % 3 {
                0 => format!("a/random-{r:x}"),
                1 => format!("random-{r:x}"),
                _ => format!("rotation/random-{r:x}"),
            }
        })
        .collect();
    let results = futures::stream::iter(names)
        .map(|m| {
            let c = c.clone();
            let url = gw.url("/v1/chat/completions");
            async move {
                let r = c
                    .post(url)
                    .json(&json!({"model": m, "messages": [{"role": "user", "content": "Hi"}]}))
                    .send()
                    .await
                    .unwrap();
                let st = r.status().as_u16();
                r.bytes().await.unwrap();
                st
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<u16>>()
        .await;
    assert_eq!(results.len(), 1000);
    let after = settle(&gw).await;
    let label_sets = |s: &[Sample]| -> BTreeSet<String> {
        s.iter()
            .map(|x| {
                let mut l: Vec<String> = x.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                l.sort();
                format!("{}{{{}}}", x.metric, l.join(","))
            })
            .collect()
    };
    assert_eq!(
        label_sets(&before),
        label_sets(&after),
        "random model names must not create series"
    );
    let total: f64 = series(&after, "aisbf_requests_total")
        .iter()
        .map(|x| num(&x.value))
        .sum();
    assert_eq!(total, 1004.0);
    for s in &after {
        if let Some(m) = s.labels.get("model") {
            assert!(m == "m" || m == "other", "model label {m}");
        }
    }
}

#[tokio::test]
async fn request_ids_are_the_clients_when_sane_and_echoed() {
    let (_a, _b, cfg) = two_providers().await;
    let gw = Gateway::start_with(cfg).await;
    let send = |id: Option<String>| {
        let mut rb = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&json!({"model": "a/m", "messages": [{"role": "user", "content": "Hi"}]}));
        if let Some(id) = id {
            rb = rb.header("x-request-id", id);
        }
        async move {
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-request-id"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(send(Some("trace-42".into())).await, "trace-42");
    let long = "x".repeat(129);
    let replaced = send(Some(long.clone())).await;
    assert_ne!(replaced, long);
    assert_eq!(replaced.len(), 32);
    let (g1, g2) = (send(None).await, send(None).await);
    assert_eq!(g1.len(), 32);
    assert_ne!(g1, g2, "generated ids are unique");
    // Errors carry one too.
    let r = chat(&gw, "/v1/chat/completions", "nope", false).await;
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
}

/// A slow streaming upstream: the stream is still in flight while the test reloads.
async fn slow_stream_mock(pieces: usize, pause: Duration) -> String {
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || async move {
            let mut out = Vec::new();
            let chunk = |delta: Value, finish: Value| {
                json!({"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1_700_000_000,
                       "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            };
            out.push(format!("data: {}\n\n", chunk(json!({"role": "assistant", "content": ""}), Value::Null)).into_bytes());
            for i in 0..pieces {
                out.push(format!("data: {}\n\n", chunk(json!({"content": format!("w{i} ")}), Value::Null)).into_bytes());
            }
            out.push(format!("data: {}\n\n", chunk(json!({}), json!("stop"))).into_bytes());
            out.push(b"data: [DONE]\n\n".to_vec());
            (
                [("content-type", "text/event-stream")],
                support::chunked_body(out, pause, false),
            )
                .into_response()
        }),
    );
    format!("{}/v1", support::serve_app(app).await)
}

#[tokio::test]
async fn reload_swaps_the_state_under_a_stream_in_flight() {
    let slow = slow_stream_mock(8, Duration::from_millis(150)).await;
    let b = OpenAiMock::start().await;
    let cfg = ConfigDir::new(json!({"a": provider("openai", &slow, Some(KEY), &["m"])}));
    cfg.aisbf(json!({"error_tracking": {"max_failures": 1, "cooldown_seconds": 300}}));
    let dead = support::dead_endpoint();
    cfg.write(
        "providers.json",
        &json!({"providers": {
            "a": provider("openai", &slow, Some(KEY), &["m"]),
            "d": provider("openai", &dead, Some(KEY), &["m"]),
        }}),
    );
    let path = cfg.path().to_path_buf();
    let gw = Gateway::start_with(cfg).await;
    // d fails once and cools down: that must survive the reload.
    let r = chat(&gw, "/v1/chat/completions", "d/m", false).await;
    assert_eq!(r.status(), 502);
    r.bytes().await.unwrap();

    let resp = chat(&gw, "/v1/chat/completions", "a/m", true).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();

    // A broken file changes nothing.
    std::fs::write(
        path.join("providers.json"),
        r#"{"providers": {"a": {"type": 5}}}"#,
    )
    .unwrap();
    let live = gw.live.clone();
    let err = tokio::task::spawn_blocking(move || live.reload("test"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.contains("providers.json"), "{err}");
    let r = chat(&gw, "/v1/chat/completions", "b/m", false).await;
    assert_eq!(r.status(), 404, "b is not configured yet");

    // A good file adds b; d remains and is still cooling.
    std::fs::write(
        path.join("providers.json"),
        serde_json::to_vec(&json!({"providers": {
            "a": provider("openai", &slow, Some(KEY), &["m"]),
            "b": provider("openai", &b.endpoint, Some(KEY), &["m"]),
            "d": provider("openai", &dead, Some(KEY), &["m"]),
        }}))
        .unwrap(),
    )
    .unwrap();
    let live = gw.live.clone();
    tokio::task::spawn_blocking(move || live.reload("test"))
        .await
        .unwrap()
        .unwrap();
    let r = chat(&gw, "/v1/chat/completions", "b/m", false).await;
    assert_eq!(r.status(), 200, "a provider added by reload serves");
    r.bytes().await.unwrap();
    let r = chat(&gw, "/v1/chat/completions", "d/m", false).await;
    assert_eq!(r.status(), 503, "d's cooldown carried over");
    r.bytes().await.unwrap();

    // The stream that began before both reloads completes intact.
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let words: String = data[..data.len() - 1]
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(words, "w0 w1 w2 w3 w4 w5 w6 w7 ");

    // Metrics survived both reloads.
    let s = settle(&gw).await;
    let stream_req = &[
        ("api", "chat"),
        ("target", "a/m"),
        ("provider", "a"),
        ("model", "m"),
        ("status", "200"),
    ];
    assert_eq!(get(&s, "aisbf_requests_total", stream_req), 1.0);
    let d_fail = &[("provider", "d"), ("reason", "connect")];
    assert_eq!(get(&s, "aisbf_upstream_failures_total", d_fail), 1.0);
    assert_eq!(get(&s, "aisbf_provider_up", &[("provider", "d")]), 0.0);
    assert_eq!(get(&s, "aisbf_provider_up", &[("provider", "b")]), 1.0);
}

#[test]
fn app_and_daemon_do_not_import_each_other() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let daemon = std::fs::read_to_string(src.join("daemon.rs")).unwrap();
    let app = std::fs::read_to_string(src.join("app.rs")).unwrap();
    let imports = |text: &str, module: &str| {
        text.lines()
            .any(|l| l.trim_start().starts_with("use ") && l.contains(&format!("crate::{module}")))
            || text.contains(&format!("crate::{module}::"))
    };
    assert!(
        !(imports(&daemon, "app") && imports(&app, "daemon")),
        "app.rs and daemon.rs import each other: shared start-up code belongs in startup.rs"
    );
    assert!(
        !imports(&daemon, "app"),
        "daemon.rs must not depend on app.rs"
    );
}

#[tokio::test]
async fn a_stream_failing_after_its_200_counts_as_200_and_as_an_upstream_failure() {
    let a = OpenAiMock::start().await;
    a.set_fault(Fault::BreakMidStream);
    let cfg = ConfigDir::new(json!({"a": provider("openai", &a.endpoint, Some(KEY), &["m"])}));
    let gw = Gateway::start_with(cfg).await;
    let r = chat(&gw, "/v1/chat/completions", "a/m", true).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("\"error\""),
        "one in-band error event: {body}"
    );
    let s = settle(&gw).await;
    let ok = &[
        ("api", "chat"),
        ("target", "a/m"),
        ("provider", "a"),
        ("model", "m"),
        ("status", "200"),
    ];
    assert_eq!(get(&s, "aisbf_requests_total", ok), 1.0);
    let failures: f64 = series(&s, "aisbf_upstream_failures_total")
        .iter()
        .filter(|x| x.labels.get("provider") == Some("a"))
        .map(|x| num(&x.value))
        .sum();
    assert_eq!(failures, 1.0, "{s:?}");
}

#[tokio::test]
async fn autoselect_choices_are_counted_and_metrics_sit_behind_auth() {
    let selector = support::scripted_mock::ScriptedMock::start(
        "<aisbf_model_autoselection>c/code-1</aisbf_model_autoselection>",
    )
    .await;
    let coder = OpenAiMock::start().await;
    let cfg = ConfigDir::new(json!({
        "sel": provider("openai", &selector.endpoint, Some(KEY), &["pick"]),
        "c": provider("openai", &coder.endpoint, Some(KEY), &["code-1"]),
    }));
    cfg.write(
        "autoselect.json",
        &json!({"autoselect": {"auto": {
            "model_name": "auto",
            "selection_model": "sel/pick",
            "fallback": "c/code-1",
            "available_models": [{"model_id": "c/code-1", "description": "Programming"}]
        }}}),
    );
    cfg.aisbf(json!({"auth": {"enabled": true, "tokens": ["gw-token"]}}));
    let gw = Gateway::start_with(cfg).await;
    let c = client();
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("gw-token")
        .json(&json!({"model": "autoselect/auto", "messages": [{"role": "user", "content": "fix my code"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = c.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401, "gateway auth applies to /metrics");
    let text = c
        .get(gw.url("/metrics"))
        .bearer_auth("gw-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let s = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap()
        .samples;
    let choice = &[("autoselect", "auto"), ("choice", "c/code-1")];
    assert_eq!(get(&s, "aisbf_autoselect_total", choice), 1.0);
    let served = &[
        ("api", "chat"),
        ("target", "autoselect/auto"),
        ("provider", "c"),
        ("model", "code-1"),
        ("status", "200"),
    ];
    assert_eq!(get(&s, "aisbf_requests_total", served), 1.0);
    // The selector's own call is an upstream call too: its tokens are counted under it.
    let sel = &[
        ("provider", "sel"),
        ("model", "pick"),
        ("kind", "effective_context"),
    ];
    assert!(get(&s, "aisbf_tokens_total", sel) > 0.0);
}

#[tokio::test]
async fn condensation_runs_are_counted_by_method_and_outcome() {
    let up = OpenAiMock::start().await;
    let cfg = ConfigDir::new(json!({"up": {
        "type": "openai", "endpoint": up.endpoint, "api_key": KEY,
        "models": [{"name": "small", "context_size": 100000, "condense_context": 10,
                    "condense_method": "algorithmic"}]
    }}));
    let gw = Gateway::start_with(cfg).await;
    let log = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/context/app.log"),
    )
    .unwrap();
    let messages = json!([
        {"role": "system", "content": "You are an SRE assistant."},
        {"role": "user", "content": "Why did the service crash?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_log", "type": "function",
            "function": {"name": "run_shell", "arguments": "{\"cmd\":\"cat app.log\"}"}}]},
        {"role": "tool", "tool_call_id": "call_log", "content": log},
        {"role": "user", "content": "List every distinct error."}
    ]);
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "up/small", "messages": messages}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let s = settle(&gw).await;
    let run = &[("method", "algorithmic"), ("outcome", "condensed")];
    assert_eq!(get(&s, "aisbf_condensations_total", run), 1.0);
}
