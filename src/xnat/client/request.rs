//! One GET against XNAT: a request slot first, then the session, then the request with the
//! attempt's timeout; retries of transient failures (never of a timeout) and one new login for
//! an expired session, all before the admission's deadline. Every request asks for the media type
//! its resource offers ([`XnatCall::accept`]) and its answer is read only when XNAT says it is that
//! type. Every request is counted in the metrics.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::XnatClient;
use super::answer::{Rejected, read_answer, send};
use super::limit::{Ending, MAX_CALL_LIFETIME};
use super::session::{MIN_SESSION_AGE, Session};
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

/// `base` ± 50 %, so the retries of a storm do not arrive in lockstep.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.5 + fastrand::f64())
}
