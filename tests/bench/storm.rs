//! The first day of term (`make bench-storm`, release build): N cold users' reviews at once, from
//! one address as the API server sends them, against the XNAT stand-in answering each call
//! after a fixed latency. Once without the access index and once with it warm; for each, the
//! time to the last answer, p50/p99 per review, how many got their project, the XNAT calls the
//! storm made (by endpoint) and the most calls XNAT had at once.
//!
//! `STORM_USERS` (500), `STORM_XNAT_MS` (100), `STORM_LIMIT` (`maxConcurrentRequests`, 8).
//!
//! Then the memory a big site costs: the release server in its own process, its RSS with
//! `STORM_SITE_USERS` (10,000) users in 3 of 200 projects each, cached (one review each) and
//! indexed.

#[path = "../common/mod.rs"]
mod common;
#[path = "process.rs"]
mod process;
#[path = "stats.rs"]
mod stats;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use xnat_standin::{Counts, Standin};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let users = env("STORM_USERS", 500) as usize;
    let latency = Duration::from_millis(env("STORM_XNAT_MS", 100));
    let limit = env("STORM_LIMIT", 8);
    println!(
        "{users} cold users at once, XNAT answering each call after {latency:?}, \
         maxConcurrentRequests: {limit}"
    );
    println!(
        "{:<14} {:>10} {:>9} {:>9} {:>13} {:>8} {:>22} {:>15}",
        "index",
        "last (s)",
        "p50 (ms)",
        "p99 (ms)",
        "with project",
        "refused",
        "XNAT calls",
        "peak at XNAT"
    );
    rt.block_on(async {
        for index in [false, true] {
            storm(users, latency, limit, index).await;
        }
        let site = env("STORM_SITE_USERS", 10_000) as usize;
        for index in [false, true] {
            memory(site, index).await;
        }
    });
}

/// The release server's RSS after `users` users are cached (a review each) or indexed.
async fn memory(users: usize, index: bool) {
    let xnat = Standin::new(common::SVC_USER, common::SVC_PASSWORD);
    for i in 0..users {
        let groups: Vec<String> = (0..3)
            .map(|k| format!("P{:03}_member", (i * 7 + k * 31) % 200))
            .collect();
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        xnat.set_user(&format!("student{i:05}"), &groups);
    }
    let (url, _task) = xnat
        .spawn("127.0.0.1:0".parse().unwrap(), "/xnat")
        .await
        .unwrap();
    let mut policy = "xnat:\n  cacheTtl: 1h\n  negativeCacheTtl: 1h\n".to_owned();
    if index {
        policy.push_str("  index:\n    enabled: true\n    refreshInterval: 1h\n    maxAge: 2h\n");
    }
    let server = process::Webhook::start(&url, &policy);
    let client = server.client();
    let idle = server.rss_kib();
    let took = Instant::now();
    if index {
        loop {
            let response = client.get(server.url("/readyz")).send().await.unwrap();
            let ready: Value = response.json().await.unwrap_or_default();
            if ready["xnat"]["index"]["users"] == users {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        let names: Vec<String> = (0..users).map(|i| format!("student{i:05}")).collect();
        for chunk in names.chunks(64) {
            let reviews = chunk.iter().map(|u| {
                let body = serde_json::to_vec(&common::review_for(u)).unwrap();
                let client = client.clone();
                let target = server.url("/mutate");
                async move {
                    client
                        .post(target)
                        .body(body)
                        .send()
                        .await
                        .unwrap()
                        .status()
                }
            });
            for status in futures::future::join_all(reviews).await {
                assert_eq!(status, 200);
            }
        }
    }
    println!(
        "RSS with {users} users {}: {:.1} MiB (idle {:.1} MiB; {:.1} s to fill)",
        if index { "indexed" } else { "cached" },
        server.rss_kib() as f64 / 1024.0,
        idle as f64 / 1024.0,
        took.elapsed().as_secs_f64()
    );
}

async fn storm(users: usize, latency: Duration, limit: u64, index: bool) {
    let xnat = Standin::new(common::SVC_USER, common::SVC_PASSWORD);
    let names: Vec<String> = (0..users).map(|i| format!("student{i:04}")).collect();
    for u in &names {
        xnat.set_user(u, &["CLASS101_member"]);
    }
    let mut policy = format!("xnat:\n  maxConcurrentRequests: {limit}\n");
    if index {
        policy.push_str("  index:\n    enabled: true\n    refreshInterval: 10m\n    maxAge: 1h\n");
    }
    let h = common::Harness::builder()
        .standin(xnat.clone())
        .policy(&policy)
        .start()
        .await;
    xnat.set_latency(latency);
    if index {
        wait_for_index(&h, users).await;
    }
    let bodies: Vec<Vec<u8>> = names
        .iter()
        .map(|u| serde_json::to_vec(&common::review_for(u)).unwrap())
        .collect();
    // One connection per review in flight, as the API server opens them (HTTP/1.1 here: over
    // HTTP/2, Go's client opens another connection past the server's 4 streams, reqwest waits).
    jupyter_xnat_webhook::install_crypto_provider();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(h.ca_pem.as_bytes()).unwrap()])
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let target = h.url("/mutate");
    xnat.reset_max_in_flight();
    let before = xnat.counts();
    let started = Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (client, target) = (client.clone(), target.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let r = client.post(&target).body(body).send().await.unwrap();
                let status = r.status().as_u16();
                let body = r.bytes().await.unwrap();
                (t.elapsed(), status, has_project(&body))
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(users);
    let (mut with_project, mut refused) = (0, 0);
    for t in tasks {
        let (took, status, project) = t.await.unwrap();
        lat.push(took);
        refused += usize::from(status != 200);
        with_project += usize::from(project);
    }
    let last = started.elapsed();
    let after = xnat.counts();
    lat.sort();
    println!(
        "{:<14} {:>10.2} {:>9.1} {:>9.1} {:>13} {:>8} {:>22} {:>15}",
        if index { "on (warm)" } else { "off" },
        last.as_secs_f64(),
        stats::quantile(&lat, 0.5).as_secs_f64() * 1000.0,
        stats::quantile(&lat, 0.99).as_secs_f64() * 1000.0,
        format!("{with_project}/{users}"),
        refused,
        calls(&before, &after),
        after.max_in_flight,
    );
    h.stop().await;
}

/// The XNAT calls between two counts: the total, then the endpoints that had any.
fn calls(before: &Counts, after: &Counts) -> String {
    let parts = [
        ("login", after.logins - before.logins),
        ("groups", after.groups - before.groups),
        ("archive", after.archive_specs - before.archive_specs),
        ("projects", after.projects - before.projects),
        ("members", after.project_users - before.project_users),
    ];
    let named: Vec<String> = parts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!("{} ({})", after.total() - before.total(), named.join(", "))
}

async fn wait_for_index(h: &common::Harness, users: usize) {
    for _ in 0..600 {
        if h.readyz().await["xnat"]["index"]["users"] == users {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the index never listed {users} users");
}

/// Whether a response's patch mounts the class project.
fn has_project(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let Some(patch) = v["response"]["patch"].as_str() else {
        return false;
    };
    base64::engine::general_purpose::STANDARD
        .decode(patch)
        .is_ok_and(|p| String::from_utf8_lossy(&p).contains("/data/projects/CLASS101"))
}
