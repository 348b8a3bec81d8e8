//! The per-connection service in front of the router: it counts each request in flight until its
//! answer has been sent (for the connection's watchdog), tells handlers who called
//! ([`Caller`]), and past the connection's maximum age asks an HTTP/1 client to close it after
//! this answer (`Connection: close`), so the client never reuses a connection about to go.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use tower::ServiceExt;

use super::conn::{ConnState, Tracked};
use crate::admission::Caller;

#[derive(Clone)]
pub struct ConnService {
    app: Router,
    state: Arc<ConnState>,
    caller: Caller,
    http1: bool,
    max_age: Duration,
}

impl ConnService {
    pub fn new(
        app: Router,
        state: Arc<ConnState>,
        caller: Caller,
        http1: bool,
        max_age: Duration,
    ) -> Self {
        Self {
            app,
            state,
            caller,
            http1,
            max_age,
        }
    }
}

impl tower::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        let guard = self.state.request_started();
        request.extensions_mut().insert(self.caller);
        let close = self.http1 && self.state.age() >= self.max_age;
        let app = self.app.clone();
        Box::pin(async move {
            let Ok(mut response) = app.oneshot(request.map(Body::new)).await;
            if close {
                let headers = response.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response.map(|body| Tracked::body(body, guard)))
        })
    }
}
