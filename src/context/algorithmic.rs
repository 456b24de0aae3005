//! `algorithmic` condensation: no model call, pure text transforms on the conversation.
//! Whitespace folding, repeated line collapsing with counts (near-identical log lines too),
//! head + tail truncation of huge tool outputs (error lines from the middle kept), and
//! removal of low-information filler from old *assistant* turns. System messages, user
//! words, the last user message, tool calls and tool-call ids are never dropped.

use std::collections::HashMap;

use super::turns::{is_system, last_user};
use crate::api::openai::{Content, Message};

/// A tool output longer than this (after collapsing) is cut to head + tail.
pub const TOOL_OUTPUT_MAX: usize = 12_000;
const HEAD: usize = 4_000;
const TAIL: usize = 4_000;
/// Error-looking lines kept from the middle of a truncated output.
const MIDDLE_ERRORS_MAX: usize = 60;
/// Lines shorter than this are never collapsed (braces, separators, short words).
const MIN_COLLAPSE_LEN: usize = 12;

/// The condensed conversation (same messages, same order, lighter texts).
pub fn condense(messages: &[Message]) -> Vec<Message> {
    let current = last_user(messages);
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if is_system(m) || Some(i) == current {
                return m.clone();
            }
            // Only the model's own pleasantries are filler: a user's "let me know if the
            // build fails" is an instruction.
            let old = current.is_some_and(|c| i < c) && m.role == "assistant";
            let tool = m.role == "tool";
            let mut out = m.clone();
            match &mut out.content {
                Some(Content::Text(t)) => *t = compress(t, old, tool),
                Some(Content::Parts(parts)) => {
                    for p in parts.iter_mut() {
                        if let Some(t) = &mut p.text {
                            *t = compress(t, old, tool);
                        }
                    }
                }
                None => {}
            }
            out
        })
        .collect()
}

/// Every transform of one text, in order. `old_assistant`: an assistant turn before the
/// current question, whose filler may go.
pub fn compress(text: &str, old_assistant: bool, tool: bool) -> String {
    let mut t = fold_whitespace(text);
    t = collapse_lines(&t);
    if old_assistant && !tool {
        t = strip_filler(&t);
    }
    if tool && t.len() > TOOL_OUTPUT_MAX {
        t = truncate_middle(&t, HEAD, TAIL);
    }
    t
}

fn is_fence(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("```") || l.starts_with("~~~")
}

/// Trailing whitespace removed, runs of inner blanks folded to one (indentation kept),
/// runs of blank lines folded to one; code fences only lose trailing whitespace.
pub fn fold_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if is_fence(line) {
            in_code = !in_code;
        }
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 && !in_code {
                continue;
            }
        } else {
            blank_run = 0;
        }
        if in_code {
            out.push_str(line);
        } else {
            let body = line.trim_start();
            out.push_str(&line[..line.len() - body.len()]);
            let mut prev_blank = false;
            for c in body.chars() {
                let blank = c == ' ' || c == '\t';
                if !(blank && prev_blank) {
                    out.push(if blank { ' ' } else { c });
                }
                prev_blank = blank;
            }
        }
        out.push('\n');
    }
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}

/// A line with every word that holds a digit (numbers, ids, hashes, timestamps) masked:
/// lines equal after masking are "near-identical".
pub fn mask(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.chars().any(|c| c.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in line.trim().chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            if !(c.is_whitespace() && out.ends_with(' ')) {
                out.push(if c.is_whitespace() { ' ' } else { c });
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Log levels: a line naming one is a log line.
const LOG_LEVELS: [&str; 9] = [
    "TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL",
];

/// Near-identical collapsing (digits masked) is for log lines, whose numbers are incidental
/// (times, ids, durations). In rows of data the numbers are the content: those lines
/// collapse only when exactly equal.
pub fn is_log_line(line: &str) -> bool {
    line.split(|c: char| !c.is_ascii_alphabetic())
        .any(|w| LOG_LEVELS.contains(&w))
}

/// Lines repeated anywhere in the text (log lines: near-identical ones too) are kept once,
/// at their first place, with the number of lines they stand for; fenced code is left alone.
pub fn collapse_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut keys: Vec<Option<String>> = Vec::with_capacity(lines.len());
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut in_code = false;
    for line in &lines {
        if is_fence(line) {
            in_code = !in_code;
            keys.push(None);
            continue;
        }
        if in_code || line.trim().len() < MIN_COLLAPSE_LEN {
            keys.push(None);
            continue;
        }
        let k = if is_log_line(line) {
            mask(line)
        } else {
            // Never equal to a masked key: those hold no line break either, but this prefix
            // keeps an exact line from merging with a masked one.
            format!("\n{}", line.trim())
        };
        *counts.entry(k.clone()).or_default() += 1;
        keys.push(Some(k));
    }
    if counts.values().all(|&n| n == 1) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() / 2);
    let mut seen: HashMap<&str, ()> = HashMap::new();
    for (line, key) in lines.iter().zip(&keys) {
        match key {
            None => out.push_str(line),
            Some(k) => {
                let n = counts.get(k).copied().unwrap_or(1);
                if n == 1 {
                    out.push_str(line);
                } else if seen.insert(k.as_str(), ()).is_none() {
                    out.push_str(line);
                    if k.starts_with('\n') {
                        out.push_str(&format!("  [x{n} identical lines]"));
                    } else {
                        out.push_str(&format!("  [x{n} similar lines]"));
                    }
                } else {
                    continue;
                }
            }
        }
        out.push('\n');
    }
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}

fn looks_like_error(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    [
        "error",
        "fatal",
        "panic",
        "exception",
        "traceback",
        "fail",
        "critical",
    ]
    .iter()
    .any(|w| l.contains(w))
}

/// Largest index ≤ `i` on a char boundary.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The first `head` and last `tail` bytes (cut at line ends), the middle's error-looking
/// lines, and a marker saying how much was left out.
pub fn truncate_middle(text: &str, head: usize, tail: usize) -> String {
    if text.len() <= head + tail {
        return text.to_string();
    }
    let h = floor_boundary(text, head);
    let h = text[..h].rfind('\n').map_or(h, |i| i + 1);
    let t = floor_boundary(text, text.len() - tail);
    let t = text[t..].find('\n').map_or(t, |i| t + i + 1);
    let middle = &text[h..t];
    let mut kept = Vec::new();
    let mut omitted = 0usize;
    for line in middle.lines() {
        if kept.len() < MIDDLE_ERRORS_MAX && looks_like_error(line) {
            let cut = floor_boundary(line, 300);
            kept.push(&line[..cut]);
        } else {
            omitted += 1;
        }
    }
    let mut out = String::with_capacity(head + tail + 200);
    out.push_str(&text[..h]);
    out.push_str(&format!(
        "[... aisbf: {omitted} lines ({} bytes) omitted ...]\n",
        middle.len()
    ));
    for l in kept {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&text[t..]);
    out
}

const FILLER: [&str; 16] = [
    "sure",
    "certainly",
    "of course",
    "absolutely",
    "great question",
    "good question",
    "i hope this helps",
    "hope this helps",
    "let me know if",
    "feel free to",
    "happy to help",
    "i'd be happy to",
    "i would be happy to",
    "as an ai",
    "thanks!",
    "thank you!",
];

fn is_filler(sentence: &str) -> bool {
    let s = sentence.trim().to_ascii_lowercase();
    s.len() < 120 && FILLER.iter().any(|f| s.starts_with(f))
}

/// Drops lines that are only pleasantries, and a pleasantry opening a line ("Sure! Here…").
pub fn strip_filler(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for line in text.lines() {
        if is_fence(line) {
            in_code = !in_code;
        }
        if in_code {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let trimmed = line.trim();
        if !trimmed.is_empty() && is_filler(trimmed) {
            // A whole-line pleasantry, unless it goes on after its first sentence.
            match trimmed.find(['!', '.']) {
                Some(end) if end + 1 < trimmed.len() && is_filler(&trimmed[..=end]) => {
                    out.push_str(trimmed[end + 1..].trim_start());
                    out.push('\n');
                }
                _ => {}
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_whitespace_but_keeps_indentation_and_code() {
        assert_eq!(
            fold_whitespace("a   b\t\tc   \n\n\n\n  d  e\n```\nx    =  1\n\n\n```"),
            "a b c\n\n  d e\n```\nx    =  1\n\n\n```"
        );
    }

    #[test]
    fn masks_numbers_ids_and_timestamps() {
        assert_eq!(
            mask("2024-05-01T12:00:01Z INFO req 8f3a2b1c done in 12ms"),
            mask("2024-06-11T09:14:59Z INFO req 1d9e4f7a done in 3ms")
        );
        assert_ne!(mask("ERROR disk full"), mask("ERROR db timeout"));
    }

    #[test]
    fn collapses_near_identical_log_lines_with_a_count() {
        let text = "INFO GET /a 200 12ms ok\nINFO GET /a 200 15ms ok\nERROR boom happened\nINFO GET /a 200 9ms ok";
        assert_eq!(
            collapse_lines(text),
            "INFO GET /a 200 12ms ok  [x3 similar lines]\nERROR boom happened"
        );
        let code = "```\nlet a1 = f(1);\nlet a2 = f(2);\n```";
        assert_eq!(collapse_lines(code), code);
    }

    #[test]
    fn truncates_the_middle_keeping_errors() {
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!("line {i} of output\n"));
            if i == 1000 {
                text.push_str("FATAL: out of memory in worker\n");
            }
        }
        let out = truncate_middle(&text, 500, 500);
        assert!(out.len() < 1500, "{}", out.len());
        assert!(out.starts_with("line 0 of output\n"));
        assert!(out.ends_with("line 1999 of output\n"));
        assert!(out.contains("FATAL: out of memory in worker\n"));
        assert!(out.contains("lines ("));
    }

    #[test]
    fn strips_filler_from_old_turns() {
        assert_eq!(
            strip_filler(
                "Sure! Here is the fix.\ncode\nI hope this helps!\nLet me know if you need more."
            ),
            "Here is the fix.\ncode"
        );
    }

    /// Rows of data differ only in their numbers, which are their content.
    #[test]
    fn rows_of_data_are_not_collapsed() {
        let rows = "sensor-a reading 12.5 at 0900\nsensor-a reading 13.1 at 0910\nsensor-a reading 12.9 at 0920";
        assert_eq!(collapse_lines(rows), rows);
        let same = "the same line again\nthe same line again\nother line here";
        assert_eq!(
            collapse_lines(same),
            "the same line again  [x2 identical lines]\nother line here"
        );
    }

    /// A user's older turn keeps every word: "let me know if" there is an instruction.
    #[test]
    fn older_user_turns_keep_their_words() {
        let msgs = vec![
            Message::new("user", "Build it.\nLet me know if the build fails."),
            Message::new("assistant", "Sure! Building now.\nI hope this helps!"),
            Message::new("user", "Status?"),
        ];
        let out = condense(&msgs);
        assert_eq!(out[0].text(), "Build it.\nLet me know if the build fails.");
        assert_eq!(out[1].text(), "Building now.");
    }

    #[test]
    fn never_touches_system_the_last_user_message_or_tool_pairing() {
        let mut call = Message::new("assistant", "");
        call.tool_calls = Some(vec![crate::api::openai::ToolCall {
            id: "c1".into(),
            kind: "function".into(),
            function: crate::api::openai::FunctionCall {
                name: "run".into(),
                arguments: r#"{"cmd":   "ls"}"#.into(),
            },
        }]);
        let mut res = Message::new("tool", "x  y\n".repeat(3));
        res.tool_call_id = Some("c1".into());
        let msgs = vec![
            Message::new("system", "a   b\n\n\n\nc"),
            Message::new("user", "Sure!   fine"),
            call.clone(),
            res,
            Message::new("user", "q   q\n\n\n"),
        ];
        let out = condense(&msgs);
        assert_eq!(out[0], msgs[0]);
        assert_eq!(out[4], msgs[4]);
        assert_eq!(out[2], call);
        assert_eq!(out[3].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(out[3].text(), "x y\nx y\nx y\n");
        assert_eq!(out[1].text(), "Sure! fine", "a user's words stay");
    }
}
