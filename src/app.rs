//! What each command does: serve in the foreground, check the configuration; the daemon
//! commands live in `daemon`, the start-up steps both use in `startup`.

use crate::cli::{Cli, Command, LogFormat};
use crate::config::{self, IssueKind, ProviderKind};
use crate::daemon;
use crate::server::live::Live;
use crate::startup::{
    check_bind_safety, load_config, log_config_notes, EXIT_CONFIG, EXIT_FAIL, EXIT_OK,
};
use crate::state::AppState;

pub fn run(cli: Cli) -> i32 {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            init_logging(cli.log_format);
            serve_foreground(&cli)
        }
        Command::Daemon => daemon::start(&cli),
        Command::Status => daemon::status(&cli),
        Command::Stop => daemon::stop(&cli),
        Command::Reload => daemon::reload(&cli),
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
        let state = AppState::build(config);
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
        tracing::info!(
            "aisbf {} listening on http://{local} (config {})",
            env!("CARGO_PKG_VERSION"),
            state.config.dir.display()
        );
        // A reload reads the same directory with the same command-line overrides.
        let overrides = cli.clone();
        let live = Live::new(state, Box::new(move || load_config(&overrides)));
        tokio::spawn(crate::server::reload_on_sighup(live.clone()));
        match crate::server::serve_live(listener, live, crate::server::shutdown_signal()).await {
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
