//! The router's hold on a committed stream, in one adapter: the peeked first item goes out
//! first, chunks pass straight through, and the last item (the answer's end, or an error)
//! goes through one async hook (usage counted, health and metrics recorded) before the
//! client sees it.
//!
//! It replaced a chain of `once(first).chain(..)`, `.then(..)` and `unfold(..)` layers, each
//! building a future per chunk: on a 21-event stream those layers cost more than the gateway's
//! own handling of the events (callgrind, issue 13).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::Stream;

use crate::providers::{ChatStream, ProviderError, StreamItem};

pub type Item = Result<StreamItem, ProviderError>;

/// `stream` with `first` (already read) in front of it.
pub fn prepend(first: Item, stream: ChatStream) -> ChatStream {
    Box::pin(Hooked {
        first: Some(first),
        inner: Some(stream),
        hook: None::<fn(Item) -> BoxFuture<'static, Item>>,
        pending: None,
    })
}

/// `stream` whose last item (`End` or an error) is replaced by what `hook` makes of it.
/// A stream that stops without either (a client that hung up drops it first) never calls it.
pub fn on_end<F>(stream: ChatStream, hook: F) -> ChatStream
where
    F: FnOnce(Item) -> BoxFuture<'static, Item> + Send + 'static,
{
    Box::pin(Hooked {
        first: None,
        inner: Some(stream),
        hook: Some(hook),
        pending: None,
    })
}

struct Hooked<F> {
    first: Option<Item>,
    /// `None` once the last item was taken from it.
    inner: Option<ChatStream>,
    hook: Option<F>,
    /// The hook at work on the last item.
    pending: Option<BoxFuture<'static, Item>>,
}

// Every field is either Unpin or boxed.
impl<F> Unpin for Hooked<F> {}

impl<F> Stream for Hooked<F>
where
    F: FnOnce(Item) -> BoxFuture<'static, Item> + Send + 'static,
{
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(first));
        }
        if let Some(pending) = this.pending.as_mut() {
            let item = std::task::ready!(pending.as_mut().poll(cx));
            this.pending = None;
            return Poll::Ready(Some(item));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let item = match std::task::ready!(inner.as_mut().poll_next(cx)) {
            None => {
                this.inner = None;
                return Poll::Ready(None);
            }
            Some(Ok(StreamItem::Chunk(c))) => return Poll::Ready(Some(Ok(StreamItem::Chunk(c)))),
            Some(last) => last,
        };
        // The end or an error: nothing is read after it.
        this.inner = None;
        let Some(hook) = this.hook.take() else {
            return Poll::Ready(Some(item));
        };
        let mut pending = hook(item);
        match pending.as_mut().poll(cx) {
            Poll::Ready(item) => Poll::Ready(Some(item)),
            Poll::Pending => {
                this.pending = Some(pending);
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::StreamEnd;
    use bytes::Bytes;
    use futures::{FutureExt, StreamExt};

    fn chunk(s: &'static str) -> Item {
        Ok(StreamItem::Chunk(Bytes::from_static(s.as_bytes())))
    }

    #[tokio::test]
    async fn first_goes_first_chunks_pass_and_the_end_goes_through_the_hook() {
        let rest: ChatStream = futures::stream::iter(vec![
            chunk("b"),
            Ok(StreamItem::End(StreamEnd::default())),
            chunk("never read"),
        ])
        .boxed();
        let s = on_end(prepend(chunk("a"), rest), |item| {
            async move {
                tokio::task::yield_now().await;
                match item {
                    Ok(StreamItem::End(mut e)) => {
                        e.id = "hooked".into();
                        Ok(StreamItem::End(e))
                    }
                    other => other,
                }
            }
            .boxed()
        });
        let items: Vec<Item> = s.collect().await;
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[0], Ok(StreamItem::Chunk(c)) if &c[..] == b"a"));
        assert!(matches!(&items[1], Ok(StreamItem::Chunk(c)) if &c[..] == b"b"));
        assert!(matches!(&items[2], Ok(StreamItem::End(e)) if e.id == "hooked"));
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_through_the_hook_and_a_bare_end_skips_it() {
        let rest: ChatStream = futures::stream::iter(vec![
            Err(ProviderError::Protocol("broken".into())),
            chunk("never read"),
        ])
        .boxed();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        let items: Vec<Item> = on_end(rest, move |item| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { item }.boxed()
        })
        .collect()
        .await;
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);

        let seen2 = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen2.clone();
        let only_chunks: ChatStream = futures::stream::iter(vec![chunk("x")]).boxed();
        let items: Vec<Item> = on_end(only_chunks, move |item| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { item }.boxed()
        })
        .collect()
        .await;
        assert_eq!(items.len(), 1);
        assert_eq!(seen2.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
