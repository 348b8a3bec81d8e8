//! One GET against XNAT: a request slot first, then the session, then the request with the
//! attempt's timeout; retries of transient failures (never of a timeout) and one new login for
//! an expired session, all before the admission's deadline. Every request asks for the media type
//! its resource offers ([`XnatCall::accept`]) and its answer is read only when XNAT says it is that
//! type. Every request is counted in the metrics.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::XnatClient;
use super::limit::{Ending, MAX_CALL_LIFETIME};
use super::session::{MIN_SESSION_AGE, Session};
use crate::xnat::call::is_html;
use crate::xnat::{XnatCall, XnatError};

impl XnatClient {
    /// GETs JSON; `None` for 404. Retries transient failures and re-logs in once on a rejected
    /// session, all before `deadline`.
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        call: XnatCall,
        path: &[&str],
        deadline: Instant,
    ) -> Result<Option<T>, XnatError> {
        match self.get_body(call, self.url(path), deadline).await? {
            Some(body) => self.parse_json(call, &body).map(Some),
            None => Ok(None),
        }
    }

    /// GETs a body (at most [`XnatCall::max_body`]); `None` for 404. Retries as
    /// [`Self::get_json`]. The outcome is recorded for `/readyz`, the log and the metrics
    /// ([`crate::xnat::health`]).
    pub(super) async fn get_body(
        &self,
        call: XnatCall,
        url: Url,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, XnatError> {
        let result = self.get_body_retrying(call, url, deadline).await;
        match &result {
            Ok(_) => self.health.succeeded(call.name()),
            Err(e) => self.health.failed(call.name(), e),
        }
        result
    }

    async fn get_body_retrying(
        &self,
        call: XnatCall,
        url: Url,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, XnatError> {
        let mut tries = 0;
        let mut relogged = false;
        loop {
            let (session, result) = self.get_once(call, &url, deadline).await?;
            let err = match result {
                Ok(body) => return Ok(body),
                Err(err) => err,
            };
            match err {
                // A session that is seconds old was not "expired": this endpoint refuses the
                // service account. Logging in again would only pile up Tomcat sessions.
                Rejected::Session if !relogged && session.born.elapsed() >= MIN_SESSION_AGE => {
                    // The session expired (or a proxy dropped it): log in again, once.
                    relogged = true;
                    self.session.compare_and_swap(&Some(session), None);
                    tracing::info!("XNAT session rejected; logging in again");
                }
                Rejected::Session => return Err(XnatError::BadCredentials(401)),
                // Never after a timeout, nor while XNAT is timing out: XNAT is still working on
                // the abandoned call, and another would only add to what it is behind on.
                Rejected::Other(e)
                    if e.is_transient()
                        && !matches!(e, XnatError::Timeout(_))
                        && !self.limiter.timing_out()
                        && tries < self.settings.retries =>
                {
                    tries += 1;
                    let backoff = jittered(self.settings.retry_backoff * 2u32.pow(tries - 1));
                    if Instant::now() + backoff + Duration::from_millis(10) >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, tries, ?backoff, "retrying an XNAT GET");
                    tokio::time::sleep(backoff).await;
                }
                Rejected::Other(e) => return Err(e),
            }
        }
    }

    /// One GET inside a request slot, with the session current once the slot is ours (a login,
    /// when needed, happens in the same slot: queued requests never replay a dead session, and a
    /// login never waits behind them).
    ///
    /// The call itself runs in its own task that owns the slot: when this attempt gives up at its
    /// timeout, XNAT is still working on the call, so the slot stays taken until XNAT answers
    /// (or [`MAX_CALL_LIFETIME`] cuts the connection) and the limit is what XNAT really sees.
    async fn get_once(
        &self,
        call: XnatCall,
        url: &Url,
        deadline: Instant,
    ) -> Result<(Arc<Session>, Result<Option<Vec<u8>>, Rejected>), XnatError> {
        let mut slot = self.limiter.acquire(deadline, call.shared()).await;
        if slot.is_none() {
            return Err(XnatError::Busy);
        }
        let session = self.session(deadline, &mut slot).await?;
        // A login abandoned at its timeout took the slot with it; this call waits for another.
        let slot = match slot {
            Some(slot) => slot,
            None => self
                .limiter
                .acquire(deadline, call.shared())
                .await
                .ok_or(XnatError::Busy)?,
        };
        let timeout = match self.attempt_timeout(deadline) {
            Ok(t) => t,
            Err(r) => return Ok((session, Err(r))),
        };
        let request = self
            .http
            .get(url.clone())
            .header(
                reqwest::header::COOKIE,
                format!("JSESSIONID={}", session.id),
            )
            .header(reqwest::header::ACCEPT, call.accept())
            .timeout(MAX_CALL_LIFETIME);
        let started = std::time::Instant::now();
        let endpoint = call.name();
        let task = tokio::spawn(async move {
            let answer = send(request, call).await;
            drop(slot);
            answer
        });
        let answer = match tokio::time::timeout(timeout, task).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(XnatError::Request("the XNAT call's task failed".into())),
            Err(_) => {
                // Abandoned, not cancelled: the task keeps the slot until XNAT has finished.
                self.limiter.ended(Ending::TimedOut);
                crate::metrics::xnat_request(endpoint, "timeout".into(), started.elapsed());
                return Ok((session, Err(Rejected::Other(XnatError::Timeout(timeout)))));
            }
        };
        let result = match answer {
            Ok(answer) => {
                let status = answer.status;
                crate::metrics::xnat_request(
                    endpoint,
                    status.as_u16().to_string(),
                    started.elapsed(),
                );
                self.limiter.ended(if status.is_server_error() {
                    Ending::Overloaded
                } else {
                    Ending::Answered
                });
                read_answer(call, answer)
            }
            Err(e) => {
                crate::metrics::xnat_request(endpoint, e.metric_label().into(), started.elapsed());
                self.limiter.ended(if matches!(e, XnatError::Timeout(_)) {
                    Ending::TimedOut
                } else {
                    Ending::Other
                });
                Err(Rejected::Other(e))
            }
        };
        Ok((session, result))
    }

    /// The time one attempt may take: the request timeout, cut to what is left of the budget.
    pub(super) fn attempt_timeout(&self, deadline: Instant) -> Result<Duration, Rejected> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(10) {
            return Err(Rejected::Other(XnatError::Timeout(self.settings.timeout)));
        }
        Ok(left.min(self.settings.timeout))
    }
}

/// What one GET got: the status, the media type XNAT said, and the body of a 200.
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
}

/// Sends one GET and reads its answer: the body of a 200 only.
async fn send(request: reqwest::RequestBuilder, call: XnatCall) -> Result<Answer, XnatError> {
    let response = request
        .send()
        .await
        .map_err(|e| classify(e, MAX_CALL_LIFETIME))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A page in another media type (a login page, a proxy's) is never read: it is refused.
    let readable = content_type.as_deref().is_none_or(|t| call.reads(t));
    let body = match status {
        StatusCode::OK if readable => Some(read_body(response, MAX_CALL_LIFETIME, call).await?),
        _ => None,
    };
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

/// What an answer means for `call`: its body when XNAT said it is the media type asked for (or
/// said nothing and it is not HTML); a login page (HTML) is a rejected session; another media
/// type or a 406 is [`XnatError::NotAcceptable`].
fn read_answer(call: XnatCall, answer: Answer) -> Result<Option<Vec<u8>>, Rejected> {
    let not_acceptable = |got: Option<String>| {
        Rejected::Other(XnatError::NotAcceptable {
            path: call.path(),
            asked: call.accept(),
            got,
        })
    };
    match answer.status {
        StatusCode::OK => {
            let body = answer.body.unwrap_or_default();
            match answer.content_type {
                Some(t) if call.reads(&t) => Ok(Some(body)),
                Some(t) if is_html(&t) => Err(Rejected::Session),
                Some(t) => Err(not_acceptable(Some(crate::echo::echo(&t).to_string()))),
                None if looks_like_html(&body) && !is_xml_document(call, &body) => {
                    Err(Rejected::Session)
                }
                None => Ok(Some(body)),
            }
        }
        StatusCode::NOT_FOUND => Ok(None),
        StatusCode::UNAUTHORIZED => Err(Rejected::Session),
        StatusCode::FORBIDDEN => Err(Rejected::Other(XnatError::MissingRole {
            path: call.path(),
            role: call.role(),
        })),
        StatusCode::NOT_ACCEPTABLE => Err(not_acceptable(None)),
        s => Err(Rejected::Other(XnatError::Status(s.as_u16()))),
    }
}

/// Reads a body of at most [`XnatCall::max_body`] bytes.
pub(super) async fn read_body(
    mut response: reqwest::Response,
    timeout: Duration,
    call: XnatCall,
) -> Result<Vec<u8>, XnatError> {
    let max = call.max_body();
    let too_large = || XnatError::TooLarge {
        path: call.path(),
        limit: max,
    };
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(e, timeout))? {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl XnatClient {
    /// [`Self::parse_json`] on the blocking pool: for a site's lists (megabytes of JSON), which
    /// would hold a runtime thread for tens of milliseconds.
    pub(super) async fn parse_json_blocking<T: DeserializeOwned + Send + 'static>(
        &self,
        call: XnatCall,
        body: Vec<u8>,
    ) -> Result<T, XnatError> {
        let read = tokio::task::spawn_blocking(move || parse_json(&body)).await;
        read.unwrap_or_else(|_| Err(XnatError::Request("reading XNAT's answer failed".into())))
            .inspect_err(|e| self.health.failed(call.name(), e))
    }

    /// Reads a JSON answer of `call`; a body that is not is recorded as its failure.
    pub(super) fn parse_json<T: DeserializeOwned>(
        &self,
        call: XnatCall,
        body: &[u8],
    ) -> Result<T, XnatError> {
        parse_json(body).inspect_err(|e| self.health.failed(call.name(), e))
    }
}

/// Reads a JSON answer of `call`.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, XnatError> {
    serde_json::from_slice(body).map_err(|e| XnatError::BadJson(e.to_string()))
}

pub(super) fn classify(e: reqwest::Error, timeout: Duration) -> XnatError {
    if e.is_timeout() {
        XnatError::Timeout(timeout)
    } else if e.is_connect() {
        XnatError::Connect(e.without_url().to_string())
    } else {
        XnatError::Request(e.without_url().to_string())
    }
}

/// Counts one XNAT request by endpoint and status (or failure kind), with its time to headers.
pub(super) fn record(
    call: XnatCall,
    result: &Result<reqwest::Response, reqwest::Error>,
    started: std::time::Instant,
) {
    let status = match result {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(e) if e.is_connect() => "connect".into(),
        Err(_) => "error".into(),
    };
    crate::metrics::xnat_request(call.name(), status, started.elapsed());
}

/// Why one attempt failed.
pub(super) enum Rejected {
    /// The session was not accepted: log in again.
    Session,
    Other(XnatError),
}

impl Rejected {
    pub(super) fn into_error(self) -> XnatError {
        match self {
            Rejected::Session => XnatError::BadCredentials(401),
            Rejected::Other(e) => e,
        }
    }
}

/// An XML answer without a `Content-Type` (`<?xml …` or `<arc:project …`) is not a login page's
/// `<!DOCTYPE html>` or `<html>`.
fn is_xml_document(call: XnatCall, body: &[u8]) -> bool {
    let start = body.trim_ascii_start();
    call.media() == crate::xnat::call::Media::Xml
        && (start.starts_with(b"<?xml") || start.starts_with(b"<arc:"))
}

pub(super) fn looks_like_html(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// `base` ± 50 %, so the retries of a storm do not arrive in lockstep.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.5 + fastrand::f64())
}
