//! One pass over a JSON text that checks it is valid and tells a `Reader` what it meets and
//! where, building nothing. A serde parse of an upstream's JSON (borrowed strings, UTF-8
//! checks, struct visitors) costs far more than reading its bytes once; the stream chunk
//! scanner (`json_scan`) and the verbatim answer check (`completion_scan`) are readers.
//!
//! `walk` accepts exactly the JSON texts of RFC 8259 (strings valid UTF-8 and properly
//! escaped, numbers well-formed, only whitespace after the value), nested at most
//! `MAX_DEPTH` deep, unless the reader stops it. The recursion is bounded by that depth, so
//! hostile input cannot overflow the stack.

/// How deep arrays and objects may nest (the top-level value counts as 1). serde_json
/// stops one level short of this (it refuses 128) where it builds values, and has no limit
/// where it skips them (unknown members, `RawValue`s); real upstream JSON nests under 10.
pub const MAX_DEPTH: usize = 128;

/// A string token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Str {
    /// Where its contents start (past the opening quote).
    pub start: usize,
    /// Where they end (at the closing quote).
    pub end: usize,
    /// They hold an escape.
    pub escaped: bool,
    /// A `\u` escape of half a UTF-16 surrogate pair without its other half: valid JSON
    /// text, but serde_json refuses to decode such a string into a Rust string.
    pub lone_surrogate: bool,
}

/// A number token (RFC 8259 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Number {
    pub negative: bool,
    /// Where the digits of its integer part start and end.
    pub int_start: usize,
    pub int_end: usize,
    /// It has a fraction or an exponent.
    pub fraction_or_exponent: bool,
}

impl Number {
    /// Its absolute value, when it is an integer (no fraction, no exponent) within a u64.
    pub fn magnitude(&self, json: &[u8]) -> Option<u64> {
        if self.fraction_or_exponent {
            return None;
        }
        json[self.int_start..self.int_end]
            .iter()
            .try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
    }
}

/// What one reading makes of the values of a JSON text, told them in order. Any `None`
/// stops the walk, which then says `None` too.
pub trait Reader {
    /// Where a value sits, as far as this reading goes (which member of which object).
    type Place: Copy;
    /// What the reading keeps while the members of one object go by.
    type Members;

    /// A value at `place` starts at `at` with byte `first` (nothing of it read yet).
    fn value(&mut self, place: Self::Place, first: u8, at: usize) -> Option<()>;
    /// An object at `place` starts: what to keep for its members.
    fn object(&mut self, place: Self::Place) -> Self::Members;
    /// One of its members is named `key` (a key is a string token): where its value sits.
    fn member(&mut self, members: &mut Self::Members, key: Str, json: &[u8])
        -> Option<Self::Place>;
    /// The object at `place` ends just before `end`.
    fn end_object(&mut self, place: Self::Place, members: Self::Members, end: usize) -> Option<()>;
    /// An array at `place` starts: where its elements sit.
    fn array(&mut self, place: Self::Place) -> Self::Place;
    /// A string value (not a key).
    fn string(&mut self, place: Self::Place, s: Str, json: &[u8]) -> Option<()>;
    fn number(&mut self, place: Self::Place, n: Number, json: &[u8]) -> Option<()>;
}

/// Walks the JSON text `json`, whose value sits at `top`, telling `reader` what it meets:
/// how deep its arrays and objects nest (0 for a scalar), or `None` when it is not one valid
/// JSON text or the reader stopped.
pub fn walk<R: Reader>(json: &[u8], top: R::Place, reader: &mut R) -> Option<usize> {
    let mut w = Walker {
        b: json,
        i: 0,
        deepest: 0,
        reader,
    };
    w.ws();
    w.value(top, 0)?;
    w.ws();
    (w.i == json.len()).then_some(w.deepest)
}

struct Walker<'a, R> {
    b: &'a [u8],
    i: usize,
    /// The deepest nesting met so far.
    deepest: usize,
    reader: &'a mut R,
}

impl<R: Reader> Walker<'_, R> {
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

    /// The value at `i`, which sits at `place` inside `depth` arrays and objects. Inlined
    /// into the loops of `object` and `array`, which alone recurse: most values are
    /// scalars, read without a call.
    #[inline(always)]
    fn value(&mut self, place: R::Place, depth: usize) -> Option<()> {
        let c = self.peek()?;
        self.reader.value(place, c, self.i)?;
        match c {
            b'{' => self.object(place, depth + 1),
            b'[' => self.array(place, depth + 1),
            b'"' => {
                let s = self.string()?;
                self.reader.string(place, s, self.b)
            }
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'-' | b'0'..=b'9' => {
                let n = self.number()?;
                self.reader.number(place, n, self.b)
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

    /// The object at `i` (its `{`), at `place`, at nesting `depth`.
    #[inline(never)]
    fn object(&mut self, place: R::Place, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.deepest = self.deepest.max(depth);
        let mut members = self.reader.object(place);
        self.i += 1;
        self.ws();
        if !self.eat(b'}') {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                let key = self.string()?;
                let at = self.reader.member(&mut members, key, self.b)?;
                self.ws();
                if !self.eat(b':') {
                    return None;
                }
                self.ws();
                self.value(at, depth)?;
                self.ws();
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        self.ws();
                    }
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.reader.end_object(place, members, self.i)
    }

    /// The array at `i` (its `[`), at `place`, at nesting `depth`.
    #[inline(never)]
    fn array(&mut self, place: R::Place, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.deepest = self.deepest.max(depth);
        let element = self.reader.array(place);
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

    /// The string at `i` (its opening quote); `i` ends past the closing quote.
    fn string(&mut self) -> Option<Str> {
        let start = self.i + 1;
        let (end, escaped, lone_surrogate) = string_contents(self.b, start)?;
        self.i = end + 1;
        Some(Str {
            start,
            end,
            escaped,
            lone_surrogate,
        })
    }

    /// The number at `i` (RFC 8259 §6).
    fn number(&mut self) -> Option<Number> {
        let negative = self.eat(b'-');
        let int_start = self.i;
        match self.peek()? {
            b'0' => self.i += 1, // no leading zeros: a digit after it ends the number
            b'1'..=b'9' => self.digits(),
            _ => return None,
        };
        let int_end = self.i;
        let mut fraction_or_exponent = false;
        if self.eat(b'.') {
            fraction_or_exponent = true;
            if !self.at_least_one_digit() {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            fraction_or_exponent = true;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !self.at_least_one_digit() {
                return None;
            }
        }
        Some(Number {
            negative,
            int_start,
            int_end,
            fraction_or_exponent,
        })
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
#[inline(always)]
pub fn string_contents(b: &[u8], start: usize) -> Option<(usize, bool, bool)> {
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
/// a control character), and whether any of those may be non-ASCII (it may also say so of
/// bytes just past them, which only costs a needless UTF-8 check). Eight bytes at a time:
/// this is where an answer's bytes mostly are.
#[inline(always)]
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
        high |= w;
        if stop != 0 {
            return (8 * k + stop.trailing_zeros() as usize / 8, high & HIGH != 0);
        }
    }
    let mut n = s.len() - words.remainder().len();
    for &c in words.remainder() {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        high |= u64::from(c & 0x80);
        n += 1;
    }
    (n, high & HIGH != 0)
}
