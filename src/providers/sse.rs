//! Upstream byte streams as events: SSE (via `eventsource-stream`) and NDJSON lines, each
//! read bounded by the idle timeout. Events are yielded as they arrive, never buffered whole.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};

use super::http::transport_error;
use super::{Phase, ProviderError};

/// Wraps a stream so that a gap longer than `idle` between two items ends it with a timeout.
pub fn with_idle_timeout<S, T>(
    stream: S,
    idle: Duration,
) -> impl Stream<Item = Result<T, ProviderError>> + Send + 'static
where
    S: Stream<Item = Result<T, ProviderError>> + Send + 'static,
    T: Send + 'static,
{
    let stream = Box::pin(stream);
    futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => Some((Err(ProviderError::Timeout(Phase::Idle)), None)),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some((Err(e), None)),
            Ok(Some(Ok(item))) => Some((Ok(item), Some(stream))),
        }
    })
}

/// The SSE events of an upstream response.
pub fn sse_events(
    resp: reqwest::Response,
    idle: Duration,
) -> impl Stream<Item = Result<Event, ProviderError>> + Send + 'static {
    let events = resp.bytes_stream().eventsource().map(|r| {
        r.map_err(|e| match e {
            eventsource_stream::EventStreamError::Transport(t) => transport_error(t),
            other => ProviderError::Protocol(other.to_string()),
        })
    });
    with_idle_timeout(events, idle)
}

/// The lines of an NDJSON upstream response (Ollama), one JSON document each, empty lines
/// skipped. A line split across reads is joined; a last line without `\n` is still yielded.
pub fn ndjson_lines(
    resp: reqwest::Response,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send + 'static {
    let bytes = resp.bytes_stream().map(|r| r.map_err(transport_error));
    with_idle_timeout(split_lines(bytes), idle)
}

/// Splits a byte stream into lines as they complete.
pub fn split_lines<S>(bytes: S) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send
where
    S: Stream<Item = Result<Bytes, ProviderError>> + Send + 'static,
{
    let bytes = Box::pin(bytes);
    futures::stream::unfold(
        (bytes, BytesMut::new(), false),
        |(mut bytes, mut buf, mut done)| async move {
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line = buf.split_to(pos + 1).freeze();
                    let trimmed = trim_line(line);
                    if trimmed.is_empty() {
                        continue;
                    }
                    return Some((Ok(trimmed), (bytes, buf, done)));
                }
                if done {
                    if buf.is_empty() {
                        return None;
                    }
                    let rest = trim_line(buf.split().freeze());
                    if rest.is_empty() {
                        return None;
                    }
                    return Some((Ok(rest), (bytes, buf, done)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(e), (bytes, buf, true))),
                    None => done = true,
                }
            }
        },
    )
}

fn trim_line(line: Bytes) -> Bytes {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r' || line[end - 1] == b' ') {
        end -= 1;
    }
    line.slice(0..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_split_across_reads_are_joined() {
        let parts: Vec<Result<Bytes, ProviderError>> = vec![
            Ok(Bytes::from_static(b"{\"a\":")),
            Ok(Bytes::from_static(b"1}\n\n{\"b\"")),
            Ok(Bytes::from_static(b":2}\r\n{\"c\":3}")),
        ];
        let lines: Vec<Bytes> = split_lines(futures::stream::iter(parts))
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(
            lines,
            vec![
                Bytes::from_static(b"{\"a\":1}"),
                Bytes::from_static(b"{\"b\":2}"),
                Bytes::from_static(b"{\"c\":3}")
            ]
        );
    }

    #[tokio::test]
    async fn idle_gap_ends_the_stream_with_a_timeout() {
        let slow = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, ProviderError>(1)
        });
        let items: Vec<_> = with_idle_timeout(slow, Duration::from_millis(20))
            .collect()
            .await;
        assert!(matches!(
            items[..],
            [Err(ProviderError::Timeout(Phase::Idle))]
        ));
    }
}
