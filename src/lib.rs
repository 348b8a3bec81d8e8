//! A Kubernetes mutating admission webhook that gives stock KubeSpawner notebook pods read-only
//! subPath mounts of exactly the XNAT projects their user may read.
//!
//! The decision is pure ([`classify`] → [`identity`] → [`mutation`], reading [`pod`] views and
//! the typed [`policy`]); the I/O lives at the edges ([`server`], [`tls`], [`xnat`], [`reload`]).
//! [`admission`] wires the two together for one review. No module imports one that imports it
//! back (`tests/it/architecture.rs`); DEVELOPMENT.md says where new things go.

// The front door: what the binary, the stand-in, the fuzz targets and the tests use. Everything
// else is the crate's own (`pub` inside a private module reaches no further than the crate).
pub mod admission;
pub mod events;
pub mod mutation;
pub mod policy;
pub mod serve;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod tools;
pub mod xnat;

mod access;
mod archive;
mod classify;
mod echo;
mod identity;
mod launch;
mod metrics;
mod names;
mod pod;
mod quantity;
mod reload;
mod review;
mod seen;
mod sharing;
mod timeouts;
mod version;
mod warning;
mod watch;

// The vocabulary the decision reads, for callers that build its inputs (tests, fuzz targets).
pub use access::{AccessEntry, AccessOutcome, PROJECT_ROLES, UserAccess};
pub use archive::{AbsentDirs, ArchiveSpec, ProjectRoot, Seen, archive_spec_of};
pub use launch::{Launch, UserOptions};
pub use names::{
    is_label_value, is_qualified_name, is_safe_segment, is_valid_project_id, may_be_secret_name,
};
pub use pod::{PodMeta, PodView};
pub use quantity::{Amount, Quantity};
pub use review::parse as parse_review;
pub use seen::{DirProbe, Found};
pub use sharing::{Confirmed, SharedExperiment};
pub use timeouts::API_SERVER_TIMEOUT;

/// Installs `ring` as the process-wide rustls crypto provider, once.
///
/// Both the TLS server and the XNAT client (reqwest with `rustls-no-provider`) use the process
/// default, so the choice is made in one place; `ring` builds with nothing beyond a C compiler.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err only means another provider was installed first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
