//! Who a notebook pod belongs to: the raw JupyterHub username and the XNAT username it maps to.

use std::borrow::Cow;
use std::fmt;

use regex::Regex;

use crate::names::{is_acceptable_username, is_safe_segment};
use crate::pod::PodMeta;

/// One step of the JupyterHub → XNAT username mapping. Steps run in order.
#[derive(Debug, Clone)]
pub enum MappingStep {
    /// `Bob.Smith@Uni.edu.au` → `bob.smith@uni.edu.au`.
    Lowercase,
    /// `bob@uni.edu.au` → `bob`, but only for the listed domains (case-insensitive) when any are
    /// listed: stripping every domain would let `alice@elsewhere.org` become `alice`.
    StripDomain { domains: Vec<String> },
    /// When `regex` matches the whole name (the policy anchors it), the name becomes
    /// `replacement` with `$1`/`$name` expanded; otherwise the step leaves the name as it is.
    Regex { regex: Regex, replacement: String },
}

/// The configured mapping; empty means the XNAT username is the JupyterHub username.
#[derive(Debug, Clone, Default)]
pub struct UsernameMapping {
    /// A pod annotation whose value, when present, replaces the JupyterHub username as input.
    pub annotation: Option<String>,
    pub steps: Vec<MappingStep>,
}

impl UsernameMapping {
    /// Maps a JupyterHub username to an XNAT username. Borrows when no step changes anything, so
    /// the common identity mapping allocates nothing. [`Self::resolve`] is the one caller that
    /// also checks the result.
    pub fn apply<'a>(&self, jupyter_user: &'a str) -> Cow<'a, str> {
        let mut name = Cow::Borrowed(jupyter_user);
        for step in &self.steps {
            match step {
                // ASCII only: Unicode folding maps U+212A KELVIN SIGN to `k`, so "Karl" with a
                // Kelvin sign would become somebody else's `karl`.
                MappingStep::Lowercase => {
                    if name.bytes().any(|b| b.is_ascii_uppercase()) {
                        name = Cow::Owned(name.to_ascii_lowercase());
                    }
                }
                MappingStep::StripDomain { domains } => {
                    if let Some((local, domain)) = name.rsplit_once('@') {
                        let strip = domains.is_empty()
                            || domains.iter().any(|d| d.eq_ignore_ascii_case(domain));
                        if strip {
                            name = Cow::Owned(local.to_owned());
                        }
                    }
                }
                MappingStep::Regex { regex, replacement } => {
                    if let Some(caps) = regex.captures(&name) {
                        let mut out = String::new();
                        caps.expand(replacement, &mut out);
                        name = Cow::Owned(out);
                    }
                }
            }
        }
        name
    }
}

/// Why a notebook pod has no usable XNAT username: it passes unchanged, with this warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// The hub's XNAT-username annotation is present but not a usable name.
    Annotation,
    /// The JupyterHub username (given) maps to a name that is not safe in a URL or a path.
    Mapped(String),
    /// The name to map (given) is not ASCII. XNAT usernames are; a mapping that turned a
    /// non-ASCII name into an ASCII one could make it somebody else's.
    NotAscii(String),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::Annotation => f.write_str(
                "the XNAT username annotation is not a usable username; no XNAT data attached",
            ),
            Unusable::Mapped(user) => write!(
                f,
                "username {user:?} maps to an unusable XNAT username; no XNAT data attached"
            ),
            Unusable::NotAscii(user) => write!(
                f,
                "username {user:?} is not ASCII, as XNAT usernames are; no XNAT data attached"
            ),
        }
    }
}

impl UsernameMapping {
    /// The XNAT username of a notebook pod: the hub's annotation when the policy names one and
    /// the pod has it, else the JupyterHub username, through the mapping steps.
    ///
    /// A present but unusable annotation never falls back to the JupyterHub name (that could be
    /// somebody else's XNAT account), and the result must be a safe path segment: anything else
    /// (`;`, `/`, `..`) could make the XNAT URL ask about somebody else.
    pub fn resolve<'a>(
        &self,
        jupyter_user: &'a str,
        meta: &'a PodMeta<'a>,
    ) -> Result<Cow<'a, str>, Unusable> {
        let annotated = self.annotation.as_deref().and_then(|a| meta.annotation(a));
        if annotated.is_some_and(|v| !is_acceptable_username(v)) {
            return Err(Unusable::Annotation);
        }
        let source = annotated.unwrap_or(jupyter_user);
        if !source.is_ascii() {
            return Err(Unusable::NotAscii(source.to_owned()));
        }
        let xnat_user = self.apply(source);
        if !is_safe_segment(&xnat_user) {
            return Err(Unusable::Mapped(jupyter_user.to_owned()));
        }
        Ok(xnat_user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(steps: Vec<MappingStep>) -> UsernameMapping {
        UsernameMapping {
            annotation: None,
            steps,
        }
    }

    #[test]
    fn identity_mapping_borrows() {
        let m = UsernameMapping::default();
        assert!(matches!(m.apply("Bob.Smith@uni.edu.au"), Cow::Borrowed(_)));
    }

    #[test]
    fn lowercase_then_strip_listed_domain() {
        let m = mapping(vec![
            MappingStep::Lowercase,
            MappingStep::StripDomain {
                domains: vec!["uni.edu.au".into()],
            },
        ]);
        assert_eq!(m.apply("Bob.Smith@Uni.EDU.au"), "bob.smith");
        assert_eq!(m.apply("alice@elsewhere.org"), "alice@elsewhere.org");
        assert_eq!(m.apply("carol"), "carol");
    }

    #[test]
    fn strip_any_domain_when_none_listed() {
        let m = mapping(vec![MappingStep::StripDomain { domains: vec![] }]);
        assert_eq!(m.apply("alice@elsewhere.org"), "alice");
    }

    #[test]
    fn regex_replaces_whole_name_only_on_match() {
        let m = mapping(vec![MappingStep::Regex {
            regex: Regex::new(r"^(?P<sub>[0-9a-f]+)@aaf\.edu\.au$").unwrap(),
            replacement: "aaf_$sub".into(),
        }]);
        assert_eq!(m.apply("9f8e7d6c@aaf.edu.au"), "aaf_9f8e7d6c");
        assert_eq!(m.apply("bob@uni.edu.au"), "bob@uni.edu.au");
    }

    #[test]
    fn case_folding_is_ascii_only_and_non_ascii_names_are_refused() {
        let m = mapping(vec![MappingStep::Lowercase]);
        // U+212A KELVIN SIGN lowercases to `k` in Unicode: "Karl" must not become karl.
        let kelvin = "\u{212A}arl";
        assert_ne!(m.apply(kelvin), "karl");
        let meta: PodMeta = serde_json::from_str("{}").unwrap();
        assert!(matches!(
            m.resolve(kelvin, &meta),
            Err(Unusable::NotAscii(_))
        ));
        // A regex that keeps only ASCII cannot turn a non-ASCII name into somebody else's.
        let strip = mapping(vec![MappingStep::Regex {
            regex: Regex::new(r"^(?P<a>[a-z]+).*$").unwrap(),
            replacement: "$a".into(),
        }]);
        assert!(strip.resolve("karl\u{00e9}", &meta).is_err());
        assert_eq!(strip.resolve("karl", &meta).unwrap(), "karl");
    }
}
