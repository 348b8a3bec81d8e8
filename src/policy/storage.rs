//! `storage`: the claims mounts come from, where each project and the workspace are mounted from
//! and to, and what is never mounted. Every mount names its volume; the first volume is the
//! default, so a one-claim policy names none.

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
    Var::Arc,
    Var::XnatUser,
    Var::JupyterUser,
    Var::ServerName,
];
/// Placeholders the workspace mount (and a rule's mounts) may use.
pub(super) const WORKSPACE_VARS: &[Var] = &[Var::XnatUser, Var::JupyterUser, Var::ServerName];

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StorageFile {
    /// The claims mounts come from, each a pod volume; the first is the default of every mount
    /// that names none. Default: one volume `xnat-data` of claim `xnat-gpfs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<VolumeFile>>,
    /// One-claim form (not with `volumes`): the pod volume's name (default `xnat-data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    /// One-claim form (not with `volumes`): the claim (default `xnat-gpfs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// The read-only mounts of every authorised project: one mount (the default, the project's
    /// whole directory), or a list for a layout of several (XNAT's own: `arc001` at
    /// `experiments`, `resources`, `subjects`).
    pub projects: ProjectsFile,
    /// The user's read-write workspace; `null` for none.
    pub workspace: Option<MountFile>,
    /// Project ids never mounted, whatever XNAT says (`ABC*` for a prefix).
    pub never_mount: Vec<String>,
    /// Most projects mounted per pod (sorted by id); the rest are left out with a warning
    /// naming them. Unset (the default): every project the user may read, since a cap takes
    /// data away from exactly the users who have the most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_project_mounts: Option<usize>,
}

impl Default for StorageFile {
    fn default() -> Self {
        Self {
            volumes: None,
            volume_name: None,
            claim_name: None,
            projects: ProjectsFile::One(ProjectMountFile {
                volume: None,
                sub_path: "archive/{project}".into(),
                mount_path: "/data/projects/{project}".into(),
                optional: false,
            }),
            workspace: Some(MountFile {
                volume: None,
                sub_path: "workspaces/users/{xnat_user}".into(),
                mount_path: "/data/xnat/workspace".into(),
            }),
            never_mount: Vec::new(),
            max_project_mounts: None,
        }
    }
}

/// A claim and the pod volume that refers to it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeFile {
    /// The pod volume's name (a DNS-1123 label).
    pub name: String,
    /// The PersistentVolumeClaim, in the notebooks' namespace.
    pub claim_name: String,
    /// Read-only at the volume level: every mount of it is read-only, and no writable mount
    /// (workspace, read-write rule mount) may use it.
    #[serde(default)]
    pub read_only: bool,
    /// Where the webhook's own container sees this claim (mounted read-only there), so an
    /// `optional` project mount is added only when its directory exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountFile {
    /// The volume (of `storage.volumes`) it comes from; default the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    pub sub_path: String,
    pub mount_path: String,
}

/// `storage.projects`: one mount per project, or a layout of several.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ProjectsFile {
    One(ProjectMountFile),
    Layout(Vec<ProjectMountFile>),
}

/// One mount of every project.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectMountFile {
    /// The volume (of `storage.volumes`) it comes from; default the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    pub sub_path: String,
    pub mount_path: String,
    /// Mounted only when the directory exists, as XNAT's plugin does (kubelet would create a
    /// missing one, or fail the pod on a read-only volume). Needs the volume's `seenAt`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// A validated project mount.
#[derive(Debug, Clone)]
pub struct ProjectMount {
    pub template: MountTemplate,
    pub optional: bool,
}

/// By shape (a map or a list), so a typo inside a mount is reported by its field name instead of
/// "did not match any variant".
impl<'de> Deserialize<'de> for ProjectsFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};

        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = ProjectsFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mount {volume, subPath, mountPath} or a list of them")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                a: A,
            ) -> Result<ProjectsFile, A::Error> {
                ProjectMountFile::deserialize(MapAccessDeserializer::new(a)).map(ProjectsFile::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                a: A,
            ) -> Result<ProjectsFile, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(a)).map(ProjectsFile::Layout)
            }
        }
        d.deserialize_any(Shape)
    }
}

#[derive(Debug, Clone)]
pub struct Storage {
    /// At least one, names unique; the first is the default.
    pub volumes: Vec<Volume>,
    /// At least one mount per project, mount paths distinct.
    pub projects: Vec<ProjectMount>,
    pub workspace: Option<MountTemplate>,
    /// Exact ids, or prefixes written `ABC*`.
    pub never_mount: Vec<String>,
    /// `None`: no cap.
    pub max_project_mounts: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub claim_name: String,
    pub read_only: bool,
    /// Where the webhook sees the claim, if it does.
    pub seen_at: Option<std::path::PathBuf>,
}

impl Storage {
    /// The volume of this name (every name a validated mount uses is one).
    pub fn volume(&self, name: &str) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.name == name)
    }

    /// Whether the site's deny list rules this project out.
    pub fn is_never_mounted(&self, project: &str) -> bool {
        self.never_mount.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => project.starts_with(prefix),
            None => p == project,
        })
    }
}

/// A volume, a subPath of its claim and where it is mounted (both templates).
#[derive(Debug, Clone)]
pub struct MountTemplate {
    pub volume: String,
    pub sub_path: Template,
    pub mount_path: Template,
}

impl StorageFile {
    pub(super) fn validate(self) -> Result<Storage, PolicyError> {
        let volumes = self.volumes()?;
        let projects = self.projects.validate(&volumes)?;
        let workspace = self
            .workspace
            .map(|w| w.validate("storage.workspace", WORKSPACE_VARS, &volumes))
            .transpose()?;
        if let Some(w) = &workspace {
            if !(w.sub_path.uses(Var::XnatUser) || w.sub_path.uses(Var::JupyterUser)) {
                return Err(invalid(
                    "storage.workspace.subPath",
                    "must contain {xnat_user} or {jupyter_user}, or users would share one workspace",
                ));
            }
            check_writable("storage.workspace", w, &volumes)?;
        }
        for (i, p) in self.never_mount.iter().enumerate() {
            if !is_valid_project_id(p.strip_suffix('*').unwrap_or(p)) {
                return Err(invalid(
                    format!("storage.neverMount[{i}]"),
                    format!("{p:?} is not a project id (or a prefix ending in *)"),
                ));
            }
        }
        if self.max_project_mounts == Some(0) {
            return Err(invalid(
                "storage.maxProjectMounts",
                "must be at least 1 (use xnat.roles or neverMount to mount none)",
            ));
        }
        Ok(Storage {
            volumes,
            projects,
            workspace,
            never_mount: self.never_mount,
            max_project_mounts: self.max_project_mounts,
        })
    }

    /// `volumes`, or the one-claim form's single volume.
    fn volumes(&self) -> Result<Vec<Volume>, PolicyError> {
        let files = match (&self.volumes, &self.volume_name, &self.claim_name) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(invalid(
                    "storage.volumes",
                    "give either volumes or the one-claim volumeName/claimName, not both",
                ));
            }
            (Some(v), None, None) => v.clone(),
            (None, name, claim) => vec![VolumeFile {
                name: name.clone().unwrap_or_else(|| "xnat-data".into()),
                claim_name: claim.clone().unwrap_or_else(|| "xnat-gpfs".into()),
                read_only: false,
                seen_at: None,
            }],
        };
        // The one-claim form's errors name its own fields.
        let one_claim = self.volumes.is_none();
        if files.is_empty() {
            return Err(invalid("storage.volumes", "must name at least one volume"));
        }
        let mut volumes: Vec<Volume> = Vec::with_capacity(files.len());
        for (i, v) in files.into_iter().enumerate() {
            let (name_field, claim_field) = if one_claim {
                (
                    "storage.volumeName".to_owned(),
                    "storage.claimName".to_owned(),
                )
            } else {
                (
                    format!("storage.volumes[{i}].name"),
                    format!("storage.volumes[{i}].claimName"),
                )
            };
            if !is_dns_label(&v.name) {
                return Err(invalid(
                    name_field,
                    format!("{:?} is not a DNS-1123 label", v.name),
                ));
            }
            if volumes.iter().any(|o| o.name == v.name) {
                return Err(invalid(name_field, format!("{:?} is named twice", v.name)));
            }
            if !is_dns_subdomain(&v.claim_name) {
                return Err(invalid(
                    claim_field,
                    format!("{:?} is not a PVC name", v.claim_name),
                ));
            }
            let seen_at = match v.seen_at {
                Some(p) => {
                    check_abs_path(p.trim_end_matches('/'))
                        .map_err(|m| invalid(format!("storage.volumes[{i}].seenAt"), m))?;
                    Some(p.into())
                }
                None => None,
            };
            volumes.push(Volume {
                name: v.name,
                claim_name: v.claim_name,
                read_only: v.read_only,
                seen_at,
            });
        }
        Ok(volumes)
    }
}

impl ProjectsFile {
    /// Each mount's templates, each with its own `{project}` in both paths, and no two mounted
    /// at one place.
    fn validate(self, volumes: &[Volume]) -> Result<Vec<ProjectMount>, PolicyError> {
        let files = match self {
            ProjectsFile::One(m) => vec![("storage.projects".to_owned(), m)],
            ProjectsFile::Layout(ms) if ms.is_empty() => {
                return Err(invalid(
                    "storage.projects",
                    "must list at least one mount (use xnat.roles or neverMount to mount none)",
                ));
            }
            ProjectsFile::Layout(ms) => ms
                .into_iter()
                .enumerate()
                .map(|(i, m)| (format!("storage.projects[{i}]"), m))
                .collect(),
        };
        let mut out: Vec<ProjectMount> = Vec::with_capacity(files.len());
        for (field, file) in files {
            let optional = file.optional;
            let mount = MountFile {
                volume: file.volume,
                sub_path: file.sub_path,
                mount_path: file.mount_path,
            };
            let t = mount.validate(&field, PROJECT_VARS, volumes)?;
            if optional
                && volumes
                    .iter()
                    .any(|v| v.name == t.volume && v.seen_at.is_none())
            {
                return Err(invalid(
                    format!("{field}.optional"),
                    format!(
                        "volume {:?} has no seenAt: the webhook cannot see whether a directory exists",
                        t.volume
                    ),
                ));
            }
            if t.mount_path.uses(Var::Arc) {
                return Err(invalid(
                    format!("{field}.mountPath"),
                    "{arc} names a directory of the archive: it belongs in subPath",
                ));
            }
            for (name, part) in [("subPath", &t.sub_path), ("mountPath", &t.mount_path)] {
                if !part.uses(Var::Project) {
                    return Err(invalid(
                        format!("{field}.{name}"),
                        "must contain {project}: each project needs its own",
                    ));
                }
            }
            if out
                .iter()
                .any(|o| o.template.mount_path.source() == t.mount_path.source())
            {
                return Err(invalid(
                    format!("{field}.mountPath"),
                    format!("{:?} is listed twice", t.mount_path.source()),
                ));
            }
            out.push(ProjectMount {
                template: t,
                optional,
            });
        }
        Ok(out)
    }
}

/// Refuses a writable mount of a volume that is read-only.
pub(super) fn check_writable(
    field: &str,
    t: &MountTemplate,
    volumes: &[Volume],
) -> Result<(), PolicyError> {
    match volumes.iter().find(|v| v.name == t.volume) {
        Some(v) if v.read_only => Err(invalid(
            format!("{field}.volume"),
            format!("{:?} is read-only; this mount must be writable", v.name),
        )),
        _ => Ok(()),
    }
}

impl MountFile {
    /// Parses both templates (only `vars` allowed) and checks their fixed shape: a relative
    /// subPath and an absolute mountPath, neither with empty, `.` or `..` segments, from one of
    /// `volumes` (the first when it names none).
    pub(super) fn validate(
        self,
        field: &str,
        vars: &[Var],
        volumes: &[Volume],
    ) -> Result<MountTemplate, PolicyError> {
        let volume = volume_of(self.volume, field, volumes)?;
        let sub_field = format!("{field}.subPath");
        let sub_path = Template::parse(&self.sub_path, vars).map_err(|m| invalid(&sub_field, m))?;
        check_sub_path(&sub_path.render_with("x")).map_err(|m| invalid(&sub_field, m))?;
        let mount_field = format!("{field}.mountPath");
        let mount_path =
            Template::parse(&self.mount_path, vars).map_err(|m| invalid(&mount_field, m))?;
        check_abs_path(&mount_path.render_with("x")).map_err(|m| invalid(&mount_field, m))?;
        Ok(MountTemplate {
            volume,
            sub_path,
            mount_path,
        })
    }
}

/// The volume a mount names, checked against `volumes`; the first when it names none.
pub(super) fn volume_of(
    named: Option<String>,
    field: &str,
    volumes: &[Volume],
) -> Result<String, PolicyError> {
    match named {
        None => Ok(volumes[0].name.clone()),
        Some(n) if volumes.iter().any(|v| v.name == n) => Ok(n),
        Some(n) => Err(invalid(
            format!("{field}.volume"),
            format!("{n:?} is not one of storage.volumes"),
        )),
    }
}
