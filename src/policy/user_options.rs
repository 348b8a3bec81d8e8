//! `userOptions`: whether and how the launch context XNAT's JupyterHub plugin stores is used.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PolicyError, invalid};
use crate::names::{check_abs_path, check_sub_path, is_extended_resource_name};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct UserOptionsFile {
    /// Read the plugin's stored launch context and, when there is one, mount what it says.
    pub enabled: bool,
    /// Mount what the plugin says even outside the projects the user can read.
    pub trust_plugin: bool,
    /// Extended resource a `generic_resources.gpu` request becomes.
    pub gpu_resource: String,
    /// XNAT-side path prefixes and the subPaths of the data claim they live at.
    pub path_mappings: Vec<PathMappingFile>,
    /// Launch-context env vars whose names say they hold secrets (XNAT_PASS, *TOKEN*, …):
    /// passed on always, only to reviews from a caller whose client certificate was verified
    /// (`--client-ca`), or never.
    pub secrets: SecretsPolicy,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SecretsPolicy {
    /// Always pass them on, as the plugin's own hub hook does.
    Pass,
    /// Only when the review came with a client certificate the webhook verified: a forged
    /// review can then never read a user's token back.
    VerifiedCaller,
    /// Never pass them on.
    Drop,
}

impl Default for UserOptionsFile {
    fn default() -> Self {
        Self {
            enabled: false,
            trust_plugin: false,
            gpu_resource: "nvidia.com/gpu".into(),
            path_mappings: vec![
                PathMappingFile {
                    xnat_path: "/data/xnat/archive".into(),
                    sub_path: "archive".into(),
                    scope: MountScope::Project,
                },
                PathMappingFile {
                    xnat_path: "/data/xnat/workspaces/users".into(),
                    sub_path: "workspaces/users".into(),
                    scope: MountScope::User,
                },
            ],
            secrets: SecretsPolicy::VerifiedCaller,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMappingFile {
    /// XNAT-side prefix (a mount's `source` must be this path or below it).
    pub xnat_path: String,
    /// Where that prefix lives in the data claim.
    pub sub_path: String,
    /// What the first path segment below the prefix must be.
    pub scope: MountScope,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MountScope {
    /// A project id the user can read; always mounted read-only.
    Project,
    /// The user's own XNAT username.
    User,
}

#[derive(Debug, Clone)]
pub struct UserOptionsPolicy {
    pub enabled: bool,
    pub trust_plugin: bool,
    pub gpu_resource: String,
    pub path_mappings: Vec<PathMapping>,
    pub secrets: SecretsPolicy,
}

#[derive(Debug, Clone)]
pub struct PathMapping {
    /// Normalised, without a trailing `/`.
    pub xnat_path: String,
    pub sub_path: String,
    pub scope: MountScope,
}

impl UserOptionsFile {
    pub(super) fn validate(self) -> Result<UserOptionsPolicy, PolicyError> {
        let path_mappings = self
            .path_mappings
            .into_iter()
            .enumerate()
            .map(|(i, m)| m.validate(&format!("userOptions.pathMappings[{i}]")))
            .collect::<Result<_, _>>()?;
        if !is_extended_resource_name(&self.gpu_resource) {
            return Err(invalid(
                "userOptions.gpuResource",
                format!(
                    "{:?} is not an extended resource name (e.g. nvidia.com/gpu)",
                    self.gpu_resource
                ),
            ));
        }
        Ok(UserOptionsPolicy {
            enabled: self.enabled,
            trust_plugin: self.trust_plugin,
            gpu_resource: self.gpu_resource,
            path_mappings,
            secrets: self.secrets,
        })
    }
}

impl PathMappingFile {
    fn validate(self, field: &str) -> Result<PathMapping, PolicyError> {
        let xnat_path = self.xnat_path.trim_end_matches('/');
        if check_abs_path(xnat_path).is_err() {
            return Err(invalid(
                format!("{field}.xnatPath"),
                format!(
                    "{:?} is not an absolute path without `.`/`..` segments",
                    self.xnat_path
                ),
            ));
        }
        check_sub_path(&self.sub_path).map_err(|e| invalid(format!("{field}.subPath"), e))?;
        Ok(PathMapping {
            xnat_path: xnat_path.to_owned(),
            sub_path: self.sub_path,
            scope: self.scope,
        })
    }
}
