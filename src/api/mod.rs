//! Wire types. The canonical format inside the gateway is OpenAI Chat Completions.

pub mod anthropic;
pub mod native;
pub mod openai;
mod openai_de;
pub mod responses;
