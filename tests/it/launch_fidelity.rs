//! Launches from XNAT's UI on NrgXnat's Kubernetes set-up, under `deploy/presets/nrgxnat-k8s.yaml`:
//! each stored launch gives the pod the chart's `pre_spawn_hook.py` would have given on the same
//! site — worked out here by [`hook_pod`], a reading of that hook
//! (NrgXnat/xnat-jupyterhub-image, `xnat-jupyterhub-chart/files/pre_spawn_hook.py`) — except
//! where the webhook is deliberately safer (docs/policy.md's migration table), which each test states.
//!
//! The stored launches follow the plugin's source (NrgXnat/xnat-jupyterhub-plugin):
//! `DefaultUserOptionsService.storeUserOptions` builds the mounts (sources translated by a plain
//! string replace of the archive prefix, `.` on NrgXnat's Kubernetes instructions), `toTaskTemplate`
//! the env (`XNAT_USER`/`XNAT_PASS` = a fresh token's alias and secret) and resources; the models
//! under `models/docker` are `@JsonInclude(ALWAYS)`, so unset members are `null`, while the top
//! level leaves unset members out (XNAT's mapper is `NON_NULL`). `generic_resources` values are
//! strings and constraints come one `key==v` per allowed value, as `DefaultUserOptionsServiceTest`
//! builds them. XNAT's UI starts a named server named by the launch's `eventTrackingId`
//! (`jupyterhub-servers.js`).

use crate::common;

use std::collections::BTreeMap;

use crate::common::*;
use jupyter_xnat_webhook::Amount;
use serde_json::{Map, Value, json};

const PRESET: &str = include_str!("../../deploy/presets/nrgxnat-k8s.yaml");
const EVENT: &str = "20240621T123456789Z";

/// The preset as a site sets it: the chart's default JH_XNAT_UID/JH_XNAT_GID (0).
fn site_policy() -> String {
    PRESET
        .replace("# NB_UID: \"0\"", "NB_UID: \"0\"")
        .replace("# NB_GID: \"0\"", "NB_GID: \"0\"")
}

/// alice's pod as stock KubeSpawner makes it on the chart's z2jh values: the static `workspaces`
/// claim at `/workspace/alice` (subPath `users/alice`) and `cmd: [jupyterhub-singleuser,
/// --allow-root]`, to which KubeSpawner appends `--ip` and `--port`; a named server.
fn chart_review(server: &str) -> Value {
    let mut review = fixture("alice-default");
    let pod = &mut review["request"]["object"];
    pod["metadata"]["name"] = json!(format!("jupyter-alice--{}", server.to_lowercase()));
    pod["metadata"]["annotations"]["hub.jupyter.org/servername"] = json!(server);
    pod["metadata"]["labels"]["hub.jupyter.org/servername"] = json!(server.to_lowercase());
    let spec = &mut pod["spec"];
    spec["volumes"] =
        json!([{"name": "home", "persistentVolumeClaim": {"claimName": "workspaces"}}]);
    let c = &mut spec["containers"][0];
    c["volumeMounts"] =
        json!([{"name": "home", "mountPath": "/workspace/alice", "subPath": "users/alice"}]);
    c["args"] = json!([
        "jupyterhub-singleuser",
        "--allow-root",
        "--ip=0.0.0.0",
        "--port=8888"
    ]);
    review
}

/// The plugin's env for a launch of `xsi_type`/`item` by alice (`toTaskTemplate`'s defaults).
fn plugin_env(xsi_type: &str, item: &str) -> Value {
    json!({
        "XNAT_HOST": "https://xnat.example.org",
        "XNAT_USER": "7c4e1a2b-alias",
        "XNAT_PASS": "token-secret-9f",
        "XNAT_DATA": "/data",
        "XNAT_XSI_TYPE": xsi_type,
        "XNAT_ITEM_ID": item,
        "JUPYTERHUB_ROOT_DIR": "/workspace/alice",
        "XDG_CONFIG_HOME": "/workspace/alice"
    })
}

/// A stored launch: `mounts` and `resources`/`placement`/`image`/`command` as given, the rest as
/// `toTaskTemplate` writes them when unset (`null` values; an empty generic-resource map and
/// constraint list, which it always builds).
fn stored(project: &str, xsi_type: &str, item: &str, container: Value, rest: Value) -> Value {
    let mut spec = json!({
        "image": "xnat/datascience-notebook:latest", "command": null,
        "env": plugin_env(xsi_type, item), "labels": {}, "mounts": []
    });
    for (k, v) in container.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let mut template = json!({
        "container_spec": spec,
        "resources": {"cpu_limit": null, "cpu_reservation": null, "mem_limit": null,
                      "mem_reservation": null, "generic_resources": {}},
        "placement": {"constraints": []}
    });
    for (k, v) in rest.as_object().unwrap() {
        template[k] = v.clone();
    }
    json!({
        "userId": 7, "servername": EVENT, "xsiType": xsi_type, "itemId": item,
        "projectId": project, "eventTrackingId": EVENT, "task_template": template
    })
}

/// A project launch of ALPHA (alice's project).
fn alpha_launch(container: Value, rest: Value) -> Value {
    stored("ALPHA", "xnat:projectData", "ALPHA", container, rest)
}

/// The plugin's workspace mount (translated like the archive on NrgXnat's instructions).
fn workspace_mount() -> Value {
    json!({"source": "./users/alice", "target": "/workspace/alice", "type": "bind", "read_only": false})
}

fn project_mounts(project: &str) -> Vec<Value> {
    [
        "arc001:experiments",
        "resources:resources",
        "subjects:subjects",
    ]
    .iter()
    .map(|pair| {
        let (dir, target) = pair.split_once(':').unwrap();
        json!({"source": format!("./{project}/{dir}"),
                   "target": format!("/data/projects/{project}/{target}"),
                   "type": "bind", "read_only": true})
    })
    .collect()
}

/// What `pre_spawn_hook.py` makes of the hub's pod `spec` for `options`, on the chart's site
/// (archive claim `archive`, JH_XNAT_UID/GID 0), read line by line from the hook.
fn hook_pod(spec: &Value, options: &Value) -> Value {
    let mut spec = spec.clone();
    let t = &options["task_template"];
    let c = &mut spec["containers"][0];
    // placement.constraints → node_selector: `{i.split('==')[0]: i.split('==')[-1]}`.
    let mut selector = Map::new();
    for k in t["placement"]["constraints"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let s = k.as_str().unwrap();
        let parts: Vec<&str> = s.split("==").collect();
        selector.insert(parts[0].to_owned(), json!(parts[parts.len() - 1]));
    }
    // resources: limits and guarantees when set; generic resources as both, gpu renamed.
    let r = &t["resources"];
    let mut spawner_env: Vec<(&str, String)> = Vec::new();
    let mut limits = c["resources"]["limits"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut requests = c["resources"]["requests"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (field, is_limit, name) in [
        ("cpu_limit", true, "cpu"),
        ("mem_limit", true, "memory"),
        ("cpu_reservation", false, "cpu"),
        ("mem_reservation", false, "memory"),
    ] {
        if let Some(v) = r.get(field).filter(|v| !v.is_null()) {
            let map = if is_limit { &mut limits } else { &mut requests };
            map.insert(name.to_owned(), kubespawner_quantity(v));
            // JupyterHub's Spawner.get_env(): str() of the value the spawner was given.
            let var = match field {
                "cpu_limit" => "CPU_LIMIT",
                "cpu_reservation" => "CPU_GUARANTEE",
                "mem_limit" => "MEM_LIMIT",
                _ => "MEM_GUARANTEE",
            };
            let text = match kubespawner_quantity(v) {
                Value::String(s) => s,
                other => other.to_string(),
            };
            spawner_env.push((var, text));
        }
    }
    for (k, v) in r["generic_resources"].as_object().into_iter().flatten() {
        let k = if k == "gpu" { "nvidia.com/gpu" } else { k };
        limits.insert(k.to_owned(), v.clone());
        requests.insert(k.to_owned(), v.clone());
    }
    c["resources"] = json!({"limits": limits, "requests": requests});
    let cs = &t["container_spec"];
    if let Some(image) = cs["image"].as_str() {
        c["image"] = json!(image);
        c["imagePullPolicy"] = json!("IfNotPresent");
        // KubeSpawner's JUPYTER_IMAGE(_SPEC) follow `spawner.image`.
        set_env(c, "JUPYTER_IMAGE", image);
        set_env(c, "JUPYTER_IMAGE_SPEC", image);
    }
    if let Some(command) = cs["command"].as_str().filter(|s| !s.is_empty()) {
        // `spawner.cmd = command.split(' ')`; KubeSpawner appends get_args().
        let mut args: Vec<Value> = command.split(' ').map(|w| json!(w)).collect();
        args.extend([json!("--ip=0.0.0.0"), json!("--port=8888")]);
        c["args"] = Value::Array(args);
    }
    for (k, v) in cs["env"].as_object().into_iter().flatten() {
        set_env(c, k, v.as_str().unwrap());
    }
    for (k, v) in [("NB_UID", "0"), ("NB_GID", "0"), ("NB_USER", "alice")] {
        set_env(c, k, v);
    }
    set_env(c, "JUPYTERHUB_SINGLEUSER_EXTENSION", "0");
    for (k, v) in &spawner_env {
        set_env(c, k, v);
    }
    // Every mount whose target does not contain /workspace/ → volume `archive`, subPath = the
    // stored source, readOnly = read_only.
    let mut archive_used = false;
    for m in cs["mounts"].as_array().into_iter().flatten() {
        let target = m["target"].as_str().unwrap();
        if target.contains("/workspace/") {
            continue;
        }
        archive_used = true;
        c["volumeMounts"].as_array_mut().unwrap().push(json!({
            "name": "archive", "mountPath": target, "subPath": m["source"], "readOnly": m["read_only"]
        }));
    }
    c["workingDir"] = json!("/workspace/alice");
    if archive_used {
        spec["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "archive", "persistentVolumeClaim": {"claimName": "archive"}}));
    }
    // `spawner.node_selector = {…}` replaces the hub's selector whenever constraints are stored.
    if t["placement"]["constraints"].is_array() {
        spec["nodeSelector"] = Value::Object(selector);
    }
    spec
}

/// KubeSpawner's ByteSpecification: `8G` is 8 × 1024³ bytes; cores stay numbers.
fn kubespawner_quantity(v: &Value) -> Value {
    match v.as_str() {
        Some(s) => {
            let (n, unit) = s.split_at(s.len() - 1);
            let factor: u64 = match unit {
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return json!(s),
            };
            json!((n.parse::<f64>().unwrap() * factor as f64).to_string())
        }
        None => json!(v.to_string()),
    }
}

fn set_env(c: &mut Value, name: &str, value: &str) {
    let env = c["env"].as_array_mut().unwrap();
    match env.iter_mut().find(|e| e["name"] == name) {
        Some(e) => e["value"] = json!(value),
        None => env.push(json!({"name": name, "value": value})),
    }
}

/// What a pod means to the notebook, for comparing two pods: each mount as (claim, the subPath
/// kubelet resolves, read-only), env as a map, quantities by value (an extended resource's
/// request defaulted to its limit, as the API server does), and the container's image, pull
/// policy, args and working directory; node selector and affinity as they are.
fn view(spec: &Value) -> Value {
    let claims: BTreeMap<&str, &str> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?,
                v["persistentVolumeClaim"]["claimName"].as_str()?,
            ))
        })
        .collect();
    let c = &spec["containers"][0];
    let mut mounts = BTreeMap::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let claim = claims
            .get(m["name"].as_str().unwrap())
            .copied()
            .unwrap_or("?");
        let sub_path: Vec<&str> = m["subPath"]
            .as_str()
            .unwrap_or_default()
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        mounts.insert(
            m["mountPath"]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .to_owned(),
            json!([claim, sub_path.join("/"), m["readOnly"] == true]),
        );
    }
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap(), &e["value"]))
        .collect();
    let amounts = |m: &Value| -> BTreeMap<String, String> {
        m.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (
                    k.clone(),
                    format!("{:?}", Amount::parse(&text).expect("a quantity")),
                )
            })
            .collect()
    };
    let limits = amounts(&c["resources"]["limits"]);
    let mut requests = amounts(&c["resources"]["requests"]);
    for (k, v) in &limits {
        if k.contains('/') {
            requests.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    json!({
        "mounts": mounts, "env": env, "limits": limits, "requests": requests,
        "image": c["image"], "imagePullPolicy": c["imagePullPolicy"], "args": c["args"],
        "workingDir": c["workingDir"],
        // No selector and an empty one select the same nodes.
        "nodeSelector": match &spec["nodeSelector"] {
            Value::Object(m) if m.is_empty() => Value::Null,
            other => other.clone(),
        },
        "affinity": spec["affinity"]
    })
}

/// Starts the webhook on the site's preset as the API server calls it (a verified client
/// certificate), stores `options` for alice's server `EVENT`, and returns (the webhook's pod,
/// the hook's pod, the warnings).
async fn both_pods(options: Value) -> (Value, Value, Vec<String>) {
    let h = Harness::builder()
        .policy(&site_policy())
        .called_by_api_server()
        .start()
        .await;
    both_pods_on(&h, options).await
}

/// [`both_pods`] on a running harness (whose stand-in the test has set up).
async fn both_pods_on(h: &Harness, options: Value) -> (Value, Value, Vec<String>) {
    h.xnat.set_user_options("alice", EVENT, options.clone());
    let review = chart_review(EVENT);
    let response = h.review(&review).await;
    let ours = patched_pod(&review, &response);
    // A second pass adds nothing.
    let mut again = review.clone();
    again["request"]["object"] = ours.clone();
    assert_eq!(
        decoded_patch(&h.review(&again).await),
        None,
        "a second pass changed the pod"
    );
    let problems = common::pod_rules::pod_problems(&ours["spec"]);
    assert!(problems.is_empty(), "the webhook's pod: {problems:?}");
    let hook = hook_pod(&review["request"]["object"]["spec"], &options);
    (view(&ours["spec"]), view(&hook), warnings(&response))
}

/// Asserts the webhook's pod is the hook's, but for the preset's extras.
async fn assert_like_the_hook(options: Value) {
    let (ours, hook, warnings) = both_pods(options).await;
    assert_eq!(
        ours_less_preset_extras(ours),
        hook,
        "warnings: {warnings:?}"
    );
}

/// The differences every launch has, by design: the preset adds `XNAT_PROJECTS`; the plugin's
/// workspace mount is the policy's (the same directory z2jh mounts).
fn ours_less_preset_extras(mut ours: Value) -> Value {
    ours["env"].as_object_mut().unwrap().remove("XNAT_PROJECTS");
    ours
}

#[tokio::test]
async fn a_project_launch_gives_the_hooks_pod() {
    let mut mounts = vec![workspace_mount()];
    mounts.extend(project_mounts("ALPHA"));
    let options = alpha_launch(json!({"mounts": mounts}), json!({}));
    let (ours, hook, warnings) = both_pods(options).await;
    assert_eq!(
        ours_less_preset_extras(ours.clone()),
        hook,
        "warnings: {warnings:?}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(ours["env"]["XNAT_PROJECTS"], "ALPHA");
    assert_eq!(
        ours["env"]["XNAT_USER"], "7c4e1a2b-alias",
        "the token pair stays whole"
    );
}

#[tokio::test]
async fn a_compute_environment_with_gpus_and_a_command_gives_the_hooks_pod() {
    let options = alpha_launch(
        json!({"image": "xnat/monai-notebook:1.3", "command": "jupyter  lab --no-browser",
               "mounts": project_mounts("ALPHA")}),
        json!({
            "resources": {"cpu_limit": 4.0, "cpu_reservation": 2.0, "mem_limit": "16G",
                          "mem_reservation": "8G",
                          "generic_resources": {"nvidia.com/gpu": "2", "fpga.com/fpga": "1"}},
            "placement": {"constraints": ["zone==z1"]}
        }),
    );
    let (ours, hook, warnings) = both_pods(options).await;
    // The hook splits on single spaces: `jupyter  lab` gives an empty argument the webhook
    // leaves out.
    let mut hook = hook;
    let args = hook["args"].as_array_mut().unwrap();
    args.retain(|a| a != "");
    assert_eq!(
        ours_less_preset_extras(ours),
        hook,
        "warnings: {warnings:?}"
    );
}

#[tokio::test]
async fn constraints_with_several_values_become_node_affinity_not_the_last_value() {
    let options = alpha_launch(
        json!({"mounts": project_mounts("ALPHA")}),
        json!({"placement": {"constraints": [
            "node.labels.project==ProjectA", "node.labels.project==ProjectB",
            "instance-type!=spot", "zone==z1"
        ]}}),
    );
    let (ours, hook, _) = both_pods(options.clone()).await;
    // The hook keeps the last value of `project` and turns `!=` into a label key Kubernetes
    // refuses (`instance-type!=spot`): that pod would not even be created.
    assert_eq!(
        hook["nodeSelector"],
        json!({"node.labels.project": "ProjectB", "instance-type!=spot": "instance-type!=spot",
               "zone": "z1"})
    );
    assert_eq!(ours["nodeSelector"], json!({"zone": "z1"}));
    let review = chart_review(EVENT);
    let hook_spec = hook_pod(&review["request"]["object"]["spec"], &options);
    let problems = common::pod_rules::pod_problems(&hook_spec);
    assert!(
        problems.iter().any(|p| p.contains("instance-type!=spot")),
        "{problems:?}"
    );
    assert_eq!(
        ours["affinity"],
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "instance-type", "operator": "NotIn", "values": ["spot"]},
                {"key": "project", "operator": "In", "values": ["ProjectA", "ProjectB"]}
            ]}]
        }}})
    );
}

#[tokio::test]
async fn a_subject_and_an_experiment_launch_mount_their_own_directories() {
    let mounts = json!([
        workspace_mount(),
        {"source": "./ALPHA/subjects/S01", "target": "/data/projects/ALPHA/subject-resources/S01",
         "type": "bind", "read_only": true},
        // An experiment's session folder comes with a trailing slash.
        {"source": "./ALPHA/arc001/S01_MR1/", "target": "/data/projects/ALPHA/experiments/S01_MR1",
         "type": "bind", "read_only": true}
    ]);
    let options = stored(
        "ALPHA",
        "xnat:subjectData",
        "XNAT_S00001",
        json!({"mounts": mounts}),
        json!({}),
    );
    assert_like_the_hook(options).await;
}

#[tokio::test]
async fn a_launch_with_shared_data_mounts_its_own_shared_directory() {
    let shared = json!([
        workspace_mount(),
        {"source": format!("./SHARED.PROJECT.DATA.STORAGE.DIRECTORY/jupyter-notebooks/{EVENT}"),
         "target": "/data/projects/BETA", "type": "bind", "read_only": true}
    ]);
    let options = stored(
        "BETA",
        "xnat:projectData",
        "BETA",
        json!({"mounts": shared}),
        json!({}),
    );
    assert_like_the_hook(options).await;

    // Another launch's directory, or one for a project alice may not read, is refused.
    for (project, event) in [("BETA", "20230101T000000000Z"), ("GAMMA", EVENT)] {
        let other = json!([{"source":
            format!("./SHARED.PROJECT.DATA.STORAGE.DIRECTORY/jupyter-notebooks/{event}"),
            "target": format!("/data/projects/{project}"), "type": "bind", "read_only": true}]);
        let options = stored(
            project,
            "xnat:projectData",
            project,
            json!({"mounts": other}),
            json!({}),
        );
        let (ours, _, warnings) = both_pods(options).await;
        assert!(
            !ours["mounts"]
                .as_object()
                .unwrap()
                .contains_key(&format!("/data/projects/{project}")),
            "{ours}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("SHARED.PROJECT")),
            "{warnings:?}"
        );
    }
}

#[tokio::test]
async fn a_project_the_user_may_not_read_is_refused_where_the_hook_mounts_it() {
    let mut mounts = project_mounts("ALPHA");
    mounts.extend(project_mounts("GAMMA"));
    let options = stored(
        "ALPHA",
        "xdat:stored_search",
        "xs1",
        json!({"mounts": mounts}),
        json!({}),
    );
    let (ours, hook, warnings) = both_pods(options).await;
    let gamma = |v: &Value| {
        v["mounts"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.contains("GAMMA"))
            .count()
    };
    assert_eq!(gamma(&hook), 3);
    assert_eq!(gamma(&ours), 0);
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.contains("project GAMMA"))
            .count(),
        3,
        "{warnings:?}"
    );
}

#[tokio::test]
async fn null_members_and_a_bad_mount_leave_the_rest_of_the_launch() {
    let mut mounts = vec![json!({"source": null, "target": "/data/broken", "read_only": true})];
    mounts.extend(project_mounts("ALPHA"));
    let options = alpha_launch(
        json!({"image": null, "env": null, "mounts": mounts}),
        json!({"resources": null, "placement": null}),
    );
    let (ours, _, warnings) = both_pods(options).await;
    let paths: Vec<&String> = ours["mounts"].as_object().unwrap().keys().collect();
    assert_eq!(
        paths,
        [
            "/data/projects/ALPHA/experiments",
            "/data/projects/ALPHA/resources",
            "/data/projects/ALPHA/subjects",
            "/workspace/alice"
        ]
    );
    assert!(
        warnings.iter().any(|w| w.contains("/data/broken")),
        "{warnings:?}"
    );
    assert_eq!(
        ours["image"],
        "quay.io/jupyterhub/k8s-singleuser-sample:4.0.0"
    );
}

fn mount_paths(view: &Value) -> Vec<&str> {
    view["mounts"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn an_experiment_shared_into_a_readable_project_is_mounted_once_xnat_confirms_it() {
    let h = Harness::builder()
        .policy(&site_policy())
        .called_by_api_server()
        .start()
        .await;
    // GAMMA's session, shared into ALPHA (alice's) under another label; the plugin mounts it
    // from its primary project's archive, under the primary project's id and label.
    h.xnat
        .set_experiment("XNAT_E00007", "GAMMA", "G01_MR1", &[("ALPHA", "A_MR1")]);
    h.xnat
        .set_experiment("XNAT_E00008", "GAMMA", "G02_MR1", &[("DELTA", "D_MR1")]);
    let launch = |id: &str, label: &str| {
        stored(
            "ALPHA",
            "xnat:experimentData",
            id,
            json!({"mounts": [workspace_mount(), {
                "source": format!("./GAMMA/arc001/{label}/"),
                "target": format!("/data/projects/GAMMA/experiments/{label}"),
                "type": "bind", "read_only": true}]}),
            json!({}),
        )
    };
    let (ours, hook, warnings) = both_pods_on(&h, launch("XNAT_E00007", "G01_MR1")).await;
    assert_eq!(
        ours_less_preset_extras(ours),
        hook,
        "warnings: {warnings:?}"
    );
    assert_eq!(h.xnat.counts().experiments, 1);
    // Cached: the second pass (and any review within cacheTtl) asks nothing more.
    both_pods_on(&h, launch("XNAT_E00007", "G01_MR1")).await;
    assert_eq!(h.xnat.counts().experiments, 1);

    // A directory of the same name elsewhere in GAMMA (not its archive): refused.
    let mut elsewhere = launch("XNAT_E00007", "G01_MR1");
    elsewhere["task_template"]["container_spec"]["mounts"][1]["source"] =
        json!("./GAMMA/resources/G01_MR1");
    let (ours, _, _) = both_pods_on(&h, elsewhere).await;
    assert!(
        !mount_paths(&ours).iter().any(|p| p.contains("GAMMA")),
        "{ours}"
    );
    // Another directory of GAMMA, or an experiment shared only into a project alice may not
    // read: refused.
    for (id, label) in [("XNAT_E00007", "G09_MR1"), ("XNAT_E00008", "G02_MR1")] {
        let (ours, _, warnings) = both_pods_on(&h, launch(id, label)).await;
        assert!(
            !mount_paths(&ours).iter().any(|p| p.contains("GAMMA")),
            "{ours}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("project GAMMA")),
            "{warnings:?}"
        );
    }
}

#[tokio::test]
async fn a_public_project_is_mounted_once_xnat_says_it_is_public() {
    let h = Harness::builder()
        .policy(&site_policy())
        .called_by_api_server()
        .start()
        .await;
    h.xnat.set_accessibility("OPENDATA", "public");
    h.xnat.set_accessibility("CLOSED", "private");
    // A stored-search launch mounts every readable project, public ones included.
    let mut mounts = project_mounts("ALPHA");
    mounts.extend(project_mounts("OPENDATA"));
    mounts.extend(project_mounts("CLOSED"));
    let options = stored(
        "ALPHA",
        "xdat:stored_search",
        "xs1",
        json!({"mounts": mounts}),
        json!({}),
    );
    let (ours, hook, warnings) = both_pods_on(&h, options.clone()).await;
    let shown = mount_paths(&ours);
    assert!(
        shown.contains(&"/data/projects/OPENDATA/experiments"),
        "{shown:?}"
    );
    assert!(!shown.iter().any(|p| p.contains("CLOSED")), "{shown:?}");
    assert_eq!(
        warnings
            .iter()
            .filter(
                |w| w.contains("project CLOSED") && w.contains("XNAT calls project CLOSED private")
            )
            .count(),
        3,
        "{warnings:?}"
    );
    // Apart from CLOSED (which the hook mounts), the hook's pod.
    let mut hook = hook;
    hook["mounts"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| !k.contains("CLOSED"));
    assert_eq!(ours_less_preset_extras(ours), hook);
    // One question per project, cached.
    assert_eq!(h.xnat.counts().accessibility, 2);
    both_pods_on(&h, options).await;
    assert_eq!(h.xnat.counts().accessibility, 2);

    // A project XNAT does not show the service account is a 404: said as such, not as a missing
    // role or a project that does not exist.
    let options = stored(
        "ALPHA",
        "xdat:stored_search",
        "xs1",
        json!({"mounts": project_mounts("HIDDEN")}),
        json!({}),
    );
    let (_, _, warnings) = both_pods_on(&h, options).await;
    let w = warnings.join("\n");
    assert!(
        w.contains("XNAT does not show the service account project HIDDEN (404: it does not exist, or the account may not read it)"),
        "{w}"
    );
    assert!(!w.contains("role"), "{w}");
}

/// A server the hub starts itself gets each project in the tree a project launch gives, from
/// the project's *current* arc (`DefaultUserOptionsService` mounts `getCurrentArc()`; XNAT's
/// `archive_spec` says it): a project moved to `arc002` is mounted from `arc002`.
#[tokio::test]
async fn the_preset_mounts_a_project_from_its_current_arc() {
    let archive = tempfile::tempdir().unwrap();
    for dir in [
        "ALPHA/arc002",
        "ALPHA/arc001",
        "ALPHA/resources",
        "BETA/arc001",
    ] {
        std::fs::create_dir_all(archive.path().join(dir)).unwrap();
    }
    let policy = site_policy().replace(
        "seenAt: /archive",
        &format!("seenAt: {}", archive.path().display()),
    );
    let h = Harness::start(&policy).await;
    h.xnat.set_current_arc("ALPHA", "arc002");
    let review = chart_review("");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(
        mounts_of(&pod, "archive"),
        [
            (
                "/data/projects/ALPHA/experiments".into(),
                "ALPHA/arc002".into(),
                true
            ),
            (
                "/data/projects/ALPHA/resources".into(),
                "ALPHA/resources".into(),
                true
            ),
            (
                "/data/projects/BETA/experiments".into(),
                "BETA/arc001".into(),
                true
            ),
        ],
        "{:?}",
        warnings(&response)
    );
}
