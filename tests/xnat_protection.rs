//! XNAT under load sees no more calls at once than the policy allows, counting the calls it is
//! still working on after the webhook stopped waiting: the stand-in, like Tomcat, goes on with a
//! call whose client has gone (`xnat_standin` `api_call`), and counts it in flight until done.

mod common;

use std::time::Duration;

use common::*;
use futures::future::join_all;
use xnat_standin::Standin;

fn class(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("student{i:03}")).collect()
}

#[tokio::test]
async fn a_slow_xnat_never_has_more_calls_than_the_limit_and_gets_no_retries() {
    let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
    let users = class(24);
    for u in &users {
        xnat.set_user(u, &["CLASS_member"]);
    }
    let h = Harness::builder()
        .standin(xnat.clone())
        .policy(
            "xnat:\n  maxConcurrentRequests: 4\n  minConcurrentRequests: 1\n  timeout: 200ms\n  \
             budget: 1s\n  retries: 3\n  retryBackoff: 10ms\n",
        )
        .start()
        .await;
    // Log in first, so the storm below is all group lookups.
    h.review(&review_for("alice")).await;
    xnat.set_latency(Duration::from_millis(700));
    let before = xnat.counts();

    let responses = join_all(users.iter().map(|u| {
        let h = &h;
        async move { h.review(&review_for(u)).await }
    }))
    .await;
    for r in &responses {
        assert_eq!(r["response"]["allowed"], true);
        assert!(warnings(r)[0].contains("XNAT could not be asked"), "{r}");
    }
    // Every abandoned call is finished by XNAT within its 700 ms.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let after = xnat.counts();
    assert!(
        after.max_in_flight <= 4,
        "XNAT had {} calls at once against a limit of 4",
        after.max_in_flight
    );
    assert!(
        after.groups - before.groups <= users.len(),
        "{} group calls for {} users: a timed-out call was retried",
        after.groups - before.groups,
        users.len()
    );
    let m = h.metrics().await;
    assert_eq!(
        metric(&m, "xnat_webhook_xnat_concurrency_limit"),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "xnat_webhook_xnat_in_flight"), 0.0);

    // XNAT recovers: answers grow the limit back, one slot per limit's worth of answers.
    xnat.set_latency(Duration::ZERO);
    for u in &users[..12] {
        let r = h.review(&review_for(u)).await;
        assert_eq!(project_paths(&review_for(u), &r)[0], "/data/projects/CLASS");
    }
    let m = h.metrics().await;
    assert_eq!(
        metric(&m, "xnat_webhook_xnat_concurrency_limit"),
        4.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_struggling_xnat_gets_fewer_calls_at_once() {
    let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
    let h = Harness::builder()
        .standin(xnat.clone())
        .policy("xnat:\n  maxConcurrentRequests: 8\n  retries: 0\n")
        .start()
        .await;
    h.review(&review_for("alice")).await;
    let m = h.metrics().await;
    assert_eq!(metric(&m, "xnat_webhook_xnat_concurrency_limit"), 8.0);
    xnat.set_fault(xnat_standin::Fault::Status(503));
    h.review(&review_for("erin")).await;
    let m = h.metrics().await;
    assert_eq!(
        metric(&m, "xnat_webhook_xnat_concurrency_limit"),
        4.0,
        "{m}"
    );
}

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
