//! The access index (`xnat.index`): spawns of users it lists are answered with no XNAT call;
//! users it does not list are looked up one by one; revocations apply at the next refresh; an
//! index too old to answer falls back to per-user lookups and stands in only as a stale answer.
//! The stand-in serves `/data/projects` and `/data/projects/{id}/users` in XNAT's table shapes
//! (`xnat_standin::site` says where each comes from).

use std::time::Duration;

use crate::common::*;
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
    let h = Harness::builder()
        .policy(&index_policy(""))
        .alone_with_metrics()
        .start()
        .await;
    // The demo site: alice, Bob.Smith@uni.edu.au, carol and erin in ALPHA, BETA, GAMMA and
    // GPU_LAB.
    let index = index_ready(&h, 4).await;
    assert_eq!(index["projects"], 4, "{index}");
    assert_eq!(index["fresh"], true);
    let indexed = r#"xnat_webhook_xnat_cache_lookups_total{result="index"}"#;
    let counted_before = metric(&h.metrics().await, indexed);
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
    assert_eq!(metric(&m, indexed) - counted_before, 1.0);
    assert!(metric(&m, "xnat_webhook_xnat_index_users") >= 4.0, "{m}");
    assert!(metric(&m, "xnat_webhook_xnat_index_refreshed_timestamp_seconds") > 1.7e9);
}

#[tokio::test]
async fn a_revoked_membership_is_gone_after_the_next_refresh() {
    let h = Harness::builder().policy(&index_policy("")).start().await;
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
    let h = Harness::builder().policy("").start().await;
    h.review(&fixture("alice-default")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = h.xnat.counts();
    assert_eq!((c.projects, c.project_users), (0, 0));
    assert!(h.readyz().await["xnat"].get("index").is_none());
}

/// A project whose member list cannot be read keeps its last list, but that list is not trusted
/// for spawns: its members are looked up per user, so a membership removed meanwhile is not
/// mounted once the next refresh has run (docs/behaviour.md's revocation promise), and the user's
/// other projects still come from XNAT.
#[tokio::test]
async fn a_revoked_membership_is_gone_even_while_its_projects_member_list_fails() {
    let h = Harness::builder()
        .policy(&index_policy(""))
        .alone_with_metrics()
        .start()
        .await;
    index_ready(&h, 4).await;
    let review = fixture("alice-default");
    assert_eq!(project_paths(&review, &h.review(&review).await).len(), 3);

    h.xnat
        .set_endpoint_fault("project_users/BETA", Fault::Status(500));
    h.xnat.set_user("alice", &["ALPHA_owner"]);
    let mut partial = Value::Null;
    for _ in 0..60 {
        partial = h.readyz().await["xnat"]["index"].clone();
        let message = partial["error"]["message"].as_str().unwrap_or_default();
        if message.contains("member list(s) could not be read") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        partial["error"]["message"]
            .as_str()
            .unwrap()
            .contains("project BETA"),
        "{partial}"
    );
    assert_eq!(partial["fresh"], true, "{partial}");
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/ALPHA", "/data/xnat/workspace"]
    );
    assert_eq!(answer_of(&review, &response), "asked");
    // Users of the projects that were read are still answered from the index.
    let review = review_for("carol");
    let response = h.review(&review).await;
    assert_eq!(answer_of(&review, &response), "indexed");
    let m = h.metrics().await;
    assert!(
        metric(
            &m,
            "xnat_webhook_xnat_index_refreshes_total{result=\"partial\"}"
        ) >= 1.0,
        "{m}"
    );
}

/// Each membership is read with the project XNAT lists it under: project ALPHA's custom group
/// `PET_member` (`ALPHA_PET_member`) is no project ALPHA_PET; and an `archive_spec` that
/// describes another project (ALPHA_PET an alias of GAMMA) is refused in a refresh as in a
/// spawn.
#[tokio::test]
async fn the_index_reads_memberships_and_archive_specs_as_xnat_names_them() {
    let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
    xnat.add_custom_group("ALPHA", "ALPHA_PET_member");
    xnat.set_user("mallory", &["ALPHA_PET_member", "BETA_member"]);
    // A project of its own name, whose archive_spec XNAT answers with GAMMA's.
    xnat.set_user("oscar", &["DELTA_PET_member"]);
    xnat.set_alias("DELTA_PET", "GAMMA");
    let h = Harness::builder()
        .standin(xnat)
        .policy(&index_policy(""))
        .start()
        .await;
    index_ready(&h, 6).await;
    let review = review_for("mallory");
    let response = h.review(&review).await;
    assert_eq!(answer_of(&review, &response), "indexed");
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/BETA", "/data/xnat/workspace"]
    );
    let review = review_for("oscar");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response), ["/data/xnat/workspace"]);
    let w = warnings(&response).join("\n");
    assert!(
        w.contains("project DELTA_PET not mounted") && w.contains("describes project \"GAMMA\""),
        "{w}"
    );
}

/// A site's project list is larger than other answers: 7,000 projects (about 1.4 MB as XNAT
/// writes the table) are read whole.
#[tokio::test]
async fn a_project_list_of_a_large_site_is_read_whole() {
    // Its client moves the process-wide XNAT gauges, as a webhook's does.
    let _turn = crate::common::turns::share().await;
    let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
    for i in 0..7000 {
        xnat.add_project(&format!("PROJECT_{i:05}"));
    }
    let (url, _task) = xnat
        .spawn("127.0.0.1:0".parse().unwrap(), "/xnat")
        .await
        .unwrap();
    let policy =
        jupyter_xnat_webhook::policy::Policy::parse(&format!("xnat:\n  url: {url}\n")).unwrap();
    let client = jupyter_xnat_webhook::xnat::XnatClient::new(
        policy.xnat.endpoint.clone(),
        jupyter_xnat_webhook::xnat::CredentialSource::Fixed(
            jupyter_xnat_webhook::xnat::Credentials::new(SVC_USER, SVC_PASSWORD),
        ),
        policy.xnat.client.clone(),
        Default::default(),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let ids = client.project_ids(deadline).await.unwrap();
    assert_eq!(ids.len(), 7004);
}

/// A project whose member list was never read (new since the last refresh, and failing) could
/// hold any listed user: nobody's index answer is complete, so every user is looked up per user
/// until it is read — never answered without it.
#[tokio::test]
async fn a_project_never_read_sends_every_user_to_a_lookup() {
    let h = Harness::builder().policy(&index_policy("")).start().await;
    index_ready(&h, 4).await;
    let review = review_for("carol");
    assert_eq!(answer_of(&review, &h.review(&review).await), "indexed");
    h.xnat
        .set_endpoint_fault("project_users/NEWP", Fault::Status(500));
    h.xnat.set_user(
        "carol",
        &["GPU_LAB_member", "ALPHA_collaborator", "NEWP_member"],
    );
    for _ in 0..60 {
        let index = h.readyz().await["xnat"]["index"].clone();
        if index["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("project NEWP"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = h.review(&review).await;
    assert_eq!(answer_of(&review, &response), "asked");
    assert!(
        project_paths(&review, &response).contains(&"/data/projects/NEWP".to_owned()),
        "{:?}",
        project_paths(&review, &response)
    );
}

/// A hub name XNAT has only in another case (`jsmith` for `JSmith`) is answered from the
/// login's index entry on every spawn, so its revocations apply at the next refresh too — not
/// after `cacheTtl`.
#[tokio::test]
async fn a_login_in_another_case_follows_the_index() {
    let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
    xnat.set_user("JSmith", &["GAMMA_member", "BETA_member"]);
    let h = Harness::builder()
        .standin(xnat)
        .policy(&index_policy("  cacheTtl: 10m\n"))
        .start()
        .await;
    index_ready(&h, 5).await;
    let review = review_for("jsmith");
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response).len(), 3);
    let response = h.review(&review).await;
    assert_eq!(answer_of(&review, &response), "indexed");
    h.xnat.set_user("JSmith", &["GAMMA_member"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    index_ready(&h, 5).await;
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/GAMMA", "/data/xnat/workspace"]
    );
    let pod = patched_pod(&review, &response);
    assert_eq!(env_of(&pod, "XNAT_USER").as_deref(), Some("JSmith"));
}
