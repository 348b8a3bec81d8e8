//! The admin tools, run as the real binary: `review` golden outputs on the KubeSpawner fixtures,
//! `check-policy` on good and bad files, and the published JSON Schema being current.
//! `UPDATE_GOLDEN=1 cargo test --test it tools::` rewrites the golden files after a deliberate change.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_jupyter-xnat-webhook");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str], stdin: Option<&Path>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(root())
        .env_remove("RUST_BACKTRACE")
        .env_remove("PODS_REQUESTERS");
    cmd.stdin(match stdin {
        Some(p) => Stdio::from(std::fs::File::open(root().join(p)).unwrap()),
        None => Stdio::null(),
    });
    cmd.output().unwrap()
}

/// Compares `actual` with the golden file, or rewrites it under UPDATE_GOLDEN.
fn golden(name: &str, actual: &str) {
    let path = root().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{name} is missing; run with UPDATE_GOLDEN=1"));
    assert!(
        expected == actual,
        "{name} differs from the output; if the change is intended, run UPDATE_GOLDEN=1 cargo test --test it tools::\n--- got:\n{actual}"
    );
}

const ACCESS: [&str; 4] = [
    "alice=ALPHA,BETA",
    "Bob.Smith@uni.edu.au=GAMMA:collaborator",
    "carol=GPU_LAB:member,ALPHA",
    "erin=BETA:owner",
];

#[test]
fn review_prints_the_response_the_patch_and_the_patched_pod() {
    for fixture in [
        "alice-default",
        "email-username",
        "named-server",
        "with-limits",
    ] {
        let mut args = vec!["review", "--policy", "deploy/base/policy.yaml"];
        for a in ACCESS {
            args.extend(["--access", a]);
        }
        let input = format!("tests/fixtures/kubespawner-7.1/{fixture}.json");
        let out = run(&args, Some(Path::new(&input)));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{fixture}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("# Pod after the patch"), "{fixture}");
        golden(&format!("tests/golden/review-{fixture}.txt"), &stdout);
    }
}

/// A launch from XNAT's UI on NrgXnat's Kubernetes set-up, under its preset, offline: the stored
/// options (`tests/fixtures/launch/`, shaped as tests/launch_fidelity.rs says) for alice's named
/// server on the chart's z2jh pod.
#[test]
fn review_shows_a_launch_context_under_the_nrgxnat_preset() {
    let args = [
        "review",
        "--policy",
        "deploy/presets/nrgxnat-k8s.yaml",
        "--access",
        "alice=ALPHA,BETA",
        "--user-options",
        "tests/fixtures/launch/nrgxnat-project-launch.json",
    ];
    let input = Path::new("tests/fixtures/launch/alice-chart-named-server.json");
    let out = run(&args, Some(input));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    // Offline, the caller is not verified: the token pair is held back, and never printed.
    assert!(!stdout.contains("token-secret-9f"), "{stdout}");
    assert!(stdout.contains("\"subPath\": \"ALPHA/arc001\""), "{stdout}");
    golden("tests/golden/review-nrgxnat-project-launch.txt", &stdout);
}

#[test]
fn review_of_a_pod_it_does_not_touch_says_so() {
    let out = run(
        &["review", "--policy", "deploy/base/policy.yaml"],
        Some(Path::new(
            "tests/fixtures/kubespawner-7.1/alice-default.json",
        )),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    // alice is not in the (empty) access table: unknown to XNAT, workspace only.
    assert!(stdout.contains("XNAT has no user"), "{stdout}");
    assert!(!stdout.contains("/data/projects/"), "{stdout}");
}

/// `review --pods-requesters` sees what a server with the Deployment's `PODS_REQUESTERS` sees:
/// the hub in another namespace is acted on, the policy file's own requester no longer is.
#[test]
fn review_takes_the_requesters_the_deployment_sets() {
    let args = |requesters: &str| {
        let mut args = vec!["review", "--policy", "deploy/base/policy.yaml"];
        args.extend(["--access", "alice=ALPHA", "--pods-requesters", requesters]);
        let out = run(
            &args,
            Some(Path::new(
                "tests/fixtures/kubespawner-7.1/alice-default.json",
            )),
        );
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            out.stderr,
        )
    };
    // The fixture's requester is system:serviceaccount:jupyter:hub.
    let (ok, stdout, _) = args("system:serviceaccount:xnat:hub");
    assert!(ok);
    assert!(
        stdout.contains("not created by an allowed requester"),
        "{stdout}"
    );
    assert!(!stdout.contains("/data/projects/ALPHA"), "{stdout}");
    let (ok, stdout, _) = args("system:serviceaccount:xnat:hub, system:serviceaccount:jupyter:hub");
    assert!(ok);
    assert!(stdout.contains("/data/projects/ALPHA"), "{stdout}");
    let (ok, _, stderr) = args("system:serviceaccount:xnat:hub,");
    assert!(!ok);
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(stderr.contains("`pods.requesters[1]`"), "{stderr}");
}

/// A policy that names another hub than the Deployment's PODS_REQUESTERS says so in the log:
/// the webhook acts for the hub setting, never silently for neither.
#[test]
fn a_policy_naming_another_hub_is_told_it_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    let review = |written: &str| {
        std::fs::write(&policy, format!("pods:\n  requesters: [{written}]\n")).unwrap();
        let out = run(
            &[
                "review",
                "--policy",
                policy.to_str().unwrap(),
                "--access",
                "alice=ALPHA",
                "--pods-requesters",
                "system:serviceaccount:jupyter:hub",
            ],
            Some(Path::new(
                "tests/fixtures/kubespawner-7.1/alice-default.json",
            )),
        );
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = review("system:serviceaccount:other:hub");
    assert!(
        stderr.contains("pods.requesters is replaced")
            && stderr.contains("system:serviceaccount:other:hub"),
        "{stderr}"
    );
    let stderr = review("system:serviceaccount:jupyter:hub");
    assert!(!stderr.contains("is replaced"), "the same hub: {stderr}");
}

/// `--version` names the Cargo version and the commit built.
#[test]
fn version_names_the_release_and_the_commit() {
    let out = run(&["--version"], None);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "jupyter-xnat-webhook {} (commit ",
        env!("CARGO_PKG_VERSION")
    );
    assert!(stdout.starts_with(&expected), "{stdout}");
    assert!(stdout.trim_end().ends_with(')'), "{stdout}");
}

#[test]
fn every_preset_passes_check_policy_and_means_itself() {
    let presets = std::fs::read_dir("deploy/presets").unwrap();
    let mut seen = 0;
    for entry in presets {
        let path = entry.unwrap().path();
        let out = run(&["check-policy", path.to_str().unwrap()], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", path.display());
        let effective = String::from_utf8(out.stdout).unwrap();
        let again = jupyter_xnat_webhook::tools::check_policy(&effective).unwrap();
        assert_eq!(again, effective, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 1);
}

#[test]
fn check_policy_prints_effective_values_or_names_the_field() {
    let out = run(&["check-policy", "deploy/base/policy.yaml"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective = String::from_utf8(out.stdout).unwrap();
    // Defaults appear even where the file says nothing.
    assert!(effective.contains("negativeCacheTtl: 10s"), "{effective}");
    // No project cap unless a site sets one.
    assert!(!effective.contains("maxProjectMounts"), "{effective}");
    assert!(effective.contains("rules: []"), "{effective}");
    // The printed values are themselves a valid policy that means the same.
    let again = jupyter_xnat_webhook::tools::check_policy(&effective).unwrap();
    assert_eq!(again, effective);

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "storage:\n  projects: {subPath: 'a/{proj}', mountPath: '/p/{project}'}\n",
    )
    .unwrap();
    let out = run(&["check-policy", bad.to_str().unwrap()], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("storage.projects.subPath"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one readable line: {stderr}");
}

#[test]
fn the_published_json_schema_is_current() {
    let out = run(&["policy-schema"], None);
    assert!(out.status.success());
    let schema = String::from_utf8(out.stdout).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&schema).unwrap();
    assert_eq!(parsed["title"], "PolicyFile");
    for key in [
        "pods",
        "identity",
        "xnat",
        "storage",
        "env",
        "resources",
        "userOptions",
        "rules",
        "mode",
    ] {
        assert!(
            parsed["properties"].get(key).is_some(),
            "schema lacks {key}"
        );
    }
    golden("deploy/base/policy.schema.json", &schema);
}

#[test]
fn serve_with_a_bad_start_says_why_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    for (args, needle) in [
        (
            vec![
                "serve",
                "--metrics-listen",
                "off",
                "--policy",
                missing.to_str().unwrap(),
            ],
            "nope.yaml",
        ),
        (
            vec![
                "serve",
                "--metrics-listen",
                "127.0.0.1:0",
                "--policy",
                missing.to_str().unwrap(),
            ],
            "nope.yaml",
        ),
        (vec!["serve", "--metrics-listen", "nowhere"], "nowhere"),
    ] {
        let out = run(&args, None);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains(needle) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn review_redacts_launch_context_env_and_secret_looking_names() {
    let xnat = xnat_standin::Standin::demo("svc", "pw");
    xnat.set_user_options(
        "alice",
        "",
        serde_json::json!({"task_template": {"container_spec": {
            "env": {"PLAIN": "plain-value-9", "XNAT_ALIAS": "alias-123"}, "mounts": []
        }}}),
    );
    let (url, _task) = xnat
        .spawn("127.0.0.1:0".parse().unwrap(), "/xnat")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (policy, creds, input) = (
        dir.path().join("policy.yaml"),
        dir.path().join("creds"),
        dir.path().join("review.json"),
    );
    std::fs::write(&policy, "userOptions:\n  enabled: true\n").unwrap();
    std::fs::write(&creds, "svc:pw\n").unwrap();
    // The hub's own env may carry secrets too.
    let mut review: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/kubespawner-7.1/alice-default.json")).unwrap(),
    )
    .unwrap();
    review["request"]["object"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "MY_API_KEY", "value": "key-456"}));
    std::fs::write(&input, serde_json::to_vec(&review).unwrap()).unwrap();
    let args: Vec<String> = [
        "review",
        "--policy",
        policy.to_str().unwrap(),
        "--xnat-url",
        &url,
        "--xnat-credentials",
        creds.to_str().unwrap(),
    ]
    .map(String::from)
    .into();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, Some(&input))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("\"PLAIN\"") && stdout.contains("<redacted>"),
        "{stdout}"
    );
    for secret in ["plain-value-9", "alias-123", "key-456"] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
    }
}
