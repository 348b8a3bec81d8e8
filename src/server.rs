//! The HTTPS server: a thin axum router over [`Admission`], served only over TLS with bounded
//! bodies, handshakes and header reads, and a graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use tower_http::timeout::TimeoutLayer;

use crate::admission::Admission;
use crate::conn::{Activity, FIRST_BYTE_TIMEOUT, PeerCounts, PeerSlot, Watched};
use crate::reload::{Input, ReloadStatus};
use crate::review::ReviewError;
use crate::timeouts::REQUEST_TIMEOUT;

/// The largest review accepted. The API server caps an object at about 1.5 MiB, and a review can
/// carry an object and an old object.
pub const MAX_REVIEW_BYTES: usize = 4 * 1024 * 1024;
/// How long a client gets to finish the TLS handshake and to send request headers.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait to be accepted. The API server needs a handful.
pub const MAX_CONNECTIONS: usize = 1024;
/// HTTP/2 connections are pinged this often and closed when a ping goes unanswered.
pub const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// A request the webhook cannot answer with a review: the API server logs the message.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    BadReview(#[from] ReviewError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadReview(_) => StatusCode::BAD_REQUEST,
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub admission: Arc<Admission>,
    pub status: Arc<ReloadStatus>,
}

/// The webhook's routes; public so tests can drive it over a real socket.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

async fn mutate(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let json = state.admission.review(&body).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// Ready while serving: a rejected policy or certificate keeps the old one in use, so it is
/// reported here (and in the log and metrics) without taking the webhook out of service.
async fn readyz(State(state): State<AppState>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "policy": state.status.get(Input::Policy),
        "certificate": state.status.get(Input::Certificate),
    });
    axum::Json(body).into_response()
}

/// The metrics port's routes: plain HTTP, `/metrics` only.
pub fn metrics_router() -> Router {
    Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                crate::metrics::render(),
            )
        }),
    )
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then stops accepting and waits
/// up to `drain` for in-flight requests.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    idle_timeout: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(http_builder());
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let peers = Arc::new(PeerCounts::default());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are small and written in pieces: without this, Nagle's algorithm and the
        // peer's delayed ACK add ~40 ms to some of them.
        let _ = tcp.set_nodelay(true);
        let Some(peer_slot) = peers.enter(peer.ip()) else {
            tracing::warn!(%peer, "too many connections from one address; refused");
            continue;
        };
        let connection = Connection {
            tcp,
            peer,
            _permit: permit,
            _peer_slot: peer_slot,
        };
        tokio::spawn(connection.serve(
            acceptor.clone(),
            builder.clone(),
            TowerToHyperService::new(app.clone()),
            graceful.watcher(),
            idle_timeout,
        ));
    }
    // Close the port at once: new connections are refused (the API server retries another
    // replica) instead of waiting in the backlog for the whole drain.
    drop(listener);
    tracing::info!("stopped accepting; draining in-flight reviews");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}

/// HTTP/1.1 and HTTP/2 with bounded header reads and pinged HTTP/2 connections.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(HANDSHAKE_TIMEOUT);
    builder
}

/// One accepted connection, holding its connection slot and its peer's slot while it lives.
struct Connection {
    tcp: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    _peer_slot: PeerSlot,
}

impl Connection {
    /// TLS handshake within [`HANDSHAKE_TIMEOUT`], then HTTP until the client is done, idle too
    /// long, or the server drains.
    async fn serve(
        self,
        acceptor: TlsAcceptor,
        builder: Arc<auto::Builder<TokioExecutor>>,
        service: TowerToHyperService<Router>,
        watcher: Watcher,
        idle_timeout: Duration,
    ) {
        let peer = self.peer;
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(self.tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let activity = Activity::new();
        let io = TokioIo::new(Watched::new(tls, activity.clone()));
        let conn = watcher.watch(builder.serve_connection(io, service).into_owned());
        tokio::select! {
            result = conn => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            () = activity.idle_for(FIRST_BYTE_TIMEOUT.min(idle_timeout), idle_timeout) => {
                tracing::debug!(%peer, "closed a connection idle for {idle_timeout:?}");
            }
        }
    }
}
