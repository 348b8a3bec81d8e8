//! Which admission requests are ours: the CREATE of a KubeSpawner notebook pod by an allowed
//! requester, with the raw JupyterHub username in its annotation. Everything else passes unchanged.

use kube::core::admission::Operation;

use crate::names::is_acceptable_username;
use crate::pod::PodMeta;
use crate::policy::PodSelector;
use crate::review::{PodSpec, Review};

/// KubeSpawner's annotation with the raw (unescaped) JupyterHub username. The pod name and the
/// label of the same name are lossy slugs (`Bob.Smith@uni.edu.au` → `bob-smith-uni-edu-au---4d2a158f`).
pub const USERNAME_ANNOTATION: &str = "hub.jupyter.org/username";
/// KubeSpawner's annotation with the named server's name; absent or empty for the default server.
pub const SERVERNAME_ANNOTATION: &str = "hub.jupyter.org/servername";

/// Why a request passes through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NotCreate,
    NotPod,
    NotNotebookPod,
    NamespaceNotAllowed,
    RequesterNotAllowed,
    NoUsernameAnnotation,
    BadUsername,
}

impl SkipReason {
    /// A short stable name for logs (and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotCreate => "not_create",
            SkipReason::NotPod => "not_pod",
            SkipReason::NotNotebookPod => "not_notebook_pod",
            SkipReason::NamespaceNotAllowed => "namespace_not_allowed",
            SkipReason::RequesterNotAllowed => "requester_not_allowed",
            SkipReason::NoUsernameAnnotation => "no_username_annotation",
            SkipReason::BadUsername => "bad_username",
        }
    }

    /// What the API client is told, for the skips a person should hear about (the warning
    /// prefix is added where warnings are collected).
    pub fn warning(self) -> Option<&'static str> {
        match self {
            SkipReason::RequesterNotAllowed => Some(
                "this notebook pod was not created by an allowed requester; no XNAT data attached",
            ),
            SkipReason::NoUsernameAnnotation => Some(
                "notebook pod has no hub.jupyter.org/username annotation; no XNAT data attached",
            ),
            SkipReason::BadUsername => Some(
                "the hub.jupyter.org/username annotation is not a usable username; no XNAT data attached",
            ),
            _ => None,
        }
    }
}

/// A notebook pod the webhook should mutate.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub pod_name: &'a str,
    pub jupyter_user: &'a str,
    /// Empty for the default server.
    pub server_name: &'a str,
    pub meta: &'a PodMeta<'a>,
    /// The pod's spec, read or raw, for the decision.
    pub spec: &'a PodSpec<'a>,
}

/// Decides whether a review is ours. Pure: the review and the policy's selector are all it reads.
pub fn classify<'a>(review: &'a Review<'_>, sel: &PodSelector) -> Result<Target<'a>, SkipReason> {
    let req = &review.request;
    if req.operation != Operation::Create {
        return Err(SkipReason::NotCreate);
    }
    if !req.is_core_pod() || req.sub_resource.is_some() {
        return Err(SkipReason::NotPod);
    }
    let pod = review.pod.as_ref().ok_or(SkipReason::NotPod)?;
    let meta = &pod.metadata;
    let pod_name = meta.name.as_deref().unwrap_or(&req.name);
    let labels_match = sel
        .labels
        .iter()
        .all(|(k, v)| meta.label(k) == Some(v.as_str()));
    if !labels_match || !pod_name.starts_with(&sel.name_prefix) {
        return Err(SkipReason::NotNotebookPod);
    }
    if !sel.namespaces.is_empty()
        && !sel
            .namespaces
            .iter()
            .any(|n| Some(n.as_str()) == req.namespace.as_deref())
    {
        return Err(SkipReason::NamespaceNotAllowed);
    }
    // Who created the pod matters: anyone able to create pods could claim any username.
    if !sel.requesters.iter().any(|r| r == req.requester()) {
        return Err(SkipReason::RequesterNotAllowed);
    }
    let jupyter_user = meta
        .annotation(USERNAME_ANNOTATION)
        .ok_or(SkipReason::NoUsernameAnnotation)?;
    if !is_acceptable_username(jupyter_user) {
        return Err(SkipReason::BadUsername);
    }
    let server_name = meta.annotation(SERVERNAME_ANNOTATION).unwrap_or_default();
    Ok(Target {
        pod_name,
        jupyter_user,
        server_name,
        meta,
        spec: &pod.spec,
    })
}
