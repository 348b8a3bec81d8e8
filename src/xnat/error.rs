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
        assert!(!XnatError::Unauthorized(401).is_transient());
        assert!(!XnatError::BadJson(String::new()).is_transient());
    }
}
