//! Who sent a review, and how much of the webhook they may take: the API server comes first.
//!
//! The webhook can tell the API server from anybody else in two ways: a client certificate the
//! configured client CA verified (`--client-ca`), or an address in the control plane's ranges
//! the site names (`--control-plane`, the CIDRs `deploy/components/control-plane-only` lets in).
//! When it can tell ([`Trust::distinguishes`]), capacity is reserved for those callers
//! (connection slots, review bytes, XNAT slots) and only they get Events posted: a flood from
//! other pods shares the rest and can never push the API server out. When it cannot, everyone
//! shares everything, as they must: any of them may be the API server.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Who sent a review: the peer address, whether it presented a client certificate the
/// configured client CA verified, and whether its address is the control plane's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub addr: SocketAddr,
    pub verified: bool,
    pub control_plane: bool,
}

impl Caller {
    /// The offline tools: no network, nobody to verify.
    pub fn offline() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            verified: false,
            control_plane: false,
        }
    }

    /// The API server as far as the webhook can tell: it gets the reserved capacity and Events.
    pub fn is_first(&self) -> bool {
        self.verified || self.control_plane
    }
}

/// How callers are told apart: the control plane's address ranges, and whether every client
/// must present a certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    control_plane: Vec<IpNet>,
    client_ca: bool,
}

/// A `--control-plane` value that is not a CIDR (or address).
#[derive(Debug, thiserror::Error)]
#[error("--control-plane {value:?}: not a CIDR such as 10.0.0.0/28 or an address ({why})")]
pub struct BadCidr {
    value: String,
    why: String,
}

impl Trust {
    pub fn new(control_plane: Vec<IpNet>, client_ca: bool) -> Self {
        Self {
            control_plane,
            client_ca,
        }
    }

    /// Parses `--control-plane` values: CIDRs or single addresses, comma-separated or repeated.
    pub fn parse_cidrs<'a>(
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<IpNet>, BadCidr> {
        let mut nets = Vec::new();
        for piece in values.into_iter().flat_map(|v| v.split(',')) {
            let piece = piece.trim();
            if piece.is_empty() {
                continue;
            }
            let net = piece
                .parse::<IpNet>()
                .or_else(|e| piece.parse::<IpAddr>().map(IpNet::from).map_err(|_| e))
                .map_err(|e| BadCidr {
                    value: piece.to_owned(),
                    why: e.to_string(),
                })?;
            nets.push(net);
        }
        Ok(nets)
    }

    /// Whether the address is in the control plane's ranges (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address, as a dual-stack listener reports it).
    pub fn is_control_plane(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.control_plane.iter().any(|net| net.contains(&ip))
    }

    /// Whether some callers can be told to be the API server, so capacity can be reserved.
    pub fn distinguishes(&self) -> bool {
        self.client_ca || !self.control_plane.is_empty()
    }

    /// Whether addresses alone tell the API server apart (connection slots are given out before
    /// any certificate is seen).
    pub fn by_address(&self) -> bool {
        !self.control_plane.is_empty()
    }

    pub fn control_plane(&self) -> &[IpNet] {
        &self.control_plane
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_addresses_are_read_and_matched() {
        let nets = Trust::parse_cidrs(["10.0.0.0/28, 192.0.2.7", "fd00::/64"]).unwrap();
        let trust = Trust::new(nets, false);
        assert!(trust.distinguishes() && trust.by_address());
        assert!(trust.is_control_plane("10.0.0.15".parse().unwrap()));
        assert!(!trust.is_control_plane("10.0.0.16".parse().unwrap()));
        assert!(trust.is_control_plane("192.0.2.7".parse().unwrap()));
        assert!(trust.is_control_plane("::ffff:10.0.0.1".parse().unwrap()));
        assert!(trust.is_control_plane("fd00::1".parse().unwrap()));
        let e = Trust::parse_cidrs(["10.0.0.0/33"]).unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/33"), "{e}");
        assert!(!Trust::default().distinguishes());
        assert!(Trust::new(vec![], true).distinguishes());
    }
}
