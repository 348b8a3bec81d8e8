//! Connections as the API server uses them, and bounded resources whatever the network sends:
//! a spawn storm from one address, keep-alive reuse after a pause, HTTP/2 pings that do not keep
//! a connection, answers nobody reads, the cap on reviews in flight, the body limit, and the
//! metrics port's own limits. Each of these failed before the server counted use by requests.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS stream to the webhook, trusting only its CA, with the given ALPN protocols.
async fn tls_stream(
    h: &Harness,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_to(h.addr, &h.ca_pem, "127.0.0.1", alpn).await
}

/// One HTTP/1.1 GET on an open connection; the status line.
async fn get_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
) -> std::io::Result<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_storm_of_100_reviews_from_one_address_is_answered_whole() {
    // As the API server sends them: HTTP/1.1, one connection per review in flight, no retry.
    let h = Harness::builder()
        .policy("xnat:\n  maxConcurrentRequests: 32\n")
        .xnat_latency(Duration::from_millis(300))
        .start()
        .await;
    for i in 0..100 {
        h.xnat
            .set_user(&format!("student{i:03}"), &[&format!("P{i:03}_member")]);
    }
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(h.ca_pem.as_bytes()).unwrap()])
        .http1_only()
        .build()
        .unwrap();
    let reviews: Vec<Value> = (0..100)
        .map(|i| review_for(&format!("student{i:03}")))
        .collect();
    let started = Instant::now();
    let answers = futures::future::join_all(reviews.iter().map(|review| {
        let client = client.clone();
        let url = h.url("/mutate");
        async move {
            let r = client.post(url).json(review).send().await?;
            let status = r.status();
            let body: Value = r.json().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
    }))
    .await;
    println!(
        "100 concurrent reviews from one address, XNAT at 300 ms: {:?}",
        started.elapsed()
    );
    for (i, (review, answer)) in reviews.iter().zip(answers).enumerate() {
        let (status, response) = answer.unwrap_or_else(|e| panic!("review {i} failed: {e}"));
        assert_eq!(status, 200, "review {i}");
        assert_eq!(
            project_paths(review, &response),
            [
                format!("/data/projects/P{i:03}"),
                "/data/xnat/workspace".into()
            ],
            "review {i}"
        );
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_kept_longer_than_the_api_server_keeps_it() {
    // The API server reuses an idle HTTP/1.1 connection for up to 90 s; hyper's own header
    // timeout used to close it after 10 s. (The test uses a 30 s idle time and a 12 s pause.)
    let h = Harness::builder()
        .idle_timeout(Duration::from_secs(30))
        .start()
        .await;
    let mut stream = tls_stream(&h, &[b"http/1.1"]).await;
    assert!(
        get_on(&mut stream, "/healthz")
            .await
            .unwrap()
            .contains("200")
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    let again = get_on(&mut stream, "/healthz").await;
    assert!(
        again.as_deref().is_ok_and(|s| s.contains("200")),
        "reuse after 12 s: {again:?}"
    );
}

#[tokio::test]
async fn http2_pings_do_not_keep_a_connection_open() {
    // The harness closes connections with no request in flight after 5 s.
    let h = Harness::start("").await;
    let stream = tls_stream(&h, &[b"h2"]).await;
    let (mut send, mut connection) = h2::client::handshake(stream).await.unwrap();
    let mut ping_pong = connection.ping_pong().unwrap();
    let connection = tokio::spawn(connection);
    let request = axum::http::Request::get(h.url("/healthz"))
        .body(())
        .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let started = Instant::now();
    let pinging = async {
        loop {
            if ping_pong.ping(h2::Ping::opaque()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        tokio::join!(pinging, connection)
    })
    .await;
    assert!(
        closed.is_ok(),
        "a connection used only for pings stayed open for 15 s"
    );
    println!("closed after {:?} of pings", started.elapsed());
}

#[tokio::test]
async fn an_answer_nobody_reads_does_not_hold_the_connection() {
    // An HTTP/2 client that never opens its receive window: the answer cannot be sent. After
    // the request lifetime (request timeout + send time) the connection is closed, long before
    // its idle time.
    let h = Harness::builder()
        .idle_timeout(Duration::from_secs(120))
        .start()
        .await;
    let stream = tls_stream(&h, &[b"h2"]).await;
    let (mut send, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, axum::body::Bytes>(stream)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let body = serde_json::to_vec(&fixture("alice-default")).unwrap();
    let request = axum::http::Request::post(h.url("/mutate"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (response, mut stream) = send.send_request(request, false).unwrap();
    stream.send_data(body.into(), true).unwrap();
    let _headers = response.await;
    let closed = tokio::time::timeout(Duration::from_secs(25), connection).await;
    assert!(closed.is_ok(), "the unread answer held the connection open");
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_refused() {
    let h = Harness::start("").await;
    let mut review = fixture("alice-default");
    review["request"]["object"]["metadata"]["annotations"]["padding"] =
        Value::String("x".repeat(2 * 1024 * 1024));
    let (status, body) = h.post_raw(serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn bodies_announced_but_not_sent_hold_nothing() {
    let h = Harness::start("").await;
    // 40 requests announce 1 MiB each (most of what an address may hold) and send none of it.
    let head = "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 1048576\r\n\r\n";
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut s = tls_stream(&h, &[b"http/1.1"]).await;
        s.write_all(head.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A real review is still let in (it got 503 while announced bytes were held)…
    let review = fixture("alice-default");
    let response = h.review(&review).await;
    let paths = project_paths(&review, &response);
    assert!(paths.iter().any(|p| p.ends_with("/ALPHA")), "{response}");
    // …and the stalled ones are told so once the body deadline passes.
    let started = Instant::now();
    for s in &mut stalled {
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answered within the deadline")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    }
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn the_metrics_port_closes_silent_connections_and_caps_them_per_address() {
    let h = Harness::builder()
        .policy("")
        .alone_with_metrics()
        .start()
        .await;
    // A connection that sends nothing is closed (it was kept forever).
    let mut silent = tokio::net::TcpStream::connect(h.metrics_addr)
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a silent connection was kept: {read:?}"
    );
    // One address may hold 16; more are closed at once, and metrics are still served.
    let mut held = Vec::new();
    for _ in 0..jupyter_xnat_webhook::server::listen::METRICS.per_peer {
        held.push(
            tokio::net::TcpStream::connect(h.metrics_addr)
                .await
                .unwrap(),
        );
    }
    let mut extra = tokio::net::TcpStream::connect(h.metrics_addr)
        .await
        .unwrap();
    let read = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the 17th connection was kept: {read:?}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fresh = tokio::net::TcpStream::connect(h.metrics_addr)
        .await
        .unwrap();
    let status = get_on(&mut fresh, "/metrics").await.unwrap();
    assert!(status.contains("200"), "{status}");
}
