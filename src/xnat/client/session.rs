//! The client's one XNAT session: a login (`POST /data/JSESSION` with the service credentials,
//! re-read from disk each time) when there is none, shared by every request until XNAT rejects
//! it; refused credentials are not tried again for a while, so a spawn storm cannot trip XNAT's
//! account lockout; `DELETE /data/JSESSION` on shutdown.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use tokio::time::Instant;

use super::XnatClient;
use super::answer::{Rejected, classify, looks_like_html, read_body, record};
use super::limit::{Ending, MAX_CALL_LIFETIME, Slot};
use crate::xnat::{XnatCall, XnatError};

/// A logged-in XNAT session.
pub(super) struct Session {
    pub(super) id: String,
    pub(super) born: std::time::Instant,
}

/// A session younger than this that XNAT rejects is not expired; it is refused.
pub(super) const MIN_SESSION_AGE: Duration = Duration::from_secs(1);
/// How long refused credentials are not tried again (unless the credentials file changes).
const LOGIN_BACKOFF: Duration = Duration::from_secs(15);

pub(super) struct RefusedLogin {
    at: std::time::Instant,
    fingerprint: u64,
    error: XnatError,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl XnatClient {
    /// Ends the session (`DELETE /data/JSESSION`), on shutdown.
    pub async fn close(&self) {
        let Some(session) = self.session.swap(None) else {
            return;
        };
        let id = &session.id;
        let url = self.url(&["data", "JSESSION"]);
        let started = std::time::Instant::now();
        let result = self
            .http
            .request(Method::DELETE, url)
            .header(reqwest::header::COOKIE, format!("JSESSIONID={id}"))
            .timeout(self.settings.timeout)
            .send()
            .await;
        record(XnatCall::Logout, &result, started);
        match result {
            Ok(r) => tracing::info!(status = r.status().as_u16(), "closed the XNAT session"),
            Err(e) => tracing::warn!(error = %e.without_url(), "could not close the XNAT session"),
        }
    }

    /// The current session id, logging in first when there is none. One login at a time: the
    /// reviews of a spawn storm wait for the same login. A login is a call like any other: it
    /// runs in the caller's request slot (`slot`), in a task of its own that holds the slot and
    /// the one-login lock until XNAT has answered (or [`MAX_CALL_LIFETIME`] has passed), and
    /// stores what XNAT said (the session, or refused credentials) even when the caller stopped
    /// waiting at the attempt's timeout: the next review uses it instead of logging in again.
    pub(super) async fn session(
        &self,
        deadline: Instant,
        slot: &mut Option<Slot>,
    ) -> Result<Arc<Session>, XnatError> {
        if let Some(s) = self.session.load_full() {
            return Ok(s);
        }
        let one_login = tokio::time::timeout_at(deadline, self.login.clone().lock_owned())
            .await
            .map_err(|_| XnatError::Timeout(self.settings.timeout))?;
        if let Some(s) = self.session.load_full() {
            return Ok(s);
        }
        let credentials = self.credentials.current().await?;
        let fingerprint = credentials.fingerprint();
        if let Some(refused) = self.recently_refused(fingerprint) {
            return Err(refused);
        }
        let timeout = self
            .attempt_timeout(deadline)
            .map_err(Rejected::into_error)?;
        let request = self
            .http
            .post(self.url(&["data", "JSESSION"]))
            .basic_auth(credentials.username(), Some(credentials.password()))
            .timeout(MAX_CALL_LIFETIME);
        let login = Login {
            session: self.session.clone(),
            refused: self.refused_login.clone(),
            fingerprint,
            user: credentials.username().to_owned(),
        };
        let held = slot.take();
        let task = tokio::spawn(async move {
            let _one_login = one_login;
            let answer = post_login(request).await;
            let ending = match &answer {
                Ok((status, _)) if status.is_server_error() => Ending::Overloaded,
                Ok(_) => Ending::Answered,
                Err(XnatError::Timeout(_)) => Ending::TimedOut,
                Err(_) => Ending::Other,
            };
            (login.store(answer), ending, held)
        });
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok((stored, ending, held))) => {
                *slot = held;
                self.limiter.ended(ending);
                stored
            }
            Ok(Err(_)) => Err(XnatError::Request("the XNAT login's task failed".into())),
            Err(_) => {
                // Abandoned, not cancelled: the task keeps the slot until XNAT has finished.
                self.limiter.ended(Ending::TimedOut);
                Err(XnatError::Timeout(timeout))
            }
        }
    }

    /// The refusal of these same credentials within the last [`LOGIN_BACKOFF`], if any.
    fn recently_refused(&self, fingerprint: u64) -> Option<XnatError> {
        let refused = lock(&self.refused_login);
        refused
            .as_ref()
            .filter(|r| r.fingerprint == fingerprint && r.at.elapsed() < LOGIN_BACKOFF)
            .map(|r| r.error.clone())
    }
}

/// `POST /data/JSESSION`: its status, and the body of a 200.
async fn post_login(request: reqwest::RequestBuilder) -> Result<(StatusCode, Vec<u8>), XnatError> {
    let started = std::time::Instant::now();
    let response = request.send().await;
    record(XnatCall::Login, &response, started);
    let response = response.map_err(|e| classify(e, MAX_CALL_LIFETIME))?;
    let status = response.status();
    if status != StatusCode::OK {
        return Ok((status, Vec::new()));
    }
    let body = read_body(response, MAX_CALL_LIFETIME, XnatCall::Login).await?;
    Ok((status, body))
}

/// The session id a login answered: a short token, never a page.
fn session_id(body: &[u8]) -> Result<&str, XnatError> {
    if looks_like_html(body) {
        return Err(XnatError::Html);
    }
    let id = std::str::from_utf8(body).unwrap_or_default().trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if id.is_empty() || id.len() > 256 || !id.bytes().all(token) {
        return Err(XnatError::BadJson(
            "the login did not return a session id".into(),
        ));
    }
    Ok(id)
}

/// What a login's task needs to keep XNAT's answer once its caller may have gone.
struct Login {
    session: Arc<arc_swap::ArcSwapOption<Session>>,
    refused: Arc<std::sync::Mutex<Option<RefusedLogin>>>,
    fingerprint: u64,
    user: String,
}

impl Login {
    /// Keeps what XNAT answered: a new session, or refused credentials (not tried again for
    /// [`LOGIN_BACKOFF`]).
    fn store(
        self,
        answer: Result<(StatusCode, Vec<u8>), XnatError>,
    ) -> Result<Arc<Session>, XnatError> {
        let (status, body) = answer?;
        match status {
            StatusCode::OK => {}
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                let error = XnatError::BadCredentials(s.as_u16());
                *lock(&self.refused) = Some(RefusedLogin {
                    at: std::time::Instant::now(),
                    fingerprint: self.fingerprint,
                    error: error.clone(),
                });
                tracing::warn!(
                    xnat_user = %self.user,
                    "XNAT refused the service credentials; not trying them again for {LOGIN_BACKOFF:?}"
                );
                return Err(error);
            }
            s => return Err(XnatError::Status(s.as_u16())),
        }
        let session = Arc::new(Session {
            id: session_id(&body)?.to_owned(),
            born: std::time::Instant::now(),
        });
        self.session.store(Some(session.clone()));
        *lock(&self.refused) = None;
        tracing::info!(xnat_user = %self.user, "logged in to XNAT");
        Ok(session)
    }
}
