//! A provider's stream as the client's SSE body: each chunk forwarded as it arrives, then the
//! usage chunk with `effective_context`, then `[DONE]`; a failure mid-way is one error event.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};

use super::error::{error_json, provider_error_parts};
use crate::api::openai::{unix_now, Usage};
use crate::providers::{ChatStream, ProviderError, StreamEnd, StreamItem};

fn event(json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// The final chunk: complete by OpenAI's schema, `choices: []`, usage with effective_context.
#[derive(serde::Serialize)]
struct UsageChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: [(); 0],
    usage: &'a Usage,
}

/// The final usage chunk then `[DONE]`, appended to `out` (one buffer, no intermediate JSON
/// value).
fn usage_event(end: StreamEnd, effective_context: u64, out: &mut BytesMut) {
    let mut usage = end
        .usage
        .unwrap_or_else(|| Usage::new(effective_context, 0));
    usage.effective_context = Some(effective_context);
    let id = if end.id.is_empty() {
        format!("chatcmpl-aisbf-{}", unix_now())
    } else {
        end.id
    };
    let chunk = UsageChunk {
        id: &id,
        object: "chat.completion.chunk",
        created: if end.created == 0 {
            unix_now()
        } else {
            end.created
        },
        model: &end.model,
        choices: [],
        usage: &usage,
    };
    out.put_slice(b"data: ");
    let mut w = out.writer();
    let _ = serde_json::to_writer(&mut w, &chunk);
    let out = w.into_inner();
    out.put_slice(b"\n\ndata: [DONE]\n\n");
}

/// Events already waiting are sent in one write (up to this many bytes): an upstream that
/// delivers a burst then costs one syscall, not one per event, and nothing waits for more.
const COALESCE_BYTES: usize = 16 * 1024;

/// A write buffer's first allocation.
const WRITE_START: usize = 8 * 1024;

/// What one upstream item becomes for the client, and whether the stream is over.
fn client_bytes(
    item: Option<Result<StreamItem, ProviderError>>,
    effective_context: u64,
    out: &mut BytesMut,
) -> bool {
    match item {
        Some(Ok(StreamItem::Chunk(json))) => {
            out.put_slice(b"data: ");
            out.put_slice(&json);
            out.put_slice(b"\n\n");
            false
        }
        Some(Ok(StreamItem::End(end))) => {
            usage_event(end, effective_context, out);
            true
        }
        Some(Err(e)) => {
            tracing::warn!("stream failed after it started: {e}");
            let body = error_json(&e.to_string(), &provider_error_parts(&e));
            out.put_slice(&event(&serde_json::to_vec(&body).unwrap_or_default()));
            true
        }
        // A translator that ended without its End item still owes the client a usage chunk.
        None => {
            usage_event(StreamEnd::default(), effective_context, out);
            true
        }
    }
}

pub fn sse_body(
    stream: ChatStream,
    effective_context: u64,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    SseBody {
        stream,
        effective_context,
        done: false,
    }
}

/// The state of `sse_body`, polled by hand (an `unfold` built a future per write).
struct SseBody {
    stream: ChatStream,
    effective_context: u64,
    done: bool,
}

impl Stream for SseBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let first = std::task::ready!(this.stream.poll_next_unpin(cx));
        // Room for a burst of events without a reallocation per doubling; the buffer lives
        // only until hyper has written it.
        let mut out = BytesMut::with_capacity(WRITE_START);
        this.done = client_bytes(first, this.effective_context, &mut out);
        // Whatever else is ready joins this write; the first item that is not ready ends it
        // (its waker is registered, so the next write follows as soon as it is).
        while !this.done && out.len() < COALESCE_BYTES {
            match this.stream.poll_next_unpin(cx) {
                Poll::Ready(item) => {
                    this.done = client_bytes(item, this.effective_context, &mut out)
                }
                Poll::Pending => break,
            }
        }
        Poll::Ready(Some(Ok(out.freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(s: &'static str) -> Result<StreamItem, ProviderError> {
        Ok(StreamItem::Chunk(Bytes::from_static(s.as_bytes())))
    }

    #[tokio::test]
    async fn ready_events_share_a_write_and_nothing_waits_for_more() {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        tx.unbounded_send(chunk("{\"a\":1}")).unwrap();
        tx.unbounded_send(chunk("{\"b\":2}")).unwrap();
        let mut body = Box::pin(sse_body(rx.boxed(), 7));
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\n");
        // Nothing more is ready: the next write waits for the upstream, then goes alone.
        tx.unbounded_send(chunk("{\"c\":3}")).unwrap();
        let second = body.next().await.unwrap().unwrap();
        assert_eq!(&second[..], b"data: {\"c\":3}\n\n");
        tx.unbounded_send(Ok(StreamItem::End(StreamEnd {
            id: "x".into(),
            usage: Some(Usage::new(5, 2)),
            ..StreamEnd::default()
        })))
        .unwrap();
        let last = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
        assert!(
            last.starts_with("data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\"")
                && last.contains("\"choices\":[],\"usage\":{")
                && last.contains("\"effective_context\":7")
                && last.ends_with("}\n\ndata: [DONE]\n\n"),
            "{last}"
        );
        assert!(body.next().await.is_none());
    }
}
