//! One GET against XNAT: a request slot first, then the session, then the request with the
//! attempt's timeout; retries of transient failures and one new login for an expired session,
//! all before the admission's deadline. Every request is counted in the metrics.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::XnatClient;
use super::session::{MIN_SESSION_AGE, Session};
use crate::xnat::{MAX_BODY_BYTES, XnatError};

impl XnatClient {
    /// GETs JSON; `None` for 404. Retries transient failures and re-logs in once on a rejected
    /// session, all before `deadline`.
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &[&str],
        deadline: Instant,
    ) -> Result<Option<T>, XnatError> {
        match self.get_body(endpoint, self.url(path), deadline).await? {
            Some(body) => serde_json::from_slice(&body).map(Some).map_err(|e| {
                let e = XnatError::BadJson(e.to_string());
                crate::xnat::health::failed(endpoint, &e);
                e
            }),
            None => Ok(None),
        }
    }

    /// GETs a body (at most [`MAX_BODY_BYTES`]); `None` for 404. Retries as [`Self::get_json`].
    /// The outcome is recorded for `/readyz`, the log and the metrics ([`crate::xnat::health`]).
    pub(super) async fn get_body(
        &self,
        endpoint: &'static str,
        url: Url,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, XnatError> {
        let result = self.get_body_retrying(endpoint, url, deadline).await;
        match &result {
            Ok(_) => crate::xnat::health::succeeded(endpoint),
            Err(e) => crate::xnat::health::failed(endpoint, e),
        }
        result
    }

    async fn get_body_retrying(
        &self,
        endpoint: &'static str,
        url: Url,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, XnatError> {
        let mut tries = 0;
        let mut relogged = false;
        loop {
            let (session, result) = self.get_once(endpoint, &url, deadline).await?;
            let err = match result {
                Ok(Some(body)) if looks_like_html(&body) && !is_xml_answer(endpoint, &body) => {
                    Rejected::Session
                }
                Ok(Some(body)) => return Ok(Some(body)),
                Ok(None) => return Ok(None),
                Err(Rejected::Session) => Rejected::Session,
                Err(Rejected::Other(e)) => Rejected::Other(e),
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
                Rejected::Other(e) if e.is_transient() && tries < self.settings.retries => {
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
    async fn get_once(
        &self,
        endpoint: &'static str,
        url: &Url,
        deadline: Instant,
    ) -> Result<(Arc<Session>, Result<Option<Vec<u8>>, Rejected>), XnatError> {
        let _slot = self.slot(deadline).await.map_err(Rejected::into_error)?;
        let session = self.session(deadline).await?;
        let result = async {
            let timeout = self.attempt_timeout(deadline)?;
            let started = std::time::Instant::now();
            let response = self
                .http
                .get(url.clone())
                .header(
                    reqwest::header::COOKIE,
                    format!("JSESSIONID={}", session.id),
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(timeout)
                .send()
                .await;
            record(endpoint, &response, started);
            let response = response.map_err(|e| Rejected::Other(self.classify(e, timeout)))?;
            match response.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Ok(None),
                StatusCode::UNAUTHORIZED => return Err(Rejected::Session),
                StatusCode::FORBIDDEN => {
                    let (path, role) = crate::xnat::error::required_role(endpoint);
                    return Err(Rejected::Other(XnatError::MissingRole { path, role }));
                }
                s => return Err(Rejected::Other(XnatError::Status(s.as_u16()))),
            }
            self.read_body(response, timeout)
                .await
                .map(Some)
                .map_err(Rejected::Other)
        }
        .await;
        Ok((session, result))
    }

    async fn slot(&self, deadline: Instant) -> Result<tokio::sync::SemaphorePermit<'_>, Rejected> {
        match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Rejected::Other(XnatError::Busy)),
        }
    }

    /// The time one attempt may take: the request timeout, cut to what is left of the budget.
    pub(super) fn attempt_timeout(&self, deadline: Instant) -> Result<Duration, Rejected> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(10) {
            return Err(Rejected::Other(XnatError::Timeout(self.settings.timeout)));
        }
        Ok(left.min(self.settings.timeout))
    }

    pub(super) async fn read_body(
        &self,
        mut response: reqwest::Response,
        timeout: Duration,
    ) -> Result<Vec<u8>, XnatError> {
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(XnatError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.classify(e, timeout))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(XnatError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    pub(super) fn classify(&self, e: reqwest::Error, timeout: Duration) -> XnatError {
        if e.is_timeout() {
            XnatError::Timeout(timeout)
        } else if e.is_connect() {
            XnatError::Connect(e.without_url().to_string())
        } else {
            XnatError::Request(e.without_url().to_string())
        }
    }
}

/// Counts one XNAT request by endpoint and status (or failure kind), with its time to headers.
pub(super) fn record(
    endpoint: &'static str,
    result: &Result<reqwest::Response, reqwest::Error>,
    started: std::time::Instant,
) {
    let status = match result {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(e) if e.is_connect() => "connect".into(),
        Err(_) => "error".into(),
    };
    crate::metrics::xnat_request(endpoint, status, started.elapsed());
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

/// `archive_spec` answers XML (`<?xml …` or `<arc:project …`), never a login page's
/// `<!DOCTYPE html>` or `<html>`.
fn is_xml_answer(endpoint: &str, body: &[u8]) -> bool {
    let start = body.trim_ascii_start();
    endpoint == "archive_spec" && (start.starts_with(b"<?xml") || start.starts_with(b"<arc:"))
}

pub(super) fn looks_like_html(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// `base` ± 50 %, so the retries of a storm do not arrive in lockstep.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.5 + fastrand::f64())
}
