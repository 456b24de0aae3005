//! What each command does: serve in the foreground, check the configuration; the daemon
//! commands live in `daemon`.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::cli::{Cli, Command, LogFormat};
use crate::config::{self, Config, IssueKind, ProviderKind};
use crate::daemon;
use crate::state::AppState;

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
pub const EXIT_CONFIG: i32 = 2;

pub fn run(cli: Cli) -> i32 {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            init_logging(cli.log_format);
            serve_foreground(&cli)
        }
        Command::Daemon => daemon::start(&cli),
        Command::Status => daemon::status(&cli),
        Command::Stop => daemon::stop(&cli),
        Command::CheckConfig => check_config(&cli),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never in the daemon's log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

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
    if !is_loopback(&c.server.host) && !c.auth.enabled {
        return Err(format!(
            "refusing to listen on {} with auth disabled: enable auth in aisbf.json (auth.enabled, auth.tokens) or bind 127.0.0.1",
            c.server.host
        ));
    }
    Ok(())
}

fn log_config_notes(c: &Config) {
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

fn serve_foreground(cli: &Cli) -> i32 {
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
    log_config_notes(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aisbf: cannot start the runtime: {e}");
            return EXIT_FAIL;
        }
    };
    runtime.block_on(async move {
        let addr = format!("{}:{}", config.server.host, config.server.port);
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("aisbf: cannot listen on {addr}: {e}");
                return EXIT_FAIL;
            }
        };
        let state = match AppState::build(config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("aisbf: cannot build the HTTP client: {e}");
                return EXIT_FAIL;
            }
        };
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
        tracing::info!(
            "aisbf {} listening on http://{local} (config {})",
            env!("CARGO_PKG_VERSION"),
            state.config.dir.display()
        );
        match crate::server::serve(listener, state, crate::server::shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("stopped");
                EXIT_OK
            }
            Err(e) => {
                eprintln!("aisbf: server error: {e}");
                EXIT_FAIL
            }
        }
    })
}

fn check_config(cli: &Cli) -> i32 {
    let c = match load_config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    println!("config dir: {}", c.dir.display());
    println!(
        "server: {}:{} (auth {})",
        c.server.host,
        c.server.port,
        if c.auth.enabled { "on" } else { "off" }
    );
    println!("providers: {}", c.providers.len());
    for (id, p) in &c.providers {
        let state = match (&p.kind, &p.api_key) {
            (ProviderKind::Unsupported(_), _) => "unsupported".to_string(),
            (_, config::ApiKey::MissingEnv(var)) => format!("key not set: export {var}"),
            _ => "ok".to_string(),
        };
        println!(
            "  {id:<16} {:<10} {:<40} {} models  [{state}]",
            p.kind.name(),
            p.endpoint(),
            p.models.len()
        );
    }
    println!(
        "rotations: {}",
        c.rotations.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    println!(
        "autoselect: {}",
        c.autoselect.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    if !c.ignored_keys.is_empty() {
        println!("ignored (not implemented): {}", c.ignored_keys.join("; "));
    }
    let mut errors = 0;
    for issue in &c.issues {
        match issue.kind {
            IssueKind::Unresolved => {
                errors += 1;
                println!("error: {issue}");
            }
            IssueKind::Unsupported => println!("warning: {issue}"),
        }
    }
    if let Err(e) = check_bind_safety(&c) {
        errors += 1;
        println!("error: aisbf.json: server.host: {e}");
    }
    if errors > 0 {
        println!("{errors} error(s)");
        EXIT_CONFIG
    } else {
        println!("configuration OK");
        EXIT_OK
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
