//! The Chat Completions routes served straight from the connection's service, without the
//! router: the hot path of the gateway. Routing, extractors, boxing and the sensitive-headers
//! layer cost ~20k instructions per request there (callgrind), a fifth of the whole.
//!
//! Only `POST` on the exact paths is taken (the table next to `router()` in mod.rs); every
//! other request, and every other method on these paths (405), goes to the router, which
//! keeps these routes as the reference. The answers are the router's: the handlers'
//! logic is shared (`handlers::chat_v1`, `handlers::chat_provider`), the body limit is the
//! same `limits.max_body_bytes`, and gateway auth is the same `auth::refusal`.

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, Request};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;

use super::{auth, handlers, SENSITIVE_HEADERS};
use crate::state::AppState;

/// Which chat handler serves a request taken directly.
#[derive(Debug, PartialEq, Eq)]
pub enum Chat {
    /// `/v1/chat/completions`, `/api/v1/chat/completions`.
    V1,
    /// `/api/{provider}/chat/completions`, with the segment percent-decoded.
    Provider(String),
}

/// The direct route of `method` + `path`, or `None` when the router answers.
pub fn route(method: &Method, path: &str) -> Option<Chat> {
    if method != Method::POST {
        return None;
    }
    // The router's static route wins over `{provider}`, as here.
    if path == "/v1/chat/completions" || path == "/api/v1/chat/completions" {
        return Some(Chat::V1);
    }
    let segment = path
        .strip_prefix("/api/")?
        .strip_suffix("/chat/completions")?;
    // `{provider}` is one segment, possibly empty (matchit matches "/api//chat/completions").
    if segment.contains('/') {
        return None;
    }
    provider_name(segment).map(|p| Chat::Provider(p.into_owned()))
}

/// The segment as axum's `Path` gives it: percent-decoded, `+` kept. Not UTF-8 once decoded:
/// `None`, so the router answers with `Path`'s own 400.
fn provider_name(segment: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(segment).decode_utf8().ok()
}

/// Answers a request `route` took, as the router would have.
pub async fn serve(state: Arc<AppState>, chat: Chat, req: Request<Incoming>) -> Response {
    let (mut parts, body) = req.into_parts();
    mark_sensitive(&mut parts.headers);
    // The router runs its auth layer before any extractor reads the body; so does this.
    if let Some(refused) = auth::refusal(&state.config.auth, parts.uri.path(), &parts.headers) {
        return refused;
    }
    let answer = match chat {
        Chat::V1 => handlers::chat_v1(&state, &parts.headers, body).await,
        Chat::Provider(provider) => {
            handlers::chat_provider(&state, &provider, &parts.headers, body).await
        }
    };
    answer.into_response()
}

/// What the router's `SetSensitiveRequestHeadersLayer` does, without a layer. One pass over
/// the request's few headers: `HeaderMap::entry`, as the layer does it, may grow the map
/// and costs ~2.2k instructions per request (callgrind).
fn mark_sensitive(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if SENSITIVE_HEADERS.contains(&name.as_str()) {
            value.set_sensitive(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_of_a_key_header_is_marked_sensitive() {
        let mut h = HeaderMap::new();
        h.append("authorization", "Bearer a".parse().unwrap());
        h.append("authorization", "Bearer b".parse().unwrap());
        h.insert("x-api-key", "k".parse().unwrap());
        h.insert("X-Goog-Api-Key", "g".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        mark_sensitive(&mut h);
        let marked: Vec<(&str, bool)> = h
            .iter()
            .map(|(n, v)| (n.as_str(), v.is_sensitive()))
            .collect();
        assert_eq!(
            marked,
            [
                ("authorization", true),
                ("authorization", true),
                ("x-api-key", true),
                ("x-goog-api-key", true),
                ("content-type", false),
            ]
        );
    }

    #[test]
    fn only_post_on_the_chat_paths_is_taken() {
        let post = Method::POST;
        for (path, chat) in [
            ("/v1/chat/completions", Some(Chat::V1)),
            ("/api/v1/chat/completions", Some(Chat::V1)),
            (
                "/api/openai/chat/completions",
                Some(Chat::Provider("openai".into())),
            ),
            (
                "/api/rotations/chat/completions",
                Some(Chat::Provider("rotations".into())),
            ),
            (
                "/api/models/chat/completions",
                Some(Chat::Provider("models".into())),
            ),
            (
                "/api/my%20prov/chat/completions",
                Some(Chat::Provider("my prov".into())),
            ),
            (
                "/api/a%2Fb/chat/completions",
                Some(Chat::Provider("a/b".into())),
            ),
            (
                "/api/a+b/chat/completions",
                Some(Chat::Provider("a+b".into())),
            ),
            (
                "/api/%zz/chat/completions",
                Some(Chat::Provider("%zz".into())),
            ),
            (
                "/api//chat/completions",
                Some(Chat::Provider(String::new())),
            ),
            // Not UTF-8 once decoded: the router's `Path` answers.
            ("/api/%ff/chat/completions", None),
            ("/api/a/b/chat/completions", None),
            ("/v1/chat/completions/", None),
            ("/v1/chat/Completions", None),
            ("/v1/chat/%63ompletions", None),
            ("/chat/completions", None),
            ("/api/chat/completions", None),
            ("/v1/messages", None),
        ] {
            assert_eq!(route(&post, path), chat, "{path}");
        }
        assert_eq!(route(&Method::GET, "/v1/chat/completions"), None);
        assert_eq!(route(&Method::PUT, "/api/openai/chat/completions"), None);
    }
}
