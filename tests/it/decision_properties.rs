//! Properties of the decision over generated policies, pods, access tables and launch contexts:
//! - the patch applies to the pod, and the patched pod is valid (it deserializes as a Pod; mount
//!   paths, volume and env names are unique; every mount names a volume; no request is above
//!   its limit);
//! - a second pass over the patched pod adds nothing;
//! - nothing is mounted from the archive that the access table does not grant (less the
//!   never-mount list), unless the policy trusts the plugin's launch context;
//! - every project mount is read-only.
//!
//! `PROPTEST_CASES=5000 cargo nextest run -E "test(/^decision_properties::/)"` runs more cases.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use jupyter_xnat_webhook::Amount;
use jupyter_xnat_webhook::Confirmed;
use jupyter_xnat_webhook::mutation::{Context, Decision, Identity, decide, prepare};
use jupyter_xnat_webhook::policy::{Policy, SecretsPolicy};
use jupyter_xnat_webhook::{AccessOutcome, UserAccess};
use jupyter_xnat_webhook::{Launch, UserOptions};
use jupyter_xnat_webhook::{PodMeta, PodView};
use proptest::prelude::*;
use serde_json::{Value, json};

const PROJECTS: &[&str] = &["ALPHA", "BETA", "GAMMA", "GPU_LAB", "X-1", "a_b"];
const ROLES: &[&str] = &["owner", "member", "collaborator", "custom"];
const QUANTITIES: &[&str] = &[
    "500m",
    "0.7",
    "700m",
    "1",
    "2",
    "1Gi",
    "1073741824",
    "8Gi",
    "4",
];

/// One generated case, as YAML and JSON the webhook reads.
#[derive(Debug, Clone)]
struct Case {
    policy: String,
    groups: Vec<String>,
    spec: Value,
    launch: Option<Value>,
    verified: bool,
}

fn policy_yaml() -> impl Strategy<Value = String> {
    (
        prop::bool::ANY,
        prop::bool::ANY,
        prop::sample::subsequence(PROJECTS.to_vec(), 0..2),
        prop::option::of(1usize..4),
        prop::sample::subsequence(vec!["owner", "member", "collaborator"], 1..=3),
        prop::bool::ANY,
        prop::bool::ANY,
        0usize..3,
    )
        .prop_map(|(over, ws, never, cap, roles, trust, secrets, rules)| {
            let mut y = format!(
                "resources:\n  mode: {}\n",
                if over { "override" } else { "fillUnset" }
            );
            y += "  requests: {cpu: '0.7', memory: 1Gi}\n  limits: {cpu: 2, memory: 8Gi}\n";
            y += "storage:\n";
            if !ws {
                y += "  workspace: null\n";
            }
            y += &format!("  neverMount: [{}]\n", never.join(", "));
            if let Some(cap) = cap {
                y += &format!("  maxProjectMounts: {cap}\n");
            }
            y += &format!("xnat:\n  roles: [{}]\n", roles.join(", "));
            y += &format!(
                "userOptions:\n  enabled: true\n  trustPlugin: {trust}\n  secrets: {}\n",
                if secrets { "pass" } else { "verifiedCaller" }
            );
            let all_rules = [
                "  - name: everyone\n    match: {projects: ['*']}\n    env: {SITE: uni}\n    resources: {limits: {memory: 16Gi}}\n",
                "  - name: gpu\n    match: {projects: [GPU_LAB]}\n    mounts:\n      - {subPath: datasets/imagenet, mountPath: /data/imagenet}\n    resources: {limits: {nvidia.com/gpu: 1}}\n",
            ];
            if rules > 0 {
                y += "rules:\n";
                for r in &all_rules[..rules.min(2)] {
                    y += r;
                }
            }
            y
        })
}

fn groups() -> impl Strategy<Value = Vec<String>> {
    let group = prop_oneof![
        (prop::sample::select(PROJECTS), prop::sample::select(ROLES))
            .prop_map(|(p, r)| format!("{p}_{r}")),
        prop::sample::select(vec![
            "../x_owner",
            "a/b_member",
            "A^B_owner",
            "ALL_DATA_ACCESS"
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(group, 0..6)
}

/// The alice fixture's spec with things a hub (or a second pass) may already have put there.
fn spec() -> impl Strategy<Value = Value> {
    let base = common::fixture("alice-default")["request"]["object"]["spec"].clone();
    (
        prop::sample::select(vec!["none", "ours", "foreign", "read-only"]),
        prop::option::of((prop::sample::select(PROJECTS), prop::bool::ANY)),
        prop::option::of((prop::sample::select(vec!["XNAT_USER", "XNAT_HOST", "OTHER"]), prop::bool::ANY)),
        prop::option::of((
            prop::sample::select(QUANTITIES),
            prop::sample::select(QUANTITIES),
        )),
        prop::bool::ANY,
        prop::option::of(prop::sample::select(vec!["kubernetes.io/arch", "gpu"])),
    )
        .prop_map(move |(volume, mount, env, resources, env_from, selector)| {
            let mut s = base.clone();
            let claim = match volume {
                "ours" => Some(json!({"claimName": "xnat-gpfs"})),
                "foreign" => Some(json!({"claimName": "other"})),
                "read-only" => Some(json!({"claimName": "xnat-gpfs", "readOnly": true})),
                _ => None,
            };
            if let Some(c) = claim {
                s["volumes"].as_array_mut().unwrap().push(json!({"name": "xnat-data", "persistentVolumeClaim": c}));
            }
            let nb = &mut s["containers"][0];
            if let Some((p, same)) = mount {
                let sub = if same { format!("archive/{p}") } else { "elsewhere".into() };
                let volume = if volume == "none" { "volume-alice" } else { "xnat-data" };
                nb["volumeMounts"].as_array_mut().unwrap().push(json!({
                    "name": volume, "mountPath": format!("/data/projects/{p}"), "subPath": sub, "readOnly": true
                }));
            }
            if let Some((name, same)) = env {
                let value = if same { "alice" } else { "hub-set" };
                nb["env"].as_array_mut().unwrap().push(json!({"name": name, "value": value}));
            }
            if let Some((a, b)) = resources {
                // A hub's pod is valid: its request is at most its limit.
                let (request, limit) = if Amount::parse(a) <= Amount::parse(b) { (a, b) } else { (b, a) };
                nb["resources"] = json!({"requests": {"cpu": request}, "limits": {"cpu": limit}});
            }
            if env_from {
                nb["envFrom"] = json!([{"prefix": "HUB_", "configMapRef": {"name": "hub-env"}}]);
            }
            if let Some(key) = selector {
                s["nodeSelector"] = json!({key: "x"});
            }
            s
        })
}

fn launch() -> impl Strategy<Value = Option<Value>> {
    let sources = vec![
        "/data/xnat/archive/ALPHA/arc001",
        "/data/xnat/archive/BETA/resources",
        "/data/xnat/archive/GAMMA",
        "/data/xnat/archive/GPU_LAB/arc001",
        "/data/xnat/workspaces/users/alice",
        "/data/xnat/workspaces/users/alice/sub",
        "/data/xnat/workspaces/users/bob",
        "/etc/shadow",
        "/data/xnat/archive/../build",
    ];
    prop::option::of((
        prop::sample::subsequence(sources, 0..5),
        prop::bool::ANY,
        prop::option::of(prop::sample::select(vec![0.0004, 0.5, 2.0])),
        prop::sample::subsequence(vec!["gpu==true", "node.role==worker", "kubernetes.io/arch==amd64"], 0..3),
    ))
    .prop_map(|launch| {
        launch.map(|(sources, token, cpu, constraints)| {
            let mounts: Vec<Value> = sources
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"source": s, "target": format!("/m/{i}"), "read_only": i % 2 == 0}))
                .collect();
            let mut env = json!({"XNAT_DATA": "/data"});
            if token {
                env["XNAT_PASS"] = json!("token-1");
            }
            json!({"task_template": {
                "container_spec": {"env": env, "mounts": mounts},
                "resources": {"cpu_limit": cpu},
                "placement": {"constraints": constraints}
            }})
        })
    })
}

fn case() -> impl Strategy<Value = Case> {
    (policy_yaml(), groups(), spec(), launch(), prop::bool::ANY).prop_map(
        |(policy, groups, spec, launch, verified)| Case {
            policy,
            groups,
            spec,
            launch,
            verified,
        },
    )
}

/// The decision for `spec` in this case.
fn run(case: &Case, policy: &Policy, spec: &Value) -> Decision {
    let access = AccessOutcome::Known(Arc::new(UserAccess::from_group_ids(&case.groups)));
    let launch: Option<UserOptions> = case
        .launch
        .as_ref()
        .map(|l| serde_json::from_value(l.clone()).unwrap());
    let cx = Context {
        who: Identity {
            jupyter_user: "alice",
            server_name: "",
            xnat_user: "alice",
        },
        access: &access,
        launch: launch.as_ref().map_or(Launch::None, Launch::Stored),
        xnat_url: "http://xnat/xnat",
        caller_verified: case.verified,
    };
    let raw = serde_json::value::to_raw_value(spec).unwrap();
    let meta: PodMeta = serde_json::from_str("{}").unwrap();
    let pod = PodView::new(&meta, Some(&raw)).unwrap();
    decide(&pod, prepare(&cx, policy), &Confirmed::NONE, policy)
}

/// The pod's spec after `decision`'s patch; `None` for a denial.
fn patched(spec: &Value, decision: &Decision) -> Result<Option<Value>, TestCaseError> {
    let Decision::Allow { patch, .. } = decision else {
        return Ok(None);
    };
    let mut pod = json!({ "spec": spec });
    json_patch::patch(&mut pod, patch)
        .map_err(|e| TestCaseError::fail(format!("the patch does not apply: {e}")))?;
    Ok(Some(pod["spec"].take()))
}

fn valid(spec: &Value) -> Result<(), TestCaseError> {
    let problems = common::pod_rules::pod_problems(spec);
    prop_assert!(problems.is_empty(), "{:?}", problems);
    Ok(())
}

/// Mounts of the data volume the patch added: (subPath, readOnly).
fn added_mounts(before: &Value, after: &Value) -> Vec<(String, bool)> {
    let mounts = |s: &Value| -> Vec<Value> {
        s["containers"][0]["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let old = mounts(before);
    mounts(after)
        .into_iter()
        .filter(|m| m["name"] == "xnat-data" && !old.contains(m))
        .map(|m| {
            (
                m["subPath"].as_str().unwrap_or_default().to_owned(),
                m["readOnly"] == true,
            )
        })
        .collect()
}

/// subPaths of the data volume mounted read-write.
fn writable_sub_paths(spec: &Value) -> Vec<String> {
    let mounts = spec["containers"][0]["volumeMounts"].as_array();
    mounts
        .into_iter()
        .flatten()
        .filter(|m| m["name"] == "xnat-data" && m["readOnly"] != true)
        .filter_map(|m| m["subPath"].as_str().map(str::to_owned))
        .collect()
}

fn env_value(spec: &Value, name: &str) -> Option<String> {
    let env = spec["containers"][0]["env"].as_array()?;
    let var = env.iter().find(|e| e["name"] == name)?;
    var["value"].as_str().map(str::to_owned)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_decision_keeps_its_promises(case in case()) {
        // The webhook owes a valid pod only to a hub that sent a valid one.
        prop_assume!(valid(&case.spec).is_ok());
        let policy = Policy::parse(&case.policy).unwrap();
        let decision = run(&case, &policy, &case.spec);
        let Some(after) = patched(&case.spec, &decision)? else {
            return Ok(());
        };
        valid(&after)?;

        // A second pass over the patched pod adds nothing.
        let again = run(&case, &policy, &after);
        if let Decision::Allow { patch, .. } = &again {
            prop_assert!(patch.is_empty(), "second pass: {:?}", patch);
        }

        // Nothing from the archive beyond the grant; every project mount read-only.
        let access = UserAccess::from_group_ids(&case.groups);
        let granted: BTreeSet<&str> = access
            .readable_projects(&policy.xnat.roles)
            .into_iter()
            .filter(|p| !policy.storage.is_never_mounted(p))
            .collect();
        let trusted = policy.user_options.trust_plugin && case.launch.is_some();
        for (sub_path, read_only) in added_mounts(&case.spec, &after) {
            if let Some(rest) = sub_path.strip_prefix("archive/") {
                let project = rest.split('/').next().unwrap_or_default();
                prop_assert!(read_only, "project mount {} is writable", sub_path);
                prop_assert!(
                    trusted || granted.contains(project),
                    "{} mounted, granted {:?}", sub_path, granted
                );
                prop_assert!(!policy.storage.is_never_mounted(project), "{} is never mounted", sub_path);
            } else if let Some(rest) = sub_path.strip_prefix("workspaces/users/") {
                let user = rest.split('/').next().unwrap_or_default();
                prop_assert!(trusted || user == "alice", "{} is not alice's", sub_path);
            }
            // Worked out here, not by the policy's own check: below no read-write mount of the
            // claim in the patched pod, and below no user's directory of the `user` mapping.
            let below = |dir: &str| sub_path.starts_with(&format!("{dir}/"));
            prop_assert!(
                !writable_sub_paths(&after).iter().any(|d| below(d)),
                "{} lies below a read-write mount", sub_path
            );
            let user_dir = sub_path.strip_prefix("workspaces/users/").map(|r| r.contains('/'));
            prop_assert!(user_dir != Some(true), "{} lies below a user's directory", sub_path);
        }

        // A launch context's token only reaches the pod as `userOptions.secrets` says.
        let token = env_value(&after, "XNAT_PASS");
        if token.as_deref() == Some("token-1") {
            prop_assert!(
                case.verified || policy.user_options.secrets == SecretsPolicy::Pass,
                "the token reached an unverified caller's pod"
            );
        }
    }
}
