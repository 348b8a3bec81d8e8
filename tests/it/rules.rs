//! Rules beyond the defaults: per-project/per-role rules and their precedence, the deny list, the
//! mount cap, the namespace allow list and audit mode. Policy logic runs in process through the
//! server's admission code; what needs XNAT's call counts or faults runs over TLS.

use crate::common::*;
use serde_json::json;

const RULES: &str = r#"
rules:
  - name: everyone
    match: {projects: ["*"]}
    env: {SITE: uni, TIER: base}
    resources: {limits: {memory: 16Gi}}
  - name: gpu-lab
    match: {projects: [GPU_LAB], roles: [owner, member]}
    env: {TIER: gpu, CUDA_CACHE_PATH: /data/xnat/workspace/.cuda}
    mounts:
      - {subPath: datasets/imagenet, mountPath: /data/imagenet}
    resources:
      requests: {memory: 8Gi}
      limits: {memory: 32Gi, nvidia.com/gpu: 1}
  - name: gpu-lab-owners
    match: {projects: [GPU_LAB], roles: [owner]}
    env: {TIER: gpu-owner}
"#;

#[tokio::test]
async fn matching_rules_apply_in_order_and_later_rules_win() {
    let h = InProcess::demo(RULES, &[("dave", &["GPU_LAB_owner"])]);
    // carol is a GPU_LAB member (not owner): "everyone" then "gpu-lab".
    let review = fixture("named-server");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(env_of(&pod, "SITE").as_deref(), Some("uni"));
    assert_eq!(
        env_of(&pod, "TIER").as_deref(),
        Some("gpu"),
        "gpu-lab comes after everyone"
    );
    assert_eq!(
        env_of(&pod, "CUDA_CACHE_PATH").as_deref(),
        Some("/data/xnat/workspace/.cuda")
    );
    let nb = notebook(&pod);
    assert_eq!(nb["resources"]["limits"]["memory"], "32Gi");
    assert_eq!(nb["resources"]["limits"]["nvidia.com/gpu"], "1");
    // The pod's own memory request (1Gi from the hub) wins in fillUnset mode.
    assert_eq!(nb["resources"]["requests"]["memory"], "1073741824");
    assert!(mounts_of(&pod, "xnat-data").contains(&(
        "/data/imagenet".into(),
        "datasets/imagenet".into(),
        true
    )));

    // alice holds no GPU_LAB role: only "everyone".
    let review = review_for("alice");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(env_of(&pod, "TIER").as_deref(), Some("base"));
    assert_eq!(notebook(&pod)["resources"]["limits"]["memory"], "16Gi");
    assert!(
        notebook(&pod)["resources"]["limits"]
            .get("nvidia.com/gpu")
            .is_none()
    );

    // An owner of GPU_LAB matches all three; the last one's TIER wins.
    let review = review_for("dave");
    let response = h.review(&review).await;
    assert_eq!(
        env_of(&patched_pod(&review, &response), "TIER").as_deref(),
        Some("gpu-owner")
    );
}

#[tokio::test]
async fn never_mounted_projects_and_the_cap_are_named_in_warnings() {
    let policy = "storage:\n  neverMount: [CLINICAL*, SECRET]\n  maxProjectMounts: 2\n";
    let h = InProcess::demo(
        policy,
        &[(
            "alice",
            &[
                "CLINICAL_01_owner",
                "SECRET_member",
                "A_member",
                "B_member",
                "C_member",
                "D_member",
            ],
        )],
    );
    let review = review_for("alice");
    let response = h.review(&review).await;
    let paths = project_paths(&review, &response);
    assert_eq!(
        paths,
        [
            "/data/projects/A",
            "/data/projects/B",
            "/data/xnat/workspace"
        ]
    );
    let w = warnings(&response);
    assert!(
        w.iter()
            .any(|w| w.contains("not mounted by site policy: CLINICAL_01, SECRET")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("at most 2 projects") && w.contains("C, D")),
        "{w:?}"
    );
}

#[tokio::test]
async fn only_allowed_namespaces_get_data() {
    let h = Harness::start("pods:\n  namespaces: [jupyter-teaching]\n").await;
    let review = fixture("alice-default"); // namespace "jupyter"
    let response = h.review(&review).await;
    assert_eq!(decoded_patch(&response), None);
    assert_eq!(h.xnat.counts().groups, 0);

    let mut review = fixture("alice-default");
    review["request"]["namespace"] = json!("jupyter-teaching");
    let response = h.review(&review).await;
    assert_eq!(
        mounts_of(&patched_pod(&review, &response), "xnat-data").len(),
        3
    );
}

#[tokio::test]
async fn audit_mode_says_what_it_would_do_and_changes_nothing() {
    let h = InProcess::demo("mode: audit\n", &[]);
    let review = review_for("alice");
    let response = h.review(&review).await;
    let r = &response["response"];
    assert_eq!(r["allowed"], true);
    assert_eq!(decoded_patch(&response), None, "audit mode never patches");
    assert_eq!(r["auditAnnotations"]["would-mount"], "ALPHA,BETA");
    assert_eq!(r["auditAnnotations"]["would-patch-operations"], "9");
    let w = warnings(&response);
    assert!(
        w.iter()
            .any(|w| w.contains("audit mode") && w.contains("ALPHA, BETA")),
        "{w:?}"
    );

    // A denial in audit mode is only reported.
    let h = Harness::builder()
        .policy("mode: audit\nxnat:\n  onError: deny\n  retries: 0\n")
        .xnat_fault(xnat_standin::Fault::Status(503))
        .start()
        .await;
    let response = h.review(&review).await;
    assert_eq!(response["response"]["allowed"], true);
    assert!(response["response"]["auditAnnotations"]["would-deny"].is_string());
}
