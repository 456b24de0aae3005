//! Token counting and `algorithmic` speed: the `tiktoken` crate (what aisbf counts with,
//! through `TokenCounter`) against tiktoken-rs, on a 128k-token conversation, 1 MiB of hostile input (letters, no
//! spaces: one giant pre-token), tokenizer start-up, and `algorithmic` on 1 MB of logs.
//! Run: `cargo bench --bench tokens` (add `-- --min-time 0.5` for a short run).

use std::sync::OnceLock;

use aisbf::api::openai::Message;
use aisbf::context::algorithmic;
use aisbf::context::tokens::TokenCounter;
use divan::Bencher;

fn main() {
    divan::main();
}

fn counter() -> &'static TokenCounter {
    static C: OnceLock<TokenCounter> = OnceLock::new();
    C.get_or_init(TokenCounter::new)
}

/// A chat of prose, code and numbers, grown to about 128k cl100k tokens.
fn conversation() -> &'static Vec<Message> {
    static M: OnceLock<Vec<Message>> = OnceLock::new();
    M.get_or_init(|| {
        let prose = "The gateway forwards each request to the upstream that serves it, counting \
            the prompt first; when a conversation grows past 80% of the model's window, older \
            turns are condensed. Latency was 123 ms at p50 and 845 ms at p99 (n=10_000). ";
        let code = "```rust\nfn main() {\n    let v: Vec<u64> = (0..100).map(|x| x * 2).collect();\n    println!(\"{:?}\", v.iter().sum::<u64>());\n}\n```\n";
        let mut msgs = Vec::new();
        let mut i = 0;
        while counter().count_messages("gpt-4", &msgs) < 128_000 {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            let text = format!("Turn {i}. {}{code}", prose.repeat(6));
            msgs.push(Message::new(role, text));
            i += 1;
        }
        msgs
    })
}

/// 1 MiB of pseudo-random lowercase letters: no spaces, so one pre-token of 1 MiB.
fn hostile() -> &'static String {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (b'a' + (x % 26) as u8) as char
            })
            .collect()
    })
}

fn logs() -> &'static String {
    static L: OnceLock<String> = OnceLock::new();
    L.get_or_init(|| {
        let one = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/context/app.log"
        ))
        .expect("log fixture");
        let mut out = String::with_capacity(1 << 20);
        while out.len() < 1_000_000 {
            out.push_str(&one);
        }
        out
    })
}

/// aisbf's own counter: every field and overhead of every message.
mod aisbf_counter {
    use super::*;

    #[divan::bench(args = ["gpt-4", "gpt-4o"])]
    fn count_128k_conversation(model: &str) -> u64 {
        counter().count_messages(model, divan::black_box(conversation()))
    }

    #[divan::bench(sample_count = 3, sample_size = 1, args = ["gpt-4", "gpt-4o"])]
    fn count_1mib_hostile(model: &str) -> u64 {
        counter().count_text(model, divan::black_box(hostile()))
    }

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn init_both_tables() -> TokenCounter {
        TokenCounter::new()
    }
}

mod tiktoken_rs_crate {
    use super::*;

    fn count(bpe: &tiktoken_rs::CoreBPE, msgs: &[Message]) -> u64 {
        3 + msgs
            .iter()
            .map(|m| {
                3 + bpe.encode_ordinary(&m.role).len() as u64
                    + bpe.encode_ordinary(&m.text()).len() as u64
            })
            .sum::<u64>()
    }

    fn table(name: &str) -> &'static tiktoken_rs::CoreBPE {
        match name {
            "o200k_base" => tiktoken_rs::o200k_base_singleton(),
            _ => tiktoken_rs::cl100k_base_singleton(),
        }
    }

    #[divan::bench(args = ["cl100k_base", "o200k_base"])]
    fn count_128k_conversation(bencher: Bencher, name: &str) {
        let bpe = table(name);
        let msgs = conversation();
        bencher.bench(|| count(bpe, divan::black_box(msgs)));
    }

    #[divan::bench(sample_count = 3, sample_size = 1, args = ["cl100k_base", "o200k_base"])]
    fn count_1mib_hostile(bencher: Bencher, name: &str) {
        let bpe = table(name);
        bencher.bench(|| bpe.encode_ordinary(divan::black_box(hostile())).len());
    }

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn init_cl100k() -> tiktoken_rs::CoreBPE {
        tiktoken_rs::cl100k_base().expect("cl100k")
    }

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn init_o200k() -> tiktoken_rs::CoreBPE {
        tiktoken_rs::o200k_base().expect("o200k")
    }
}

mod tiktoken_crate {
    use super::*;

    fn count(enc: &tiktoken::CoreBpe, msgs: &[Message]) -> u64 {
        // Same overhead as aisbf's counter: 3 per message + role + content, 3 priming.
        3 + msgs
            .iter()
            .map(|m| 3 + enc.count(&m.role) as u64 + enc.count(&m.text()) as u64)
            .sum::<u64>()
    }

    #[divan::bench(args = ["cl100k_base", "o200k_base"])]
    fn count_128k_conversation(bencher: Bencher, name: &str) {
        let enc = tiktoken::get_encoding(name).expect("encoding");
        let msgs = conversation();
        bencher.bench(|| count(enc, divan::black_box(msgs)));
    }

    #[divan::bench(sample_count = 3, sample_size = 1, args = ["cl100k_base", "o200k_base"])]
    fn count_1mib_hostile(bencher: Bencher, name: &str) {
        let enc = tiktoken::get_encoding(name).expect("encoding");
        bencher.bench(|| enc.count(divan::black_box(hostile())));
    }

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn init_cl100k() -> tiktoken::CoreBpe {
        tiktoken::encoding::cl100k_base()
    }

    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn init_o200k() -> tiktoken::CoreBpe {
        tiktoken::encoding::o200k_base()
    }
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn algorithmic_1mb_logs(bencher: Bencher) {
    let text = logs();
    bencher.bench(|| algorithmic::compress(divan::black_box(text), false, true));
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn algorithmic_1mb_logs_conversation(bencher: Bencher) {
    let msgs = vec![
        Message::new("system", "You are an SRE assistant."),
        Message::new("user", logs().clone()),
        Message::new("assistant", "Looking."),
        Message::new("user", "Which errors?"),
    ];
    bencher.bench(|| algorithmic::condense(divan::black_box(&msgs)));
}
