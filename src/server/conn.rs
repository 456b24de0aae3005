//! The listener (design.md §15): at most `limits.max_connections` open connections (past it,
//! new ones wait in the listen backlog), the whole request head within
//! `timeouts.header_seconds` (a deadline, so a client trickling a byte at a time is cut too),
//! and an idle keep-alive connection closed after `timeouts.keepalive_seconds`.
//!
//! hyper's own `header_read_timeout` starts whenever a connection waits for a head, so it
//! would also cut idle keep-alive connections at the header deadline; the two deadlines are
//! kept here instead, in a wrapper around the socket that knows whether a request is being
//! served on it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// How many requests of one connection are being served (handler running or response body
/// not yet sent); shared by the socket wrapper and the service.
#[derive(Default)]
pub struct Activity {
    busy: AtomicUsize,
    /// The reader that polled while busy: it waits on the socket only, so it must be woken
    /// when the connection turns idle to start the keep-alive deadline.
    reader: AtomicWaker,
}

/// Marks its connection busy while alive: moved into the response body, dropped when the
/// response has been sent (or abandoned).
pub struct Busy(Arc<Activity>);

impl Busy {
    pub fn new(a: &Arc<Activity>) -> Busy {
        a.busy.fetch_add(1, Ordering::AcqRel);
        Busy(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, no request yet: the first head is due `header` after the accept.
    Fresh,
    /// Between requests: the next one may start within `keepalive`.
    Idle,
    /// Bytes of a head have arrived: the rest is due `header` after the first.
    Head,
    /// A request is being served: no deadline (long streams are legitimate).
    Busy,
}

/// A client socket with the header and keep-alive deadlines: a read past one fails with
/// `TimedOut`, which makes hyper close the connection.
pub struct Guarded {
    io: TcpStream,
    activity: Arc<Activity>,
    header: Duration,
    keepalive: Duration,
    phase: Phase,
    deadline: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
}

impl Guarded {
    pub fn new(
        io: TcpStream,
        activity: Arc<Activity>,
        header: Duration,
        keepalive: Duration,
    ) -> Guarded {
        let deadline = Instant::now() + header;
        Guarded {
            io,
            activity,
            header,
            keepalive,
            phase: Phase::Fresh,
            deadline: Some(deadline),
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    fn set_deadline(&mut self, at: Instant) {
        self.deadline = Some(at);
        self.sleep.as_mut().reset(at);
    }

    fn expired(&self) -> io::Error {
        let what = match self.phase {
            Phase::Idle => "idle keep-alive connection closed",
            _ => "request head not received in time",
        };
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.activity.reader.register(cx.waker());
        if this.activity.busy.load(Ordering::Acquire) > 0 {
            this.phase = Phase::Busy;
            this.deadline = None;
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        if this.phase == Phase::Busy {
            this.phase = Phase::Idle;
            let at = Instant::now() + this.keepalive;
            this.set_deadline(at);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    match this.phase {
                        // The first head keeps its deadline from the accept.
                        Phase::Fresh => this.phase = Phase::Head,
                        Phase::Idle => {
                            this.phase = Phase::Head;
                            let at = Instant::now() + this.header;
                            this.set_deadline(at);
                        }
                        Phase::Head | Phase::Busy => {}
                    }
                    if this.deadline.is_some_and(|d| Instant::now() >= d) {
                        return Poll::Ready(Err(this.expired()));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.deadline.is_some() && this.sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(this.expired()));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
