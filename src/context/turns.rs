//! The shape of a conversation that condensation must respect: system messages, the last
//! user message, and tool calls grouped with their results.

use std::ops::Range;

use super::tokens::Bpe;
use crate::api::openai::Message;

pub fn is_system(m: &Message) -> bool {
    m.role == "system" || m.role == "developer"
}

/// Index of the last user message: the current instruction.
pub fn last_user(messages: &[Message]) -> Option<usize> {
    messages.iter().rposition(|m| m.role == "user")
}

/// Consecutive message ranges that are kept or dropped whole: an assistant message with
/// tool calls owns the tool results that follow it; every other message is its own unit.
pub fn units(messages: &[Message]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < messages.len() {
        let start = i;
        i += 1;
        if messages[start]
            .tool_calls
            .as_ref()
            .is_some_and(|c| !c.is_empty())
        {
            while i < messages.len() && messages[i].role == "tool" {
                i += 1;
            }
        }
        out.push(start..i);
    }
    out
}

/// Where a conversation splits for a model-based method: `older` are the non-system
/// messages a summary replaces, the rest is kept verbatim. `keep_units` is how many
/// non-system units before the current instruction stay verbatim.
pub struct Split {
    /// Indexes (ascending) of the messages replaced by the summary.
    pub older: Vec<usize>,
    /// First index of the verbatim tail.
    pub tail_start: usize,
}

pub fn split(messages: &[Message], keep_units: usize) -> Split {
    let us = units(messages);
    let current = last_user(messages).unwrap_or(messages.len());
    // The unit holding the current instruction (or the end) starts the protected tail.
    let current_unit = us
        .iter()
        .position(|u| u.contains(&current))
        .unwrap_or(us.len());
    let mut kept = 0;
    let mut tail_unit = current_unit;
    while tail_unit > 0 && kept < keep_units {
        tail_unit -= 1;
        if !messages[us[tail_unit].start..us[tail_unit].end]
            .iter()
            .all(is_system)
        {
            kept += 1;
        }
    }
    let tail_start = us.get(tail_unit).map_or(messages.len(), |u| u.start);
    let older = (0..tail_start)
        .filter(|&i| !is_system(&messages[i]))
        .collect();
    Split { older, tail_start }
}

/// Rebuilds a conversation: the system messages before the tail in their order, then
/// `inserted`, then the tail verbatim.
pub fn rebuild(messages: &[Message], tail_start: usize, inserted: Vec<Message>) -> Vec<Message> {
    let tail_start = tail_start.min(messages.len());
    let mut out: Vec<Message> = messages[..tail_start]
        .iter()
        .filter(|m| is_system(m))
        .cloned()
        .collect();
    out.extend(inserted);
    out.extend_from_slice(&messages[tail_start..]);
    out
}

/// The last resort: drops the oldest droppable units until the conversation fits `limit`.
/// Never dropped: system messages, the unit holding the last user message, the last unit.
/// Returns the new conversation, its tokens and how many messages were dropped.
pub fn drop_oldest(bpe: Bpe, messages: Vec<Message>, limit: u64) -> (Vec<Message>, u64, usize) {
    let counts: Vec<u64> = messages.iter().map(|m| bpe.count_message(m)).collect();
    let mut total = super::tokens::REPLY_PRIMING + counts.iter().sum::<u64>();
    let us = units(&messages);
    let current = last_user(&messages);
    let last = us.len().saturating_sub(1);
    let mut drop = vec![false; messages.len()];
    for (k, u) in us.iter().enumerate() {
        if total <= limit {
            break;
        }
        let protected = k == last
            || current.is_some_and(|c| u.contains(&c))
            || messages[u.clone()].iter().any(is_system);
        if protected {
            continue;
        }
        for i in u.clone() {
            drop[i] = true;
            total -= counts[i];
        }
    }
    let dropped = drop.iter().filter(|d| **d).count();
    let kept = messages
        .into_iter()
        .zip(drop)
        .filter_map(|(m, d)| (!d).then_some(m))
        .collect();
    (kept, total, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{FunctionCall, ToolCall};
    use crate::context::tokens::TokenCounter;

    pub fn call(id: &str) -> Message {
        let mut m = Message::new("assistant", "");
        m.content = None;
        m.tool_calls = Some(vec![ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "run".into(),
                arguments: "{}".into(),
            },
        }]);
        m
    }

    pub fn result(id: &str, text: &str) -> Message {
        let mut m = Message::new("tool", text);
        m.tool_call_id = Some(id.into());
        m
    }

    fn conversation() -> Vec<Message> {
        vec![
            Message::new("system", "sys"),
            Message::new("user", "u1 ".repeat(50)),
            call("c1"),
            result("c1", &"r1 ".repeat(200)),
            Message::new("assistant", "a1 ".repeat(50)),
            Message::new("user", "u2 ".repeat(50)),
            Message::new("assistant", "a2 ".repeat(50)),
            Message::new("user", "current"),
        ]
    }

    #[test]
    fn units_keep_tool_calls_with_their_results() {
        let us = units(&conversation());
        assert_eq!(us[2], 2..4);
        assert_eq!(us.len(), 7);
    }

    #[test]
    fn split_keeps_the_last_units_and_the_current_instruction() {
        let msgs = conversation();
        let s = split(&msgs, 2);
        assert_eq!(s.tail_start, 5);
        assert_eq!(s.older, vec![1, 2, 3, 4]);
        let s = split(&msgs, 0);
        assert_eq!(s.tail_start, 7);
        // A split never cuts a tool call from its result.
        let s = split(&msgs, 3);
        assert_eq!(s.tail_start, 4);
        let s = split(&msgs, 4);
        assert_eq!(s.tail_start, 2);
    }

    #[test]
    fn rebuild_keeps_system_messages_and_the_tail() {
        let msgs = conversation();
        let out = rebuild(&msgs, 5, vec![Message::new("system", "summary")]);
        assert_eq!(out[0], msgs[0]);
        assert_eq!(out[1].text(), "summary");
        assert_eq!(&out[2..], &msgs[5..]);
    }

    #[test]
    fn drop_oldest_drops_pairs_together_and_never_the_protected() {
        let t = TokenCounter::new();
        let bpe = t.bpe_for("gpt-4");
        let msgs = conversation();
        let full = bpe.count_messages(&msgs);
        // Just enough to force dropping u1 and the tool pair.
        let limit = full - bpe.count_message(&msgs[1]) - 5;
        let (out, n, dropped) = drop_oldest(bpe, msgs.clone(), limit);
        assert_eq!(n, bpe.count_messages(&out));
        assert!(n <= limit);
        assert_eq!(dropped, 3, "u1 and the whole tool pair");
        assert!(out.iter().all(|m| m.role != "tool"));
        assert!(out.iter().all(|m| m.tool_calls.is_none()));
        assert_eq!(out[0], msgs[0]);
        assert_eq!(out.last(), msgs.last());
        // An impossible limit keeps exactly the protected messages.
        let (out, _, _) = drop_oldest(bpe, msgs.clone(), 1);
        assert_eq!(out, vec![msgs[0].clone(), msgs[7].clone()]);
    }
}
