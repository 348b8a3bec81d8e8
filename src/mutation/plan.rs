//! The plan: everything the policy, the grant and the launch context want in the pod, with the
//! precedence rules written once, before any pod is looked at. The appliers then compare it
//! with the pod.
//!
//! Precedence, key by key (one mount path, one env var, one resource of requests or limits):
//! the base policy (`storage`, `env`, `resources`) < the launch context (the plugin's values,
//! then the policy's `userOptions.env`) < matching rules in file order, the later winning. The
//! plugin's token pair (`XNAT_USER`, `XNAT_PASS`) is never split: when the launch context
//! supplies it, neither the policy nor a rule sets either. A launch context's mounts *replace*
//! the project list's (they were checked against it); the policy's workspace stays. The pod's
//! own values are the appliers' business.

use super::Context;
use super::grant::Grant;
use super::launch::{LaunchPlan, NodeExpression, TOKEN_PAIR};
use super::planned::{PlannedMount, render_mount, render_path, same_path};
use crate::names::is_safe_segment;
use crate::policy::{Policy, ResourceMode, ResourceSet, Template, Values};
use crate::warning::Warnings;

/// An env value: a policy template (rendered once the mounted projects are known) or a value
/// taken as it is.
#[derive(Debug, Clone, Copy)]
pub enum EnvValue<'a> {
    Template(&'a Template),
    Text(&'a str),
}

impl EnvValue<'_> {
    pub fn render(&self, values: &Values<'_>) -> String {
        match self {
            EnvValue::Template(t) => t.render(values),
            EnvValue::Text(s) => (*s).to_owned(),
        }
    }
}

/// What the pod should end up with.
pub struct Plan<'a> {
    pub mounts: Vec<PlannedMount>,
    pub env: Vec<(&'a str, EnvValue<'a>)>,
    pub resources: ResourceSet,
    pub node_selector: Vec<(String, String)>,
    pub node_affinity: &'a [NodeExpression],
    /// The notebook container's image, command (KubeSpawner's `cmd`) and working directory.
    pub container: ContainerPlan<'a>,
    pub labels: &'a [(String, String)],
}

/// What a launch context sets on the notebook container itself.
#[derive(Debug, Default)]
pub struct ContainerPlan<'a> {
    pub image: Option<&'a str>,
    /// `CPU_LIMIT`, `MEM_LIMIT`, … for the launch's resources, when they replace the pod's
    /// (`override` mode): KubeSpawner wrote them for the hub's values.
    pub resource_env: &'a [(String, String)],
    pub command: Option<&'a [String]>,
    pub working_dir: Option<String>,
}

impl<'a> Plan<'a> {
    /// The plan, from the mounts the selection made (a launch's or the project list's, and the
    /// workspace) and what a launch adds besides.
    pub fn build(
        grant: &Grant<'a>,
        cx: &Context<'a>,
        policy: &'a Policy,
        (mut mounts, launch): (Vec<PlannedMount>, Option<&'a LaunchPlan>),
        warnings: &mut Warnings,
    ) -> Self {
        let base = cx.values("");
        rule_mounts(grant, &base, &mut mounts, warnings);
        below_writable(policy, &mut mounts, warnings);
        let working_dir = launch.and_then(|_| {
            let t = policy.user_options.working_dir.as_ref()?;
            render_path(t, &base, warnings)
        });
        Self {
            mounts,
            env: env(grant, policy, launch, warnings),
            resources: resources(grant, policy, launch),
            node_selector: launch.map(|l| l.node_selector.clone()).unwrap_or_default(),
            node_affinity: launch.map_or(&[], |l| l.node_affinity.as_slice()),
            container: ContainerPlan {
                image: launch.and_then(|l| l.image.as_deref()),
                resource_env: match launch {
                    Some(l) if policy.resources.mode == ResourceMode::Override => &l.resource_env,
                    _ => &[],
                },
                command: launch.and_then(|l| l.command.as_deref()),
                working_dir,
            },
            labels: launch.map_or(&[], |l| l.labels.as_slice()),
        }
    }
}

/// Matching rules' mounts, after the others; one whose path is taken is left out.
fn rule_mounts(
    grant: &Grant<'_>,
    base: &Values<'_>,
    mounts: &mut Vec<PlannedMount>,
    warnings: &mut Warnings,
) {
    for rule in &grant.rules {
        for m in &rule.mounts {
            let Some(mut planned) = render_mount(&m.template, base, warnings) else {
                continue;
            };
            if mounts
                .iter()
                .any(|w| same_path(&w.mount_path, &planned.mount_path))
            {
                warnings.push(format_args!(
                    "rule {:?} mount {} is taken; left out",
                    rule.name, planned.mount_path
                ));
                continue;
            }
            planned.read_only = m.read_only;
            mounts.push(planned);
        }
    }
}

/// Leaves out every mount whose subPath lies below a directory notebooks can write: a symlink
/// the user put there would be followed by kubelet to anywhere on the claim.
fn below_writable(policy: &Policy, mounts: &mut Vec<PlannedMount>, warnings: &mut Warnings) {
    mounts.retain(|m| match policy.writable.below(&m.volume, &m.sub_path) {
        Some(dir) => {
            warnings.push(format_args!(
                "{} (subPath {}) lies below a directory notebooks can write ({dir}); left out",
                m.mount_path, m.sub_path
            ));
            false
        }
        None => true,
    });
}

/// The policy's env, then the launch context's (the plugin's values, then the policy's
/// `userOptions.env`), then matching rules in order (a later rule wins). The plugin's token pair
/// is set by nobody else.
fn env<'a>(
    grant: &Grant<'a>,
    policy: &'a Policy,
    launch: Option<&'a LaunchPlan>,
    warnings: &mut Warnings,
) -> Vec<(&'a str, EnvValue<'a>)> {
    let pair_from_launch = launch.is_some_and(|l| l.owns_token_pair);
    let mut env: Vec<(&str, EnvValue<'_>)> = Vec::new();
    let mut set =
        |name: &'a str, value: EnvValue<'a>| match env.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => env.push((name, value)),
        };
    for v in &policy.env {
        if !(pair_from_launch && TOKEN_PAIR.contains(&v.name.as_str())) {
            set(&v.name, EnvValue::Template(&v.value));
        }
    }
    if let Some(l) = launch {
        for (name, value) in &l.env {
            set(name, EnvValue::Text(value));
        }
        for v in &policy.user_options.env {
            if !(pair_from_launch && TOKEN_PAIR.contains(&v.name.as_str())) {
                set(&v.name, EnvValue::Template(&v.value));
            }
        }
    }
    for (rule, var) in grant
        .rules
        .iter()
        .flat_map(|r| r.env.iter().map(move |v| (r, v)))
    {
        if pair_from_launch && TOKEN_PAIR.contains(&var.name.as_str()) {
            warnings.push(format_args!(
                "rule {:?} sets {}, but the launch context's XNAT_USER/XNAT_PASS are a pair; \
                 kept the launch's",
                rule.name, var.name
            ));
            continue;
        }
        set(&var.name, EnvValue::Template(&var.value));
    }
    env
}

/// The policy's resources, then the launch context's, then matching rules in order.
fn resources(grant: &Grant<'_>, policy: &Policy, launch: Option<&LaunchPlan>) -> ResourceSet {
    let mut set = policy.resources.set.clone();
    if let Some(l) = launch {
        set.overlay(&l.resources);
    }
    for rule in &grant.rules {
        set.overlay(&rule.resources);
    }
    set
}

/// Where the policy mounts this user's workspace, if it does (and the values make a safe path).
pub fn workspace_path(policy: &Policy, values: &Values<'_>) -> Option<String> {
    let ws = policy.storage.workspace.as_ref()?;
    ws.mount_path
        .vars()
        .all(|v| is_safe_segment(values.get(v)))
        .then(|| ws.mount_path.render(values))
}
