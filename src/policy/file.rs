//! The policy document as written in the ConfigMap: plain serde structs with the documented
//! defaults. [`super::Policy::from_file`] turns it into the validated, typed policy.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicyFile {
    /// `enforce` (mutate) or `audit` (dry run: say what would change, change nothing).
    pub mode: Mode,
    pub pods: PodsFile,
    pub identity: IdentityFile,
    pub xnat: XnatFile,
    pub storage: StorageFile,
    /// Env vars added to the notebook container; the map replaces the defaults when given.
    pub env: EnvFile,
    pub resources: ResourcesFile,
    /// Launch context stored by XNAT's JupyterHub plugin ("user options").
    pub user_options: UserOptionsFile,
    /// Per-project and per-role extras, applied in order; later rules win.
    pub rules: Vec<RuleFile>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
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
    /// Namespaces whose notebook pods get data; empty for any namespace.
    pub namespaces: Vec<String>,
}

impl Default for PodsFile {
    fn default() -> Self {
        Self {
            labels: BTreeMap::from([("component".into(), "singleuser-server".into())]),
            name_prefix: "jupyter-".into(),
            requesters: vec!["system:serviceaccount:jupyter:hub".into()],
            container: "notebook".into(),
            namespaces: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default, JsonSchema)]
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

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    /// Admit the pod without project mounts, with a warning.
    Allow,
    /// Use a cached answer younger than `staleIfError` (with a warning); without one, allow.
    StaleThenAllow,
    /// Refuse the pod; the user sees `denyMessage` in JupyterHub's spawn error.
    Deny,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ProjectSource {
    /// `GET /xapi/users/{user}/groups` (the user themself or an admin may call it).
    Groups,
    /// `GET /xapi/access/{user}/projects` (admin only).
    Access,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct XnatFile {
    /// XNAT base URL, context path included (`http://xnat-web.xnat.svc/xnat`).
    pub url: String,
    /// PEM file of extra CAs to trust for an https XNAT (besides the system's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Which endpoint lists a user's projects.
    pub project_source: ProjectSource,
    /// Timeout of one XNAT request, connect included.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// All the time one admission may spend on XNAT: queueing, login, retries. Must stay well
    /// under the webhook's own timeout (10s in deploy/).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub budget: Duration,
    /// How many XNAT requests may be in flight at once; more wait in a queue.
    pub max_concurrent_requests: usize,
    /// Extra tries of a GET after a timeout, connection error or 5xx, inside `budget`.
    pub retries: u32,
    /// First backoff between tries (doubled each time, with jitter).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_backoff: Duration,
    /// How long a user's project list is reused.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub cache_ttl: Duration,
    /// How long "XNAT has no such user" (404) is reused.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub negative_cache_ttl: Duration,
    /// With `onError: staleThenAllow`, the oldest cached answer that may stand in for XNAT.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stale_if_error: Duration,
    /// When set, a cached answer older than this is served and refreshed in the background.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub refresh_ahead: Option<Duration>,
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
            ca_file: None,
            project_source: ProjectSource::Groups,
            timeout: Duration::from_secs(2),
            budget: Duration::from_secs(4),
            max_concurrent_requests: 16,
            retries: 2,
            retry_backoff: Duration::from_millis(100),
            cache_ttl: Duration::from_secs(60),
            negative_cache_ttl: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(600),
            refresh_ahead: None,
            cache_capacity: 10_000,
            roles: vec!["owner".into(), "member".into(), "collaborator".into()],
            on_error: OnError::Allow,
            deny_message: "XNAT is not reachable, so your project data cannot be attached. \
                           Please try again in a few minutes."
                .into(),
        }
    }
}

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

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResourceMode {
    /// Fill in only what the pod does not set: the hub's own settings win.
    FillUnset,
    /// The policy's values replace the pod's.
    Override,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResourcesFile {
    pub mode: ResourceMode,
    /// Resource name (`cpu`, `memory`, …) → quantity. A given map replaces the defaults.
    pub requests: BTreeMap<String, QuantityText>,
    /// Resource name (`cpu`, `memory`, `nvidia.com/gpu`, …) → quantity.
    pub limits: BTreeMap<String, QuantityText>,
}

impl Default for ResourcesFile {
    fn default() -> Self {
        Self {
            mode: ResourceMode::FillUnset,
            requests: BTreeMap::from([
                ("cpu".into(), QuantityText("500m".into())),
                ("memory".into(), QuantityText("1Gi".into())),
            ]),
            limits: BTreeMap::from([
                ("cpu".into(), QuantityText("4".into())),
                ("memory".into(), QuantityText("8Gi".into())),
            ]),
        }
    }
}

/// A quantity as written; `cpu: 4` is accepted as well as `cpu: "4"` (YAML makes a number of it).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(transparent)]
pub struct QuantityText(pub String);

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            S(String),
            I(i64),
            F(f64),
        }
        Ok(QuantityText(match Text::deserialize(d)? {
            Text::S(s) => s,
            Text::I(i) => i.to_string(),
            Text::F(f) => f.to_string(),
        }))
    }
}

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

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Mutate pods.
    #[default]
    Enforce,
    /// Compute and log the patch, say what it would do (warning, audit annotations), change nothing.
    Audit,
}

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

impl JsonSchema for QuantityText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A Kubernetes quantity: 500m, 2, 1Gi, 512Mi, 1e3",
            "anyOf": [{"type": "string"}, {"type": "number", "minimum": 0}]
        })
    }
}
