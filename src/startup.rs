//! Start-up steps shared by `serve` (app) and `daemon`: exit codes, loading the
//! configuration with the CLI overrides, and the bind-safety check. Neither command module
//! imports the other for these.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::cli::Cli;
use crate::config::{self, Config};

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
pub const EXIT_CONFIG: i32 = 2;

/// Config dir, first-run defaults, load, CLI overrides, and the bind-safety check.
pub fn load_config(cli: &Cli) -> Result<Config, String> {
    let dir: PathBuf = config::resolve_dir(cli.config_dir.as_deref()).map_err(|e| e.to_string())?;
    let written = config::ensure_defaults(&dir).map_err(|e| e.to_string())?;
    if !written.is_empty() {
        tracing::info!(
            "first run: wrote default {} to {}",
            written.join(", "),
            dir.display()
        );
    }
    let mut c = config::load(&dir).map_err(|e| e.to_string())?;
    if let Some(h) = &cli.host {
        c.server.host = h.clone();
    }
    if let Some(p) = cli.port {
        c.server.port = p;
    }
    Ok(c)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a non-loopback bind without gateway auth: keys would be open to the network.
pub fn check_bind_safety(c: &Config) -> Result<(), String> {
    check_host_safety(&c.server.host, c.auth.enabled)
}

/// The same check for a running server's `host` (a reload cannot move the listener).
pub fn check_host_safety(host: &str, auth_enabled: bool) -> Result<(), String> {
    if !is_loopback(host) && !auth_enabled {
        return Err(format!(
            "refusing to listen on {host} with auth disabled: enable auth in aisbf.json (auth.enabled, auth.tokens) or bind 127.0.0.1"
        ));
    }
    Ok(())
}

pub fn log_config_notes(c: &Config) {
    if !c.ignored_keys.is_empty() {
        tracing::info!(
            "ignoring keys aisbf does not implement: {}",
            c.ignored_keys.join("; ")
        );
    }
    for issue in &c.issues {
        tracing::warn!("{issue}");
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["0.0.0.0", "192.168.1.2", "::", "example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
