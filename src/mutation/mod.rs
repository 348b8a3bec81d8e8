//! The decision: pod + identity + access + launch context + policy → JSON Patch (or a denial).
//! Pure, so every rule is tested without sockets.
//!
//! It runs in two halves around XNAT's answers. [`prepare`] works out the user's
//! [`grant::Grant`] (readable and mountable projects, matching rules, XNAT's failure modes) and
//! selects what to mount (a launch context translated, or the project list's projects) — the
//! selection rule lives there, once; [`Prepared::questions`] and [`Prepared::place`] say what
//! XNAT must confirm and which directories to look at. [`decide`] then builds one
//! [`plan::Plan`] of what the pod should end up with (precedence written once, there), and lets
//! one applier per pod element compare the plan with the pod and add its operations to one
//! [`patch::PodPatch`]. A new pod element is one new applier file and one call below.
//!
//! The patch only ever *adds* (or, for resources in `override` mode, replaces) leaf values, so
//! every field of the pod it does not name — including ones this build's k8s-openapi does not
//! know — reaches the API server untouched. What is already in the pod is compared first, so
//! running the webhook on its own output adds nothing (`reinvocationPolicy: IfNeeded` is safe).

mod container;
mod env;
mod grant;
mod labels;
pub(crate) mod launch;
mod mounts;
mod patch;
mod placement;
mod plan;
mod planned;
mod prepare;
mod resources;
mod roots;
mod status;

pub use prepare::{Prepared, Questions, prepare};
pub use status::{MAX_LISTED_PROJECTS, PodStatus, STATUS_ANNOTATION, XnatState, stamp};

use std::fmt;

use json_patch::PatchOperation;

use crate::access::AccessOutcome;
use crate::launch::Launch;
use crate::pod::PodView;
use crate::policy::{Policy, Values};
use crate::sharing::Confirmed;
use crate::warning::Warnings;

/// Who the pod is for, as the webhook established it.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub jupyter_user: &'a str,
    pub server_name: &'a str,
    pub xnat_user: &'a str,
}

/// Everything the decision knows besides the pod and the policy.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub who: Identity<'a>,
    pub access: &'a AccessOutcome,
    /// The plugin's launch context, when the policy enables it and XNAT has one.
    pub launch: Launch<'a>,
    pub xnat_url: &'a str,
    /// The review came with a client certificate the webhook verified (`--client-ca`).
    pub caller_verified: bool,
}

impl<'a> Context<'a> {
    /// The template values of this review, with `projects` as `{projects}`.
    pub fn values(&self, projects: &'a str) -> Values<'a> {
        Values {
            project: None,
            arc: "",
            xnat_user: self.who.xnat_user,
            jupyter_user: self.who.jupyter_user,
            server_name: self.who.server_name,
            projects,
            xnat_url: self.xnat_url,
        }
    }
}

/// What to answer the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow {
        patch: Vec<PatchOperation>,
        warnings: Warnings,
        /// Projects the pod ends up with (mounted now or already present).
        projects: Vec<String>,
        /// Names of the policy rules that matched.
        rules: Vec<String>,
    },
    Deny {
        message: String,
    },
}

impl Decision {
    /// Nothing to change, for the reasons in `warnings`.
    pub fn unchanged(warnings: Warnings) -> Self {
        Decision::Allow {
            patch: Vec::new(),
            warnings,
            projects: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// A notebook pod whose spec cannot be read: nothing is patched, but XNAT's failure modes still
/// decide (a denial stays a denial) and the grant's warnings are given.
pub fn decide_unreadable(prepared: &Prepared<'_>, why: impl fmt::Display) -> Decision {
    let mut warnings = prepared.warnings.clone();
    if let Err(message) = &prepared.grant {
        return Decision::Deny {
            message: message.clone(),
        };
    }
    warnings.push(format_args!(
        "pod spec not understood ({why}); left unchanged"
    ));
    Decision::unchanged(warnings)
}

/// Decides what to do with a notebook pod, from what was prepared and what XNAT confirmed.
/// Takes the preparation whole: the mounts it rendered move into the patch.
pub fn decide(
    pod: &PodView<'_>,
    prepared: Prepared<'_>,
    confirmed: &Confirmed,
    policy: &Policy,
) -> Decision {
    let Prepared {
        cx,
        grant,
        mut warnings,
        selection,
    } = prepared;
    let grant = match grant {
        Ok(g) => g,
        Err(message) => return Decision::Deny { message },
    };
    let Some(notebook) = pod.notebook(&policy.pods.container) else {
        warnings.push("pod has no containers; left unchanged");
        return Decision::unchanged(warnings);
    };
    let (mounts, launch) =
        selection.select(&cx, &grant.mountable, confirmed, policy, &mut warnings);
    let plan = plan::Plan::build(
        &grant,
        &cx,
        policy,
        (mounts, launch.as_ref()),
        &mut warnings,
    );
    let cx = &cx;

    let mut patch = patch::PodPatch::new();
    let (p, w) = (&mut patch, &mut warnings);
    let projects = mounts::apply(plan.mounts, pod, notebook, &policy.storage, p, w);
    let joined = projects.join(",");
    env::apply(&plan.env, &cx.values(&joined), notebook, p, w);
    resources::apply(&plan.resources, policy.resources.mode, notebook, p);
    container::apply(&plan.container, notebook, p, w);
    placement::apply(&plan.node_selector, plan.node_affinity, pod, p, w);
    labels::apply(plan.labels, pod, p, w);

    Decision::Allow {
        patch: patch.into_ops(),
        warnings,
        projects,
        rules: grant.rule_names(),
    }
}
