//! What the property tests over bytes share: the case count, and byte-level mutations of
//! generated text.

use proptest::prelude::*;

/// `PROPTEST_CASES` when set (long runs), else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// `text` with one to three bytes changed, inserted or removed, or cut short; new bytes are
/// any byte or one of `tokens` (the characters that matter to a JSON reader).
pub fn mutated(
    text: impl Strategy<Value = Vec<u8>>,
    tokens: &'static [u8],
) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((0u8..4, any::<usize>(), any::<u8>()), 1..4);
    let byte = prop_oneof![any::<u8>(), prop::sample::select(tokens)];
    (text, edits, byte).prop_map(|(mut b, edits, with)| {
        for (how, at, byte) in edits {
            let at = if b.is_empty() { 0 } else { at % b.len() };
            let byte = if how % 2 == 0 { with } else { byte };
            match how {
                0 if !b.is_empty() => b[at] = byte,
                1 => b.insert(at, byte),
                2 if !b.is_empty() => {
                    b.remove(at);
                }
                _ => b.truncate(at),
            }
        }
        b
    })
}
