//! A small Kubernetes API server for the Events the webhook posts: the two endpoints it calls,
//! answering as the real API server does, recording what it receives, with faults on demand.
//!
//! Shapes, from Kubernetes' own source:
//! - `POST /api/v1/namespaces/{ns}/events` answers 201 with the stored object, the server's
//!   `metadata.uid`, `resourceVersion` and `creationTimestamp` added (apiserver
//!   `handlers/create.go`); a namespace that differs from the body's is a 400 `BadRequest`.
//! - `PATCH …/events/{name}` with `application/merge-patch+json` answers 200 with the patched
//!   object, 404 `NotFound` for an unknown name, 415 for another content type.
//! - Refusals are `metav1.Status` objects (`apimachinery/pkg/api/errors`), e.g. RBAC's
//!   `events is forbidden: User "system:serviceaccount:…" cannot create resource "events" in
//!   API group "" in the namespace "jupyter"` with `reason: Forbidden`, `code: 403`.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use serde_json::{Value, json};

/// What the fake does instead of answering normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeFault {
    None,
    /// RBAC refuses: no `create`/`patch` on events for the webhook's ServiceAccount.
    Forbidden,
    /// Waits this long before answering (an API server under load).
    Slow(Duration),
}

#[derive(Default)]
struct Store {
    /// Every Event stored, as the API server would return it.
    events: Vec<Value>,
    /// Every merge patch received, with the name it was for.
    patches: Vec<(String, Value)>,
}

pub struct FakeKube {
    store: Mutex<Store>,
    fault: Mutex<KubeFault>,
    calls: AtomicUsize,
    uid: AtomicU64,
}

impl FakeKube {
    /// Starts the fake on loopback; returns it and its URL (plain HTTP).
    pub async fn start() -> (std::sync::Arc<Self>, String) {
        let fake = std::sync::Arc::new(Self {
            store: Mutex::new(Store::default()),
            fault: Mutex::new(KubeFault::None),
            calls: AtomicUsize::new(0),
            uid: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/events", post(create))
            .route("/api/v1/namespaces/{ns}/events/{name}", patch(update))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (fake, format!("http://{addr}"))
    }

    /// A kube client for the fake, as `--kubeconfig` would build one.
    pub fn client(url: &str) -> kube::Client {
        let config = kube::Config::new(url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    pub fn set_fault(&self, fault: KubeFault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Requests received, answered or not.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn events(&self) -> Vec<Value> {
        self.store.lock().unwrap().events.clone()
    }

    pub fn patches(&self) -> Vec<(String, Value)> {
        self.store.lock().unwrap().patches.clone()
    }

    /// Waits (up to 10 s) until `n` Events are stored; the Events then.
    pub async fn wait_for_events(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} Events, got {:#?}", self.events());
    }

    /// Waits (up to 10 s) until `n` requests arrived.
    pub async fn wait_for_calls(&self, n: usize) {
        for _ in 0..200 {
            if self.calls() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} calls, got {}", self.calls());
    }

    /// Answers with the fault, if one is set.
    async fn fault(&self, verb: &str, ns: &str) -> Option<Response> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fault = *self.fault.lock().unwrap();
        match fault {
            KubeFault::None => None,
            KubeFault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                None
            }
            KubeFault::Forbidden => Some(status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "events is forbidden: User \"system:serviceaccount:xnat-webhook:jupyter-xnat-webhook\" \
                     cannot {verb} resource \"events\" in API group \"\" in the namespace \"{ns}\""
                ),
            )),
        }
    }
}

/// A `metav1.Status` refusal.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": {"kind": "events"},
        "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

async fn create(
    State(fake): State<std::sync::Arc<FakeKube>>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = fake.fault("create", &ns).await {
        return r;
    }
    let Ok(mut event) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    };
    if event["metadata"]["namespace"]
        .as_str()
        .is_some_and(|n| n != ns)
    {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        );
    }
    let n = fake.uid.fetch_add(1, Ordering::SeqCst);
    let meta = event["metadata"].as_object_mut().unwrap();
    meta.insert("namespace".into(), json!(ns));
    meta.insert(
        "uid".into(),
        json!(format!("00000000-0000-4000-8000-{n:012}")),
    );
    meta.insert("resourceVersion".into(), json!((1000 + n).to_string()));
    meta.insert("creationTimestamp".into(), json!("2026-11-24T10:00:00Z"));
    fake.store.lock().unwrap().events.push(event.clone());
    (StatusCode::CREATED, axum::Json(event)).into_response()
}

async fn update(
    State(fake): State<std::sync::Arc<FakeKube>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = fake.fault("patch", &ns).await {
        return r;
    }
    let merge = headers
        .get("content-type")
        .is_some_and(|c| c.as_bytes().starts_with(b"application/merge-patch+json"));
    if !merge {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format",
        );
    }
    let Ok(change) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    };
    let mut store = fake.store.lock().unwrap();
    store.patches.push((name.clone(), change.clone()));
    let Some(event) = store.events.iter_mut().find(|e| {
        e["metadata"]["name"] == name.as_str() && e["metadata"]["namespace"] == ns.as_str()
    }) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("events \"{name}\" not found"),
        );
    };
    json_patch::merge(event, &change);
    (StatusCode::OK, axum::Json(event.clone())).into_response()
}
