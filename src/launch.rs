//! Launch context from XNAT's JupyterHub plugin ("user options"): what XNAT's UI asked for when the
//! user started Jupyter from a project, subject or experiment, as XNAT stores it. What it adds to
//! a pod is decided in [`crate::mutation`].
//!
//! The shapes follow the plugin's `XnatUserOptions`, `TaskTemplate`, `ContainerSpec`, `Mount`,
//! `Resources` and `Placement`, serialised by Jackson: a member that is not set is written as
//! `null`, never left out. Here `null`, a missing member and the empty value mean the same, and
//! the members a pod is built from one by one (mounts, env values, labels, constraints) stay raw
//! JSON, so one malformed entry is refused on its own with a warning instead of taking the whole
//! launch context with it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `GET /xapi/jupyterhub/users/{user}/server[/{name}]/user-options`, as far as it is used.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct UserOptions {
    #[serde(rename = "projectId")]
    pub project_id: Option<String>,
    /// `xnat:projectData`, `xnat:subjectData`, an experiment's type, `xdat:stored_search`, …
    #[serde(rename = "xsiType")]
    pub xsi_type: Option<String>,
    /// The launched item's id (a project id, a subject or experiment accession number, …).
    #[serde(rename = "itemId")]
    pub item_id: Option<String>,
    /// Names the launch's server and its shared-data directory.
    #[serde(rename = "eventTrackingId")]
    pub event_tracking_id: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub task_template: TaskTemplate,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TaskTemplate {
    #[serde(deserialize_with = "nullable")]
    pub container_spec: ContainerSpec,
    #[serde(deserialize_with = "nullable")]
    pub resources: LaunchResources,
    #[serde(deserialize_with = "nullable")]
    pub placement: Placement,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ContainerSpec {
    /// The compute environment's image.
    pub image: Option<String>,
    /// The compute environment's (or a dashboard's) command, one string.
    pub command: Option<String>,
    /// Values as stored (strings; anything else is refused one by one).
    #[serde(deserialize_with = "nullable")]
    pub env: BTreeMap<String, Value>,
    #[serde(deserialize_with = "nullable")]
    pub labels: BTreeMap<String, Value>,
    /// Each read with [`LaunchMount::read`].
    #[serde(deserialize_with = "nullable")]
    pub mounts: Vec<Value>,
}

/// One stored mount: `source` is the directory *after* the plugin's path translation
/// (`./ALPHA/arc001` on NrgXnat's Kubernetes set-up, `/data/xnat/archive/ALPHA/arc001` on Swarm).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct LaunchMount {
    pub source: String,
    pub target: String,
    /// `null` reads as read-only: a mount is only ever writable when the plugin says so.
    #[serde(default)]
    pub read_only: Option<bool>,
}

impl LaunchMount {
    /// One entry of `mounts`, or what is wrong with it.
    pub fn read(v: &Value) -> Result<Self, String> {
        Self::deserialize(v).map_err(|e| format!("not a mount ({e})"))
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only != Some(false)
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct LaunchResources {
    pub cpu_limit: Option<Value>,
    pub cpu_reservation: Option<Value>,
    pub mem_limit: Option<Value>,
    pub mem_reservation: Option<Value>,
    /// Free-form names (`gpu`, `nvidia.com/gpu`, `fpga.com/fpga`) to counts, stored as strings.
    #[serde(deserialize_with = "nullable")]
    pub generic_resources: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Placement {
    /// `key==value` (one per allowed value) or `key!=value`, as stored.
    #[serde(deserialize_with = "nullable")]
    pub constraints: Vec<Value>,
}

/// The launch context of the server being started, as far as XNAT could tell.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Launch<'a> {
    /// None stored (or the policy does not use them): the project list decides.
    #[default]
    None,
    Stored(&'a UserOptions),
    /// XNAT could not be asked, or answered something that is not a launch context: the project
    /// list decides, and the user is told.
    Unreadable(&'a str),
}

impl<'a> Launch<'a> {
    pub fn stored(self) -> Option<&'a UserOptions> {
        match self {
            Launch::Stored(o) => Some(o),
            Launch::None | Launch::Unreadable(_) => None,
        }
    }
}

/// The launch context as read for one review; [`Launch`] borrows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum LaunchContext {
    #[default]
    None,
    Stored(Box<UserOptions>),
    Unreadable(String),
}

impl LaunchContext {
    pub fn as_launch(&self) -> Launch<'_> {
        match self {
            LaunchContext::None => Launch::None,
            LaunchContext::Stored(opts) => Launch::Stored(opts),
            LaunchContext::Unreadable(why) => Launch::Unreadable(why),
        }
    }

    /// XNAT had one for this server, and it could be read.
    pub fn is_stored(&self) -> bool {
        matches!(self, LaunchContext::Stored(_))
    }
}

/// `null` reads as the member's empty value.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every member the plugin may leave unset, written as Jackson writes it.
    #[test]
    fn null_members_read_as_unset() {
        let opts: UserOptions = serde_json::from_value(json!({
            "userId": "alice", "servername": null, "xsiType": null, "itemId": null,
            "projectId": null, "eventTrackingId": null, "dashboardConfigId": null,
            "task_template": {
                "container_spec": {"image": null, "command": null, "env": null, "labels": null,
                                   "mounts": null},
                "resources": {"cpu_limit": null, "cpu_reservation": null, "mem_limit": null,
                              "mem_reservation": null, "generic_resources": null},
                "placement": null
            }
        }))
        .unwrap();
        assert_eq!(opts, UserOptions::default());
        let opts: UserOptions = serde_json::from_value(json!({"task_template": null})).unwrap();
        assert_eq!(opts, UserOptions::default());
    }

    #[test]
    fn a_bad_mount_is_refused_on_its_own() {
        assert!(LaunchMount::read(&json!({"source": null, "target": "/x"})).is_err());
        let m = LaunchMount::read(&json!({"source": "./A", "target": "/x", "read_only": null}))
            .unwrap();
        assert!(m.is_read_only());
        let m = LaunchMount::read(&json!({"source": "./A", "target": "/x", "read_only": false,
                                          "type": "bind"}))
        .unwrap();
        assert!(!m.is_read_only());
    }
}
