//! When XNAT cannot be asked, the pod starts without project data (with a warning), or is refused
//! when the policy says `onError: deny`. Unverified projects are never mounted, and failures are
//! not cached.

use std::time::Duration;

use crate::common::*;
use serde_json::Value;
use xnat_standin::{Fault, Standin};

/// The pod starts with its workspace but no project, and the response says why.
fn assert_started_without_projects(review: &Value, response: &Value, what: &str) {
    assert_eq!(response["response"]["allowed"], true, "{what}");
    let pod = patched_pod(review, response);
    assert_eq!(
        mounts_of(&pod, "xnat-data"),
        [(
            "/data/xnat/workspace".into(),
            "workspaces/users/alice".into(),
            false
        )],
        "{what}"
    );
    assert_eq!(env_of(&pod, "XNAT_PROJECTS").as_deref(), Some(""), "{what}");
    let w = warnings(response);
    assert!(
        w.iter().any(|w| w.contains("XNAT could not be asked")),
        "{what}: {w:?}"
    );
}

#[tokio::test]
async fn every_kind_of_xnat_failure_starts_the_pod_without_project_data() {
    let h = Harness::start("xnat:\n  timeout: 1s\n  retries: 2\n  retryBackoff: 10ms\n").await;
    let review = fixture("alice-default");
    // (fault, name, XNAT calls one review makes: transient errors are retried twice; a session
    // rejected seconds after its login is refused, not expired, so no new login; the rest are final)
    let faults = [
        (Fault::Status(500), "500", 3),
        (Fault::Status(503), "503", 3),
        (Fault::Status(401), "401", 1),
        (Fault::HtmlLogin, "HTML login page", 1),
        (Fault::BadJson, "bad JSON", 1),
        (Fault::Oversized, "oversized", 1),
        (Fault::Status(403), "403", 1),
    ];
    for (fault, what, calls) in faults {
        h.xnat.set_fault(fault);
        let before = h.xnat.counts().groups;
        let response = h.review(&review).await;
        assert_started_without_projects(&review, &response, what);
        assert_eq!(
            h.xnat.counts().groups,
            before + calls,
            "{what}: calls (failures are never cached)"
        );
    }
    // Slower than the XNAT timeout.
    h.xnat.set_fault(Fault::None);
    h.xnat.set_latency(Duration::from_millis(1500));
    let response = h.review(&review).await;
    assert_started_without_projects(&review, &response, "timeout");
    assert!(warnings(&response)[0].contains("did not answer within"));

    // XNAT back: the next spawn gets its data.
    h.xnat.set_latency(Duration::ZERO);
    let response = h.review(&review).await;
    let pod = patched_pod(&review, &response);
    assert_eq!(mounts_of(&pod, "xnat-data").len(), 3);
}

#[tokio::test]
async fn wrong_service_credentials_are_an_outage_not_an_empty_list() {
    let h = Harness::builder()
        .credentials("webhook-svc:wrong\n")
        .start()
        .await;
    let review = fixture("alice-default");
    let response = h.review(&review).await;
    assert_started_without_projects(&review, &response, "401");
    assert!(warnings(&response)[0].contains("refused the service credentials"));
    assert_eq!(h.xnat.counts().auth_failures, 1);
}

#[tokio::test]
async fn xnat_down_starts_the_pod_without_project_data() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
    let h = Harness::builder()
        .xnat_at(xnat, format!("http://127.0.0.1:{port}/xnat"))
        .start()
        .await;
    let review = fixture("alice-default");
    let response = h.review(&review).await;
    assert_started_without_projects(&review, &response, "connection refused");
    assert!(warnings(&response)[0].contains("cannot reach XNAT"));
}

#[tokio::test]
async fn deny_mode_refuses_the_pod_with_the_policys_message() {
    let policy =
        "xnat:\n  onError: deny\n  denyMessage: XNAT is down; please retry in 5 minutes.\n";
    let h = Harness::start(policy).await;
    h.xnat.set_fault(Fault::Status(502));
    let review = fixture("alice-default");
    let response = h.review(&review).await;
    let r = &response["response"];
    assert_eq!(r["uid"], review["request"]["uid"]);
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(
        r["status"]["message"],
        "XNAT is down; please retry in 5 minutes."
    );
    assert_eq!(decoded_patch(&response), None);

    // Deny mode only bites on failures: a healthy XNAT still admits with data.
    h.xnat.set_fault(Fault::None);
    let response = h.review(&review).await;
    assert_eq!(response["response"]["allowed"], true);
    assert_eq!(
        mounts_of(&patched_pod(&review, &response), "xnat-data").len(),
        3
    );
}

#[tokio::test]
async fn a_service_account_without_the_administrator_role_starts_pods_without_project_data() {
    // XNAT answers another user's groups and access list with 403 and an empty body when the
    // service account is not a site Administrator (`UsersApi`, `DataAccessApi`).
    for source in ["groups", "access"] {
        let h = Harness::start(&format!("xnat:\n  projectSource: {source}\n")).await;
        h.xnat.set_service_admin(false);
        let review = fixture("alice-default");
        let response = h.review(&review).await;
        assert_started_without_projects(&review, &response, source);
    }
}

/// A login is an outage's first call: its slot is held as long as XNAT works on it.
#[tokio::test]
async fn a_login_xnat_is_still_working_on_keeps_its_slot() {
    let policy = "xnat:\n  maxConcurrentRequests: 1\n  minConcurrentRequests: 1\n  \
                  timeout: 1s\n  budget: 1500ms\n  retries: 0\n";
    let h = Harness::start(policy).await;
    // XNAT takes 3 s to log in; the webhook stops waiting after 1 s.
    h.xnat.set_login_latency(Duration::from_secs(3));
    let alice = review_for("alice");
    let first = h.review(&alice);
    let second = async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        h.review(&review_for("bob")).await
    };
    let (first, second) = tokio::join!(first, second);
    for response in [&first, &second] {
        assert_eq!(response["response"]["allowed"], true, "{response}");
    }
    let counts = h.xnat.counts();
    assert_eq!(
        counts.max_in_flight, 1,
        "the abandoned login kept the only slot while XNAT worked on it"
    );
    assert_eq!(
        counts.logins, 1,
        "no second login piled up behind the first"
    );
    // The login XNAT finished after everyone stopped waiting is kept: no new one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = h.review(&alice).await;
    let paths = project_paths(&alice, &later);
    assert!(paths.iter().any(|p| p.ends_with("/ALPHA")), "{later}");
    assert_eq!(
        h.xnat.counts().logins,
        1,
        "the late login's session was used"
    );
}
