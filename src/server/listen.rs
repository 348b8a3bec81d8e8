//! The accept loop both ports share: TLS (webhook) or plain (metrics), connection slots, a
//! watchdog per connection, and a drain on shutdown.
//!
//! Figures for the webhook port and why:
//! - one API server opens one HTTP/1.1 connection per review in flight (it does not use HTTP/2
//!   for webhooks since Kubernetes 1.16, and does not retry a failed call), from its own
//!   address, and a review waiting for XNAT keeps its connection until its budget: a
//!   first-day-of-term surge is thousands of connections at once. [`WEBHOOK_CONNECTIONS`] =
//!   3072 in all by default: an idle TLS connection costs 27 KiB (`make bench-storm`), so 81 MiB
//!   at most, and with the gate's 112 MiB of waiting reviews ([`super::gate`]) the process stays
//!   under the Deployment's 256 MiB; when the site names the control plane's addresses, half are
//!   reserved for them and every other address may hold [`OTHERS_PER_PEER`]; when it does not,
//!   any address may be the API server's, so none has a cap of its own (a handshake or a stalled
//!   request still makes room for a new connection first);
//! - the API server keeps an idle connection for 90 s, so the idle time (5 min by default)
//!   exceeds it and the server never closes a connection the client is about to reuse;
//! - HTTP/2 clients get at most [`H2_STREAMS`] streams per connection and small windows, so one
//!   connection cannot hold more than a few reviews' worth of memory.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::conn::{ConnState, Lifetimes, Verdict, Watched};
use super::service::ConnService;
use super::slots::{Capacity, Slots};
use crate::admission::{Caller, Trust};
use crate::tls::TlsSource;

/// Connections of the webhook port in all, by default (`--max-connections`).
pub const WEBHOOK_CONNECTIONS: usize = 3072;
/// Connections one address outside a named control plane may hold on the webhook port.
pub const OTHERS_PER_PEER: usize = 256;
/// Connections of the metrics port (Prometheus needs one or two): plenty, from any address.
pub const METRICS: Capacity = Capacity {
    max: 64,
    reserved: 0,
    per_peer: 16,
};
/// Connections of the probe port (loopback only: the exec probes, one at a time each).
pub const PROBES: Capacity = Capacity {
    max: 16,
    reserved: 0,
    per_peer: 16,
};

/// The webhook port's `max` slots: half reserved for the control plane when the site names it.
pub fn webhook_capacity(trust: &Trust, max: usize) -> Capacity {
    let max = max.max(2);
    if trust.by_address() {
        Capacity {
            max,
            reserved: max / 2,
            per_peer: OTHERS_PER_PEER.min(max / 2),
        }
    } else {
        // Any address may be the API server's, with all its reviews waiting at once.
        Capacity {
            max,
            reserved: 0,
            per_peer: max,
        }
    }
}
/// How long a client gets to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 streams per connection.
pub const H2_STREAMS: u32 = 4;
/// HTTP/2 connections are pinged this often (to notice dead peers; pings never count as use).
pub const H2_KEEPALIVE: Duration = Duration::from_secs(20);
/// After this a connection is wound down between requests.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);
/// How long an answer may take to be sent once the request timeout has passed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound port and how its connections are served.
pub struct Listener {
    pub tcp: TcpListener,
    /// `None` for plain HTTP/1 (the metrics and probe ports).
    pub tls: Option<Arc<TlsSource>>,
    /// Its name in the metrics and the log: `webhook`, `metrics` or `probes`.
    pub port: &'static str,
    pub capacity: Capacity,
    /// Which callers are the API server's.
    pub trust: Arc<Trust>,
    pub lifetimes: Lifetimes,
}

/// The lifetimes every port uses, with its own idle time (a new connection gets no longer than
/// an idle one to send its first request).
pub fn lifetimes(idle: Duration) -> Lifetimes {
    Lifetimes {
        first_request: Duration::from_secs(10).min(idle),
        headers: Duration::from_secs(10),
        idle,
        request: crate::timeouts::REQUEST_TIMEOUT + SEND_TIMEOUT,
        max_age: MAX_CONNECTION_AGE,
    }
}

/// Serves `app` on `listener` until `shutdown`, then stops accepting and waits up to `drain`
/// for the connections to finish what they are doing.
pub async fn serve(
    listener: Listener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let slots = Slots::new(listener.port, listener.capacity);
    let port = listener.port;
    let last_warning = std::sync::atomic::AtomicU64::new(0);
    let (draining, drained) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next() => continue,
            () = &mut shutdown => break,
        };
        // Answers are small and written in pieces: without this, Nagle's algorithm and the
        // peer's delayed ACK add ~40 ms to some of them.
        let _ = tcp.set_nodelay(true);
        let state = ConnState::new();
        let control_plane = listener.trust.is_control_plane(peer.ip());
        let slot = match slots.admit(peer.ip(), control_plane, state.clone()) {
            Ok(slot) => slot,
            Err(why) => {
                crate::metrics::connection_refused(port, why.label());
                // A flood of them is one line a second; the metric counts them all.
                let second = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs());
                if last_warning.swap(second, std::sync::atomic::Ordering::Relaxed) != second {
                    tracing::warn!(%peer, port, control_plane, connections = slots.len(),
                        "connection refused: {why} (logged at most once a second)");
                }
                continue;
            }
        };
        let c = Conn {
            peer,
            control_plane,
            state,
            lifetimes: listener.lifetimes,
            app: app.clone(),
            draining: drained.clone(),
        };
        let tls = listener.tls.clone();
        tasks.spawn(async move {
            let _slot = slot;
            c.run(tcp, tls).await;
        });
    }
    // Close the port at once: new connections are refused (the API server tries another
    // replica) instead of waiting in the backlog for the whole drain.
    drop(listener.tcp);
    tracing::info!(connections = slots.len(), "stopped accepting; draining");
    let _ = draining.send(true);
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, all_done).await.is_err() {
        tracing::warn!("drain timed out; closing remaining connections");
        tasks.abort_all();
    }
}

/// One accepted connection.
struct Conn {
    peer: SocketAddr,
    control_plane: bool,
    state: Arc<ConnState>,
    lifetimes: Lifetimes,
    app: Router,
    draining: watch::Receiver<bool>,
}

impl Conn {
    async fn run(self, tcp: TcpStream, tls: Option<Arc<TlsSource>>) {
        let peer = self.peer;
        let Some(tls) = tls else {
            let caller = Caller {
                addr: peer,
                verified: false,
                control_plane: self.control_plane,
            };
            return self.http(tcp, false, caller).await;
        };
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp));
        let accepted = tokio::select! {
            accepted = handshake => accepted,
            // Its slot was wanted: a handshake holds nothing worth finishing.
            () = self.state.evicted() => {
                return tracing::debug!(%peer, "evicted during the TLS handshake");
            }
        };
        let stream = match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        };
        let session = stream.get_ref().1;
        let h2 = session.alpn_protocol() == Some(b"h2");
        let caller = Caller {
            addr: peer,
            // Only a certificate the configured client CA verified gets this far with one.
            verified: session.peer_certificates().is_some_and(|c| !c.is_empty()),
            control_plane: self.control_plane,
        };
        self.http(stream, h2, caller).await;
    }

    async fn http<IO>(self, io: IO, h2: bool, caller: Caller)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if h2 {
            self.state.set_http2();
        }
        let io = TokioIo::new(Watched::new(io, self.state.clone()));
        let service = TowerToHyperService::new(ConnService::new(
            self.app.clone(),
            self.state.clone(),
            caller,
            !h2,
            self.lifetimes.max_age,
        ));
        if h2 {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .keep_alive_interval(H2_KEEPALIVE)
                .keep_alive_timeout(HANDSHAKE_TIMEOUT)
                .max_concurrent_streams(H2_STREAMS)
                .initial_stream_window_size(64 * 1024)
                .initial_connection_window_size(256 * 1024)
                .max_send_buf_size(64 * 1024)
                .max_header_list_size(16 * 1024);
            self.drive(builder.serve_connection(io, service), false)
                .await;
        } else {
            let mut builder = hyper::server::conn::http1::Builder::new();
            // Header and idle times are the watchdog's: hyper's header timeout also runs
            // between keep-alive requests, which would close idle connections after seconds.
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(None)
                .max_buf_size(64 * 1024);
            self.drive(builder.serve_connection(io, service), true)
                .await;
        }
    }

    /// Runs the connection until it ends, the watchdog closes it, or the server drains.
    async fn drive<C: WindDown>(mut self, conn: C, http1: bool) {
        let peer = self.peer;
        tokio::pin!(conn);
        let mut wound_down = false;
        loop {
            let (verdict, next) = self.state.verdict(&self.lifetimes, http1, wound_down);
            match verdict {
                Some(Verdict::Close(why)) => {
                    return tracing::debug!(%peer, "connection closed: {why}");
                }
                Some(Verdict::WindDown) => {
                    conn.as_mut().wind_down();
                    wound_down = true;
                    continue;
                }
                None => {}
            }
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(next) => {}
                () = self.state.changed() => {}
                Ok(()) = self.draining.changed(), if !wound_down => {
                    conn.as_mut().wind_down();
                    wound_down = true;
                }
            }
        }
    }
}

/// hyper's graceful shutdown of one connection: HTTP/1 closes after the request in flight (or
/// at once when idle), HTTP/2 sends GOAWAY and finishes its streams.
trait WindDown: Future<Output = Result<(), hyper::Error>> {
    fn wind_down(self: Pin<&mut Self>);
}

impl<I, S, B> WindDown for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn wind_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B, E> WindDown for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn wind_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
