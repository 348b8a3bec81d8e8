//! The access index (`xnat.index`): spawns of users it lists are answered with no XNAT call;
//! users it does not list are looked up one by one; revocations apply at the next refresh; an
//! index too old to answer falls back to per-user lookups and stands in only as a stale answer.
//! The stand-in serves `/data/projects` and `/data/projects/{id}/users` in XNAT's table shapes
//! (`xnat_standin::site` says where each comes from).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use xnat_standin::{Fault, Standin};

const STATUS: &str = "jupyter-xnat-webhook/status";

fn index_policy(extra: &str) -> String {
    format!("xnat:\n  index:\n    enabled: true\n    refreshInterval: 1s\n    maxAge: 2s\n{extra}")
}

/// Waits until `/readyz` shows an index with `users` users read no more than a second ago.
async fn index_ready(h: &Harness, users: u64) -> Value {
    for _ in 0..100 {
        let r = h.readyz().await;
        let index = &r["xnat"]["index"];
        if index["users"] == users && index["ageSeconds"].as_u64().is_some_and(|a| a < 1) {
            return index.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the index never listed {users} users: {:#}",
        h.readyz().await
    );
}

fn answer_of(review: &Value, response: &Value) -> String {
    let pod = patched_pod(review, response);
    let status: Value =
        serde_json::from_str(pod["metadata"]["annotations"][STATUS].as_str().unwrap()).unwrap();
    status["xnat"]["answer"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn listed_users_are_answered_with_no_xnat_call_and_new_ones_are_looked_up() {
    let h = Harness::start(&index_policy("")).await;
    // The demo site: alice, Bob.Smith@uni.edu.au, carol and erin in ALPHA, BETA, GAMMA and
    // GPU_LAB.
    let index = index_ready(&h, 4).await;
    assert_eq!(index["projects"], 4, "{index}");
    assert_eq!(index["fresh"], true);
    let before = h.xnat.counts();
    assert_eq!(before.projects, 1);
    assert_eq!(before.project_users, 4);

    let review = fixture("alice-default");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        [
            "/data/projects/ALPHA",
            "/data/projects/BETA",
            "/data/xnat/workspace"
        ]
    );
    assert_eq!(answer_of(&review, &response), "indexed");
    let after = h.xnat.counts();
    assert_eq!(
        (after.groups, after.archive_specs),
        (before.groups, before.archive_specs),
        "no XNAT call on the spawn's path: the index holds the projects and their archive paths"
    );

    // An account created after the last refresh is looked up as without the index.
    h.xnat.set_user("newbie", &["GAMMA_member"]);
    let review = review_for("newbie");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response)[0], "/data/projects/GAMMA");
    assert_eq!(answer_of(&review, &response), "asked");
    assert_eq!(h.xnat.lookups_for("newbie"), 1);

    let m = h.metrics().await;
    assert_eq!(
        metric(
            &m,
            "xnat_webhook_xnat_cache_lookups_total{result=\"index\"}"
        ),
        1.0
    );
    assert!(metric(&m, "xnat_webhook_xnat_index_users") >= 4.0, "{m}");
    assert!(metric(&m, "xnat_webhook_xnat_index_refreshed_timestamp_seconds") > 1.7e9);
}

#[tokio::test]
async fn a_revoked_membership_is_gone_after_the_next_refresh() {
    let h = Harness::start(&index_policy("")).await;
    index_ready(&h, 4).await;
    let review = fixture("alice-default");
    assert_eq!(project_paths(&review, &h.review(&review).await).len(), 3);

    h.xnat.set_user("alice", &["ALPHA_owner"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    index_ready(&h, 4).await;
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/ALPHA", "/data/xnat/workspace"]
    );
    assert_eq!(answer_of(&review, &response), "indexed");
}

#[tokio::test]
async fn an_index_too_old_falls_back_to_lookups_and_stands_in_only_when_xnat_is_down() {
    let policy = index_policy(
        "  onError: staleThenAllow\n  cacheTtl: 1s\n  negativeCacheTtl: 1s\n  staleIfError: 10m\n",
    );
    let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
    let h = Harness::builder()
        .standin(xnat.clone())
        .policy(&policy)
        .start()
        .await;
    index_ready(&h, 4).await;
    // Refreshes fail from now on (XNAT answers 503 to everything) and the index ages past 2s.
    xnat.set_fault(Fault::Status(503));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = h.readyz().await;
    assert_eq!(r["xnat"]["index"]["fresh"], false, "{r:#}");
    assert!(
        r["xnat"]["index"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{r:#}"
    );

    let review = fixture("alice-default");
    let groups = xnat.counts().groups;
    let response = h.review(&review).await;
    assert!(xnat.counts().groups > groups, "XNAT was asked first");
    assert_eq!(answer_of(&review, &response), "stale");
    assert_eq!(
        project_paths(&review, &response).len(),
        3,
        "the old index stood in"
    );
    assert!(warnings(&response)[0].contains("using its answer from 2s ago"));

    // XNAT back: the per-user lookup answers, and the index is fresh again after a refresh.
    xnat.set_fault(Fault::None);
    let response = h.review(&review).await;
    assert_eq!(answer_of(&review, &response), "asked");
    index_ready(&h, 4).await;
}

#[tokio::test]
async fn the_index_is_off_by_default() {
    let h = Harness::start("").await;
    h.review(&fixture("alice-default")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = h.xnat.counts();
    assert_eq!((c.projects, c.project_users), (0, 0));
    assert!(h.readyz().await["xnat"].get("index").is_none());
}
