//! A short content hash, to tell versions apart in logs, `/readyz`, the `policy_info` metric and
//! the pods' status annotation: the first 16 hex digits of the content's SHA-256, the same on
//! every build and what `sha256sum policy.yaml | cut -c1-16` prints. A leaf: the pure policy and
//! the I/O reloaders both name versions with it.

/// The version of `bytes`.
pub fn version_of(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_version_is_what_sha256sum_prints_first() {
        // printf abc | sha256sum
        assert_eq!(super::version_of(b"abc"), "ba7816bf8f01cfea");
    }
}
