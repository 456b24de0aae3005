//! Faults at load: 200 concurrent streams through aisbf, one in five of which the upstream
//! cuts (connection reset) after its first events. The healthy ones arrive complete (every
//! chunk, the usage chunk, `[DONE]`), each broken one ends with exactly one error event and
//! no `[DONE]`, and afterwards the server still answers (`GET /`, a fresh stream, no leaked
//! in-flight work). Bounded: generous timeouts, no assumption on the machine's speed.
//!
//! Also the OpenAI stream translator fed arbitrary SSE through the gateway (it is private to
//! its module, so this is its property test): whatever the upstream streams, the client gets
//! well-formed chunks then either the usage chunk + `[DONE]` or one error event.

mod support;

use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use proptest::prelude::*;
use serde_json::{json, Value};
use support::*;

const STREAMS: usize = 200;
/// Every fifth request is cut: 20 %.
const BREAK_EVERY: usize = 5;
const WORDS: usize = 8;

fn chunk(delta: Value, finish: Option<&str>) -> Vec<u8> {
    let c = json!({"id": "chatcmpl-load", "object": "chat.completion.chunk",
        "created": 1_700_000_000, "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    format!("data: {c}\n\n").into_bytes()
}

/// The upstream: request `n` (its last message's content) streams `WORDS` words; when `n` is
/// a multiple of `BREAK_EVERY` the connection is reset after the role chunk and two words.
async fn chat(req: Request) -> Response {
    let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let n: usize = body["messages"][0]["content"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let broken = n.is_multiple_of(BREAK_EVERY);
    let mut pieces = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    let words = if broken { 2 } else { WORDS };
    for i in 0..words {
        pieces.push(chunk(json!({"content": format!("w{i} ")}), None));
    }
    if !broken {
        pieces.push(chunk(json!({}), Some("stop")));
        pieces.push(b"data: [DONE]\n\n".to_vec());
    }
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        chunked_body(pieces, Duration::from_millis(5), broken),
    )
        .into_response()
}

async fn gateway(upstream: Router) -> Gateway {
    let endpoint = format!("{}/v1", serve_app(upstream).await);
    let cfg = ConfigDir::new(json!({"p": provider("openai", &endpoint, Some("sk-load"), &["m"])}));
    // The point here is the stream path under faults, not the cooldown policy: a provider
    // that fails one in five must not be cooled down mid-test.
    cfg.aisbf(json!({"error_tracking": {"max_failures": 100000, "cooldown_seconds": 1}}));
    Gateway::start_with(cfg).await
}

/// One streamed request, its whole SSE body (a cut of the client's side would be an error).
async fn stream(http: &reqwest::Client, url: &str, n: usize) -> (u16, String) {
    let resp = http
        .post(url)
        .json(&json!({"model": "p/m", "stream": true,
            "messages": [{"role": "user", "content": n.to_string()}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_streams_with_a_fifth_reset() {
    let app = Router::new().route("/v1/chat/completions", post(chat));
    let gw = gateway(app).await;
    let url = gw.url("/v1/chat/completions");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(STREAMS)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let tasks: Vec<_> = (1..=STREAMS)
        .map(|n| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move { (n, stream(&http, &url, n).await) })
        })
        .collect();
    let (mut complete, mut failed) = (0, 0);
    for t in tasks {
        let (n, (status, body)) = tokio::time::timeout(Duration::from_secs(180), t)
            .await
            .expect("every stream ends")
            .unwrap();
        assert_eq!(status, 200, "stream {n} was committed: {body}");
        let data = sse_data(&body);
        let errors = data.iter().filter(|d| d.contains("\"error\"")).count();
        if n.is_multiple_of(BREAK_EVERY) {
            assert_eq!(errors, 1, "stream {n}: exactly one error event: {body}");
            assert!(
                data.last().unwrap().contains("\"error\""),
                "stream {n}: the error is last: {body}"
            );
            assert!(
                !body.contains("[DONE]"),
                "stream {n}: no [DONE] after an error"
            );
            failed += 1;
        } else {
            assert_eq!(errors, 0, "stream {n}: {body}");
            let chunks = assert_openai_stream(&body);
            let text = stream_text(&chunks);
            let want: String = (0..WORDS).map(|i| format!("w{i} ")).collect();
            assert_eq!(text, want, "stream {n} arrived complete");
            complete += 1;
        }
    }
    assert_eq!((complete, failed), (160, 40));

    // Still healthy: the root answers, a fresh stream completes, nothing is left in flight.
    let root = get_json(&gw.url("/")).await;
    assert!(root.is_object(), "{root}");
    let (status, body) = stream(&http, &url, 1).await;
    assert_eq!(status, 200);
    assert_openai_stream(&body);
    let metrics = http
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The gauge counts API requests only (not this /metrics one).
    let in_flight: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("aisbf_inflight_requests"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    assert_eq!(in_flight, [0.0], "no request left in flight:\n{metrics}");
}

/// What the upstream streams in one case of the property test.
#[derive(Clone, Default)]
struct Script(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

fn openai_event() -> impl Strategy<Value = Vec<u8>> {
    let delta = prop_oneof![
        ".{0,8}".prop_map(|t| json!({"content": t})),
        Just(json!({"role": "assistant", "content": ""})),
        (0u32..3, "[a-z]{1,4}").prop_map(|(i, n)| json!({"tool_calls": [{"index": i,
            "id": format!("call_{n}"), "type": "function",
            "function": {"name": n, "arguments": ""}}]})),
        (0u32..3, ".{0,6}").prop_map(|(i, a)| json!({"tool_calls": [{"index": i,
            "function": {"arguments": a}}]})),
        ".{0,8}".prop_map(|t| json!({"reasoning_content": t})),
    ];
    let finish = proptest::option::of(prop_oneof![Just("stop"), Just("tool_calls")]);
    let ev = prop_oneof![
        8 => (delta, finish, any::<bool>()).prop_map(|(d, f, usage)| {
            let mut c = json!({"id": "chatcmpl-p", "object": "chat.completion.chunk",
                "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": d, "finish_reason": f}]});
            if usage {
                c["usage"] = json!({"prompt_tokens": 1, "completion_tokens": 1,
                    "total_tokens": 2});
            }
            c.to_string()
        }),
        1 => Just(json!({"id": "x", "choices": [], "usage": {"prompt_tokens": 1,
            "completion_tokens": 1, "total_tokens": 2}}).to_string()),
        1 => Just(json!({"error": {"message": "boom", "type": "server_error"}}).to_string()),
        1 => Just("[DONE]".to_string()),
        1 => "[^\r\n]{0,20}",
    ];
    (ev, any::<bool>()).prop_map(|(data, comment)| {
        let mut s = String::new();
        if comment {
            s.push_str(": keep-alive\n");
        }
        s.push_str("data: ");
        s.push_str(&data);
        s.push_str("\n\n");
        s.into_bytes()
    })
}

#[test]
fn openai_upstream_streams_anything() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let script = Script::default();
    let s = script.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |_req: Request| {
            let body = s.0.lock().unwrap().clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                    body,
                )
                    .into_response()
            }
        }),
    );
    let gw = rt.block_on(gateway(app));
    let url = gw.url("/v1/chat/completions");
    let http = client();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(48);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(openai_event(), 0..12), |events| {
            *script.0.lock().unwrap() = events.concat();
            let (status, body) = rt.block_on(stream(&http, &url, 1));
            // Nothing committed yet (the first event failed): an ordinary error answer.
            if status != 200 {
                prop_assert!(status >= 400 && status != 500, "{} {}", status, body);
                let v: Value = serde_json::from_str(&body).unwrap();
                prop_assert!(v["error"]["message"].is_string(), "{}", body);
                return Ok(());
            }
            let data = sse_data(&body);
            prop_assert!(!data.is_empty(), "an empty stream");
            let last = data.last().unwrap();
            if last == "[DONE]" {
                assert_openai_stream(&body);
                prop_assert!(!body.contains("\"error\":{"), "{}", body);
            } else {
                let v: Value = serde_json::from_str(last).unwrap();
                prop_assert!(
                    v["error"]["message"].is_string(),
                    "ends with an error: {}",
                    body
                );
                for d in &data[..data.len() - 1] {
                    let c: Value = serde_json::from_str(d).unwrap();
                    prop_assert!(c.get("error").is_none(), "one error event: {}", body);
                }
            }
            Ok(())
        })
        .unwrap();
    drop(gw);
}
