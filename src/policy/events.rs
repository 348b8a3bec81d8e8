//! `events`: whether the webhook posts a Kubernetes Event about each notebook pod it decides
//! on, which KubeSpawner shows on the spawn page.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EventsFile {
    /// Post an Event about each notebook pod (what was attached, what was left out and why).
    /// Needs the Kubernetes API (in-cluster, or `serve --kubeconfig`) and `create`/`patch` on
    /// `events` in the hub's namespace.
    pub enabled: bool,
}

impl Default for EventsFile {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The validated `events` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsPolicy {
    pub enabled: bool,
}

impl EventsFile {
    pub fn validate(self) -> EventsPolicy {
        EventsPolicy {
            enabled: self.enabled,
        }
    }
}
