//! The XNAT HTTP client: one request per question, bounded in time and size, with errors that say
//! what went wrong without ever carrying the credentials.

use std::time::Duration;

use reqwest::{StatusCode, Url};

use super::Credentials;
use crate::access::UserAccess;
use crate::identity::is_acceptable_username;

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
    #[error("XNAT request failed: {0}")]
    Request(String),
}

/// A client for the XNAT endpoints the webhook uses, authenticated as the service account.
pub struct XnatClient {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    timeout: Duration,
}

impl XnatClient {
    /// `base` is XNAT's URL including any context path (`http://xnat/xnat`).
    pub fn new(base: Url, credentials: Credentials, timeout: Duration) -> Result<Self, XnatError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jupyter-xnat-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| XnatError::Request(e.to_string()))?;
        Ok(Self {
            http,
            base,
            credentials,
            timeout,
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET /xapi/users/{user}/groups`: the user's group ids, reduced to project memberships.
    /// 404 means XNAT has no such user, which is an answer (no projects), not an outage.
    pub async fn user_access(&self, xnat_user: &str) -> Result<UserAccess, XnatError> {
        if !is_acceptable_username(xnat_user) {
            // `..` would be resolved away by the URL (asking about another path); refuse outright.
            return Err(XnatError::Request(format!(
                "refusing to ask XNAT about username {xnat_user:?}"
            )));
        }
        let url = self.url(&["xapi", "users", xnat_user, "groups"]);
        let response = self
            .http
            .get(url)
            .basic_auth(
                self.credentials.username(),
                Some(self.credentials.password()),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(UserAccess::unknown()),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                return Err(XnatError::Unauthorized(s.as_u16()));
            }
            s => return Err(XnatError::Status(s.as_u16())),
        }
        let body = self.read_body(response).await?;
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<') {
            return Err(XnatError::Html);
        }
        let ids: Vec<String> =
            serde_json::from_slice(&body).map_err(|e| XnatError::BadJson(e.to_string()))?;
        Ok(UserAccess::from_group_ids(&ids))
    }

    /// Joins path segments onto the base URL, keeping its context path and percent-encoding each
    /// segment (so a username can never add a path segment of its own).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, XnatError> {
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(XnatError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(XnatError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn classify(&self, e: reqwest::Error) -> XnatError {
        if e.is_timeout() {
            XnatError::Timeout(self.timeout)
        } else if e.is_connect() {
            XnatError::Connect(e.without_url().to_string())
        } else {
            XnatError::Request(e.without_url().to_string())
        }
    }
}
