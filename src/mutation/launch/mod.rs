//! What a launch context adds to the plan, translated from the plugin's stored options the way
//! the chart's `pre_spawn_hook.py` applies them — mounts, env, resources, image, command, node
//! placement — but never wider than what the user may read unless the policy trusts the plugin,
//! and each bad entry refused on its own with a warning that names it.

mod placement;
mod quantities;
mod sources;

use std::collections::BTreeMap;

use serde_json::Value;

use super::planned::PlannedMount;
use crate::launch::UserOptions;
use crate::names::{is_env_name, is_label_value, is_qualified_name, may_be_secret_name};
use crate::policy::{ResourceSet, SecretsPolicy, UserOptionsPolicy};
use crate::sharing::{Asks, Confirmed};
use crate::warning::Warnings;
pub use sources::MountOutcome;

/// The plugin's token pair: `XNAT_USER` is the alias of a fresh token of the user's, `XNAT_PASS`
/// its secret. Never split: both come from the launch context, or neither does.
pub const TOKEN_PAIR: [&str; 2] = ["XNAT_USER", "XNAT_PASS"];

/// Most env entries, labels and constraints read from one launch context.
pub const MAX_LIST_ENTRIES: usize = 512;

/// Most words a command may have, and most characters of an image name.
const MAX_COMMAND_WORDS: usize = 256;
const MAX_IMAGE_CHARS: usize = 1024;

/// The launch context translated before XNAT is asked more: its mounts, each accepted,
/// pending a question or refused, and everything else it adds to the pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translated {
    pub mounts: Vec<MountOutcome>,
    /// The launched experiment, when a pending mount may be its directory.
    experiment: Option<String>,
    pub plan: LaunchPlan,
    /// What was refused or changed besides mounts (said after the mounts' refusals).
    pub warnings: Warnings,
}

impl Translated {
    /// What XNAT must confirm before the pending mounts could be mounted.
    pub fn questions(&self) -> Asks {
        sources::questions(&self.mounts, self.experiment.as_deref())
    }

    /// The mounts to make, now that XNAT has answered: each pending one by what it confirmed.
    pub fn resolve(
        &self,
        confirmed: &Confirmed,
        readable: &[&str],
        warnings: &mut Warnings,
    ) -> Vec<PlannedMount> {
        sources::resolve(&self.mounts, confirmed, readable, warnings)
    }
}

/// What the launch context adds to the pod besides mounts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchPlan {
    /// The plugin's env, as the policy lets it through.
    pub env: Vec<(String, String)>,
    /// The plugin's `XNAT_USER`/`XNAT_PASS` are in `env`: neither may come from anywhere else.
    pub owns_token_pair: bool,
    /// Replaces the policy's values key by key.
    pub resources: ResourceSet,
    /// `CPU_LIMIT`, `MEM_LIMIT`, … as JupyterHub writes them for the launch's resources.
    pub resource_env: Vec<(String, String)>,
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
    /// Whether the site never mounts a project (`storage.neverMount`): a launch mount of one is
    /// refused for that reason, whatever XNAT says of it.
    pub never_mounted: &'a dyn Fn(&str) -> bool,
}

/// Translates user options, once. Unless the policy trusts the plugin, no mount reaches outside
/// the projects the user may read or the user's own space without XNAT's word.
pub fn translate(
    opts: &UserOptions,
    policy: &UserOptionsPolicy,
    grant: &LaunchGrant<'_>,
) -> Translated {
    let spec = &opts.task_template.container_spec;
    let mounts = sources::translate_all(&spec.mounts, opts, policy, grant);
    let mut warnings = Warnings::new();
    let plan = plan(opts, policy, grant, &mut warnings);
    Translated {
        mounts,
        experiment: sources::launched_experiment(opts),
        plan,
        warnings,
    }
}

/// Everything but the mounts.
fn plan(
    opts: &UserOptions,
    policy: &UserOptionsPolicy,
    grant: &LaunchGrant<'_>,
    warnings: &mut Warnings,
) -> LaunchPlan {
    let spec = &opts.task_template.container_spec;
    let mut resource_env = Vec::new();
    let mut out = LaunchPlan {
        resources: quantities::quantities(
            &opts.task_template.resources,
            policy,
            &mut resource_env,
            warnings,
        ),
        ..LaunchPlan::default()
    };
    out.resource_env = resource_env;
    env(&spec.env, policy, grant, &mut out, warnings);
    placement::placement(
        &opts.task_template.placement.constraints,
        &mut out,
        warnings,
    );
    if policy.image
        && let Some(image) = spec
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
        for (k, v) in spec.labels.iter().take(MAX_LIST_ENTRIES) {
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
    for (name, value) in stored.iter().take(MAX_LIST_ENTRIES) {
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

#[cfg(test)]
mod tests {
    use super::placement::constraint;
    use super::quantities::{cpu, memory};
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
        never_mounted: &|_| false,
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
