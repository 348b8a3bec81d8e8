//! Live reload, the way kubelet updates mounted ConfigMaps and Secrets (a new timestamped
//! directory and an atomic `..data` symlink swap) and by in-place writes, while reviews are in
//! flight: no failed request, no mixed result, a bad version rejected and the old one kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// (claim, WHICH env) of a response: which policy produced it.
fn fingerprint(response: &Value) -> (String, String) {
    let patch = decoded_patch(response).expect("a notebook pod is always mutated here");
    let mut claim = String::new();
    let mut which = String::new();
    for op in patch.as_array().unwrap() {
        let v = &op["value"];
        if let Some(c) = v["persistentVolumeClaim"]["claimName"].as_str() {
            claim = c.to_owned();
        }
        if v["name"] == "WHICH" {
            which = v["value"].as_str().unwrap().to_owned();
        }
    }
    (claim, which)
}

fn policy(which: &str) -> String {
    format!("storage:\n  claimName: claim-{which}\nenv:\n  WHICH: {which}\n")
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_policy_reloads_atomically_under_load_and_bad_versions_are_rejected() {
    let config_map = KubeletDir::new(&[("policy.yaml", policy("a").as_bytes())]);
    let h = Arc::new(
        Harness::builder()
            .alone_with_metrics()
            .policy_file(config_map.path("policy.yaml"))
            .start()
            .await,
    );
    let review = fixture("alice-default");

    // Reviews in flight from 8 clients while the ConfigMap is swapped.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (h, stop, review) = (h.clone(), stop.clone(), review.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let body = serde_json::to_vec(&review).unwrap();
                let (status, body) = h.post_raw(body).await;
                assert_eq!(status, 200, "a review failed during the reload");
                seen.push(fingerprint(&serde_json::from_slice(&body).unwrap()));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    config_map.swap(&[("policy.yaml", policy("b").as_bytes())]);
    wait_for("policy b", async || {
        fingerprint(&h.review(&review).await).0 == "claim-b"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    for c in clients {
        seen.extend(c.await.unwrap());
    }
    let a = ("claim-a".to_string(), "a".to_string());
    let b = ("claim-b".to_string(), "b".to_string());
    assert!(
        seen.iter().all(|f| *f == a || *f == b),
        "a review saw a mix of policies"
    );
    assert!(
        seen.contains(&a) && seen.contains(&b),
        "both versions served ({} reviews)",
        seen.len()
    );
    let on_a = seen.iter().filter(|f| **f == a).count();
    println!(
        "policy reload under load: {} reviews, 0 failed, {on_a} on A, {} on B",
        seen.len(),
        seen.len() - on_a
    );
    let ready = h.readyz().await;
    assert_eq!(ready["policy"]["reloads"], 1);

    // A version that does not validate: rejected, the old one keeps serving, and it shows.
    let before = metric(
        &h.metrics().await,
        "xnat_webhook_reloads_total{input=\"policy\",result=\"failure\"}",
    );
    config_map.swap(&[("policy.yaml", b"xnat:\n  timeout: 30s\n")]);
    wait_for("the rejection", async || {
        h.readyz().await["policy"]["lastError"].as_str().is_some()
    })
    .await;
    let ready = h.readyz().await;
    assert!(
        ready["policy"]["lastError"]
            .as_str()
            .unwrap()
            .contains("xnat.timeout"),
        "{ready}"
    );
    assert_eq!(fingerprint(&h.review(&review).await), b);
    let after = metric(
        &h.metrics().await,
        "xnat_webhook_reloads_total{input=\"policy\",result=\"failure\"}",
    );
    assert_eq!(after, before + 1.0);

    // A fixed version, written in place this time (not through a symlink swap).
    let target = std::fs::canonicalize(config_map.path("policy.yaml")).unwrap();
    std::fs::write(&target, policy("c")).unwrap();
    wait_for("policy c", async || {
        fingerprint(&h.review(&review).await).1 == "c"
    })
    .await;
    assert!(h.readyz().await["policy"].get("lastError").is_none());
}

#[tokio::test]
async fn a_reload_keeps_cached_answers_unless_they_no_longer_mean_the_same() {
    let config_map = KubeletDir::new(&[("policy.yaml", b"xnat:\n  cacheTtl: 10m\n")]);
    let h = Harness::builder()
        .policy_file(config_map.path("policy.yaml"))
        .start()
        .await;
    let review = review_for("alice");
    h.review(&review).await;
    assert_eq!(h.xnat.counts().groups, 1);

    // New timeouts and concurrency: a new client, but the cached answers stay.
    config_map.swap(&[(
        "policy.yaml",
        b"xnat:\n  cacheTtl: 10m\n  timeout: 3s\n  maxConcurrentRequests: 4\n",
    )]);
    wait_for("reload 1", async || {
        h.readyz().await["policy"]["reloads"] == 1
    })
    .await;
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response).len(), 3);
    assert_eq!(h.xnat.counts().groups, 1, "the cache survived the reload");

    // Another project source: cached answers no longer mean the same, so they go.
    config_map.swap(&[(
        "policy.yaml",
        b"xnat:\n  cacheTtl: 10m\n  timeout: 3s\n  projectSource: access\n",
    )]);
    wait_for("reload 2", async || {
        h.readyz().await["policy"]["reloads"] == 2
    })
    .await;
    let response = h.review(&review).await;
    assert_eq!(project_paths(&review, &response).len(), 3);
    assert_eq!(h.xnat.counts().access, 1);
}

#[tokio::test]
async fn an_in_place_write_that_pauses_is_applied_only_once_complete() {
    let config_map = KubeletDir::new(&[("policy.yaml", policy("a").as_bytes())]);
    let h = Harness::builder()
        .policy_file(config_map.path("policy.yaml"))
        .start()
        .await;
    let review = fixture("alice-default");
    let target = std::fs::canonicalize(config_map.path("policy.yaml")).unwrap();
    // The first half is a valid policy by itself (env only, the default claim): applying it
    // would give every notebook the wrong volume until the rest arrives.
    let whole = policy("b");
    let (first, rest) = whole.split_at(whole.find("env:").unwrap());
    let mut file = std::fs::File::create(&target).unwrap();
    std::io::Write::write_all(&mut file, rest.as_bytes()).unwrap();
    file.sync_all().unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    std::io::Write::write_all(&mut file, first.as_bytes()).unwrap();
    file.sync_all().unwrap();
    drop(file);
    wait_for("policy b", async || {
        fingerprint(&h.review(&review).await) == ("claim-b".to_string(), "b".to_string())
    })
    .await;
    assert_eq!(
        h.readyz().await["policy"]["reloads"],
        1,
        "the half was applied"
    );
}

/// A policy that keeps BETA out, and names itself in `WHICH`.
fn never_beta(which: &str) -> String {
    format!("env:\n  WHICH: {which}\nstorage:\n  neverMount: [BETA]\n")
}

fn policy_failures(metrics: &str) -> f64 {
    metric(
        metrics,
        "xnat_webhook_reloads_total{input=\"policy\",result=\"failure\"}",
    )
}

/// A policy file emptied (truncated, or left with only whitespace and comments) is refused: an
/// empty file would otherwise be the default policy, which keeps nothing out.
#[tokio::test]
async fn an_emptied_policy_file_keeps_the_policy_in_force() {
    let config_map = KubeletDir::new(&[("policy.yaml", never_beta("a").as_bytes())]);
    let h = Harness::builder()
        .alone_with_metrics()
        .policy_file(config_map.path("policy.yaml"))
        .start()
        .await;
    let review = review_for("alice");
    let version = h.readyz().await["policy"]["version"].clone();
    let before = policy_failures(&h.metrics().await);
    let target = std::fs::canonicalize(config_map.path("policy.yaml")).unwrap();
    for (n, empty) in ["", "  \n# emptied by hand\n\n"].into_iter().enumerate() {
        std::fs::write(&target, empty).unwrap();
        wait_for("the refusal", async || {
            policy_failures(&h.metrics().await) >= before + n as f64 + 1.0
        })
        .await;
        let ready = h.readyz().await;
        assert_eq!(ready["policy"]["version"], version, "{ready}");
        let error = ready["policy"]["lastError"].as_str().unwrap_or_default();
        assert!(error.contains("the policy file is empty"), "{ready}");
        let response = h.review(&review).await;
        assert_eq!(
            env_of(&patched_pod(&review, &response), "WHICH").as_deref(),
            Some("a")
        );
        assert_eq!(
            project_paths(&review, &response),
            ["/data/projects/ALPHA", "/data/xnat/workspace"]
        );
    }
}

/// A file written in place that pauses mid-write longer than a moment is applied only once it
/// has stayed the same for the settle period: the first half here is a valid policy without the
/// `neverMount` rule.
#[tokio::test]
async fn a_policy_written_in_place_with_a_long_pause_is_not_applied_half_written() {
    let config_map = KubeletDir::new(&[("policy.yaml", never_beta("a").as_bytes())]);
    let h = Harness::builder()
        .policy_file(config_map.path("policy.yaml"))
        .start()
        .await;
    let review = review_for("alice");
    let target = std::fs::canonicalize(config_map.path("policy.yaml")).unwrap();
    let whole = never_beta("b");
    let (first, rest) = whole.split_at(whole.find("storage:").unwrap());
    let mut file = std::fs::File::create(&target).unwrap();
    std::io::Write::write_all(&mut file, first.as_bytes()).unwrap();
    file.sync_all().unwrap();
    let paused = Instant::now();
    while paused.elapsed() < Duration::from_millis(1500) {
        let response = h.review(&review).await;
        let pod = patched_pod(&review, &response);
        assert_eq!(
            env_of(&pod, "WHICH").as_deref(),
            Some("a"),
            "the half applied"
        );
        assert_eq!(
            project_paths(&review, &response),
            ["/data/projects/ALPHA", "/data/xnat/workspace"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::io::Write::write_all(&mut file, rest.as_bytes()).unwrap();
    file.sync_all().unwrap();
    drop(file);
    wait_for("policy b", async || {
        let response = h.review(&review).await;
        env_of(&patched_pod(&review, &response), "WHICH").as_deref() == Some("b")
    })
    .await;
    let response = h.review(&review).await;
    assert_eq!(
        project_paths(&review, &response),
        ["/data/projects/ALPHA", "/data/xnat/workspace"]
    );
    let ready = h.readyz().await;
    assert_eq!(ready["policy"]["reloads"], 1, "{ready}");
    assert!(ready["policy"].get("lastError").is_none(), "{ready}");
}

/// `--pods-requesters` holds on every reload as at start: a new policy file that names its own
/// requester does not bring it back.
#[tokio::test]
async fn the_requesters_override_holds_across_a_reload() {
    const XNAT_HUB: &str = "system:serviceaccount:xnat:hub";
    let named = |which: &str| format!("{}pods:\n  requesters: [{HUB}]\n", policy(which));
    let config_map = KubeletDir::new(&[("policy.yaml", named("a").as_bytes())]);
    let h = Harness::builder()
        .policy_file(config_map.path("policy.yaml"))
        .pods_requesters(&[XNAT_HUB])
        .start()
        .await;
    let from_xnat_hub = {
        let mut review = fixture("alice-default");
        review["request"]["userInfo"]["username"] = serde_json::json!(XNAT_HUB);
        review
    };
    // The claim a review from `review`'s requester got, or None when it was skipped.
    let claim = async |review: &Value| {
        let response = h.review(review).await;
        decoded_patch(&response).map(|_| fingerprint(&response).0)
    };
    assert_eq!(claim(&from_xnat_hub).await.as_deref(), Some("claim-a"));
    assert_eq!(claim(&fixture("alice-default")).await, None);

    config_map.swap(&[("policy.yaml", named("b").as_bytes())]);
    wait_for("policy b", async || {
        h.readyz().await["policy"]["reloads"] == 1
    })
    .await;
    assert_eq!(claim(&from_xnat_hub).await.as_deref(), Some("claim-b"));
    assert_eq!(claim(&fixture("alice-default")).await, None);
}
