//! Property tests of configuration loading (`config::load` over the four files): each file in
//! turn replaced by arbitrary bytes, by arbitrary JSON, or by its shipped default with one
//! value somewhere replaced by arbitrary JSON. Never a panic; an error names the file it is
//! about (and, for a parse error, the field path). Stable stand-in for cargo-fuzz.

use aisbf::config::{load, ConfigError, DEFAULT_FILES};
use proptest::prelude::*;
use serde_json::{json, Value};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

const NAMES: [&str; 4] = [
    "aisbf.json",
    "providers.json",
    "rotations.json",
    "autoselect.json",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        (0u64..70000).prop_map(|n| json!(n)),
        ".{0,10}".prop_map(Value::String),
        prop_oneof![
            Just("openai"),
            Just("anthropic"),
            Just("google"),
            Just("ollama"),
            Just("redis"),
            Just("memory"),
            Just("redis://127.0.0.1:1"),
            Just("http://127.0.0.1:1/v1"),
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The shipped `file` with the value at the `pick`-th node (depth first) replaced by `with`.
fn mutate(file: &str, pick: usize, with: Value) -> String {
    let text = DEFAULT_FILES.iter().find(|(n, _)| *n == file).unwrap().1;
    let mut v: Value = serde_json::from_str(text).unwrap();
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn replace(v: &mut Value, mut n: usize, with: &mut Option<Value>) -> usize {
        if n == 0 {
            *v = with.take().unwrap();
            return usize::MAX;
        }
        n -= 1;
        let children: Vec<&mut Value> = match v {
            Value::Array(a) => a.iter_mut().collect(),
            Value::Object(o) => o.values_mut().collect(),
            _ => Vec::new(),
        };
        for c in children {
            let size = count(c);
            if n < size {
                return replace(c, n, with);
            }
            n -= size;
        }
        n
    }
    let total = count(&v);
    replace(&mut v, pick % total, &mut Some(with));
    v.to_string()
}

/// Loads a directory holding the shipped defaults with `file` replaced by `contents`.
fn load_with(file: &str, contents: &[u8]) -> Result<(), ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in DEFAULT_FILES {
        let body = if name == file {
            contents
        } else {
            text.as_bytes()
        };
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    load(dir.path()).map(|_| ())
}

/// An error names one of the four files (a cross-file check may name another one: a
/// rotation naming a provider that the mutated providers.json no longer has), and a parse
/// error names the very file that does not parse.
fn check(file: &str, r: Result<(), ConfigError>) -> Result<(), TestCaseError> {
    let Err(e) = r else {
        return Ok(());
    };
    let msg = e.to_string();
    prop_assert!(
        NAMES.iter().any(|n| msg.contains(n)),
        "no file named: {}",
        msg
    );
    if let ConfigError::Parse { file: f, path, .. } = &e {
        prop_assert!(f.ends_with(file), "parse error of {} names {:?}", file, f);
        prop_assert!(!path.is_empty());
    }
    if let ConfigError::Io { file: f, .. } = &e {
        prop_assert!(f.ends_with(file), "read error of {} names {:?}", file, f);
    }
    Ok(())
}

fn a_file() -> impl Strategy<Value = &'static str> {
    prop::sample::select(NAMES.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_name_the_file(
        file in a_file(),
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        check(file, load_with(file, &bytes))?;
    }

    #[test]
    fn arbitrary_json_names_the_file(file in a_file(), v in any_json()) {
        check(file, load_with(file, v.to_string().as_bytes()))?;
    }

    #[test]
    fn a_mutated_default_names_the_file(file in a_file(), pick: usize, with in any_json()) {
        check(file, load_with(file, mutate(file, pick, with).as_bytes()))?;
    }
}

/// The shipped defaults load (the mutations above start from a valid configuration).
#[test]
fn the_shipped_defaults_load() {
    load_with("aisbf.json", DEFAULT_FILES[0].1.as_bytes()).unwrap();
}
