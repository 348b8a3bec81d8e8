//! What can go wrong talking to XNAT, said without ever carrying the credentials.

use std::time::Duration;

/// The largest XNAT answer read; a group list is a few kilobytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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

/// What a 403 from one of the endpoints the webhook calls means: the path (as the admin reads it
/// in XNAT's API docs) and the site role the service account lacks (`UserXapiAuthorization`,
/// `DataAccessApi`, the plugin's `JupyterHubApi`).
pub fn required_role(endpoint: &str) -> (&'static str, &'static str) {
    match endpoint {
        "groups" => ("/xapi/users/{user}/groups", "Administrator"),
        "access" => ("/xapi/access/{user}/projects", "Administrator"),
        "user_options" => (
            "/xapi/jupyterhub/users/{user}/server/…/user-options",
            "JupyterHub (or Administrator)",
        ),
        "roles" => ("/xapi/users/{user}/roles", "Administrator"),
        "accessibility" => ("/data/projects/{id}/accessibility", "Administrator"),
        "experiment" => ("/data/experiments/{id}", "Administrator"),
        "archive_spec" => ("/data/projects/{id}/archive_spec", "Administrator"),
        "projects" => ("/data/projects", "Administrator"),
        "project_users" => ("/data/projects/{id}/users", "Administrator"),
        _ => ("this endpoint", "Administrator"),
    }
}

impl XnatError {
    /// The `reason` label of `xnat_webhook_xnat_failures_total` and `/readyz`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            XnatError::Timeout(_) => "timeout",
            XnatError::Connect(_) => "connect",
            XnatError::BadCredentials(_) => "bad_credentials",
            XnatError::MissingRole { .. } => "missing_role",
            XnatError::Status(_) => "status",
            XnatError::Html => "html",
            XnatError::BadJson(_) => "bad_json",
            XnatError::TooLarge => "too_large",
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

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        assert!(XnatError::Status(503).is_transient());
        assert!(XnatError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(!XnatError::Status(404).is_transient());
        assert!(!XnatError::BadCredentials(401).is_transient());
        let (path, role) = required_role("groups");
        assert!(!XnatError::MissingRole { path, role }.is_transient());
        assert!(!XnatError::BadJson(String::new()).is_transient());
    }

    #[test]
    fn a_refusal_says_whether_the_password_or_a_role_is_wrong() {
        let password = XnatError::BadCredentials(401).to_string();
        assert!(password.contains("username and password"), "{password}");
        let (path, role) = required_role("groups");
        let role = XnatError::MissingRole { path, role }.to_string();
        assert!(role.contains("lacks the Administrator role"), "{role}");
        assert!(role.contains("/xapi/users/{user}/groups"), "{role}");
        assert!(role.contains("credentials are fine"), "{role}");
        let (path, role) = required_role("user_options");
        let hub = XnatError::MissingRole { path, role }.to_string();
        assert!(hub.contains("JupyterHub (or Administrator)"), "{hub}");
    }
}
