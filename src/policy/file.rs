//! The policy document as written in the ConfigMap: plain serde structs with the documented
//! defaults. [`super::Policy::from_file`] turns it into the validated, typed policy.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicyFile {
    pub pods: PodsFile,
    pub identity: IdentityFile,
    pub xnat: XnatFile,
    pub storage: StorageFile,
    /// Env vars added to the notebook container; the map replaces the defaults when given.
    pub env: EnvFile,
    pub resources: ResourcesFile,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PodsFile {
    /// Labels a pod must carry (all of them) to be a notebook pod.
    pub labels: BTreeMap<String, String>,
    /// Prefix of the pod name.
    pub name_prefix: String,
    /// `request.userInfo.username`s allowed to create notebook pods that get data.
    pub requesters: Vec<String>,
    /// The container that gets the mounts; the first container when none has this name.
    pub container: String,
}

impl Default for PodsFile {
    fn default() -> Self {
        Self {
            labels: BTreeMap::from([("component".into(), "singleuser-server".into())]),
            name_prefix: "jupyter-".into(),
            requesters: vec!["system:serviceaccount:jupyter:hub".into()],
            container: "notebook".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IdentityFile {
    /// Steps from the JupyterHub username to the XNAT username, in order. Written as
    /// `- lowercase` or `- regex: {…}` (a one-key map), not as YAML tags.
    #[serde(with = "serde_yaml_ng::with::singleton_map_recursive")]
    pub mapping: Vec<MappingStepFile>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    /// Admit the pod without project mounts, with a warning.
    Allow,
    /// Refuse the pod; the user sees `denyMessage` in JupyterHub's spawn error.
    Deny,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct XnatFile {
    /// XNAT base URL, context path included (`http://xnat-web.xnat.svc/xnat`).
    pub url: String,
    /// Timeout of one XNAT request; must stay well under the webhook's own timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a user's project list is reused.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How many users' project lists are kept.
    pub cache_capacity: u64,
    /// Project group roles that grant a mount (`{project}_{role}`).
    pub roles: Vec<String>,
    /// What to do when XNAT cannot be asked.
    pub on_error: OnError,
    /// The message a user sees when `onError: deny` refuses their pod.
    pub deny_message: String,
}

impl Default for XnatFile {
    fn default() -> Self {
        Self {
            url: "http://xnat-web.xnat.svc.cluster.local".into(),
            timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 10_000,
            roles: vec!["owner".into(), "member".into(), "collaborator".into()],
            on_error: OnError::Allow,
            deny_message: "XNAT is not reachable, so your project data cannot be attached. \
                           Please try again in a few minutes."
                .into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountFile {
    pub sub_path: String,
    pub mount_path: String,
}

/// Env var name → value template.
#[derive(Debug, Clone, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ResourceMode {
    /// Fill in only what the pod does not set: the hub's own settings win.
    FillUnset,
    /// The policy's values replace the pod's.
    Override,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResourcesFile {
    pub mode: ResourceMode,
    pub requests: CpuMemoryFile,
    pub limits: CpuMemoryFile,
}

impl Default for ResourcesFile {
    fn default() -> Self {
        Self {
            mode: ResourceMode::FillUnset,
            requests: CpuMemoryFile {
                cpu: Some("500m".into()),
                memory: Some("1Gi".into()),
            },
            limits: CpuMemoryFile {
                cpu: Some("4".into()),
                memory: Some("8Gi".into()),
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CpuMemoryFile {
    #[serde(deserialize_with = "quantity_text")]
    pub cpu: Option<String>,
    #[serde(deserialize_with = "quantity_text")]
    pub memory: Option<String>,
}

/// Accepts `cpu: 4` as well as `cpu: "4"`: YAML makes a bare number of it.
fn quantity_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        I(i64),
        F(f64),
    }
    Ok(Option::<Text>::deserialize(d)?.map(|t| match t {
        Text::S(s) => s,
        Text::I(i) => i.to_string(),
        Text::F(f) => f.to_string(),
    }))
}
