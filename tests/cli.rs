//! The built binary as a user runs it: first run, check-config, daemon/status/stop, signals.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_aisbf");

fn fixtures(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/compat")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

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
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn first_run_writes_the_defaults_and_they_check_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fresh/.aisbf");
    let o = run(&["check-config", "--config-dir", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "aisbf.json",
        "providers.json",
        "rotations.json",
        "autoselect.json",
    ] {
        assert!(dir.join(f).exists(), "{f} written on first run");
    }
    let out = text(&o);
    assert!(out.contains("configuration OK"), "{out}");
    assert!(out.contains("ollama"), "{out}");
    // Never overwrites a user's file.
    std::fs::write(dir.join("rotations.json"), r#"{"rotations":{}}"#).unwrap();
    run(&["check-config", "--config-dir", dir.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(dir.join("rotations.json")).unwrap(),
        r#"{"rotations":{}}"#
    );
}

#[test]
fn the_original_aisbf_files_load_and_report_what_is_unsupported() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixtures("aisbf-0.99.92"), tmp.path());
    let o = run(&["check-config", "--config-dir", tmp.path().to_str().unwrap()]);
    let out = text(&o);
    assert!(
        out.contains("codex") && out.contains("unsupported"),
        "{out}"
    );
    assert!(
        out.contains("ignored (not implemented)") && out.contains("dashboard"),
        "{out}"
    );
    // The original's own autoselect names a fallback that does not exist.
    assert!(
        out.contains("autoselect.json: autoselect.autoselect.fallback"),
        "{out}"
    );
    assert_eq!(o.status.code(), Some(2), "{out}");
}

#[test]
fn seed_examples_name_the_missing_provider() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixtures("seed-examples"), tmp.path());
    let o = run(&["check-config", "--config-dir", tmp.path().to_str().unwrap()]);
    let out = text(&o);
    assert!(
        out.contains("rotations.json: rotations.balanced.providers[1].provider_id: unknown provider 'anthropic'"),
        "{out}"
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn config_errors_name_file_path_and_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("providers.json"),
        r#"{"providers":{"x":{"type":"openai","models":[{"name":"m","context_size":"big"}]}}}"#,
    )
    .unwrap();
    let o = run(&["check-config", "--config-dir", d.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("providers.json") && out.contains("providers.x.models[0].context_size"),
        "{out}"
    );

    std::fs::write(
        d.join("providers.json"),
        r#"{"providers":{"v1":{"type":"openai"}}}"#,
    )
    .unwrap();
    let out = text(&run(&["check-config", "--config-dir", d.to_str().unwrap()]));
    assert!(
        out.contains("providers.v1") && out.contains("reserved"),
        "{out}"
    );

    std::fs::write(
        d.join("providers.json"),
        r#"{"providers":{"x":{"type":"openai","endpoint":"ftp://x"}}}"#,
    )
    .unwrap();
    let out = text(&run(&["check-config", "--config-dir", d.to_str().unwrap()]));
    assert!(out.contains("providers.x.endpoint"), "{out}");

    std::fs::write(d.join("providers.json"), r#"{"providers":{}}"#).unwrap();
    std::fs::write(d.join("aisbf.json"), r#"{"server":{"workers":100000}}"#).unwrap();
    let out = text(&run(&["check-config", "--config-dir", d.to_str().unwrap()]));
    assert!(
        out.contains("aisbf.json") && out.contains("server.workers"),
        "{out}"
    );
    std::fs::remove_file(d.join("aisbf.json")).unwrap();

    std::fs::write(d.join("providers.json"), "{\"providers\": {").unwrap();
    let o = run(&["--config-dir", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("providers.json"), "{}", text(&o));
}

#[test]
fn non_loopback_without_auth_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&[
        "--config-dir",
        tmp.path().to_str().unwrap(),
        "--host",
        "0.0.0.0",
        "--port",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("auth"), "{}", text(&o));
}

fn wait_health(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn daemon_status_stop_with_pid_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cfg");
    let pid_file = tmp.path().join("aisbf.pid");
    let port = free_port().to_string();
    let common = [
        "--config-dir",
        dir.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--port",
        &port,
    ];
    fn with<'a>(cmd: &'a str, common: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![cmd];
        v.extend_from_slice(common);
        v
    }
    let args = |cmd: &'static str| with(cmd, &common);

    let o = run(&args("status"));
    assert_eq!(o.status.code(), Some(3), "not running yet: {}", text(&o));

    let o = run(&args("daemon"));
    assert!(o.status.success(), "{}", text(&o));
    let pid: i32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("daemon prints its PID");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    assert!(wait_health(port.parse().unwrap()));

    let o = run(&args("status"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains(&pid.to_string()));

    let o = run(&args("daemon"));
    assert!(!o.status.success());
    assert!(text(&o).contains("already running"), "{}", text(&o));

    let o = run(&args("stop"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(!pid_file.exists(), "stop removes the pid file");
    let o = run(&args("status"));
    assert_eq!(o.status.code(), Some(3));
    let log = std::fs::read_to_string(dir.join("aisbf.log")).unwrap();
    assert!(log.contains("listening on"), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
}

#[test]
fn stale_and_zombie_pid_files_count_as_not_running() {
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("aisbf.pid");
    let dir = tmp.path().join("cfg");
    // A child we never wait for: it stays a zombie of this test process.
    let child = Command::new("true").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for pid in [child.id() as i64, 4_000_000] {
        std::fs::write(&pid_file, format!("{pid}\n")).unwrap();
        let o = run(&[
            "status",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--config-dir",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(3), "pid {pid}: {}", text(&o));
        assert!(text(&o).contains("stale"), "{}", text(&o));
        assert!(!pid_file.exists(), "stale pid file removed");
    }
    drop(child);
}

#[test]
fn sigterm_drains_an_in_flight_stream_and_exits_zero() {
    // Upstream: a slow SSE stream served by a tiny thread-based HTTP server.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = upstream.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in upstream.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                use std::io::Write;
                let mut buf = [0u8; 65536];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n");
                for i in 0..10 {
                    let ev = format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{i}\"}},\"finish_reason\":null}}]}}\n\n");
                    let _ = s.write_all(ev.as_bytes());
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = s.write_all(b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
            });
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("providers.json"),
        format!(r#"{{"providers":{{"up":{{"type":"openai","endpoint":"http://127.0.0.1:{up_port}/v1","models":[{{"name":"m"}}]}}}}}}"#),
    )
    .unwrap();
    let port = free_port();
    let mut server = Command::new(BIN)
        .args([
            "--config-dir",
            tmp.path().to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_health(port));
    let client = std::thread::spawn(move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let body = r#"{"model":"up/m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = client.join().unwrap();
    assert!(
        out.contains("data: [DONE]"),
        "the in-flight stream finished: {out}"
    );
    assert!(out.contains("\"9\""), "{out}");
    let status = server.wait().unwrap();
    assert!(status.success(), "exit 0 after draining: {status:?}");
}

#[test]
fn an_alias_to_an_unknown_target_fails_check_config_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(
        run(&["check-config", "--config-dir", dir.to_str().unwrap()])
            .status
            .success()
    );
    let path = dir.join("aisbf.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["model_aliases"] = serde_json::json!({"claude-*": "nowhere/model", "fine": "openai/gpt-4o"});
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = run(&["check-config", "--config-dir", dir.to_str().unwrap()]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("aisbf.json") && out.contains("model_aliases.claude-*"),
        "{out}"
    );
    assert!(!out.contains("model_aliases.fine"), "{out}");
}
