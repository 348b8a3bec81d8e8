//! The webhook's HTTP side: routes over [`Admission`] (`/mutate`, `/healthz`, `/readyz`; and
//! `/metrics` on its own port), served by one accept loop ([`listen`]) with bounded connections
//! ([`slots`], [`conn`]) and bounded reviews in flight ([`gate`]).

mod conn;
pub(crate) mod gate;
pub mod listen;
pub mod probe;
mod service;
mod slots;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, http::HeaderValue};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

pub use conn::STALLED_AFTER;
pub use gate::{Gate, MAX_REVIEW_BYTES, Refusal, Refused};
pub use listen::{Listener, lifetimes};
pub use slots::Capacity;

use crate::admission::{Admission, Caller, ErrorKind, Outcome};
use crate::reload::{Input, ReloadStatus};
use crate::timeouts::REQUEST_TIMEOUT;
use crate::tls::TlsSource;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub admission: Arc<Admission>,
    pub status: Arc<ReloadStatus>,
    pub gate: Gate,
    /// Refusal log lines, one a second: a flood is one line a second, the metric counts all.
    pub refusals: Arc<LogOncePerSecond>,
}

/// Lets one log line a second through and counts the others.
#[derive(Default)]
pub struct LogOncePerSecond {
    last: AtomicU64,
    unlogged: AtomicU64,
}

impl LogOncePerSecond {
    /// `Some(lines left out since the last one)` when this one is to be logged.
    fn admit(&self) -> Option<u64> {
        let second = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs());
        if self.last.swap(second, Ordering::Relaxed) != second {
            Some(self.unlogged.swap(0, Ordering::Relaxed))
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// The webhook's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(state): State<AppState>| readyz(State((state.status, state.admission)))),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

async fn mutate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    let started = std::time::Instant::now();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let admitted = match state
        .gate
        .admit(&caller, declared, request.into_body())
        .await
    {
        Ok(a) => a,
        Err(refused) => {
            if let Some(pod) = refused.pod.as_ref().filter(|_| caller.is_first()) {
                state.admission.tell_refused(pod, &refused.why.to_string());
            }
            return refusal(refused.why, caller, started, &state.refusals);
        }
    };
    match state.admission.review(&admitted.body, &caller).await {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => text(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// A fast, clear refusal the API server logs; counted, and logged with its caller at most once a
/// second (the line says how many were not logged since).
fn refusal(
    refused: Refused,
    caller: Caller,
    started: std::time::Instant,
    log: &LogOncePerSecond,
) -> Response {
    let (status, kind) = match refused {
        Refused::Bytes => (StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Bytes),
        Refused::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge),
        Refused::Slow => (StatusCode::REQUEST_TIMEOUT, ErrorKind::Slow),
        Refused::Unreadable => (StatusCode::BAD_REQUEST, ErrorKind::MalformedReview),
    };
    Outcome::Errored(kind).record(started.elapsed());
    if let Some(unlogged) = log.admit() {
        tracing::warn!(caller = %caller.addr, control_plane = caller.control_plane,
            verified = caller.verified, unlogged,
            "{refused} (logged at most once a second; `unlogged` more since the last line)");
    }
    let mut response = text(status, &refused.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// What `/readyz` reads: the reload status, and the admission state for what XNAT does.
type Readiness = (Arc<ReloadStatus>, Arc<Admission>);

/// Ready while serving: a rejected policy or certificate keeps the old one in use, so it is
/// reported here (and in the log and metrics) without taking the webhook out of service.
async fn readyz(State((status, admission)): State<Readiness>) -> Response {
    let mut body = serde_json::json!({
        "status": "ok",
        "policy": status.get(Input::Policy),
        "certificate": status.get(Input::Certificate),
    });
    body["xnat"] = admission.readiness();
    let client_ca = status.get(Input::ClientCa);
    if !client_ca.version.is_empty() {
        body["clientCa"] = serde_json::json!(client_ca);
    }
    axum::Json(body).into_response()
}

/// The probe port's routes, plain HTTP on the loopback address: `/healthz` and `/readyz` for
/// kubelet's exec probes (`jupyter-xnat-webhook probe`). No other pod can reach a pod's loopback,
/// so no flood on the other ports can fail a probe and take the replica out of service.
pub fn probe_router(status: Arc<ReloadStatus>, admission: Arc<Admission>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state((status, admission))
}

/// The metrics port's routes, plain HTTP: `/metrics`, and `/healthz` and `/readyz` for people and
/// for `httpGet` probes where exec probes cannot run.
pub fn metrics_router(status: Arc<ReloadStatus>, admission: Arc<Admission>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                    crate::metrics::render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state((status, admission))
}

/// Serves any router over TLS with the webhook port's limits (tests serve the XNAT stand-in
/// this way).
pub async fn serve_tls(
    tcp: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    idle: Duration,
) {
    let listener = Listener {
        tcp,
        tls: Some(Arc::new(TlsSource::fixed(tls))),
        port: "webhook",
        capacity: listen::webhook_capacity(&Default::default(), listen::WEBHOOK_CONNECTIONS),
        trust: Arc::default(),
        lifetimes: lifetimes(idle),
    };
    listen::serve(listener, app, shutdown, drain).await;
}
