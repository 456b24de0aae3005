//! Shared test harness: aisbf in-process on an ephemeral port, config dirs, schema checks,
//! SSE parsing, request recording and scripted upstream faults.
#![allow(dead_code)]

pub mod openai_mock;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

use aisbf::state::AppState;

// ---------- gateway ----------

/// A running aisbf on 127.0.0.1:<ephemeral>, stopped when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    /// The state it started with (a reload swaps in a new one: see `live`).
    pub state: Arc<AppState>,
    /// What it serves now; `live.reload(..)` re-reads the config dir, as SIGHUP does.
    pub live: Arc<aisbf::server::live::Live>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Gateway {
    /// Starts aisbf on the configuration in `dir`.
    pub async fn start(dir: &Path) -> Gateway {
        let config = aisbf::config::load(dir).expect("test config loads");
        let state = AppState::build(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let reload_dir = dir.to_path_buf();
        let live = aisbf::server::live::Live::new(
            state.clone(),
            Box::new(move || aisbf::config::load(&reload_dir).map_err(|e| e.to_string())),
        );
        let task = tokio::spawn(aisbf::server::serve_live(
            listener,
            live.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        Gateway {
            addr,
            state,
            live,
            stop: Some(tx),
            task: Some(task),
            _dir: None,
        }
    }

    /// Starts aisbf on a config dir it owns.
    pub async fn start_with(config: ConfigDir) -> Gateway {
        let mut g = Gateway::start(config.path()).await;
        g._dir = Some(config.dir);
        g
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn base_v1(&self) -> String {
        self.url("/v1")
    }

    /// Begins a graceful shutdown (as SIGTERM would).
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A plain HTTP client for tests (no pooling surprises across tests).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

// ---------- configuration ----------

/// A temporary config dir with the four files written from JSON values.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    /// `providers` is the value of `"providers"` in providers.json.
    pub fn new(providers: Value) -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        let c = ConfigDir { dir };
        c.write(
            "aisbf.json",
            &json!({"server": {"host": "127.0.0.1", "port": 0}}),
        );
        c.write("providers.json", &json!({ "providers": providers }));
        c.write("rotations.json", &json!({"rotations": {}}));
        c.write("autoselect.json", &json!({"autoselect": {}}));
        c
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, value: &Value) -> &Self {
        std::fs::write(
            self.dir.path().join(name),
            serde_json::to_vec_pretty(value).unwrap(),
        )
        .unwrap();
        self
    }

    /// Merges `patch` into aisbf.json (top-level keys replaced).
    pub fn aisbf(&self, patch: Value) -> &Self {
        let path = self.dir.path().join("aisbf.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        self.write("aisbf.json", &v)
    }
}

/// A provider entry of the given type pointed at `endpoint`.
pub fn provider(kind: &str, endpoint: &str, key: Option<&str>, models: &[&str]) -> Value {
    let mut p = json!({
        "type": kind,
        "endpoint": endpoint,
        "models": models.iter().map(|m| json!({"name": m})).collect::<Vec<_>>(),
    });
    if let Some(k) = key {
        p["api_key"] = json!(k);
    }
    p
}

// ---------- schema ----------

fn schema_doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/openai-chat-schemas.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    })
}

/// Panics unless `value` validates against `$defs/<def>` of OpenAI's published schemas.
pub fn assert_schema(def: &str, value: &Value) {
    let mut root = schema_doc().clone();
    root["$ref"] = json!(format!("#/$defs/{def}"));
    let validator = jsonschema::draft202012::new(&root).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{def} schema violations: {errors:#?}\nin: {}",
        serde_json::to_string_pretty(value).unwrap()
    );
}

// ---------- SSE ----------

/// The `data:` payloads of an SSE body, in order (`[DONE]` included as a string).
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("data:")
                        .map(|d| d.strip_prefix(' ').unwrap_or(d))
                })
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// Checks a whole OpenAI stream: every chunk validates, the last chunk before `[DONE]`
/// carries complete usage with effective_context. Returns the parsed chunks.
pub fn assert_openai_stream(body: &str) -> Vec<Value> {
    let data = sse_data(body);
    assert_eq!(
        data.last().map(String::as_str),
        Some("[DONE]"),
        "stream must end with [DONE]: {body}"
    );
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("chunk not JSON ({e}): {d}")))
        .collect();
    for c in &chunks {
        assert_schema("CreateChatCompletionStreamResponse", c);
    }
    let last = chunks.last().expect("at least one chunk");
    assert_eq!(
        last["choices"],
        json!([]),
        "last chunk is the usage chunk: {last}"
    );
    for k in [
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "effective_context",
    ] {
        assert!(last["usage"][k].is_u64(), "usage.{k} missing in {last}");
    }
    chunks
}

/// Concatenated `delta.content` of a stream's chunks.
pub fn stream_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

// ---------- recording upstreams ----------

/// What a mock upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Received>>>);

impl Recorder {
    pub fn push(&self, r: Received) {
        self.0.lock().unwrap().push(r);
    }
    pub fn all(&self) -> Vec<Received> {
        self.0.lock().unwrap().clone()
    }
    pub fn last(&self) -> Received {
        self.0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the mock received a request")
    }
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Records an axum request (method, path, headers, JSON body) into `rec`.
pub async fn record(rec: &Recorder, req: axum::extract::Request) -> Received {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let r = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    rec.push(r.clone());
    r
}

/// Scripted upstream behaviour shared by every mock: one value per failure.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer normally.
    None,
    /// This status with this body.
    Status(u16, String),
    /// 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// Never answer.
    Hang,
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// 200 with bytes that are not the protocol.
    Malformed,
    /// Stream: send the first events, then cut the connection.
    BreakMidStream,
    /// Close the connection without any answer.
    Reset,
}

/// Serves an axum app on 127.0.0.1:<ephemeral>; returns its base URL.
pub async fn serve_app(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

/// A port that accepts connections and drops them at once (connection reset / EOF).
pub async fn reset_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            #[allow(deprecated)] // RST on close is the point here, blocking is not a concern.
            let _ = sock.set_linger(Some(Duration::ZERO));
            drop(sock);
        }
    });
    format!("http://{addr}")
}

/// A loopback port with nothing listening (connection refused).
pub fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A body that is sent piece by piece, each piece a separate write, with pauses: for SSE
/// events split across reads and for breaks mid-stream.
pub fn chunked_body(pieces: Vec<Vec<u8>>, pause: Duration, then_fail: bool) -> axum::body::Body {
    let stream = futures::stream::unfold(
        (pieces.into_iter(), then_fail),
        move |(mut it, fail)| async move {
            match it.next() {
                Some(p) => {
                    tokio::time::sleep(pause).await;
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(p)), (it, fail)))
                }
                None if fail => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "scripted break",
                    )),
                    (it, false),
                )),
                None => None,
            }
        },
    );
    axum::body::Body::from_stream(stream)
}

/// A body that sends `head`, then waits until `gate` is notified, then sends `tail`: the test
/// decides when the rest of an answer exists, so it can check what the client already has.
pub fn held_body(
    head: Vec<Vec<u8>>,
    gate: Arc<tokio::sync::Notify>,
    tail: Vec<Vec<u8>>,
) -> axum::body::Body {
    use futures::StreamExt;
    let head = futures::stream::iter(head);
    let tail = futures::stream::once(async move {
        gate.notified().await;
        futures::stream::iter(tail)
    })
    .flatten();
    let stream = head
        .chain(tail)
        .map(|p| Ok::<_, std::io::Error>(bytes::Bytes::from(p)));
    axum::body::Body::from_stream(stream)
}

/// The ids of a `ListModelsResponse`, in order.
pub fn model_ids(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .expect("a model list")
        .iter()
        .map(|m| m["id"].as_str().expect("a string id"))
        .collect()
}

// ---------- the official openai Python SDK ----------

/// Runs tests/python/SCRIPT (an official SDK driving aisbf) and returns the JSON it printed.
/// Panics with the script's stderr when it fails: the SDKs are required (scripts/test.sh
/// installs them), a missing SDK is a failure, not a skip.
async fn python_sdk(script: &str, label: &str, base_url: &str, model: &str, mode: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let python = std::env::var("AISBF_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = tokio::process::Command::new(python)
        .arg(script)
        .args([base_url, model, mode])
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{label} ({mode}) failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("SDK output not JSON ({e}): {stdout}"))
}

/// Runs tests/python/sdk_chat.py (the official `openai` SDK) against aisbf and returns the
/// JSON it printed. Panics with the script's stderr when it fails: the SDK is required
/// (.ci/run installs it), a missing SDK is a failure, not a skip.
pub async fn openai_sdk(base_url: &str, model: &str, mode: &str) -> Value {
    python_sdk("sdk_chat.py", "openai SDK", base_url, model, mode).await
}

/// Runs tests/python/sdk_messages.py (the official `anthropic` SDK) against aisbf and
/// returns the JSON it printed; a missing SDK is a failure (scripts/test.sh installs it).
pub async fn anthropic_sdk(base_url: &str, model: &str, mode: &str) -> Value {
    python_sdk("sdk_messages.py", "anthropic SDK", base_url, model, mode).await
}

// ---------- Google Gemini mock ----------

pub mod gemini_mock;
// ---------- routing tests (rotations, autoselect) ----------

pub mod agent_mock;
pub mod anthropic_mock;
pub mod condense_mock;
pub mod responses;
pub mod scripted_mock;

/// GETs `url` and parses its JSON body.
pub async fn get_json(url: &str) -> Value {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Runs tests/python/sdk_responses.py (the official `openai` SDK's `client.responses`)
/// against aisbf and returns the JSON it printed; a failing or missing SDK fails the test.
pub async fn openai_sdk_responses(base_url: &str, model: &str, mode: &str) -> Value {
    python_sdk(
        "sdk_responses.py",
        "openai SDK responses",
        base_url,
        model,
        mode,
    )
    .await
}
