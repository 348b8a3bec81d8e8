//! The webhook end to end: real TLS on loopback, the XNAT stand-in over real HTTP, reviews built
//! around the pods stock KubeSpawner 7.1 produces. Assertions are on the patched pod and on the
//! stand-in's call counts.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

/// The default policy (an empty document) apart from what a test adds.
const DEFAULT_POLICY: &str = "";

#[tokio::test]
async fn alice_gets_exactly_her_projects_workspace_env_and_limits() {
    let h = Harness::start(DEFAULT_POLICY).await;
    let review = fixture("alice-default");
    let response = h.review(&review).await;

    // The raw response, read as JSON rather than through the webhook's own types.
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(response["kind"], "AdmissionReview");
    assert_eq!(response["response"]["uid"], review["request"]["uid"]);
    assert_eq!(response["response"]["allowed"], true);
    assert_eq!(response["response"]["patchType"], "JSONPatch");
    assert!(response["response"]["patch"].is_string());
    assert!(warnings(&response).is_empty(), "{:?}", warnings(&response));

    // The whole pod after the patch: the original plus exactly our additions, nothing else.
    let mut expected = pod_of(&review);
    expected["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "xnat-data", "persistentVolumeClaim": {"claimName": "xnat-gpfs"}}));
    let nb = &mut expected["spec"]["containers"][0];
    let mounts = nb["volumeMounts"].as_array_mut().unwrap();
    mounts.push(json!({"name": "xnat-data", "mountPath": "/data/projects/ALPHA", "subPath": "archive/ALPHA", "readOnly": true}));
    mounts.push(json!({"name": "xnat-data", "mountPath": "/data/projects/BETA", "subPath": "archive/BETA", "readOnly": true}));
    mounts.push(json!({"name": "xnat-data", "mountPath": "/data/xnat/workspace", "subPath": "workspaces/users/alice", "readOnly": false}));
    let env = nb["env"].as_array_mut().unwrap();
    env.push(json!({"name": "XNAT_HOST", "value": h.xnat_url}));
    env.push(json!({"name": "XNAT_PROJECTS", "value": "ALPHA,BETA"}));
    env.push(json!({"name": "XNAT_USER", "value": "alice"}));
    nb["resources"] = json!({
        "requests": {"memory": "1073741824", "cpu": "500m"},
        "limits": {"cpu": "4", "memory": "8Gi"},
    });
    // And what the webhook did, for `kubectl get pod -o jsonpath` (README: What the user sees).
    let version = h.readyz().await["policy"]["version"].clone();
    let status = json!({"policy": version, "mode": "projects", "projectCount": 2,
                        "projects": ["ALPHA", "BETA"], "xnat": {"user": "alice", "answer": "asked"}});
    let mut pod = patched_pod(&review, &response);
    let annotations = pod["metadata"]["annotations"].as_object_mut().unwrap();
    let annotation = annotations.remove("jupyter-xnat-webhook/status").unwrap();
    let annotation: Value = serde_json::from_str(annotation.as_str().unwrap()).unwrap();
    assert_eq!(annotation, status);
    assert_eq!(pod, expected);

    assert_eq!(h.xnat.lookups_for("alice"), 1);
    assert_eq!(h.xnat.counts().auth_failures, 0);
}

#[tokio::test]
async fn a_second_pass_over_the_patched_pod_changes_nothing() {
    let h = Harness::start(DEFAULT_POLICY).await;
    for name in [
        "alice-default",
        "email-username",
        "named-server",
        "with-limits",
    ] {
        let mut review = fixture(name);
        let first = h.review(&review).await;
        assert!(
            decoded_patch(&first).is_some(),
            "{name}: first pass should mutate"
        );
        review["request"]["object"] = patched_pod(&review, &first);
        let second = h.review(&review).await;
        assert_eq!(second["response"]["allowed"], true);
        assert_eq!(
            decoded_patch(&second),
            None,
            "{name}: second pass must be a no-op"
        );
        assert!(
            warnings(&second).is_empty(),
            "{name}: {:?}",
            warnings(&second)
        );
    }
}

#[tokio::test]
async fn email_username_comes_from_the_annotation_not_the_slugged_name() {
    let h = Harness::start(DEFAULT_POLICY).await;
    let review = fixture("email-username");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(
        mounts_of(&pod, "xnat-data"),
        [
            ("/data/projects/GAMMA".into(), "archive/GAMMA".into(), true),
            (
                "/data/xnat/workspace".into(),
                "workspaces/users/Bob.Smith@uni.edu.au".into(),
                false
            ),
        ]
    );
    assert_eq!(
        env_of(&pod, "XNAT_USER").as_deref(),
        Some("Bob.Smith@uni.edu.au")
    );
    assert_eq!(h.xnat.lookups_for("Bob.Smith@uni.edu.au"), 1);
    assert_eq!(h.xnat.lookups_for("bob-smith-uni-edu-au---4d2a158f"), 0);
}

#[tokio::test]
async fn username_mapping_asks_xnat_for_the_mapped_name() {
    let policy =
        "identity:\n  mapping:\n    - lowercase\n    - stripDomain: {domains: [uni.edu.au]}\n";
    let h = Harness::start(policy).await;
    h.xnat.set_user("bob.smith", &["DELTA_member"]);
    let review = fixture("email-username");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(
        mounts_of(&pod, "xnat-data"),
        [
            ("/data/projects/DELTA".into(), "archive/DELTA".into(), true),
            (
                "/data/xnat/workspace".into(),
                "workspaces/users/bob.smith".into(),
                false
            ),
        ]
    );
    assert_eq!(env_of(&pod, "XNAT_USER").as_deref(), Some("bob.smith"));
    assert_eq!(h.xnat.lookups_for("bob.smith"), 1);
    assert_eq!(h.xnat.lookups_for("Bob.Smith@uni.edu.au"), 0);
}

#[tokio::test]
async fn named_server_gets_its_users_projects() {
    let h = Harness::start(DEFAULT_POLICY).await;
    let review = fixture("named-server");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    let paths: Vec<String> = mounts_of(&pod, "xnat-data")
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(
        paths,
        [
            "/data/projects/ALPHA",
            "/data/projects/GPU_LAB",
            "/data/xnat/workspace"
        ]
    );
}

#[tokio::test]
async fn the_hubs_own_limits_win_by_default() {
    let h = Harness::start(DEFAULT_POLICY).await;
    let review = fixture("with-limits");
    let before = notebook(&pod_of(&review))["resources"].clone();
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(notebook(&pod)["resources"], before);
    // …and the patch does not touch resources at all.
    let patch = decoded_patch(&response).unwrap();
    assert!(
        patch
            .as_array()
            .unwrap()
            .iter()
            .all(|op| !op["path"].as_str().unwrap().contains("resources")),
        "{patch}"
    );
}

#[tokio::test]
async fn override_mode_replaces_the_hubs_limits() {
    let policy = "resources:\n  mode: override\n  limits: {cpu: 3, memory: 6Gi}\n  requests: {cpu: 1, memory: 2Gi}\n";
    let h = Harness::start(policy).await;
    let review = fixture("with-limits");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(
        notebook(&pod)["resources"],
        json!({"limits": {"cpu": "3", "memory": "6Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}})
    );
}

#[tokio::test]
async fn a_default_limit_never_falls_below_the_pods_own_request() {
    let h = Harness::start(DEFAULT_POLICY).await;
    let mut review = fixture("alice-default");
    review["request"]["object"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"memory": "17179869184"}});
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    // 16Gi requested; the default 8Gi limit would make the pod invalid, so the limit is 16Gi.
    assert_eq!(
        notebook(&pod)["resources"],
        json!({"requests": {"memory": "17179869184", "cpu": "500m"}, "limits": {"cpu": "4", "memory": "17179869184"}})
    );
}

#[tokio::test]
async fn a_pod_from_anyone_but_the_hub_gets_nothing() {
    let h = Harness::start(DEFAULT_POLICY).await;
    let mut review = fixture("alice-default");
    review["request"]["userInfo"]["username"] = json!("system:serviceaccount:jupyter:intruder");
    let response = h.review(&review).await;
    assert_eq!(response["response"]["allowed"], true);
    assert_eq!(decoded_patch(&response), None);
    assert!(warnings(&response)[0].contains("not created by an allowed requester"));
    assert_eq!(h.xnat.counts().groups, 0, "XNAT must not even be asked");
}

/// `--pods-requesters` (the Deployment's `PODS_REQUESTERS`, from the hub's namespace) replaces
/// the policy's `pods.requesters`: a hub in another namespace is acted on only when it is given.
#[tokio::test]
async fn the_requesters_the_deployment_sets_replace_the_policys() {
    const XNAT_HUB: &str = "system:serviceaccount:xnat:hub";
    let mut review = fixture("alice-default");
    review["request"]["userInfo"]["username"] = json!(XNAT_HUB);
    let skipped = |response: &Value| {
        decoded_patch(response).is_none()
            && warnings(response)
                .iter()
                .any(|w| w.contains("not created by an allowed requester"))
    };

    let without = Harness::start(DEFAULT_POLICY).await;
    assert!(skipped(&without.review(&review).await));
    without.stop().await;

    let policy = "pods:\n  requesters: [system:serviceaccount:jupyter:hub]\n";
    let h = Harness::builder()
        .policy(policy)
        .pods_requesters(&[XNAT_HUB])
        .start()
        .await;
    let response = h.review(&review).await;
    assert!(!skipped(&response), "{response}");
    assert_eq!(
        project_paths(&review, &response),
        [
            "/data/projects/ALPHA",
            "/data/projects/BETA",
            "/data/xnat/workspace"
        ]
    );
    // The policy file's own requester is replaced, not added to.
    let response = h.review(&fixture("alice-default")).await;
    assert!(skipped(&response), "{response}");
}

#[tokio::test]
async fn everything_that_is_not_a_notebook_pod_create_passes_unchanged() {
    let h = Harness::start(DEFAULT_POLICY).await;
    let base = fixture("alice-default");
    let mut cases: Vec<(&str, Value)> = Vec::new();

    let mut update = base.clone();
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] = base["request"]["object"].clone();
    cases.push(("UPDATE", update));

    let mut other_label = base.clone();
    other_label["request"]["object"]["metadata"]["labels"]["component"] = json!("hub");
    cases.push(("label", other_label));

    let mut other_name = base.clone();
    other_name["request"]["object"]["metadata"]["name"] = json!("hub-5f7d9c");
    cases.push(("name", other_name));

    let mut not_pod = base.clone();
    not_pod["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    not_pod["request"]["object"] = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "jupyter-x", "labels": {"component": "singleuser-server"}}, "data": {}});
    cases.push(("ConfigMap", not_pod));

    let mut binding = base.clone();
    binding["request"]["subResource"] = json!("binding");
    cases.push(("subresource", binding));

    for (what, review) in cases {
        let response = h.review(&review).await;
        assert_eq!(response["response"]["allowed"], true, "{what}");
        assert_eq!(
            response["response"]["uid"], review["request"]["uid"],
            "{what}"
        );
        assert_eq!(decoded_patch(&response), None, "{what}");
        assert!(warnings(&response).is_empty(), "{what}");
    }
    assert_eq!(h.xnat.counts().groups, 0);
}

#[tokio::test]
async fn a_notebook_pod_without_the_annotation_passes_with_a_warning() {
    let h = Harness::start(DEFAULT_POLICY).await;
    let mut review = fixture("alice-default");
    review["request"]["object"]["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("hub.jupyter.org/username");
    let response = h.review(&review).await;
    assert_eq!(response["response"]["allowed"], true);
    assert_eq!(decoded_patch(&response), None);
    assert!(warnings(&response)[0].contains("hub.jupyter.org/username"));
    assert_eq!(h.xnat.counts().groups, 0);
}

#[tokio::test]
async fn project_ids_xnat_should_never_have_sent_are_not_mounted() {
    let h = Harness::start(DEFAULT_POLICY).await;
    h.xnat.set_user(
        "alice",
        &[
            "../etc_owner",
            "ALPHA_owner",
            "a b_member",
            "x/y_member",
            "ALL_DATA_ACCESS",
            "BETA^_member",
        ],
    );
    let review = fixture("alice-default");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(
        mounts_of(&pod, "xnat-data"),
        [
            ("/data/projects/ALPHA".into(), "archive/ALPHA".into(), true),
            (
                "/data/xnat/workspace".into(),
                "workspaces/users/alice".into(),
                false
            ),
        ]
    );
}

#[tokio::test]
async fn roles_not_granted_by_policy_are_not_mounted() {
    let h = Harness::start("xnat:\n  roles: [owner]\n").await;
    let review = fixture("alice-default");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    let paths: Vec<String> = mounts_of(&pod, "xnat-data")
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(paths, ["/data/projects/ALPHA", "/data/xnat/workspace"]);
    assert_eq!(env_of(&pod, "XNAT_PROJECTS").as_deref(), Some("ALPHA"));
}

#[tokio::test]
async fn a_jupyter_username_unsafe_for_a_path_gets_no_workspace() {
    let policy = "identity:\n  mapping:\n    - regex: {pattern: '(\\w+) smith', replacement: '$1'}\nstorage:\n  workspace:\n    subPath: 'workspaces/{jupyter_user}'\n    mountPath: /data/xnat/workspace\n";
    let h = Harness::start(policy).await;
    let mut review = fixture("alice-default");
    review["request"]["object"]["metadata"]["annotations"]["hub.jupyter.org/username"] =
        json!("alice smith");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(
        mounts_of(&pod, "xnat-data"),
        [
            ("/data/projects/ALPHA".into(), "archive/ALPHA".into(), true),
            ("/data/projects/BETA".into(), "archive/BETA".into(), true),
        ]
    );
    assert!(
        warnings(&response)
            .iter()
            .any(|w| w.contains("not a safe path segment"))
    );
}

#[tokio::test]
async fn a_username_that_could_bend_the_xnat_url_gets_nothing() {
    let h = Harness::start(DEFAULT_POLICY).await;
    // Tomcat would read `;x` as a path parameter and answer with alice's groups.
    for name in ["alice;x", "alice smith", "alice/../bob", "alice%2F"] {
        let mut review = fixture("alice-default");
        review["request"]["object"]["metadata"]["annotations"]["hub.jupyter.org/username"] =
            json!(name);
        let response = h.review(&review).await;
        assert_eq!(decoded_patch(&response), None, "{name}");
        assert!(
            warnings(&response)[0].contains("no XNAT data attached"),
            "{name}"
        );
    }
    assert_eq!(h.xnat.counts().groups, 0);
}

#[tokio::test]
async fn dot_dot_is_never_a_username() {
    let h = Harness::start(DEFAULT_POLICY).await;
    let mut review = fixture("alice-default");
    review["request"]["object"]["metadata"]["annotations"]["hub.jupyter.org/username"] =
        json!("..");
    let response = h.review(&review).await;
    assert_eq!(decoded_patch(&response), None);
    assert!(warnings(&response)[0].contains("not a usable username"));
    assert_eq!(h.xnat.counts().groups, 0);
}

#[tokio::test]
async fn a_user_xnat_does_not_know_gets_a_workspace_and_a_warning() {
    let h = Harness::start(DEFAULT_POLICY).await;
    let mut review = fixture("alice-default");
    review["request"]["object"]["metadata"]["annotations"]["hub.jupyter.org/username"] =
        json!("zoe");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(
        mounts_of(&pod, "xnat-data"),
        [(
            "/data/xnat/workspace".into(),
            "workspaces/users/zoe".into(),
            false
        )]
    );
    assert!(warnings(&response)[0].contains("XNAT has no user"));
}

#[tokio::test]
async fn conflicting_names_in_the_pod_are_left_alone() {
    let h = Harness::start(DEFAULT_POLICY).await;

    // A volume named like ours but not our claim: no data mounts at all, env still added.
    let mut review = fixture("alice-default");
    review["request"]["object"]["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "xnat-data", "emptyDir": {}}));
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert!(mounts_of(&pod, "xnat-data").is_empty());
    assert_eq!(
        pod["spec"]["volumes"],
        review["request"]["object"]["spec"]["volumes"]
    );
    assert_eq!(env_of(&pod, "XNAT_PROJECTS").as_deref(), Some(""));
    assert!(warnings(&response)[0].contains("not claim"));

    // An env var the hub already sets keeps its value; a mount already at our path stays.
    let mut review = fixture("alice-default");
    let nb = &mut review["request"]["object"]["spec"]["containers"][0];
    nb["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "XNAT_USER", "value": "hub-set"}));
    nb["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "volume-alice", "mountPath": "/data/xnat/workspace"}));
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(env_of(&pod, "XNAT_USER").as_deref(), Some("hub-set"));
    let paths: Vec<String> = mounts_of(&pod, "xnat-data")
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(paths, ["/data/projects/ALPHA", "/data/projects/BETA"]);
    let w = warnings(&response);
    assert!(w.iter().any(|w| w.contains("XNAT_USER")), "{w:?}");
    assert!(
        w.iter().any(|w| w.contains("/data/xnat/workspace")),
        "{w:?}"
    );
}

#[tokio::test]
async fn concurrent_reviews_for_one_user_share_one_xnat_request() {
    let h = Harness::start(DEFAULT_POLICY).await;
    h.xnat.set_latency(Duration::from_millis(300));
    let review = fixture("alice-default");
    let burst = (0..40).map(|_| h.review(&review));
    let responses = futures::future::join_all(burst).await;
    for r in &responses {
        let pod = patched_pod(&review, r);
        assert_eq!(mounts_of(&pod, "xnat-data").len(), 3);
    }
    assert_eq!(h.xnat.lookups_for("alice"), 1);
    // Inside the TTL, a second burst costs XNAT nothing.
    let again = futures::future::join_all((0..10).map(|_| h.review(&review))).await;
    assert_eq!(again.len(), 10);
    assert_eq!(h.xnat.counts().groups, 1);
}

#[tokio::test]
async fn a_spec_it_cannot_read_is_left_alone_but_still_follows_the_outage_mode() {
    let mut review = fixture("alice-default");
    review["request"]["object"]["spec"]["containers"] = json!("not a list");
    let h = Harness::start(DEFAULT_POLICY).await;
    let response = h.review(&review).await;
    assert_eq!(response["response"]["allowed"], true);
    assert_eq!(decoded_patch(&response), None);
    assert!(
        warnings(&response)
            .iter()
            .any(|w| w.contains("pod spec not understood")),
        "{:?}",
        warnings(&response)
    );
    // XNAT is asked as for any notebook pod of the hub, so `onError: deny` still denies.
    assert_eq!(h.xnat.lookups_for("alice"), 1);
    let h = Harness::builder()
        .policy("xnat:\n  onError: deny\n  retries: 0\n")
        .xnat_fault(xnat_standin::Fault::Status(503))
        .start()
        .await;
    let response = h.review(&review).await;
    assert_eq!(response["response"]["allowed"], false);
}
