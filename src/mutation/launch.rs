//! What a launch context adds to the plan: mounts of the data claim, env, resources and a node
//! selector, translated from the plugin's stored options — never wider than what the user may
//! read unless the policy trusts the plugin.

use serde_json::Value;

use super::plan::PlannedMount;
use crate::launch::{LaunchMount, LaunchResources, UserOptions};
use crate::names::{
    check_abs_path, is_env_name, is_label_value, is_qualified_name, is_safe_segment,
    is_valid_project_id, may_be_secret_name,
};
use crate::policy::{MountScope, ResourceSet, SecretsPolicy, UserOptionsPolicy};
use crate::quantity::{Amount, Quantity};
use crate::warning::Warnings;

/// What the launch context adds to the pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchPlan {
    pub mounts: Vec<PlannedMount>,
    pub env: Vec<(String, String)>,
    /// Replaces the policy's values key by key.
    pub resources: ResourceSet,
    pub node_selector: Vec<(String, String)>,
}

/// Translates user options into a plan. `readable` are the projects XNAT says the user can read;
/// unless the policy trusts the plugin, no mount reaches outside them or the user's own space.
pub fn plan(
    opts: &UserOptions,
    policy: &UserOptionsPolicy,
    readable: &[&str],
    xnat_user: &str,
    caller_verified: bool,
    warnings: &mut Warnings,
) -> LaunchPlan {
    let mut out = LaunchPlan::default();
    let spec = &opts.task_template.container_spec;
    for m in &spec.mounts {
        match translate(m, policy, readable, xnat_user) {
            Ok(p) if out.mounts.iter().any(|o| o.mount_path == p.mount_path) => {
                warnings.push(format_args!("launch mount {} listed twice", p.mount_path));
            }
            Ok(p) => out.mounts.push(p),
            Err(why) => warnings.push(format_args!(
                "launch mount {:?} → {:?} refused: {why}",
                m.source, m.target
            )),
        }
    }
    let secrets_ok = match policy.secrets {
        SecretsPolicy::Pass => true,
        SecretsPolicy::VerifiedCaller => caller_verified,
        SecretsPolicy::Drop => false,
    };
    for (name, value) in &spec.env {
        if !is_env_name(name) {
            warnings.push(format_args!("launch env name {name:?} refused"));
        } else if may_be_secret_name(name) && !secrets_ok {
            warnings.push(format_args!(
                "launch env {name} not passed on: its name says it may hold a secret and the \
                 policy passes secrets {}",
                match policy.secrets {
                    SecretsPolicy::Drop => "to nobody",
                    _ => "only to a caller with a verified client certificate",
                }
            ));
        } else {
            out.env.push((name.clone(), value.clone()));
        }
    }
    out.resources = quantities(&opts.task_template.resources, policy, warnings);
    for c in &opts.task_template.placement.constraints {
        match constraint(c) {
            Some(kv) => out.node_selector.push(kv),
            None => warnings.push(format_args!(
                "placement constraint {c:?} is not `label==value`; ignored"
            )),
        }
    }
    out
}

fn translate(
    m: &LaunchMount,
    policy: &UserOptionsPolicy,
    readable: &[&str],
    xnat_user: &str,
) -> Result<PlannedMount, String> {
    let source = m.source.trim_end_matches('/');
    if check_abs_path(source).is_err() {
        return Err("source is not an absolute path without `.`/`..` segments".into());
    }
    if check_abs_path(m.target.trim_end_matches('/')).is_err() {
        return Err("target is not an absolute path without `.`/`..` segments".into());
    }
    let (mapping, rest) = policy
        .path_mappings
        .iter()
        .filter_map(|p| {
            let rest = source.strip_prefix(p.xnat_path.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((p, rest.trim_start_matches('/')))
        })
        .max_by_key(|(p, _)| p.xnat_path.len())
        .ok_or("source is outside every userOptions.pathMappings prefix")?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let first = *segments
        .first()
        .ok_or("source is a mapping's root, not a project's or user's directory")?;
    if let Some(bad) = segments.iter().find(|s| !is_safe_segment(s)) {
        return Err(format!("path segment {bad:?} is not safe"));
    }
    let (read_only, project) = match mapping.scope {
        MountScope::Project => {
            if !is_valid_project_id(first) {
                return Err(format!("{first:?} is not a project id"));
            }
            if !policy.trust_plugin && !readable.contains(&first) {
                return Err(format!("XNAT does not list project {first} for this user"));
            }
            (true, Some(first.to_owned()))
        }
        MountScope::User => {
            if !policy.trust_plugin && first != xnat_user {
                return Err(format!("{first:?} is not this user's own directory"));
            }
            (m.read_only, None)
        }
    };
    Ok(PlannedMount {
        sub_path: format!("{}/{}", mapping.sub_path, segments.join("/")),
        mount_path: m.target.trim_end_matches('/').to_owned(),
        read_only,
        project,
    })
}

fn quantities(
    r: &LaunchResources,
    policy: &UserOptionsPolicy,
    warnings: &mut Warnings,
) -> ResourceSet {
    let mut set = ResourceSet::default();
    let fields = [
        (
            "cpu_limit",
            &r.cpu_limit,
            cpu as fn(&Value) -> Option<String>,
            "cpu",
            true,
        ),
        ("cpu_reservation", &r.cpu_reservation, cpu, "cpu", false),
        ("mem_limit", &r.mem_limit, memory, "memory", true),
        (
            "mem_reservation",
            &r.mem_reservation,
            memory,
            "memory",
            false,
        ),
    ];
    for (name, value, convert, resource, is_limit) in fields {
        let Some(v) = value else { continue };
        match convert(v).and_then(|s| Quantity::parse(&s).ok()) {
            // Zero would mean "no limit" to Kubernetes, the opposite of what was asked for.
            Some(q) if q.value() == Amount::ZERO => warnings.push(format_args!(
                "launch resource {name} = {v} is zero (or rounds to it); left unset"
            )),
            Some(q) if is_limit => {
                set.limits.insert(resource.to_owned(), q);
            }
            Some(q) => {
                set.requests.insert(resource.to_owned(), q);
            }
            None => warnings.push(format_args!(
                "launch resource {name} = {v} not understood; ignored"
            )),
        }
    }
    if let Some(gpu) = r.generic_resources.get("gpu") {
        let count = gpu
            .as_u64()
            .or_else(|| gpu.as_str().and_then(|s| s.parse().ok()));
        match count.map(|n| (n, Quantity::parse(&n.to_string()))) {
            Some((0, _)) => {}
            Some((n, Ok(q))) if n <= 64 => {
                set.limits.insert(policy.gpu_resource.clone(), q);
            }
            _ => warnings.push(format_args!(
                "launch gpu count {gpu} not understood; ignored"
            )),
        }
    }
    set
}

/// Cores as a number (`2.0`, `0.5`) or a string → `2`, `500m`.
fn cpu(v: &Value) -> Option<String> {
    let cores = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    if !(0.0..=1024.0).contains(&cores) {
        return None;
    }
    let millis = (cores * 1000.0).round() as u64;
    Some(if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    })
}

/// Docker-style sizes (`8G`, `512m`, `1024`, `2GB`) are binary units; Kubernetes forms (`8Gi`)
/// pass through.
fn memory(v: &Value) -> Option<String> {
    let s = match v {
        Value::Number(n) => return n.as_u64().map(|b| b.to_string()),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    if s.ends_with('i') {
        return Some(s.to_owned());
    }
    let s = s.strip_suffix(['b', 'B']).unwrap_or(s);
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let suffix = match unit.to_ascii_lowercase().as_str() {
        "" => "",
        "k" => "Ki",
        "m" => "Mi",
        "g" => "Gi",
        "t" => "Ti",
        _ => return None,
    };
    Some(format!("{num}{suffix}"))
}

/// `key==value` or a Docker Swarm constraint → a nodeSelector entry: `node.labels.key` is the
/// label, `node.hostname`/`node.platform.os`/`node.platform.arch` the well-known labels; other
/// `node.*` attributes (role, id) have no Kubernetes label and are refused.
fn constraint(c: &str) -> Option<(String, String)> {
    let (k, v) = c.split_once("==")?;
    let k = k.trim();
    let k = match k {
        "node.hostname" => "kubernetes.io/hostname",
        "node.platform.os" => "kubernetes.io/os",
        "node.platform.arch" => "kubernetes.io/arch",
        _ => match k.strip_prefix("node.labels.") {
            Some(label) => label,
            None if k.starts_with("node.") || k.starts_with("engine.") => return None,
            None => k,
        },
    };
    let v = v.trim();
    (is_qualified_name(k) && is_label_value(v)).then(|| (k.to_owned(), v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn docker_units_become_kubernetes_quantities() {
        assert_eq!(cpu(&json!(2.0)).as_deref(), Some("2"));
        assert_eq!(cpu(&json!(0.5)).as_deref(), Some("500m"));
        assert_eq!(cpu(&json!("1.25")).as_deref(), Some("1250m"));
        assert_eq!(cpu(&json!(-1)), None);
        assert_eq!(cpu(&json!(0.0004)).as_deref(), Some("0"));
        assert_eq!(memory(&json!("8G")).as_deref(), Some("8Gi"));
        assert_eq!(memory(&json!("512m")).as_deref(), Some("512Mi"));
        assert_eq!(memory(&json!("2GB")).as_deref(), Some("2Gi"));
        assert_eq!(memory(&json!("4Gi")).as_deref(), Some("4Gi"));
        assert_eq!(memory(&json!(1024)).as_deref(), Some("1024"));
        assert_eq!(memory(&json!("lots")), None);
    }

    #[test]
    fn constraints_become_node_selector_entries() {
        assert_eq!(
            constraint("node.labels.gpu==true"),
            Some(("gpu".into(), "true".into()))
        );
        assert_eq!(
            constraint("kubernetes.io/hostname == node-1"),
            Some(("kubernetes.io/hostname".into(), "node-1".into()))
        );
        assert_eq!(constraint("gpu!=true"), None);
        assert_eq!(
            constraint("node.hostname==n1"),
            Some(("kubernetes.io/hostname".into(), "n1".into()))
        );
        assert_eq!(constraint("node.role==worker"), None);
        assert_eq!(constraint("engine.labels.x==y"), None);
        assert_eq!(constraint("bad key==x"), None);
    }

    #[test]
    fn values_that_round_to_zero_are_unset_with_a_warning() {
        let policy = crate::policy::Policy::parse("").unwrap().user_options;
        let opts: UserOptions = serde_json::from_value(json!({"task_template": {"resources": {
            "cpu_limit": 0.0004, "cpu_reservation": 0, "mem_limit": "0", "mem_reservation": "0G"
        }}}))
        .unwrap();
        let mut warnings = Warnings::new();
        let plan = plan(&opts, &policy, &[], "alice", false, &mut warnings);
        assert!(plan.resources.limits.is_empty(), "{:?}", plan.resources);
        assert!(plan.resources.requests.is_empty(), "{:?}", plan.resources);
        assert_eq!(warnings.len(), 4, "{warnings:?}");
    }

    #[test]
    fn launch_env_names_are_checked_as_kubernetes_does() {
        let policy = crate::policy::Policy::parse("").unwrap().user_options;
        let opts: UserOptions =
            serde_json::from_value(json!({"task_template": {"container_spec": {
                "env": {"..": "x", "..x": "y", "OK": "z"}
            }}}))
            .unwrap();
        let mut warnings = Warnings::new();
        let plan = plan(&opts, &policy, &[], "alice", false, &mut warnings);
        assert_eq!(plan.env, [("OK".to_owned(), "z".to_owned())]);
    }
}
