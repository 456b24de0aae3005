//! Upstream byte streams as events: SSE (via `eventsource-stream`, or `sse_data` for the
//! OpenAI hot path: only each event's `data`, split here as zero-copy slices) and NDJSON
//! lines, each read bounded by the idle timeout. Events are yielded as they arrive, never
//! buffered whole.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};

use super::client::TransportError;
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
    IdleTimeout {
        inner: Some(Box::pin(stream)),
        sleep: Box::pin(tokio::time::sleep(idle)),
        idle,
        armed: false,
    }
}

/// One timer for the whole stream, armed only while the upstream makes the reader wait:
/// items that are already there (a burst of events read at once) cost no timer work. A
/// `tokio::time::timeout` per item registered and cancelled a timer for every event
/// (~14k instructions per 21-event stream, callgrind).
struct IdleTimeout<S> {
    /// `None` once the stream has ended (or timed out): nothing follows.
    inner: Option<Pin<Box<S>>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    idle: Duration,
    /// Whether `sleep` counts down from the start of the current wait.
    armed: bool,
}

impl<S, T> Stream for IdleTimeout<S>
where
    S: Stream<Item = Result<T, ProviderError>>,
{
    type Item = Result<T, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.as_mut().poll_next(cx) {
            Poll::Ready(item) => {
                this.armed = false;
                if !matches!(item, Some(Ok(_))) {
                    this.inner = None;
                }
                Poll::Ready(item)
            }
            Poll::Pending => {
                if !this.armed {
                    this.armed = true;
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.sleep.as_mut().reset(deadline);
                }
                match this.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.inner = None;
                        Poll::Ready(Some(Err(ProviderError::Timeout(Phase::Idle))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// An upstream response body as it arrives (`Response::bytes_stream`, or any byte stream in
/// tests: the readers below need no HTTP).
pub trait BodyBytes: Stream<Item = Result<Bytes, TransportError>> + Send + 'static {}
impl<S: Stream<Item = Result<Bytes, TransportError>> + Send + 'static> BodyBytes for S {}

/// The SSE events of an upstream response body.
pub fn sse_events(
    body: impl BodyBytes,
    idle: Duration,
) -> impl Stream<Item = Result<Event, ProviderError>> + Send + 'static {
    let events = body.eventsource().map(|r| {
        r.map_err(|e| match e {
            eventsource_stream::EventStreamError::Transport(t) => transport_error(t),
            other => ProviderError::Protocol(other.to_string()),
        })
    });
    with_idle_timeout(events, idle)
}

/// The `data` of each SSE event of an upstream response body, as bytes (see
/// `split_sse_data`).
pub fn sse_data(
    body: impl BodyBytes,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send + 'static {
    let bytes = body.map(|r| r.map_err(transport_error));
    with_idle_timeout(split_sse_data(bytes), idle)
}

/// One event's `data` lines being collected: the first line as a slice of the read buffer
/// (no copy for the usual one-line event), later lines joined with `\n`.
#[derive(Default)]
struct DataLines {
    first: Option<Bytes>,
    joined: Option<BytesMut>,
}

impl DataLines {
    fn push(&mut self, value: Bytes) {
        if let Some(j) = &mut self.joined {
            j.extend_from_slice(b"\n");
            j.extend_from_slice(&value);
        } else if let Some(first) = self.first.take() {
            let mut j = BytesMut::with_capacity(first.len() + value.len() + 1);
            j.extend_from_slice(&first);
            j.extend_from_slice(b"\n");
            j.extend_from_slice(&value);
            self.joined = Some(j);
        } else {
            self.first = Some(value);
        }
    }

    /// The event's data once its blank line came; `None` when it had no data (or only
    /// empty data), which per the SSE rules dispatches nothing.
    fn take(&mut self) -> Option<Bytes> {
        let data = match self.joined.take() {
            Some(j) => j.freeze(),
            None => self.first.take()?,
        };
        self.first = None;
        (!data.is_empty()).then_some(data)
    }
}

/// SSE framing (WHATWG rules) reduced to what the gateway reads: lines end in `\r\n`, `\n`
/// or `\r`; a blank line ends an event; `:` lines are comments; `data:` values (one leading
/// space dropped) are joined with `\n`; other fields (`event`, `id`, `retry`) are ignored.
/// Data pending when the stream ends is still yielded (an upstream that omits the last
/// blank line loses nothing). A cheap replacement for a general parser on the hot path.
pub fn split_sse_data<S>(bytes: S) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send
where
    S: Stream<Item = Result<Bytes, ProviderError>> + Send + 'static,
{
    SseData {
        bytes: Box::pin(bytes),
        buf: BytesMut::new(),
        scanned: 0,
        data: DataLines::default(),
        done: false,
        start: true,
    }
}

/// The state of `split_sse_data`, polled by hand: an `unfold` moved this state into a new
/// future and back for every event (~100 memcpys per 21-event stream, callgrind).
struct SseData<S> {
    bytes: Pin<Box<S>>,
    buf: BytesMut,
    /// Bytes of `buf` already searched for a line end.
    scanned: usize,
    data: DataLines,
    done: bool,
    /// At the stream's start, where a UTF-8 BOM is dropped.
    start: bool,
}

impl<S> Stream for SseData<S>
where
    S: Stream<Item = Result<Bytes, ProviderError>>,
{
    type Item = Result<Bytes, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let st = &mut *self;
        loop {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            if st.start {
                if st.buf.starts_with(BOM) {
                    let _ = st.buf.split_to(BOM.len());
                    st.start = false;
                } else if st.done || !BOM.starts_with(&st.buf) {
                    st.start = false;
                }
            }
            let found = if st.start {
                None // maybe the start of a BOM: read on
            } else {
                memchr::memchr2(b'\n', b'\r', &st.buf[st.scanned..]).map(|i| i + st.scanned)
            };
            if let Some(end) = found {
                // A `\r` last in the buffer may be half of a `\r\n`: wait for the next byte.
                if st.buf[end] == b'\r' && end + 1 == st.buf.len() && !st.done {
                    st.scanned = end;
                } else {
                    let crlf = st.buf[end] == b'\r' && st.buf.get(end + 1) == Some(&b'\n');
                    let line = st.buf.split_to(end).freeze();
                    let _ = st.buf.split_to(if crlf { 2 } else { 1 });
                    st.scanned = 0;
                    if line.is_empty() {
                        if let Some(data) = st.data.take() {
                            return Poll::Ready(Some(Ok(data)));
                        }
                    } else if let Some(value) = data_value(line) {
                        st.data.push(value);
                    }
                    continue;
                }
            } else if !st.start {
                st.scanned = st.buf.len();
            }
            if st.done {
                if !st.buf.is_empty() {
                    let line = st.buf.split().freeze();
                    st.scanned = 0;
                    if let Some(value) = data_value(line) {
                        st.data.push(value);
                    }
                }
                return Poll::Ready(st.data.take().map(Ok));
            }
            match std::task::ready!(st.bytes.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => st.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    st.done = true;
                    st.buf.clear();
                    st.scanned = 0;
                    st.data = DataLines::default();
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    st.done = true;
                    st.start = false;
                }
            }
        }
    }
}

/// The value of a `data` line (`data:x`, `data: x`, or a bare `data`); `None` for comments
/// and every other field.
fn data_value(line: Bytes) -> Option<Bytes> {
    let (name, value) = match memchr::memchr(b':', &line) {
        Some(0) => return None,
        Some(i) => (&line[..i], i + 1),
        None => (&line[..], line.len()),
    };
    if name != b"data" {
        return None;
    }
    let skip = usize::from(line.get(value) == Some(&b' '));
    Some(line.slice(value + skip..))
}

/// The lines of an NDJSON upstream response (Ollama), one JSON document each, empty lines
/// skipped. A line split across reads is joined; a last line without `\n` is still yielded.
pub fn ndjson_lines(
    body: impl BodyBytes,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send + 'static {
    let bytes = body.map(|r| r.map_err(transport_error));
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

    async fn sse_data_of(parts: &[&'static [u8]]) -> Vec<Result<Bytes, ProviderError>> {
        let parts: Vec<Result<Bytes, ProviderError>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        split_sse_data(futures::stream::iter(parts)).collect().await
    }

    fn data(items: Vec<Result<Bytes, ProviderError>>) -> Vec<String> {
        items
            .into_iter()
            .map(|r| String::from_utf8(r.unwrap().to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn sse_events_split_on_blank_lines_with_any_line_ending() {
        let got = data(
            sse_data_of(&[
                b"\xEF\xBB\xBFdata: {\"a\":1}\n\n",
                b"data:{\"b\":2}\r\n\r\ndata: {\"c\":3}\r\r",
                b"data: [DONE]\n\n",
            ])
            .await,
        );
        assert_eq!(got, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "[DONE]"]);
    }

    #[tokio::test]
    async fn sse_events_split_across_reads_anywhere() {
        let text: &[u8] = b": keep-alive\r\nevent: x\r\nid: 7\r\ndata: {\"a\":\r\ndata:  1}\r\n\r\ndata: end\r\n\r\n";
        // Every split point, including between the `\r` and `\n` of a line end.
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            let parts: Vec<Result<Bytes, ProviderError>> =
                vec![Ok(Bytes::copy_from_slice(a)), Ok(Bytes::copy_from_slice(b))];
            let got = data(split_sse_data(futures::stream::iter(parts)).collect().await);
            assert_eq!(got, ["{\"a\":\n 1}", "end"], "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn sse_comments_other_fields_and_empty_data_dispatch_nothing() {
        let got =
            data(sse_data_of(&[b": ping\n\nevent: e\n\ndata\n\ndata:\n\n\n\ndatax: 1\n\n"]).await);
        assert!(got.is_empty(), "{got:?}");
    }

    #[tokio::test]
    async fn sse_data_pending_at_the_end_is_yielded_and_errors_end_the_stream() {
        assert_eq!(
            data(sse_data_of(&[b"data: a\n\ndata: b"]).await),
            ["a", "b"]
        );
        let parts = vec![
            Ok(Bytes::from_static(b"data: a\n\ndata: half")),
            Err(ProviderError::Timeout(Phase::Idle)),
        ];
        let got: Vec<_> = split_sse_data(futures::stream::iter(parts)).collect().await;
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0].as_ref().unwrap()[..], b"a");
        assert!(matches!(got[1], Err(ProviderError::Timeout(Phase::Idle))));
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

    #[tokio::test]
    async fn steady_items_slower_in_total_than_idle_never_time_out() {
        // Each gap (15 ms) is under the idle limit (60 ms), the whole stream (150 ms) is
        // not: the timer must count each wait from its own start.
        let steady = futures::stream::iter(0..10).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(15)).await;
            Ok::<_, ProviderError>(i)
        });
        let items: Vec<_> = with_idle_timeout(steady, Duration::from_millis(60))
            .collect()
            .await;
        assert_eq!(items.len(), 10);
        assert!(items.iter().all(Result::is_ok));
    }
}
