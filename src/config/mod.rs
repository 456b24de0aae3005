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
    pub state: StateSection,
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
    /// The rotations and autoselects with an `Unresolved` issue, derived once from `issues`.
    pub unusable: Unusable,
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

/// A configuration file whose entries can be unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    Rotation,
    Autoselect,
}

impl Routed {
    pub fn file(self) -> &'static str {
        match self {
            Routed::Rotation => "rotations.json",
            Routed::Autoselect => "autoselect.json",
        }
    }
}

/// Names whose references do not all resolve, per file.
#[derive(Debug, Clone, Default)]
pub struct Unusable {
    pub rotations: std::collections::BTreeSet<String>,
    pub autoselect: std::collections::BTreeSet<String>,
}

impl Unusable {
    /// The names among `rotations` / `autoselect` that an `Unresolved` issue points into
    /// (`rotations.NAME` or `rotations.NAME.…`).
    pub fn from_issues<'a>(
        issues: &[ConfigIssue],
        rotations: impl Iterator<Item = &'a String>,
        autoselect: impl Iterator<Item = &'a String>,
    ) -> Unusable {
        let hit = |file: &str, prefix: String| {
            issues.iter().any(|i| {
                i.kind == IssueKind::Unresolved
                    && i.file == file
                    && (i.path == prefix || i.path.starts_with(&format!("{prefix}.")))
            })
        };
        Unusable {
            rotations: rotations
                .filter(|n| hit(Routed::Rotation.file(), format!("rotations.{n}")))
                .cloned()
                .collect(),
            autoselect: autoselect
                .filter(|n| hit(Routed::Autoselect.file(), format!("autoselect.{n}")))
                .cloned()
                .collect(),
        }
    }
}

impl Config {
    /// Does the rotation / autoselect `name` have a reference that does not resolve?
    pub fn is_unusable(&self, what: Routed, name: &str) -> bool {
        let set = match what {
            Routed::Rotation => &self.unusable.rotations,
            Routed::Autoselect => &self.unusable.autoselect,
        };
        set.contains(name)
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
