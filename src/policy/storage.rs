//! `storage`: the shared claim, where each project and the workspace are mounted from and to, and
//! what is never mounted.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::template::{Template, Var};
use super::{PolicyError, invalid};
use crate::names::{
    check_abs_path, check_sub_path, is_dns_label, is_dns_subdomain, is_valid_project_id,
};

/// Placeholders a project mount may use.
const PROJECT_VARS: &[Var] = &[
    Var::Project,
    Var::XnatUser,
    Var::JupyterUser,
    Var::ServerName,
];
/// Placeholders the workspace mount (and a rule's mounts) may use.
pub(super) const WORKSPACE_VARS: &[Var] = &[Var::XnatUser, Var::JupyterUser, Var::ServerName];

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StorageFile {
    /// Name of the pod volume that refers to the shared claim.
    pub volume_name: String,
    /// The shared PVC that holds the XNAT archive and workspaces.
    pub claim_name: String,
    /// One read-only mount per authorised project.
    pub projects: MountFile,
    /// The user's read-write workspace; `null` for none.
    pub workspace: Option<MountFile>,
    /// Project ids never mounted, whatever XNAT says (`ABC*` for a prefix).
    pub never_mount: Vec<String>,
    /// Most project mounts per pod; the rest are left out with a warning naming them.
    pub max_project_mounts: usize,
}

impl Default for StorageFile {
    fn default() -> Self {
        Self {
            volume_name: "xnat-data".into(),
            claim_name: "xnat-gpfs".into(),
            projects: MountFile {
                sub_path: "archive/{project}".into(),
                mount_path: "/data/projects/{project}".into(),
            },
            workspace: Some(MountFile {
                sub_path: "workspaces/users/{xnat_user}".into(),
                mount_path: "/data/xnat/workspace".into(),
            }),
            never_mount: Vec::new(),
            max_project_mounts: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountFile {
    pub sub_path: String,
    pub mount_path: String,
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub volume_name: String,
    pub claim_name: String,
    pub projects: MountTemplate,
    pub workspace: Option<MountTemplate>,
    /// Exact ids, or prefixes written `ABC*`.
    pub never_mount: Vec<String>,
    pub max_project_mounts: usize,
}

impl Storage {
    /// Whether the site's deny list rules this project out.
    pub fn is_never_mounted(&self, project: &str) -> bool {
        self.never_mount.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => project.starts_with(prefix),
            None => p == project,
        })
    }
}

/// A subPath of the claim and where it is mounted, both templates.
#[derive(Debug, Clone)]
pub struct MountTemplate {
    pub sub_path: Template,
    pub mount_path: Template,
}

impl StorageFile {
    pub(super) fn validate(self) -> Result<Storage, PolicyError> {
        if !is_dns_label(&self.volume_name) {
            return Err(invalid(
                "storage.volumeName",
                format!("{:?} is not a DNS-1123 label", self.volume_name),
            ));
        }
        if !is_dns_subdomain(&self.claim_name) {
            return Err(invalid(
                "storage.claimName",
                format!("{:?} is not a PVC name", self.claim_name),
            ));
        }
        let projects = self.projects.validate("storage.projects", PROJECT_VARS)?;
        for (field, t) in [
            ("storage.projects.subPath", &projects.sub_path),
            ("storage.projects.mountPath", &projects.mount_path),
        ] {
            if !t.uses(Var::Project) {
                return Err(invalid(
                    field,
                    "must contain {project}: each project needs its own",
                ));
            }
        }
        let workspace = self
            .workspace
            .map(|w| w.validate("storage.workspace", WORKSPACE_VARS))
            .transpose()?;
        if let Some(w) = &workspace
            && !(w.sub_path.uses(Var::XnatUser) || w.sub_path.uses(Var::JupyterUser))
        {
            return Err(invalid(
                "storage.workspace.subPath",
                "must contain {xnat_user} or {jupyter_user}, or users would share one workspace",
            ));
        }
        for (i, p) in self.never_mount.iter().enumerate() {
            if !is_valid_project_id(p.strip_suffix('*').unwrap_or(p)) {
                return Err(invalid(
                    format!("storage.neverMount[{i}]"),
                    format!("{p:?} is not a project id (or a prefix ending in *)"),
                ));
            }
        }
        if self.max_project_mounts == 0 {
            return Err(invalid(
                "storage.maxProjectMounts",
                "must be at least 1 (use xnat.roles or neverMount to mount none)",
            ));
        }
        Ok(Storage {
            volume_name: self.volume_name,
            claim_name: self.claim_name,
            projects,
            workspace,
            never_mount: self.never_mount,
            max_project_mounts: self.max_project_mounts,
        })
    }
}

impl MountFile {
    /// Parses both templates (only `vars` allowed) and checks their fixed shape: a relative
    /// subPath and an absolute mountPath, neither with empty, `.` or `..` segments.
    pub(super) fn validate(self, field: &str, vars: &[Var]) -> Result<MountTemplate, PolicyError> {
        let sub_field = format!("{field}.subPath");
        let sub_path = Template::parse(&self.sub_path, vars).map_err(|m| invalid(&sub_field, m))?;
        check_sub_path(&sub_path.render_with("x")).map_err(|m| invalid(&sub_field, m))?;
        let mount_field = format!("{field}.mountPath");
        let mount_path =
            Template::parse(&self.mount_path, vars).map_err(|m| invalid(&mount_field, m))?;
        check_abs_path(&mount_path.render_with("x")).map_err(|m| invalid(&mount_field, m))?;
        Ok(MountTemplate {
            sub_path,
            mount_path,
        })
    }
}
