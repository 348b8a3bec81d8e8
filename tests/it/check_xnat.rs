//! `check-xnat`, run as the real binary against the XNAT stand-in with the accounts sites really
//! use: a site Administrator, the plugin's `jupyterhub` account (JupyterHub role only, as the
//! chart creates it), an account with no role, and a wrong password.

use std::path::PathBuf;
use std::process::Command;

use xnat_standin::{ADMINISTRATOR, Fault, JUPYTERHUB, Standin};

const BIN: &str = env!("CARGO_BIN_EXE_jupyter-xnat-webhook");

/// Runs `check-xnat` for `account` (whose password at XNAT is `pw`, and which has `roles`),
/// logging in with `password`; returns (exit code, stdout).
async fn check(policy: &str, account: &str, roles: &[&str], password: &str) -> (i32, String) {
    check_on(policy, account, roles, password, Some("alice"), |_| {}).await
}

/// [`check`] against a demo site `setup` changes first.
async fn check_on(
    policy: &str,
    account: &str,
    roles: &[&str],
    password: &str,
    user: Option<&str>,
    setup: impl FnOnce(&Standin),
) -> (i32, String) {
    let xnat = Standin::demo(account, "pw");
    xnat.set_roles(account, roles);
    setup(&xnat);
    let (url, _task) = xnat
        .spawn("127.0.0.1:0".parse().unwrap(), "/xnat")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (policy_file, creds): (PathBuf, PathBuf) =
        (dir.path().join("policy.yaml"), dir.path().join("creds"));
    std::fs::write(&policy_file, policy).unwrap();
    std::fs::write(&creds, format!("{account}:{password}\n")).unwrap();
    let mut args = vec![
        "check-xnat".to_owned(),
        "--policy".to_owned(),
        policy_file.display().to_string(),
        "--xnat-credentials".to_owned(),
        creds.display().to_string(),
        "--xnat-url".to_owned(),
        url.clone(),
    ];
    if let Some(user) = user {
        args.extend(["--user".to_owned(), user.to_owned()]);
    }
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stdout = stdout.replace(&url, "XNAT_URL");
    assert!(
        !stdout.contains(password),
        "the password was printed:\n{stdout}"
    );
    (out.status.code().unwrap_or(-1), stdout)
}

const WITH_LAUNCHES: &str = "userOptions:\n  enabled: true\n";

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_account_passes() {
    let (code, out) = check(WITH_LAUNCHES, "webhook-svc", &[ADMINISTRATOR], "pw").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "ok       logged in to XNAT_URL as webhook-svc\n\
         ok       webhook-svc's site roles: Administrator\n\
         ok       groups lookup of another user (alice) works: 2 project(s) readable\n\
         ok       /xapi/access/{user}/projects of alice (for group ids that read two ways): 3 \
         rows\n\
         ok       /data/projects/{id}/archive_spec of ALPHA: files at the site archive\n\
         ok       /data/projects/{id}/accessibility of ALPHA: private\n\
         ok       /data/experiments/{id} of XNAT_E_CHECK_NONE: none such (404, after the media \
         type was accepted)\n\
         ok       user-options read for alice works (none stored: 404)\n\
         ok       /xapi/users (for names XNAT has only in another case): 5 logins\n\
         \x20        XNAT answers every call this policy makes\n"
    );
}

/// The policies sites start from, against a healthy XNAT: every call they make answers, and
/// `check-xnat` finds a user to look up by itself (the first project's first member).
#[tokio::test(flavor = "multi_thread")]
async fn the_sample_policy_and_the_nrgxnat_preset_pass_on_a_healthy_xnat() {
    let sample = std::fs::read_to_string("deploy/base/policy.yaml").unwrap();
    let preset = std::fs::read_to_string("deploy/presets/nrgxnat-k8s.yaml").unwrap();
    let index = sample.replace("    enabled: false\n", "    enabled: true\n");
    for (name, policy) in [("sample", &sample), ("preset", &preset), ("index", &index)] {
        let (code, out) = run(policy, None).await;
        if std::env::var_os("SHOW").is_some() {
            eprintln!("--- {name}\n{out}");
        }
        assert_eq!(code, 0, "{name}:\n{out}");
        assert!(
            out.ends_with("XNAT answers every call this policy makes\n"),
            "{name}:\n{out}"
        );
        assert!(
            out.contains("/data/projects/{id}/users of ALPHA: 2 members"),
            "{name}:\n{out}"
        );
        assert!(
            out.contains("/data/projects/{id}/archive_spec of ALPHA"),
            "{name}:\n{out}"
        );
        assert!(out.contains("/xapi/users (for names"), "{name}:\n{out}");
    }
    let (_, out) = run(&preset, None).await;
    assert!(
        out.contains("archive_spec of ALPHA: files at the site archive, current arc arc001"),
        "{out}"
    );
    assert!(out.contains("user-options read for alice"), "{out}");
}

/// `check-xnat` for `policy` by an Administrator, asking about `user` when given.
async fn run(policy: &str, user: Option<&str>) -> (i32, String) {
    check_on(policy, "webhook-svc", &[ADMINISTRATOR], "pw", user, |_| {}).await
}

/// XNAT refusing the media type the webhook asks for (or answering another) is named by the
/// call, and is a failure: before, `check-xnat` never made these calls and said everything
/// worked.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_call_is_named_and_fails_the_check() {
    let refusing = |call: &'static str, fault: Fault| {
        check_on(
            WITH_LAUNCHES,
            "webhook-svc",
            &[ADMINISTRATOR],
            "pw",
            Some("alice"),
            move |x| x.set_endpoint_fault(call, fault),
        )
    };
    let (code, out) = refusing("archive_spec", Fault::Status(406)).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "PROBLEM  /data/projects/{id}/archive_spec of ALPHA: XNAT will not answer \
             /data/projects/{id}/archive_spec as text/xml (406 Not Acceptable)"
        ),
        "{out}"
    );
    assert!(out.contains("1 problem(s)"), "{out}");
    let (code, out) = refusing("accessibility", Fault::HtmlLogin).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("PROBLEM  /data/projects/{id}/accessibility of ALPHA"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plugins_jupyterhub_account_is_told_it_lacks_the_administrator_role() {
    for (policy, source, path, other) in [
        (
            WITH_LAUNCHES.to_owned(),
            "groups",
            "/xapi/users/{u}/groups",
            "/xapi/access/{u}/projects",
        ),
        (
            format!("{WITH_LAUNCHES}xnat:\n  projectSource: access\n"),
            "access",
            "/xapi/access/{u}/projects",
            "/xapi/users/{u}/groups",
        ),
    ] {
        let (code, out) = check(&policy, "jupyterhub", &[JUPYTERHUB], "pw").await;
        assert_eq!(code, 1, "{out}");
        for line in [
            "ok       logged in to XNAT_URL as jupyterhub".to_owned(),
            "ok       jupyterhub's site roles: JupyterHub".to_owned(),
            format!(
                "PROBLEM  jupyterhub is not a site Administrator: {path} of other users will \
                 answer 403, so every notebook starts without project data"
            ),
            format!(
                "PROBLEM  {source} lookup of alice: XNAT answered 403 to {}: the service account \
                 lacks the Administrator role it needs (credentials are fine)",
                path.replace("{u}", "{user}")
            ),
            // The JupyterHub role is enough for launch contexts.
            "ok       user-options read for alice works (none stored: 404)".to_owned(),
            // Nothing readable to ask about, and the login list is an Administrator's too.
            "PROBLEM  /data/projects/{id}/archive_spec and accessibility not checked".to_owned(),
            "PROBLEM  /xapi/users (for names XNAT has only in another case): XNAT answered 403"
                .to_owned(),
            // The other source's call (the access list, or the group list) is an
            // Administrator's too.
            format!("PROBLEM  {} of alice", other.replace("{u}", "{user}")),
            "5 problem(s)".to_owned(),
        ] {
            assert!(out.contains(&line), "{source}: missing {line:?} in\n{out}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_without_roles_cannot_read_launch_contexts_either() {
    let (code, out) = check(WITH_LAUNCHES, "plain", &[], "pw").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("plain's site roles: none"), "{out}");
    assert!(
        out.contains("PROBLEM  plain has neither the JupyterHub nor the Administrator role"),
        "{out}"
    );
    assert!(
        out.contains("PROBLEM  user-options read for alice: XNAT answered 403"),
        "{out}"
    );
    // Without launches the user-options read is not tried.
    let (_, out) = check("", "plain", &[], "pw").await;
    assert!(!out.contains("user-options"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_stops_at_the_login() {
    let (code, out) = check(WITH_LAUNCHES, "webhook-svc", &[ADMINISTRATOR], "wrong").await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        "PROBLEM  log in to XNAT_URL as webhook-svc: XNAT refused the service credentials \
         (HTTP 401): check the username and password in the XNAT Secret\n\
         \x20        1 problem(s): spawns will not get what they should\n"
    );
}
