//! The XNAT HTTP client. It logs in once (`POST /data/JSESSION`) and reuses the `JSESSIONID`
//! cookie, because every HTTP-basic call opens a new Tomcat session and a spawn storm of them can
//! overwhelm XNAT. A rejected session (401, or a login page served with 200) triggers one new
//! login. Requests wait for one of a bounded number of slots, GETs are retried with jittered
//! backoff after transient failures, and everything stays inside the admission's deadline.
//! Errors say what went wrong without ever carrying the credentials.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use super::Credentials;
use crate::access::UserAccess;
use crate::names::is_safe_segment;
use crate::policy::{ClientSettings, Endpoint, ProjectSource};

/// Everything but RFC 3986's unreserved characters is percent-encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The largest XNAT answer read; a group list is a few kilobytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum XnatError {
    #[error("XNAT did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach XNAT: {0}")]
    Connect(String),
    #[error("XNAT refused the service credentials (HTTP {0})")]
    Unauthorized(u16),
    #[error("XNAT answered HTTP {0}")]
    Status(u16),
    #[error("XNAT answered HTML, not JSON (a login page? check the service credentials)")]
    Html,
    #[error("XNAT's answer is not the expected JSON: {0}")]
    BadJson(String),
    #[error("XNAT's answer is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("no XNAT request slot free within the admission's budget (XNAT is slow or busy)")]
    Busy,
    #[error("XNAT request failed: {0}")]
    Request(String),
    #[error("cannot read the XNAT credentials: {0}")]
    Credentials(String),
}

impl XnatError {
    /// Worth another try of an idempotent GET.
    fn is_transient(&self) -> bool {
        match self {
            XnatError::Timeout(_) | XnatError::Connect(_) | XnatError::Request(_) => true,
            XnatError::Status(s) => matches!(s, 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// Where the service credentials come from: a mounted Secret, re-read at every login so a
/// rotation on disk takes effect without a restart; or fixed (tests, benchmarks).
#[derive(Debug, Clone)]
pub enum CredentialSource {
    File(PathBuf),
    Fixed(Credentials),
}

impl CredentialSource {
    async fn current(&self) -> Result<Credentials, XnatError> {
        match self {
            CredentialSource::Fixed(c) => Ok(c.clone()),
            CredentialSource::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Credentials::load(&path))
                    .await
                    .map_err(|e| XnatError::Credentials(e.to_string()))?
                    .map_err(|e| XnatError::Credentials(e.to_string()))
            }
        }
    }
}

/// A client for the XNAT endpoints the webhook uses, logged in as the service account.
pub struct XnatClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    credentials: CredentialSource,
    settings: ClientSettings,
    slots: Semaphore,
    session: ArcSwapOption<Session>,
    login: Mutex<()>,
    /// The last refused login, so a storm (or a rotation in progress) does not hammer XNAT with
    /// bad credentials until its account lockout trips.
    refused_login: std::sync::Mutex<Option<RefusedLogin>>,
}

/// One entry of `GET /xapi/access/{user}/projects`.
#[derive(Deserialize)]
struct AccessEntry {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    group_id: Option<String>,
}

impl XnatClient {
    /// A client for `endpoint` (whose URL includes any context path: `http://xnat/xnat`).
    pub fn new(
        endpoint: Endpoint,
        credentials: CredentialSource,
        settings: ClientSettings,
    ) -> Result<Self, XnatError> {
        crate::install_crypto_provider();
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &endpoint.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| XnatError::Request(format!("xnat.caFile {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| XnatError::Request(format!("xnat.caFile {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(XnatError::Request(format!(
                    "xnat.caFile {}: no certificate in it",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jupyter-xnat-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| XnatError::Request(e.to_string()))?;
        Ok(Self {
            http,
            endpoint,
            credentials,
            slots: Semaphore::new(settings.max_concurrent_requests),
            settings,
            session: ArcSwapOption::empty(),
            login: Mutex::new(()),
            refused_login: std::sync::Mutex::new(None),
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.endpoint.url
    }

    /// The user's project memberships, from the policy's project source. 404 means XNAT has no
    /// such user, which is an answer (no projects), not an outage.
    pub async fn user_access(
        &self,
        xnat_user: &str,
        deadline: Instant,
    ) -> Result<UserAccess, XnatError> {
        check_username(xnat_user)?;
        match self.endpoint.project_source {
            ProjectSource::Groups => {
                let ids: Option<Vec<String>> = self
                    .get_json("groups", &["xapi", "users", xnat_user, "groups"], deadline)
                    .await?;
                Ok(ids.map_or_else(UserAccess::unknown, |ids| UserAccess::from_group_ids(&ids)))
            }
            ProjectSource::Access => {
                let entries: Option<Vec<AccessEntry>> = self
                    .get_json(
                        "access",
                        &["xapi", "access", xnat_user, "projects"],
                        deadline,
                    )
                    .await?;
                Ok(entries.map_or_else(UserAccess::unknown, |e| {
                    UserAccess::from_group_ids(&group_ids_of(&e))
                }))
            }
        }
    }

    /// The JupyterHub plugin's stored launch context for a user's server (`""` for the default
    /// server); `None` when none is stored (404).
    pub async fn user_options<T: DeserializeOwned>(
        &self,
        xnat_user: &str,
        server_name: &str,
        deadline: Instant,
    ) -> Result<Option<T>, XnatError> {
        check_username(xnat_user)?;
        // The default server has no name segment: `…/server/user-options`.
        let mut path = vec!["xapi", "jupyterhub", "users", xnat_user, "server"];
        if !server_name.is_empty() {
            if !is_safe_segment(server_name) {
                return Err(XnatError::Request(format!(
                    "refusing to ask XNAT about server name {server_name:?}"
                )));
            }
            path.push(server_name);
        }
        path.push("user-options");
        self.get_json("user_options", &path, deadline).await
    }

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
        record("logout", &result, started);
        match result {
            Ok(r) => tracing::info!(status = r.status().as_u16(), "closed the XNAT session"),
            Err(e) => tracing::warn!(error = %e.without_url(), "could not close the XNAT session"),
        }
    }

    /// GETs JSON; `None` for 404. Retries transient failures and re-logs in once on a rejected
    /// session, all before `deadline`.
    async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &[&str],
        deadline: Instant,
    ) -> Result<Option<T>, XnatError> {
        let url = self.url(path);
        let mut tries = 0;
        let mut relogged = false;
        loop {
            let (session, result) = self.get_once(endpoint, &url, deadline).await?;
            let err = match result {
                Ok(Some(body)) if looks_like_html(&body) => Rejected::Session,
                Ok(Some(body)) => {
                    return serde_json::from_slice(&body)
                        .map(Some)
                        .map_err(|e| XnatError::BadJson(e.to_string()));
                }
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
                Rejected::Session => return Err(XnatError::Unauthorized(401)),
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
                    return Err(Rejected::Other(XnatError::Unauthorized(403)));
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

    /// The current session id, logging in first when there is none. One login at a time: the
    /// reviews of a spawn storm wait for the same login.
    async fn session(&self, deadline: Instant) -> Result<Arc<Session>, XnatError> {
        if let Some(s) = self.session.load_full() {
            return Ok(s);
        }
        let _one_login = tokio::time::timeout_at(deadline, self.login.lock())
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
        let started = std::time::Instant::now();
        let response = self
            .http
            .post(self.url(&["data", "JSESSION"]))
            .basic_auth(credentials.username(), Some(credentials.password()))
            .timeout(timeout)
            .send()
            .await;
        record("login", &response, started);
        let response = response.map_err(|e| self.classify(e, timeout))?;
        match response.status() {
            StatusCode::OK => {}
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                let error = XnatError::Unauthorized(s.as_u16());
                *lock(&self.refused_login) = Some(RefusedLogin {
                    at: std::time::Instant::now(),
                    fingerprint,
                    error: error.clone(),
                });
                tracing::warn!(
                    xnat_user = credentials.username(),
                    "XNAT refused the service credentials; not trying them again for {LOGIN_BACKOFF:?}"
                );
                return Err(error);
            }
            s => return Err(XnatError::Status(s.as_u16())),
        }
        let body = self.read_body(response, timeout).await?;
        if looks_like_html(&body) {
            return Err(XnatError::Html);
        }
        let id = std::str::from_utf8(&body).unwrap_or_default().trim();
        if id.is_empty()
            || id.len() > 256
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(XnatError::BadJson(
                "the login did not return a session id".into(),
            ));
        }
        let session = Arc::new(Session {
            id: id.to_owned(),
            born: std::time::Instant::now(),
        });
        self.session.store(Some(session.clone()));
        *lock(&self.refused_login) = None;
        tracing::info!(xnat_user = credentials.username(), "logged in to XNAT");
        Ok(session)
    }

    /// The refusal of these same credentials within the last [`LOGIN_BACKOFF`], if any.
    fn recently_refused(&self, fingerprint: u64) -> Option<XnatError> {
        let refused = lock(&self.refused_login);
        refused
            .as_ref()
            .filter(|r| r.fingerprint == fingerprint && r.at.elapsed() < LOGIN_BACKOFF)
            .map(|r| r.error.clone())
    }

    async fn slot(&self, deadline: Instant) -> Result<tokio::sync::SemaphorePermit<'_>, Rejected> {
        match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Rejected::Other(XnatError::Busy)),
        }
    }

    /// The time one attempt may take: the request timeout, cut to what is left of the budget.
    fn attempt_timeout(&self, deadline: Instant) -> Result<Duration, Rejected> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(10) {
            return Err(Rejected::Other(XnatError::Timeout(self.settings.timeout)));
        }
        Ok(left.min(self.settings.timeout))
    }

    /// Joins path segments onto the base URL, keeping its context path and percent-encoding
    /// every byte of a segment but `A-Z a-z 0-9 - . _ ~`: a username can add neither a segment
    /// (`/`) nor a path parameter (`;`, which Tomcat strips before routing).
    fn url(&self, segments: &[&str]) -> Url {
        let mut path = self.endpoint.url.path().trim_end_matches('/').to_owned();
        for s in segments {
            path.push('/');
            path.extend(utf8_percent_encode(s, SEGMENT));
        }
        let mut url = self.endpoint.url.clone();
        url.set_path(&path);
        url
    }

    async fn read_body(
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

    fn classify(&self, e: reqwest::Error, timeout: Duration) -> XnatError {
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
fn record(
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

/// A logged-in XNAT session.
struct Session {
    id: String,
    born: std::time::Instant,
}

/// A session younger than this that XNAT rejects is not expired; it is refused.
const MIN_SESSION_AGE: Duration = Duration::from_secs(1);
/// How long refused credentials are not tried again (unless the credentials file changes).
const LOGIN_BACKOFF: Duration = Duration::from_secs(15);

struct RefusedLogin {
    at: std::time::Instant,
    fingerprint: u64,
    error: XnatError,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why one attempt failed.
enum Rejected {
    /// The session was not accepted: log in again.
    Session,
    Other(XnatError),
}

impl Rejected {
    fn into_error(self) -> XnatError {
        match self {
            Rejected::Session => XnatError::Unauthorized(401),
            Rejected::Other(e) => e,
        }
    }
}

fn check_username(xnat_user: &str) -> Result<(), XnatError> {
    if is_safe_segment(xnat_user) {
        Ok(())
    } else {
        // `..` would be resolved away in the URL and `;` read as a path parameter: either could
        // ask about somebody else. The admission path never gets here with such a name.
        Err(XnatError::Request(format!(
            "refusing to ask XNAT about username {xnat_user:?}"
        )))
    }
}

fn looks_like_html(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// `base` ± 50 %, so the retries of a storm do not arrive in lockstep.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.5 + fastrand::f64())
}

/// Group ids from the admin access list: `group_id` when it names the entry's project, else the
/// project id with the role's display name (`Owners` → `owner`).
fn group_ids_of(entries: &[AccessEntry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| {
            // The group id counts only when it is exactly `{ID}_{role}` with no `_` in the role:
            // `ALPHA_BETA_owner` for project ALPHA is a custom group, not BETA's owners.
            if let Some(g) = &e.group_id
                && let Some(role) = g
                    .strip_prefix(e.id.as_str())
                    .and_then(|r| r.strip_prefix('_'))
                && !role.is_empty()
                && !role.contains('_')
            {
                return Some(g.clone());
            }
            let role = match e.role.as_deref()?.to_ascii_lowercase().as_str() {
                "owners" | "owner" => "owner",
                "members" | "member" => "member",
                "collaborators" | "collaborator" => "collaborator",
                _ => return None,
            };
            Some(format!("{}_{role}", e.id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, role: Option<&str>, group: Option<&str>) -> AccessEntry {
        AccessEntry {
            id: id.into(),
            role: role.map(Into::into),
            group_id: group.map(Into::into),
        }
    }

    #[test]
    fn access_entries_become_group_ids() {
        let ids = group_ids_of(&[
            entry("ALPHA", Some("Owners"), Some("ALPHA_owner")),
            entry("BETA", Some("Members"), None),
            // A group id that names another project is not trusted; the role still counts.
            entry("GAMMA", Some("Collaborators"), Some("DELTA_owner")),
            entry("EPS", Some("Custom"), None),
            // A custom group of ALPHA named like another project's owners is not that.
            entry("ALPHA", Some("Custom"), Some("ALPHA_BETA_owner")),
        ]);
        assert_eq!(ids, ["ALPHA_owner", "BETA_member", "GAMMA_collaborator"]);
    }

    #[test]
    fn segments_are_encoded_and_the_context_path_kept() {
        let client = XnatClient::new(
            Endpoint {
                url: Url::parse("http://xnat.example/xnat/").unwrap(),
                ca_file: None,
                project_source: ProjectSource::Groups,
            },
            CredentialSource::Fixed(Credentials::new("u", "p")),
            ClientSettings {
                timeout: Duration::from_secs(1),
                retries: 0,
                retry_backoff: Duration::ZERO,
                max_concurrent_requests: 1,
            },
        )
        .unwrap();
        let url = client.url(&["xapi", "users", "Bob.Smith@uni.edu.au", "groups"]);
        assert_eq!(
            url.as_str(),
            "http://xnat.example/xnat/xapi/users/Bob.Smith%40uni.edu.au/groups"
        );
        let url = client.url(&["xapi", "users", "alice;x/..", "groups"]);
        assert_eq!(url.path(), "/xnat/xapi/users/alice%3Bx%2F../groups");
    }

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        assert!(XnatError::Status(503).is_transient());
        assert!(XnatError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(!XnatError::Status(404).is_transient());
        assert!(!XnatError::Unauthorized(401).is_transient());
        assert!(!XnatError::BadJson(String::new()).is_transient());
    }
}
