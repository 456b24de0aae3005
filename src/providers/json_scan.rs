//! One pass over an OpenAI stream chunk that checks it is JSON and tells the translator
//! what it needs to know, without building anything: most chunks of an answer are plain
//! content deltas forwarded as they are, and a serde parse of each (borrowed strings,
//! UTF-8 checks, struct visitors) was most of a stream request's work.
//!
//! `scan` accepts exactly the JSON texts `json_walk` accepts: those of RFC 8259 nested at
//! most `MAX_DEPTH` deep (serde_json refuses 128 levels, which only sends such a chunk
//! down the translator's full parse; real chunks nest 6 deep).
//!
//! A chunk scanned in full also gives its `Head` (id, model, time, usage counts), so the
//! first chunk of an answer and its usage report need no serde parse either.

pub use super::json_walk::MAX_DEPTH;
use super::json_walk::{string_contents, walk, Number, Reader, Str};

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
    /// Some element of `choices` is an object (a choice the translator reads).
    pub choice: bool,
    /// Arrays and objects nest `MAX_DEPTH` deep: serde_json refuses to build a value that
    /// deep (it only skips one), so a part of such a chunk parsed alone may succeed where
    /// the whole chunk's parse fails.
    pub deep: bool,
}

/// What the translator reads of a chunk beyond its facts, where the facts say `typed`:
/// found by the same pass, in the chunk it was scanned from (positions are into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// `id` and `model`, when strings (not missing or null).
    pub id: Option<Str>,
    pub model: Option<Str>,
    /// `created`, 0 when missing or null.
    pub created: i64,
    /// The `usage` member, when an object.
    pub usage: Option<UsageObject>,
}

/// Where a chunk's `usage` object is, and what it says when it is only counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageObject {
    /// Where its `{` is, and past its `}`.
    pub start: usize,
    pub end: usize,
    /// Its counts as serde reads them into `Usage`, when it has no other members (its
    /// `extra` is then empty), none twice, no key spelled with an escape, each count an
    /// integer within u64 and `effective_context` one or null. Otherwise only a serde parse
    /// of the object says what it is (or that it is not a `Usage`).
    pub counts: Option<Counts>,
}

/// The members of `Usage` it reads itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub effective_context: Option<u64>,
}

/// The facts of `json`, or `None` when it is not one valid JSON text.
pub fn scan(json: &[u8]) -> Option<Facts> {
    scan_head(json).map(|(facts, _)| facts)
}

/// The facts of `json` and its head, or `None` when it is not one valid JSON text.
pub fn scan_head(json: &[u8]) -> Option<(Facts, Head)> {
    scan_recording(json, &mut Vec::new())
}

/// `scan_head`, also giving the spans of the contents of its string values (not keys), in
/// order.
fn scan_recording(json: &[u8], strings: &mut Vec<(usize, usize)>) -> Option<(Facts, Head)> {
    let mut reader = ChunkReader {
        facts: Facts {
            typed: true,
            ..Facts::default()
        },
        head: Head::default(),
        usage: UsageReading::default(),
        strings,
    };
    let deepest = walk(json, Slot::Top, &mut reader)?;
    reader.facts.deep = deepest >= MAX_DEPTH;
    Some((reader.facts, reader.head))
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
    /// The head of the last chunk scanned, when it was scanned in full.
    head: Option<Head>,
}

/// Longer chunks are scanned in full each time rather than copied.
const TEMPLATE_MAX: usize = 16 * 1024;

impl StreamScanner {
    /// What `scan` says of `json`, mostly cheaper.
    pub fn scan(&mut self, json: &[u8]) -> Option<Facts> {
        if !self.template.is_empty() {
            if let Some(lone_surrogate) = self.diff(json) {
                self.head = None;
                return Some(Facts {
                    lone_surrogate,
                    ..self.facts
                });
            }
        }
        self.scratch.clear();
        self.head = None;
        let (facts, head) = scan_recording(json, &mut self.scratch)?;
        self.head = Some(head);
        if !facts.lone_surrogate && json.len() <= TEMPLATE_MAX {
            self.template.clear();
            self.template.extend_from_slice(json);
            self.facts = facts;
            std::mem::swap(&mut self.strings, &mut self.scratch);
        }
        Some(facts)
    }

    /// The head of the chunk `scan` was last given, when it read that chunk in full (a
    /// chunk matched to the template has only the template's facts): the first chunks of
    /// an answer and its usage report mostly differ from the chunk before.
    pub fn head(&self) -> Option<Head> {
        self.head
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
    /// `content`, `reasoning_content`, `arguments`: a string or null.
    Text,
    /// `id` and `model`: a string or null, kept in the head.
    Id,
    Model,
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
    /// A member of `usage` that `Counts` holds: `prompt_tokens`, `completion_tokens`,
    /// `total_tokens` (integers within u64), `effective_context` (one or null).
    Count(u8),
}

/// The objects whose members the translator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Obj {
    Chunk,
    Choice,
    Delta,
    Tool,
    Function,
    Usage,
    Other,
}

/// A known member of `obj`: its bit (to catch it twice in one object) and its slot.
fn member(obj: Obj, key: &[u8]) -> Option<(u8, Slot)> {
    Some(match (obj, key) {
        (Obj::Chunk, b"id") => (0, Slot::Id),
        (Obj::Chunk, b"model") => (1, Slot::Model),
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
        (Obj::Usage, b"prompt_tokens") => (0, Slot::Count(0)),
        (Obj::Usage, b"completion_tokens") => (1, Slot::Count(1)),
        (Obj::Usage, b"total_tokens") => (2, Slot::Count(2)),
        (Obj::Usage, b"effective_context") => (3, Slot::Count(3)),
        _ => return None,
    })
}

/// Whether a value starting with byte `c` has the type the translator reads at `slot`
/// (a number at `Int` is checked further).
fn fits(slot: Slot, c: u8) -> bool {
    match slot {
        // `usage` is read by `UsageReading`, which may leave it to serde.
        Slot::Any | Slot::Usage | Slot::Error | Slot::Count(_) => true,
        Slot::Finish => c == b'"' || c == b'n',
        Slot::Top | Slot::Choice | Slot::Tool => c == b'{',
        Slot::Delta | Slot::Function => c == b'{' || c == b'n',
        Slot::Choices => c == b'[',
        Slot::ToolCalls => c == b'[' || c == b'n',
        Slot::Text | Slot::Id | Slot::Model => c == b'"' || c == b'n',
        Slot::Int => c == b'n' || c == b'-' || c.is_ascii_digit(),
    }
}

/// The chunk's reading: the facts and head so far, and the spans of string values' contents.
struct ChunkReader<'a> {
    facts: Facts,
    head: Head,
    usage: UsageReading,
    strings: &'a mut Vec<(usize, usize)>,
}

/// The reading of a `usage` object under way.
#[derive(Default)]
struct UsageReading {
    start: usize,
    counts: Counts,
    /// Nothing but counts so far (see `UsageObject::counts`).
    only_counts: bool,
}

impl UsageReading {
    /// Whether a value starting with byte `c` may be count `which` as `Counts` reads it
    /// (a number is checked further).
    fn fits(which: u8, c: u8) -> bool {
        c.is_ascii_digit() || (which == 3 && c == b'n')
    }

    /// Count `which` is `n`: serde reads a u64 from a non-negative integer only (`-0` and
    /// `1.0` are floats to it, and a larger integer too).
    fn count(&mut self, which: u8, n: Number, json: &[u8]) {
        let Some(v) = n.magnitude(json).filter(|_| !n.negative) else {
            self.only_counts = false;
            return;
        };
        let c = &mut self.counts;
        match which {
            0 => c.prompt_tokens = v,
            1 => c.completion_tokens = v,
            2 => c.total_tokens = v,
            _ => c.effective_context = Some(v),
        }
    }
}

impl Reader for ChunkReader<'_> {
    type Place = Slot;
    /// The kind of the object, and its known members seen so far, one bit each.
    type Members = (Obj, u8);

    fn value(&mut self, slot: Slot, first: u8, at: usize) -> Option<()> {
        self.facts.typed &= fits(slot, first);
        if first != b'n' {
            match slot {
                Slot::Usage => {
                    self.facts.usage = true;
                    self.usage = UsageReading {
                        start: at,
                        counts: Counts::default(),
                        only_counts: true,
                    };
                }
                Slot::Error => self.facts.error = true,
                Slot::Finish => self.facts.finish = true,
                _ => {}
            }
        }
        if let Slot::Count(which) = slot {
            self.usage.only_counts &= UsageReading::fits(which, first);
        }
        Some(())
    }

    fn object(&mut self, slot: Slot) -> (Obj, u8) {
        let obj = match slot {
            Slot::Top => {
                self.facts.object = true;
                Obj::Chunk
            }
            Slot::Choice => {
                self.facts.choice = true;
                Obj::Choice
            }
            Slot::Delta => Obj::Delta,
            Slot::Tool => Obj::Tool,
            Slot::Function => Obj::Function,
            Slot::Usage => Obj::Usage,
            _ => Obj::Other,
        };
        (obj, 0)
    }

    fn member(&mut self, (obj, seen): &mut (Obj, u8), key: Str, json: &[u8]) -> Option<Slot> {
        self.facts.lone_surrogate |= key.lone_surrogate;
        if *obj == Obj::Other {
            return Some(Slot::Any);
        }
        // Inside `usage`, what is not a count is left to serde (which may refuse it), as
        // the chunk's other members are left to the translator's full parse.
        let unread = if *obj == Obj::Usage {
            &mut self.usage.only_counts
        } else {
            &mut self.facts.typed
        };
        if key.escaped {
            // serde matches a key after decoding it (`"us\u0061ge"` is `usage`): not
            // worth decoding here.
            *unread = false;
            return Some(Slot::Any);
        }
        Some(match member(*obj, &json[key.start..key.end]) {
            Some((bit, slot)) => {
                // serde refuses a known member twice.
                *unread &= *seen & (1 << bit) == 0;
                *seen |= 1 << bit;
                slot
            }
            None => {
                // A member `Usage` keeps in its `extra`.
                if *obj == Obj::Usage {
                    *unread = false;
                }
                Slot::Any
            }
        })
    }

    fn end_object(&mut self, slot: Slot, _: (Obj, u8), end: usize) -> Option<()> {
        if slot == Slot::Usage {
            let u = &self.usage;
            self.head.usage = Some(UsageObject {
                start: u.start,
                end,
                counts: u.only_counts.then_some(u.counts),
            });
        }
        Some(())
    }

    fn array(&mut self, slot: Slot) -> Slot {
        match slot {
            Slot::Choices => Slot::Choice,
            Slot::ToolCalls => Slot::Tool,
            _ => Slot::Any,
        }
    }

    fn string(&mut self, slot: Slot, s: Str, _json: &[u8]) -> Option<()> {
        self.facts.lone_surrogate |= s.lone_surrogate;
        self.strings.push((s.start, s.end));
        match slot {
            Slot::Id => self.head.id = Some(s),
            Slot::Model => self.head.model = Some(s),
            _ => {}
        }
        Some(())
    }

    /// `created` must be a number serde_json reads as an i64: an integer of at most 18
    /// digits always fits, and `-0` it reads as a float.
    fn number(&mut self, slot: Slot, n: Number, json: &[u8]) -> Option<()> {
        match slot {
            Slot::Int => {
                let fits = !n.fraction_or_exponent
                    && n.int_end - n.int_start <= 18
                    && !(n.negative && json[n.int_start] == b'0');
                self.facts.typed &= fits;
                if let Some(m) = n.magnitude(json).filter(|_| fits) {
                    let m = m as i64; // below 10^18
                    self.head.created = if n.negative { -m } else { m };
                }
            }
            Slot::Count(which) => self.usage.count(which, n, json),
            _ => {}
        }
        Some(())
    }
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

    fn head(json: &str) -> Head {
        scan_head(json.as_bytes()).expect("valid").1
    }

    fn text(json: &str, s: Option<Str>) -> Option<&str> {
        s.map(|s| &json[s.start..s.end])
    }

    #[test]
    fn head_of_a_chunk() {
        let h = head(PLAIN);
        assert_eq!(
            (text(PLAIN, h.id), text(PLAIN, h.model)),
            (Some("c1"), Some("m"))
        );
        assert_eq!((h.created, h.usage), (5, None));
        let json = r#"{"model":"a\"b","id":null,"created":-123456789012345678,"choices":[{"delta":{"content":"c"}}],"x":{"id":"no"}}"#;
        let h = head(json);
        assert_eq!((h.id, text(json, h.model)), (None, Some(r#"a\"b"#)));
        assert!(h.model.unwrap().escaped);
        assert_eq!(h.created, -123456789012345678);
        assert_eq!(head(r#"{"created":null}"#).created, 0);
        assert!(facts(json).choice);
        assert!(!facts(r#"{"choices":[],"x":[{}]}"#).choice);
    }

    #[test]
    fn usage_counts_only_when_usage_reads_nothing_else() {
        let json = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":18446744073709551615,"effective_context":null}}"#;
        let u = head(json).usage.unwrap();
        assert_eq!(
            &json[u.start..u.end],
            &json[json.find("{\"p").unwrap()..json.len() - 1]
        );
        let counts = Counts {
            prompt_tokens: 3,
            completion_tokens: 0,
            total_tokens: u64::MAX,
            effective_context: None,
        };
        assert_eq!(u.counts, Some(counts));
        let with = |usage: &str| head(&format!(r#"{{"usage":{usage}}}"#)).usage;
        assert_eq!(with("{}").unwrap().counts, Some(Counts::default()));
        assert_eq!(
            with(r#"{"effective_context":7}"#)
                .unwrap()
                .counts
                .unwrap()
                .effective_context,
            Some(7)
        );
        for usage in [
            r#"{"prompt_tokens":-1}"#,
            r#"{"prompt_tokens":-0}"#,
            r#"{"prompt_tokens":1.0}"#,
            r#"{"prompt_tokens":1e2}"#,
            r#"{"prompt_tokens":18446744073709551616}"#,
            r#"{"prompt_tokens":null}"#,
            r#"{"prompt_tokens":"1"}"#,
            r#"{"prompt_tokens":1,"prompt_tokens":1}"#,
            r#"{"pr\u006fmpt_tokens":1}"#,
            r#"{"prompt_tokens_details":{"cached_tokens":1}}"#,
            r#"{"x":null}"#,
        ] {
            let u = with(usage).unwrap_or_else(|| panic!("{usage}"));
            assert_eq!(u.counts, None, "{usage}");
        }
        assert_eq!(with("null"), None);
        assert_eq!(with("[{}]"), None);
        assert_eq!(with("1"), None);
    }

    #[test]
    fn deep_is_reported() {
        let at = |d: usize| format!(r#"{{"usage":{{"x":{}}}}}"#, nested(d - 2));
        assert!(!facts(&at(MAX_DEPTH - 1)).deep);
        assert!(facts(&at(MAX_DEPTH)).deep);
    }

    #[test]
    fn stream_scanner_has_a_head_only_for_chunks_it_read_in_full() {
        let mut s = StreamScanner::default();
        s.scan(PLAIN.as_bytes());
        assert_eq!(s.head(), Some(head(PLAIN)));
        s.scan(PLAIN.replace("\"hi\"", "\"hello\"").as_bytes());
        assert_eq!(s.head(), None);
        s.scan(b"{not json");
        assert_eq!(s.head(), None);
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
