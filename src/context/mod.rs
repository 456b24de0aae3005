//! Context management: count what goes upstream, condense it when it passes the threshold.

pub mod tokens;

use crate::api::openai::ChatRequest;
use crate::config::ProviderConfig;
use crate::state::AppState;

/// Prepares `req` for `provider`/`model` and returns its effective context: the prompt
/// tokens of the messages that will actually be sent.
pub async fn prepare(
    state: &AppState,
    req: &mut ChatRequest,
    _provider: &ProviderConfig,
    model: &str,
) -> u64 {
    state.tokens.count_messages(model, &req.messages)
}
