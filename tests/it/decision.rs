//! The pure decision (pod + identity + access + policy → patch), without sockets: the shapes of
//! pod the end-to-end tests do not reach.

use std::sync::Arc;

use crate::common::fixture;
use jupyter_xnat_webhook::Confirmed;
use jupyter_xnat_webhook::Launch;
use jupyter_xnat_webhook::mutation::{Context, Decision, Identity, decide, prepare};
use jupyter_xnat_webhook::policy::Policy;
use jupyter_xnat_webhook::{AccessOutcome, UserAccess};
use jupyter_xnat_webhook::{PodMeta, PodView};
use serde_json::{Value, json};

const ALICE: Identity<'static> = Identity {
    jupyter_user: "alice",
    server_name: "",
    xnat_user: "alice",
};

fn access(groups: &[&str]) -> AccessOutcome {
    AccessOutcome::Known(Arc::new(UserAccess::from_group_ids(groups)))
}

fn run(spec: &Value, who: Identity<'_>, access: &AccessOutcome, policy: &Policy) -> Decision {
    let cx = Context {
        who,
        access,
        launch: Launch::None,
        xnat_url: "http://xnat/xnat",
        caller_verified: false,
    };
    let spec = serde_json::value::to_raw_value(spec).unwrap();
    let meta: PodMeta = serde_json::from_str("{}").unwrap();
    let pod = PodView::new(&meta, Some(&spec)).unwrap();
    decide(&pod, prepare(&cx, policy), &Confirmed::NONE, policy)
}

/// Applies the decision's patch to `spec` (wrapped as a pod) and returns the new spec.
fn apply(spec: &Value, decision: &Decision) -> Value {
    let Decision::Allow { patch, .. } = decision else {
        panic!("expected Allow, got {decision:?}");
    };
    let mut pod = json!({ "spec": spec });
    json_patch::patch(&mut pod, patch).unwrap();
    pod["spec"].take()
}

fn alice_spec() -> Value {
    fixture("alice-default")["request"]["object"]["spec"].clone()
}

#[test]
fn a_bare_pod_gets_new_arrays_and_a_resources_object() {
    let policy = Policy::parse("").unwrap();
    let spec = json!({"containers": [{"name": "notebook", "image": "x"}]});
    let d = run(&spec, ALICE, &access(&["ALPHA_owner"]), &policy);
    let out = apply(&spec, &d);
    assert_eq!(
        out["volumes"],
        json!([{"name": "xnat-data", "persistentVolumeClaim": {"claimName": "xnat-gpfs"}}])
    );
    assert_eq!(
        out["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(out["containers"][0]["env"].as_array().unwrap().len(), 3);
    assert_eq!(
        out["containers"][0]["resources"],
        json!({"limits": {"cpu": "4", "memory": "8Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}})
    );
    assert_eq!(out["containers"][0]["image"], "x");
}

#[test]
fn the_named_container_gets_the_mounts_even_when_it_is_not_first() {
    let policy = Policy::parse("").unwrap();
    let spec = json!({"containers": [
        {"name": "sidecar", "image": "s"},
        {"name": "notebook", "image": "n"},
    ]});
    let out = apply(
        &spec,
        &run(&spec, ALICE, &access(&["ALPHA_owner"]), &policy),
    );
    assert_eq!(
        out["containers"][0],
        json!({"name": "sidecar", "image": "s"})
    );
    assert_eq!(
        out["containers"][1]["volumeMounts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn templates_and_disabled_workspace_follow_the_policy() {
    let policy = Policy::parse(
        "storage:\n  volumeName: archive\n  claimName: nfs-archive\n  projects:\n    subPath: 'xnat/archive/{project}/arc001'\n    mountPath: '/home/jovyan/xnat/{project}'\n  workspace: null\nenv:\n  XNAT_DATA: /home/jovyan/xnat\n  WHO: '{jupyter_user} as {xnat_user}'\n",
    )
    .unwrap();
    let spec = alice_spec();
    let d = run(&spec, ALICE, &access(&["B_member", "A_owner"]), &policy);
    let out = apply(&spec, &d);
    let mounts: Vec<&Value> = out["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "archive")
        .collect();
    assert_eq!(
        mounts,
        [
            &json!({"name": "archive", "mountPath": "/home/jovyan/xnat/A", "subPath": "xnat/archive/A/arc001", "readOnly": true}),
            &json!({"name": "archive", "mountPath": "/home/jovyan/xnat/B", "subPath": "xnat/archive/B/arc001", "readOnly": true}),
        ]
    );
    let env = out["containers"][0]["env"].as_array().unwrap();
    assert!(env.contains(&json!({"name": "WHO", "value": "alice as alice"})));
    assert!(env.contains(&json!({"name": "XNAT_DATA", "value": "/home/jovyan/xnat"})));
    assert!(
        !env.iter().any(|e| e["name"] == "XNAT_USER"),
        "env map replaces the defaults"
    );
}

#[test]
fn no_projects_and_no_workspace_means_no_volume() {
    let policy = Policy::parse("storage:\n  workspace: null\n").unwrap();
    let spec = alice_spec();
    let out = apply(&spec, &run(&spec, ALICE, &access(&[]), &policy));
    assert_eq!(out["volumes"], spec["volumes"]);
    assert_eq!(
        out["containers"][0]["volumeMounts"],
        spec["containers"][0]["volumeMounts"]
    );
}

#[test]
fn an_outage_in_deny_mode_is_a_denial_and_in_allow_mode_mounts_no_project() {
    let spec = alice_spec();
    let down = AccessOutcome::Unavailable("XNAT answered HTTP 503".into());
    let deny = Policy::parse("xnat:\n  onError: deny\n  denyMessage: try later\n").unwrap();
    assert_eq!(
        run(&spec, ALICE, &down, &deny),
        Decision::Deny {
            message: "try later".into()
        }
    );
    let allow = Policy::parse("").unwrap();
    let d = run(&spec, ALICE, &down, &allow);
    let Decision::Allow {
        projects, warnings, ..
    } = &d
    else {
        panic!()
    };
    assert!(projects.is_empty());
    assert!(warnings[0].contains("HTTP 503"));
}

#[test]
fn a_pod_without_containers_is_left_alone() {
    let policy = Policy::parse("").unwrap();
    let spec = json!({"containers": []});
    let Decision::Allow {
        patch, warnings, ..
    } = run(&spec, ALICE, &access(&["A_owner"]), &policy)
    else {
        panic!()
    };
    assert!(patch.is_empty());
    assert!(warnings[0].contains("no containers"));
}

#[test]
fn a_server_name_in_a_path_must_be_a_safe_segment() {
    let policy = Policy::parse(
        "storage:\n  workspace:\n    subPath: 'workspaces/{xnat_user}/{server_name}'\n    mountPath: /data/xnat/workspace\n",
    )
    .unwrap();
    let spec = alice_spec();
    // The default server has an empty name: no workspace, a warning, projects still mounted.
    let Decision::Allow {
        warnings, projects, ..
    } = run(&spec, ALICE, &access(&["A_owner"]), &policy)
    else {
        panic!()
    };
    assert_eq!(projects, ["A"]);
    assert!(warnings[0].contains("server_name"), "{warnings:?}");
    let named = Identity {
        server_name: "gpu-analysis",
        ..ALICE
    };
    let out = apply(&spec, &run(&spec, named, &access(&[]), &policy));
    let ws = out["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(ws["subPath"], "workspaces/alice/gpu-analysis");
}

#[test]
fn an_override_the_pod_already_satisfies_in_another_notation_emits_nothing() {
    // The API server hands `cpu: 0.7` back as its canonical `700m` (and `1.5Gi` as bytes): a
    // second pass over the patched pod must not replace them again.
    let policy = Policy::parse(
        "resources:\n  mode: override\n  requests: {cpu: '0.7', memory: 1Gi}\n  limits: {cpu: 2, memory: 1.5Gi}\n",
    )
    .unwrap();
    let mut spec = alice_spec();
    spec["containers"][0]["resources"] = json!({
        "requests": {"cpu": "700m", "memory": "1073741824"},
        "limits": {"cpu": "2", "memory": "1610612736"},
    });
    let Decision::Allow { patch, .. } = run(&spec, ALICE, &access(&["ALPHA_owner"]), &policy)
    else {
        panic!()
    };
    let touched: Vec<String> = serde_json::to_value(&patch)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap().to_owned())
        .filter(|p| p.contains("/resources"))
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
}

#[test]
fn env_from_the_pod_may_set_our_names_so_the_pod_keeps_them() {
    // Kubernetes lets `env` beat `envFrom`: adding ours would override what the hub set there.
    let policy = Policy::parse("").unwrap();
    let mut spec = alice_spec();
    spec["containers"][0]["envFrom"] = json!([
        {"configMapRef": {"name": "site-env"}},
        {"prefix": "APP_", "secretRef": {"name": "app"}}
    ]);
    let d = run(&spec, ALICE, &access(&["ALPHA_owner"]), &policy);
    let out = apply(&spec, &d);
    let names: Vec<&str> = out["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"XNAT_HOST"), "{names:?}");
    let Decision::Allow { warnings, .. } = &d else {
        panic!()
    };
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("site-env") && w.contains("XNAT_HOST")),
        "{warnings:?}"
    );
    // A prefix that none of our names has is no collision.
    spec["containers"][0]["envFrom"] = json!([{"prefix": "APP_", "secretRef": {"name": "app"}}]);
    let out = apply(
        &spec,
        &run(&spec, ALICE, &access(&["ALPHA_owner"]), &policy),
    );
    assert!(
        out["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "XNAT_HOST")
    );
}

#[test]
fn volume_devices_count_like_mounts_and_volumes() {
    let policy = Policy::parse("").unwrap();
    // A block device at one of our mount paths: that mount is left out.
    let mut spec = alice_spec();
    spec["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "raw", "persistentVolumeClaim": {"claimName": "raw-block"}}));
    spec["containers"][0]["volumeDevices"] =
        json!([{"name": "raw", "devicePath": "/data/projects/ALPHA"}]);
    let d = run(
        &spec,
        ALICE,
        &access(&["ALPHA_owner", "BETA_member"]),
        &policy,
    );
    let out = apply(&spec, &d);
    let paths: Vec<&str> = out["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "xnat-data")
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/data/projects/BETA", "/data/xnat/workspace"]);
    // Our volume used as a block device: nothing is mounted from it.
    let mut spec = alice_spec();
    spec["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "xnat-data", "persistentVolumeClaim": {"claimName": "xnat-gpfs"}}));
    spec["containers"][0]["volumeDevices"] = json!([{"name": "xnat-data", "devicePath": "/dev/x"}]);
    let d = run(&spec, ALICE, &access(&["ALPHA_owner"]), &policy);
    let Decision::Allow {
        warnings, projects, ..
    } = &d
    else {
        panic!()
    };
    assert!(projects.is_empty(), "{projects:?}");
    assert!(
        warnings.iter().any(|w| w.contains("block device")),
        "{warnings:?}"
    );
}

#[test]
fn a_launch_limit_below_the_policys_request_lowers_the_request() {
    // Found by tests/decision_properties.rs: request 0.7 from the policy and a launch profile's
    // limit of 0.5 made a pod the API server rejects (request above limit).
    let launch: jupyter_xnat_webhook::UserOptions = serde_json::from_value(json!({
        "task_template": {"resources": {"cpu_limit": 0.5, "mem_reservation": "12G"}}
    }))
    .unwrap();
    for mode in ["override", "fillUnset"] {
        let policy = Policy::parse(&format!(
            "resources:\n  mode: {mode}\n  requests: {{cpu: '0.7', memory: 1Gi}}\n  \
             limits: {{cpu: 2, memory: 8Gi}}\nuserOptions: {{enabled: true}}\n"
        ))
        .unwrap();
        let cx = Context {
            who: ALICE,
            access: &access(&["ALPHA_owner"]),
            launch: Launch::Stored(&launch),
            xnat_url: "http://xnat/xnat",
            caller_verified: false,
        };
        let spec = alice_spec();
        let raw = serde_json::value::to_raw_value(&spec).unwrap();
        let meta: PodMeta = serde_json::from_str("{}").unwrap();
        let d = decide(
            &PodView::new(&meta, Some(&raw)).unwrap(),
            prepare(&cx, &policy),
            &Confirmed::NONE,
            &policy,
        );
        let out = apply(&spec, &d);
        let resources = &out["containers"][0]["resources"];
        // The launch's side wins and the policy's other side follows it.
        assert_eq!(resources["limits"]["cpu"], "500m", "{mode}: {resources}");
        assert_eq!(resources["requests"]["cpu"], "500m", "{mode}: {resources}");
        assert_eq!(resources["limits"]["memory"], "12Gi", "{mode}: {resources}");
        // The hub's own memory request (1 GiB) stays in fillUnset mode.
        let memory = if mode == "override" {
            "12Gi"
        } else {
            "1073741824"
        };
        assert_eq!(
            resources["requests"]["memory"], memory,
            "{mode}: {resources}"
        );
    }
}
