//! Certificate rotation without a restart: when the mounted cert/key change (cert-manager renewal:
//! kubelet's `..data` swap, or an in-place write), new connections get the new pair and no request
//! fails; a bad pair keeps the old one and says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// The DER of the certificate the server presents to a new connection, verified against the CA
/// bundle `ca_pem`.
async fn served_cert(addr: std::net::SocketAddr, ca_pem: &str) -> Vec<u8> {
    jupyter_xnat_webhook::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_failed_request() {
    let ca = TestCa::new();
    let (cert1, key1, der1) = ca.issue();
    let (cert2, key2, der2) = ca.issue();
    let (cert3, key3, der3) = ca.issue();
    let secret = KubeletDir::new(&[("tls.crt", cert1.as_bytes()), ("tls.key", key1.as_bytes())]);

    let h = Harness::builder()
        .tls_files(secret.path("tls.crt"), secret.path("tls.key"), &ca.pem)
        .start()
        .await;
    let h = Arc::new(h);
    assert_eq!(served_cert(h.addr, &ca.pem).await, der1);

    // A client that opens a new connection for every request while the Secret is renewed.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client_task = {
        let (stop, ok, failed, addr, ca_pem) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            h.addr,
            ca.pem.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let client = https_client(&ca_pem);
                let url = format!("https://localhost:{}/healthz", addr.port());
                match client.get(url).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    secret.swap(&[("tls.crt", cert2.as_bytes()), ("tls.key", key2.as_bytes())]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_cert(h.addr, &ca.pem).await != der2 {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    client_task.await.unwrap();
    println!(
        "certificate swap: {} requests on new connections, {} failed",
        ok.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst)
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(ok.load(Ordering::SeqCst) > 0);

    // A mismatched pair (new cert, old key): rejected; the current pair keeps serving.
    secret.swap(&[("tls.crt", cert3.as_bytes()), ("tls.key", key1.as_bytes())]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let readyz = async || -> serde_json::Value {
        let url = format!("https://localhost:{}/readyz", h.addr.port());
        https_client(&ca.pem)
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    while readyz().await["certificate"]["lastError"]
        .as_str()
        .is_none()
    {
        assert!(Instant::now() < deadline, "the bad pair was never reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_cert(h.addr, &ca.pem).await, der2);

    // Fixed in place (no symlink swap): the new pair is served.
    let dir = std::fs::canonicalize(secret.path("tls.crt")).unwrap();
    let dir = dir.parent().unwrap();
    std::fs::write(dir.join("tls.key"), key3.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_cert(h.addr, &ca.pem).await != der3 {
        assert!(
            Instant::now() < deadline,
            "the in-place fix was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(readyz().await["certificate"].get("lastError").is_none());
}

#[tokio::test]
async fn an_expired_certificate_or_one_for_another_name_is_refused() {
    let ca = TestCa::new();
    let (cert, key, der) = ca.issue();
    let secret = KubeletDir::new(&[("tls.crt", cert.as_bytes()), ("tls.key", key.as_bytes())]);
    let h = Harness::builder()
        .alone_with_metrics()
        .tls_files(secret.path("tls.crt"), secret.path("tls.key"), &ca.pem)
        .start()
        .await;
    let failures = async || {
        metric(
            &h.metrics().await,
            "xnat_webhook_reloads_total{input=\"certificate\",result=\"failure\"}",
        )
    };
    let before = failures().await;
    for (what, (bad_cert, bad_key, _), needle) in [
        ("expired", ca.issue_for("localhost", true), "expired"),
        (
            "another name",
            ca.issue_for("evil.example", false),
            "localhost",
        ),
    ] {
        secret.swap(&[
            ("tls.crt", bad_cert.as_bytes()),
            ("tls.key", bad_key.as_bytes()),
        ]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = h.readyz().await;
            let error = ready["certificate"]["lastError"]
                .as_str()
                .unwrap_or_default();
            if error.contains(needle) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what} was never refused: {ready}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            served_cert(h.addr, &ca.pem).await,
            der,
            "{what}: the old pair serves"
        );
    }
    assert!(failures().await >= before + 2.0);
}

/// `/readyz` over a client that trusts every CA in `bundle`.
async fn readyz_trusting(h: &Harness, bundle: &str) -> serde_json::Value {
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(bundle.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/readyz", h.addr.port());
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Waits until `/readyz`'s certificate status satisfies `done`.
async fn wait_for_certificate(
    h: &Harness,
    bundle: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = readyz_trusting(h, bundle).await;
        if done(&ready["certificate"]) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The API server trusts the CA bundle in the webhook configuration's caBundle, which is the
/// Secret's `ca.crt` (cert-manager's CA injector, certs/webhook-certs.sh): a certificate another
/// CA issued, even for the same names, would fail every call, so it is refused until `ca.crt`
/// holds its CA, whichever of the two arrives first.
#[tokio::test]
async fn a_certificate_the_configured_ca_did_not_issue_is_refused() {
    let (old_ca, new_ca, third_ca) = (TestCa::new(), TestCa::new(), TestCa::new());
    let (cert1, key1, der1) = old_ca.issue();
    let (cert2, key2, der2) = new_ca.issue();
    let (cert3, key3, der3) = third_ca.issue();
    let all = format!("{}{}{}", old_ca.pem, new_ca.pem, third_ca.pem);
    let secret = KubeletDir::new(&[
        ("tls.crt", cert1.as_bytes()),
        ("tls.key", key1.as_bytes()),
        ("ca.crt", old_ca.pem.as_bytes()),
    ]);
    let h = Harness::builder()
        .alone_with_metrics()
        .tls_files(secret.path("tls.crt"), secret.path("tls.key"), &old_ca.pem)
        .start()
        .await;
    let failures = async || {
        metric(
            &h.metrics().await,
            "xnat_webhook_reloads_total{input=\"certificate\",result=\"failure\"}",
        )
    };
    let before = failures().await;

    // Swapped for another CA's certificate, same names, ca.crt unchanged: refused.
    secret.swap(&[
        ("tls.crt", cert2.as_bytes()),
        ("tls.key", key2.as_bytes()),
        ("ca.crt", old_ca.pem.as_bytes()),
    ]);
    wait_for_certificate(&h, &all, "never refused", |c| {
        c["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("not issued by the configured CA"))
    })
    .await;
    assert_eq!(served_cert(h.addr, &all).await, der1, "the old one serves");
    assert!(failures().await > before);

    // A CA rotation in order: the bundle first holds both CAs, then the new CA's certificate.
    let both = format!("{}{}", old_ca.pem, new_ca.pem);
    secret.swap(&[
        ("tls.crt", cert1.as_bytes()),
        ("tls.key", key1.as_bytes()),
        ("ca.crt", both.as_bytes()),
    ]);
    wait_for_certificate(&h, &all, "the bundle never taken", |c| {
        c.get("lastError").is_none()
    })
    .await;
    secret.swap(&[
        ("tls.crt", cert2.as_bytes()),
        ("tls.key", key2.as_bytes()),
        ("ca.crt", both.as_bytes()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_cert(h.addr, &all).await != der2 {
        assert!(
            Instant::now() < deadline,
            "the new CA's certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Out of order: the certificate first is refused; the bundle arriving later lets it in.
    secret.swap(&[
        ("tls.crt", cert3.as_bytes()),
        ("tls.key", key3.as_bytes()),
        ("ca.crt", both.as_bytes()),
    ]);
    wait_for_certificate(&h, &all, "the early certificate never refused", |c| {
        c["lastError"].as_str().is_some()
    })
    .await;
    assert_eq!(served_cert(h.addr, &all).await, der2);
    let target = std::fs::canonicalize(secret.path("ca.crt")).unwrap();
    std::fs::write(&target, format!("{}{}", new_ca.pem, third_ca.pem)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_cert(h.addr, &all).await != der3 {
        assert!(
            Instant::now() < deadline,
            "the certificate never followed its CA"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_certificate(&h, &all, "the error stayed", |c| {
        c.get("lastError").is_none()
    })
    .await;
}

/// At start, a certificate the configured CA did not issue stops the webhook, naming both files:
/// `--tls-ca`, or by default `ca.crt` beside the certificate.
#[tokio::test]
async fn a_certificate_the_configured_ca_did_not_issue_stops_startup() {
    let (ca, other) = (TestCa::new(), TestCa::new());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.write_pair(dir.path());
    let start = async |tls_ca: Option<std::path::PathBuf>| {
        let mut builder = Harness::builder().tls_files(cert.clone(), key.clone(), &ca.pem);
        if let Some(path) = tls_ca {
            builder = builder.tls_ca(path);
        }
        builder
            .try_start()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    start(None).await.expect("issued by ca.crt: starts");

    let bundle = dir.path().join("api-server-trusts.pem");
    std::fs::write(&bundle, &other.pem).unwrap();
    let err = start(Some(bundle.clone())).await.unwrap_err();
    for needle in [
        "not issued by the configured CA",
        &cert.display().to_string(),
        &bundle.display().to_string(),
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }

    std::fs::write(dir.path().join("ca.crt"), &other.pem).unwrap();
    let err = start(None).await.unwrap_err();
    assert!(err.contains("ca.crt"), "{err}");
}
