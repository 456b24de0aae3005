//! `conversational`: the older turns (all but the last few) become one summary written by
//! the condensation model; system messages and the recent turns stay verbatim.

use super::model::{note, summarize_older, Asker, CondenseError};
use super::turns::rebuild;
use crate::api::openai::Message;

/// Non-system turns before the current instruction kept verbatim.
pub const KEEP_UNITS: usize = 4;

pub async fn condense(
    asker: &Asker<'_>,
    prompt: &str,
    messages: &[Message],
) -> Result<Vec<Message>, CondenseError> {
    let (s, summary) = summarize_older(asker, prompt, messages, KEEP_UNITS).await?;
    Ok(rebuild(
        messages,
        s.tail_start,
        vec![note(format!(
            "Summary of the earlier conversation (condensed by aisbf):\n{summary}"
        ))],
    ))
}
