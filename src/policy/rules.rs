//! `rules`: extra env, mounts and resources for users who hold given roles in given projects.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::env::{EnvVar, env_at};
use super::resources::{QuantityText, ResourceSet, resource_set};
use super::storage::{MountFile, MountTemplate, Volume, WORKSPACE_VARS, check_writable};
use super::{PolicyError, invalid};
use crate::names::is_valid_project_id;

/// Extra env, mounts and resources for users who hold given roles in given projects.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleFile {
    /// Shown in logs and errors.
    pub name: String,
    #[serde(rename = "match")]
    pub matches: RuleMatchFile,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub mounts: Vec<RuleMountFile>,
    #[serde(default)]
    pub resources: RuleResourcesFile,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMatchFile {
    /// Project ids; `*` for any project.
    pub projects: Vec<String>,
    /// Roles in one of those projects; empty means any of `xnat.roles`.
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMountFile {
    /// The volume (of `storage.volumes`) it comes from; default the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    pub sub_path: String,
    pub mount_path: String,
    #[serde(default = "yes")]
    pub read_only: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RuleResourcesFile {
    pub requests: BTreeMap<String, QuantityText>,
    pub limits: BTreeMap<String, QuantityText>,
}

/// Extras for users who hold one of `roles` in one of `projects`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// `None` for any project (`*`).
    pub projects: Option<Vec<String>>,
    /// Empty for any of `xnat.roles`.
    pub roles: Vec<String>,
    pub env: Vec<EnvVar>,
    pub mounts: Vec<RuleMount>,
    pub resources: ResourceSet,
}

#[derive(Debug, Clone)]
pub struct RuleMount {
    pub template: MountTemplate,
    pub read_only: bool,
}

impl RuleFile {
    /// Validates the rule at `rules[i]`; its roles must be among the policy's `roles`.
    pub(super) fn validate(
        self,
        i: usize,
        policy_roles: &[String],
        volumes: &[Volume],
    ) -> Result<Rule, PolicyError> {
        let field = format!("rules[{i}]");
        if self.name.trim().is_empty() {
            return Err(invalid(format!("{field}.name"), "must not be empty"));
        }
        let projects = self.matches.projects(&field)?;
        if let Some((j, r)) = self
            .matches
            .roles
            .iter()
            .enumerate()
            .find(|(_, r)| !policy_roles.contains(r))
        {
            return Err(invalid(
                format!("{field}.match.roles[{j}]"),
                format!("{r:?} is not one of xnat.roles, so it never grants access"),
            ));
        }
        let mounts = self
            .mounts
            .into_iter()
            .enumerate()
            .map(|(j, m)| {
                let at = format!("{field}.mounts[{j}]");
                let template = MountFile {
                    volume: m.volume,
                    sub_path: m.sub_path,
                    mount_path: m.mount_path,
                }
                .validate(&at, WORKSPACE_VARS, volumes)?;
                if !m.read_only {
                    check_writable(&at, &template, volumes)?;
                }
                Ok(RuleMount {
                    template,
                    read_only: m.read_only,
                })
            })
            .collect::<Result<_, PolicyError>>()?;
        Ok(Rule {
            name: self.name,
            projects,
            roles: self.matches.roles,
            env: env_at(&format!("{field}.env"), self.env)?,
            mounts,
            resources: resource_set(
                &format!("{field}.resources"),
                self.resources.requests,
                self.resources.limits,
            )?,
        })
    }
}

impl RuleMatchFile {
    /// The project ids, or `None` for `*`.
    fn projects(&self, field: &str) -> Result<Option<Vec<String>>, PolicyError> {
        if self.projects.is_empty() {
            return Err(invalid(
                format!("{field}.match.projects"),
                "must list project ids, or * for any project",
            ));
        }
        if self.projects.iter().any(|p| p == "*") {
            return Ok(None);
        }
        if let Some((j, p)) = self
            .projects
            .iter()
            .enumerate()
            .find(|(_, p)| !is_valid_project_id(p))
        {
            return Err(invalid(
                format!("{field}.match.projects[{j}]"),
                format!("{p:?} is not a project id"),
            ));
        }
        Ok(Some(self.projects.clone()))
    }
}
