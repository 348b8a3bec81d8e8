//! What a launch context does to a pod, decided without sockets: the compute environment (image,
//! command, working directory, labels), node affinity merged with the pod's own, generic
//! resources, the token pair, and a launch context XNAT has but the webhook cannot read.
//! Launch shapes follow the plugin's models (see tests/launch_fidelity.rs for where from).

use crate::common;

use std::sync::Arc;

use crate::common::fixture;
use jupyter_xnat_webhook::Confirmed;
use jupyter_xnat_webhook::mutation::{Context, Decision, Identity, decide, prepare};
use jupyter_xnat_webhook::policy::Policy;
use jupyter_xnat_webhook::{AccessOutcome, UserAccess};
use jupyter_xnat_webhook::{Launch, UserOptions};
use jupyter_xnat_webhook::{PodMeta, PodView};
use serde_json::{Value, json};

/// alice's KubeSpawner pod (no args: the hub sets no `cmd`).
fn alice_pod() -> Value {
    fixture("alice-default")["request"]["object"].clone()
}

/// Decides `pod` for alice (ALPHA owner) with `launch`; returns the patched pod and the warnings.
fn decide_with(
    pod: &Value,
    launch: Launch<'_>,
    policy: &str,
    verified: bool,
) -> (Value, Vec<String>) {
    decide_on_server(pod, launch, policy, verified, "")
}

fn decide_on_server(
    pod: &Value,
    launch: Launch<'_>,
    policy: &str,
    verified: bool,
    server_name: &str,
) -> (Value, Vec<String>) {
    let policy = Policy::parse(&format!("userOptions:\n  enabled: true\n{policy}")).unwrap();
    let access = AccessOutcome::Known(Arc::new(UserAccess::from_group_ids(&["ALPHA_owner"])));
    let cx = Context {
        who: Identity {
            jupyter_user: "alice",
            server_name,
            xnat_user: "alice",
        },
        access: &access,
        launch,
        xnat_url: "http://xnat/xnat",
        caller_verified: verified,
    };
    let meta_text = pod["metadata"].to_string();
    let meta: PodMeta = serde_json::from_str(&meta_text).unwrap();
    let raw = serde_json::value::to_raw_value(&pod["spec"]).unwrap();
    let d = decide(
        &PodView::new(&meta, Some(&raw)).unwrap(),
        prepare(&cx, &policy),
        &Confirmed::NONE,
        &policy,
    );
    let Decision::Allow {
        patch, warnings, ..
    } = d
    else {
        panic!("{d:?}");
    };
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    let problems = common::pod_rules::pod_problems(&out["spec"]);
    assert!(problems.is_empty(), "{problems:?}");
    // Idempotent: a second pass over the patched pod adds nothing.
    let meta_text = out["metadata"].to_string();
    let meta: PodMeta = serde_json::from_str(&meta_text).unwrap();
    let raw = serde_json::value::to_raw_value(&out["spec"]).unwrap();
    if let Decision::Allow { patch, .. } = decide(
        &PodView::new(&meta, Some(&raw)).unwrap(),
        prepare(&cx, &policy),
        &Confirmed::NONE,
        &policy,
    ) {
        assert!(patch.is_empty(), "a second pass: {patch:?}");
    }
    (out, warnings.into_vec())
}

/// The policy's rest for a site that keeps its archive on its own claim, mounted at the claim's
/// root, with launch paths mapped onto it (after `userOptions:` and its first fields).
const ARCHIVE_ON_ITS_OWN_CLAIM: &str = "  pathMappings:\n    - {xnatPath: /data/xnat/archive/, \
     volume: archive, subPath: '', scope: project}\nstorage:\n  volumes:\n    \
     - {name: xnat-data, claimName: xnat-gpfs}\n    \
     - {name: archive, claimName: archive, readOnly: true}\n";

fn options(container: Value, rest: Value) -> UserOptions {
    let mut t = json!({"container_spec": container});
    for (k, v) in rest.as_object().unwrap() {
        t[k] = v.clone();
    }
    serde_json::from_value(json!({"task_template": t})).unwrap()
}

fn env(pod: &Value, name: &str) -> Option<String> {
    let env = pod["spec"]["containers"][0]["env"].as_array()?;
    let e = env.iter().find(|e| e["name"] == name)?;
    e["value"].as_str().map(str::to_owned)
}

#[test]
fn a_command_becomes_args_followed_by_what_kubespawner_appends() {
    let launch = options(
        json!({"command": "start-notebook.sh --NotebookApp.x=1"}),
        json!({}),
    );
    // The hub set no cmd: KubeSpawner sent no args, and would have appended --ip and --port.
    let (pod, _) = decide_with(&alice_pod(), Launch::Stored(&launch), "", false);
    assert_eq!(
        pod["spec"]["containers"][0]["args"],
        json!([
            "start-notebook.sh",
            "--NotebookApp.x=1",
            "--ip=0.0.0.0",
            "--port=8888"
        ])
    );
    // The hub's own arguments are kept after the command.
    let mut with_cmd = alice_pod();
    with_cmd["spec"]["containers"][0]["args"] = json!([
        "jupyterhub-singleuser",
        "--ip=0.0.0.0",
        "--port=8888",
        "--debug"
    ]);
    let (pod, _) = decide_with(&with_cmd, Launch::Stored(&launch), "", false);
    assert_eq!(
        pod["spec"]["containers"][0]["args"],
        json!([
            "start-notebook.sh",
            "--NotebookApp.x=1",
            "--ip=0.0.0.0",
            "--port=8888",
            "--debug"
        ])
    );
    // Off by policy: the hub's command stays.
    let (pod, _) = decide_with(
        &with_cmd,
        Launch::Stored(&launch),
        "  command: false\n",
        false,
    );
    assert_eq!(
        pod["spec"]["containers"][0]["args"][0],
        "jupyterhub-singleuser"
    );
}

/// KubeSpawner applies a `profile_list` profile's `kubespawner_override` after the hub's
/// `pre_spawn_hook`, so under the chart's hook a profile's image wins over the plugin's. The
/// webhook sees the pod after the profile and cannot tell a profile's image from the hub's
/// default: which wins is the policy's choice (`userOptions.image`).
#[test]
fn the_pods_image_wins_when_the_policy_says_so() {
    let launch = options(
        json!({"image": "registry.example.org/xnat/monai:1"}),
        json!({}),
    );
    let (pod, _) = decide_with(&alice_pod(), Launch::Stored(&launch), "", false);
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "registry.example.org/xnat/monai:1"
    );
    let (pod, warnings) = decide_with(
        &alice_pod(),
        Launch::Stored(&launch),
        "  image: false\n",
        false,
    );
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "quay.io/jupyterhub/k8s-singleuser-sample:4.0.0"
    );
    assert!(
        warnings.is_empty(),
        "a policy choice, not a refusal: {warnings:?}"
    );
}

#[test]
fn an_image_outside_the_allowed_prefixes_keeps_the_hubs() {
    let launch = options(json!({"image": "docker.io/evil/miner:latest"}), json!({}));
    let policy = "  allowedImages: [registry.example.org/xnat/]\n";
    let (pod, warnings) = decide_with(&alice_pod(), Launch::Stored(&launch), policy, false);
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "quay.io/jupyterhub/k8s-singleuser-sample:4.0.0");
    assert!(
        warnings.iter().any(|w| w.contains("allowedImages")),
        "{warnings:?}"
    );

    let launch = options(
        json!({"image": "registry.example.org/xnat/monai:1"}),
        json!({}),
    );
    let (pod, _) = decide_with(&alice_pod(), Launch::Stored(&launch), policy, false);
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example.org/xnat/monai:1");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        env(&pod, "JUPYTER_IMAGE").as_deref(),
        Some("registry.example.org/xnat/monai:1")
    );
}

#[test]
fn labels_only_when_the_policy_allows_and_never_the_hubs() {
    let launch = options(
        json!({"labels": {"team": "neuro", "hub.jupyter.org/network-access-hub": "true",
                          "app": "other", "bad key": "x"}}),
        json!({}),
    );
    let (pod, _) = decide_with(&alice_pod(), Launch::Stored(&launch), "", false);
    assert_eq!(
        pod["metadata"]["labels"].get("team"),
        None,
        "off by default"
    );

    let (pod, warnings) = decide_with(
        &alice_pod(),
        Launch::Stored(&launch),
        "  labels: true\n",
        false,
    );
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels["team"], "neuro");
    // The pod's own value wins; the hub's prefix and bad keys are refused.
    assert_eq!(labels["app"], "jupyterhub");
    assert_eq!(labels.get("bad key"), None);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
}

#[test]
fn node_affinity_is_merged_into_every_term_the_pod_has() {
    let launch = options(
        json!({}),
        json!({"placement": {"constraints": ["gpu==a100", "gpu==h100"]}}),
    );
    let mut pod = alice_pod();
    pod["spec"]["affinity"] = json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["user"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]
    }});
    let (out, _) = decide_with(&pod, Launch::Stored(&launch), "", false);
    let ours = json!({"key": "gpu", "operator": "In", "values": ["a100", "h100"]});
    let affinity = &out["spec"]["affinity"]["nodeAffinity"];
    assert_eq!(
        affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
        json!([
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["user"]}, ours]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
             "matchExpressions": [ours]}
        ])
    );
    assert_eq!(
        affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
        1
    );
}

#[test]
fn every_generic_resource_is_an_extended_limit() {
    let launch = options(
        json!({}),
        json!({"resources": {"generic_resources": {
            "gpu": "1", "fpga.com/fpga": "2", "example.kubernetes.io/x": "1", "fpga": "1",
            "vendor.com/half": "0.5", "vendor.com/none": null
        }}}),
    );
    let (pod, warnings) = decide_with(&alice_pod(), Launch::Stored(&launch), "", false);
    let limits = &pod["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(limits["nvidia.com/gpu"], "1");
    assert_eq!(limits["fpga.com/fpga"], "2");
    for refused in [
        "example.kubernetes.io/x",
        "fpga",
        "vendor.com/half",
        "vendor.com/none",
    ] {
        assert_eq!(limits.get(refused), None, "{refused}");
    }
    assert_eq!(warnings.len(), 3, "{warnings:?}");
}

#[test]
fn the_token_pair_comes_whole_from_the_launch_or_not_at_all() {
    let launch = options(
        json!({"env": {"XNAT_USER": "alias-1", "XNAT_PASS": "secret-1", "XNAT_DATA": "/data"}}),
        json!({}),
    );
    let rule = "rules:\n  - name: r\n    match: {projects: [ALPHA]}\n    env: {XNAT_USER: ruled}\n";
    let (pod, warnings) = decide_with(&alice_pod(), Launch::Stored(&launch), rule, true);
    assert_eq!(env(&pod, "XNAT_USER").as_deref(), Some("alias-1"));
    assert_eq!(env(&pod, "XNAT_PASS").as_deref(), Some("secret-1"));
    assert!(warnings.iter().any(|w| w.contains("pair")), "{warnings:?}");

    // Held back for an unverified caller: both, and the policy's XNAT_USER stays.
    let (pod, warnings) = decide_with(&alice_pod(), Launch::Stored(&launch), "", false);
    assert_eq!(env(&pod, "XNAT_USER").as_deref(), Some("alice"));
    assert_eq!(env(&pod, "XNAT_PASS"), None);
    assert_eq!(env(&pod, "XNAT_DATA").as_deref(), Some("/data"));
    assert!(
        warnings.iter().any(|w| w.contains("XNAT_PASS")),
        "{warnings:?}"
    );
}

#[test]
fn the_plugins_env_beats_the_policys_and_the_launch_env_beats_both() {
    let launch = options(
        json!({"env": {"XNAT_HOST": "https://xnat.example.org", "NB_USER": "x"}}),
        json!({}),
    );
    let policy = "  env:\n    NB_USER: '{jupyter_user}'\n";
    let (pod, _) = decide_with(&alice_pod(), Launch::Stored(&launch), policy, false);
    assert_eq!(
        env(&pod, "XNAT_HOST").as_deref(),
        Some("https://xnat.example.org")
    );
    assert_eq!(env(&pod, "NB_USER").as_deref(), Some("alice"));
}

#[test]
fn a_launch_context_that_cannot_be_read_is_said_and_the_project_list_used() {
    let (pod, warnings) = decide_with(
        &alice_pod(),
        Launch::Unreadable("XNAT answered 500"),
        "",
        false,
    );
    let mounts = pod["spec"]["containers"][0]["volumeMounts"].to_string();
    assert!(mounts.contains("/data/projects/ALPHA"), "{mounts}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("could not be read") && w.contains("500")),
        "{warnings:?}"
    );
}

#[test]
fn a_swarm_style_absolute_source_maps_through_its_prefix_onto_its_volume() {
    // A Swarm-style translation keeps absolute paths; this site keeps its archive on its own
    // claim, mounted at the claim's root.
    let policy = ARCHIVE_ON_ITS_OWN_CLAIM;
    let launch = options(
        json!({"mounts": [
            {"source": "/data/xnat/archive//ALPHA/arc001/", "target": "/data/projects/ALPHA/experiments",
             "type": "bind", "read_only": true},
            {"source": "./ALPHA/resources", "target": "/data/projects/ALPHA/resources",
             "type": "bind", "read_only": true}
        ]}),
        json!({}),
    );
    let (pod, warnings) = decide_with(&alice_pod(), Launch::Stored(&launch), policy, false);
    let mounts = &pod["spec"]["containers"][0]["volumeMounts"];
    assert!(
        mounts
            .as_array()
            .unwrap()
            .contains(&json!({"name": "archive", "mountPath":
            "/data/projects/ALPHA/experiments", "subPath": "ALPHA/arc001", "readOnly": true})),
        "{mounts}"
    );
    // A relative source matches no absolute prefix.
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("./ALPHA/resources") && w.contains("outside")),
        "{warnings:?}"
    );
    let volumes = &pod["spec"]["volumes"];
    assert!(
        volumes
            .as_array()
            .unwrap()
            .contains(&json!({"name": "archive",
            "persistentVolumeClaim": {"claimName": "archive", "readOnly": true}})),
        "{volumes}"
    );
}

#[test]
fn the_pair_is_not_split_by_a_pods_own_half() {
    let launch = options(
        json!({"env": {"XNAT_USER": "alias-1", "XNAT_PASS": "secret-1"}}),
        json!({}),
    );
    let mut pod = alice_pod();
    pod["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "XNAT_USER", "value": "from-the-hub"}));
    let (out, warnings) = decide_with(&pod, Launch::Stored(&launch), "", true);
    assert_eq!(env(&out, "XNAT_USER").as_deref(), Some("from-the-hub"));
    assert_eq!(env(&out, "XNAT_PASS"), None, "a secret without its alias");
    assert!(
        warnings.iter().any(|w| w.contains("stay a pair")),
        "{warnings:?}"
    );
}

/// XNAT's UI starts a named server named by the launch's `eventTrackingId`; a launch through
/// XNAT's API may start the default server, and carries an `eventTrackingId` too
/// (`DefaultJupyterHubService.validateServerStartRequest` requires one). Either keeps its own
/// shared-data directory; another named server never mounts it.
#[test]
fn shared_data_is_its_own_launchs_on_the_default_or_its_named_server() {
    let launch: UserOptions = serde_json::from_value(json!({
        "projectId": "ALPHA", "eventTrackingId": "20240621T123456789Z",
        "task_template": {"container_spec": {"mounts": [{
            "source": "/data/xnat/archive/SHARED.PROJECT.DATA.STORAGE.DIRECTORY/jupyter-notebooks/20240621T123456789Z",
            "target": "/data/projects/ALPHA", "type": "bind", "read_only": true}]}}
    }))
    .unwrap();
    for server in ["", "20240621T123456789Z"] {
        let (out, warnings) =
            decide_on_server(&alice_pod(), Launch::Stored(&launch), "", false, server);
        let mounts = out["spec"]["containers"][0]["volumeMounts"].to_string();
        assert!(
            mounts.contains(
                "SHARED.PROJECT.DATA.STORAGE.DIRECTORY/jupyter-notebooks/20240621T123456789Z"
            ),
            "{server:?}: {mounts} {warnings:?}"
        );
    }
    let (out, warnings) =
        decide_on_server(&alice_pod(), Launch::Stored(&launch), "", false, "other");
    let mounts = out["spec"]["containers"][0]["volumeMounts"].to_string();
    assert!(!mounts.contains("SHARED"), "{mounts}");
    assert!(
        warnings.iter().any(|w| w.contains("this server is")),
        "{warnings:?}"
    );
}

#[test]
fn a_launch_mount_of_a_project_the_site_never_mounts_says_so() {
    // alice owns ALPHA, but the site never mounts it: the refusal is the site's, not XNAT's.
    let policy = "  pathMappings:\n    - {xnatPath: /data/xnat/archive/, volume: archive, subPath: '', scope: project}\n\
                  storage:\n  neverMount: [ALPHA]\n  volumes:\n    - {name: xnat-data, claimName: xnat-gpfs}\n    \
                  - {name: archive, claimName: archive, readOnly: true}\n";
    let launch = options(
        json!({"mounts": [
            {"source": "/data/xnat/archive/ALPHA/arc001", "target": "/data/projects/ALPHA/experiments",
             "type": "bind", "read_only": true}
        ]}),
        json!({}),
    );
    let (pod, warnings) = decide_with(&alice_pod(), Launch::Stored(&launch), policy, false);
    let mounts = pod["spec"]["containers"][0]["volumeMounts"].to_string();
    assert!(!mounts.contains("ALPHA"), "{mounts}");
    let said = warnings.join("\n");
    assert!(said.contains("not mounted by site policy"), "{said}");
    assert!(!said.contains("XNAT does not list"), "{said}");
}

/// A launch mounting a project the user cannot read is a question for XNAT (is it public?),
/// but not when XNAT could not even say what the user may read: that review asks nothing more.
#[test]
fn xnat_is_asked_about_a_launch_only_when_it_answered_for_the_user() {
    let policy = Policy::parse(&format!(
        "userOptions:\n  enabled: true\n{ARCHIVE_ON_ITS_OWN_CLAIM}"
    ))
    .unwrap();
    let launch = options(
        json!({"mounts": [
            {"source": "/data/xnat/archive/PUB/arc001", "target": "/data/projects/PUB",
             "type": "bind", "read_only": true}
        ]}),
        json!({}),
    );
    let known = AccessOutcome::Known(Arc::new(UserAccess::from_group_ids(&["ALPHA_owner"])));
    let unavailable = AccessOutcome::Unavailable("XNAT timed out".into());
    let asked = |access: &AccessOutcome| {
        let cx = Context {
            who: Identity {
                jupyter_user: "alice",
                server_name: "",
                xnat_user: "alice",
            },
            access,
            launch: Launch::Stored(&launch),
            xnat_url: "http://xnat/xnat",
            caller_verified: false,
        };
        let prepared = prepare(&cx, &policy);
        let questions = prepared.questions(&policy);
        questions.launch.projects.clone()
    };
    assert_eq!(asked(&known), ["PUB"]);
    assert!(asked(&unavailable).is_empty());
}
