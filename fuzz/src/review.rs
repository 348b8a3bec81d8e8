//! Any bytes as an AdmissionReview body, through the same `Admission::review` the server runs
//! (access from a fixed table, the demo site's users). A body that is a review gets an answer
//! that is a response review for the same `uid`, and any patch in it applies to the object the
//! review sent.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use base64::Engine;
use jupyter_xnat_webhook::UserAccess;
use jupyter_xnat_webhook::admission::{AccessSource, Admission, Caller};
use jupyter_xnat_webhook::policy::Policy;
use serde_json::Value;

/// Rules, a template per placeholder and a workspace: every part of the decision has work to do.
const POLICY: &str = r#"
identity:
  mapping: [lowercase, {stripDomain: {domains: [uni.edu.au]}}]
storage:
  neverMount: [SECRET*]
  maxProjectMounts: 3
env:
  XNAT_HOST: "{xnat_url}"
  XNAT_USER: "{xnat_user}"
  XNAT_PROJECTS: "{projects}"
  HOME_SERVER: "{jupyter_user}/{server_name}"
rules:
  - name: gpu
    match: {projects: [GPU_LAB]}
    mounts:
      - {subPath: datasets/imagenet, mountPath: /data/imagenet}
    resources: {limits: {nvidia.com/gpu: 1}}
  - name: everyone
    match: {projects: ['*']}
    env: {SITE: uni}
"#;

const USERS: &[(&str, &[&str])] = &[
    (
        "alice",
        &[
            "ALPHA_owner",
            "BETA_member",
            "ALL_DATA_ACCESS",
            "SECRET_1_owner",
        ],
    ),
    ("bob.smith", &["GAMMA_collaborator", "../x_owner"]),
    ("carol", &["GPU_LAB_member", "ALPHA_collaborator"]),
    (
        "erin",
        &["BETA_owner", "A_B_C_member", "X-1_owner", "Y_custom"],
    ),
];

static WEBHOOK: LazyLock<(tokio::runtime::Runtime, Admission)> = LazyLock::new(|| {
    let table: HashMap<String, Arc<UserAccess>> = USERS
        .iter()
        .map(|(user, groups)| {
            (
                (*user).to_owned(),
                Arc::new(UserAccess::from_group_ids(groups)),
            )
        })
        .collect();
    let policy = Policy::parse(POLICY).expect("the fuzz policy is valid");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admission = Admission::new(policy, AccessSource::Static(Arc::new(table), None), None);
    (runtime, admission)
});

/// Panics when the input breaks a promise.
pub fn check(body: &[u8]) {
    let (runtime, admission) = &*WEBHOOK;
    let Ok(answer) = runtime.block_on(admission.review(body, &Caller::offline())) else {
        return; // not a review: the server answers 400 with the parser's message
    };
    let answer: Value = serde_json::from_slice(&answer).expect("the answer is JSON");
    let review: Value = serde_json::from_slice(body).expect("a body answered as a review is JSON");
    let response = &answer["response"];
    assert_eq!(
        response["uid"], review["request"]["uid"],
        "the answer is for another review"
    );
    assert!(response["allowed"].is_boolean(), "{response}");
    let Some(encoded) = response["patch"].as_str() else {
        return;
    };
    let patch = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("the patch is base64");
    let patch: json_patch::Patch =
        serde_json::from_slice(&patch).expect("the patch is a JSON Patch");
    let mut pod = review["request"]["object"].clone();
    if let Err(e) = json_patch::patch(&mut pod, &patch) {
        panic!("the patch does not apply to the review's object: {e}\n{patch:?}");
    }
}
