//! Autoselect against mock upstreams: a scripted selector model, a "coder" provider and a
//! "general" rotation as the fallback.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::openai_mock::{OpenAiMock, REPLY};
use support::scripted_mock::ScriptedMock;
use support::*;

struct Setup {
    gw: Gateway,
    selector: ScriptedMock,
    coder: OpenAiMock,
    general: OpenAiMock,
}

fn tag(id: &str) -> String {
    format!("<aisbf_model_autoselection>{id}</aisbf_model_autoselection>")
}

async fn setup(reply: &str, patch: impl FnOnce(&ConfigDir)) -> Setup {
    let selector = ScriptedMock::start(reply).await;
    let coder = OpenAiMock::start().await;
    let general = OpenAiMock::start().await;
    let cfg = ConfigDir::new(json!({
        "sel": provider("openai", &selector.endpoint, Some("sk-sel"), &["pick"]),
        "c": provider("openai", &coder.endpoint, Some("sk-c"), &["code-1"]),
        "g": provider("openai", &general.endpoint, Some("sk-g"), &["gen-1"]),
    }));
    cfg.write(
        "rotations.json",
        &json!({"rotations": {"general": {"providers": [{"provider_id": "g", "models": [{"name": "gen-1"}]}]}}}),
    );
    cfg.write(
        "autoselect.json",
        &json!({"autoselect": {"auto": {
            "model_name": "auto",
            "description": "picks",
            "selection_model": "sel/pick",
            "fallback": "general",
            "available_models": [
                {"model_id": "c/code-1", "description": "Programming and debugging"},
                {"model_id": "general", "description": "Everyday conversation"}
            ]
        }}}),
    );
    patch(&cfg);
    Setup {
        gw: Gateway::start_with(cfg).await,
        selector,
        coder,
        general,
    }
}

async fn ask(gw: &Gateway, path: &str, model: &str, text: &str, stream: bool) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .json(&json!({"model": model, "stream": stream, "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": text}
        ]}))
        .send()
        .await
        .unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()[name].to_str().unwrap().to_string()
}

#[tokio::test]
async fn picks_the_tagged_target() {
    let s = setup(&tag("c/code-1"), |_| {}).await;
    let resp = ask(
        &s.gw,
        "/api/autoselect/chat/completions",
        "auto",
        "Fix my Rust borrow error",
        false,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aisbf-autoselect"), "c/code-1");
    assert_eq!(header(&resp, "x-aisbf-provider"), "c");
    assert_eq!(header(&resp, "x-aisbf-model"), "code-1");
    let v: Value = resp.json().await.unwrap();
    assert_schema("CreateChatCompletionResponse", &v);
    assert_eq!(v["choices"][0]["message"]["content"], REPLY.concat());

    // The coder got the client's own request.
    let seen = s.coder.received.last();
    assert_eq!(seen.body["model"], "code-1");
    assert_eq!(
        seen.body["messages"][1]["content"],
        "Fix my Rust borrow error"
    );
    assert_eq!(s.general.received.count(), 0);

    // The selector got the selector prompt, non-streaming, temperature 0, small max_tokens.
    let sel = s.selector.received.last();
    assert_eq!(sel.body["model"], "pick");
    assert_eq!(sel.body["temperature"], 0);
    assert_eq!(sel.body["max_tokens"], 32);
    assert!(sel.body["stream"] != json!(true));
    assert_eq!(sel.body["messages"][0]["role"], "system");
    assert_eq!(
        sel.body["messages"][0]["content"],
        aisbf::routing::autoselect::DEFAULT_PROMPT
    );
    let user = sel.body["messages"][1]["content"].as_str().unwrap();
    assert!(
        user.contains(
            "<aisbf_current_task>\nuser: Fix my Rust borrow error\n</aisbf_current_task>"
        ),
        "{user}"
    );
    assert!(
        !user.contains("You are helpful."),
        "the client's system prompt is not the task"
    );
    assert!(user.contains("<aisbf_autoselect_list>\n<model><model_id>c/code-1</model_id><model_description>Programming and debugging</model_description></model>\n"));
    assert!(user.ends_with("<aisbf_autoselect_fallback>general</aisbf_autoselect_fallback>"));
}

#[tokio::test]
async fn falls_back_on_garbage_and_unknown_ids() {
    let s = setup("I would pick the coder model.", |_| {}).await;
    for (i, reply) in [
        "I would pick the coder model.".to_string(),
        tag("x/unknown"),
        tag("c/code-1").replace("</aisbf", "<aisbf"),
    ]
    .iter()
    .enumerate()
    {
        s.selector.set_reply(reply);
        let resp = ask(
            &s.gw,
            "/v1/chat/completions",
            "autoselect/auto",
            &format!("question {i}"),
            false,
        )
        .await;
        assert_eq!(resp.status(), 200, "{reply}");
        assert_eq!(header(&resp, "x-aisbf-autoselect"), "general", "{reply}");
        assert_eq!(header(&resp, "x-aisbf-provider"), "g");
        assert_eq!(s.general.received.count(), i + 1);
    }
    assert_eq!(s.coder.received.count(), 0);
}

#[tokio::test]
async fn falls_back_when_the_selector_is_late() {
    let s = setup(&tag("c/code-1"), |c| {
        c.aisbf(
            json!({"timeouts": {"connect_seconds": 5, "first_byte_seconds": 1, "idle_seconds": 5}}),
        );
    })
    .await;
    s.selector.set_delay(Duration::from_secs(5));
    let t = Instant::now();
    let resp = ask(
        &s.gw,
        "/api/autoselect/chat/completions",
        "auto",
        "hello",
        false,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aisbf-autoselect"), "general");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "bounded by first_byte_seconds"
    );
    assert_eq!(s.coder.received.count(), 0);
}

#[tokio::test]
async fn falls_back_when_the_selector_fails() {
    let s = setup(&tag("c/code-1"), |_| {}).await;
    s.selector.set_fail(Some(500));
    let resp = ask(
        &s.gw,
        "/api/autoselect/chat/completions",
        "auto",
        "hello",
        false,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-aisbf-autoselect"), "general");
}

#[tokio::test]
async fn streams_through_the_chosen_target() {
    let s = setup(&tag("c/code-1"), |_| {}).await;
    let resp = ask(
        &s.gw,
        "/v1/chat/completions",
        "auto",
        "write a parser",
        true,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    assert_eq!(header(&resp, "x-aisbf-autoselect"), "c/code-1");
    let chunks = assert_openai_stream(&resp.text().await.unwrap());
    assert_eq!(stream_text(&chunks), REPLY.concat());
    assert_eq!(s.coder.received.last().body["stream"], true);
    assert!(
        s.selector.received.last().body["stream"] != json!(true),
        "the selector never streams"
    );
}

#[tokio::test]
async fn selection_cache_is_single_flight() {
    let s = setup(&tag("c/code-1"), |_| {}).await;
    s.selector.set_delay(Duration::from_millis(300));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = s.gw.url("/api/autoselect/chat/completions");
            tokio::spawn(async move {
                let resp = client()
                    .post(url)
                    .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "same question"}]}))
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), header(&resp, "x-aisbf-autoselect"))
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), (200, "c/code-1".to_string()));
    }
    assert_eq!(
        s.selector.received.count(),
        1,
        "one selector call for the burst"
    );
    assert_eq!(s.coder.received.count(), 20);

    // Within the TTL the same request reuses it even if the selector would now say otherwise.
    s.selector.set_reply(&tag("general"));
    let resp = client()
        .post(s.gw.url("/api/autoselect/chat/completions"))
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "same question"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-aisbf-autoselect"), "c/code-1");
    assert_eq!(s.selector.received.count(), 1);
    // A different request asks again.
    let resp = ask(
        &s.gw,
        "/api/autoselect/chat/completions",
        "auto",
        "another question",
        false,
    )
    .await;
    assert_eq!(header(&resp, "x-aisbf-autoselect"), "general");
    assert_eq!(s.selector.received.count(), 2);
}

#[tokio::test]
async fn prompt_override_in_the_config_dir() {
    let s = setup(&tag("general"), |c| {
        std::fs::write(c.path().join("autoselect.md"), "Our own selector rules.").unwrap();
    })
    .await;
    let resp = ask(
        &s.gw,
        "/api/autoselect/chat/completions",
        "auto",
        "hi",
        false,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        s.selector.received.last().body["messages"][0]["content"],
        "Our own selector rules."
    );
}

#[tokio::test]
async fn listing_and_unusable_autoselect() {
    let s = setup(&tag("general"), |c| {
        c.write(
            "autoselect.json",
            &json!({"autoselect": {
                "auto": {"selection_model": "sel/pick", "fallback": "general",
                         "available_models": [{"model_id": "general", "description": "chat"}]},
                "broken": {"fallback": "nowhere", "available_models": [{"model_id": "general"}]}
            }}),
        );
    })
    .await;
    let v: Value = get_json(&s.gw.url("/api/autoselect")).await;
    assert_eq!(v["auto"]["selection_model"], "sel/pick");
    assert_eq!(v["auto"]["available_models"][0]["model_id"], "general");
    assert_eq!(v["auto"]["usable"], true);
    assert_eq!(v["broken"]["usable"], false);
    let v: Value = get_json(&s.gw.url("/api/autoselect/models")).await;
    assert_schema("ListModelsResponse", &v);
    let ids = model_ids(&v);
    // The ids `/api/autoselect/chat/completions` takes.
    assert_eq!(ids, ["auto", "broken"]);

    let resp = ask(&s.gw, "/v1/chat/completions", "broken", "hi", false).await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "service_unavailable");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("autoselect 'broken' is unusable"));
    assert_eq!(s.selector.received.count(), 0);
}
