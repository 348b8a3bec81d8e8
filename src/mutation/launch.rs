//! What a launch context adds to the plan, translated from the plugin's stored options the way
//! the chart's `pre_spawn_hook.py` applies them — mounts, env, resources, image, command, node
//! placement — but never wider than what the user may read unless the policy trusts the plugin,
//! and each bad entry refused on its own with a warning that names it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::plan::{PlannedMount, same_path};
use crate::launch::{LaunchMount, LaunchResources, UserOptions};
use crate::names::{
    check_abs_path, is_env_name, is_extended_resource_name, is_label_value, is_qualified_name,
    is_safe_segment, is_valid_project_id, may_be_secret_name,
};
use crate::policy::{MountScope, ResourceSet, SecretsPolicy, SourcePath, UserOptionsPolicy};
use crate::quantity::{Amount, Quantity};
use crate::warning::Warnings;

/// The plugin's directory of a project's shared-in data: `{archive}/` this, then
/// `jupyter-notebooks/{eventTrackingId}` (hard links or copies XNAT makes of what the user may
/// read, removed when the server stops).
pub const SHARED_DATA_DIR: &str = "SHARED.PROJECT.DATA.STORAGE.DIRECTORY";

/// The plugin's token pair: `XNAT_USER` is the alias of a fresh token of the user's, `XNAT_PASS`
/// its secret. Never split: both come from the launch context, or neither does.
pub const TOKEN_PAIR: [&str; 2] = ["XNAT_USER", "XNAT_PASS"];

/// Most words a command may have, and most characters of an image name.
const MAX_COMMAND_WORDS: usize = 256;
const MAX_IMAGE_CHARS: usize = 1024;

/// What the launch context adds to the pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchPlan {
    pub mounts: Vec<PlannedMount>,
    /// The plugin's env, as the policy lets it through.
    pub env: Vec<(String, String)>,
    /// The plugin's `XNAT_USER`/`XNAT_PASS` are in `env`: neither may come from anywhere else.
    pub owns_token_pair: bool,
    /// Replaces the policy's values key by key.
    pub resources: ResourceSet,
    /// A constraint key with one allowed value (as the chart's hook sets it).
    pub node_selector: Vec<(String, String)>,
    /// Constraints nodeSelector cannot say: several allowed values, or values ruled out.
    pub node_affinity: Vec<NodeExpression>,
    pub image: Option<String>,
    /// The compute environment's command, in words.
    pub command: Option<Vec<String>>,
    /// The compute environment's labels the policy lets through.
    pub labels: Vec<(String, String)>,
}

/// One `matchExpressions` entry of a required node-affinity term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeExpression {
    pub key: String,
    /// `In` or `NotIn`.
    pub operator: &'static str,
    pub values: Vec<String>,
}

/// Who the launch is for, and what XNAT says they may read.
pub struct LaunchGrant<'a> {
    pub readable: &'a [&'a str],
    pub xnat_user: &'a str,
    /// The server being started (the plugin names it by the launch's `eventTrackingId`).
    pub server_name: &'a str,
    pub caller_verified: bool,
    /// Where the policy mounts the user's workspace: a plugin mount there is the workspace
    /// too, and gives way to the policy's (as the chart's hook leaves it to z2jh).
    pub workspace_path: Option<String>,
}

/// Translates user options into a plan. Unless the policy trusts the plugin, no mount reaches
/// outside the projects the user may read or the user's own space.
pub fn plan(
    opts: &UserOptions,
    policy: &UserOptionsPolicy,
    grant: &LaunchGrant<'_>,
    warnings: &mut Warnings,
) -> LaunchPlan {
    let spec = &opts.task_template.container_spec;
    let mut out = LaunchPlan {
        mounts: mounts(&spec.mounts, opts, policy, grant, warnings),
        resources: quantities(&opts.task_template.resources, policy, warnings),
        ..LaunchPlan::default()
    };
    env(&spec.env, policy, grant, &mut out, warnings);
    placement(
        &opts.task_template.placement.constraints,
        &mut out,
        warnings,
    );
    if let Some(image) = spec
        .image
        .as_deref()
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        if image.len() > MAX_IMAGE_CHARS
            || image.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            warnings.push(format_args!(
                "launch image {image:?} is not an image name; ignored"
            ));
        } else if !policy.allows_image(image) {
            warnings.push(format_args!(
                "launch image {image:?} is not in userOptions.allowedImages; the hub's image is used"
            ));
        } else {
            out.image = Some(image.to_owned());
        }
    }
    if policy.command
        && let Some(command) = spec.command.as_deref()
    {
        // As the hook does (`command.split(' ')`), without the empty words double spaces make.
        let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        if words.len() > MAX_COMMAND_WORDS {
            warnings.push(format_args!(
                "launch command has more than {MAX_COMMAND_WORDS} words; ignored"
            ));
        } else if !words.is_empty() {
            out.command = Some(words);
        }
    }
    if policy.labels {
        for (k, v) in &spec.labels {
            match v.as_str() {
                Some(v) if is_qualified_name(k) && is_label_value(v) && !is_reserved_label(k) => {
                    out.labels.push((k.clone(), v.to_owned()));
                }
                _ => warnings.push(format_args!("launch label {k:?} = {v} refused")),
            }
        }
    }
    out
}

/// Labels under Kubernetes' and JupyterHub's own prefixes select pods for the hub's network
/// policies and services: XNAT never sets those.
fn is_reserved_label(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return false;
    };
    prefix == "hub.jupyter.org"
        || prefix.ends_with(".jupyter.org")
        || prefix == "kubernetes.io"
        || prefix.ends_with(".kubernetes.io")
        || prefix == "k8s.io"
        || prefix.ends_with(".k8s.io")
}

fn mounts(
    stored: &[Value],
    opts: &UserOptions,
    policy: &UserOptionsPolicy,
    grant: &LaunchGrant<'_>,
    warnings: &mut Warnings,
) -> Vec<PlannedMount> {
    let mut out: Vec<PlannedMount> = Vec::new();
    for v in stored {
        let m = match LaunchMount::read(v) {
            Ok(m) => m,
            Err(why) => {
                warnings.push(format_args!("launch mount {v} refused: {why}"));
                continue;
            }
        };
        if let Some(ws) = &grant.workspace_path
            && same_path(ws, &m.target)
        {
            continue;
        }
        match translate(&m, opts, policy, grant) {
            Ok(p) if out.iter().any(|o| o.mount_path == p.mount_path) => {
                warnings.push(format_args!("launch mount {} listed twice", p.mount_path));
            }
            Ok(p) => out.push(p),
            Err(why) => warnings.push(format_args!(
                "launch mount {:?} → {:?} refused: {why}",
                m.source, m.target
            )),
        }
    }
    out
}

fn translate(
    m: &LaunchMount,
    opts: &UserOptions,
    policy: &UserOptionsPolicy,
    grant: &LaunchGrant<'_>,
) -> Result<PlannedMount, String> {
    let target = m.target.trim_end_matches('/');
    if check_abs_path(target).is_err() {
        return Err("target is not an absolute path without `.`/`..` segments".into());
    }
    let source = SourcePath::parse(&m.source);
    if let Some(bad) = source.segments.iter().find(|s| !is_safe_segment(s)) {
        return Err(format!("path segment {bad:?} is not safe"));
    }
    let (mapping, rest) = policy
        .path_mappings
        .iter()
        .filter_map(|p| Some((p, p.strip(&source)?)))
        .max_by_key(|(p, _)| p.segments.len())
        .ok_or("source is outside every userOptions.pathMappings prefix")?;
    let first = *rest
        .first()
        .ok_or("source is a mapping's root, not a project's or user's directory")?;
    let (read_only, project) = match mapping.scope {
        MountScope::Project if first == SHARED_DATA_DIR => (
            true,
            Some(shared_data(&rest, opts, grant, policy.trust_plugin)?),
        ),
        MountScope::Project => {
            if !is_valid_project_id(first) {
                return Err(format!("{first:?} is not a project id"));
            }
            if !policy.trust_plugin && !grant.readable.contains(&first) {
                return Err(format!("XNAT does not list project {first} for this user"));
            }
            (true, Some(first.to_owned()))
        }
        MountScope::User => {
            if !policy.trust_plugin && first != grant.xnat_user {
                return Err(format!("{first:?} is not this user's own directory"));
            }
            (m.is_read_only(), None)
        }
    };
    let sub_path = match mapping.sub_path.as_str() {
        "" => rest.join("/"),
        prefix => format!("{prefix}/{}", rest.join("/")),
    };
    Ok(PlannedMount {
        volume: mapping.volume.clone(),
        sub_path,
        mount_path: target.to_owned(),
        read_only,
        project,
    })
}

/// `SHARED.PROJECT.DATA.STORAGE.DIRECTORY/jupyter-notebooks/{eventTrackingId}`: the launch's
/// own shared-data directory, for a project the user may read. Returns that project.
fn shared_data(
    rest: &[&str],
    opts: &UserOptions,
    grant: &LaunchGrant<'_>,
    trusted: bool,
) -> Result<String, String> {
    let event = opts.event_tracking_id.as_deref().unwrap_or_default();
    let [_, "jupyter-notebooks", dir] = rest else {
        return Err("not a launch's shared-data directory".into());
    };
    if event.is_empty() || *dir != event {
        return Err(format!(
            "shared data of another launch than this one ({event:?})"
        ));
    }
    if !grant.server_name.is_empty() && grant.server_name != event {
        return Err(format!(
            "shared data of launch {event:?}, but this server is {:?}",
            grant.server_name
        ));
    }
    let project = opts.project_id.as_deref().unwrap_or_default();
    if !is_valid_project_id(project) {
        return Err(format!(
            "the launch's project {project:?} is not a project id"
        ));
    }
    if !trusted && !grant.readable.contains(&project) {
        return Err(format!(
            "XNAT does not list project {project} for this user"
        ));
    }
    Ok(project.to_owned())
}

/// The plugin's env, less bad names and, as the policy says, names that may hold a secret; the
/// token pair as one.
fn env(
    stored: &BTreeMap<String, Value>,
    policy: &UserOptionsPolicy,
    grant: &LaunchGrant<'_>,
    out: &mut LaunchPlan,
    warnings: &mut Warnings,
) {
    let secrets_ok = match policy.secrets {
        SecretsPolicy::Pass => true,
        SecretsPolicy::VerifiedCaller => grant.caller_verified,
        SecretsPolicy::Drop => false,
    };
    let why_not = || match policy.secrets {
        SecretsPolicy::Drop => "to nobody",
        _ => "only to a caller with a verified client certificate",
    };
    let value_of = |name: &str| stored.get(name).and_then(Value::as_str);
    let pair = TOKEN_PAIR.map(value_of);
    match pair {
        [Some(user), Some(pass)] if secrets_ok => {
            out.env.push((TOKEN_PAIR[0].to_owned(), user.to_owned()));
            out.env.push((TOKEN_PAIR[1].to_owned(), pass.to_owned()));
            out.owns_token_pair = true;
        }
        [Some(_), Some(_)] => warnings.push(format_args!(
            "launch env XNAT_USER/XNAT_PASS (the user's XNAT token) not passed on: the policy \
             passes secrets {}",
            why_not()
        )),
        [None, None] => {}
        _ => warnings.push("launch env has only one of XNAT_USER/XNAT_PASS; neither passed on"),
    }
    for (name, value) in stored {
        if TOKEN_PAIR.contains(&name.as_str()) {
            continue;
        }
        let value = match value {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            other => {
                warnings.push(format_args!(
                    "launch env {name} = {other} is not text; ignored"
                ));
                continue;
            }
        };
        if !is_env_name(name) {
            warnings.push(format_args!("launch env name {name:?} refused"));
        } else if may_be_secret_name(name) && !secrets_ok {
            warnings.push(format_args!(
                "launch env {name} not passed on: its name says it may hold a secret and the \
                 policy passes secrets {}",
                why_not()
            ));
        } else {
            out.env.push((name.clone(), value));
        }
    }
}

/// One key with one allowed value → nodeSelector (as the hook sets it); several allowed values
/// → one `In`, values ruled out → `NotIn`, in one required affinity term.
fn placement(stored: &[Value], out: &mut LaunchPlan, warnings: &mut Warnings) {
    let mut by_key: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for c in stored {
        let parsed = c.as_str().and_then(constraint);
        match parsed {
            Some((key, equal, value)) => {
                let (is, not) = by_key.entry(key).or_default();
                let list = if equal { is } else { not };
                if !list.contains(&value) {
                    list.push(value);
                }
            }
            None => warnings.push(format_args!(
                "placement constraint {c} is not `label==value` or `label!=value` of a node \
                 label; ignored"
            )),
        }
    }
    for (key, (is, not)) in by_key {
        if let ([value], []) = (is.as_slice(), not.as_slice()) {
            out.node_selector.push((key, value.clone()));
            continue;
        }
        if !is.is_empty() {
            out.node_affinity.push(NodeExpression {
                key: key.clone(),
                operator: "In",
                values: is,
            });
        }
        if !not.is_empty() {
            out.node_affinity.push(NodeExpression {
                key,
                operator: "NotIn",
                values: not,
            });
        }
    }
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
    for (name, count) in &r.generic_resources {
        let resource = if name == "gpu" {
            policy.gpu_resource.as_str()
        } else if is_extended_resource_name(name) && !is_kubernetes_domain(name) {
            name.as_str()
        } else {
            warnings.push(format_args!(
                "launch resource {name:?} is not an extended resource name (domain/name); ignored"
            ));
            continue;
        };
        let n = match count {
            Value::Null => continue,
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n.map(|n| (n, Quantity::parse(&n.to_string()))) {
            Some((0, _)) => {}
            Some((n, Ok(q))) if n <= 1024 => {
                set.limits.insert(resource.to_owned(), q);
            }
            _ => warnings.push(format_args!(
                "launch resource {name} = {count} is not a whole count; ignored"
            )),
        }
    }
    set
}

/// Extended resources may not be in Kubernetes' own domains.
fn is_kubernetes_domain(name: &str) -> bool {
    name.split_once('/')
        .is_some_and(|(domain, _)| domain == "kubernetes.io" || domain.ends_with(".kubernetes.io"))
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

/// `key==value` or `key!=value`, a Docker Swarm key mapped: `node.labels.key` is the label,
/// `node.hostname`/`node.platform.os`/`node.platform.arch` the well-known labels; other `node.*`
/// and `engine.*` attributes (role, id) have no Kubernetes label and are refused.
fn constraint(c: &str) -> Option<(String, bool, String)> {
    let (k, equal, v) = match c.split_once("==") {
        Some((k, v)) => (k, true, v),
        None => {
            let (k, v) = c.split_once("!=")?;
            (k, false, v)
        }
    };
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
    (is_qualified_name(k) && is_label_value(v)).then(|| (k.to_owned(), equal, v.to_owned()))
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
    fn constraints_read_as_swarm_and_kubernetes_write_them() {
        let c = |s: &str| constraint(s);
        assert_eq!(
            c("node.labels.gpu==true"),
            Some(("gpu".into(), true, "true".into()))
        );
        assert_eq!(
            c("kubernetes.io/hostname == node-1"),
            Some(("kubernetes.io/hostname".into(), true, "node-1".into()))
        );
        assert_eq!(c("gpu!=true"), Some(("gpu".into(), false, "true".into())));
        assert_eq!(
            c("node.hostname==n1"),
            Some(("kubernetes.io/hostname".into(), true, "n1".into()))
        );
        assert_eq!(c("node.role==worker"), None);
        assert_eq!(c("engine.labels.x==y"), None);
        assert_eq!(c("bad key==x"), None);
    }

    /// As `Constraint.toList()` writes them: one `key==v` per allowed value, `key!=v` per value
    /// ruled out (the plugin's `DefaultUserOptionsServiceTest`).
    #[test]
    fn several_values_of_one_key_become_one_affinity_expression() {
        let policy = crate::policy::Policy::parse("").unwrap().user_options;
        let opts: UserOptions = serde_json::from_value(json!({"task_template": {"placement": {
            "constraints": ["node.labels.project==ProjectA", "node.labels.project==ProjectB",
                            "node.instance.type!=spot", "instance-type!=spot",
                            "instance-type!=demand", "zone==z1", null]
        }}}))
        .unwrap();
        let mut warnings = Warnings::new();
        let plan = plan(&opts, &policy, &GRANT, &mut warnings);
        assert_eq!(plan.node_selector, [("zone".to_owned(), "z1".to_owned())]);
        let exprs: Vec<(&str, &str, Vec<&str>)> = plan
            .node_affinity
            .iter()
            .map(|e| {
                (
                    e.key.as_str(),
                    e.operator,
                    e.values.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            exprs,
            [
                ("instance-type", "NotIn", vec!["spot", "demand"]),
                ("project", "In", vec!["ProjectA", "ProjectB"]),
            ]
        );
        // `node.instance.type` is a Swarm attribute with no label; `null` is no constraint.
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    const GRANT: LaunchGrant<'static> = LaunchGrant {
        readable: &[],
        xnat_user: "alice",
        server_name: "",
        caller_verified: false,
        workspace_path: None,
    };

    #[test]
    fn values_that_round_to_zero_are_unset_with_a_warning() {
        let policy = crate::policy::Policy::parse("").unwrap().user_options;
        let opts: UserOptions = serde_json::from_value(json!({"task_template": {"resources": {
            "cpu_limit": 0.0004, "cpu_reservation": 0, "mem_limit": "0", "mem_reservation": "0G"
        }}}))
        .unwrap();
        let mut warnings = Warnings::new();
        let plan = plan(&opts, &policy, &GRANT, &mut warnings);
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
        let plan = plan(&opts, &policy, &GRANT, &mut warnings);
        assert_eq!(plan.env, [("OK".to_owned(), "z".to_owned())]);
    }
}
