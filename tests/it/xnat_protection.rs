//! XNAT under load sees no more calls at once than the policy allows, counting the calls it is
//! still working on after the webhook stopped waiting: the stand-in, like Tomcat, goes on with a
//! call whose client has gone (`xnat_standin` `api_call`), and counts it in flight until done.

use std::time::Duration;

use crate::common::*;
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
        .alone_with_metrics()
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
        .alone_with_metrics()
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
