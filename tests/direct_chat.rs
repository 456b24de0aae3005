//! The Chat Completions routes are served without the router (src/server/fast.rs), but the
//! router keeps them as the reference: every request here is sent both ways, to the server
//! (the direct path) and straight into the router, and the answers must be the same:
//! status, headers, body. Plus what only the server does: x-request-id, body read errors.

mod support;

use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use support::openai_mock::OpenAiMock;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_service::Service;

const LIMIT: usize = 2048;

/// What is compared: status, headers but the per-response ones, body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn answer(status: u16, headers: &http::HeaderMap, body: &[u8]) -> Answer {
    let mut headers: Vec<(String, String)> = headers
        .iter()
        // Set by hyper on the wire (date, chunked framing of a stream) or by the service in
        // front of the router (x-request-id): not the router's to give.
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "transfer-encoding" | "x-request-id"))
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    headers.sort();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(body).into(),
    }
}

struct Sent<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: Vec<u8>,
}

async fn via_server(gw: &Gateway, s: &Sent<'_>) -> Answer {
    let mut rb = client().request(s.method.parse().unwrap(), gw.url(s.path));
    for (n, v) in s.headers {
        rb = rb.header(*n, *v);
    }
    let r = rb.body(s.body.clone()).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    answer(status, &headers, &r.bytes().await.unwrap())
}

async fn via_router(gw: &Gateway, s: &Sent<'_>) -> Answer {
    let mut req = http::Request::builder().method(s.method).uri(s.path);
    for (n, v) in s.headers {
        req = req.header(*n, *v);
    }
    // What hyper and reqwest put on the wire for the server's copy.
    let req = req
        .header("content-length", s.body.len())
        .body(Body::from(s.body.clone()))
        .unwrap();
    let mut router = gw.live.current().router.clone();
    let resp = router.call(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    answer(parts.status.as_u16(), &parts.headers, &body)
}

/// Sends `s` both ways; returns the (identical) answer.
async fn same_both_ways(gw: &Gateway, s: Sent<'_>) -> Answer {
    let server = via_server(gw, &s).await;
    let router = via_router(gw, &s).await;
    assert_eq!(server, router, "{} {}", s.method, s.path);
    server
}

fn post<'a>(path: &'a str, body: Vec<u8>) -> Sent<'a> {
    Sent {
        method: "POST",
        path,
        headers: &[("content-type", "application/json")],
        body,
    }
}

fn chat(model: &str, stream: bool) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .unwrap()
}

fn error_message(a: &Answer) -> String {
    let v: Value = serde_json::from_str(&a.body).unwrap();
    v["error"]["message"].as_str().unwrap().to_string()
}

async fn gateway(endpoint: &str, auth: bool) -> Gateway {
    let cfg = ConfigDir::new(json!({
        "up": provider("openai", endpoint, Some("sk-up"), &["gpt-4o"]),
        "a b": provider("openai", endpoint, Some("sk-up"), &["gpt-4o"]),
    }));
    cfg.aisbf(json!({
        "limits": {"max_body_bytes": LIMIT},
        "auth": {"enabled": auth, "tokens": ["gw-token"]},
    }));
    Gateway::start_with(cfg).await
}

#[tokio::test]
async fn direct_and_routed_answers_are_the_same() {
    let mock = OpenAiMock::start().await;
    let gw = gateway(&mock.endpoint, false).await;
    for path in [
        "/v1/chat/completions",
        "/api/v1/chat/completions",
        "/api/up/chat/completions",
    ] {
        let model = if path.starts_with("/api/up") {
            "gpt-4o"
        } else {
            "up/gpt-4o"
        };
        for stream in [false, true] {
            let a = same_both_ways(&gw, post(path, chat(model, stream))).await;
            assert_eq!(a.status, 200, "{path} {a:?}");
            assert!(a
                .headers
                .contains(&("x-aisbf-provider".into(), "up".into())));
        }
        let a = same_both_ways(&gw, post(path, b"{not json".to_vec())).await;
        assert_eq!(a.status, 400);
        assert!(error_message(&a).starts_with("invalid JSON body"), "{a:?}");
        let a = same_both_ways(&gw, post(path, Vec::new())).await;
        assert_eq!(a.status, 400);
        assert!(error_message(&a).contains("request body is empty"), "{a:?}");
        let a = same_both_ways(&gw, post(path, br#"{"model":"up/gpt-4o"}"#.to_vec())).await;
        assert_eq!(a.status, 400);
        // An unknown provider on /v1; on /api/up a model name the upstream is asked for.
        let a = same_both_ways(&gw, post(path, chat("nope/x", false))).await;
        assert_eq!(
            a.status,
            if path == "/api/up/chat/completions" {
                200
            } else {
                404
            }
        );
        // One byte over the limit, and exactly at it (then it is read, and is bad JSON).
        let a = same_both_ways(&gw, post(path, vec![b' '; LIMIT + 1])).await;
        assert_eq!(a.status, 413, "{a:?}");
        assert_eq!(
            error_message(&a),
            format!(
                "request body is larger than the limit of {LIMIT} bytes (limits.max_body_bytes)"
            )
        );
        let a = same_both_ways(&gw, post(path, vec![b' '; LIMIT])).await;
        assert_eq!(a.status, 400, "{a:?}");
        // Other methods stay with the router: 405 in the OpenAI shape.
        for method in ["GET", "PUT", "DELETE", "PATCH"] {
            let a = same_both_ways(
                &gw,
                Sent {
                    method,
                    path,
                    headers: &[],
                    body: Vec::new(),
                },
            )
            .await;
            assert_eq!(a.status, 405, "{method} {path} {a:?}");
        }
    }
}

#[tokio::test]
async fn provider_segments_are_decoded_as_axum_path_does() {
    let mock = OpenAiMock::start().await;
    let gw = gateway(&mock.endpoint, false).await;
    for (path, status) in [
        ("/api/u%70/chat/completions", 200),
        ("/api/a%20b/chat/completions", 200),
        ("/api/a+b/chat/completions", 404),
        ("/api/a%2Fb/chat/completions", 404),
        ("/api/%zz/chat/completions", 404),
        // Not UTF-8 once decoded: the router's `Path` rejection.
        ("/api/%ff/chat/completions", 400),
        ("/api//chat/completions", 404),
        ("/api/models/chat/completions", 404),
        ("/api/v1x/chat/completions", 404),
        ("/api/rotations/chat/completions", 404),
        ("/api/up/chat/completions/", 404),
        ("/api/up/x/chat/completions", 404),
        ("/api/chat/completions", 404),
        ("/v1/chat/completions/", 404),
        ("/V1/chat/completions", 404),
    ] {
        let a = same_both_ways(&gw, post(path, chat("gpt-4o", false))).await;
        assert_eq!(a.status, status, "{path} {a:?}");
    }
}

#[tokio::test]
async fn gateway_auth_is_the_same_on_the_direct_path() {
    let mock = OpenAiMock::start().await;
    let gw = gateway(&mock.endpoint, true).await;
    for path in ["/v1/chat/completions", "/api/up/chat/completions"] {
        let model = if path.starts_with("/api/up") {
            "gpt-4o"
        } else {
            "up/gpt-4o"
        };
        for (headers, status) in [
            (&[][..], 401),
            (&[("authorization", "Bearer wrong")][..], 401),
            (&[("authorization", "Basic gw-token")][..], 401),
            (&[("authorization", "Bearer gw-token")][..], 200),
            (&[("authorization", "bearer gw-token")][..], 200),
            (&[("x-api-key", "gw-token")][..], 200),
            (&[("x-api-key", "gw-token-2")][..], 401),
        ] {
            let a = same_both_ways(
                &gw,
                Sent {
                    method: "POST",
                    path,
                    headers,
                    body: chat(model, false),
                },
            )
            .await;
            assert_eq!(a.status, status, "{path} {headers:?} {a:?}");
            if status == 401 {
                let v: Value = serde_json::from_str(&a.body).unwrap();
                assert_eq!(v["error"]["type"], "authentication_error", "{a:?}");
            }
        }
        // Auth comes before the body is read: no token and too big is a 401, not a 413.
        let a = same_both_ways(&gw, post(path, vec![b' '; LIMIT + 1])).await;
        assert_eq!(a.status, 401, "{a:?}");
        // And before the method check.
        let a = same_both_ways(
            &gw,
            Sent {
                method: "GET",
                path,
                headers: &[],
                body: Vec::new(),
            },
        )
        .await;
        assert_eq!(a.status, 401, "{a:?}");
    }
    assert_eq!(
        mock.received.count(),
        2 * 3 * 2,
        "only accepted requests went up"
    );
    assert_eq!(
        mock.received.last().header("authorization"),
        Some("Bearer sk-up"),
        "the gateway token is never forwarded upstream"
    );
}

#[tokio::test]
async fn request_ids_on_the_direct_path() {
    let mock = OpenAiMock::start().await;
    let gw = gateway(&mock.endpoint, false).await;
    let id_of = |id: Option<&'static str>, body: Vec<u8>| {
        let mut rb = client().post(gw.url("/api/up/chat/completions")).body(body);
        if let Some(id) = id {
            rb = rb.header("x-request-id", id);
        }
        async move {
            let r = rb.send().await.unwrap();
            r.headers()["x-request-id"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(
        id_of(Some("trace-7"), chat("gpt-4o", false)).await,
        "trace-7"
    );
    // Errors answered on the direct path carry the client's id too.
    assert_eq!(id_of(Some("trace-8"), b"{".to_vec()).await, "trace-8");
    for generated in [
        id_of(None, chat("gpt-4o", false)).await,
        id_of(Some("tab\there"), chat("gpt-4o", false)).await,
    ] {
        assert_eq!(generated.len(), 32, "{generated}");
        assert!(
            generated
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{generated}"
        );
    }
}

/// A chunked body the server cannot read (a bad chunk size): 400 with the same text as when
/// axum's `Bytes` extractor read it.
#[tokio::test]
async fn an_unreadable_body_is_a_400() {
    let mock = OpenAiMock::start().await;
    let gw = gateway(&mock.endpoint, false).await;
    for path in ["/v1/chat/completions", "/api/up/chat/completions"] {
        let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\n\r\n5\r\n{{\"a\":\r\nzz\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 400 "), "{path}: {text}");
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        let v: Value = serde_json::from_str(body).unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("cannot read request body: Failed to buffer the request body: "),
            "{message}"
        );
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert_eq!(mock.received.count(), 0);
}
