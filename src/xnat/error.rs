//! What can go wrong talking to XNAT, said without ever carrying the credentials.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum XnatError {
    #[error("XNAT did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach XNAT: {0}")]
    Connect(String),
    /// 401 (or a refused login): the username or password is wrong, expired or locked.
    #[error(
        "XNAT refused the service credentials (HTTP {0}): check the username and password in the XNAT Secret"
    )]
    BadCredentials(u16),
    /// 403 to a logged-in account: the credentials are good, the account lacks a role.
    #[error(
        "XNAT answered 403 to {path}: the service account lacks the {role} role it needs (credentials are fine)"
    )]
    MissingRole {
        path: &'static str,
        role: &'static str,
    },
    /// 406, or an answer in a media type the webhook does not read: XNAT offers this resource
    /// in other media types than the webhook asked for (another XNAT version, or a proxy).
    #[error(
        "XNAT will not answer {path} as {asked}{}",
        match got { Some(t) => format!(": it answered {t}"), None => " (406 Not Acceptable)".into() }
    )]
    NotAcceptable {
        path: &'static str,
        asked: &'static str,
        got: Option<String>,
    },
    /// An answer that reads, but cannot be about what was asked (another project's spec).
    #[error("XNAT's answer to {path} cannot be used: {why}")]
    WrongAnswer { path: &'static str, why: String },
    #[error("XNAT answered HTTP {0}")]
    Status(u16),
    #[error("XNAT answered HTML, not JSON (a login page? check the service credentials)")]
    Html,
    #[error("XNAT's answer is not the expected JSON: {0}")]
    BadJson(String),
    #[error("XNAT's answer to {path} is larger than {limit} bytes")]
    TooLarge { path: &'static str, limit: usize },
    #[error("no XNAT request slot free within the admission's budget (XNAT is slow or busy)")]
    Busy,
    #[error("XNAT request failed: {0}")]
    Request(String),
    #[error("cannot read the XNAT credentials: {0}")]
    Credentials(String),
}

impl XnatError {
    /// The `reason` label of `xnat_webhook_xnat_failures_total` and `/readyz`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            XnatError::Timeout(_) => "timeout",
            XnatError::Connect(_) => "connect",
            XnatError::BadCredentials(_) => "bad_credentials",
            XnatError::MissingRole { .. } => "missing_role",
            XnatError::NotAcceptable { .. } => "not_acceptable",
            XnatError::WrongAnswer { .. } => "wrong_answer",
            XnatError::Status(_) => "status",
            XnatError::Html => "html",
            XnatError::BadJson(_) => "bad_json",
            XnatError::TooLarge { .. } => "too_large",
            XnatError::Busy => "busy",
            XnatError::Request(_) => "request",
            XnatError::Credentials(_) => "credentials_file",
        }
    }

    /// The role the service account lacks, when that is the problem.
    pub fn missing_role(&self) -> Option<&'static str> {
        match self {
            XnatError::MissingRole { role, .. } => Some(role),
            _ => None,
        }
    }

    /// Worth another try of an idempotent GET.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            XnatError::Timeout(_) | XnatError::Connect(_) | XnatError::Request(_) => true,
            XnatError::Status(s) => matches!(s, 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xnat::XnatCall;

    fn missing(call: XnatCall) -> XnatError {
        XnatError::MissingRole {
            path: call.path(),
            role: call.role(),
        }
    }

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        assert!(XnatError::Status(503).is_transient());
        assert!(XnatError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(!XnatError::Status(404).is_transient());
        assert!(!XnatError::BadCredentials(401).is_transient());
        assert!(!missing(XnatCall::Groups).is_transient());
        assert!(!XnatError::BadJson(String::new()).is_transient());
    }

    #[test]
    fn a_refusal_says_whether_the_password_or_a_role_is_wrong() {
        let password = XnatError::BadCredentials(401).to_string();
        assert!(password.contains("username and password"), "{password}");
        let role = missing(XnatCall::Groups).to_string();
        assert!(role.contains("lacks the Administrator role"), "{role}");
        assert!(role.contains("/xapi/users/{user}/groups"), "{role}");
        assert!(role.contains("credentials are fine"), "{role}");
        let hub = missing(XnatCall::UserOptions).to_string();
        assert!(hub.contains("JupyterHub (or Administrator)"), "{hub}");
        let refused = XnatError::NotAcceptable {
            path: XnatCall::ArchiveSpec.path(),
            asked: XnatCall::ArchiveSpec.accept(),
            got: None,
        };
        assert_eq!(
            refused.to_string(),
            "XNAT will not answer /data/projects/{id}/archive_spec as text/xml (406 Not Acceptable)"
        );
        assert_eq!(refused.metric_label(), "not_acceptable");
        assert!(!refused.is_transient());
    }
}
