//! XNAT access done right: one session for many calls, re-login on an expired session, credential
//! rotation, spawn storms that cost one request per user, stale answers during outages,
//! refresh-ahead, retries, the admin project list, and the plugin's launch context.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use xnat_standin::{Fault, SessionRejection, Standin};

#[tokio::test]
async fn a_spawn_storm_costs_one_request_per_user_and_one_login() {
    let h = Harness::start("xnat:\n  maxConcurrentRequests: 8\n").await;
    h.xnat.set_latency(Duration::from_millis(100));
    for i in 0..50 {
        h.xnat.set_user(
            &format!("student{i:02}"),
            &["CLASS_member", &format!("P{i:02}_owner")],
        );
    }
    // 200 reviews for 50 students, all at once (4 per student, interleaved).
    let reviews: Vec<(usize, Value)> = (0..200)
        .map(|n| (n % 50, review_for(&format!("student{:02}", n % 50))))
        .collect();
    let responses = futures::future::join_all(reviews.iter().map(|(_, r)| h.review(r))).await;
    for ((i, review), response) in reviews.iter().zip(&responses) {
        assert_eq!(
            project_paths(review, response),
            [
                "/data/projects/CLASS".to_string(),
                format!("/data/projects/P{i:02}"),
                "/data/xnat/workspace".to_string(),
            ]
        );
    }
    let c = h.xnat.counts();
    let groups = c.groups;
    let logins = c.logins;
    let max_in_flight = c.max_in_flight;
    println!(
        "storm: 200 reviews / 50 users -> {groups} group calls, {logins} login(s), at most {max_in_flight} XNAT calls in flight"
    );
    assert_eq!(groups, 50);
    assert_eq!(logins, 1);
    assert_eq!(c.basic_api_calls, 0, "API calls use the session");
    assert!(max_in_flight <= 8, "{max_in_flight} XNAT calls in flight");

    // A second burst inside the TTL costs XNAT nothing.
    let again = futures::future::join_all(reviews.iter().map(|(_, r)| h.review(r))).await;
    assert_eq!(again.len(), 200);
    assert_eq!(h.xnat.counts().groups, 50);
    assert_eq!(h.xnat.counts().logins, 1);
}

#[tokio::test]
async fn an_expired_session_means_one_new_login() {
    for rejection in [SessionRejection::Unauthorized, SessionRejection::HtmlLogin] {
        let h = Harness::start("").await;
        h.xnat.set_session_rejection(rejection);
        let first = review_for("alice");
        h.review(&first).await;
        assert_eq!(h.xnat.counts().logins, 1);
        // Sessions expire after minutes; one rejected right after its login counts as refused.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        h.xnat.expire_sessions();
        let second = review_for("carol");
        let response = h.review(&second).await;
        assert_eq!(
            project_paths(&second, &response),
            [
                "/data/projects/ALPHA",
                "/data/projects/GPU_LAB",
                "/data/xnat/workspace"
            ],
            "{rejection:?}"
        );
        assert!(
            warnings(&response).is_empty(),
            "{rejection:?}: {:?}",
            warnings(&response)
        );
        assert_eq!(h.xnat.counts().logins, 2, "{rejection:?}");
    }
}

#[tokio::test]
async fn refusals_do_not_turn_into_login_storms() {
    // An endpoint that refuses a fresh session: no new login per review.
    let h = Harness::start("xnat:\n  retries: 0\n").await;
    h.review(&review_for("alice")).await;
    h.xnat.set_fault(Fault::Status(401));
    for user in ["bob", "carol", "erin", "dave"] {
        let response = h.review(&review_for(user)).await;
        assert!(
            warnings(&response)
                .iter()
                .any(|w| w.contains("XNAT could not be asked"))
        );
    }
    assert_eq!(h.xnat.counts().logins, 1);
    h.stop().await;

    // Wrong credentials: one refused login, then no more POSTs with the same credentials for a
    // while, however many reviews arrive (XNAT locks accounts after repeated failures).
    let h = Harness::builder()
        .credentials("webhook-svc:wrong\n")
        .start()
        .await;
    let reviews: Vec<Value> = (0..20)
        .map(|i| review_for(&format!("student{i}")))
        .collect();
    futures::future::join_all(reviews.iter().map(|r| h.review(r))).await;
    for r in &reviews[..5] {
        h.review(r).await;
    }
    assert_eq!(
        h.xnat.counts().logins,
        1,
        "refused credentials are not retried at once"
    );
}

#[tokio::test]
async fn rotated_credentials_on_disk_are_used_without_a_restart() {
    let h = Harness::start("").await;
    h.review(&review_for("alice")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // XNAT's side rotates (sessions end) and the Secret on disk is updated, as kubelet would.
    h.xnat.set_credentials(&[("webhook-svc", "rotated-pw")]);
    let creds = h.dir.path().join("xnat-credentials");
    let tmp = h.dir.path().join("xnat-credentials.new");
    std::fs::write(&tmp, "webhook-svc:rotated-pw\n").unwrap();
    std::fs::rename(&tmp, &creds).unwrap();
    let review = review_for("erin");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/BETA", "/data/xnat/workspace"]
    );
    assert_eq!(h.xnat.counts().logins, 2);
}

#[tokio::test]
async fn an_alias_token_secret_works_like_a_password() {
    let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
    xnat.set_credentials(&[("8f2c-alias", "token-secret")]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alias"), "8f2c-alias\n").unwrap();
    std::fs::write(dir.path().join("secret"), "token-secret\n").unwrap();
    let h = Harness::builder()
        .standin(xnat)
        .credentials_path(dir.path())
        .start()
        .await;
    let review = review_for("alice");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response).len(), 3);
}

#[tokio::test]
async fn stopping_closes_the_xnat_session() {
    let h = Harness::start("").await;
    h.review(&review_for("alice")).await;
    assert_eq!(h.xnat.live_sessions(), 1);
    let xnat = h.xnat.clone();
    h.stop().await;
    assert_eq!(xnat.counts().logouts, 1);
    assert_eq!(xnat.live_sessions(), 0);
}

#[tokio::test]
async fn the_admin_access_list_can_be_the_project_source() {
    let h = Harness::start("xnat:\n  projectSource: access\n").await;
    let review = review_for("carol");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        [
            "/data/projects/ALPHA",
            "/data/projects/GPU_LAB",
            "/data/xnat/workspace"
        ]
    );
    assert_eq!(h.xnat.counts().access, 1);
    assert_eq!(h.xnat.counts().groups, 0);
    // XNAT lists an all-data user's site groups with `ID` null (alice is in ALL_DATA_ACCESS):
    // skipped, not an outage.
    let review = review_for("alice");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        [
            "/data/projects/ALPHA",
            "/data/projects/BETA",
            "/data/xnat/workspace"
        ]
    );
    // An unknown user is `200 []` there: no projects, workspace only.
    let review = review_for("nobody");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response), ["/data/xnat/workspace"]);
}

#[tokio::test]
async fn unknown_users_are_cached_briefly() {
    let h = Harness::start("xnat:\n  cacheTtl: 60s\n  negativeCacheTtl: 1s\n").await;
    let review = review_for("newcomer");
    for _ in 0..3 {
        let response = h.review(&review).await;
        assert!(warnings(&response)[0].contains("XNAT has no user"));
    }
    assert_eq!(h.xnat.lookups_for("newcomer"), 1);
    // The account is created in XNAT; within a second the webhook notices.
    h.xnat.set_user("newcomer", &["ALPHA_member"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/ALPHA", "/data/xnat/workspace"]
    );
    assert_eq!(h.xnat.lookups_for("newcomer"), 2);
}

#[tokio::test]
async fn stale_then_allow_uses_a_recent_answer_during_an_outage() {
    let policy = "xnat:\n  cacheTtl: 1s\n  negativeCacheTtl: 1s\n  staleIfError: 1h\n  onError: staleThenAllow\n  retries: 0\n";
    let h = Harness::start(policy).await;
    let review = review_for("alice");
    h.review(&review).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.xnat.set_fault(Fault::Status(503));
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        [
            "/data/projects/ALPHA",
            "/data/projects/BETA",
            "/data/xnat/workspace"
        ]
    );
    let w = warnings(&response);
    assert!(w[0].contains("using its answer from"), "{w:?}");
    // A user never seen before has nothing to fall back on: allowed without projects.
    let review = review_for("carol");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response), ["/data/xnat/workspace"]);
    assert!(warnings(&response)[0].contains("started without project data"));
    h.stop().await;

    // The default mode never uses a stale answer.
    let h = Harness::start("xnat:\n  cacheTtl: 1s\n  negativeCacheTtl: 1s\n  retries: 0\n").await;
    let review = review_for("alice");
    h.review(&review).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.xnat.set_fault(Fault::Status(503));
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response), ["/data/xnat/workspace"]);
}

#[tokio::test]
async fn refresh_ahead_keeps_hot_users_current_without_waiting() {
    let h = Harness::start("xnat:\n  cacheTtl: 30s\n  refreshAhead: 300ms\n").await;
    let review = review_for("alice");
    h.review(&review).await;
    assert_eq!(h.xnat.lookups_for("alice"), 1);
    h.xnat.set_user("alice", &["ALPHA_owner", "NEW_member"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Served from the cache at once (old answer), and refreshed behind it.
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        [
            "/data/projects/ALPHA",
            "/data/projects/BETA",
            "/data/xnat/workspace"
        ]
    );
    // The refreshed answer lands shortly, long before the 30 s TTL.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let response = h.review(&review).await;
        let paths = project_paths(&review, &response);
        if paths
            == [
                "/data/projects/ALPHA",
                "/data/projects/NEW",
                "/data/xnat/workspace",
            ]
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never landed: {paths:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One background refresh, not a request per review (a slow machine may fit a second one).
    let calls = h.xnat.lookups_for("alice");
    assert!((2..=3).contains(&calls), "{calls} group calls");
}

#[tokio::test]
async fn a_transient_failure_is_retried_inside_the_budget() {
    let h = Harness::start("xnat:\n  retries: 2\n  retryBackoff: 20ms\n").await;
    h.xnat.fail_next(1, Fault::Status(503));
    let review = review_for("alice");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response).len(), 3);
    assert!(warnings(&response).is_empty());
    assert_eq!(h.xnat.lookups_for("alice"), 2);
}

#[tokio::test]
async fn a_project_id_with_dot_dot_from_the_access_list_is_never_mounted() {
    let h = Harness::start("xnat:\n  projectSource: access\n").await;
    h.xnat
        .set_user("alice", &["../../etc_owner", "ALPHA_owner"]);
    let review = review_for("alice");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/ALPHA", "/data/xnat/workspace"]
    );
}

fn launch_options() -> Value {
    json!({
        "userId": 7, "servername": "", "xsiType": "xnat:projectData", "itemId": "ALPHA",
        "itemLabel": "ALPHA", "projectId": "ALPHA", "eventTrackingId": "e-1",
        "task_template": {
            "container_spec": {
                "image": "jupyter/xnat:latest",
                "env": {"XNAT_XSI_TYPE": "xnat:projectData", "XNAT_ITEM_ID": "ALPHA", "XNAT_DATA": "/data"},
                "mounts": [
                    {"source": "/data/xnat/archive/ALPHA/arc001", "target": "/data/projects/ALPHA/experiments", "type": "bind", "read_only": false},
                    {"source": "/data/xnat/archive/GAMMA/arc001", "target": "/data/projects/GAMMA/experiments", "type": "bind", "read_only": true},
                    {"source": "/data/xnat/workspaces/users/alice", "target": "/workspace/alice", "type": "bind", "read_only": false},
                    {"source": "/data/xnat/workspaces/users/bob", "target": "/workspace/bob", "type": "bind", "read_only": false},
                    {"source": "/etc/shadow", "target": "/x", "type": "bind", "read_only": true},
                    {"source": "/data/xnat/archive/../build", "target": "/y", "type": "bind", "read_only": true}
                ]
            },
            "resources": {"cpu_limit": 2.0, "cpu_reservation": 0.5, "mem_limit": "8G", "mem_reservation": "1G", "generic_resources": {"gpu": 1}},
            "placement": {"constraints": ["node.labels.gpu==true"]}
        }
    })
}

#[tokio::test]
async fn the_launch_context_is_used_but_never_widens_access() {
    let h = Harness::start("userOptions:\n  enabled: true\n").await;
    h.xnat.set_user_options("alice", "", launch_options());
    let review = review_for("alice");
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(
        mounts_of(&pod, "xnat-data"),
        [
            (
                "/data/projects/ALPHA/experiments".into(),
                "archive/ALPHA/arc001".into(),
                true
            ),
            (
                "/workspace/alice".into(),
                "workspaces/users/alice".into(),
                false
            ),
        ]
    );
    let w = warnings(&response);
    for refused in ["GAMMA", "/workspaces/users/bob", "/etc/shadow", "../build"] {
        assert!(
            w.iter().any(|w| w.contains(refused)),
            "{refused} should be refused: {w:?}"
        );
    }
    assert_eq!(
        env_of(&pod, "XNAT_XSI_TYPE").as_deref(),
        Some("xnat:projectData")
    );
    assert_eq!(env_of(&pod, "XNAT_PROJECTS").as_deref(), Some("ALPHA"));
    let nb = notebook(&pod);
    assert_eq!(
        nb["resources"]["limits"],
        json!({"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"})
    );
    assert_eq!(
        nb["resources"]["requests"],
        json!({"memory": "1073741824", "cpu": "500m"})
    );
    assert_eq!(pod["spec"]["nodeSelector"], json!({"gpu": "true"}));
    assert_eq!(h.xnat.counts().user_options, 1);

    // Idempotent with a launch context too.
    let mut again = review.clone();
    again["request"]["object"] = pod;
    let second = h.review(&again).await;
    assert_eq!(decoded_patch(&second), None);
}

#[tokio::test]
async fn a_trusted_plugin_may_mount_beyond_the_project_list() {
    let h = Harness::start("userOptions:\n  enabled: true\n  trustPlugin: true\n").await;
    h.xnat.set_user_options("alice", "", launch_options());
    let review = review_for("alice");
    let response = h.review(&review).await;
    let paths = project_paths(&review, &response);
    assert_eq!(
        paths,
        [
            "/data/projects/ALPHA/experiments",
            "/data/projects/GAMMA/experiments",
            "/workspace/alice",
            "/workspace/bob"
        ]
    );
}

#[tokio::test]
async fn no_launch_context_falls_back_to_the_project_list_and_named_servers_are_asked_by_name() {
    let h = Harness::start("userOptions:\n  enabled: true\n").await;
    let mut options = launch_options();
    options["task_template"]["container_spec"]["mounts"] = json!([
        {"source": "/data/xnat/archive/GPU_LAB", "target": "/data/gpu-lab", "read_only": true}
    ]);
    h.xnat.set_user_options("carol", "gpu-analysis", options);
    let named = fixture("named-server");
    let response = h.review(&named).await;
    // The launch's mounts replace the project list's; the policy's workspace stays.
    assert_eq!(
        project_paths(&named, &response),
        ["/data/gpu-lab", "/data/xnat/workspace"]
    );

    // carol's default server has no stored options: the project list.
    let review = review_for("carol");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        [
            "/data/projects/ALPHA",
            "/data/projects/GPU_LAB",
            "/data/xnat/workspace"
        ]
    );
}

#[tokio::test]
async fn an_https_xnat_with_a_private_ca_is_trusted_through_ca_file_only() {
    use jupyter_xnat_webhook::server::serve_tls;
    use jupyter_xnat_webhook::tls::CertStore;

    let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.write_pair(dir.path());
    let store = CertStore::load(&cert, &key, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/xnat",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(serve_tls(
        listener,
        store.server_config().unwrap(),
        xnat.router("/xnat"),
        std::future::pending(),
        Duration::from_secs(1),
        Duration::from_secs(30),
    ));
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca.pem).unwrap();

    let policy = format!("xnat:\n  caFile: {}\n", ca_file.display());
    let h = Harness::builder()
        .xnat_at(xnat.clone(), url.clone())
        .policy(&policy)
        .start()
        .await;
    let review = review_for("alice");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response).len(), 3);
    h.stop().await;

    let h = Harness::builder().xnat_at(xnat, url).start().await;
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response), ["/data/xnat/workspace"]);
    assert!(warnings(&response)[0].contains("XNAT could not be asked"));
}

#[tokio::test]
async fn an_openid_xnat_user_can_come_from_a_hub_annotation_or_a_regex() {
    // XNAT's OpenID plugin names users {provider}_{sub}; the hub knows the sub from auth_state
    // and can put it in an annotation of the pod it creates.
    let policy = "identity:\n  xnatUsernameAnnotation: xnat.example.org/username\n";
    let h = Harness::start(policy).await;
    h.xnat.set_user("aaf_9f8e7d6c", &["DELTA_member"]);
    let mut review = fixture("email-username");
    review["request"]["object"]["metadata"]["annotations"]["xnat.example.org/username"] =
        json!("aaf_9f8e7d6c");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/DELTA", "/data/xnat/workspace"]
    );
    assert_eq!(
        env_of(&patched_pod(&review, &response), "XNAT_USER").as_deref(),
        Some("aaf_9f8e7d6c")
    );
    // Without the annotation, the JupyterHub username is used.
    let plain = fixture("email-username");
    let response = h.review(&plain).await;
    assert_eq!(
        project_paths(&plain, &response),
        ["/data/projects/GAMMA", "/data/xnat/workspace"]
    );
    h.stop().await;

    // Or the JupyterHub username carries the sub: a regex maps it.
    let policy = "identity:\n  mapping:\n    - regex: {pattern: '(?P<sub>[0-9a-f]{8})@aaf\\.edu\\.au', replacement: 'aaf_$sub'}\n";
    let h = Harness::start(policy).await;
    h.xnat.set_user("aaf_9f8e7d6c", &["DELTA_member"]);
    let review = review_for("9f8e7d6c@aaf.edu.au");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/DELTA", "/data/xnat/workspace"]
    );
}

#[tokio::test]
async fn an_unusable_username_annotation_never_falls_back_to_the_hub_name() {
    let h =
        Harness::start("identity:\n  xnatUsernameAnnotation: xnat.example.org/username\n").await;
    let mut review = review_for("alice");
    review["request"]["object"]["metadata"]["annotations"]["xnat.example.org/username"] =
        json!("aaf_/oops");
    let response = h.review(&review).await;
    assert_eq!(decoded_patch(&response), None);
    assert!(warnings(&response)[0].contains("annotation is not a usable username"));
    assert_eq!(h.xnat.counts().groups, 0);
}

#[tokio::test]
async fn a_launch_mount_below_a_workspace_is_refused_even_from_a_trusted_plugin() {
    // alice could make /workspace/alice/sub a symlink to ../../../archive/GAMMA: kubelet would
    // follow it inside the claim and mount GAMMA, read-write. Her directory below the `user`
    // mapping is writable whether or not the policy mounts a workspace of its own.
    for storage in ["", "storage:\n  workspace: null\n"] {
        launch_below_a_workspace(&format!(
            "userOptions:\n  enabled: true\n  trustPlugin: true\n{storage}"
        ))
        .await;
    }
}

async fn launch_below_a_workspace(policy: &str) {
    let h = Harness::start(policy).await;
    let mut options = launch_options();
    options["task_template"]["container_spec"]["mounts"] = json!([
        {"source": "/data/xnat/workspaces/users/alice", "target": "/workspace/alice", "read_only": false},
        {"source": "/data/xnat/workspaces/users/alice/sub", "target": "/workspace/sub", "read_only": false},
        {"source": "/data/xnat/archive/ALPHA/arc001", "target": "/data/projects/ALPHA/experiments", "read_only": true},
        {"source": "/data/xnat/archive/ALPHA/resources", "target": "/data/projects/ALPHA/resources", "read_only": true}
    ]);
    h.xnat.set_user_options("alice", "", options);
    let review = review_for("alice");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        [
            "/workspace/alice",
            "/data/projects/ALPHA/experiments",
            "/data/projects/ALPHA/resources"
        ]
    );
    let w = warnings(&response);
    assert!(
        w.iter()
            .any(|w| w.contains("/workspace/sub") && w.contains("can write")),
        "{w:?}"
    );
    // Two mounts of one project name it once.
    assert_eq!(
        env_of(&patched_pod(&review, &response), "XNAT_PROJECTS").as_deref(),
        Some("ALPHA")
    );
}
