//! `conversational`: the older turns (all but the last few) become one summary written by
//! the condensation model; system messages and the recent turns stay verbatim.

use super::model::{note, older, transcript, Asker, CondenseError};
use super::turns::{rebuild, split};
use crate::api::openai::Message;

/// Non-system turns before the current instruction kept verbatim.
pub const KEEP_UNITS: usize = 4;

pub async fn condense(
    asker: &Asker<'_>,
    prompt: &str,
    messages: &[Message],
) -> Result<Vec<Message>, CondenseError> {
    let s = split(messages, KEEP_UNITS);
    if s.older.is_empty() {
        return Err(CondenseError::NothingToCondense);
    }
    let summary = asker
        .ask(prompt, transcript(older(messages, &s.older)))
        .await?;
    Ok(rebuild(
        messages,
        s.tail_start,
        vec![note(format!(
            "Summary of the earlier conversation (condensed by aisbf):\n{summary}"
        ))],
    ))
}
