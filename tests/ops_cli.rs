//! Operations on the built binary: `aisbf reload` and SIGHUP against a daemon with a stream
//! in flight, the access log in JSON and text, and a daemon start that another server on
//! the port cannot fake.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_aisbf");
const KEY: &str = "sk-access-secret-31337";

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("AISBF_CONFIG_DIR")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chunk(content: &str, finish: &str) -> String {
    format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":{finish}}}]}}\n\n")
}

/// An OpenAI-compatible upstream on a thread: JSON answers, or a slow SSE stream of
/// `pieces` events 100 ms apart when the request asks for a stream.
fn upstream(pieces: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 65536];
                // Head and the (small) JSON body.
                while !String::from_utf8_lossy(&req).contains("\"messages\"") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req);
                if req.contains("\"stream\":true") {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n");
                    for i in 0..pieces {
                        let _ = s.write_all(chunk(&i.to_string(), "null").as_bytes());
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    let _ = s.write_all(chunk("", "\"stop\"").as_bytes());
                    let _ = s.write_all(b"data: [DONE]\n\n");
                } else {
                    let body = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
                    let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                }
            });
        }
    });
    port
}

fn providers_json(entries: &[(&str, String)]) -> String {
    let inner: Vec<String> = entries
        .iter()
        .map(|(id, endpoint)| {
            format!(r#""{id}":{{"type":"openai","endpoint":"{endpoint}","api_key":"{KEY}","models":[{{"name":"m"}}]}}"#)
        })
        .collect();
    format!(r#"{{"providers":{{{}}}}}"#, inner.join(","))
}

/// One HTTP/1.1 request on a fresh connection; returns the whole raw response.
fn http(port: u16, method: &str, path: &str, body: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn chat(port: u16, model: &str, stream: bool, headers: &str) -> String {
    let body = format!(
        r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    http(port, "POST", "/v1/chat/completions", &body, headers)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn count(log_path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log_path)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

#[test]
fn reload_and_sighup_swap_the_config_under_a_stream_in_flight() {
    let up = format!("http://127.0.0.1:{}/v1", upstream(20));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cfg");
    std::fs::create_dir_all(&dir).unwrap();
    let providers = dir.join("providers.json");
    std::fs::write(&providers, providers_json(&[("up", up.clone())])).unwrap();
    let pid_file = tmp.path().join("aisbf.pid");
    let port = free_port();
    let port_s = port.to_string();
    let common = [
        "--config-dir",
        dir.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--port",
        &port_s,
    ];
    let cmd = |c: &str| {
        let mut v = vec![c];
        v.extend_from_slice(&common);
        run(&v)
    };
    let log = dir.join("aisbf.log");

    let o = cmd("reload");
    assert_eq!(o.status.code(), Some(3), "no daemon yet: {}", text(&o));
    let o = cmd("daemon");
    assert!(o.status.success(), "{}", text(&o));
    assert!(chat(port, "up/m", false, "").starts_with("HTTP/1.1 200"));

    // A 2 s stream, in flight across the reload.
    let stream = std::thread::spawn(move || chat(port, "up/m", true, ""));
    std::thread::sleep(Duration::from_millis(400));
    std::fs::write(
        &providers,
        providers_json(&[("up", up.clone()), ("added", up.clone())]),
    )
    .unwrap();
    let o = cmd("reload");
    assert!(o.status.success(), "{}", text(&o));
    wait_until("the added provider to serve", || {
        chat(port, "added/m", false, "").starts_with("HTTP/1.1 200")
    });
    let out = stream.join().unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let digits: String = (0..20).map(|i| format!("\"content\":\"{i}\"")).collect();
    let got: String = (0..20)
        .filter(|i| out.contains(&format!("\"content\":\"{i}\"")))
        .map(|i| format!("\"content\":\"{i}\""))
        .collect();
    assert_eq!(got, digits, "every event of the stream arrived: {out}");
    assert!(out.contains("data: [DONE]"), "{out}");
    wait_until("the reload to be logged", || {
        count(&log, "configuration reloaded") == 1
    });

    // A broken file: `aisbf reload` says where, and does not signal the daemon.
    std::fs::write(
        &providers,
        r#"{"providers":{"up":{"type":"openai","models":"nope"}}}"#,
    )
    .unwrap();
    let o = cmd("reload");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("providers.json"), "{}", text(&o));
    assert!(text(&o).contains("providers.up.models"), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        count(&log, "reloading the configuration"),
        1,
        "not signalled"
    );

    // SIGHUP with the broken file: refused, logged with file and field, nothing changes.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_until("the refusal to be logged", || {
        count(&log, "reload refused") == 1
    });
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("providers.up.models"), "{logged}");
    assert!(chat(port, "added/m", false, "").starts_with("HTTP/1.1 200"));

    // Counters survived the reload: requests made before it are still counted.
    let metrics = http(port, "GET", "/metrics", "", "");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("aisbf_requests_total{")
                && l.contains("target=\"up/m\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(line.ends_with(" 2"), "{line}");
    assert!(!logged.contains(KEY), "the key never reaches the log");

    let o = cmd("stop");
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(&providers, providers_json(&[("up", up)])).unwrap();
    let o = cmd("reload");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn daemon_start_is_not_fooled_by_another_server_on_the_port() {
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in other.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("aisbf.pid");
    let o = run(&[
        "daemon",
        "--config-dir",
        tmp.path().join("cfg").to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);
    assert!(
        !o.status.success(),
        "another server answered /health, yet the daemon reported a start: {}",
        text(&o)
    );
    assert!(!pid_file.exists(), "{}", text(&o));
}

/// Runs `aisbf serve` with `format`, makes three requests (ok, stream, a failing provider)
/// with ids `{tag}-1..3`, stops it, and returns its log.
/// `aisbf` in the foreground on `port` with the config in `dir` and `extra` flags, logging
/// at info to `dir/stderr.log`; returns once it accepts connections.
fn serve_logged(dir: &Path, port: u16, extra: &[&str]) -> std::process::Child {
    let server = Command::new(BIN)
        .args([
            "--config-dir",
            dir.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("stderr.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    wait_until("the server", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    server
}

fn terminate(server: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

fn serve_and_log(format: &str, tag: &str) -> String {
    let up = format!("http://127.0.0.1:{}/v1", upstream(3));
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("providers.json"),
        providers_json(&[("up", up), ("dead", dead)]),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("aisbf.json"),
        r#"{"error_tracking":{"max_failures":1,"cooldown_seconds":60}}"#,
    )
    .unwrap();
    let log_path = tmp.path().join("stderr.log");
    let port = free_port();
    let mut server = serve_logged(tmp.path(), port, &["--log-format", format]);
    let r = chat(port, "up/m", false, &format!("x-request-id: {tag}-1\r\n"));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains(&format!("x-request-id: {tag}-1")), "{r}");
    let r = chat(
        port,
        "up/m",
        true,
        &format!("x-request-id: {tag}-2\r\nAuthorization: Bearer {KEY}\r\n"),
    );
    assert!(r.contains("data: [DONE]"), "{r}");
    let r = chat(port, "dead/m", false, &format!("x-request-id: {tag}-3\r\n"));
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    wait_until("three access lines", || {
        count(&log_path, "aisbf::access") >= 3
    });
    terminate(&server);
    assert!(server.wait().unwrap().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains(KEY), "a key in the log: {log}");
    assert!(
        !log.contains("\"content\":\"hi\""),
        "a body in the log: {log}"
    );
    log
}

#[test]
fn access_log_lines_in_json() {
    let log = serve_and_log("json", "json");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access = |id: &str| -> Value {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|l| l["target"] == "aisbf::access" && l["fields"]["id"] == id)
            .collect();
        assert_eq!(found.len(), 1, "one access line for {id}: {log}");
        found[0]["fields"].clone()
    };
    let one = access("json-1");
    assert_eq!(one["method"], "POST");
    assert_eq!(one["path"], "/v1/chat/completions");
    assert_eq!(one["status"], 200);
    assert_eq!(one["provider"], "up");
    assert_eq!(one["model"], "m");
    assert_eq!(one["prompt_tokens"], 5);
    assert_eq!(one["completion_tokens"], 2);
    assert!(one["duration_ms"].as_f64().unwrap() > 0.0, "{one}");
    assert_eq!(access("json-2")["status"], 200);
    let three = access("json-3");
    assert_eq!(three["status"], 502);
    assert_eq!(
        three["provider"], "dead",
        "the provider that failed: {three}"
    );
    // Every line about a request carries its id: the cooldown warning is one.
    let cooling = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cooling down"))
        })
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(cooling["span"]["id"], "json-3", "{cooling}");
}

#[test]
fn access_log_lines_in_text() {
    let log = serve_and_log("text", "text");
    let line = |id: &str| -> String {
        let found: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("aisbf::access") && l.contains(&format!("id={id}")))
            .collect();
        assert_eq!(found.len(), 1, "one access line for {id}: {log}");
        found[0].to_string()
    };
    let one = line("text-1");
    for part in [
        "method=POST",
        "path=/v1/chat/completions",
        "status=200",
        "provider=\"up\"",
        "model=\"m\"",
        "prompt_tokens=5",
        "completion_tokens=2",
        "duration_ms=",
    ] {
        assert!(one.contains(part), "{part} in {one}");
    }
    assert!(line("text-3").contains("status=502"));
    let cooling = log
        .lines()
        .find(|l| l.contains("cooling down"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(cooling.contains("text-3"), "{cooling}");
}

/// `server.workers` = 3: every worker accepts from the one socket, requests on many
/// connections at once all succeed, and SIGTERM lets streams in flight finish (whichever
/// worker opened their upstream connection) before the process exits 0.
#[test]
fn several_workers_serve_and_drain_streams_on_sigterm() {
    let up = format!("http://127.0.0.1:{}/v1", upstream(5));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("providers.json"),
        providers_json(&[("up", up)]),
    )
    .unwrap();
    std::fs::write(tmp.path().join("aisbf.json"), r#"{"server":{"workers":3}}"#).unwrap();
    let log_path = tmp.path().join("stderr.log");
    let port = free_port();
    let mut server = serve_logged(tmp.path(), port, &[]);
    // Bound before the state is built: the line may follow the first connection.
    wait_until("the start-up line", || {
        count(&log_path, "3 worker threads") == 1
    });
    let plain: Vec<_> = (0..12)
        .map(|_| std::thread::spawn(move || chat(port, "up/m", false, "")))
        .collect();
    for r in plain {
        let r = r.join().unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    let streams: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || chat(port, "up/m", true, "")))
        .collect();
    wait_until("four streams in flight", || {
        count(&log_path, "aisbf::access") >= 12 && TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    std::thread::sleep(Duration::from_millis(200));
    terminate(&server);
    for s in streams {
        let r = s.join().unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(
            r.contains("data: [DONE]"),
            "a stream cut by the shutdown: {r}"
        );
        assert_eq!(r.matches("\"content\":\"").count(), 5 + 1, "{r}");
    }
    assert!(server.wait().unwrap().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("draining"), "{log}");
}
