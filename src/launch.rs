//! Launch context from XNAT's JupyterHub plugin ("user options"): what XNAT's UI asked for when the
//! user started Jupyter from a project, subject or experiment, as XNAT stores it. What it adds to
//! a pod is decided in [`crate::mutation`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// `GET /xapi/jupyterhub/users/{user}/server[/{name}]/user-options`, as far as it is used.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct UserOptions {
    #[serde(rename = "projectId")]
    pub project_id: Option<String>,
    pub task_template: TaskTemplate,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TaskTemplate {
    pub container_spec: ContainerSpec,
    pub resources: LaunchResources,
    pub placement: Placement,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ContainerSpec {
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<LaunchMount>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct LaunchMount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct LaunchResources {
    pub cpu_limit: Option<Value>,
    pub cpu_reservation: Option<Value>,
    pub mem_limit: Option<Value>,
    pub mem_reservation: Option<Value>,
    pub generic_resources: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Placement {
    pub constraints: Vec<String>,
}
