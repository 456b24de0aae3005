//! What an ingress stream state machine reads of a canonical `chat.completion.chunk`: one
//! lenient typed view (absent fields default) that the Messages and the Responses
//! translators both parse each chunk into, so neither walks a JSON tree per delta.

use serde::Deserialize;

use crate::api::openai::{FunctionDelta, Usage};

#[derive(Deserialize)]
pub struct Chunk {
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub delta: ChunkDelta,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ChunkDelta {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    /// Reasoning upstreams' thinking, as the canonical chunks carry it.
    #[serde(default)]
    pub reasoning_content: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolDelta>>,
}

/// One streamed tool-call fragment; `index` says which call it continues.
#[derive(Deserialize)]
pub struct ToolDelta {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionDelta>,
}
