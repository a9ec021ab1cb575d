//! One connection's life: what it is doing (waiting for a request head,
//! idle between requests, or busy with one), and the deadline that applies
//! to each phase.
//!
//! hyper's own `header_read_timeout` restarts whenever the connection waits
//! for a head, so it would also cut idle keep-alive connections at the
//! header deadline. Tracking the phase here lets the two differ: a head
//! must arrive within the header deadline from the connection's start or
//! from its first byte after an idle spell; an idle connection may stay for
//! the (longer) idle timeout; a busy one (a request being answered, a follow
//! or run stream being sent) has no deadline here at all.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The deadlines of a connection's phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// From the connection's start, or its first byte after being idle, to
    /// a complete request head.
    pub header: Duration,
    /// Between the end of a response and the first byte of the next request.
    pub idle: Duration,
}

const HEAD: u64 = 0;
const IDLE: u64 = 1;
const BUSY: u64 = 2;
/// Told to close (by the watchdog, the connection limit or shutdown).
const CLOSING: u64 = 3;
const PHASE_SHIFT: u32 = 62;
const SINCE_MASK: u64 = (1 << PHASE_SHIFT) - 1;

/// What one connection is doing, and since when: the phase in the top two
/// bits, milliseconds since `epoch` in the rest, so that every change is
/// one atomic compare-and-swap.
pub(super) struct ConnState {
    state: AtomicU64,
    /// Requests whose response is not done (one, unless hyper keeps a body
    /// a moment after the next head arrived).
    in_flight: AtomicU32,
    epoch: Instant,
    /// Wakes the watchdog when its deadline may have moved closer: the
    /// connection went idle, started a head, or must close.
    wake: Notify,
}

impl ConnState {
    pub(super) fn new(epoch: Instant) -> ConnState {
        let state = ConnState { state: AtomicU64::new(0), in_flight: AtomicU32::new(0), epoch, wake: Notify::new() };
        state.state.store(state.pack(HEAD), Ordering::Relaxed);
        state
    }

    fn now_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64) & SINCE_MASK
    }

    fn pack(&self, phase: u64) -> u64 {
        (phase << PHASE_SHIFT) | self.now_ms()
    }

    fn swap_if(&self, from: impl Fn(u64) -> bool, to: u64) -> bool {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if !from(current >> PHASE_SHIFT) {
                return false;
            }
            match self.state.compare_exchange_weak(current, self.pack(to), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Bytes arrived: after an idle spell they start a new request head.
    fn saw_bytes(&self) {
        if self.state.load(Ordering::Relaxed) >> PHASE_SHIFT == IDLE && self.swap_if(|p| p == IDLE, HEAD) {
            self.wake.notify_one();
        }
    }

    /// Whether the connection is waiting (for a head, or idle), and since
    /// when: what the connection limit chooses by.
    pub(super) fn waiting_since(&self) -> Option<u64> {
        let state = self.state.load(Ordering::Relaxed);
        matches!(state >> PHASE_SHIFT, HEAD | IDLE).then_some(state & SINCE_MASK)
    }

    /// Closes the connection if it is waiting; a busy one is never cut (its
    /// request may already have acted). Returns whether it will close.
    pub(super) fn close_if_waiting(&self) -> bool {
        let closing = self.swap_if(|p| p == HEAD || p == IDLE, CLOSING);
        if closing {
            self.wake.notify_one();
        }
        closing
    }

    /// Resolves when the connection must close: a waiting phase outlived its
    /// deadline, or someone called [`close_if_waiting`](Self::close_if_waiting).
    pub(super) async fn watchdog(&self, deadlines: Deadlines) {
        loop {
            let seen = self.state.load(Ordering::Acquire);
            let since = Duration::from_millis(seen & SINCE_MASK);
            let deadline = match seen >> PHASE_SHIFT {
                HEAD => since + deadlines.header,
                IDLE => since + deadlines.idle,
                // No deadline while busy; going idle wakes this.
                BUSY => {
                    self.wake.notified().await;
                    continue;
                }
                _ => return,
            };
            let elapsed = self.epoch.elapsed();
            if elapsed >= deadline {
                // Unless the phase changed meanwhile (then look again).
                if self.state.compare_exchange(seen, self.pack(CLOSING), Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(deadline - elapsed) => {}
                () = self.wake.notified() => {}
            }
        }
    }
}

/// The connection's socket, noting when bytes arrive.
pub(super) struct Watched<S> {
    pub(super) inner: S,
    pub(super) conn: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        if buf.filled().len() > before {
            self.conn.saw_bytes();
        }
        Poll::Ready(result)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Marks the connection busy from the request's head until its response
/// body has been sent (or dropped): a stream is busy as long as it lasts.
struct Busy(Arc<ConnState>);

impl Busy {
    /// `None` when the connection was already told to close.
    fn enter(conn: &Arc<ConnState>) -> Option<Busy> {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        if conn.swap_if(|p| p != CLOSING, BUSY) {
            Some(Busy(conn.clone()))
        } else {
            conn.in_flight.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let conn = &self.0;
        if conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 && conn.swap_if(|p| p == BUSY, IDLE) {
            conn.wake.notify_one();
        }
    }
}

/// The router, as hyper calls it for each request of one connection.
pub(super) struct ConnService {
    pub(super) router: Router,
    pub(super) conn: Arc<ConnState>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Respond;

    fn call(&self, request: Request<Incoming>) -> Respond {
        match Busy::enter(&self.conn) {
            Some(busy) => {
                let inner = tower_service::Service::call(&mut self.router.clone(), request);
                Respond { inner: Some(inner), busy: Some(busy) }
            }
            // The head arrived as the connection was being closed: its task
            // is about to drop it, so the request is never acted on and the
            // client sees the connection close, as a moment earlier.
            None => Respond { inner: None, busy: None },
        }
    }
}

/// The router's response, with the connection kept busy until its body ends.
pub(super) struct Respond {
    inner: Option<axum::routing::future::RouteFuture<Infallible>>,
    busy: Option<Busy>,
}

impl Future for Respond {
    type Output = Result<Response<Tracked>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Pending;
        };
        let Ok(response) = ready!(Pin::new(inner).poll(cx));
        let busy = this.busy.take();
        Poll::Ready(Ok(response.map(|body| Tracked { body, _busy: busy })))
    }
}

/// A response body that keeps its connection busy until it is done.
pub(super) struct Tracked {
    body: Body,
    _busy: Option<Busy>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
