//! Reading the configuration directory: first-run defaults, JSON parsing with paths in errors.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::files::*;
use super::{validate, Config, ConfigError};

/// The shipped defaults, embedded so a fresh machine needs nothing but the binary.
pub const DEFAULT_FILES: [(&str, &str); 4] = [
    ("aisbf.json", include_str!("../../config/aisbf.json")),
    (
        "providers.json",
        include_str!("../../config/providers.json"),
    ),
    (
        "rotations.json",
        include_str!("../../config/rotations.json"),
    ),
    (
        "autoselect.json",
        include_str!("../../config/autoselect.json"),
    ),
];

/// `--config-dir`, else `$AISBF_CONFIG_DIR`, else `~/.aisbf`.
pub fn resolve_dir(flag: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("AISBF_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::home_dir()
        .map(|h| h.join(".aisbf"))
        .ok_or_else(|| ConfigError::Dir("no home directory; pass --config-dir".into()))
}

/// Creates the directory and writes each shipped default that is missing (never overwrites).
pub fn ensure_defaults(dir: &Path) -> Result<Vec<&'static str>, ConfigError> {
    std::fs::create_dir_all(dir).map_err(|source| ConfigError::Io {
        file: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, contents) in DEFAULT_FILES {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        std::fs::write(&path, contents).map_err(|source| ConfigError::Io { file: path, source })?;
        written.push(name);
    }
    Ok(written)
}

fn read_json<T: DeserializeOwned + Default>(dir: &Path, name: &str) -> Result<T, ConfigError> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
        Err(source) => return Err(ConfigError::Io { file: path, source }),
    };
    parse_json(&path, &text)
}

pub(crate) fn parse_json<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let p = e.path().to_string();
        ConfigError::Parse {
            file: path.to_path_buf(),
            path: if p == "." { "(top level)".into() } else { p },
            message: e.into_inner().to_string(),
        }
    })
}

/// The value of `"autoselect"` is either a map NAME → config or, in the original's shipped
/// file, one config (it has `available_models`), named by its `model_name`.
fn read_autoselect(dir: &Path) -> Result<Vec<(String, AutoselectConfig)>, ConfigError> {
    let path = dir.join("autoselect.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Io { file: path, source }),
    };
    let root: Value = parse_json(&path, &text)?;
    let Some(section) = root.get("autoselect") else {
        return Ok(Vec::new());
    };
    if section.get("available_models").is_some() {
        let cfg: AutoselectConfig =
            parse_json(&path, &section.to_string()).map_err(|e| prefix_path(e, "autoselect"))?;
        let name = cfg
            .model_name
            .clone()
            .unwrap_or_else(|| "autoselect".to_string());
        return Ok(vec![(name, cfg)]);
    }
    let map: std::collections::BTreeMap<String, AutoselectConfig> =
        parse_json(&path, &section.to_string()).map_err(|e| prefix_path(e, "autoselect"))?;
    Ok(map.into_iter().collect())
}

fn prefix_path(e: ConfigError, prefix: &str) -> ConfigError {
    match e {
        ConfigError::Parse {
            file,
            path,
            message,
        } => ConfigError::Parse {
            file,
            path: if path == "(top level)" {
                prefix.to_string()
            } else {
                format!("{prefix}.{path}")
            },
            message,
        },
        other => other,
    }
}

/// Loads and validates the four files of `dir`. Missing files mean built-in defaults.
pub fn load(dir: &Path) -> Result<Config, ConfigError> {
    let aisbf: AisbfFile = read_json(dir, "aisbf.json")?;
    let providers: ProvidersFile = read_json(dir, "providers.json")?;
    let rotations: RotationsFile = read_json(dir, "rotations.json")?;
    let autoselect = read_autoselect(dir)?;

    let mut ignored_keys = Vec::new();
    let mut note = |file: &str, keys: &mut dyn Iterator<Item = &String>| {
        let keys: Vec<&String> = keys.collect();
        if !keys.is_empty() {
            let list: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
            ignored_keys.push(format!("{file}: {}", list.join(", ")));
        }
    };
    note("aisbf.json", &mut aisbf.unknown.keys());
    note("providers.json", &mut providers.unknown.keys());
    let provider_keys: std::collections::BTreeSet<&String> = providers
        .providers
        .values()
        .flat_map(|p| p.unknown.keys())
        .collect();
    note("providers.json providers.*", &mut provider_keys.into_iter());
    note(
        "rotations.json",
        &mut rotations
            .unknown
            .keys()
            .filter(|k| k.as_str() != "notifyerrors"),
    );
    let autoselect_keys: std::collections::BTreeSet<&String> = autoselect
        .iter()
        .flat_map(|(_, a)| a.unknown.keys())
        .collect();
    note(
        "autoselect.json autoselect.*",
        &mut autoselect_keys.into_iter(),
    );

    let mut config = Config {
        dir: dir.to_path_buf(),
        server: aisbf.server,
        auth: aisbf.auth,
        limits: aisbf.limits,
        timeouts: aisbf.timeouts,
        error_tracking: aisbf.error_tracking,
        state: aisbf.state,
        responses: aisbf.responses,
        providers: providers.providers,
        condensation: providers.condensation,
        rotations: rotations.rotations,
        autoselect: autoselect.into_iter().collect(),
        model_aliases: ModelAliases::new(&aisbf.model_aliases),
        issues: Vec::new(),
        unusable: Default::default(),
        ignored_keys,
    };
    for (id, p) in config.providers.iter_mut() {
        p.id = id.clone();
    }
    validate::validate(&mut config)?;
    Ok(config)
}
