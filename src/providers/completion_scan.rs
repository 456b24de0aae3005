//! One pass over a non-stream OpenAI answer that decides whether it can go back to the
//! client byte for byte (see `completion`), and finds where its usage is.
//!
//! It decides what a serde parse into structs of the schema's required fields decided
//! (tests/prop_verbatim.rs holds that parse and checks the two agree): the answer must be
//! one JSON text whose top-level object has `id`, `object` (`"chat.completion"`), `created`
//! (an i64), `model`, non-empty `choices` and an object `usage` without the text
//! `effective_context`; each choice `index` (a u32), `message`, `finish_reason` (may be
//! null) and `logprobs` (any value, may be null); each message `role`, `content` and
//! `refusal` (both may be null), and maybe `tool_calls` (null, or objects with `id`, `type`
//! and `function` {`name`, `arguments`}); usage counts are u64s. Like serde it refuses a
//! known member twice in one object, matches a key spelled with escapes by what it decodes
//! to, refuses lone surrogate escapes in keys of those objects and in the strings it reads,
//! and lets anything else be anything. It is stricter than serde in three ways, each
//! sending the answer down the typed path, which is always right:
//! - an object of the schema written as an array of its fields in order (serde's derive
//!   takes that form; no upstream sends it, and `"usage":[…]` could not be spliced);
//! - invalid UTF-8 in strings serde only skips (unknown members outside `usage` and
//!   `logprobs`): it is not JSON text, and would be forwarded as it is;
//! - nesting deeper than `json_walk::MAX_DEPTH` in members serde skips (it has no limit).

use super::json_walk::{walk, Number, Reader, Str};

/// What the splice of `effective_context` needs, and the upstream's own counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Where the `usage` object's `{` is.
    pub usage_at: usize,
    /// Whether `usage` has no members.
    pub usage_empty: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// What the verbatim path needs of `body`, or `None` when it cannot go back as it is.
pub fn scan(body: &[u8]) -> Option<Found> {
    let mut reader = AnswerReader::default();
    walk(body, Place::Answer, &mut reader)?;
    let (usage_at, usage_end) = reader.usage?;
    if !reader.choices {
        return None;
    }
    // Another gateway's answer may already say effective_context: ours replaces it, and a
    // second key in one object is not something to send. Anywhere in usage's text, as the
    // serde version looked for it (a key spelled with escapes then gets through, as before).
    if mentions_effective_context(&body[usage_at..usage_end]) {
        return None;
    }
    let counts = reader.counts;
    Some(Found {
        usage_at,
        usage_empty: body[usage_at + 1..]
            .iter()
            .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            == Some(&b'}'),
        prompt_tokens: counts[0],
        completion_tokens: counts[1],
        total_tokens: counts[2],
    })
}

/// Whether `text` holds `effective_context`: found by its `f`, which no usage member
/// OpenAI sends has (`prompt_tokens`, `cached_tokens`, `reasoning_tokens`…).
fn mentions_effective_context(text: &[u8]) -> bool {
    memchr::memchr_iter(b'f', text).any(|at| text[at - 1..].starts_with(b"effective_context"))
}

/// Where a value sits in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Unknown members, and `logprobs`: any value.
    Any,
    /// The top-level value: the answer object.
    Answer,
    /// `id`, `model`, `role`, and a tool call's `id`, `type`, `name`, `arguments`: a string.
    Text,
    /// `content`, `refusal`, `finish_reason`: a string or null.
    TextOrNull,
    /// `object`: the string `chat.completion`.
    Kind,
    /// `created`: an integer within i64.
    Created,
    /// `choices`: an array of choice objects.
    Choices,
    Choice,
    /// A choice's `index`: an integer within u32.
    Index,
    Message,
    /// `tool_calls`: null or an array of tool call objects.
    ToolCalls,
    ToolCall,
    Function,
    Usage,
    /// `prompt_tokens`, `completion_tokens`, `total_tokens` (in that order): an integer
    /// within u64.
    Count(u8),
}

/// The objects whose members are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Obj {
    Answer,
    Choice,
    Message,
    ToolCall,
    Function,
    Usage,
    Other,
}

impl Obj {
    /// The members it must have, one bit each as `member` numbers them.
    fn required(self) -> u8 {
        match self {
            Obj::Answer => 0b11_1111,
            Obj::Choice => 0b1111,
            Obj::Message => 0b111,
            Obj::ToolCall => 0b111,
            Obj::Function => 0b11,
            Obj::Usage | Obj::Other => 0,
        }
    }
}

/// A known member of `obj`: its bit (to catch it twice, or missing) and where it sits.
#[inline(always)]
fn member(obj: Obj, key: &[u8]) -> Option<(u8, Place)> {
    Some(match obj {
        Obj::Answer => match key {
            b"id" => (0, Place::Text),
            b"object" => (1, Place::Kind),
            b"created" => (2, Place::Created),
            b"model" => (3, Place::Text),
            b"choices" => (4, Place::Choices),
            b"usage" => (5, Place::Usage),
            _ => return None,
        },
        Obj::Choice => match key {
            b"index" => (0, Place::Index),
            b"message" => (1, Place::Message),
            b"finish_reason" => (2, Place::TextOrNull),
            b"logprobs" => (3, Place::Any),
            _ => return None,
        },
        Obj::Message => match key {
            b"role" => (0, Place::Text),
            b"content" => (1, Place::TextOrNull),
            b"refusal" => (2, Place::TextOrNull),
            b"tool_calls" => (3, Place::ToolCalls),
            _ => return None,
        },
        Obj::ToolCall => match key {
            b"id" => (0, Place::Text),
            b"type" => (1, Place::Text),
            b"function" => (2, Place::Function),
            _ => return None,
        },
        Obj::Function => match key {
            b"name" => (0, Place::Text),
            b"arguments" => (1, Place::Text),
            _ => return None,
        },
        Obj::Usage => match key {
            b"prompt_tokens" => (0, Place::Count(0)),
            b"completion_tokens" => (1, Place::Count(1)),
            b"total_tokens" => (2, Place::Count(2)),
            _ => return None,
        },
        Obj::Other => return None,
    })
}

/// Whether a value starting with byte `c` may stand at `place` (a number is checked
/// further, a string at `Kind` too).
fn fits(place: Place, c: u8) -> bool {
    match place {
        Place::Any => true,
        Place::Answer
        | Place::Choice
        | Place::Message
        | Place::ToolCall
        | Place::Function
        | Place::Usage => c == b'{',
        Place::Text | Place::Kind => c == b'"',
        Place::TextOrNull => c == b'"' || c == b'n',
        Place::Created | Place::Index | Place::Count(_) => c == b'-' || c.is_ascii_digit(),
        Place::Choices => c == b'[',
        Place::ToolCalls => c == b'[' || c == b'n',
    }
}

#[derive(Debug, Default)]
struct AnswerReader {
    /// Some choice object was met.
    choices: bool,
    /// Where the usage object starts (its `{`) and ends (past its `}`).
    usage: Option<(usize, usize)>,
    usage_at: usize,
    counts: [u64; 3],
}

impl Reader for AnswerReader {
    type Place = Place;
    /// The kind of the object, and its known members seen so far, one bit each.
    type Members = (Obj, u8);

    fn value(&mut self, place: Place, first: u8, at: usize) -> Option<()> {
        if place == Place::Usage {
            self.usage_at = at;
        }
        fits(place, first).then_some(())
    }

    fn object(&mut self, place: Place) -> (Obj, u8) {
        let obj = match place {
            Place::Answer => Obj::Answer,
            Place::Choice => {
                self.choices = true;
                Obj::Choice
            }
            Place::Message => Obj::Message,
            Place::ToolCall => Obj::ToolCall,
            Place::Function => Obj::Function,
            Place::Usage => Obj::Usage,
            _ => Obj::Other,
        };
        (obj, 0)
    }

    #[inline(always)]
    fn member(&mut self, (obj, seen): &mut (Obj, u8), key: Str, json: &[u8]) -> Option<Place> {
        if *obj == Obj::Other {
            return Some(Place::Any);
        }
        // serde decodes every key of a struct, and cannot decode a lone surrogate.
        if key.lone_surrogate {
            return None;
        }
        let known = if key.escaped {
            member(*obj, unescaped(json, key)?.as_bytes())
        } else {
            member(*obj, &json[key.start..key.end])
        };
        let Some((bit, place)) = known else {
            return Some(Place::Any);
        };
        // serde refuses a known member twice.
        if *seen & (1 << bit) != 0 {
            return None;
        }
        *seen |= 1 << bit;
        Some(place)
    }

    fn end_object(&mut self, place: Place, (obj, seen): (Obj, u8), end: usize) -> Option<()> {
        if place == Place::Usage {
            self.usage = Some((self.usage_at, end));
        }
        (seen & obj.required() == obj.required()).then_some(())
    }

    fn array(&mut self, place: Place) -> Place {
        match place {
            Place::Choices => Place::Choice,
            Place::ToolCalls => Place::ToolCall,
            _ => Place::Any,
        }
    }

    fn string(&mut self, place: Place, s: Str, json: &[u8]) -> Option<()> {
        match place {
            Place::Any => Some(()),
            // serde decodes these, and cannot decode a lone surrogate.
            _ if s.lone_surrogate => None,
            Place::Kind if s.escaped => (unescaped(json, s)? == "chat.completion").then_some(()),
            Place::Kind => (&json[s.start..s.end] == b"chat.completion").then_some(()),
            _ => Some(()),
        }
    }

    /// Integers as serde_json reads them: no fraction or exponent, within the range of the
    /// type (`-0` is a float to it, and an i64 reaches down to -2^63).
    fn number(&mut self, place: Place, n: Number, json: &[u8]) -> Option<()> {
        let fits = match place {
            Place::Any => return Some(()),
            Place::Created => {
                let magnitude = n.magnitude(json)?;
                if n.negative {
                    (1..=1 << 63).contains(&magnitude)
                } else {
                    magnitude <= i64::MAX as u64
                }
            }
            Place::Index => !n.negative && n.magnitude(json)? <= u64::from(u32::MAX),
            Place::Count(which) => {
                self.counts[usize::from(which)] = n.magnitude(json)?;
                !n.negative
            }
            _ => true,
        };
        fits.then_some(())
    }
}

/// A string's contents decoded, as serde would match them: rare enough (a key or `object`
/// spelled with escapes) that serde_json itself does it.
#[cold]
fn unescaped(json: &[u8], s: Str) -> Option<String> {
    serde_json::from_slice(&json[s.start - 1..=s.end]).ok()
}
