//! Every rule about what a name or a path piece may be, in one place: Kubernetes object, label,
//! env and resource names, and the path segments, subPaths, usernames and project ids that reach
//! a mount or an XNAT URL. Pure predicates; callers say what to do when one fails.

/// The longest username accepted from a pod annotation or produced by a mapping.
pub const MAX_USERNAME_LEN: usize = 255;

/// A DNS-1123 label (container, volume and namespace names).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain (claim names, label-key prefixes, resource domains).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// An environment variable name every supported Kubernetes accepts: `[-._a-zA-Z][-._a-zA-Z0-9]*`,
/// not `.` or `..` and not starting with `..` (1.32 relaxed this; earlier versions refuse the pod).
pub fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b'.' || b == b'-')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && s != "."
        && !s.starts_with("..")
}

/// The name part of a label or annotation key, or a label value: at most 63 characters,
/// alphanumeric at both ends, `-`, `_`, `.` inside.
pub fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// `[prefix/]name`, as label and annotation keys are: the prefix a DNS subdomain.
pub fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_part(name),
        None => is_name_part(s),
    }
}

/// A label value: empty, or a name part.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_name_part(s)
}

/// `domain/name`, as extended resources (`nvidia.com/gpu`) are named.
pub fn is_extended_resource_name(s: &str) -> bool {
    s.split_once('/').is_some_and(|(domain, name)| {
        is_dns_subdomain(domain)
            && !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    })
}

/// A container resource the policy may set: the standard ones, hugepages, or an extended one.
pub fn is_resource_name(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("hugepages-")
        || is_extended_resource_name(name)
}

/// Extended resources (`vendor/name`) and hugepages must have requests equal to limits, so only
/// limits are set (Kubernetes sets the request equal).
pub fn requests_equal_limits(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-")
}

/// A relative path with no empty, `.` or `..` segment. Applied to templates at load and to every
/// rendered subPath again at admission.
pub fn check_sub_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if path.starts_with('/') {
        return Err("must be relative (no leading /)".into());
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!("{path:?} has an empty, `.` or `..` segment"));
    }
    Ok(())
}

/// An absolute path whose segments pass [`check_sub_path`] (a mountPath, an XNAT-side prefix).
pub fn check_abs_path(path: &str) -> Result<(), String> {
    match path.strip_prefix('/') {
        Some(rest) => check_sub_path(rest),
        None => Err("must be an absolute path".into()),
    }
}

/// Whether a username (raw or mapped) may be used at all: non-empty, bounded, not `.` or `..`
/// (a URL path would resolve them), no control characters and no `/` or `\`. It still has to
/// pass [`is_safe_segment`] to reach a subPath.
pub fn is_acceptable_username(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= MAX_USERNAME_LEN
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
}

/// Whether `s` is safe as one path segment of a subPath or an XNAT URL: ASCII letters, digits
/// and `. _ ' @ + -`, at most 255 bytes, and not `.` or `..`. That is everything XNAT's own rule
/// admits (`[a-zA-Z][A-Za-z0-9-_'.]{0,63}`, so `dave_o'neil`) plus the `@` and `+` of e-mail names
/// from LDAP or OpenID; none of them separates a path or a URL segment (`'` is percent-encoded in
/// URLs). Anything else never reaches a mount or a URL.
pub fn is_safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s != "."
        && s != ".."
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'\'' | b'@' | b'+' | b'-')
        })
}

/// Whether `s` is an XNAT project id we are willing to mount: ASCII letters, digits, `_`, `-`.
///
/// XNAT itself checks `^[A-z0-9_-]+$`, whose `[A-z]` also admits `[ \ ] ^` and a backtick; those
/// are refused here whatever XNAT says.
pub fn is_valid_project_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Words of env var names that say the value is a secret (a name's words are split at `_`, `.`,
/// `-` and lower-to-upper case; compared ignoring case): `review` never prints such a value, and
/// `userOptions.secrets` decides whether a launch context's reach the pod. Documented in
/// docs/behaviour.md and docs/admin-tools.md.
pub const SECRET_NAME_WORDS: &[&str] = &[
    "PASS",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "TOKEN",
    "SECRET",
    "KEY",
    "APIKEY",
    "ALIAS",
    "CREDENTIAL",
    "CREDENTIALS",
    "AUTH",
    "PRIVATE",
];

/// A name's words: `MY_API_KEY` → MY, API, KEY; `apiKey` → api, Key.
fn name_words(name: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = 0;
    let bytes = name.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let boundary = !b.is_ascii_alphanumeric()
            || (i > 0 && b.is_ascii_uppercase() && bytes[i - 1].is_ascii_lowercase());
        if boundary {
            if start < i {
                words.push(&name[start..i]);
            }
            start = if b.is_ascii_alphanumeric() { i } else { i + 1 };
        }
    }
    if start < name.len() {
        words.push(&name[start..]);
    }
    words
}

/// Whether an env var's name says its value is a secret: one of its words is in
/// [`SECRET_NAME_WORDS`].
pub fn is_secret_name(name: &str) -> bool {
    name_words(name)
        .iter()
        .any(|w| SECRET_NAME_WORDS.iter().any(|s| s.eq_ignore_ascii_case(w)))
}

/// Whether an env var's name *may* say its value is a secret: one of
/// [`SECRET_NAME_WORDS`] appears anywhere in it, in any case (`XNATPASS`, `DB_PASSWORD2`, and
/// `KEYBOARD` too). Used where passing a secret on would be worse than holding back a harmless
/// value: a launch context's env for a caller that was not verified.
pub fn may_be_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_WORDS.iter().any(|w| upper.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_words_anywhere_may_be_secrets() {
        for name in [
            "XNAT_PASS",
            "XNATPASS",
            "GITHUBTOKEN",
            "DB_PASSWORD2",
            "apikey",
            "KEYBOARD",
        ] {
            assert!(may_be_secret_name(name), "{name}");
        }
        for name in [
            "XNAT_HOST",
            "XNAT_DATA",
            "XNAT_ITEM_ID",
            "NB_USER",
            "XDG_CONFIG_HOME",
        ] {
            assert!(!may_be_secret_name(name), "{name}");
        }
    }

    #[test]
    fn safe_segments() {
        for ok in [
            "alice",
            "Bob.Smith@uni.edu.au",
            "aaf_9f8e7d6c",
            "gpu-analysis",
            "a+b",
            // XNAT's rule admits an apostrophe.
            "dave_o'neil",
        ] {
            assert!(is_safe_segment(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "a\\b",
            "a\0b",
            "a;b",
            "a%2Fb",
            "a\"b",
            "a`b",
            "ü",
            &"x".repeat(256),
        ] {
            assert!(!is_safe_segment(bad), "{bad:?}");
        }
    }

    #[test]
    fn project_ids() {
        assert!(is_valid_project_id("ALPHA"));
        assert!(is_valid_project_id("Proj_01-b"));
        for bad in ["", "..", "../etc", "a/b", "a b", "A^B", "A`B", "A[B", "A.B"] {
            assert!(!is_valid_project_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn acceptable_usernames() {
        assert!(is_acceptable_username("Bob.Smith@uni.edu.au"));
        assert!(!is_acceptable_username(""));
        assert!(!is_acceptable_username(".."));
        assert!(!is_acceptable_username("a/b"));
        assert!(!is_acceptable_username("a\nb"));
        assert!(!is_acceptable_username(&"x".repeat(256)));
    }

    #[test]
    fn sub_paths_and_absolute_paths() {
        assert!(check_sub_path("archive/ALPHA").is_ok());
        for bad in ["", "/a", "a//b", "a/./b", "a/../b", "a/"] {
            assert!(check_sub_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_abs_path("/data/projects").is_ok());
        for bad in ["data", "/", "//", "/a/../b"] {
            assert!(check_abs_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kubernetes_names() {
        assert!(is_dns_label("notebook"));
        assert!(!is_dns_label("Bad_Name"));
        assert!(is_qualified_name("hub.jupyter.org/username"));
        assert!(!is_qualified_name("bad key"));
        assert!(is_extended_resource_name("nvidia.com/gpu"));
        assert!(!is_extended_resource_name("gpu"));
        assert!(is_resource_name("hugepages-2Mi") && is_resource_name("cpu"));
        assert!(is_env_name("XNAT_HOST") && !is_env_name("1BAD"));
    }

    #[test]
    fn env_names_valid_on_every_supported_kubernetes() {
        for ok in ["XNAT_HOST", "my.env-name", "_x", "-x", ".x"] {
            assert!(is_env_name(ok), "{ok}");
        }
        // Before Kubernetes 1.32 relaxed them, names could not be `.`, `..` or start with `..`.
        for bad in ["", ".", "..", "..x", "1X", "A B", "A=B", "É"] {
            assert!(!is_env_name(bad), "{bad:?}");
        }
    }
}
