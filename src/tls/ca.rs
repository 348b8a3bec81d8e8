//! The configured CA: the bundle the API server trusts for the webhook (the webhook
//! configuration's caBundle), which is the Secret's `ca.crt` beside the certificate (cert-manager's
//! CA injector copies it there; certs/webhook-certs.sh writes both) or `--tls-ca`. A serving
//! certificate it did not issue would serve, and every call of the API server would then fail its
//! handshake; so one is refused, at start and on reload.

use std::path::Path;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;

use super::Leaf;

/// The CAs in the PEM bundle at `path` (several during a CA rotation).
pub fn read_bundle(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(roots)
}

/// `Err` saying why when `chain` (leaf first, then intermediates) does not verify against
/// `roots` as a TLS client verifies it, for every name the leaf covers. `leaf` was already
/// checked to be valid now, within the clock skew it allows.
pub fn check_issued(
    chain: &[CertificateDer<'_>],
    leaf: &Leaf,
    roots: &RootCertStore,
    now: SystemTime,
) -> Result<(), String> {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err("no certificate".into());
    };
    let parsed = ParsedCertificate::try_from(end_entity).map_err(|e| e.to_string())?;
    let at = UnixTime::since_unix_epoch(
        now.max(leaf.not_before)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let algorithms = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        intermediates,
        at,
        algorithms,
    )
    .map_err(|e| why(&e))?;
    let names = leaf
        .dns_names
        .iter()
        .filter_map(|d| ServerName::try_from(d.as_str()).ok());
    let ips = leaf
        .ips
        .iter()
        .map(|ip| ServerName::IpAddress((*ip).into()));
    for name in names.chain(ips) {
        rustls::client::verify_server_name(&parsed, &name)
            .map_err(|e| format!("not valid for {}: {}", name.to_str(), why(&e)))?;
    }
    Ok(())
}

/// What a verification error means here.
fn why(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "no CA in the bundle issued it".into()
        }
        rustls::Error::InvalidCertificate(C::BadSignature) => {
            "its signature does not verify with the issuing CA's key".into()
        }
        other => other.to_string(),
    }
}
