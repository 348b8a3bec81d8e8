//! The timeout chain, stated once. Each deadline fits inside the one that waits for it, so a slow
//! XNAT costs a review its data, never the API server's patience:
//!
//! ```text
//! API server's webhook timeout   10 s   timeoutSeconds in deploy/ (the Kubernetes default)
//!  > REQUEST_TIMEOUT               9 s   the server answers 503 itself before the API server gives up
//!  > MAX_XNAT_BUDGET               8 s   all XNAT time of one admission (xnat.budget at most)
//!  > MAX_XNAT_TIMEOUT              5 s   one XNAT request (xnat.timeout at most)
//! ```
//!
//! A replaced XNAT client (a reload changed timeouts or concurrency) keeps its session until
//! [`CLIENT_RETIREMENT`] has passed: longer than any review that started with it can still run.

use std::time::Duration;

/// What the API server waits for an answer (`timeoutSeconds` in deploy/, the Kubernetes default).
pub const API_SERVER_TIMEOUT: Duration = Duration::from_secs(10);
/// An upper bound on one request to the webhook.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(9);
/// The longest XNAT budget per admission the policy may set.
pub const MAX_XNAT_BUDGET: Duration = Duration::from_secs(8);
/// The longest XNAT request timeout the policy may set.
pub const MAX_XNAT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a replaced XNAT client lives on before its session is closed.
pub const CLIENT_RETIREMENT: Duration = Duration::from_secs(10);

const _: () = {
    assert!(REQUEST_TIMEOUT.as_millis() < API_SERVER_TIMEOUT.as_millis());
    assert!(MAX_XNAT_BUDGET.as_millis() < REQUEST_TIMEOUT.as_millis());
    assert!(MAX_XNAT_TIMEOUT.as_millis() <= MAX_XNAT_BUDGET.as_millis());
    assert!(CLIENT_RETIREMENT.as_millis() > REQUEST_TIMEOUT.as_millis());
};
