//! The plan: everything the policy, the grant and the launch context want in the pod, with the
//! precedence rules written once, before any pod is looked at. The appliers then compare it
//! with the pod.
//!
//! Precedence, key by key (one mount path, one env var, one resource of requests or limits):
//! the base policy (`storage`, `env`, `resources`) < the launch context < matching rules in file
//! order, the later winning. A launch context's mounts *replace* the project list's; they were
//! checked against it. The pod's own values are the appliers' business.

use super::Context;
use super::grant::Grant;
use super::launch::{self, LaunchPlan};
use crate::names::{check_abs_path, check_sub_path, is_safe_segment};
use crate::policy::{MountTemplate, Policy, ResourceSet, Template, Values};
use crate::warning::Warnings;

/// A mount of the data claim, already checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMount {
    pub sub_path: String,
    pub mount_path: String,
    pub read_only: bool,
    /// The project it shows, for `XNAT_PROJECTS` and the mount cap; `None` for the workspace and
    /// other mounts.
    pub project: Option<String>,
}

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
}

impl<'a> Plan<'a> {
    pub fn build(
        grant: &Grant<'a>,
        cx: &Context<'a>,
        policy: &'a Policy,
        launch: Option<&'a LaunchPlan>,
        warnings: &mut Warnings,
    ) -> Self {
        let base = cx.values("");
        let mut mounts = match launch {
            Some(l) => launch_mounts(l, policy, warnings),
            None => project_list_mounts(&grant.readable, &base, policy, warnings),
        };
        rule_mounts(grant, &base, &mut mounts, warnings);
        below_writable(policy, &mut mounts, warnings);
        Self {
            mounts,
            env: env(grant, policy, launch),
            resources: resources(grant, policy, launch),
            node_selector: launch.map(|l| l.node_selector.clone()).unwrap_or_default(),
        }
    }
}

/// The launch context's mounts less the site's never-mount projects, capped like the project
/// list.
fn launch_mounts(l: &LaunchPlan, policy: &Policy, warnings: &mut Warnings) -> Vec<PlannedMount> {
    let storage = &policy.storage;
    let mut mounts: Vec<PlannedMount> = l
        .mounts
        .iter()
        .filter(|m| {
            let denied = m
                .project
                .as_deref()
                .is_some_and(|p| storage.is_never_mounted(p));
            if denied {
                warnings.push(format_args!(
                    "launch mount {} not mounted by site policy",
                    m.mount_path
                ));
            }
            !denied
        })
        .cloned()
        .collect();
    let mut kept = 0;
    let mut left_out = Vec::new();
    mounts.retain(|m| {
        if m.project.is_none() {
            return true;
        }
        kept += 1;
        if kept > storage.max_project_mounts {
            left_out.push(m.mount_path.clone());
            return false;
        }
        true
    });
    if !left_out.is_empty() {
        warnings.push(format_args!(
            "at most {} project mounts; left out: {}",
            storage.max_project_mounts,
            left_out.join(", ")
        ));
    }
    mounts
}

/// One read-only mount per readable project (at most `maxProjectMounts`), then the workspace.
fn project_list_mounts(
    readable: &[&str],
    base: &Values<'_>,
    policy: &Policy,
    warnings: &mut Warnings,
) -> Vec<PlannedMount> {
    let storage = &policy.storage;
    let mut out: Vec<PlannedMount> = Vec::with_capacity(readable.len() + 1);
    let (readable, left_out) = readable.split_at(readable.len().min(storage.max_project_mounts));
    if !left_out.is_empty() {
        warnings.push(format_args!(
            "at most {} projects are mounted; left out: {}",
            storage.max_project_mounts,
            left_out.join(", ")
        ));
    }
    for project in readable {
        let values = Values {
            project: Some(project),
            ..*base
        };
        if let Some((sub_path, mount_path)) = render_mount(&storage.projects, &values, warnings) {
            out.push(PlannedMount {
                mount_path,
                sub_path,
                read_only: true,
                project: Some((*project).to_owned()),
            });
        }
    }
    if let Some(ws) = &storage.workspace
        && let Some((sub_path, mount_path)) = render_mount(ws, base, warnings)
    {
        if out.iter().any(|m| m.mount_path == mount_path) {
            warnings.push(format_args!(
                "workspace mount path {mount_path} is taken by a project; workspace not mounted"
            ));
        } else {
            out.push(PlannedMount {
                mount_path,
                sub_path,
                read_only: false,
                project: None,
            });
        }
    }
    out
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
            let Some((sub_path, mount_path)) = render_mount(&m.template, base, warnings) else {
                continue;
            };
            if mounts.iter().any(|w| same_path(&w.mount_path, &mount_path)) {
                warnings.push(format_args!(
                    "rule {:?} mount {mount_path} is taken; left out",
                    rule.name
                ));
                continue;
            }
            mounts.push(PlannedMount {
                sub_path,
                mount_path,
                read_only: m.read_only,
                project: None,
            });
        }
    }
}

/// Leaves out every mount whose subPath lies below a directory notebooks can write: a symlink
/// the user put there would be followed by kubelet to anywhere on the claim.
fn below_writable(policy: &Policy, mounts: &mut Vec<PlannedMount>, warnings: &mut Warnings) {
    mounts.retain(|m| match policy.writable.below(&m.sub_path) {
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

/// The policy's env, then the launch context's for names the policy does not set, then
/// matching rules in order (a later rule wins).
fn env<'a>(
    grant: &Grant<'a>,
    policy: &'a Policy,
    launch: Option<&'a LaunchPlan>,
) -> Vec<(&'a str, EnvValue<'a>)> {
    let mut env: Vec<(&str, EnvValue<'_>)> = policy
        .env
        .iter()
        .map(|v| (v.name.as_str(), EnvValue::Template(&v.value)))
        .collect();
    for (name, value) in launch.iter().flat_map(|l| l.env.iter()) {
        if !env.iter().any(|(n, _)| n == name) {
            env.push((name, EnvValue::Text(value)));
        }
    }
    for var in grant.rules.iter().flat_map(|r| r.env.iter()) {
        let value = EnvValue::Template(&var.value);
        match env.iter_mut().find(|(n, _)| *n == var.name) {
            Some(slot) => slot.1 = value,
            None => env.push((&var.name, value)),
        }
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

/// Renders a mount's subPath and mountPath, or explains why it cannot be mounted: every value a
/// path template uses must be a safe single path segment.
fn render_mount(
    t: &MountTemplate,
    values: &Values<'_>,
    warnings: &mut Warnings,
) -> Option<(String, String)> {
    for var in t.sub_path.vars().chain(t.mount_path.vars()) {
        // Path templates only admit path placeholders (checked at load).
        let value = values.get(var);
        if !is_safe_segment(value) {
            warnings.push(format_args!(
                "{{{}}} = {value:?} is not a safe path segment; mount {} skipped",
                var.name(),
                t.mount_path.source()
            ));
            return None;
        }
    }
    let sub_path = t.sub_path.render(values);
    let mount_path = t.mount_path.render(values);
    // Defence in depth: the template was checked at load and the values just now.
    if check_sub_path(&sub_path).is_err() || check_abs_path(&mount_path).is_err() {
        warnings.push(format_args!("rendered path {sub_path:?} refused"));
        return None;
    }
    Some((sub_path, mount_path))
}

/// Whether two mount paths name the same directory (`/a//b/./c/` = `/a/b/c`): the kubelet
/// refuses two mounts at one place.
pub(super) fn same_path(a: &str, b: &str) -> bool {
    fn parts(p: &str) -> impl Iterator<Item = &str> {
        p.split('/').filter(|s| !s.is_empty() && *s != ".")
    }
    a == b || parts(a).eq(parts(b))
}

/// Translates the launch context, when the policy uses one and XNAT has one.
pub fn launch_plan(
    cx: &Context<'_>,
    grant: &Grant<'_>,
    policy: &Policy,
    warnings: &mut Warnings,
) -> Option<LaunchPlan> {
    let opts = cx.launch.filter(|_| policy.user_options.enabled)?;
    Some(launch::plan(
        opts,
        &policy.user_options,
        &grant.readable,
        cx.who.xnat_user,
        cx.caller_verified,
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_compare_as_directories() {
        assert!(same_path("/data/projects/ALPHA/", "/data/projects/ALPHA"));
        assert!(same_path("/data//projects/./ALPHA", "/data/projects/ALPHA"));
        assert!(!same_path("/data/projects/ALPHA2", "/data/projects/ALPHA"));
    }
}
