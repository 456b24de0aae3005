//! Context management end to end: a mock target upstream and a mock condensation model that
//! record what they were asked; per method, what the upstream received is smaller, within
//! context_size, keeps the protected parts byte-identical, and matches effective_context.

mod support;

use serde_json::{json, Value};
use support::condense_mock::{Answer, CondenseMock};
use support::openai_mock::{OpenAiMock, REPLY};
use support::*;

use aisbf::api::openai::Message;
use aisbf::config::CondenseMethod;
use aisbf::context::algorithmic;
use aisbf::context::model::PROMPT_FILES;

const SUMMARY: &str = "SUMMARY: the user plans a trip to Lisbon in May, budget 2000 EUR.";
const LAST: &str = "Given all that, what should I pack for the trip?";

fn log_fixture() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/context/app.log"),
    )
    .unwrap()
}

/// `n` varied words (a small LCG over a vocabulary), so nothing collapses by accident.
fn words(seed: usize, n: usize) -> String {
    const V: [&str; 24] = [
        "river", "museum", "tram", "pastry", "harbour", "ticket", "castle", "market", "sunset",
        "hotel", "ferry", "beach", "tile", "chapel", "garden", "bridge", "station", "coffee",
        "festival", "bakery", "hill", "street", "tower", "square",
    ];
    let mut x = seed as u64 * 2654435761 + 1;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            V[(x >> 33) as usize % V.len()]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn tool_pair(id: &str, output: &str) -> [Value; 2] {
    [
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": id, "type": "function",
            "function": {"name": "run_shell", "arguments": "{\"cmd\":\"cat app.log\"}"}
        }]}),
        json!({"role": "tool", "tool_call_id": id, "content": output}),
    ]
}

/// system, `turns` user/assistant pairs of `per` words (a tool pair after the second), the
/// current question.
fn chat(turns: usize, per: usize) -> Vec<Value> {
    let mut m = vec![
        json!({"role": "system", "content": "You are a travel assistant. Always answer in English."}),
    ];
    for i in 0..turns {
        m.push(json!({"role": "user", "content": format!("Question {i}: {}", words(2 * i, per))}));
        m.push(json!({"role": "assistant", "content": format!("Answer {i}: {}", words(2 * i + 1, per))}));
        if i == 1 {
            m.extend(tool_pair(
                "call_w1",
                &format!("Lisbon weather: {}", words(999, per)),
            ));
        }
    }
    m.push(json!({"role": "user", "content": LAST}));
    m
}

/// A conversation whose bulk is a repetitive log returned by a tool.
fn log_chat() -> Vec<Value> {
    let mut m = vec![
        json!({"role": "system", "content": "You are an SRE assistant."}),
        json!({"role": "user", "content": "Why did the service crash this morning?"}),
    ];
    m.extend(tool_pair("call_log", &log_fixture()));
    m.push(json!({"role": "user", "content": "List every distinct error."}));
    m
}

fn model(extra: Value) -> Value {
    let mut m = json!({"name": "small", "context_size": 3000, "condense_context": 50});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

struct Setup {
    up: OpenAiMock,
    cm: CondenseMock,
    dir: ConfigDir,
}

async fn setup(model: Value, condensation: Option<Value>) -> Setup {
    let up = OpenAiMock::start().await;
    let cm = CondenseMock::start(Answer::Text(SUMMARY.into())).await;
    let providers = json!({
        "up": {"type": "openai", "endpoint": up.endpoint, "api_key": "sk-up", "models": [model]},
        "cm": {"type": "openai", "endpoint": cm.endpoint, "api_key": "sk-cm", "models": [{"name": "summarizer"}]},
    });
    let dir = ConfigDir::new(providers.clone());
    if let Some(c) = condensation {
        dir.write(
            "providers.json",
            &json!({"providers": providers, "condensation": c}),
        );
    }
    Setup { up, cm, dir }
}

async fn send(gw: &Gateway, messages: &[Value], stream: bool) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "up/small", "messages": messages, "stream": stream}))
        .send()
        .await
        .unwrap()
}

async fn send_ok(gw: &Gateway, messages: &[Value]) -> Value {
    let resp = send(gw, messages, false).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_schema("CreateChatCompletionResponse", &v);
    v
}

fn count(gw: &Gateway, messages: &[Value]) -> u64 {
    let msgs: Vec<Message> = serde_json::from_value(Value::Array(messages.to_vec())).unwrap();
    gw.state.tokens.count_messages("small", &msgs)
}

fn upstream_messages(up: &OpenAiMock) -> Vec<Value> {
    up.received.last().body["messages"]
        .as_array()
        .unwrap()
        .clone()
}

/// Fewer tokens than the client sent, within context_size, effective_context equal to an
/// independent count, first system message and last user message byte-identical.
fn assert_condensed(
    gw: &Gateway,
    client: &[Value],
    sent: &[Value],
    context_size: u64,
    effective: &Value,
) {
    let (before, after) = (count(gw, client), count(gw, sent));
    assert!(
        after < before,
        "upstream got {after} tokens, client sent {before}"
    );
    assert!(
        after <= context_size,
        "{after} > context_size {context_size}"
    );
    assert_eq!(
        effective,
        &json!(after),
        "effective_context = what the upstream got"
    );
    assert_eq!(sent[0], client[0], "system message byte-identical");
    assert_eq!(
        sent.last(),
        client.last(),
        "current instruction byte-identical"
    );
}

fn text(v: &Value) -> &str {
    v["content"].as_str().unwrap_or("")
}

#[test]
fn algorithmic_log_blob_reaches_10x_and_keeps_every_error_line() {
    let log = log_fixture();
    let out = algorithmic::compress(&log, false, true);
    let bpe = aisbf::context::tokens::TokenCounter::new().bpe_for("gpt-4o");
    let (before, after) = (bpe.count_text(&log), bpe.count_text(&out));
    assert!(before >= 10 * after, "tokens {before} -> {after}");
    assert!(
        log.len() >= 10 * out.len(),
        "bytes {} -> {}",
        log.len(),
        out.len()
    );
    let masked: Vec<String> = out.lines().map(algorithmic::mask).collect();
    for line in log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("FATAL"))
    {
        let key = algorithmic::mask(line);
        assert!(
            masked.iter().any(|m| m.starts_with(&key)),
            "error line lost: {line}"
        );
    }
    for unique in [
        "relation \"orders_idx\" already exists",
        "did you mean 'retry_backoff'?",
    ] {
        assert!(out.contains(unique), "{unique}");
    }
}

#[tokio::test]
async fn condensation_off_forwards_the_request_untouched() {
    for m in [
        model(json!({"condense_context": 0, "context_size": 100})),
        json!({"name": "small", "context_size": 100}),
    ] {
        let s = setup(m, None).await;
        let gw = Gateway::start_with(s.dir).await;
        let client_msgs = chat(6, 60);
        let v = send_ok(&gw, &client_msgs).await;
        assert_eq!(upstream_messages(&s.up), client_msgs);
        assert_eq!(v["usage"]["effective_context"], count(&gw, &client_msgs));
        assert_eq!(s.cm.received.count(), 0);
        assert_eq!(
            gw.state
                .context
                .stats
                .condensed
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
}

#[tokio::test]
async fn algorithmic_collapses_the_log_and_keeps_tool_pairing() {
    let s = setup(
        model(json!({"context_size": 100000, "condense_context": 10, "condense_method": "algorithmic"})),
        None,
    )
    .await;
    let gw = Gateway::start_with(s.dir).await;
    let client_msgs = log_chat();
    let v = send_ok(&gw, &client_msgs).await;
    let sent = upstream_messages(&s.up);
    assert_condensed(
        &gw,
        &client_msgs,
        &sent,
        10_000,
        &v["usage"]["effective_context"],
    );
    assert_eq!(sent.len(), client_msgs.len());
    assert_eq!(sent[1], client_msgs[1]);
    assert_eq!(sent[2], client_msgs[2], "the tool call is untouched");
    assert_eq!(sent[3]["tool_call_id"], "call_log");
    assert!(text(&sent[3]).contains("similar lines"));
    assert_eq!(s.cm.received.count(), 0, "algorithmic calls no model");
    let stats = &gw.state.context.stats;
    assert_eq!(stats.runs(CondenseMethod::Algorithmic), 1);
    assert_eq!(
        stats.last_resort.load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // Streamed: the final usage chunk carries the same independent count.
    let resp = send(&gw, &client_msgs, true).await;
    let chunks = assert_openai_stream(&resp.text().await.unwrap());
    let sent = upstream_messages(&s.up);
    assert_eq!(
        chunks.last().unwrap()["usage"]["effective_context"],
        count(&gw, &sent)
    );
}

#[tokio::test]
async fn conversational_replaces_older_turns_with_one_summary() {
    let s = setup(
        model(json!({"condense_method": "conversational", "condense_model": "cm/summarizer"})),
        None,
    )
    .await;
    let gw = Gateway::start_with(s.dir).await;
    let client_msgs = chat(10, 100);
    let v = send_ok(&gw, &client_msgs).await;
    let sent = upstream_messages(&s.up);
    assert_condensed(
        &gw,
        &client_msgs,
        &sent,
        3000,
        &v["usage"]["effective_context"],
    );
    // system, summary, the last 4 turns and the current question verbatim.
    assert_eq!(sent.len(), 1 + 1 + 4 + 1);
    assert_eq!(sent[1]["role"], "system");
    assert!(text(&sent[1]).contains(SUMMARY));
    assert_eq!(&sent[2..], &client_msgs[client_msgs.len() - 5..]);

    let asked = s.cm.received.last();
    assert_eq!(s.cm.received.count(), 1);
    assert_eq!(asked.body["model"], "summarizer");
    assert_eq!(asked.body["temperature"], 0);
    assert_ne!(asked.body["stream"], true);
    assert_eq!(asked.body["messages"][0]["content"], PROMPT_FILES[0].1);
    let transcript = asked.body["messages"][1]["content"].as_str().unwrap();
    assert!(
        transcript.contains(text(&client_msgs[1])),
        "older turns sent verbatim"
    );
    assert!(
        transcript.contains("run_shell"),
        "tool calls in the transcript"
    );
    assert!(
        !transcript.contains(LAST),
        "the current question is not summarised"
    );
    assert_eq!(s.up.received.count(), 1);
}

#[tokio::test]
async fn semantic_keeps_only_facts_for_the_current_request() {
    let s = setup(
        model(json!({"condense_method": ["semantic"], "condense_model": "cm/summarizer"})),
        None,
    )
    .await;
    let gw = Gateway::start_with(s.dir).await;
    let client_msgs = chat(10, 100);
    let v = send_ok(&gw, &client_msgs).await;
    let sent = upstream_messages(&s.up);
    assert_condensed(
        &gw,
        &client_msgs,
        &sent,
        3000,
        &v["usage"]["effective_context"],
    );
    assert_eq!(sent.len(), 3);
    assert!(text(&sent[1]).contains(SUMMARY));
    let asked = s.cm.received.last();
    assert_eq!(asked.body["messages"][0]["content"], PROMPT_FILES[1].1);
    let user = asked.body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains(&format!(
        "<aisbf_current_request>\n{LAST}\n</aisbf_current_request>"
    )));
}

#[tokio::test]
async fn hierarchical_keeps_goals_latest_code_and_recent_turns() {
    let s = setup(
        model(json!({"condense_method": "hierarchical", "condense_model": "cm/summarizer"})),
        None,
    )
    .await;
    let gw = Gateway::start_with(s.dir).await;
    let mut client_msgs = chat(10, 100);
    let code_old = "```python\nprint('old itinerary')\n```";
    let code_new = "```python\ndef budget(days):\n    return 2000 / days\n```";
    client_msgs[4] =
        json!({"role": "assistant", "content": format!("First draft:\n{code_old}\nok")});
    client_msgs[8] =
        json!({"role": "assistant", "content": format!("Here is the helper:\n{code_new}\nDone.")});
    let v = send_ok(&gw, &client_msgs).await;
    let sent = upstream_messages(&s.up);
    assert_condensed(
        &gw,
        &client_msgs,
        &sent,
        3000,
        &v["usage"]["effective_context"],
    );
    assert_eq!(sent.len(), 1 + 1 + 2 + 1);
    let memory = text(&sent[1]);
    assert!(memory.contains(SUMMARY));
    assert!(memory.contains(&format!("## Original request\n{}", text(&client_msgs[1]))));
    assert!(memory.contains(code_new), "latest code verbatim");
    assert!(memory.contains(code_old));
    assert_eq!(&sent[2..], &client_msgs[client_msgs.len() - 3..]);
    assert_eq!(
        s.cm.received.last().body["messages"][0]["content"],
        PROMPT_FILES[2].1
    );
}

#[tokio::test]
async fn a_failing_model_method_falls_through_to_the_next() {
    let s = setup(
        model(json!({"context_size": 100000, "condense_context": 10,
            "condense_method": ["conversational", "algorithmic"], "condense_model": "cm/summarizer"})),
        None,
    )
    .await;
    s.cm.set_answer(Answer::Fault(Fault::Status(
        500,
        r#"{"error":{"message":"boom","type":"server_error","code":null,"param":null}}"#.into(),
    )));
    let gw = Gateway::start_with(s.dir).await;
    let mut client_msgs = log_chat();
    // Older turns for conversational to work on.
    client_msgs.splice(1..1, chat(6, 30)[1..13].to_vec());
    let v = send_ok(&gw, &client_msgs).await;
    let sent = upstream_messages(&s.up);
    assert_condensed(
        &gw,
        &client_msgs,
        &sent,
        10_000,
        &v["usage"]["effective_context"],
    );
    assert_eq!(s.cm.received.count(), 1, "conversational was tried");
    assert_eq!(
        sent.len(),
        client_msgs.len(),
        "no summary: algorithmic did the work"
    );
    assert!(text(&sent[sent.len() - 2]).contains("similar lines"));
    let stats = &gw.state.context.stats;
    assert_eq!(stats.failures(CondenseMethod::Conversational), 1);
    assert_eq!(stats.runs(CondenseMethod::Algorithmic), 1);
}

#[tokio::test]
async fn when_every_method_fails_the_oldest_turns_are_dropped() {
    let s = setup(
        model(json!({"condense_method": ["conversational", "semantic"], "condense_model": "cm/summarizer"})),
        None,
    )
    .await;
    s.cm.set_answer(Answer::Empty);
    let gw = Gateway::start_with(s.dir).await;
    let client_msgs = chat(20, 100);
    let v = send_ok(&gw, &client_msgs).await;
    let sent = upstream_messages(&s.up);
    assert_condensed(
        &gw,
        &client_msgs,
        &sent,
        3000,
        &v["usage"]["effective_context"],
    );
    // The newest turns survive, in order, verbatim.
    let kept = &client_msgs[client_msgs.len() - (sent.len() - 1)..];
    assert_eq!(&sent[1..], kept);
    let calls = sent
        .iter()
        .filter(|m| m.get("tool_calls").is_some())
        .count();
    let results = sent.iter().filter(|m| m["role"] == "tool").count();
    assert_eq!(calls, results, "tool pairs kept or dropped together");
    assert_eq!(s.cm.received.count(), 2, "both model methods were tried");
    let stats = &gw.state.context.stats;
    assert_eq!(stats.failures(CondenseMethod::Conversational), 1);
    assert_eq!(stats.failures(CondenseMethod::Semantic), 1);
    assert_eq!(
        stats.last_resort.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_silent_condensation_model_times_out_and_the_next_method_runs() {
    let s = setup(
        model(json!({"condense_method": ["semantic", "algorithmic"], "condense_model": "cm/summarizer"})),
        None,
    )
    .await;
    s.cm.set_answer(Answer::Fault(Fault::Hang));
    s.dir.aisbf(json!({"timeouts": {"first_byte_seconds": 1}}));
    let gw = Gateway::start_with(s.dir).await;
    let client_msgs = chat(20, 100);
    let v = send_ok(&gw, &client_msgs).await;
    let sent = upstream_messages(&s.up);
    assert_condensed(
        &gw,
        &client_msgs,
        &sent,
        3000,
        &v["usage"]["effective_context"],
    );
    let stats = &gw.state.context.stats;
    assert_eq!(stats.failures(CondenseMethod::Semantic), 1);
    assert_eq!(stats.runs(CondenseMethod::Algorithmic), 1);
}

#[tokio::test]
async fn a_request_that_cannot_fit_is_refused_not_sent() {
    let s = setup(model(json!({"context_size": 50})), None).await;
    let gw = Gateway::start_with(s.dir).await;
    let msgs = vec![json!({"role": "user", "content": words(1, 200)})];
    let resp = send(&gw, &msgs, false).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(s.up.received.count(), 0);
}

#[tokio::test]
async fn the_request_target_condenses_when_nothing_else_is_configured() {
    let s = setup(model(json!({"condense_method": "conversational"})), None).await;
    let gw = Gateway::start_with(s.dir).await;
    let client_msgs = chat(20, 100);
    let v = send_ok(&gw, &client_msgs).await;
    let all = s.up.received.all();
    assert_eq!(all.len(), 2, "the condensation call, then the request");
    let asked = &all[0].body;
    assert_eq!(asked["model"], "small");
    assert_eq!(asked["temperature"], 0);
    // The condensation call is over context_size itself, yet reached the model whole: it
    // was not condensed (nor refused) in turn.
    let transcript = asked["messages"][1]["content"].as_str().unwrap();
    let asked_msgs: Vec<Value> = asked["messages"].as_array().unwrap().clone();
    assert!(count(&gw, &asked_msgs) > 3000);
    for m in &client_msgs[1..client_msgs.len() - 5] {
        assert!(transcript.contains(text(m)));
    }
    let sent = upstream_messages(&s.up);
    assert!(text(&sent[1]).contains(&REPLY.concat()));
    assert_condensed(
        &gw,
        &client_msgs,
        &sent,
        3000,
        &v["usage"]["effective_context"],
    );
    assert_eq!(s.cm.received.count(), 0);
    let stats = &gw.state.context.stats;
    assert_eq!(
        stats.condensed.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(stats.rejected.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn providers_json_condensation_section_is_used_unless_disabled() {
    let section = json!({"provider_id": "cm", "model": "summarizer"});
    let s = setup(
        model(json!({"condense_method": "conversational"})),
        Some(section),
    )
    .await;
    let gw = Gateway::start_with(s.dir).await;
    send_ok(&gw, &chat(10, 100)).await;
    assert_eq!(s.cm.received.count(), 1);
    assert_eq!(s.cm.received.last().body["model"], "summarizer");
    assert_eq!(s.up.received.count(), 1);

    let section = json!({"provider_id": "cm", "model": "summarizer", "enabled": false});
    let s = setup(
        model(json!({"condense_method": "conversational"})),
        Some(section),
    )
    .await;
    let gw = Gateway::start_with(s.dir).await;
    send_ok(&gw, &chat(10, 100)).await;
    assert_eq!(s.cm.received.count(), 0);
    assert_eq!(s.up.received.count(), 2);
}

#[tokio::test]
async fn a_prompt_file_in_the_config_dir_overrides_the_shipped_one() {
    let s = setup(
        model(json!({"condense_method": "conversational", "condense_model": "cm/summarizer"})),
        None,
    )
    .await;
    let custom = "CUSTOM: summarise in three words.";
    std::fs::write(s.dir.path().join("condense_conversational.md"), custom).unwrap();
    let gw = Gateway::start_with(s.dir).await;
    send_ok(&gw, &chat(10, 100)).await;
    assert_eq!(s.cm.received.last().body["messages"][0]["content"], custom);
}

/// aisbf counts with the `tiktoken` crate (pinned; chosen by benches/tokens.rs): it must
/// count exactly like tiktoken-rs, the reference, on prose, code, logs, unicode, special-token
/// text and hostile input.
#[test]
fn tiktoken_crate_counts_like_tiktoken_rs() {
    let counter = aisbf::context::tokens::TokenCounter::new();
    let log = log_fixture();
    let samples = [
        words(7, 500),
        log[..20_000].to_string(),
        "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n\t\t  trailing   \n\n".repeat(50),
        "Grüße aus Lisboa — ça va? 日本語のテキスト, 中文, emoji 🎉🚀, Ελληνικά.".repeat(40),
        "a".repeat(5_000),
        "qwertyuiopasdfghjklzxcvbnm".repeat(200),
        "<|endoftext|> special tokens count as ordinary text <|im_start|>".to_string(),
    ];
    let reference = [
        ("gpt-4", tiktoken_rs::cl100k_base_singleton()),
        ("gpt-4o", tiktoken_rs::o200k_base_singleton()),
    ];
    for (model, bpe) in reference {
        for s in &samples {
            assert_eq!(
                counter.count_text(model, s) as usize,
                bpe.encode_ordinary(s).len(),
                "{model} on {:?}",
                &s[..s.len().min(60)]
            );
        }
    }
}
