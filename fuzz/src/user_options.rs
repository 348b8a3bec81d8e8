//! Any bytes as the launch context XNAT's JupyterHub plugin stores
//! (`GET /xapi/jupyterhub/users/{user}/server/user-options`), decided for alice's pod under one
//! of four policies (the first byte picks it). Whatever the plugin stored: the patch applies, a
//! second pass adds nothing, every project mount is read-only, nothing lies below a directory
//! notebooks can write, nothing from the archive beyond alice's grant unless the policy trusts
//! the plugin, and no secret-named variable unless the policy passes secrets on.

use std::sync::{Arc, LazyLock};

use jupyter_xnat_webhook::Confirmed;
use jupyter_xnat_webhook::may_be_secret_name;
use jupyter_xnat_webhook::mutation::{Context, Decision, Identity, decide, prepare};
use jupyter_xnat_webhook::policy::{Policy, SecretsPolicy};
use jupyter_xnat_webhook::{AccessOutcome, UserAccess};
use jupyter_xnat_webhook::{Launch, UserOptions};
use jupyter_xnat_webhook::{PodMeta, PodView};
use serde_json::{Value, json};

const GRANTED: &[&str] = &["ALPHA", "BETA"];

struct Setup {
    policies: Vec<Policy>,
    access: AccessOutcome,
    spec: Value,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let policy = |trust: bool, secrets: &str, workspace: &str| {
        Policy::parse(&format!(
            "userOptions: {{enabled: true, trustPlugin: {trust}, secrets: {secrets}}}\n\
             storage: {{{workspace}neverMount: [BETA]}}\n\
             resources: {{mode: override, requests: {{cpu: '0.7'}}, limits: {{cpu: 2}}}}\n"
        ))
        .expect("the fuzz policies are valid")
    };
    let review: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/kubespawner-7.1/alice-default.json"
    ))
    .unwrap();
    Setup {
        policies: vec![
            policy(false, "verifiedCaller", ""),
            policy(true, "pass", ""),
            policy(true, "drop", "workspace: null, "),
            policy(false, "pass", "workspace: null, "),
        ],
        access: AccessOutcome::Known(Arc::new(UserAccess::from_group_ids(&[
            "ALPHA_owner",
            "BETA_member",
            "GAMMA_custom",
        ]))),
        spec: review["request"]["object"]["spec"].clone(),
    }
});

fn run(policy: &Policy, launch: &UserOptions, spec: &Value) -> Decision {
    let setup = &*SETUP;
    let cx = Context {
        who: Identity {
            jupyter_user: "alice",
            server_name: "",
            xnat_user: "alice",
        },
        access: &setup.access,
        launch: Launch::Stored(launch),
        xnat_url: "http://xnat/xnat",
        caller_verified: false,
    };
    let raw = serde_json::value::to_raw_value(spec).unwrap();
    let meta: PodMeta = serde_json::from_str("{}").unwrap();
    decide(
        &PodView::new(&meta, Some(&raw)).unwrap(),
        prepare(&cx, policy),
        &Confirmed::NONE,
        policy,
    )
}

fn patched(spec: &Value, decision: &Decision) -> Option<Value> {
    let Decision::Allow { patch, .. } = decision else {
        return None;
    };
    let mut pod = json!({ "spec": spec });
    if let Err(e) = json_patch::patch(&mut pod, patch) {
        panic!("the patch does not apply: {e}\n{patch:?}");
    }
    Some(pod["spec"].take())
}

fn added<'a>(before: &'a Value, after: &'a Value, key: &str) -> Vec<&'a Value> {
    let old = before["containers"][0][key].as_array();
    after["containers"][0][key]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| !old.is_some_and(|o| o.contains(v)))
        .collect()
}

/// Panics when the input breaks a promise.
pub fn check(bytes: &[u8]) {
    let Some((&pick, json)) = bytes.split_first() else {
        return;
    };
    let Ok(launch) = serde_json::from_slice::<UserOptions>(json) else {
        return; // the webhook logs it and falls back to the project list
    };
    let setup = &*SETUP;
    let policy = &setup.policies[usize::from(pick) % setup.policies.len()];
    let Some(after) = patched(&setup.spec, &run(policy, &launch, &setup.spec)) else {
        return;
    };

    if let Some(again) = patched(&after, &run(policy, &launch, &after)) {
        assert_eq!(again, after, "a second pass changed the pod");
    }
    for mount in added(&setup.spec, &after, "volumeMounts") {
        if mount["name"] != "xnat-data" {
            continue;
        }
        let sub_path = mount["subPath"].as_str().unwrap_or_default();
        assert!(
            policy.writable.below("xnat-data", sub_path).is_none(),
            "{sub_path} lies below a writable directory"
        );
        if let Some(rest) = sub_path.strip_prefix("archive/") {
            let project = rest.split('/').next().unwrap_or_default();
            assert_eq!(
                mount["readOnly"], true,
                "project mount {sub_path} is writable"
            );
            assert!(
                !policy.storage.is_never_mounted(project),
                "{sub_path} is never mounted"
            );
            assert!(
                policy.user_options.trust_plugin || GRANTED.contains(&project),
                "{sub_path} is not alice's"
            );
        }
    }
    for var in added(&setup.spec, &after, "env") {
        let name = var["name"].as_str().unwrap_or_default();
        assert!(
            !may_be_secret_name(name) || policy.user_options.secrets == SecretsPolicy::Pass,
            "{name} passed on under secrets: {:?}",
            policy.user_options.secrets
        );
    }
}
