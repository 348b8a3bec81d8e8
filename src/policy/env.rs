//! `env`: variables added to the notebook container, as templates.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::template::{Template, Var};
use super::{PolicyError, invalid};
use crate::names::is_env_name;

/// Placeholders env values may use.
const ENV_VARS: &[Var] = &[
    Var::XnatUser,
    Var::JupyterUser,
    Var::ServerName,
    Var::Projects,
    Var::XnatUrl,
];

/// Env var name → value template.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct EnvFile(pub BTreeMap<String, String>);

impl Default for EnvFile {
    fn default() -> Self {
        Self(BTreeMap::from([
            ("XNAT_HOST".into(), "{xnat_url}".into()),
            ("XNAT_USER".into(), "{xnat_user}".into()),
            ("XNAT_PROJECTS".into(), "{projects}".into()),
        ]))
    }
}

#[derive(Debug, Clone)]
pub struct EnvVar {
    pub name: String,
    pub value: Template,
}

/// Validates an env map found at `field` (`env`, or a rule's `env`).
pub(super) fn env_at(field: &str, f: BTreeMap<String, String>) -> Result<Vec<EnvVar>, PolicyError> {
    f.into_iter()
        .map(|(name, value)| {
            let field = format!("{field}.{name}");
            if !is_env_name(&name) {
                return Err(invalid(field, "is not a valid environment variable name"));
            }
            let value = Template::parse(&value, ENV_VARS).map_err(|m| invalid(&field, m))?;
            Ok(EnvVar { name, value })
        })
        .collect()
}
