//! Token counting with embedded offline BPE tables (tiktoken-rs), initialised once at boot.

use tiktoken_rs::CoreBPE;

use crate::api::openai::{Content, Message};

/// Tokens OpenAI adds around every message (`<|start|>role ... <|end|>`).
const PER_MESSAGE: u64 = 3;
/// Tokens that prime the assistant's reply.
const REPLY_PRIMING: u64 = 3;
/// A fixed estimate per image part: the real cost depends on its size, unknown here.
pub const IMAGE_TOKENS: u64 = 765;

pub struct TokenCounter {
    cl100k: &'static CoreBPE,
    o200k: &'static CoreBPE,
}

impl Default for TokenCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCounter {
    /// Loads both tables now, so no request pays for it.
    pub fn new() -> Self {
        TokenCounter {
            cl100k: tiktoken_rs::cl100k_base_singleton(),
            o200k: tiktoken_rs::o200k_base_singleton(),
        }
    }

    /// o200k_base for gpt-4o, the o-series, gpt-4.1+ and gpt-5; cl100k_base otherwise.
    fn bpe_for(&self, model: &str) -> &CoreBPE {
        let m = model
            .rsplit('/')
            .next()
            .unwrap_or(model)
            .to_ascii_lowercase();
        let o200k = m.starts_with("gpt-4o")
            || m.starts_with("gpt-4.1")
            || m.starts_with("gpt-4.5")
            || m.starts_with("gpt-5")
            || m.starts_with("chatgpt-4o")
            || (m.starts_with('o') && m[1..].starts_with(|c: char| c.is_ascii_digit()));
        if o200k {
            self.o200k
        } else {
            self.cl100k
        }
    }

    pub fn count_text(&self, model: &str, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        self.bpe_for(model).encode_ordinary(text).len() as u64
    }

    /// Prompt tokens of a conversation as OpenAI counts them.
    pub fn count_messages(&self, model: &str, messages: &[Message]) -> u64 {
        let bpe = self.bpe_for(model);
        let count = |s: &str| -> u64 {
            if s.is_empty() {
                0
            } else {
                bpe.encode_ordinary(s).len() as u64
            }
        };
        let mut total = REPLY_PRIMING;
        for m in messages {
            total += PER_MESSAGE + count(&m.role);
            match &m.content {
                Some(Content::Text(t)) => total += count(t),
                Some(Content::Parts(parts)) => {
                    for p in parts {
                        if let Some(t) = &p.text {
                            total += count(t);
                        }
                        if p.image_url.is_some() || p.kind == "image_url" {
                            total += IMAGE_TOKENS;
                        }
                    }
                }
                None => {}
            }
            if let Some(name) = &m.name {
                total += 1 + count(name);
            }
            if let Some(calls) = &m.tool_calls {
                for c in calls {
                    total += PER_MESSAGE + count(&c.function.name) + count(&c.function.arguments);
                }
            }
            if let Some(id) = &m.tool_call_id {
                total += count(id);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_openai_for_a_simple_chat() {
        let t = TokenCounter::new();
        let msgs = vec![Message::new("user", "Hello world")];
        // 3 priming + 3 per message + "user"(1) + "Hello world"(2)
        assert_eq!(t.count_messages("gpt-4", &msgs), 9);
        assert_eq!(t.count_messages("gpt-4o", &msgs), 9);
    }

    #[test]
    fn picks_the_table_by_model_family() {
        let t = TokenCounter::new();
        assert!(std::ptr::eq(t.bpe_for("openai/gpt-4o-mini"), t.o200k));
        assert!(std::ptr::eq(t.bpe_for("o3-mini"), t.o200k));
        assert!(std::ptr::eq(t.bpe_for("gpt-3.5-turbo"), t.cl100k));
        assert!(std::ptr::eq(t.bpe_for("llama3.2"), t.cl100k));
        assert!(std::ptr::eq(t.bpe_for("ollama"), t.cl100k));
    }
}
