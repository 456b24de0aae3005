//! `daemon`, `status`, `stop`, `reload`: a detached server tracked by a pid file. A zombie or a PID now
//! used by another program counts as not running (PID 1 may not reap our exited daemon).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::Cli;
use crate::startup::{check_bind_safety, load_config, EXIT_CONFIG, EXIT_FAIL, EXIT_OK};

pub const EXIT_NOT_RUNNING: i32 = 3;
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Is `pid` a live (not zombie) aisbf process?
pub fn is_running(pid: i32) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // Field 3, after the parenthesised command name (which may itself contain spaces).
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if state == Some("Z") || state == Some("X") {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => String::from_utf8_lossy(&cmd).contains("aisbf"),
        Err(_) => true,
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Running daemon's PID; a stale pid file is reported and removed.
fn running_pid(path: &Path) -> Option<i32> {
    let pid = read_pid(path)?;
    if is_running(pid) {
        return Some(pid);
    }
    eprintln!(
        "removing stale pid file {} (PID {pid} is not running)",
        path.display()
    );
    let _ = std::fs::remove_file(path);
    None
}

/// Does our daemon `pid` answer `/health` on host:port? The answer must name that PID:
/// another server already on the port answers too, and must not pass for the daemon.
fn health_ok(host: &str, port: u16, pid: i32) -> bool {
    let host = if host == "0.0.0.0" || host == "::" {
        "127.0.0.1"
    } else {
        host
    };
    let addr = format!(
        "{}:{port}",
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        }
    );
    let Ok(mut s) = TcpStream::connect(&addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: aisbf\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let ours = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("x-aisbf-pid") && v.trim() == pid.to_string()
        })
    });
    head.starts_with("HTTP/1.1 200") && ours
}

pub fn start(cli: &Cli) -> i32 {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aisbf: configuration error: {e}");
            return EXIT_CONFIG;
        }
    };
    if let Err(e) = check_bind_safety(&config) {
        eprintln!("aisbf: {e}");
        return EXIT_CONFIG;
    }
    if let Some(pid) = running_pid(&cli.pid_file) {
        eprintln!(
            "aisbf is already running (PID {pid}, pid file {})",
            cli.pid_file.display()
        );
        return EXIT_FAIL;
    }
    let log_path = config.dir.join("aisbf.log");
    let log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("aisbf: cannot open log file {}: {e}", log_path.display());
            return EXIT_FAIL;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("aisbf: cannot find own executable: {e}");
            return EXIT_FAIL;
        }
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config-dir")
        .arg(&config.dir)
        .arg("--host")
        .arg(&config.server.host)
        .arg("--port")
        .arg(config.server.port.to_string())
        .arg("--log-format")
        .arg(match cli.log_format {
            crate::cli::LogFormat::Json => "json",
            crate::cli::LogFormat::Text => "text",
        })
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .stderr(Stdio::from(log));
    // A new session: the daemon outlives the terminal and is not hit by its Ctrl-C.
    use std::os::unix::process::CommandExt;
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aisbf: cannot start the daemon: {e}");
            return EXIT_FAIL;
        }
    };
    let pid = child.id() as i32;
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!(
                "aisbf: the daemon exited during start-up ({status}); see {}:",
                log_path.display()
            );
            print_log_tail(&log_path);
            return EXIT_FAIL;
        }
        if health_ok(&config.server.host, config.server.port, pid) {
            if let Err(e) = std::fs::write(&cli.pid_file, format!("{pid}\n")) {
                eprintln!(
                    "aisbf: cannot write pid file {}: {e}",
                    cli.pid_file.display()
                );
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                return EXIT_FAIL;
            }
            println!("{pid}");
            eprintln!(
                "aisbf started (PID {pid}) on http://{}:{}, log {}, pid file {}",
                config.server.host,
                config.server.port,
                log_path.display(),
                cli.pid_file.display()
            );
            return EXIT_OK;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "aisbf: the daemon did not answer /health within {}s; stopping it",
        START_TIMEOUT.as_secs()
    );
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = child.wait();
    print_log_tail(&log_path);
    EXIT_FAIL
}

fn print_log_tail(path: &Path) {
    if let Ok(text) = std::fs::read_to_string(path) {
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(10)..] {
            eprintln!("  {l}");
        }
    }
}

pub fn status(cli: &Cli) -> i32 {
    match running_pid(&cli.pid_file) {
        Some(pid) => {
            let addr = load_config(cli)
                .map(|c| format!(" on http://{}:{}", c.server.host, c.server.port))
                .unwrap_or_default();
            println!("aisbf is running (PID {pid}){addr}");
            EXIT_OK
        }
        None => {
            println!("aisbf is not running");
            EXIT_NOT_RUNNING
        }
    }
}

pub fn stop(cli: &Cli) -> i32 {
    let Some(pid) = running_pid(&cli.pid_file) else {
        println!("aisbf is not running");
        return EXIT_OK;
    };
    if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
        eprintln!("aisbf: cannot signal PID {pid}: {e}");
        return EXIT_FAIL;
    }
    let deadline = Instant::now() + crate::server::DRAIN_TIMEOUT + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !is_running(pid) {
            let _ = std::fs::remove_file(&cli.pid_file);
            println!("aisbf stopped (PID {pid})");
            return EXIT_OK;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("aisbf: PID {pid} did not stop in time; killing it");
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = std::fs::remove_file(&cli.pid_file);
    EXIT_FAIL
}

/// `aisbf reload`: validates the configuration as the daemon would load it (a broken file is
/// reported here and the daemon is not disturbed), then sends the daemon SIGHUP.
pub fn reload(cli: &Cli) -> i32 {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aisbf: configuration error: {e}; the daemon was not signalled");
            return EXIT_CONFIG;
        }
    };
    if let Err(e) = check_bind_safety(&config) {
        eprintln!("aisbf: {e}; the daemon was not signalled");
        return EXIT_CONFIG;
    }
    let Some(pid) = running_pid(&cli.pid_file) else {
        println!("aisbf is not running");
        return EXIT_NOT_RUNNING;
    };
    if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGHUP) {
        eprintln!("aisbf: cannot signal PID {pid}: {e}");
        return EXIT_FAIL;
    }
    println!(
        "reload signalled (PID {pid}); the outcome is in {}",
        config.dir.join("aisbf.log").display()
    );
    EXIT_OK
}
