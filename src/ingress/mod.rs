//! Ingress APIs other than the canonical Chat Completions: each translates its client's
//! request to the canonical `ChatRequest`, and the canonical answer or chunk stream back, the
//! mirror image of what a provider does (design.md §3).

pub mod chunk;
pub mod messages;
pub mod responses;

/// A client request the gateway refuses before routing: answered 400 in the client's own
/// error shape, with a message that names the field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub String);
