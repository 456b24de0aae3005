//! Bad input and bad upstreams: every failure is a clear OpenAI-shaped error with the right
//! status, the server keeps serving, and no key ever shows up in a response or a log line.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use support::openai_mock::OpenAiMock;
use support::*;

const KEY: &str = "sk-upstream-secret-4242";

/// Every log line of this test binary, for the secret grep.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_writer(move || LogWriter(writer.clone()))
            .try_init()
            .ok();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]})
}

async fn gateway_for(endpoint: &str, patch: Value) -> Gateway {
    logs();
    let cfg = ConfigDir::new(json!({
        "up": provider("openai", endpoint, Some(KEY), &["gpt-4o"]),
        "nokey": provider("openai", endpoint, Some("${AISBF_TEST_UNSET_VAR}"), &["gpt-4o"]),
    }));
    cfg.aisbf(patch);
    Gateway::start_with(cfg).await
}

/// Sends `body` and returns (status, parsed error body); asserts the OpenAI error shape.
async fn expect_error(
    gw: &Gateway,
    path: &str,
    body: reqwest::Body,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    assert!(!text.contains(KEY), "key leaked in response: {text}");
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("error body not JSON ({e}): {text}"));
    assert_schema("ErrorResponse", &v);
    (status, v, headers)
}

fn body(v: &Value) -> reqwest::Body {
    reqwest::Body::from(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn bad_requests_get_400_404_413() {
    let mock = OpenAiMock::start().await;
    let gw = gateway_for(&mock.endpoint, json!({"limits": {"max_body_bytes": 2048}})).await;
    let (s, v, _) = expect_error(&gw, "/v1/chat/completions", "{not json".into()).await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let (s, v, _) = expect_error(&gw, "/v1/chat/completions", body(&json!({"messages": []}))).await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("model"),
        "{v}"
    );
    let (s, v, _) = expect_error(
        &gw,
        "/v1/chat/completions",
        body(&json!({"model": "up/gpt-4o"})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("messages"),
        "{v}"
    );
    let (s, _, _) = expect_error(&gw, "/v1/chat/completions", "".into()).await;
    assert_eq!(s, 400);
    let (s, v, _) = expect_error(&gw, "/api/nope/chat/completions", body(&chat("m", false))).await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (404, Some("not_found_error"))
    );
    let (s, _, _) = expect_error(&gw, "/v1/chat/completions", body(&chat("nope/x", false))).await;
    assert_eq!(s, 404);
    let (s, _, _) = expect_error(
        &gw,
        "/v1/chat/completions",
        body(&chat("rotation/none", false)),
    )
    .await;
    assert_eq!(s, 404);
    let big =
        json!({"model": "up/gpt-4o", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let (s, v, _) = expect_error(&gw, "/v1/chat/completions", body(&big)).await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (413, Some("invalid_request_error"))
    );
    let (s, _, _) = expect_error(&gw, "/no/such/route", "{}".into()).await;
    assert_eq!(s, 404);
    // Still serving after all that.
    let ok = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("up/gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        mock.received.count(),
        1,
        "bad requests never reach the upstream"
    );
}

#[tokio::test]
async fn missing_env_key_is_a_401_naming_the_variable() {
    let mock = OpenAiMock::start().await;
    let gw = gateway_for(&mock.endpoint, json!({})).await;
    let (s, v, _) = expect_error(
        &gw,
        "/v1/chat/completions",
        body(&chat("nokey/gpt-4o", false)),
    )
    .await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AISBF_TEST_UNSET_VAR"),
        "{v}"
    );
    assert_eq!(mock.received.count(), 0);
}

#[tokio::test]
async fn unreachable_reset_and_silent_upstreams() {
    let dead = dead_endpoint();
    let gw = gateway_for(&dead, json!({"timeouts": {"first_byte_seconds": 0.5}})).await;
    for stream in [false, true] {
        let (s, v, _) = expect_error(
            &gw,
            "/v1/chat/completions",
            body(&chat("up/gpt-4o", stream)),
        )
        .await;
        assert_eq!(
            (s, v["error"]["type"].as_str()),
            (502, Some("upstream_error")),
            "refused, stream={stream}"
        );
    }
    let reset = reset_server().await;
    let gw = gateway_for(&reset, json!({})).await;
    for stream in [false, true] {
        let (s, _, _) = expect_error(
            &gw,
            "/v1/chat/completions",
            body(&chat("up/gpt-4o", stream)),
        )
        .await;
        assert_eq!(s, 502, "reset, stream={stream}");
    }
    let mock = OpenAiMock::start().await;
    mock.set_fault(Fault::Hang);
    let gw = gateway_for(
        &mock.endpoint,
        json!({"timeouts": {"first_byte_seconds": 0.5}}),
    )
    .await;
    for stream in [false, true] {
        let started = std::time::Instant::now();
        let (s, v, _) = expect_error(
            &gw,
            "/v1/chat/completions",
            body(&chat("up/gpt-4o", stream)),
        )
        .await;
        assert_eq!(
            (s, v["error"]["type"].as_str()),
            (504, Some("timeout_error")),
            "hang, stream={stream}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[tokio::test]
async fn upstream_statuses_map_to_the_contract() {
    let mock = OpenAiMock::start().await;
    let gw = gateway_for(
        &mock.endpoint,
        json!({"error_tracking": {"max_failures": 100}}),
    )
    .await;
    mock.set_fault(Fault::Status(
        400,
        r#"{"error":{"message":"Unsupported parameter: 'foo'","type":"invalid_request_error","param":"foo","code":"unsupported_parameter"}}"#.into(),
    ));
    let (s, v, _) =
        expect_error(&gw, "/v1/chat/completions", body(&chat("up/gpt-4o", false))).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["message"], "Unsupported parameter: 'foo'");
    assert_eq!(v["error"]["code"], "unsupported_parameter");

    mock.set_fault(Fault::Status(401, format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}.","type":"invalid_request_error","code":"invalid_api_key"}}}}"#)));
    let (s, v, _) =
        expect_error(&gw, "/v1/chat/completions", body(&chat("up/gpt-4o", false))).await;
    assert_eq!(s, 401);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("*****"),
        "{v}"
    );

    mock.set_fault(Fault::Status(503, "upstream overloaded".into()));
    let (s, _, _) =
        expect_error(&gw, "/v1/chat/completions", body(&chat("up/gpt-4o", false))).await;
    assert_eq!(s, 502);

    mock.set_fault(Fault::Malformed);
    for stream in [false, true] {
        let (s, v, _) = expect_error(
            &gw,
            "/v1/chat/completions",
            body(&chat("up/gpt-4o", stream)),
        )
        .await;
        assert_eq!(
            (s, v["error"]["type"].as_str()),
            (502, Some("upstream_error")),
            "malformed, stream={stream}"
        );
    }

    // Last: a 429 puts the provider into cooldown at once (then direct requests get 503).
    mock.set_fault(Fault::RateLimited(7));
    let (s, v, h) = expect_error(&gw, "/v1/chat/completions", body(&chat("up/gpt-4o", true))).await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (429, Some("rate_limit_error"))
    );
    assert_eq!(h["retry-after"], "7");
}

#[tokio::test]
async fn stream_broken_midway_ends_with_one_error_event() {
    let mock = OpenAiMock::start().await;
    mock.set_fault(Fault::BreakMidStream);
    let gw = gateway_for(&mock.endpoint, json!({})).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("up/gpt-4o", true))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the stream was committed after its first event"
    );
    let text = resp.text().await.unwrap();
    let data = sse_data(&text);
    assert!(
        !data.contains(&"[DONE]".to_string()),
        "a broken stream does not claim [DONE]: {text}"
    );
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_schema("ErrorResponse", &last);
    let errors = data.iter().filter(|d| d.contains("\"error\"")).count();
    assert_eq!(errors, 1, "{text}");
    for d in &data[..data.len() - 1] {
        assert_schema(
            "CreateChatCompletionStreamResponse",
            &serde_json::from_str(d).unwrap(),
        );
    }
}

/// An upstream that streams forever and notes when its response is dropped.
async fn endless_upstream(dropped: Arc<AtomicBool>) -> String {
    use axum::routing::post;
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let guard = Guard(dropped.clone());
            async move {
                let s = futures::stream::unfold((0u64, guard), |(i, g)| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let ev = format!(
                        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{i} \"}},\"finish_reason\":null}}]}}\n\n"
                    );
                    Some((Ok::<_, std::io::Error>(ev), (i + 1, g)))
                });
                ([("content-type", "text/event-stream")], axum::body::Body::from_stream(s))
            }
        }),
    );
    format!("{}/v1", serve_app(app).await)
}

#[tokio::test]
async fn client_disconnect_drops_the_upstream_request() {
    let dropped = Arc::new(AtomicBool::new(false));
    let endpoint = endless_upstream(dropped.clone()).await;
    let gw = gateway_for(&endpoint, json!({})).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("up/m", true))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(stream);
    for _ in 0..100 {
        if dropped.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the upstream stream was still being read 2 s after the client left");
}

#[tokio::test]
async fn gateway_auth() {
    let mock = OpenAiMock::start().await;
    let gw = gateway_for(
        &mock.endpoint,
        json!({"auth": {"enabled": true, "tokens": ["gw-token-1"]}}),
    )
    .await;
    let (s, v, _) =
        expect_error(&gw, "/v1/chat/completions", body(&chat("up/gpt-4o", false))).await;
    assert_eq!(
        (s, v["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    let r = client()
        .get(gw.url("/v1/models"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client().get(gw.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200, "/health needs no token");
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("gw-token-1")
        .json(&chat("up/gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        mock.received.last().header("authorization"),
        Some(format!("Bearer {KEY}").as_str()),
        "the gateway token is never forwarded upstream"
    );
}

#[tokio::test]
async fn keys_never_reach_the_logs() {
    // Runs the failure paths above once more, then greps everything logged by this binary.
    let mock = OpenAiMock::start().await;
    let gw = gateway_for(&mock.endpoint, json!({})).await;
    for f in [
        Fault::Status(
            401,
            format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}"}}}}"#),
        ),
        Fault::Status(500, format!("internal error for key {KEY}")),
        Fault::RateLimited(1),
        Fault::Malformed,
        Fault::None,
    ] {
        mock.set_fault(f);
        for stream in [false, true] {
            let t = client()
                .post(gw.url("/v1/chat/completions"))
                .json(&chat("up/gpt-4o", stream))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(!t.contains(KEY), "{t}");
        }
    }
    tracing::debug!(config = ?gw.state.config.providers["up"].api_key, "config as logged");
    let logged = String::from_utf8_lossy(&logs().lock().unwrap()).to_string();
    assert!(logged.contains("config as logged"), "the log capture works");
    assert!(!logged.contains(KEY), "key found in logs:\n{logged}");
}
