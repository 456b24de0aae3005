//! Token counting with embedded offline BPE tables (the `tiktoken` crate, chosen over
//! tiktoken-rs by benches/tokens.rs), initialised once at boot.
//! Big inputs are counted on a bounded blocking pool so a hostile prompt never stalls the
//! async runtime; small ones inline, where a thread hop would cost more than the count.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tiktoken::CoreBpe;
use tokio::sync::Semaphore;

use crate::api::openai::{Content, Message};

/// Tokens OpenAI adds around every message (`<|start|>role ... <|end|>`).
const PER_MESSAGE: u64 = 3;
/// Tokens that prime the assistant's reply.
pub const REPLY_PRIMING: u64 = 3;
/// A fixed estimate per image part: the real cost depends on its size, unknown here.
pub const IMAGE_TOKENS: u64 = 765;
/// Text above this many bytes is counted off the runtime (≈ 1 ms of BPE work).
pub const OFFLOAD_BYTES: usize = 32 * 1024;

/// Messages with less text than this are counted directly: hashing and the cache lock
/// would cost about what their BPE pass does.
const CACHE_MIN_BYTES: usize = 256;
/// Entries per cache generation (two generations: at most 2 × this many, ~2 MB at most).
const CACHE_ENTRIES: usize = 32 * 1024;

/// One BPE table and its per-message count cache, copyable into a blocking job. Both live
/// for the whole process (a table is decoded once and never dropped).
#[derive(Clone, Copy)]
pub struct Bpe(&'static Table);

pub struct Table {
    bpe: &'static CoreBpe,
    cache: MessageCache,
}

/// Counts of messages already seen, keyed by a 128-bit XXH3 hash of everything
/// `count_message` reads: an agent resends the same long history every turn, and each turn
/// then pays its BPE pass only for its new messages. Bounded by two generations: when the
/// current one is full it becomes the previous one (the older is dropped); a hit in the
/// previous one is carried over, so what every turn reuses survives.
#[derive(Default)]
struct MessageCache {
    gens: Mutex<[HashMap<u128, u64>; 2]>,
}

impl MessageCache {
    fn get(&self, key: u128) -> Option<u64> {
        let mut g = self.gens.lock();
        if let Some(n) = g[0].get(&key) {
            return Some(*n);
        }
        let n = *g[1].get(&key)?;
        Self::put(&mut g, key, n);
        Some(n)
    }

    fn insert(&self, key: u128, n: u64) {
        Self::put(&mut self.gens.lock(), key, n);
    }

    fn put(g: &mut [HashMap<u128, u64>; 2], key: u128, n: u64) {
        if g[0].len() >= CACHE_ENTRIES {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(key, n);
    }
}

/// The cache key of a message: every field `count_message` reads, each length-prefixed so
/// that no two different messages feed the hasher the same bytes.
fn message_key(m: &Message) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    let mut field = |tag: u8, s: &str| {
        h.update(&[tag]);
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(b'r', &m.role);
    match &m.content {
        Some(Content::Text(t)) => field(b't', t),
        Some(Content::Parts(parts)) => {
            for p in parts {
                field(b'p', &p.kind);
                field(b'x', p.text.as_deref().unwrap_or_default());
                field(b'i', if p.image_url.is_some() { "1" } else { "0" });
            }
        }
        None => {}
    }
    if let Some(name) = &m.name {
        field(b'n', name);
    }
    for c in m.tool_calls.iter().flatten() {
        field(b'c', &c.id);
        field(b'f', &c.function.name);
        field(b'a', &c.function.arguments);
    }
    if let Some(id) = &m.tool_call_id {
        field(b'd', id);
    }
    if let Some(r) = &m.reasoning_content {
        field(b'z', r);
    }
    h.digest128()
}

impl Bpe {
    pub fn count_text(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        // Special-token text counts as ordinary text, as a client's prompt must.
        self.0.bpe.count(text) as u64
    }

    /// One message as OpenAI counts it (see `count_message_uncached`), from the cache when
    /// this table counted the same message before.
    pub fn count_message(self, m: &Message) -> u64 {
        if message_bytes(m) < CACHE_MIN_BYTES {
            return self.count_message_uncached(m);
        }
        let key = message_key(m);
        if let Some(n) = self.0.cache.get(key) {
            return n;
        }
        let n = self.count_message_uncached(m);
        self.0.cache.insert(key, n);
        n
    }

    /// One message as OpenAI counts it: overhead, role, content, name, tool calls, tool id.
    pub fn count_message_uncached(self, m: &Message) -> u64 {
        let mut total = PER_MESSAGE + self.count_text(&m.role);
        match &m.content {
            Some(Content::Text(t)) => total += self.count_text(t),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    if let Some(t) = &p.text {
                        total += self.count_text(t);
                    }
                    if p.image_url.is_some() || p.kind == "image_url" {
                        total += IMAGE_TOKENS;
                    }
                }
            }
            None => {}
        }
        if let Some(name) = &m.name {
            total += 1 + self.count_text(name);
        }
        if let Some(calls) = &m.tool_calls {
            for c in calls {
                total += PER_MESSAGE
                    + self.count_text(&c.id)
                    + self.count_text(&c.function.name)
                    + self.count_text(&c.function.arguments);
            }
        }
        if let Some(id) = &m.tool_call_id {
            total += self.count_text(id);
        }
        // Sent upstream as it came (OpenAI-compatible upstreams read it).
        if let Some(r) = &m.reasoning_content {
            total += self.count_text(r);
        }
        total
    }

    /// Prompt tokens of a conversation: the messages plus the reply priming.
    pub fn count_messages(self, messages: &[Message]) -> u64 {
        REPLY_PRIMING + messages.iter().map(|m| self.count_message(m)).sum::<u64>()
    }
}

pub struct TokenCounter {
    // Each table costs 10-25 MB of RSS: the ones the configured models use are loaded at
    // boot, any other on its first use (once, logged).
    cl100k: OnceLock<Bpe>,
    o200k: OnceLock<Bpe>,
    /// Bounds the blocking jobs counting big inputs (one per core).
    pool: Arc<Semaphore>,
}

impl Default for TokenCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCounter {
    /// Loads both tables now, so no request pays for either.
    pub fn new() -> Self {
        let t = Self::empty();
        t.table(false);
        t.table(true);
        t
    }

    /// Loads now the tables that `models` (the configured model names) need; a model
    /// outside the configuration loads its table on first use.
    pub fn for_models<'a>(models: impl IntoIterator<Item = &'a str>) -> Self {
        let t = Self::empty();
        for m in models {
            t.table(uses_o200k(m));
        }
        if t.cl100k.get().is_none() && t.o200k.get().is_none() {
            t.table(false);
        }
        t
    }

    fn empty() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        TokenCounter {
            cl100k: OnceLock::new(),
            o200k: OnceLock::new(),
            pool: Arc::new(Semaphore::new(cores)),
        }
    }

    fn table(&self, o200k: bool) -> Bpe {
        let cell = if o200k { &self.o200k } else { &self.cl100k };
        *cell.get_or_init(|| load_table(o200k))
    }

    /// o200k_base for gpt-4o, the o-series, gpt-4.1+ and gpt-5; cl100k_base otherwise.
    /// Loads a missing table on the calling thread: async code uses `bpe`.
    pub fn bpe_for(&self, model: &str) -> Bpe {
        self.table(uses_o200k(model))
    }

    /// `bpe_for` for async code: a table not loaded at boot (10-25 MB to decode) is loaded
    /// on the blocking pool, never on an async worker.
    pub async fn bpe(&self, model: &str) -> Bpe {
        let o200k = uses_o200k(model);
        let cell = if o200k { &self.o200k } else { &self.cl100k };
        if let Some(bpe) = cell.get() {
            return *bpe;
        }
        // Either table is 'static once loaded; the blocking job only fills the cell.
        let loaded = tokio::task::spawn_blocking(move || load_table(o200k)).await;
        match loaded {
            Ok(bpe) => *cell.get_or_init(|| bpe),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("token table load cancelled: {e}"),
        }
    }

    /// Counts an answer's text (a stream's, when the upstream sent no usage) off the runtime
    /// when it is big; `'static`, so a stream can hold it.
    pub fn answer_counter(&self, bpe: Bpe) -> AnswerCounter {
        AnswerCounter {
            bpe,
            pool: self.pool.clone(),
        }
    }
}

/// See `TokenCounter::answer_counter`.
#[derive(Clone)]
pub struct AnswerCounter {
    bpe: Bpe,
    pool: Arc<Semaphore>,
}

impl AnswerCounter {
    pub async fn count(&self, text: String) -> u64 {
        if text.len() < OFFLOAD_BYTES {
            return self.bpe.count_text(&text);
        }
        let permit = self.pool.clone().acquire_owned().await.ok();
        let bpe = self.bpe;
        let job = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bpe.count_text(&text)
        });
        match job.await {
            Ok(n) => n,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("token counting job cancelled: {e}"),
        }
    }
}

fn load_table(o200k: bool) -> Bpe {
    let name = if o200k { "o200k_base" } else { "cl100k_base" };
    let started = std::time::Instant::now();
    let table = Table {
        bpe: tiktoken::get_encoding(name).expect("the BPE tables are compiled in"),
        cache: MessageCache::default(),
    };
    // Once per table per process (`TokenCounter` cells are filled once).
    let bpe = Bpe(Box::leak(Box::new(table)));
    tracing::info!(
        "loaded token table {name} in {} ms",
        started.elapsed().as_millis()
    );
    bpe
}

/// o200k_base for gpt-4o, the o-series, gpt-4.1+ and gpt-5; cl100k_base otherwise.
fn uses_o200k(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    let has = |prefix: &str| {
        name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    has("gpt-4o")
        || has("gpt-4.1")
        || has("gpt-4.5")
        || has("gpt-5")
        || has("chatgpt-4o")
        || (has("o") && name[1..].starts_with(|c: char| c.is_ascii_digit()))
}

impl TokenCounter {
    pub fn count_text(&self, model: &str, text: &str) -> u64 {
        self.bpe_for(model).count_text(text)
    }

    /// Prompt tokens of a conversation as OpenAI counts them.
    pub fn count_messages(&self, model: &str, messages: &[Message]) -> u64 {
        self.bpe_for(model).count_messages(messages)
    }

    /// Runs `job` inline when its input is small (`bytes`), else on the bounded blocking
    /// pool: the permit is held by the job itself, so a dropped request cannot overfill it.
    pub async fn offload<T, F>(&self, bytes: usize, job: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        if bytes < OFFLOAD_BYTES {
            return job();
        }
        let permit = self.pool.clone().acquire_owned().await.ok();
        let handle = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        });
        match handle.await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only at runtime shutdown, when nobody waits for this request any more.
            Err(e) => panic!("token counting job cancelled: {e}"),
        }
    }

    /// Counts `messages` (moved in and handed back, so a big prompt is never copied),
    /// off the runtime when they are big.
    pub async fn count_owned(&self, model: &str, messages: Vec<Message>) -> (Vec<Message>, u64) {
        let bpe = self.bpe(model).await;
        self.offload(text_bytes(&messages), move || {
            let n = bpe.count_messages(&messages);
            (messages, n)
        })
        .await
    }
}

/// Approximate text size of a conversation: what decides whether counting is offloaded.
pub fn text_bytes(messages: &[Message]) -> usize {
    messages.iter().map(message_bytes).sum()
}

/// Approximate text size of one message.
fn message_bytes(m: &Message) -> usize {
    {
        {
            let content = match &m.content {
                Some(Content::Text(t)) => t.len(),
                Some(Content::Parts(parts)) => parts
                    .iter()
                    .map(|p| p.text.as_ref().map_or(0, String::len))
                    .sum(),
                None => 0,
            };
            let calls: usize = m.tool_calls.as_ref().map_or(0, |cs| {
                cs.iter()
                    .map(|c| c.function.arguments.len() + c.function.name.len())
                    .sum()
            });
            content + calls + m.reasoning_content.as_ref().map_or(0, String::len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{ContentPart, FunctionCall, ImageUrl, ToolCall};

    #[test]
    fn counts_like_openai_for_a_simple_chat() {
        let t = TokenCounter::new();
        let msgs = vec![Message::new("user", "Hello world")];
        // 3 priming + 3 per message + "user"(1) + "Hello world"(2)
        assert_eq!(t.count_messages("gpt-4", &msgs), 9);
        assert_eq!(t.count_messages("gpt-4o", &msgs), 9);
    }

    #[test]
    fn cached_counts_equal_fresh_ones_and_tell_messages_apart() {
        let bpe = TokenCounter::new().bpe_for("gpt-4o");
        let long = "The history an agent resends every turn. ".repeat(40);
        let user = Message::new("user", long.clone());
        let mut named = Message::new("user", long.clone());
        named.name = Some("bob".into());
        let assistant = Message::new("assistant", long.clone() + "!");
        for m in [&user, &named, &assistant] {
            let fresh = bpe.count_message_uncached(m);
            assert_eq!(bpe.count_message(m), fresh);
            // The second count comes from the cache: still the same.
            assert_eq!(bpe.count_message(m), fresh);
        }
        assert_ne!(message_key(&user), message_key(&named));
        assert_ne!(message_key(&user), message_key(&assistant));
        assert_ne!(bpe.count_message(&user), bpe.count_message(&named));
    }

    #[test]
    fn the_count_cache_is_bounded_and_keeps_what_is_reused() {
        let c = MessageCache::default();
        c.insert(0, 7);
        for k in 1..(3 * CACHE_ENTRIES as u128) {
            c.insert(k, 1);
            // Reused every turn: carried from generation to generation.
            assert_eq!(c.get(0), Some(7));
        }
        let g = c.gens.lock();
        assert!(g[0].len() + g[1].len() <= 2 * CACHE_ENTRIES);
        drop(g);
        assert_eq!(c.get(1), None, "the oldest generation is dropped");
    }

    #[test]
    fn picks_the_table_by_model_family() {
        let t = TokenCounter::new();
        let is = |a: Bpe, b: &OnceLock<Bpe>| std::ptr::eq(a.0, b.get().unwrap().0);
        assert!(is(t.bpe_for("openai/gpt-4o-mini"), &t.o200k));
        assert!(is(t.bpe_for("o3-mini"), &t.o200k));
        assert!(is(t.bpe_for("GPT-5"), &t.o200k));
        assert!(is(t.bpe_for("gpt-3.5-turbo"), &t.cl100k));
        assert!(is(t.bpe_for("llama3.2"), &t.cl100k));
        assert!(is(t.bpe_for("ollama"), &t.cl100k));
        assert!(is(t.bpe_for("o"), &t.cl100k));
    }

    #[test]
    fn only_the_configured_families_load_at_boot() {
        let t = TokenCounter::for_models(["llama3.2", "bench-model"]);
        assert!(t.cl100k.get().is_some() && t.o200k.get().is_none());
        let t = TokenCounter::for_models(["gpt-4o"]);
        assert!(t.cl100k.get().is_none() && t.o200k.get().is_some());
        // An unconfigured family still counts, loading its table on first use.
        assert_eq!(
            t.count_messages("llama3", &[Message::new("user", "Hello world")]),
            9
        );
        assert!(t.cl100k.get().is_some());
        let t = TokenCounter::for_models([]);
        assert!(t.cl100k.get().is_some());
    }

    #[test]
    fn names_tool_calls_tool_results_and_images_count() {
        let t = TokenCounter::new();
        let bpe = t.bpe_for("gpt-4o");
        let plain = bpe.count_message(&Message::new("user", "hi"));
        let mut reasoned = Message::new("assistant", "hi");
        reasoned.reasoning_content = Some("first think".into());
        assert_eq!(
            bpe.count_message(&reasoned),
            bpe.count_message(&Message::new("assistant", "hi")) + bpe.count_text("first think")
        );
        let mut named = Message::new("user", "hi");
        named.name = Some("alice".into());
        assert_eq!(
            bpe.count_message(&named),
            plain + 1 + bpe.count_text("alice")
        );

        let mut call = Message::new("assistant", "");
        call.content = None;
        call.tool_calls = Some(vec![ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
            },
        }]);
        let expected = 3
            + bpe.count_text("assistant")
            + 3
            + bpe.count_text("call_1")
            + bpe.count_text("get_weather")
            + bpe.count_text(r#"{"city":"Paris"}"#);
        assert_eq!(bpe.count_message(&call), expected);

        let mut result = Message::new("tool", "18C and sunny");
        result.tool_call_id = Some("call_1".into());
        assert_eq!(
            bpe.count_message(&result),
            3 + bpe.count_text("tool") + bpe.count_text("18C and sunny") + bpe.count_text("call_1")
        );

        let mut image = Message::new("user", "");
        image.content = Some(Content::Parts(vec![
            ContentPart {
                kind: "text".into(),
                text: Some("what is this".into()),
                image_url: None,
                extra: Default::default(),
            },
            ContentPart {
                kind: "image_url".into(),
                text: None,
                image_url: Some(ImageUrl {
                    url: "data:image/png;base64,AAAA".into(),
                    detail: None,
                }),
                extra: Default::default(),
            },
        ]));
        assert_eq!(
            bpe.count_message(&image),
            3 + bpe.count_text("user") + bpe.count_text("what is this") + IMAGE_TOKENS
        );
    }

    /// The first request for a model whose table was not loaded at boot must not decode
    /// the table on the async worker: on a current-thread runtime, a task spawned before the
    /// count gets to run while the table loads (inline, it could not run until the end).
    #[tokio::test(flavor = "current_thread")]
    async fn a_table_missing_at_boot_loads_off_the_runtime() {
        let t = TokenCounter::for_models(["gpt-4o"]);
        assert!(t.cl100k.get().is_none());
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let other = {
            let ran = ran.clone();
            tokio::spawn(async move { ran.store(true, std::sync::atomic::Ordering::SeqCst) })
        };
        let (_, n) = t
            .count_owned("llama3", vec![Message::new("user", "Hello world")])
            .await;
        let ran_meanwhile = ran.load(std::sync::atomic::Ordering::SeqCst);
        other.await.unwrap();
        assert_eq!(n, 9);
        assert!(t.cl100k.get().is_some());
        assert!(
            ran_meanwhile,
            "the runtime kept running while the table loaded"
        );
    }

    /// On a current-thread runtime an inline count of a big prompt would freeze every other
    /// task; offloaded, a ticker keeps running while it is counted.
    #[tokio::test(flavor = "current_thread")]
    async fn big_inputs_are_counted_off_the_runtime() {
        let t = TokenCounter::new();
        let text = "lorem ipsum dolor sit amet consectetur ".repeat(100_000);
        let msgs = vec![Message::new("user", text)];
        let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        // Counted by another counter: in `t`'s cache, the count below would be a lookup
        // too quick for the ticker to see (flaky in release builds).
        let expected = TokenCounter::new().count_messages("gpt-4", &msgs);
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        let (back, n) = t.count_owned("gpt-4", msgs).await;
        let after = ticks.load(std::sync::atomic::Ordering::Relaxed);
        ticker.abort();
        assert_eq!(n, expected);
        assert_eq!(back.len(), 1);
        assert!(
            after > before,
            "the runtime kept running during the count ({before} -> {after})"
        );
    }
}
