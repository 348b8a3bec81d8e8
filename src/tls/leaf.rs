//! What a serving certificate says about itself: when it is valid and which names it covers.
//! Checked at start and before a renewed certificate replaces the served one, so a reload never
//! swaps in a certificate the API server would refuse (expired, or for another name).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// Clocks differ: a certificate issued a moment ago may start a little in our future.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The leaf certificate's validity and subject alternative names.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub dns_names: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl Leaf {
    pub fn parse(der: &CertificateDer<'_>) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let time = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
        let validity = cert.validity();
        let mut leaf = Self {
            not_before: time(validity.not_before.timestamp()),
            not_after: time(validity.not_after.timestamp()),
            dns_names: BTreeSet::new(),
            ips: BTreeSet::new(),
        };
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| format!("unreadable subject alternative names: {e}"))?;
        for name in sans.iter().flat_map(|s| s.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(d) => {
                    leaf.dns_names.insert(d.to_ascii_lowercase());
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).map(IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*b).map(IpAddr::from).ok(),
                        _ => None,
                    };
                    leaf.ips.extend(ip);
                }
                _ => {}
            }
        }
        Ok(leaf)
    }

    /// `Err` with the reason when the certificate is not valid at `now`.
    pub fn check_valid_at(&self, now: SystemTime) -> Result<(), String> {
        if now > self.not_after {
            return Err(format!(
                "expired at {}",
                humantime::format_rfc3339(self.not_after)
            ));
        }
        if now + CLOCK_SKEW < self.not_before {
            return Err(format!(
                "not valid before {}",
                humantime::format_rfc3339(self.not_before)
            ));
        }
        Ok(())
    }

    /// The names `earlier` covered that this certificate does not.
    pub fn missing_names(&self, earlier: &Leaf) -> Vec<String> {
        let dns = earlier.dns_names.difference(&self.dns_names).cloned();
        let ips = earlier.ips.difference(&self.ips).map(IpAddr::to_string);
        dns.chain(ips).collect()
    }
}
