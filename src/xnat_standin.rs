//! A small XNAT stand-in that speaks the endpoints the webhook uses, with XNAT's JSON shapes and
//! HTTP-basic checks. `make run` serves it with demo users; the integration tests use it as the
//! XNAT test double, with latency and fault injection and call counting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;

/// A fault the stand-in answers with instead of the real answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fault {
    #[default]
    None,
    /// Answer with this HTTP status (500, 503, 401…).
    Status(u16),
    /// A login page with status 200, as XNAT behind some proxies answers a rejected session.
    HtmlLogin,
    /// A 200 whose body is not JSON.
    BadJson,
    /// A 200 with a JSON body larger than any client should read.
    Oversized,
}

/// The stand-in's users, credentials, faults and counters.
pub struct Standin {
    username: String,
    password: String,
    users: Mutex<HashMap<String, Vec<String>>>,
    fault: Mutex<Fault>,
    latency: Mutex<Duration>,
    group_calls: AtomicUsize,
    calls_by_user: Mutex<HashMap<String, usize>>,
    auth_failures: AtomicUsize,
}

impl Standin {
    pub fn new(username: &str, password: &str) -> Arc<Self> {
        Arc::new(Self {
            username: username.to_owned(),
            password: password.to_owned(),
            users: Mutex::default(),
            fault: Mutex::default(),
            latency: Mutex::default(),
            group_calls: AtomicUsize::new(0),
            calls_by_user: Mutex::default(),
            auth_failures: AtomicUsize::new(0),
        })
    }

    /// The demo site `make run` serves: the users of the KubeSpawner fixtures and a few projects.
    pub fn demo(username: &str, password: &str) -> Arc<Self> {
        let s = Self::new(username, password);
        s.set_user("alice", &["ALPHA_owner", "BETA_member", "ALL_DATA_ACCESS"]);
        s.set_user("Bob.Smith@uni.edu.au", &["GAMMA_collaborator"]);
        s.set_user("carol", &["GPU_LAB_member", "ALPHA_collaborator"]);
        s.set_user("erin", &["BETA_owner"]);
        s
    }

    pub fn set_user(&self, user: &str, groups: &[&str]) {
        let groups = groups.iter().map(|g| g.to_string()).collect();
        lock(&self.users).insert(user.to_owned(), groups);
    }

    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.fault) = fault;
    }

    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.latency) = latency;
    }

    /// `GET …/groups` requests received, authenticated or not.
    pub fn group_calls(&self) -> usize {
        self.group_calls.load(Ordering::SeqCst)
    }

    /// `GET …/groups` requests received for one user.
    pub fn group_calls_for(&self, user: &str) -> usize {
        lock(&self.calls_by_user).get(user).copied().unwrap_or(0)
    }

    /// Requests refused for missing or wrong credentials.
    pub fn auth_failures(&self) -> usize {
        self.auth_failures.load(Ordering::SeqCst)
    }

    /// The stand-in's routes under XNAT's context path (`/xnat`, or `""` for none).
    pub fn router(self: &Arc<Self>, context_path: &str) -> Router {
        let api = Router::new()
            .route("/xapi/users/{user}/groups", get(groups))
            .with_state(self.clone());
        if context_path.is_empty() || context_path == "/" {
            api
        } else {
            Router::new().nest(context_path, api)
        }
    }

    /// Serves the stand-in on `addr`; returns its base URL (context path included).
    pub async fn spawn(
        self: &Arc<Self>,
        addr: SocketAddr,
        context_path: &str,
    ) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let base = format!("http://{}{}", listener.local_addr()?, context_path);
        let app = self.router(context_path);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((base, task))
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(encoded) = value.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return false;
        };
        let expected = format!("{}:{}", self.username, self.password);
        decoded == expected.as_bytes()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `GET /xapi/users/{user}/groups`: a JSON array of group ids; 404 for an unknown user.
async fn groups(
    State(s): State<Arc<Standin>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.group_calls.fetch_add(1, Ordering::SeqCst);
    *lock(&s.calls_by_user).entry(user.clone()).or_default() += 1;
    let latency = *lock(&s.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if !s.authorized(&headers) {
        s.auth_failures.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"XNAT\"")],
            "Unauthorized",
        )
            .into_response();
    }
    let fault = *lock(&s.fault);
    match fault {
        Fault::None => {}
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "stand-in fault").into_response();
        }
        Fault::HtmlLogin => {
            return (
                [(header::CONTENT_TYPE, "text/html;charset=UTF-8")],
                "<!DOCTYPE html><html><head><title>XNAT Login</title></head><body><form action=\"/login\"></form></body></html>",
            )
                .into_response();
        }
        Fault::BadJson => {
            return (
                [(header::CONTENT_TYPE, "application/json")],
                "[\"ALPHA_owner\",",
            )
                .into_response();
        }
        Fault::Oversized => {
            let many: Vec<String> = (0..200_000).map(|i| format!("P{i:08}_member")).collect();
            return axum::Json(many).into_response();
        }
    }
    match lock(&s.users).get(&user) {
        Some(groups) => axum::Json(groups.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, format!("User {user} not found.")).into_response(),
    }
}
