//! A Kubernetes mutating admission webhook that gives stock KubeSpawner notebook pods read-only
//! subPath mounts of exactly the XNAT projects their user may read.
//!
//! The decision is pure ([`classify`] → [`identity`] → [`mutation`], reading [`pod`] views and
//! the typed [`policy`]); the I/O lives at the edges ([`server`], [`tls`], [`xnat`], [`reload`]).
//! [`admission`] wires the two together for one review. No module imports one that imports it
//! back (`tests/architecture.rs`); DEVELOPMENT.md says where new things go.

pub mod access;
pub mod admission;
pub mod archive;
pub mod classify;
pub mod echo;
pub mod events;
pub mod identity;
pub mod launch;
pub mod metrics;
pub mod mutation;
pub mod names;
pub mod pod;
pub mod policy;
pub mod quantity;
pub mod reload;
pub mod review;
pub mod seen;
pub mod serve;
pub mod server;
pub mod sharing;
pub mod telemetry;
pub mod timeouts;
pub mod tls;
pub mod tools;
mod version;
pub mod warning;
pub mod watch;
pub mod xnat;

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
