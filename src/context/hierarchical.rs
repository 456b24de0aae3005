//! `hierarchical`: persistent facts (system messages verbatim, the original request, goals),
//! a structured summary of the history by the condensation model, the latest code blocks
//! verbatim, the recent turns verbatim, and the current instruction.

use super::model::{note, older, summarize_older, Asker, CondenseError};
use super::turns::rebuild;
use crate::api::openai::Message;

/// Non-system turns before the current instruction kept verbatim.
pub const KEEP_UNITS: usize = 2;
/// Latest fenced code blocks of the history kept verbatim, and their byte budget.
pub const CODE_BLOCKS: usize = 3;
pub const CODE_BUDGET: usize = 8_000;
/// The original request is quoted whole up to this size, else its head.
const ORIGINAL_MAX: usize = 2_000;

pub async fn condense(
    asker: &Asker<'_>,
    prompt: &str,
    messages: &[Message],
) -> Result<Vec<Message>, CondenseError> {
    let (s, summary) = summarize_older(asker, prompt, messages, KEEP_UNITS).await?;
    let mut memory = String::from("Memory of the earlier conversation (condensed by aisbf).\n");
    if let Some(first) = older(messages, &s.older).find(|m| m.role == "user") {
        let text = first.text();
        let mut cut = text.len().min(ORIGINAL_MAX);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        memory.push_str("\n## Original request\n");
        memory.push_str(&text[..cut]);
        if cut < text.len() {
            memory.push_str(" [...]");
        }
        memory.push('\n');
    }
    memory.push('\n');
    memory.push_str(&summary);
    memory.push('\n');
    let texts: Vec<String> = older(messages, &s.older).map(Message::text).collect();
    let blocks = latest_code_blocks(texts.iter().map(String::as_str), CODE_BLOCKS, CODE_BUDGET);
    if !blocks.is_empty() {
        memory.push_str("\n## Latest code\n");
        for b in blocks {
            memory.push_str(b);
            memory.push('\n');
        }
    }
    Ok(rebuild(messages, s.tail_start, vec![note(memory)]))
}

/// Fenced code blocks (fences included, byte-identical), in document order.
pub fn code_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut open: Option<(usize, &str)> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        let fence = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f));
        match (open, fence) {
            (None, Some(f)) => open = Some((pos, f)),
            (Some((start, f)), Some(g)) if f == g && trimmed.trim_start_matches(f).is_empty() => {
                out.push(text[start..pos + line.len()].trim_end_matches('\n'));
                open = None;
            }
            _ => {}
        }
        pos += line.len();
    }
    out
}

/// The last `max` distinct code blocks of `texts` within `budget` bytes, oldest first.
pub fn latest_code_blocks<'t>(
    texts: impl DoubleEndedIterator<Item = &'t str>,
    max: usize,
    budget: usize,
) -> Vec<&'t str> {
    let mut picked: Vec<&str> = Vec::new();
    let mut used = 0;
    'outer: for text in texts.rev() {
        for b in code_blocks(text).into_iter().rev() {
            if picked.len() == max {
                break 'outer;
            }
            if used + b.len() > budget || picked.contains(&b) {
                continue;
            }
            used += b.len();
            picked.push(b);
        }
    }
    picked.reverse();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fenced_blocks_verbatim() {
        let t = "intro\n```rust\nfn a() {}\n```\nmid\n~~~\nx\n```\ny\n~~~\nend";
        assert_eq!(
            code_blocks(t),
            vec!["```rust\nfn a() {}\n```", "~~~\nx\n```\ny\n~~~"]
        );
    }

    #[test]
    fn keeps_the_latest_distinct_blocks_within_budget() {
        let a = "```\nA\n```";
        let b = "```\nB\n```";
        let c = "```\nC\n```";
        let texts = [format!("{a}\n{b}"), format!("{c}\n{b}")];
        let got = latest_code_blocks(texts.iter().map(String::as_str), 2, 1000);
        assert_eq!(got, vec![c, b]);
        let got = latest_code_blocks(texts.iter().map(String::as_str), 5, 1000);
        assert_eq!(got, vec![a, c, b]);
        let got = latest_code_blocks(texts.iter().map(String::as_str), 5, 12);
        assert_eq!(got, vec![b]);
    }
}
