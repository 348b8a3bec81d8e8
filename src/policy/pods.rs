//! `pods`: which pods are notebook pods, who may create them, which container gets the data.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PolicyError, invalid};
use crate::names::is_dns_label;

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

#[derive(Debug, Clone)]
pub struct PodSelector {
    pub labels: Vec<(String, String)>,
    pub name_prefix: String,
    pub requesters: Vec<String>,
    pub container: String,
    /// Empty for any namespace.
    pub namespaces: Vec<String>,
}

impl PodsFile {
    pub(super) fn validate(self) -> Result<PodSelector, PolicyError> {
        if self.labels.keys().any(|k| k.is_empty()) {
            return Err(invalid("pods.labels", "label keys must not be empty"));
        }
        if self.requesters.is_empty() {
            return Err(invalid(
                "pods.requesters",
                "must list who creates notebook pods (the hub's service account)",
            ));
        }
        if let Some(i) = self.requesters.iter().position(|r| r.trim().is_empty()) {
            return Err(invalid(
                format!("pods.requesters[{i}]"),
                "must not be empty",
            ));
        }
        if !is_dns_label(&self.container) {
            return Err(invalid(
                "pods.container",
                format!("{:?} is not a container name", self.container),
            ));
        }
        if let Some((i, n)) = self
            .namespaces
            .iter()
            .enumerate()
            .find(|(_, n)| !is_dns_label(n))
        {
            return Err(invalid(
                format!("pods.namespaces[{i}]"),
                format!("{n:?} is not a namespace name"),
            ));
        }
        Ok(PodSelector {
            labels: self.labels.into_iter().collect(),
            name_prefix: self.name_prefix,
            requesters: self.requesters,
            container: self.container,
            namespaces: self.namespaces,
        })
    }
}
