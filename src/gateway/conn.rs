//! Deadlines on a connection's reads, for clients too slow to be anything but an attack.
//!
//! hyper keeps one timer, `header_read_timeout`, which runs from the end of one response to the
//! end of the next request's head: a kept-alive connection must then either idle briefly or
//! allow a slow head as long as an idle wait. [`Guarded`] keeps the two apart, as Go's
//! `ReadHeaderTimeout` and `IdleTimeout` do:
//!
//! - **head**: from a request's first byte (for a connection's first request, from the accept)
//!   until the service is called, at most `header_timeout`. A client that trickles its headers
//!   one byte a second (slowloris) is cut then, however steady its trickle.
//! - **busy**: the service runs; the body's own deadline is the handler's (`body_timeout`).
//! - **idle**: from the end of a request until the next one's first byte, at most
//!   `idle_timeout`.
//!
//! A deadline that passes fails the read with `TimedOut`, and hyper closes the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's head, which began (or the connection opened) at this instant.
    Head(Instant),
    /// The service runs.
    Busy,
    /// No request since this instant.
    Idle(Instant),
}

/// Why a connection was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Its head took longer than `header_timeout`.
    Header,
    /// It idled longer than `idle_timeout`.
    Idle,
}

impl Cut {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Cut::Header => "header_timeout",
            Cut::Idle => "idle_timeout",
        }
    }
}

/// The phase a connection's reads and its service share.
#[derive(Debug)]
pub struct Cycle {
    phase: Mutex<Phase>,
    cut: Mutex<Option<Cut>>,
}

impl Cycle {
    /// A connection accepted now: its first head's deadline runs from here.
    pub fn new() -> Arc<Cycle> {
        Arc::new(Cycle {
            phase: Mutex::new(Phase::Head(Instant::now())),
            cut: Mutex::new(None),
        })
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    fn get(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The service was called: the head is complete.
    pub fn busy(&self) {
        self.set(Phase::Busy);
    }

    /// The service has answered.
    pub fn idle(&self) {
        self.set(Phase::Idle(Instant::now()));
    }

    /// The connection was cut before it reached the reads (a TLS handshake too slow).
    pub fn timed_out(&self, cut: Cut) {
        *self.cut.lock().unwrap_or_else(|e| e.into_inner()) = Some(cut);
    }

    /// Why the connection was cut, if it was.
    pub fn cut(&self) -> Option<Cut> {
        *self.cut.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The deadlines of [`Guarded`].
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For a request's head.
    pub header: Duration,
    /// For the wait between requests.
    pub idle: Duration,
}

/// A connection whose reads keep [`Deadlines`].
pub struct Guarded<S> {
    inner: S,
    cycle: Arc<Cycle>,
    deadlines: Deadlines,
    sleep: Pin<Box<Sleep>>,
}

impl<S> Guarded<S> {
    /// `inner`, its reads timed by `cycle`'s phase.
    pub fn new(inner: S, cycle: Arc<Cycle>, deadlines: Deadlines) -> Guarded<S> {
        Guarded {
            inner,
            cycle,
            deadlines,
            sleep: Box::pin(tokio::time::sleep(deadlines.header)),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    if let Phase::Idle(_) = this.cycle.get() {
                        // The next request's first byte: its head's deadline starts now.
                        this.cycle.set(Phase::Head(Instant::now()));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let (deadline, cut) = match this.cycle.get() {
                    Phase::Head(since) => (since + this.deadlines.header, Cut::Header),
                    Phase::Idle(since) => (since + this.deadlines.idle, Cut::Idle),
                    Phase::Busy => return Poll::Pending,
                };
                if this.sleep.deadline() != deadline {
                    this.sleep.as_mut().reset(deadline);
                }
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.cycle.timed_out(cut);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, cut.label())));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
