//! `identity`: from the JupyterHub username to the XNAT username.

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PolicyError, invalid};
use crate::identity::{MappingStep, UsernameMapping};
use crate::names::is_qualified_name;

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IdentityFile {
    /// A pod annotation (set by the hub, e.g. from auth_state via KubeSpawner's
    /// `extra_annotations`) whose value, when present, is used instead of the JupyterHub
    /// username as the input of `mapping`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xnat_username_annotation: Option<String>,
    /// Steps from the JupyterHub username to the XNAT username, in order. Written as
    /// `- lowercase` or `- regex: {…}` (a one-key map), not as YAML tags.
    #[serde(with = "serde_yaml_ng::with::singleton_map_recursive")]
    #[schemars(with = "Vec<MappingStepFile>")]
    pub mapping: Vec<MappingStepFile>,
    /// When XNAT has no login equal to the (mapped) name, use the one XNAT login that differs
    /// from it only in case (XNAT logins are case-sensitive; JupyterHub lowercases names by
    /// default); none when several do. Read from XNAT's login list (`/xapi/users`), cached.
    pub resolve_login_case: bool,
}

impl Default for IdentityFile {
    fn default() -> Self {
        Self {
            xnat_username_annotation: None,
            mapping: Vec::new(),
            resolve_login_case: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum MappingStepFile {
    Lowercase,
    StripDomain {
        #[serde(default)]
        domains: Vec<String>,
    },
    Regex {
        pattern: String,
        replacement: String,
    },
}

impl IdentityFile {
    pub(super) fn validate(self) -> Result<UsernameMapping, PolicyError> {
        if let Some(a) = &self.xnat_username_annotation
            && !is_qualified_name(a)
        {
            return Err(invalid(
                "identity.xnatUsernameAnnotation",
                format!("{a:?} is not an annotation key"),
            ));
        }
        let steps = self
            .mapping
            .into_iter()
            .enumerate()
            .map(|(i, step)| step.validate(&format!("identity.mapping[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(UsernameMapping {
            annotation: self.xnat_username_annotation,
            steps,
        })
    }
}

impl MappingStepFile {
    fn validate(self, field: &str) -> Result<MappingStep, PolicyError> {
        match self {
            MappingStepFile::Lowercase => Ok(MappingStep::Lowercase),
            MappingStepFile::StripDomain { domains } => {
                if let Some(d) = domains.iter().find(|d| d.is_empty() || d.contains('@')) {
                    return Err(invalid(
                        format!("{field}.stripDomain.domains"),
                        format!("{d:?} is not a domain"),
                    ));
                }
                Ok(MappingStep::StripDomain { domains })
            }
            MappingStepFile::Regex {
                pattern,
                replacement,
            } => {
                // Anchored: the pattern must match the whole name, or `x@aaf.edu.au.evil.org`
                // would map like `x@aaf.edu.au`.
                let regex = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| invalid(format!("{field}.regex.pattern"), e.to_string()))?;
                check_replacement(&regex, &replacement)
                    .map_err(|m| invalid(format!("{field}.regex.replacement"), m))?;
                Ok(MappingStep::Regex { regex, replacement })
            }
        }
    }
}

/// Every `$1`, `$name` or `${name}` in a replacement must name a group of the pattern; the regex
/// crate would quietly expand an unknown one to nothing.
fn check_replacement(regex: &Regex, replacement: &str) -> Result<(), String> {
    let mut rest = replacement;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            rest = r;
            continue;
        }
        let (name, tail) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').ok_or("unclosed `${` in the replacement")?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let known = match name.parse::<usize>() {
            Ok(n) => n < regex.captures_len(),
            Err(_) => regex.capture_names().flatten().any(|n| n == name),
        };
        if name.is_empty() || !known {
            return Err(format!(
                "`${name}` is not a group of the pattern (write `$$` for a literal `$`)"
            ));
        }
        rest = tail;
    }
    Ok(())
}
