//! Configuration: the original aisbf's four JSON files, typed, loaded and validated once.
//!
//! `files` holds the serde structs of each file, `load` reads a directory (writing the shipped
//! defaults on first run), `validate` checks values and cross-file references.

mod files;
mod load;
mod validate;

pub use files::*;
pub use load::{ensure_defaults, load, resolve_dir, DEFAULT_FILES};
pub use validate::v1_target_exists;

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything aisbf reads from its configuration directory, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub server: ServerSection,
    pub auth: AuthSection,
    pub limits: LimitsSection,
    pub timeouts: TimeoutsSection,
    pub error_tracking: ErrorTrackingSection,
    pub responses: ResponsesSection,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub condensation: Option<CondensationSection>,
    pub rotations: BTreeMap<String, RotationConfig>,
    pub autoselect: BTreeMap<String, AutoselectConfig>,
    /// aisbf.json `model_aliases`, applied to `/v1` model names (`routing::resolve_v1`).
    pub model_aliases: ModelAliases,
    /// Problems that do not stop the server (unresolvable references, unsupported provider
    /// types); `check-config` reports the `Unresolved` ones as errors.
    pub issues: Vec<ConfigIssue>,
    /// Keys of the original aisbf that we do not implement, per file, for one info line.
    pub ignored_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueKind {
    /// A rotation or autoselect names something that does not exist: it is unusable.
    Unresolved,
    /// An original provider type (codex, kiro, claude OAuth...) that aisbf does not serve.
    Unsupported,
}

#[derive(Debug, Clone)]
pub struct ConfigIssue {
    pub kind: IssueKind,
    pub file: &'static str,
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.path, self.message)
    }
}

impl Config {
    /// Is the rotation / autoselect named usable (all of its references resolve)?
    pub fn is_unusable(&self, file: &str, name: &str) -> bool {
        let prefix = match file {
            "rotations.json" => format!("rotations.{name}"),
            _ => format!("autoselect.{name}"),
        };
        self.issues.iter().any(|i| {
            i.kind == IssueKind::Unresolved
                && i.file == file
                && (i.path == prefix || i.path.starts_with(&format!("{prefix}.")))
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {path}: {message}")]
    Parse {
        file: PathBuf,
        path: String,
        message: String,
    },
    #[error("{file}: {path}: {message}")]
    Invalid {
        file: &'static str,
        path: String,
        message: String,
    },
    #[error("configuration directory: {0}")]
    Dir(String),
}
