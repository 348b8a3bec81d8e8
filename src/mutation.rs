//! The decision: pod + identity + access + policy → JSON Patch (or a denial). Pure, so every rule
//! is tested without sockets.
//!
//! The patch only ever *adds* (or, for resources in `override` mode, replaces) leaf values, so every
//! field of the pod it does not name — including ones this build's k8s-openapi does not know —
//! reaches the API server untouched. What is already in the pod is compared first, so running the
//! webhook on its own output adds nothing (`reinvocationPolicy: IfNeeded` is safe).
//!
//! Conflicts are resolved in the pod's favour, with a warning:
//! - a volume named like the policy's volume that is not the policy's claim: no data mounts at all
//!   (mounting into somebody else's volume could expose the wrong data);
//! - a volumeMount already at one of our mount paths: that one mount is left out;
//! - an env var the pod already sets: the pod's value stays.

use std::borrow::Cow;
use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{AccessOutcome, ProjectGroup};
use crate::launch::{self, PlannedMount, UserOptions};
use crate::names::{check_sub_path, is_extended_resource, is_safe_segment};
use crate::policy::{MountTemplate, OnError, Policy, ResourceMode, ResourceSet, Rule, Values};
use crate::quantity::{Quantity, same_quantity, value_of};

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
    pub launch: Option<&'a UserOptions>,
    pub xnat_url: &'a str,
}

/// What to answer the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow {
        patch: Vec<PatchOperation>,
        warnings: Vec<String>,
        /// Projects the pod ends up with (mounted now or already present).
        projects: Vec<String>,
        /// Names of the policy rules that matched.
        rules: Vec<String>,
    },
    Deny {
        message: String,
    },
}

/// The parts of a pod spec the decision reads, borrowed from the request's JSON.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SpecView<'a> {
    #[serde(borrow, default)]
    volumes: Option<Vec<VolumeView<'a>>>,
    #[serde(borrow, default)]
    containers: Vec<ContainerView<'a>>,
    #[serde(borrow, default)]
    node_selector: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeView<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    persistent_volume_claim: Option<PvcView<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PvcView<'a> {
    #[serde(borrow)]
    claim_name: Cow<'a, str>,
    #[serde(default)]
    read_only: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerView<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    volume_mounts: Option<Vec<MountView<'a>>>,
    #[serde(borrow, default)]
    env: Option<Vec<EnvView<'a>>>,
    #[serde(borrow, default)]
    resources: Option<ResourcesView<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MountView<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    mount_path: Cow<'a, str>,
    #[serde(borrow, default)]
    sub_path: Option<Cow<'a, str>>,
    #[serde(default)]
    read_only: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvView<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    value: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct ResourcesView<'a> {
    #[serde(borrow, default)]
    limits: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(borrow, default)]
    requests: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

/// Decides what to do with a notebook pod whose `spec` is given as JSON text.
pub fn decide(spec: &str, cx: &Context<'_>, policy: &Policy) -> Decision {
    let who = &cx.who;
    let mut warnings = Vec::new();
    let (mut readable, groups): (Vec<&str>, &[ProjectGroup]) = match cx.access {
        AccessOutcome::Known(a) => {
            if a.unknown_user {
                warnings.push(format!(
                    "xnat-webhook: XNAT has no user {:?}; no project data attached",
                    who.xnat_user
                ));
            }
            (a.readable_projects(&policy.xnat.roles), &a.groups)
        }
        AccessOutcome::Stale { access, age, error } => {
            warnings.push(format!(
                "xnat-webhook: XNAT could not be asked ({error}); using its answer from {}s ago",
                age.as_secs()
            ));
            (access.readable_projects(&policy.xnat.roles), &access.groups)
        }
        AccessOutcome::Unavailable(why) => {
            if policy.xnat.on_error == OnError::Deny {
                return Decision::Deny {
                    message: policy.xnat.deny_message.clone(),
                };
            }
            warnings.push(format!(
                "xnat-webhook: XNAT could not be asked ({why}); started without project data"
            ));
            (Vec::new(), &[])
        }
    };
    let storage = &policy.storage;
    let denied: Vec<&str> = readable
        .iter()
        .copied()
        .filter(|p| storage.is_never_mounted(p))
        .collect();
    if !denied.is_empty() {
        readable.retain(|p| !storage.is_never_mounted(p));
        warnings.push(format!(
            "xnat-webhook: not mounted by site policy: {}",
            denied.join(", ")
        ));
    }
    let rules: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|r| rule_matches(r, groups, policy))
        .collect();

    let spec = match serde_json::from_str::<SpecView<'_>>(spec) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!(
                "xnat-webhook: pod spec not understood ({e}); left unchanged"
            ));
            return allow_unchanged(warnings);
        }
    };
    let Some(ci) = spec
        .containers
        .iter()
        .position(|c| c.name == policy.pods.container)
        .or((!spec.containers.is_empty()).then_some(0))
    else {
        warnings.push("xnat-webhook: pod has no containers; left unchanged".into());
        return allow_unchanged(warnings);
    };
    let container = &spec.containers[ci];
    let base = Values {
        project: None,
        xnat_user: who.xnat_user,
        jupyter_user: who.jupyter_user,
        server_name: who.server_name,
        projects: "",
        xnat_url: cx.xnat_url,
    };
    let launch = cx
        .launch
        .filter(|_| policy.user_options.enabled)
        .map(|o| launch::plan(o, &policy.user_options, &readable, who.xnat_user));
    if let Some(l) = &launch {
        warnings.extend(l.warnings.iter().cloned());
    }

    let mut patch = Vec::new();
    let mut projects = Vec::new();
    let volume_ok = match spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == storage.volume_name)
    {
        None => Some(false),
        Some(v) if is_our_claim(v, &storage.claim_name) => Some(true),
        Some(_) => {
            warnings.push(format!(
                "xnat-webhook: pod already has a volume {:?} that is not claim {:?}; no XNAT data mounts added",
                storage.volume_name, storage.claim_name
            ));
            None
        }
    };

    if let Some(volume_present) = volume_ok {
        // A launch context replaces the project list's mounts; it was checked against it.
        let mut wanted: Vec<PlannedMount> = match &launch {
            Some(l) => l
                .mounts
                .iter()
                .filter(|m| {
                    let denied = m
                        .project
                        .as_deref()
                        .is_some_and(|p| storage.is_never_mounted(p));
                    if denied {
                        warnings.push(format!(
                            "xnat-webhook: launch mount {} not mounted by site policy",
                            m.mount_path
                        ));
                    }
                    !denied
                })
                .cloned()
                .collect(),
            None => wanted_mounts(&readable, &base, policy, &mut warnings),
        };
        // The cap holds for launch-context project mounts too.
        let mut kept = 0;
        let mut left_out = Vec::new();
        wanted.retain(|m| {
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
            warnings.push(format!(
                "xnat-webhook: at most {} project mounts; left out: {}",
                storage.max_project_mounts,
                left_out.join(", ")
            ));
        }
        for rule in &rules {
            for m in &rule.mounts {
                let Some((sub_path, mount_path)) = render_mount(&m.template, &base, &mut warnings)
                else {
                    continue;
                };
                if wanted.iter().any(|w| same_path(&w.mount_path, &mount_path)) {
                    warnings.push(format!(
                        "xnat-webhook: rule {:?} mount {mount_path} is taken; left out",
                        rule.name
                    ));
                    continue;
                }
                wanted.push(PlannedMount {
                    sub_path,
                    mount_path,
                    read_only: m.read_only,
                    project: None,
                });
            }
        }
        let existing = container.volume_mounts.as_deref().unwrap_or_default();
        let mut to_add = Vec::new();
        for w in wanted {
            match existing
                .iter()
                .find(|m| same_path(&m.mount_path, &w.mount_path))
            {
                Some(m) if is_same_mount(m, &w, &storage.volume_name) => {
                    projects.extend(w.project);
                }
                Some(_) => warnings.push(format!(
                    "xnat-webhook: {} is already mounted by the pod; left as it is",
                    w.mount_path
                )),
                None => {
                    projects.extend(w.project.clone());
                    to_add.push(json!({
                        "name": storage.volume_name,
                        "mountPath": w.mount_path,
                        "subPath": w.sub_path,
                        "readOnly": w.read_only,
                    }));
                }
            }
        }
        if !to_add.is_empty() && !volume_present {
            append(
                &mut patch,
                &["spec", "volumes"],
                spec.volumes.is_some(),
                vec![json!({
                    "name": storage.volume_name,
                    "persistentVolumeClaim": { "claimName": storage.claim_name },
                })],
            );
        }
        let at = ci.to_string();
        append(
            &mut patch,
            &["spec", "containers", &at, "volumeMounts"],
            container.volume_mounts.is_some(),
            to_add,
        );
    }

    let joined = projects.join(",");
    let values = Values {
        projects: &joined,
        ..base
    };
    let existing_env = container.env.as_deref().unwrap_or_default();
    let mut env_add = Vec::new();
    // Precedence: the policy's env, then the launch context's for names the policy does not
    // set, then matching rules in order (a later rule wins); the pod's own value beats them all.
    let mut wanted_env: Vec<(&str, String)> = policy
        .env
        .iter()
        .map(|v| (v.name.as_str(), v.value.render(&values)))
        .collect();
    for (name, value) in launch.iter().flat_map(|l| l.env.iter()) {
        if !wanted_env.iter().any(|(n, _)| n == name) {
            wanted_env.push((name, value.clone()));
        }
    }
    for var in rules.iter().flat_map(|r| r.env.iter()) {
        let value = var.value.render(&values);
        match wanted_env.iter_mut().find(|(n, _)| *n == var.name) {
            Some(slot) => slot.1 = value,
            None => wanted_env.push((&var.name, value)),
        }
    }
    for (name, value) in wanted_env {
        match existing_env.iter().find(|e| e.name == name) {
            Some(e) if e.value.as_deref() == Some(value.as_str()) => {}
            Some(_) => warnings.push(format!(
                "xnat-webhook: the pod already sets env {name}; its value is kept"
            )),
            None => env_add.push(json!({ "name": name, "value": value })),
        }
    }
    let at = ci.to_string();
    append(
        &mut patch,
        &["spec", "containers", &at, "env"],
        container.env.is_some(),
        env_add,
    );

    // Precedence: the policy's resources, then the launch context's, then matching rules in
    // order (a later rule wins), each key by key.
    let mut resources = policy.resources.set.clone();
    if let Some(l) = &launch {
        resources.overlay(&l.resources);
    }
    for rule in &rules {
        resources.overlay(&rule.resources);
    }
    resources_patch(
        &mut patch,
        ci,
        container.resources.as_ref(),
        policy.resources.mode,
        &resources,
    );
    if let Some(l) = &launch {
        node_selector_patch(
            &mut patch,
            spec.node_selector.as_ref(),
            &l.node_selector,
            &mut warnings,
        );
    }

    Decision::Allow {
        patch,
        warnings,
        projects,
        rules: rules.iter().map(|r| r.name.clone()).collect(),
    }
}

/// A rule matches when the user holds one of its roles (default: any of `xnat.roles`) in one of
/// its projects (`*`: any), never counting projects the site never mounts.
fn rule_matches(rule: &Rule, groups: &[ProjectGroup], policy: &Policy) -> bool {
    groups.iter().any(|g| {
        let role_ok = if rule.roles.is_empty() {
            policy.xnat.roles.contains(&g.role)
        } else {
            rule.roles.contains(&g.role)
        };
        let project_ok = rule
            .projects
            .as_ref()
            .is_none_or(|ps| ps.contains(&g.project));
        role_ok && project_ok && !policy.storage.is_never_mounted(&g.project)
    })
}

fn allow_unchanged(warnings: Vec<String>) -> Decision {
    Decision::Allow {
        patch: Vec::new(),
        warnings,
        projects: Vec::new(),
        rules: Vec::new(),
    }
}

/// Whether two mount paths name the same directory (`/a//b/./c/` = `/a/b/c`): the kubelet
/// refuses two mounts at one place.
fn same_path(a: &str, b: &str) -> bool {
    fn parts(p: &str) -> impl Iterator<Item = &str> {
        p.split('/').filter(|s| !s.is_empty() && *s != ".")
    }
    a == b || parts(a).eq(parts(b))
}

fn is_our_claim(v: &VolumeView<'_>, claim: &str) -> bool {
    v.persistent_volume_claim
        .as_ref()
        .is_some_and(|p| p.claim_name == claim && p.read_only != Some(true))
}

fn is_same_mount(m: &MountView<'_>, w: &PlannedMount, volume: &str) -> bool {
    m.name == volume
        && m.sub_path.as_deref() == Some(w.sub_path.as_str())
        && m.read_only.unwrap_or(false) == w.read_only
}

/// The mounts the policy grants: one read-only mount per readable project, then the workspace.
fn wanted_mounts(
    readable: &[&str],
    base: &Values<'_>,
    policy: &Policy,
    warnings: &mut Vec<String>,
) -> Vec<PlannedMount> {
    let storage = &policy.storage;
    let mut out: Vec<PlannedMount> = Vec::with_capacity(readable.len() + 1);
    let (readable, left_out) = readable.split_at(readable.len().min(storage.max_project_mounts));
    if !left_out.is_empty() {
        warnings.push(format!(
            "xnat-webhook: at most {} projects are mounted; left out: {}",
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
            warnings.push(format!(
                "xnat-webhook: workspace mount path {mount_path} is taken by a project; workspace not mounted"
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

/// Renders a mount's subPath and mountPath, or explains why it cannot be mounted: every value a
/// path template uses must be a safe single path segment.
fn render_mount(
    t: &MountTemplate,
    values: &Values<'_>,
    warnings: &mut Vec<String>,
) -> Option<(String, String)> {
    for var in t.sub_path.vars().chain(t.mount_path.vars()) {
        // Path templates only admit path placeholders (checked at load).
        let value = values.get(var);
        if !is_safe_segment(value) {
            warnings.push(format!(
                "xnat-webhook: {{{}}} = {value:?} is not a safe path segment; mount {} skipped",
                var.name(),
                t.mount_path.source()
            ));
            return None;
        }
    }
    let sub_path = t.sub_path.render(values);
    let mount_path = t.mount_path.render(values);
    // Defence in depth: the template was checked at load and the values just now.
    if check_sub_path(&sub_path).is_err() || check_sub_path(&mount_path[1..]).is_err() {
        warnings.push(format!("xnat-webhook: rendered path {sub_path:?} refused"));
        return None;
    }
    Some((sub_path, mount_path))
}

/// Adds `items` at `path`: appended one by one when the array exists, else as a new array.
fn append(patch: &mut Vec<PatchOperation>, path: &[&str], exists: bool, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    if exists {
        for item in items {
            let mut p = PointerBuf::from_tokens(path.iter().copied());
            p.push_back("-");
            patch.push(add(p, item));
        }
    } else {
        patch.push(add(
            PointerBuf::from_tokens(path.iter().copied()),
            Value::Array(items),
        ));
    }
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// Fills in (or, in `override` mode, replaces) requests and limits, keeping every request at or
/// below its limit so the pod stays valid. Extended resources (GPUs) are set as limits; when the
/// pod has a request for one, it is set equal, as Kubernetes requires.
fn resources_patch(
    patch: &mut Vec<PatchOperation>,
    ci: usize,
    have: Option<&ResourcesView<'_>>,
    mode: ResourceMode,
    want: &ResourceSet,
) {
    let have_limits = have.and_then(|r| r.limits.as_ref());
    let have_requests = have.and_then(|r| r.requests.as_ref());
    let get = |m: Option<&BTreeMap<Cow<'_, str>, Cow<'_, str>>>, k: &str| {
        m.and_then(|m| m.get(k)).map(|v| v.to_string())
    };
    let mut new_limits = serde_json::Map::new();
    let mut new_requests = serde_json::Map::new();
    let mut replaced = Vec::new();

    let mut names: Vec<&String> = want.requests.keys().chain(want.limits.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let name = name.as_str();
        let pod_req = get(have_requests, name);
        let pod_lim = get(have_limits, name);
        let p_lim = want.limits.get(name).cloned();
        let p_req = if is_extended_resource(name) {
            pod_req.as_ref().and(p_lim.clone())
        } else {
            want.requests.get(name).cloned()
        };
        let (req, lim) = settle(pod_req.as_deref(), pod_lim.as_deref(), &p_req, &p_lim, mode);
        for (target, pod_value, value, kind) in [
            (&mut new_requests, &pod_req, req, "requests"),
            (&mut new_limits, &pod_lim, lim, "limits"),
        ] {
            match (pod_value, value) {
                (None, Some(v)) => {
                    target.insert(name.to_owned(), Value::String(v));
                }
                (Some(old), Some(v)) if !same_quantity(old, &v) => replaced.push((kind, name, v)),
                _ => {}
            }
        }
    }

    let at = ci.to_string();
    let container = ["spec", "containers", at.as_str(), "resources"];
    if have.is_none() {
        let mut res = serde_json::Map::new();
        if !new_limits.is_empty() {
            res.insert("limits".into(), Value::Object(new_limits));
        }
        if !new_requests.is_empty() {
            res.insert("requests".into(), Value::Object(new_requests));
        }
        if !res.is_empty() {
            patch.push(add(PointerBuf::from_tokens(container), Value::Object(res)));
        }
    } else {
        for (kind, exists, map) in [
            ("limits", have_limits.is_some(), new_limits),
            ("requests", have_requests.is_some(), new_requests),
        ] {
            if map.is_empty() {
                continue;
            }
            let mut p = PointerBuf::from_tokens(container);
            p.push_back(kind);
            if exists {
                for (k, v) in map {
                    let mut p = p.clone();
                    p.push_back(k);
                    patch.push(add(p, v));
                }
            } else {
                patch.push(add(p, Value::Object(map)));
            }
        }
    }
    for (kind, name, v) in replaced {
        let mut p = PointerBuf::from_tokens(container);
        p.push_back(kind);
        p.push_back(name);
        patch.push(PatchOperation::Replace(ReplaceOperation {
            path: p,
            value: Value::String(v),
        }));
    }
}

/// Adds the launch context's node selector entries the pod does not have; the pod's own value of
/// a key wins.
fn node_selector_patch(
    patch: &mut Vec<PatchOperation>,
    have: Option<&BTreeMap<Cow<'_, str>, Cow<'_, str>>>,
    want: &[(String, String)],
    warnings: &mut Vec<String>,
) {
    let mut add = serde_json::Map::new();
    for (k, v) in want {
        match have.and_then(|h| h.get(k.as_str())) {
            Some(existing) if existing == v => {}
            Some(existing) => warnings.push(format!(
                "xnat-webhook: the pod already selects {k}={existing}; launch constraint {k}=={v} ignored"
            )),
            None => {
                add.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    if add.is_empty() {
        return;
    }
    if have.is_some() {
        for (k, v) in add {
            let mut p = PointerBuf::from_tokens(["spec", "nodeSelector"]);
            p.push_back(k);
            patch.push(self::add(p, v));
        }
    } else {
        patch.push(self::add(
            PointerBuf::from_tokens(["spec", "nodeSelector"]),
            Value::Object(add),
        ));
    }
}

/// The request and limit a container should end up with for one resource.
///
/// `fillUnset`: the pod's values stay; a filled-in limit is raised to the pod's request, and a
/// filled-in request lowered to the pod's limit. `override`: the policy's values win; the pod's
/// value on the other side is moved to keep request ≤ limit.
fn settle(
    pod_req: Option<&str>,
    pod_lim: Option<&str>,
    p_req: &Option<Quantity>,
    p_lim: &Option<Quantity>,
    mode: ResourceMode,
) -> (Option<String>, Option<String>) {
    let policy_req = p_req.as_ref().map(Quantity::as_str);
    let policy_lim = p_lim.as_ref().map(Quantity::as_str);
    let (req, lim, req_from_policy, lim_from_policy) = match mode {
        ResourceMode::FillUnset => (
            pod_req.or(policy_req),
            pod_lim.or(policy_lim),
            pod_req.is_none() && policy_req.is_some(),
            pod_lim.is_none() && policy_lim.is_some(),
        ),
        ResourceMode::Override => (
            policy_req.or(pod_req),
            policy_lim.or(pod_lim),
            policy_req.is_some(),
            policy_lim.is_some(),
        ),
    };
    let (req, lim) = match (req, lim) {
        (Some(r), Some(l)) => match (value_of(r), value_of(l)) {
            // A quantity we cannot read is the API server's to reject, not ours to reorder.
            (Some(rv), Some(lv)) if rv > lv => {
                let raise_limit = match mode {
                    ResourceMode::FillUnset => lim_from_policy,
                    ResourceMode::Override => req_from_policy && !lim_from_policy,
                };
                let lower_request = match mode {
                    ResourceMode::FillUnset => req_from_policy,
                    ResourceMode::Override => lim_from_policy && !req_from_policy,
                };
                if raise_limit {
                    (Some(r), Some(r))
                } else if lower_request {
                    (Some(l), Some(l))
                } else {
                    (Some(r), Some(l))
                }
            }
            _ => (Some(r), Some(l)),
        },
        other => other,
    };
    (req.map(str::to_owned), lim.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Option<Quantity> {
        Some(Quantity::parse(s).unwrap())
    }

    #[test]
    fn mount_paths_compare_as_directories() {
        assert!(same_path("/data/projects/ALPHA/", "/data/projects/ALPHA"));
        assert!(same_path("/data//projects/./ALPHA", "/data/projects/ALPHA"));
        assert!(!same_path("/data/projects/ALPHA2", "/data/projects/ALPHA"));
    }

    #[test]
    fn fill_unset_keeps_the_pods_values() {
        let s = settle(
            Some("1"),
            Some("2"),
            &q("500m"),
            &q("4"),
            ResourceMode::FillUnset,
        );
        assert_eq!(s, (Some("1".into()), Some("2".into())));
    }

    #[test]
    fn fill_unset_never_puts_a_limit_below_the_pods_request() {
        // Pod asks for 16Gi, policy's default limit is 8Gi: the filled-in limit becomes 16Gi.
        let s = settle(
            Some("16Gi"),
            None,
            &q("1Gi"),
            &q("8Gi"),
            ResourceMode::FillUnset,
        );
        assert_eq!(s, (Some("16Gi".into()), Some("16Gi".into())));
    }

    #[test]
    fn fill_unset_never_puts_a_request_above_the_pods_limit() {
        let s = settle(
            None,
            Some("250m"),
            &q("500m"),
            &q("4"),
            ResourceMode::FillUnset,
        );
        assert_eq!(s, (Some("250m".into()), Some("250m".into())));
    }

    #[test]
    fn override_wins_and_moves_the_pods_other_side() {
        let s = settle(
            Some("16Gi"),
            Some("16Gi"),
            &None,
            &q("8Gi"),
            ResourceMode::Override,
        );
        assert_eq!(s, (Some("8Gi".into()), Some("8Gi".into())));
        let s = settle(Some("1"), Some("1"), &q("2"), &None, ResourceMode::Override);
        assert_eq!(s, (Some("2".into()), Some("2".into())));
        let s = settle(
            Some("1"),
            Some("2"),
            &q("500m"),
            &q("4"),
            ResourceMode::Override,
        );
        assert_eq!(s, (Some("500m".into()), Some("4".into())));
    }
}
