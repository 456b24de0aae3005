//! The listener cannot be starved (design.md §15): slow or silent request heads are cut at
//! `timeouts.header_seconds` (a deadline, not per read), idle keep-alive connections at
//! `timeouts.keepalive_seconds` (and not at the header deadline), and with
//! `limits.max_connections` held by idle clients the server's descriptors stay bounded and
//! it serves again once they are gone.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{client, ConfigDir, Gateway};

/// The tests count this process's descriptors: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn gateway(header: f64, keepalive: f64, max_connections: usize) -> Gateway {
    let cfg = ConfigDir::new(json!({}));
    cfg.aisbf(json!({
        "timeouts": {"header_seconds": header, "keepalive_seconds": keepalive},
        "limits": {"max_connections": max_connections},
    }));
    Gateway::start_with(cfg).await
}

/// True once the server has closed `s` (EOF or reset); false if it is still open after
/// `wait`. Anything the server sent before closing is skipped.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn get_health(s: &mut TcpStream) -> String {
    s.write_all(b"GET /health HTTP/1.1\r\nHost: aisbf\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\nok") {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_trickled_or_silent_request_head_is_cut_at_the_deadline() {
    let _one = SERIAL.lock().await;
    let gw = gateway(1.0, 30.0, 64).await;

    // One byte every 100 ms: each read is quick, the head as a whole is not.
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(20) {
        if slow.write_all(b"X").await.is_err()
            || closed_within(&mut slow, Duration::from_millis(100)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a trickling client was still connected after 20 s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut before the 1 s deadline: {:?}",
        started.elapsed()
    );

    // A client that connects and sends nothing.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(20)).await,
        "a silent connection was still open after 20 s"
    );
}

#[tokio::test]
async fn idle_keep_alive_lasts_past_the_header_deadline_then_closes() {
    let _one = SERIAL.lock().await;
    let gw = gateway(1.0, 4.0, 64).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    assert!(get_health(&mut s).await.starts_with("HTTP/1.1 200"));
    // Idle longer than the header deadline: still usable (keep-alive is 4 s).
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(get_health(&mut s).await.starts_with("HTTP/1.1 200"));
    let idle_since = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(30)).await,
        "idle keep-alive connection never closed"
    );
    assert!(
        idle_since.elapsed() >= Duration::from_millis(3500),
        "closed before keepalive_seconds: {:?}",
        idle_since.elapsed()
    );
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn idle_clients_past_max_connections_cannot_pin_descriptors() {
    let _one = SERIAL.lock().await;
    let gw = gateway(1.0, 30.0, 4).await;
    // Warm up whatever the runtime and the client open once.
    let c = client();
    assert_eq!(c.get(gw.url("/health")).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = open_fds();
    let mut idle = Vec::new();
    for _ in 0..30 {
        idle.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = open_fds() - base;
    // 30 client sockets are ours; the server may hold at most 4 accepted ones (+ slack for
    // the runtime). Without the cap it would hold 30 more.
    assert!(held <= 30 + 4 + 6, "{held} descriptors for 30 idle clients");

    // The server recovers: the idle heads time out and a real request is served.
    let r = c
        .get(gw.url("/health"))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("served once the idle clients were cut");
    assert_eq!(r.status(), 200);
    drop(idle);
}
