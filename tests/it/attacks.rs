//! The red team's attacks from other pods, with the default deployment's weak point (no client
//! certificate) and the control plane named (`--control-plane`; the harness's client calls from
//! 127.0.0.1, the control plane, and attackers from 127.0.0.2 and up): the API server's reviews
//! are all answered with their data, probes are all answered, and forged reviews post no Events.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::fake_kube::FakeKube;
use crate::common::{Harness, metric, project_paths, review_for};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use xnat_standin::Standin;

fn users(names: impl IntoIterator<Item = String>) -> std::sync::Arc<Standin> {
    let xnat = Standin::new(common::SVC_USER, common::SVC_PASSWORD);
    for u in names {
        xnat.set_user(&u, &["CLASS101_member"]);
    }
    xnat
}

fn has_data(review: &Value, response: &Value) -> bool {
    project_paths(review, response)
        .iter()
        .any(|p| p.ends_with("/CLASS101"))
}

/// Reviews for `n` users named `prefix{i}`, sent at once from `client`; their (status, body).
fn flood(
    client: &reqwest::Client,
    url: String,
    prefix: &'static str,
    n: usize,
    padding: usize,
) -> tokio::task::JoinHandle<Vec<(u16, Value)>> {
    let sent: Vec<_> = (0..n)
        .map(|i| {
            let mut review = review_for(&format!("{prefix}{i}"));
            if padding > 0 {
                review["request"]["object"]["metadata"]["annotations"]["padding"] =
                    json!("x".repeat(padding));
            }
            let (client, url) = (client.clone(), url.clone());
            async move {
                match client.post(url).json(&review).send().await {
                    Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
                    Err(_) => (0, Value::Null),
                }
            }
        })
        .collect();
    tokio::spawn(futures::future::join_all(sent))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn forged_cold_users_never_take_the_api_servers_xnat_slots() {
    let names = (0..60).map(|i| format!("forged{i}")).chain(["real".into()]);
    let xnat = users(names);
    let policy = "xnat:\n  maxConcurrentRequests: 4\n  timeout: 2s\n  budget: 3s\n";
    let h = Harness::builder()
        .alone_with_metrics()
        .standin(xnat.clone())
        .policy(policy)
        .start()
        .await;
    // Logged in and the class's archive_spec known: what is left is one call per user.
    h.review(&review_for("forged59")).await;
    xnat.set_latency(Duration::from_millis(800));
    let forged = flood(
        &h.client_from("127.0.0.2"),
        h.url("/mutate"),
        "forged",
        59,
        0,
    );
    wait_for("the forged flood reaching XNAT", || {
        xnat.counts().max_in_flight >= 2
    })
    .await;
    // Behind 59 forged users, 4 at a time of 800 ms, a real one would wait 12 s: it does not.
    let real = review_for("real");
    let response = h.review(&real).await;
    assert!(has_data(&real, &response), "{response}");
    assert!(
        xnat.counts().max_in_flight <= 4,
        "never more than the limit at XNAT"
    );
    for (status, _) in forged.await.unwrap() {
        assert_eq!(
            status, 200,
            "forged reviews are answered too, from their share"
        );
    }
}

#[tokio::test]
async fn forged_bodies_never_crowd_out_the_api_server() {
    let names = (0..12).map(|i| format!("big{i}")).chain(["real".into()]);
    let xnat = users(names);
    let policy = "xnat:\n  maxConcurrentRequests: 4\n  timeout: 3s\n  budget: 4s\n";
    let h = Harness::builder()
        .alone_with_metrics()
        .standin(xnat.clone())
        .policy(policy)
        .start()
        .await;
    h.review(&review_for("big11")).await;
    xnat.set_latency(Duration::from_secs(2));
    // Five addresses hold 12 bodies of ~1 MiB each while they wait for XNAT: more than the
    // 48 MiB everyone shares (and, before, the whole budget).
    let floods: Vec<_> = (2..7)
        .map(|i| {
            let client = h.client_from(&format!("127.0.0.{i}"));
            flood(&client, h.url("/mutate"), "big", 12, 1_000_000)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let real = review_for("real");
    let (status, body) = h.post_raw(serde_json::to_vec(&real).unwrap()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let response: Value = serde_json::from_slice(&body).unwrap();
    assert!(has_data(&real, &response), "{response}");
    let mut refused = 0;
    for (status, _) in futures::future::join_all(floods)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
    {
        assert!(matches!(status, 200 | 503), "{status}");
        refused += usize::from(status == 503);
    }
    assert!(refused > 0, "the flood was over the others' share");
    let counted = metric(
        &h.metrics().await,
        r#"xnat_webhook_admissions_total{outcome="errored",reason="body_budget"}"#,
    );
    assert_eq!(counted as usize, refused, "every refusal is counted");
}

/// A TLS connection from `ip` to `addr` that sends one byte of a request and holds it.
async fn one_byte(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    ip: &str,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    jupyter_xnat_webhook::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).unwrap();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(format!("{ip}:0").parse().unwrap()).ok()?;
    let tcp = socket.connect(addr).await.ok()?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connecting = connector.connect(name, tcp);
    let mut tls = tokio::time::timeout(Duration::from_secs(2), connecting)
        .await
        .ok()?
        .ok()?;
    tls.write_all(b"P").await.ok()?;
    tls.flush().await.ok()?;
    Some(tls)
}

#[tokio::test]
async fn one_byte_connections_never_push_the_api_servers_out() {
    let h = Harness::builder()
        .alone_with_metrics()
        .max_connections(64)
        .start()
        .await;
    // Three addresses keep opening connections that send one byte and stall, for as long as
    // the API server sends reviews.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let (addr, ca, stop) = (h.addr, h.ca_pem.clone(), stop.clone());
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(c) = one_byte(addr, &ca, ip).await {
                    held.push(c);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            held.len()
        });
        attackers.push(held);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The API server: one new connection per review, 40 at once, twice.
    for round in 0..2 {
        let client = h.client_from("127.0.0.1");
        let reviews = (0..40).map(|_| {
            let (client, url) = (client.clone(), h.url("/mutate"));
            let review = review_for("alice");
            async move {
                let r = client.post(url).json(&review).send().await;
                r.map(|r| r.status().as_u16()).map_err(|e| format!("{e:?}"))
            }
        });
        for (i, answer) in futures::future::join_all(reviews).await.iter().enumerate() {
            assert_eq!(
                answer.as_ref().ok(),
                Some(&200),
                "round {round}, review {i}: {answer:?}"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened: usize = futures::future::join_all(attackers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert!(
        opened > 32,
        "the attackers held their share ({opened} connections)"
    );
    let text = h.metrics().await;
    let evicted = metric(
        &text,
        r#"xnat_webhook_connections_evicted_total{port="webhook",state="stalled"}"#,
    );
    let refused = metric(
        &text,
        r#"xnat_webhook_connections_refused_total{port="webhook",reason="busy"}"#,
    ) + metric(
        &text,
        r#"xnat_webhook_connections_refused_total{port="webhook",reason="per_address"}"#,
    );
    assert!(evicted + refused > 0.0, "what was cut is counted:\n{text}");
}

#[tokio::test]
async fn a_metrics_port_full_of_stalled_connections_fails_no_probe() {
    let h = Harness::builder()
        .alone_with_metrics()
        .policy("")
        .alone_with_metrics()
        .start()
        .await;
    // Four addresses take every metrics slot with one byte each.
    let mut held = Vec::new();
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        for _ in 0..jupyter_xnat_webhook::server::listen::METRICS.per_peer {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            let mut tcp = socket.connect(h.metrics_addr).await.unwrap();
            tcp.write_all(b"G").await.unwrap();
            held.push(tcp);
        }
    }
    // kubelet's exec probe, as the Deployment runs it, is answered every time.
    let bin = env!("CARGO_BIN_EXE_jupyter-xnat-webhook");
    for which in ["ready", "live", "ready"] {
        let out = tokio::process::Command::new(bin)
            .args(["probe", which, "--addr", &h.probe_addr.to_string()])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And once they have stalled, Prometheus gets in again.
    tokio::time::sleep(jupyter_xnat_webhook::server::STALLED_AFTER).await;
    let text = h.metrics().await;
    assert!(
        text.contains("xnat_webhook_connections_evicted_total"),
        "{text}"
    );
    drop(held);
}

#[tokio::test]
async fn forged_reviews_post_no_events() {
    let (kube, url) = FakeKube::start().await;
    let h = Harness::builder()
        .alone_with_metrics()
        .events(FakeKube::client(&url), Default::default())
        .start()
        .await;
    // Forged reviews of somebody's pod, for a user whose warning would be on its spawn page.
    let forged = review_for("nobody-knows-me");
    let forger = h.client_from("127.0.0.2");
    for _ in 0..20 {
        let r = forger
            .post(h.url("/mutate"))
            .json(&forged)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The API server's review of the same kind gets its Event, the forged ones none.
    let mut real = review_for("nobody-knows-me");
    real["request"]["name"] = json!("jupyter-real");
    real["request"]["object"]["metadata"]["name"] = json!("jupyter-real");
    h.review(&real).await;
    let events = kube.wait_for_events(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = if kube.events().len() > events.len() {
        kube.events()
    } else {
        events
    };
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["involvedObject"]["name"], "jupyter-real");
}
