//! Command-line definitions (design.md §10). Every flag is global.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "aisbf",
    version,
    about = "AI Service Broker Framework: an OpenAI-compatible AI gateway"
)]
pub struct Cli {
    /// Configuration directory (default: $AISBF_CONFIG_DIR, else ~/.aisbf).
    #[arg(long, global = true, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Address to bind (overrides aisbf.json server.host).
    #[arg(long, global = true)]
    pub host: Option<String>,
    /// Port to bind (overrides aisbf.json server.port).
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// Pid file of the daemon.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "/tmp/aisbf.pid"
    )]
    pub pid_file: PathBuf,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run in the foreground (the default).
    Serve,
    /// Start detached, wait until it answers /health, print its PID.
    Daemon,
    /// Is the daemon running? Exit 0 if so, 3 if not.
    Status,
    /// Stop the daemon gracefully (SIGTERM, in-flight requests drain).
    Stop,
    /// Validate the configuration, then tell the daemon to reload it (SIGHUP). Exit 3 if no
    /// daemon runs.
    Reload,
    /// Validate the configuration and print a summary.
    CheckConfig,
}
