//! A provider's stream as the client's SSE body: each chunk forwarded as it arrives, then the
//! usage chunk with `effective_context`, then `[DONE]`; a failure mid-way is one error event.

use std::convert::Infallible;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::json;

use super::error::{error_json, provider_error_parts};
use crate::api::openai::{unix_now, Usage};
use crate::providers::{ChatStream, StreamEnd, StreamItem};

fn event(json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// The final chunk: complete by OpenAI's schema, `choices: []`, usage with effective_context.
fn usage_event(end: StreamEnd, effective_context: u64) -> Bytes {
    let mut usage = end
        .usage
        .unwrap_or_else(|| Usage::new(effective_context, end.content_chunks));
    usage.effective_context = Some(effective_context);
    let id = if end.id.is_empty() {
        format!("chatcmpl-aisbf-{}", unix_now())
    } else {
        end.id
    };
    let chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": if end.created == 0 { unix_now() } else { end.created },
        "model": end.model,
        "choices": [],
        "usage": usage,
    });
    let mut b = BytesMut::from(&event(&serde_json::to_vec(&chunk).unwrap_or_default())[..]);
    b.put_slice(b"data: [DONE]\n\n");
    b.freeze()
}

pub fn sse_body(
    stream: ChatStream,
    effective_context: u64,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures::stream::unfold((stream, false), move |(mut stream, done)| async move {
        if done {
            return None;
        }
        match stream.next().await {
            Some(Ok(StreamItem::Chunk(json))) => Some((Ok(event(&json)), (stream, false))),
            Some(Ok(StreamItem::End(end))) => {
                Some((Ok(usage_event(end, effective_context)), (stream, true)))
            }
            Some(Err(e)) => {
                tracing::warn!("stream failed after it started: {e}");
                let body = error_json(&e.to_string(), &provider_error_parts(&e));
                Some((
                    Ok(event(&serde_json::to_vec(&body).unwrap_or_default())),
                    (stream, true),
                ))
            }
            // A translator that ended without its End item still owes the client a usage chunk.
            None => Some((
                Ok(usage_event(StreamEnd::default(), effective_context)),
                (stream, true),
            )),
        }
    })
}
