//! `semantic`: the condensation model reads the history and the current request and keeps
//! only the facts the request needs; everything before the current instruction is replaced
//! by them.

use super::model::{note, older, transcript, Asker, CondenseError};
use super::turns::{last_user, rebuild, split};
use crate::api::openai::Message;

pub async fn condense(
    asker: &Asker<'_>,
    prompt: &str,
    messages: &[Message],
) -> Result<Vec<Message>, CondenseError> {
    let s = split(messages, 0);
    if s.older.is_empty() {
        return Err(CondenseError::NothingToCondense);
    }
    let current = last_user(messages)
        .map(|i| messages[i].text())
        .unwrap_or_default();
    let user = format!(
        "{}\n<aisbf_current_request>\n{current}\n</aisbf_current_request>",
        transcript(older(messages, &s.older))
    );
    let facts = asker.ask(prompt, user).await?;
    let inserted = if facts.trim_matches(|c: char| !c.is_alphanumeric()) == "NONE" {
        Vec::new()
    } else {
        vec![note(format!(
            "Facts from the earlier conversation relevant to the current request (selected by aisbf):\n{facts}"
        ))]
    };
    Ok(rebuild(messages, s.tail_start, inserted))
}
