//! What each command does: serve in the foreground, check the configuration; the daemon
//! commands live in `daemon`, the start-up steps both use in `startup`.

use crate::cli::{Cli, Command, LogFormat};
use crate::config::{self, IssueKind, ProviderKind};
use crate::daemon;
use crate::server::live::Live;
use crate::server::workers;
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
    let workers = match config.server.workers {
        0 => workers::auto_workers(),
        n => n,
    };
    let runtime = match workers::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aisbf: cannot start the runtime: {e}");
            return EXIT_FAIL;
        }
    };
    let (code, others) = runtime.block_on(async move {
        let addr = format!("{}:{}", config.server.host, config.server.port);
        // Bound once (tokio's SO_REUSEADDR and backlog), then handed to every worker.
        let listener = match tokio::net::TcpListener::bind(&addr)
            .await
            .and_then(|l| l.into_std())
        {
            Ok(l) => l,
            Err(e) => {
                eprintln!("aisbf: cannot listen on {addr}: {e}");
                return (EXIT_FAIL, Vec::new());
            }
        };
        let state = AppState::build(config);
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
        tracing::info!(
            "aisbf {} listening on http://{local} (config {}, {workers} worker thread{})",
            env!("CARGO_PKG_VERSION"),
            state.config.dir.display(),
            if workers == 1 { "" } else { "s" }
        );
        // A reload reads the same directory with the same command-line overrides.
        let overrides = cli.clone();
        let live = Live::new(state, Box::new(move || load_config(&overrides)));
        tokio::spawn(crate::server::reload_on_sighup(live.clone()));
        let slots = crate::server::connection_slots(&live);
        let team = workers::Team::new(workers);
        let signalled = team.clone();
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            signalled.stop();
        });
        let others = match workers::spawn_workers(workers, &listener, &live, &slots, &team) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("aisbf: cannot start the worker threads: {e}");
                team.abandon();
                return (EXIT_FAIL, Vec::new());
            }
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("aisbf: cannot listen on {local}: {e}");
                team.abandon();
                return (EXIT_FAIL, others);
            }
        };
        // Returns once every worker has drained (this runtime drives the upstream
        // connections it opened until then).
        match team.serve(listener, live, slots).await {
            Ok(()) => (EXIT_OK, others),
            Err(e) => {
                eprintln!("aisbf: server error: {e}");
                (EXIT_FAIL, others)
            }
        }
    });
    // Each has drained by now (or never started serving).
    for w in others {
        let _ = w.join();
    }
    if code == EXIT_OK {
        tracing::info!("stopped");
    }
    code
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
