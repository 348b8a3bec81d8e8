//! One connection's life, judged by what it is used for, not by the bytes on it: the API server
//! keeps idle HTTP/1.1 connections for up to 90 s and sends one review per connection at a time,
//! so a connection is idle when no request is in flight, and HTTP/2 pings do not count.
//!
//! A watchdog per connection closes it when
//! - a new connection sends no request within the first-request time;
//! - an HTTP/1 request's headers are not complete within the header time of its first byte;
//! - no request has been in flight for the idle time (longer than the API server's 90 s);
//! - a request's answer has not been sent within the request lifetime (a client that never
//!   reads its answer, or never opens its HTTP/2 window, holds nothing past that);
//! - the connection slots are full and it is the one to make room (evicted for a new one): one
//!   that never served a request (still in its handshake, say) before one that did, the idle
//!   longest first; one with a request in flight or arriving is wound down after it instead.
//!
//! Past the maximum age an HTTP/1 connection's next answer carries `Connection: close` and an
//! HTTP/2 connection gets a GOAWAY: the client moves on without a request ever being cut.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Timeouts and ages of one listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// From accepting the connection (its TLS handshake included) to a first request.
    pub first_request: Duration,
    /// From an HTTP/1 request's first byte to its complete headers.
    pub headers: Duration,
    /// With no request in flight.
    pub idle: Duration,
    /// From a request's arrival to its answer sent.
    pub request: Duration,
    /// After this, the connection is wound down between requests.
    pub max_age: Duration,
}

const NONE: u64 = u64::MAX;

/// A request whose bytes have been arriving this long without its headers complete has stalled:
/// its connection may be evicted for a new one. The API server, Prometheus and kubelet write a
/// request at once; only a client holding a slot on purpose takes longer.
pub const STALLED_AFTER: Duration = Duration::from_secs(1);

/// What the connection's watchdog decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Close(&'static str),
    /// HTTP/2 past its age: GOAWAY, let in-flight requests finish.
    WindDown,
}

/// The connection's use, shared by its reader, its service and its watchdog.
pub struct ConnState {
    base: Instant,
    /// Requests in flight: (id, started in ms since `base`).
    requests: Mutex<Vec<(u64, u64)>>,
    next_id: AtomicU64,
    served: AtomicU64,
    /// When the last request ended (or the connection started), in ms since `base`.
    idle_since: AtomicU64,
    /// The first byte read while idle: a request is arriving (HTTP/1). `NONE` otherwise.
    pending_since: AtomicU64,
    evicted: AtomicBool,
    /// Evicted by the control plane: a request arriving on it is not the API server's, so it
    /// is not waited for.
    cut: AtomicBool,
    http2: AtomicBool,
    changed: Notify,
}

impl ConnState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            requests: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            pending_since: AtomicU64::new(NONE),
            evicted: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    fn requests(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u64)>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection speaks HTTP/2: bytes between requests are pings and settings, never the
    /// start of a request.
    pub fn set_http2(&self) {
        self.http2.store(true, Ordering::Relaxed);
    }

    /// Bytes arrived from the client.
    pub(super) fn read(&self) {
        if self.http2.load(Ordering::Relaxed) {
            return;
        }
        if self.pending_since.load(Ordering::Relaxed) == NONE && self.requests().is_empty() {
            self.pending_since.store(self.now_ms(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// A request arrived; it is in flight until the guard (held by its answer's body) drops.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.requests().push((id, self.now_ms()));
        self.pending_since.store(NONE, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
        RequestGuard {
            state: self.clone(),
            id,
        }
    }

    pub fn age(&self) -> Duration {
        self.base.elapsed()
    }

    /// Idle since when, if no request is in flight or arriving.
    #[cfg(test)]
    pub fn idle_since(&self) -> Option<Instant> {
        let arriving = self.pending_since.load(Ordering::Relaxed) != NONE;
        (self.requests().is_empty() && !arriving)
            .then(|| self.at(self.idle_since.load(Ordering::Relaxed)))
    }

    /// Whether a request was ever served on it (a connection still in its TLS handshake has
    /// served none).
    pub fn has_served(&self) -> bool {
        self.served.load(Ordering::Relaxed) > 0
    }

    /// How readily the connection gives up its slot to a new one: `None` while it is busy (a
    /// request in flight, or arriving for less than [`STALLED_AFTER`]); otherwise the rank
    /// (`false` first: it holds its slot for nothing — a handshake, or a request that stopped
    /// arriving; then `true`: a served keep-alive connection) and since when. The API server
    /// writes a request at once, so one whose bytes stopped coming is not the API server's.
    pub fn eviction_key(&self) -> Option<(bool, Instant)> {
        if !self.requests().is_empty() {
            return None;
        }
        let pending = self.pending_since.load(Ordering::Relaxed);
        if pending != NONE {
            let since = self.at(pending);
            return (since.elapsed() >= STALLED_AFTER).then_some((false, since));
        }
        let since = self.at(self.idle_since.load(Ordering::Relaxed));
        Some((self.has_served(), since))
    }

    /// Since when the connection has had no request in flight (one may be arriving), if so.
    pub fn without_request(&self) -> Option<Instant> {
        if !self.requests().is_empty() {
            return None;
        }
        let pending = self.pending_since.load(Ordering::Relaxed);
        let since = if pending == NONE {
            self.idle_since.load(Ordering::Relaxed)
        } else {
            pending
        };
        Some(self.at(since))
    }

    /// What an evicted connection was doing, for the metric: `stalled` (a request stopped
    /// arriving), `idle` (a served keep-alive connection) or `unused` (no request yet).
    pub fn eviction_kind(&self) -> &'static str {
        if self.pending_since.load(Ordering::Relaxed) != NONE {
            "stalled"
        } else if self.has_served() {
            "idle"
        } else {
            "unused"
        }
    }

    /// Whether a request is arriving, and has for less than [`STALLED_AFTER`].
    fn arriving(&self) -> bool {
        let pending = self.pending_since.load(Ordering::Relaxed);
        pending != NONE && self.at(pending).elapsed() < STALLED_AFTER
    }

    /// Returns once the connection has been evicted.
    pub async fn evicted(&self) {
        while !self.is_evicted() {
            self.changed().await;
        }
    }

    /// Asks the watchdog to close the connection (its slot is wanted).
    pub fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// Closes it now unless a request is in flight, even if one is arriving: the control plane
    /// wants the slot of another address's connection, whose requests are not the API server's.
    /// Waiting out its arriving request would let a stream of one-byte connections hold every
    /// slot, each for [`STALLED_AFTER`], until the control plane evicts its own.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        self.evict();
    }

    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Whether it still counts against the listener's slots: until it closes, unless it was
    /// evicted while nothing it waits for is in flight.
    pub fn holds_slot(&self) -> bool {
        if !self.is_evicted() {
            return true;
        }
        if self.cut.load(Ordering::Relaxed) {
            return !self.requests().is_empty();
        }
        self.eviction_key().is_none()
    }

    /// Waits for a change that may bring a deadline forward.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// What to do now, and when to look again.
    pub fn verdict(
        &self,
        l: &Lifetimes,
        http1: bool,
        wound_down: bool,
    ) -> (Option<Verdict>, Instant) {
        let now = Instant::now();
        if self.is_evicted() {
            // A request in flight or arriving is finished first: the API server does not
            // retry a POST its connection lost.
            let arriving = self.arriving() && !self.cut.load(Ordering::Relaxed);
            let busy = !self.requests().is_empty() || arriving;
            return match busy {
                false => (Some(Verdict::Close("evicted for a new connection")), now),
                true if !wound_down => (Some(Verdict::WindDown), now),
                // A request that stops arriving is closed once it has stalled.
                true => (None, now + STALLED_AFTER.min(l.request)),
            };
        }
        let mut next = now + l.idle;
        let mut due = |deadline: Instant, v: Verdict| -> Option<Verdict> {
            if deadline <= now {
                return Some(v);
            }
            next = next.min(deadline);
            None
        };
        let oldest = self.requests().iter().map(|(_, at)| *at).min();
        let verdict = match oldest {
            Some(started) => due(
                self.at(started) + l.request,
                Verdict::Close("an answer was not sent within the request lifetime"),
            ),
            None => {
                let pending = self.pending_since.load(Ordering::Relaxed);
                if http1 && pending != NONE {
                    due(
                        self.at(pending) + l.headers,
                        Verdict::Close("request headers were not complete in time"),
                    )
                } else {
                    let wait = if self.served.load(Ordering::Relaxed) == 0 {
                        l.first_request
                    } else {
                        l.idle
                    };
                    due(
                        self.at(self.idle_since.load(Ordering::Relaxed)) + wait,
                        Verdict::Close("idle: no request in flight"),
                    )
                }
            }
        };
        let verdict = verdict.or_else(|| {
            (!http1 && !wound_down)
                .then(|| due(self.base + l.max_age, Verdict::WindDown))
                .flatten()
        });
        (verdict, next)
    }
}

/// One request in flight; dropped when its answer has been sent (or given up).
pub struct RequestGuard {
    state: Arc<ConnState>,
    id: u64,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut requests = self.state.requests();
        requests.retain(|(id, _)| *id != self.id);
        if requests.is_empty() {
            self.state
                .idle_since
                .store(self.state.now_ms(), Ordering::Relaxed);
        }
    }
}

/// An answer's body that keeps its request in flight until it is sent.
pub struct Tracked {
    inner: Body,
    _guard: RequestGuard,
}

impl Tracked {
    pub fn body(inner: Body, guard: RequestGuard) -> Body {
        Body::new(Self {
            inner,
            _guard: guard,
        })
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An I/O stream that tells the connection's state when the client sent bytes.
pub struct Watched<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, state: Arc<ConnState>) -> Self {
        Self { inner, state }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Lifetimes = Lifetimes {
        first_request: Duration::from_secs(10),
        headers: Duration::from_secs(10),
        idle: Duration::from_secs(300),
        request: Duration::from_secs(14),
        max_age: Duration::from_secs(1800),
    };

    #[tokio::test(start_paused = true)]
    async fn idleness_is_counted_by_requests() {
        let s = ConnState::new();
        assert_eq!(s.verdict(&L, true, false).0, None);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            s.verdict(&L, true, false).0,
            Some(Verdict::Close("idle: no request in flight"))
        );
        let s = ConnState::new();
        drop(s.request_started());
        // Bytes that do not make a request (an HTTP/2 ping) do not keep it open.
        tokio::time::advance(Duration::from_secs(200)).await;
        s.set_http2();
        s.read();
        assert!(s.idle_since().is_some(), "a ping makes no request");
        tokio::time::advance(Duration::from_secs(101)).await;
        assert!(s.verdict(&L, false, false).0.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_finishes_its_request_first() {
        let s = ConnState::new();
        let request = s.request_started();
        s.evict();
        assert_eq!(s.verdict(&L, true, false).0, Some(Verdict::WindDown));
        assert_eq!(s.verdict(&L, true, true).0, None);
        drop(request);
        assert_eq!(
            s.verdict(&L, true, true).0,
            Some(Verdict::Close("evicted for a new connection"))
        );
        // A request arriving (HTTP/1 bytes read while idle) counts as busy too.
        let s = ConnState::new();
        s.read();
        assert!(s.idle_since().is_none());
        s.evict();
        assert_eq!(s.verdict(&L, true, false).0, Some(Verdict::WindDown));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_headers_and_unsent_answers_close_it() {
        let s = ConnState::new();
        drop(s.request_started());
        s.read();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            s.verdict(&L, true, false).0,
            Some(Verdict::Close("request headers were not complete in time"))
        );
        let s = ConnState::new();
        let guard = s.request_started();
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(s.verdict(&L, false, false).0.is_some());
        drop(guard);
        assert!(s.verdict(&L, false, false).0.is_none());
    }
}
