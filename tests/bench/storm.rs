//! The first day of term (`make bench-storm`, release build): N cold users' reviews at once, from
//! one address as the API server sends them, against the XNAT stand-in answering each call
//! after a fixed latency. Once without the access index and once with it warm; for each, the
//! time to the last answer, p50/p99 per review, how many got their project (against what the
//! slots allow within the budget: the planning figure), how many were refused, the XNAT calls
//! the storm made (by endpoint), the most calls XNAT had at once, and the p99 of a warm user's
//! reviews during the storm against its p99 without it.
//!
//! `STORM_USERS` (500), `STORM_XNAT_MS` (100), `STORM_LIMIT` (`maxConcurrentRequests`, 8).
//!
//! Then the memory: the release server in its own process, its peak RSS with `STORM_WAITING`
//! (2,000) reviews waiting for an XNAT that does not answer within the budget; and its RSS with
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
    let budget = Duration::from_secs(4);
    let rounds = (budget.as_secs_f64() / latency.as_secs_f64()).floor();
    // Logged in and the class's archive_spec known (a warm user's review did both): one call of
    // L per cold user, C at a time, each ending within the budget.
    let allowed = (limit as f64 * rounds) as usize;
    println!(
        "planning: limit C = {limit}, XNAT L = {latency:?}, budget B = {budget:?}: the slots allow \
         C × ⌊B/L⌋ = {allowed} cold users their data within the budget (one call each; from a \
         cold start the login and each project's archive_spec take a round first)"
    );
    println!(
        "{:<10} {:>8} {:>8} {:>8} {:>18} {:>7} {:>22} {:>7} {:>20}",
        "index",
        "last (s)",
        "p50 (ms)",
        "p99 (ms)",
        "with project",
        "refused",
        "XNAT calls",
        "peak",
        "warm p99 (ms) alone/storm"
    );
    rt.block_on(async {
        for index in [false, true] {
            storm(users, latency, limit, index, allowed).await;
        }
        index_warmup(200, latency).await;
        let n = env("STORM_WAITING", 2000) as usize;
        idle_connections(n).await;
        waiting(n).await;
        let site = env("STORM_SITE_USERS", 10_000) as usize;
        for index in [false, true] {
            memory(site, index).await;
        }
    });
}

/// The stand-in on a free loopback port: its URL, and the task serving it (held by the caller).
async fn served(xnat: &std::sync::Arc<Standin>) -> (String, impl Sized) {
    let addr = "127.0.0.1:0".parse().unwrap();
    xnat.spawn(addr, "/xnat").await.unwrap()
}

/// The release server's peak RSS with `n` reviews waiting at once for an XNAT slower than the
/// budget: each holds its connection and body until the budget ends.
async fn waiting(n: usize) {
    let xnat = Standin::new(common::SVC_USER, common::SVC_PASSWORD);
    for i in 0..n {
        xnat.set_user(&format!("student{i:05}"), &["CLASS101_member"]);
    }
    let (url, _task) = served(&xnat).await;
    let server = process::Webhook::start(&url, "");
    let idle = server.rss_kib();
    xnat.set_latency(Duration::from_secs(30));
    // One connection per review, as the API server opens them.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(server.ca_pem().as_bytes()).unwrap()])
        .http1_only()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let target = server.url("/mutate");
    let sent: Vec<_> = (0..n)
        .map(|i| {
            let body = serde_json::to_vec(&common::review_for(&format!("student{i:05}"))).unwrap();
            let (client, target) = (client.clone(), target.clone());
            tokio::spawn(async move {
                client
                    .post(target)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let mut peak = 0;
    let all = futures::future::join_all(sent);
    tokio::pin!(all);
    let statuses = loop {
        tokio::select! {
            statuses = &mut all => break statuses,
            () = tokio::time::sleep(Duration::from_millis(50)) => peak = peak.max(server.rss_kib()),
        }
    };
    let answered = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
    println!(
        "peak RSS with {n} reviews waiting for XNAT: {:.1} MiB (idle {:.1} MiB; {answered}/{n} \
         answered 200 by onError at the budget)",
        peak as f64 / 1024.0,
        idle as f64 / 1024.0,
    );
}

/// The release server's RSS with `n` connections open and idle (handshake done, no request): what
/// a connection costs without a review.
async fn idle_connections(n: usize) {
    let xnat = Standin::new(common::SVC_USER, common::SVC_PASSWORD);
    let (url, _task) = served(&xnat).await;
    let server = process::Webhook::start(&url, "");
    let idle = server.rss_kib();
    jupyter_xnat_webhook::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::pem::PemObject::from_pem_slice(server.ca_pem().as_bytes());
    roots.add(ca.unwrap()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut held = Vec::new();
    for _ in 0..n {
        let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        held.push(connector.connect(name, tcp).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = server.rss_kib();
    println!(
        "RSS with {n} idle connections: {:.1} MiB (idle {:.1} MiB): {:.0} KiB per connection",
        rss as f64 / 1024.0,
        idle as f64 / 1024.0,
        (rss - idle) as f64 / n as f64
    );
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
    let (url, _task) = served(&xnat).await;
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

/// How long a new replica takes to read its access index of `projects` projects (2,000 users)
/// from an XNAT answering each call after `latency`; spawns meanwhile are looked up per user.
async fn index_warmup(projects: usize, latency: Duration) {
    let xnat = Standin::new(common::SVC_USER, common::SVC_PASSWORD);
    for i in 0..2000 {
        xnat.set_user(
            &format!("student{i:05}"),
            &[&format!("P{:03}_member", i % projects)],
        );
    }
    let policy = "xnat:\n  index:\n    enabled: true\n    refreshInterval: 1h\n    maxAge: 2h\n";
    let h = common::Harness::builder()
        .standin(xnat.clone())
        .policy(policy)
        .xnat_latency(latency)
        .start()
        .await;
    let started = Instant::now();
    wait_for_index(&h, 2000).await;
    let calls = xnat.counts().total();
    println!(
        "a new replica's index of {projects} projects, XNAT at {latency:?}: ready after {:.1} s \
         ({calls} calls, xnat.index.concurrency 2 at a time)",
        started.elapsed().as_secs_f64()
    );
    h.stop().await;
}

/// The p99 of one warm user's reviews, one after another on a kept-alive connection, until `done`.
async fn warm_p99(h: &common::Harness, done: impl Fn() -> bool) -> Duration {
    let review = common::review_for("warm");
    let mut lat = Vec::new();
    while lat.len() < 50 || !done() {
        let t = Instant::now();
        h.review(&review).await;
        lat.push(t.elapsed());
        if lat.len() >= 100_000 {
            break;
        }
    }
    lat.sort();
    stats::quantile(&lat, 0.99)
}

async fn storm(users: usize, latency: Duration, limit: u64, index: bool, allowed: usize) {
    let xnat = Standin::new(common::SVC_USER, common::SVC_PASSWORD);
    let names: Vec<String> = (0..users).map(|i| format!("student{i:04}")).collect();
    for u in names.iter().chain([&"warm".to_owned()]) {
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
    let warming = Instant::now();
    if index {
        wait_for_index(&h, users + 1).await;
        println!(
            "(the index of {} users in 1 project was ready {:.2} s after start: 1 + 2P calls)",
            users + 1,
            warming.elapsed().as_secs_f64()
        );
    }
    h.review(&common::review_for("warm")).await;
    let alone = warm_p99(&h, || true).await;
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
    let stormed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let during = {
        let stormed = stormed.clone();
        warm_p99(&h, move || {
            stormed.load(std::sync::atomic::Ordering::Relaxed)
        })
    };
    let collect = async {
        let mut all = Vec::with_capacity(users);
        for t in tasks {
            all.push(t.await.unwrap());
        }
        stormed.store(true, std::sync::atomic::Ordering::Relaxed);
        all
    };
    let (answers, during) = tokio::join!(collect, during);
    let after = xnat.counts();
    let result = Storm {
        answers,
        last: started.elapsed(),
        calls: calls(&before, &after),
        peak: after.max_in_flight,
        warm: (alone, during),
    };
    result.print(if index { "on (warm)" } else { "off" }, allowed, index);
    h.stop().await;
}

/// What one storm came to.
struct Storm {
    /// Each review's time, status and whether it got its project.
    answers: Vec<(Duration, u16, bool)>,
    last: Duration,
    calls: String,
    peak: usize,
    /// The warm user's p99 alone and during the storm.
    warm: (Duration, Duration),
}

impl Storm {
    fn print(&self, label: &str, allowed: usize, index: bool) {
        let users = self.answers.len();
        let mut lat: Vec<Duration> = self.answers.iter().map(|a| a.0).collect();
        lat.sort();
        let refused = self.answers.iter().filter(|a| a.1 != 200).count();
        let with_project = self.answers.iter().filter(|a| a.2).count();
        let share = if index || allowed == 0 {
            String::new()
        } else {
            let of = 100.0 * with_project as f64 / allowed.min(users) as f64;
            format!(" ({of:.0} %)")
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{:<10} {:>8.2} {:>8.1} {:>8.1} {:>18} {:>7} {:>22} {:>7} {:>20}",
            label,
            self.last.as_secs_f64(),
            ms(stats::quantile(&lat, 0.5)),
            ms(stats::quantile(&lat, 0.99)),
            format!("{with_project}/{users}{share}"),
            refused,
            self.calls,
            self.peak,
            format!("{:.1} / {:.1}", ms(self.warm.0), ms(self.warm.1)),
        );
    }
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
    for _ in 0..1200 {
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
