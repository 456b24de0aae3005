//! A client's request in its own (non-canonical) wire format, carried next to the canonical
//! `ChatRequest` so that a candidate whose provider speaks that format natively gets the
//! body as the client sent it (design.md §3: "the body and events pass through as bytes").

use bytes::Bytes;

/// The ingress formats a provider may speak natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeFormat {
    /// Anthropic Messages API (`POST /v1/messages`), spoken by `type: anthropic`.
    AnthropicMessages,
    /// OpenAI Responses API (`POST /v1/responses`), spoken by `type: openai` providers that
    /// say `"responses": true`.
    OpenAiResponses,
}

/// The client's body and the headers of its own protocol that go upstream with it.
#[derive(Debug, Clone)]
pub struct NativeRequest {
    pub format: NativeFormat,
    /// The JSON body exactly as received; only `model` is replaced on the way upstream.
    pub body: Bytes,
    /// Protocol headers to forward (`anthropic-version`, `anthropic-beta`), lower-case names.
    /// Never auth headers: the upstream gets the provider's configured key.
    pub headers: Vec<(String, String)>,
    pub stream: bool,
}

impl NativeRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
