//! The original aisbf's config files serve unchanged (../shared/compat fixtures, copied as is).

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::*;

fn fixture_dir(name: &str) -> tempfile::TempDir {
    let from = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/compat")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

async fn root(gw: &Gateway) -> Value {
    get_json(&gw.url("/")).await
}

async fn start(dir: &Path) -> Gateway {
    Gateway::start(dir).await
}

#[tokio::test]
async fn original_0_99_92_files_serve_and_report_unsupported_providers() {
    let dir = fixture_dir("aisbf-0.99.92");
    let gw = start(dir.path()).await;
    let v = root(&gw).await;
    assert_eq!(v["status"], "ok");
    for id in ["codex", "kiro", "claude", "kilo", "coderai"] {
        assert!(
            v["providers"].as_array().unwrap().contains(&json!(id)),
            "{v}"
        );
        assert!(
            v["unsupported_providers"]
                .as_array()
                .unwrap()
                .contains(&json!(id)),
            "{v}"
        );
    }
    assert!(
        v["unusable"]
            .as_array()
            .unwrap()
            .contains(&json!("autoselect/autoselect")),
        "{v}"
    );
    let r = client()
        .post(gw.url("/api/codex/chat/completions"))
        .json(&json!({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_schema("ErrorResponse", &body);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("codex"),
        "{body}"
    );
    let models: Value = get_json(&gw.url("/v1/models")).await;
    assert_schema("ListModelsResponse", &models);
}

#[tokio::test]
async fn seed_examples_serve_with_the_broken_rotation_marked_unusable() {
    let dir = fixture_dir("seed-examples");
    let gw = start(dir.path()).await;
    let v = root(&gw).await;
    assert_eq!(v["rotations"], json!(["balanced"]));
    assert!(
        v["unusable"]
            .as_array()
            .unwrap()
            .contains(&json!("rotation/balanced")),
        "{v}"
    );
    assert_eq!(v["autoselect"], json!(["smart"]));
    let c = &gw.state.config.providers["openai"].models[0];
    assert_eq!(c.context_size, Some(1_000_000));
    assert_eq!(c.condense_context, Some(80.0));
}
