//! The HTTPS surface: TLS only, health endpoints, clear 400s for bad input, bounded bodies, and a
//! stop that lets in-flight reviews finish.

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn health_endpoints_answer() {
    let h = Harness::start("").await;
    for path in ["/healthz", "/readyz"] {
        let r = h.client.get(h.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn plain_http_gets_no_answer() {
    let h = Harness::start("").await;
    let mut tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let request = b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}";
    tcp.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/"),
        "plain HTTP must not be served: {buf:?}"
    );
}

#[tokio::test]
async fn tls_1_2_clients_are_served() {
    let h = Harness::start("").await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(h.ca_pem.as_bytes()).unwrap()])
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let r = client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn malformed_reviews_get_a_400_with_a_clear_message() {
    let h = Harness::start("").await;
    let good = fixture("alice-default");
    let mut no_request = good.clone();
    no_request.as_object_mut().unwrap().remove("request");
    let mut wrong_kind = good.clone();
    wrong_kind["kind"] = json!("Pod");
    let mut wrong_version = good.clone();
    wrong_version["apiVersion"] = json!("admission.k8s.io/v2");
    let mut no_uid = good.clone();
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let mut bad_operation = good.clone();
    bad_operation["request"]["operation"] = json!(42);
    let mut trailing = serde_json::to_vec(&good).unwrap();
    trailing.extend_from_slice(b" garbage");
    // Found by fuzz/ (review): a byte that is not UTF-8 in a field the webhook does not read
    // was skipped, and such a body answered as a review although it is not JSON.
    let mut marked = good.clone();
    marked["request"]["unread"] = json!("MARK");
    let not_utf8 = serde_json::to_string(&marked)
        .unwrap()
        .replace("MARK", "\u{1}")
        .bytes()
        .map(|b| if b == 1 { 0xfa } else { b })
        .collect::<Vec<u8>>();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"hello".to_vec(), "not a valid AdmissionReview"),
        ("empty", Vec::new(), "not a valid AdmissionReview"),
        (
            "empty object",
            b"{}".to_vec(),
            "not a valid AdmissionReview",
        ),
        ("array", b"[]".to_vec(), "not a valid AdmissionReview"),
        (
            "no request",
            serde_json::to_vec(&no_request).unwrap(),
            "no request",
        ),
        (
            "wrong kind",
            serde_json::to_vec(&wrong_kind).unwrap(),
            "expected AdmissionReview",
        ),
        (
            "wrong version",
            serde_json::to_vec(&wrong_version).unwrap(),
            "unsupported apiVersion",
        ),
        ("no uid", serde_json::to_vec(&no_uid).unwrap(), "uid"),
        (
            "bad operation",
            serde_json::to_vec(&bad_operation).unwrap(),
            "request.operation",
        ),
        ("trailing bytes", trailing, "trailing characters"),
        ("not UTF-8", not_utf8, "not UTF-8"),
    ];
    for (what, body, needle) in cases {
        let (status, body) = h.post_raw(body).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{what}: {text}");
        assert!(
            text.contains(needle),
            "{what}: {text:?} should mention {needle:?}"
        );
    }
    // The server is still fine afterwards.
    let response = h.review(&good).await;
    assert_eq!(response["response"]["allowed"], true);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let h = Harness::start("").await;
    let (status, _) = h.post_raw(vec![b' '; 5 * 1024 * 1024]).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn mutate_is_post_only() {
    let h = Harness::start("").await;
    let r = h.client.get(h.url("/mutate")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn stopping_lets_in_flight_reviews_finish() {
    let h = Harness::start("").await;
    h.xnat.set_latency(Duration::from_millis(500));
    let review = fixture("alice-default");
    let client = h.client.clone();
    let url = h.url("/mutate");
    let in_flight = tokio::spawn(async move {
        client
            .post(url)
            .json(&review)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let addr = h.addr;
    h.stop().await;
    assert_eq!(in_flight.await.unwrap(), 200);
    // And nothing is accepted any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// `/metrics` is what prometheus-client writes, OpenMetrics text, and says so.
#[tokio::test]
async fn metrics_are_served_as_openmetrics() {
    let h = Harness::start("").await;
    let url = format!("http://{}/metrics", h.metrics_addr);
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = response.text().await.unwrap();
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE xnat_webhook_build_info gauge\n"),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_move_with_reviews() {
    let h = Harness::builder()
        .policy("")
        .alone_with_metrics()
        .start()
        .await;
    let before = h.metrics().await;
    let review = fixture("alice-default");
    h.review(&review).await;
    h.review(&review).await;
    let mut foreign = review.clone();
    foreign["request"]["userInfo"]["username"] = json!("system:serviceaccount:x:y");
    h.review(&foreign).await;
    let _ = h.post_raw(b"nonsense".to_vec()).await;
    let after = h.metrics().await;
    let moved = |series: &str| metric(&after, series) - metric(&before, series);
    assert!(
        moved("xnat_webhook_admissions_total{outcome=\"mutated\",reason=\"\"}") >= 2.0,
        "{after}"
    );
    assert!(
        moved(
            "xnat_webhook_admissions_total{outcome=\"skipped\",reason=\"requester_not_allowed\"}"
        ) >= 1.0
    );
    assert!(
        moved("xnat_webhook_admissions_total{outcome=\"errored\",reason=\"malformed_review\"}")
            >= 1.0
    );
    assert!(moved("xnat_webhook_admission_duration_seconds_count") >= 4.0);
    assert!(moved("xnat_webhook_xnat_requests_total{endpoint=\"groups\",status=\"200\"}") >= 1.0);
    assert!(moved("xnat_webhook_xnat_requests_total{endpoint=\"login\",status=\"200\"}") >= 1.0);
    assert!(moved("xnat_webhook_xnat_cache_lookups_total{result=\"miss\"}") >= 1.0);
    assert!(moved("xnat_webhook_xnat_cache_lookups_total{result=\"hit\"}") >= 1.0);
    // Sub-millisecond buckets exist for the cached path.
    assert!(
        after.contains("xnat_webhook_admission_duration_seconds_bucket{le=\"0.0001\"}"),
        "{after}"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    // The harness runs with a 5 s idle timeout (the default is 5 min; a new connection must send
    // within min(10 s, idle timeout) of its handshake).
    let h = Harness::start("").await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::pem::PemObject::from_pem_slice(h.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    // Handshake done, then nothing: the server closes it (EOF or reset), well before 10 s.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection was not closed: {read:?}"
    );
    // A working client is unaffected.
    assert_eq!(
        h.client
            .get(h.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn what_a_request_echoes_is_bounded_and_escaped() {
    let h = Harness::start("").await;
    // A uid is echoed in the answer and every log line: a UUID-like token only.
    for uid in [
        json!("db1e1916\nINFO forged=1"),
        json!("x".repeat(200)),
        json!(""),
    ] {
        let mut review = fixture("alice-default");
        review["request"]["uid"] = uid.clone();
        let (status, body) = h.post_raw(serde_json::to_vec(&review).unwrap()).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{uid}: {text}");
        assert!(text.contains("request.uid"), "{text}");
        assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
    }
    // A key of the request in an error message: escaped, one line.
    let mut review = fixture("alice-default");
    review["request"]["object"]["metadata"]["labels"]["evil\nINFO forged=1"] = json!(5);
    let (status, body) = h.post_raw(serde_json::to_vec(&review).unwrap()).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("evil"), "{text}");
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
}
