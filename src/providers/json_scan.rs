//! One pass over an OpenAI stream chunk that checks it is JSON and tells the translator
//! what it needs to know, without building anything: most chunks of an answer are plain
//! content deltas forwarded as they are, and a serde parse of each (borrowed strings,
//! UTF-8 checks, struct visitors) was most of a stream request's work.
//!
//! `scan` accepts exactly the JSON texts of RFC 8259 (strings valid UTF-8 and properly
//! escaped, numbers well-formed, only whitespace after the value), nested at most
//! `MAX_DEPTH` deep. The recursion is bounded by that depth, so hostile input cannot
//! overflow the stack.

/// How deep arrays and objects may nest (the top-level value counts as 1). serde_json
/// stops one level short of this (it refuses 128), which only sends such a chunk down the
/// translator's full parse; real chunks nest 6 deep.
pub const MAX_DEPTH: usize = 128;

/// What `scan` learned of one valid JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// The top-level value is an object.
    pub object: bool,
    /// Its `error` member is present and not `null`.
    pub error: bool,
    /// Its `usage` member is present and not `null`.
    pub usage: bool,
    /// Some `choices[i].finish_reason` is present and not `null`.
    pub finish: bool,
    /// A `\u` escape of half a UTF-16 surrogate pair without its other half: valid JSON
    /// text, but serde_json refuses to decode such a string into a Rust `String`.
    pub lone_surrogate: bool,
    /// Every member the OpenAI translator reads has the type it reads it as (`id`, `model`,
    /// `choices[i].finish_reason`, `choices[i].delta.content`, `.reasoning_content`,
    /// `.tool_calls[j].function.arguments` a string or null, `created` null or an i64, `choices` an array of objects…), none
    /// appears twice in one object, and no key of those objects is spelled with an escape.
    /// When false a typed serde parse of the chunk may fail where this scan passed.
    pub typed: bool,
}

/// The facts of `json`, or `None` when it is not one valid JSON text.
pub fn scan(json: &[u8]) -> Option<Facts> {
    scan_recording(json, &mut Vec::new())
}

/// `scan`, also giving the spans of the contents of its string values (not keys), in order.
fn scan_recording(json: &[u8], strings: &mut Vec<(usize, usize)>) -> Option<Facts> {
    let mut s = Scanner {
        b: json,
        i: 0,
        facts: Facts {
            typed: true,
            ..Facts::default()
        },
        strings,
    };
    s.ws();
    s.value(Slot::Top, 0)?;
    s.ws();
    (s.i == json.len()).then_some(s.facts)
}

/// Scans the chunks of one stream. Most differ from the one before only in the text of a
/// string value or two (`content`, and OpenAI's random `obfuscation` padding): a chunk
/// that equals the last one scanned in full but in the contents of some string values has
/// that one's facts (swapping a string token for another changes neither the syntax nor
/// what is reported), and only those strings are read. Anything else is scanned in full.
#[derive(Debug, Default)]
pub struct StreamScanner {
    /// The last chunk scanned in full that was valid without lone surrogates (when not
    /// longer than `TEMPLATE_MAX`), its facts, and the spans of its string values.
    template: Vec<u8>,
    facts: Facts,
    strings: Vec<(usize, usize)>,
    /// The spans of the chunk being scanned in full.
    scratch: Vec<(usize, usize)>,
}

/// Longer chunks are scanned in full each time rather than copied.
const TEMPLATE_MAX: usize = 16 * 1024;

impl StreamScanner {
    /// What `scan` says of `json`, mostly cheaper.
    pub fn scan(&mut self, json: &[u8]) -> Option<Facts> {
        if !self.template.is_empty() {
            if let Some(lone_surrogate) = self.diff(json) {
                return Some(Facts {
                    lone_surrogate,
                    ..self.facts
                });
            }
        }
        self.scratch.clear();
        let facts = scan_recording(json, &mut self.scratch)?;
        if !facts.lone_surrogate && json.len() <= TEMPLATE_MAX {
            self.template.clear();
            self.template.extend_from_slice(json);
            self.facts = facts;
            std::mem::swap(&mut self.strings, &mut self.scratch);
        }
        Some(facts)
    }

    /// When `new` is the template with the contents of some string values replaced by
    /// valid string contents: whether those hold a lone surrogate escape.
    fn diff(&self, new: &[u8]) -> Option<bool> {
        let old = &self.template[..];
        let (mut i, mut j) = (0, 0); // in old, in new: the same up to here
        let mut lone = false;
        let mut strings = self.strings.iter();
        loop {
            let same = common_prefix(&old[i..], &new[j..]);
            i += same;
            j += same;
            if i == old.len() && j == new.len() {
                return Some(lone);
            }
            // A difference, which must be inside a string value of the template (its
            // closing quote included): the new string from the same start is read instead.
            let &(start, end) = strings.find(|&&(_, end)| end >= i)?;
            if start > i {
                return None;
            }
            let (new_end, _, l) = string_contents(new, j - (i - start))?;
            lone |= l;
            (i, j) = (end, new_end);
        }
    }
}

/// How many bytes `a` and `b` share at their start, eight at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut k = 0;
    while k + 8 <= n {
        let x = u64::from_le_bytes(a[k..k + 8].try_into().expect("8 bytes"))
            ^ u64::from_le_bytes(b[k..k + 8].try_into().expect("8 bytes"));
        if x != 0 {
            return k + x.trailing_zeros() as usize / 8;
        }
        k += 8;
    }
    while k < n && a[k] == b[k] {
        k += 1;
    }
    k
}

/// Where a value sits, as far as the translator's reading of a chunk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Nowhere the translator reads: any value.
    Any,
    /// The top-level value: a chunk object.
    Top,
    /// `id`, `model`, `content`, `reasoning_content`, `arguments`: a string or null.
    Text,
    /// `created`: null or an integer serde_json reads as an i64.
    Int,
    /// `choices`: an array (not null: the translator defaults only a missing one).
    Choices,
    /// One element of `choices`: an object.
    Choice,
    /// `delta`: an object or null.
    Delta,
    /// `tool_calls`: an array or null.
    ToolCalls,
    /// One element of `tool_calls`: an object.
    Tool,
    /// `function`: an object or null.
    Function,
    /// The members whose non-null presence is reported (any value).
    Usage,
    Error,
    /// `finish_reason`: reported when not null, and read as a string or null.
    Finish,
}

/// The objects whose members the translator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Obj {
    Chunk,
    Choice,
    Delta,
    Tool,
    Function,
    Other,
}

/// A known member of `obj`: its bit (to catch it twice in one object) and its slot.
fn member(obj: Obj, key: &[u8]) -> Option<(u8, Slot)> {
    Some(match (obj, key) {
        (Obj::Chunk, b"id") => (0, Slot::Text),
        (Obj::Chunk, b"model") => (1, Slot::Text),
        (Obj::Chunk, b"created") => (2, Slot::Int),
        (Obj::Chunk, b"choices") => (3, Slot::Choices),
        (Obj::Chunk, b"usage") => (4, Slot::Usage),
        (Obj::Chunk, b"error") => (5, Slot::Error),
        (Obj::Choice, b"delta") => (0, Slot::Delta),
        (Obj::Choice, b"finish_reason") => (1, Slot::Finish),
        (Obj::Delta, b"content") => (0, Slot::Text),
        (Obj::Delta, b"reasoning_content") => (1, Slot::Text),
        (Obj::Delta, b"tool_calls") => (2, Slot::ToolCalls),
        (Obj::Tool, b"function") => (0, Slot::Function),
        (Obj::Function, b"arguments") => (0, Slot::Text),
        _ => return None,
    })
}

/// Whether a value starting with byte `c` has the type the translator reads at `slot`
/// (a number at `Int` is checked further).
fn fits(slot: Slot, c: u8) -> bool {
    match slot {
        Slot::Any | Slot::Usage | Slot::Error => true,
        Slot::Finish => c == b'"' || c == b'n',
        Slot::Top | Slot::Choice | Slot::Tool => c == b'{',
        Slot::Delta | Slot::Function => c == b'{' || c == b'n',
        Slot::Choices => c == b'[',
        Slot::ToolCalls => c == b'[' || c == b'n',
        Slot::Text => c == b'"' || c == b'n',
        Slot::Int => c == b'n' || c == b'-' || c.is_ascii_digit(),
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    facts: Facts,
    /// The spans of string values' contents.
    strings: &'a mut Vec<(usize, usize)>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    /// RFC 8259 whitespace: space, tab, line feed, carriage return (nothing else).
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// The value at `i`, which sits at `slot` inside `depth` arrays and objects.
    fn value(&mut self, slot: Slot, depth: usize) -> Option<()> {
        let c = self.peek()?;
        self.facts.typed &= fits(slot, c);
        if c != b'n' {
            match slot {
                Slot::Usage => self.facts.usage = true,
                Slot::Error => self.facts.error = true,
                Slot::Finish => self.facts.finish = true,
                _ => {}
            }
        }
        match c {
            b'{' => {
                let obj = match slot {
                    Slot::Top => {
                        self.facts.object = true;
                        Obj::Chunk
                    }
                    Slot::Choice => Obj::Choice,
                    Slot::Delta => Obj::Delta,
                    Slot::Tool => Obj::Tool,
                    Slot::Function => Obj::Function,
                    _ => Obj::Other,
                };
                self.object(obj, depth + 1)
            }
            b'[' => {
                let element = match slot {
                    Slot::Choices => Slot::Choice,
                    Slot::ToolCalls => Slot::Tool,
                    _ => Slot::Any,
                };
                self.array(element, depth + 1)
            }
            b'"' => {
                let (start, _) = self.string()?;
                self.strings.push((start, self.i - 1));
                Some(())
            }
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'-' | b'0'..=b'9' => {
                let int = self.number()?;
                self.facts.typed &= slot != Slot::Int || int;
                Some(())
            }
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if !self.b[self.i..].starts_with(word) {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// The object at `i` (its `{`), of kind `obj`, at nesting `depth`.
    fn object(&mut self, obj: Obj, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.eat(b'}') {
            return Some(());
        }
        // The known members seen so far, one bit each.
        let mut seen = 0u8;
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let (start, escaped) = self.string()?;
            let slot = if obj == Obj::Other {
                Slot::Any
            } else if escaped {
                // serde matches a key after decoding it (`"us\u0061ge"` is `usage`): not
                // worth decoding here, the translator's full parse reads such a chunk.
                self.facts.typed = false;
                Slot::Any
            } else {
                match member(obj, &self.b[start..self.i - 1]) {
                    Some((bit, slot)) => {
                        // serde refuses a known member twice.
                        self.facts.typed &= seen & (1 << bit) == 0;
                        seen |= 1 << bit;
                        slot
                    }
                    None => Slot::Any,
                }
            };
            self.ws();
            if !self.eat(b':') {
                return None;
            }
            self.ws();
            self.value(slot, depth)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The array at `i` (its `[`), whose elements sit at `element`, at nesting `depth`.
    fn array(&mut self, element: Slot, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.eat(b']') {
            return Some(());
        }
        loop {
            self.value(element, depth)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The string at `i` (its opening quote): where its contents start, and whether they
    /// hold an escape. `i` ends past the closing quote.
    fn string(&mut self) -> Option<(usize, bool)> {
        let start = self.i + 1;
        let (end, escaped, lone) = string_contents(self.b, start)?;
        self.facts.lone_surrogate |= lone;
        self.i = end + 1;
        Some((start, escaped))
    }

    /// The number at `i` (RFC 8259 §6): whether serde_json reads it as an i64 (an
    /// integer of at most 18 digits, which always fits, and not `-0`, which it reads as
    /// a float).
    fn number(&mut self) -> Option<bool> {
        let negative = self.eat(b'-');
        let digits = self.i;
        match self.peek()? {
            b'0' => self.i += 1, // no leading zeros: a digit after it ends the number
            b'1'..=b'9' => self.digits(),
            _ => return None,
        };
        let mut int = self.i - digits <= 18 && !(negative && self.b[digits] == b'0');
        if self.eat(b'.') {
            int = false;
            if !self.at_least_one_digit() {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            int = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !self.at_least_one_digit() {
                return None;
            }
        }
        Some(int)
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> bool {
        let start = self.i;
        self.digits();
        self.i > start
    }
}

/// The contents of a string starting at `start` (past its opening quote): where its
/// closing quote is, whether it holds an escape, and whether a lone surrogate escape.
fn string_contents(b: &[u8], start: usize) -> Option<(usize, bool, bool)> {
    let mut i = start;
    let (mut escaped, mut lone, mut non_ascii) = (false, false, false);
    loop {
        let (n, high) = plain_run(b.get(i..)?);
        i += n;
        non_ascii |= high;
        match *b.get(i)? {
            b'"' => break,
            b'\\' => {
                escaped = true;
                let (len, l) = escape(b, i)?;
                i += len;
                lone |= l;
            }
            _ => return None, // a control character, which must be escaped
        }
    }
    // Escapes are ASCII, so checking the raw contents at once is the same as checking the
    // runs between them; an all-ASCII string needs no check at all.
    if non_ascii && std::str::from_utf8(&b[start..i]).is_err() {
        return None;
    }
    Some((i, escaped, lone))
}

/// The escape at `at` (its backslash): its length, and whether it is a lone surrogate.
fn escape(b: &[u8], at: usize) -> Option<(usize, bool)> {
    match *b.get(at + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some((2, false)),
        b'u' => match hex4(b, at + 2)? {
            // A leading surrogate is whole only with a trailing one right after it;
            // anything else is left for the string loop to read.
            0xD800..=0xDBFF => {
                if b[at + 6..].starts_with(b"\\u")
                    && matches!(hex4(b, at + 8), Some(0xDC00..=0xDFFF))
                {
                    Some((12, false))
                } else {
                    Some((6, true))
                }
            }
            0xDC00..=0xDFFF => Some((6, true)),
            _ => Some((6, false)),
        },
        _ => None,
    }
}

/// The four hex digits at `at`, as a UTF-16 code unit.
fn hex4(b: &[u8], at: usize) -> Option<u16> {
    let digits = b.get(at..at + 4)?;
    digits.iter().try_fold(0u16, |n, &d| {
        Some(n << 4 | (d as char).to_digit(16)? as u16)
    })
}

/// How many bytes at the start of `s` may stand in a string as they are (not `"`, `\` or
/// a control character), and whether any of those is non-ASCII. Eight bytes at a time:
/// this is where a chunk's bytes mostly are.
fn plain_run(s: &[u8]) -> (usize, bool) {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let mut high = 0u64;
    let mut words = s.chunks_exact(8);
    for (k, word) in words.by_ref().enumerate() {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        // The high bit of each byte below 0x20 or equal to `"` or `\` (a byte that
        // borrows in a subtraction may also flag the bytes above it, never below: the
        // lowest flag is exact). `& !w` keeps bytes >= 0x80 out.
        let stop =
            (w.wrapping_sub(ONES * 0x20) | quote.wrapping_sub(ONES) | backslash.wrapping_sub(ONES))
                & !w
                & HIGH;
        if stop != 0 {
            let at = stop.trailing_zeros() as usize / 8;
            high |= w & HIGH & ((1u64 << (8 * at)) - 1);
            return (8 * k + at, high != 0);
        }
        high |= w & HIGH;
    }
    let mut n = s.len() - words.remainder().len();
    for &c in words.remainder() {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        high |= u64::from(c & 0x80);
        n += 1;
    }
    (n, high != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(json: &str) -> Facts {
        scan(json.as_bytes()).unwrap_or_else(|| panic!("valid: {json}"))
    }

    fn invalid(json: &[u8]) {
        assert_eq!(
            scan(json),
            None,
            "invalid: {}",
            String::from_utf8_lossy(json)
        );
    }

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    const PLAIN: &str = r#"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}"#;

    #[test]
    fn plain_chunk() {
        let f = facts(PLAIN);
        assert!(f.object && f.typed);
        assert!(!f.error && !f.usage && !f.finish && !f.lone_surrogate);
    }

    #[test]
    fn reports_error_usage_and_finish_only_when_not_null() {
        assert!(facts(r#"{"error":{"message":"boom"}}"#).error);
        assert!(facts(r#"{"error":"boom"}"#).error);
        assert!(!facts(r#"{"error":null}"#).error);
        assert!(facts(r#"{"choices":[],"usage":{"total_tokens":4}}"#).usage);
        assert!(!facts(r#"{"usage":null}"#).usage);
        assert!(facts(r#"{"choices":[{"finish_reason":null},{"finish_reason":"stop"}]}"#).finish);
        assert!(!facts(r#"{"choices":[{"finish_reason":null},{}]}"#).finish);
    }

    #[test]
    fn reports_members_only_where_they_are() {
        // In strings, in nested objects, or under other names: not the chunk's members.
        let f = facts(
            r#"{"choices":[{"delta":{"content":"\"finish_reason\":\"stop\", \"usage\":1"},"x":{"finish_reason":"stop"}}],"meta":{"usage":{},"error":1},"errors":1}"#,
        );
        assert!(f.object && f.typed);
        assert!(!f.finish && !f.usage && !f.error);
        assert!(!facts(r#"{"x":{"choices":[{"finish_reason":"stop"}]}}"#).finish);
        assert!(!facts(r#"[{"usage":1,"error":1}]"#).usage);
    }

    #[test]
    fn non_objects_are_valid_but_not_objects() {
        for json in [
            "4",
            "\"x\"",
            "[]",
            "null",
            "true",
            "false",
            "-0.5e+3",
            " [1, {}] ",
        ] {
            let f = facts(json);
            assert!(!f.object, "{json}");
            assert!(!f.typed, "{json}");
        }
        assert!(facts("{}").object);
        assert!(facts(" \t\r\n{}\n").object);
    }

    #[test]
    fn reports_members_of_unexpected_types() {
        for json in [
            r#"{"id":5}"#,
            r#"{"model":{}}"#,
            r#"{"created":"5"}"#,
            r#"{"created":1.0}"#,
            r#"{"created":1e3}"#,
            r#"{"created":-0}"#,
            r#"{"created":1234567890123456789}"#,
            r#"{"choices":null}"#,
            r#"{"choices":{}}"#,
            r#"{"choices":[null]}"#,
            r#"{"choices":[[]]}"#,
            r#"{"choices":[{"delta":[]}]}"#,
            r#"{"choices":[{"delta":{"content":1}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":true}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":{}}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[null]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":"f"}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":{}}}]}}]}"#,
            r#"{"id":"a","id":"b"}"#,
            r#"{"usage":null,"usage":null}"#,
            r#"{"choices":[{"delta":null,"delta":null}]}"#,
            r#"{"choices":[{"finish_reason":1}]}"#,
            r#"{"choices":[{"finish_reason":{}}]}"#,
            r#"{"i\u0064":"a"}"#,
        ] {
            assert!(!facts(json).typed, "{json}");
        }
        for json in [
            r#"{"id":null,"model":null,"created":null,"choices":[]}"#,
            r#"{"created":-123456789012345678,"choices":[{"delta":null}]}"#,
            r#"{"created":0,"choices":[{"delta":{"content":null,"tool_calls":null}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":null},{"function":{"arguments":"{}"}}]}}]}"#,
            r#"{"x":{"id":1,"id":2,"i\u0064":3},"choices":[{"delta":{"x":{"content":5}}}]}"#,
        ] {
            assert!(facts(json).typed, "{json}");
        }
    }

    #[test]
    fn strings() {
        assert!(!facts(r#""\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00""#).lone_surrogate);
        assert!(!facts("\"caf\u{e9} \u{1F600} \u{7f}\"").lone_surrogate);
        // Lone surrogates are valid JSON text (RFC 8259 §8.2), and reported.
        for json in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\ud800\ud800\udc00""#,
            r#""\ud800\ud800""#,
            r#""\udbff\ue000""#,
            r#""\ud800x""#,
        ] {
            assert!(facts(json).lone_surrogate, "{json}");
        }
        for json in [
            &b"\"abc"[..],
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"\\u12G4\"",
            b"\"\\",
            b"\"\\ud800\\u",
            b"\"a\x01\"",
            b"\"a\nb\"",
            b"\"\xff\"",
            b"\"\xc3\"",
            b"\"\xe2\x82\"",
            b"\"\xed\xa0\x80\"", // an encoded surrogate is not UTF-8
            b"\"\xc3\\n\"",
            b"'a'",
        ] {
            invalid(json);
        }
    }

    #[test]
    fn long_strings_across_words() {
        for len in 0..40 {
            for at in 0..len {
                let mut s = "a".repeat(len);
                s.replace_range(at..at + 1, "\u{1}");
                invalid(format!("\"{s}\"").as_bytes());
                let mut s = "a".repeat(len);
                s.replace_range(at..at + 1, "\u{e9}");
                facts(&format!("[\"{s}\",\"{s}\"]"));
                let mut b = format!("\"{}\"", "a".repeat(len)).into_bytes();
                b[at + 1] = 0x80;
                invalid(&b);
            }
        }
    }

    #[test]
    fn numbers() {
        for json in [
            "0",
            "-0",
            "1",
            "-1",
            "10",
            "0.5",
            "1e5",
            "1E+5",
            "1e-5",
            "-12.34e56",
        ] {
            facts(json);
        }
        for json in [
            "01", "-01", "00", "1.", ".5", "+1", "-", "1e", "1e+", "1.e5", "0x1", "1_0", "NaN",
            "Infinity", "[01]", "[1.]",
        ] {
            invalid(json.as_bytes());
        }
    }

    #[test]
    fn structure() {
        for json in [
            "",
            " ",
            "{",
            "}",
            "[",
            "[1",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{,}",
            "{1:2}",
            "{\"a\" 1}",
            "{\"a\":1 \"b\":2}",
            "nul",
            "nulll",
            "truee",
            "{} {}",
            "{}x",
            "{}\u{c}",
            "\u{c}{}",
            "{\"a\":1}}",
            "[]]",
        ] {
            invalid(json.as_bytes());
        }
        for cut in 0..PLAIN.len() {
            invalid(&PLAIN.as_bytes()[..cut]);
        }
    }

    #[test]
    fn depth_128_is_valid_and_129_is_not() {
        assert!(scan(nested(MAX_DEPTH).as_bytes()).is_some());
        invalid(nested(MAX_DEPTH + 1).as_bytes());
        let objects = |d: usize| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d));
        assert!(scan(objects(MAX_DEPTH).as_bytes()).is_some());
        invalid(objects(MAX_DEPTH + 1).as_bytes());
        // Far deeper: refused without exhausting the stack.
        invalid(nested(1_000_000).as_bytes());
    }

    #[test]
    fn stream_scanner_reads_only_changed_strings_and_says_what_scan_says() {
        let base = r#"{"id":"c1","obfuscation":"abc","choices":[{"delta":{"content":"hi"},"finish_reason":null}]}"#;
        let with = |from: &str, to: &[u8]| -> Vec<u8> {
            let at = base.find(from).unwrap();
            [
                &base.as_bytes()[..at],
                to,
                &base.as_bytes()[at + from.len()..],
            ]
            .concat()
        };
        let cases = [
            // Other string values: the template's facts, read from the new strings only.
            with(
                "hi",
                &[&br#"h\u00e9llo \"you\" \ud83d\ude00 "#[..], b"caf\xc3\xa9"].concat(),
            ),
            with("abc", b"abcdefghijklmnopqrstuvwxyz"),
            with("\"hi\"", b"\"\""),
            with("hi", br"\ud800"),
            with("hi", br"\udc00x"),
            // Broken strings.
            with("hi", br"\u12"),
            with("hi", br"a\x"),
            with("hi", b"a\x01b"),
            with("hi", b"h\xff"),
            with("hi\"}", b"hi"),
            with("\"hi\"", b"\"h"),
            // Text that ends the string early and goes on as JSON is not a string.
            with(
                "hi",
                br#"x"}}],"usage":{"total_tokens":1},"choices":[{"delta":{"content":"y"#,
            ),
            with("\"hi\"", br#""x"],"usage":{},"z":["y""#),
            // Anything else that differs: a key, a value of another type, the end.
            with("content", b"contenu"),
            with("\"hi\"", b"5"),
            with("null", b"\"stop\""),
            with("}]}", b"}]} "),
            with("}]}", b"}]"),
            with("\"c1\"", b"\"c1\"\"c2\""),
            with("\"id\"", br#""i\u0064""#),
            base.as_bytes().to_vec(),
        ];
        for json in &cases {
            let mut s = StreamScanner::default();
            assert_eq!(s.scan(base.as_bytes()), scan(base.as_bytes()));
            assert_eq!(
                s.scan(json),
                scan(json),
                "{}",
                String::from_utf8_lossy(json)
            );
        }
        assert!(scan(&cases[0]).is_some());
        assert!(scan(&cases[3]).unwrap().lone_surrogate);
        assert!(scan(&cases[11]).unwrap().usage);
        // A lone surrogate never becomes the template; an invalid chunk leaves it as it was.
        let mut s = StreamScanner::default();
        s.scan(base.as_bytes());
        assert_eq!(s.scan(b"{not json"), None);
        s.scan(&cases[3]);
        assert_eq!(s.template, base.as_bytes());
    }
}
