//! Memory and connection attacks against the release server, each bounded in time: `make attack`
//! (`cargo bench --bench attack`). The webhook runs as its own process (release build, default
//! flags, a descriptor limit of 4096) against the XNAT stand-in answering after 300 ms; after each
//! attack a normal review must still be answered with its projects, and the process's peak RSS
//! (VmHWM, reset between attacks) must stay under the Deployment's memory limit, 256 MiB.
//!
//! The attacks are the adversarial review's (issue 9): big bodies on HTTP/2 streams, answers
//! nobody reads (a receive window that never opens), hundreds of HTTP/1 connections posting big
//! bodies, 18 000 idle sockets on the metrics port, and a spawn storm of 100 reviews from one
//! address. Figures from this machine are in the README ("Performance").

#[path = "../common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xnat_standin::Standin;

/// The Deployment's memory limit (deploy/base/deployment.yaml).
const LIMIT_MIB: u64 = 256;
/// Just under the server's 1 MiB body limit: every byte is read and parsed.
const BIG_BODY: usize = 1_000_000;

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// The webhook as its own process.
struct Server {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    ca_pem: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

impl Server {
    fn start(xnat_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = common::TestCa::new();
        let (cert, key) = ca.write_pair(dir.path());
        let credentials = dir.path().join("xnat");
        std::fs::write(
            &credentials,
            format!("{}:{}", common::SVC_USER, common::SVC_PASSWORD),
        )
        .unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, "xnat:\n  maxConcurrentRequests: 128\n").unwrap();
        let (addr, metrics) = (free_addr(), free_addr());
        let log = dir.path().join("webhook.log");
        let script = format!(
            "ulimit -n 4096 && exec {} serve --listen {addr} --metrics-listen {metrics} --probe-listen off \
             --tls-cert {} --tls-key {} --policy {} --xnat-credentials {} --xnat-url {xnat_url}",
            env!("CARGO_BIN_EXE_jupyter-xnat-webhook"),
            cert.display(),
            key.display(),
            policy.display(),
            credentials.display(),
        );
        let child = Command::new("bash")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            addr,
            metrics,
            ca_pem: ca.pem,
            log,
            _dir: dir,
        }
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/…/status"))
    }

    /// Peak RSS since the last reset, in MiB.
    fn peak_mib(&self) -> u64 {
        self.status_kib("VmHWM:") / 1024
    }

    fn rss_mib(&self) -> u64 {
        self.status_kib("VmRSS:") / 1024
    }

    /// Resets the peak to the current RSS (`clear_refs` 5, Linux ≥ 4.0).
    fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").unwrap();
    }

    async fn tls(&self, alpn: &[u8]) -> std::io::Result<Tls> {
        jupyter_xnat_webhook::install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::pem::PemObject::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await
    }

    /// A normal review over a fresh connection: alice's, answered with her two projects.
    async fn still_serves(&self, what: &str) {
        let review = common::fixture("alice-default");
        let body = serde_json::to_vec(&review).unwrap();
        let answer = async {
            let mut s = self.tls(b"http/1.1").await.ok()?;
            let (status, body) = post_on(&mut s, &body).await.ok()?;
            (status == 200).then_some(body)
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), answer).await;
        let Ok(Some(body)) = answer else {
            panic!(
                "after {what}: a normal review was not answered (log: {})",
                self.log.display()
            );
        };
        let response: Value = serde_json::from_slice(&body).unwrap();
        let paths = common::project_paths(&review, &response);
        assert!(
            paths.iter().any(|p| p.ends_with("/ALPHA")),
            "after {what}: {paths:?}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 POST to /mutate on an open connection: the status and the body.
async fn post_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    // TLS streams may keep written records buffered until flushed.
    s.flush().await?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Ok((status, buf[end + 4..end + 4 + length].to_vec()));
        }
    }
}

/// Alice's review padded to `size` bytes with an annotation: a valid review the server must
/// read whole and decide.
fn padded_review(size: usize) -> Vec<u8> {
    let mut review = common::fixture("alice-default");
    let base = serde_json::to_vec(&review).unwrap().len() + 20;
    review["request"]["object"]["metadata"]["annotations"]["padding"] =
        json!("x".repeat(size.saturating_sub(base)));
    serde_json::to_vec(&review).unwrap()
}

/// Answers by kind: `ok` (200), `refused` (4xx/5xx answered), `failed` (no answer, by reason).
#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    refused: std::collections::BTreeMap<u16, usize>,
    failed: std::collections::BTreeMap<String, usize>,
}

/// What one request came to: a status, or why there was none.
type Answer = Result<u16, String>;

impl Tally {
    fn add(&mut self, answer: Answer) {
        match answer {
            Ok(200) => self.ok += 1,
            Ok(status) => *self.refused.entry(status).or_default() += 1,
            Err(why) => *self.failed.entry(why).or_default() += 1,
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let refused: usize = self.refused.values().sum();
        let failed: usize = self.failed.values().sum();
        write!(f, "{} ok, {refused} refused, {failed} unanswered", self.ok)?;
        for (status, n) in &self.refused {
            write!(f, "; {n}: {status}")?;
        }
        for (why, n) in &self.failed {
            write!(f, "; {n}: {why}")?;
        }
        Ok(())
    }
}

/// A short reason for a failed step, with the step's name.
fn why(step: &'static str) -> impl Fn(&dyn std::fmt::Display) -> String {
    move |e| {
        let e = e.to_string();
        format!("{step}: {}", e.split(" (os error").next().unwrap_or(&e))
    }
}

/// `conns` HTTP/2 connections, each sending `streams` big reviews as fast as the server lets it.
async fn h2_big_bodies(server: &Server, conns: usize, streams: usize) -> String {
    let body = axum::body::Bytes::from(padded_review(BIG_BODY));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let Ok(stream) = server.tls(b"h2").await else {
            continue;
        };
        let Ok((send, connection)) = h2::client::handshake(stream).await else {
            continue;
        };
        tokio::spawn(connection);
        for _ in 0..streams {
            let (send, body) = (send.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut send = send.ready().await.map_err(|e| why("open stream")(&e))?;
                let request = axum::http::Request::post("https://localhost/mutate")
                    .header("content-type", "application/json")
                    .body(())
                    .unwrap();
                let (response, mut stream) = send
                    .send_request(request, false)
                    .map_err(|e| why("send")(&e))?;
                stream
                    .send_data(body, true)
                    .map_err(|e| why("send body")(&e))?;
                let response = response.await.map_err(|e| why("await answer")(&e))?;
                let status = response.status().as_u16();
                let mut body = response.into_body();
                while let Some(chunk) = body.data().await {
                    let chunk = chunk.map_err(|e| why("read answer")(&e))?;
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
                Ok(status)
            }));
        }
    }
    let mut tally = Tally::default();
    for t in tasks {
        tally.add(t.await.unwrap_or_else(|e| Err(why("task")(&e))));
    }
    tally.to_string()
}

/// `conns` HTTP/2 connections that never open their receive window, each with `streams`
/// reviews whose answers can therefore never be sent; held for `hold`.
async fn h2_unread_answers(
    server: &Server,
    conns: usize,
    streams: usize,
    hold: Duration,
) -> String {
    let body = axum::body::Bytes::from(padded_review(BIG_BODY / 4));
    let mut closed = Vec::new();
    for _ in 0..conns {
        let Ok(stream) = server.tls(b"h2").await else {
            continue;
        };
        let Ok((send, connection)) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, axum::body::Bytes>(stream)
            .await
        else {
            continue;
        };
        closed.push(tokio::spawn(connection));
        for _ in 0..streams {
            let (send, body) = (send.clone(), body.clone());
            tokio::spawn(async move {
                let mut send = send.ready().await.ok()?;
                let request = axum::http::Request::post("https://localhost/mutate")
                    .body(())
                    .unwrap();
                let (response, mut stream) = send.send_request(request, false).ok()?;
                stream.send_data(body, true).ok()?;
                let _headers = response.await;
                Some(())
            });
        }
    }
    tokio::time::sleep(hold).await;
    let by_server = closed.iter().filter(|c| c.is_finished()).count();
    format!(
        "{by_server} of {} connections closed by the server within {hold:?}",
        closed.len()
    )
}

/// `conns` HTTP/1.1 connections at once, each posting one big review.
async fn http1_big_bodies(server: &Server, conns: usize) -> String {
    let body = Arc::new(padded_review(BIG_BODY));
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let body = body.clone();
            let tls = server.tls(b"http/1.1");
            async move {
                let mut s = tls.await.map_err(|e| why("connect")(&e))?;
                let (status, _) = post_on(&mut s, &body).await.map_err(|e| why("post")(&e))?;
                Ok(status)
            }
        })
        .collect();
    let mut tally = Tally::default();
    for status in futures::future::join_all(tasks).await {
        tally.add(status);
    }
    tally.to_string()
}

/// `conns` HTTP/1.1 requests that announce a 1 MiB body and send none of it; a normal review is
/// sent while they wait.
async fn announced_bodies(server: &Server, conns: usize) -> String {
    let head = "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 1048576\r\n\r\n";
    let mut stalled = Vec::new();
    for _ in 0..conns {
        let Ok(mut s) = server.tls(b"http/1.1").await else {
            continue;
        };
        if s.write_all(head.as_bytes()).await.is_ok() && s.flush().await.is_ok() {
            stalled.push(s);
        }
    }
    server.still_serves("announcing bodies").await;
    let mut tally = Tally::default();
    for s in &mut stalled {
        let mut buf = vec![0u8; 1024];
        let answer = match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                let status = text.split(' ').nth(1).and_then(|c| c.parse().ok());
                status.ok_or_else(|| "no status".to_owned())
            }
            Ok(_) => Err("closed".to_owned()),
            Err(_) => Err("no answer within 10 s".to_owned()),
        };
        tally.add(answer);
    }
    tally.to_string()
}

/// `sockets` idle TCP connections to the metrics port from one address, held for `hold`, with a
/// review sent to the webhook port in the middle of it.
async fn metrics_flood(server: &Server, sockets: usize, hold: Duration) -> String {
    let mut held = Vec::with_capacity(sockets);
    let mut refused = 0;
    for _ in 0..sockets {
        let connect = TcpStream::connect(server.metrics);
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(Ok(s)) => held.push(s),
            _ => refused += 1,
        }
    }
    server.still_serves("opening the metrics sockets").await;
    tokio::time::sleep(hold).await;
    let mut closed = 0;
    for s in &mut held {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    format!(
        "{} opened ({refused} refused), {closed} closed by the server within {hold:?}",
        held.len()
    )
}

/// `n` reviews at once from one address, each on its own HTTP/1.1 connection (as the API
/// server sends them), each for its own user so each waits on XNAT.
async fn storm(server: &Server, xnat: &Standin, n: usize) -> String {
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let user = format!("storm{i}");
            xnat.set_user(&user, &["ALPHA_owner"]);
            let review = common::review_for(&user);
            let tls = server.tls(b"http/1.1");
            async move {
                let body = serde_json::to_vec(&review).unwrap();
                let mut s = tls.await.map_err(|e| why("connect")(&e))?;
                let (status, answer) = post_on(&mut s, &body).await.map_err(|e| why("post")(&e))?;
                let answer: Value =
                    serde_json::from_slice(&answer).map_err(|e| why("parse")(&e))?;
                let with_data = common::project_paths(&review, &answer)
                    .iter()
                    .any(|p| p.ends_with("/ALPHA"));
                if with_data {
                    Ok(status)
                } else {
                    Err("answered without its project".into())
                }
            }
        })
        .collect();
    let mut tally = Tally::default();
    for status in futures::future::join_all(tasks).await {
        tally.add(status);
    }
    format!("{tally} in {:?}", started.elapsed())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let xnat = Standin::demo(common::SVC_USER, common::SVC_PASSWORD);
        xnat.set_latency(Duration::from_millis(300));
        let (xnat_url, _task) = xnat
            .spawn("127.0.0.1:0".parse().unwrap(), "/xnat")
            .await
            .unwrap();
        let server = Server::start(&xnat_url);
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.tls(b"http/1.1").await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the webhook did not start ({})",
                server.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.still_serves("start").await;
        println!(
            "webhook pid {}, idle after start: RSS {} MiB",
            server.child.id(),
            server.rss_mib()
        );
        println!("{:<58} {:>9}  result", "attack", "peak RSS");
        let mut worst = 0;
        macro_rules! attack {
            ($what:expr, $run:expr) => {{
                server.reset_peak();
                let result = $run.await;
                let peak = server.peak_mib();
                worst = worst.max(peak);
                println!("{:<58} {:>5} MiB  {result}", $what, peak);
                server.still_serves($what).await;
            }};
        }
        attack!(
            "HTTP/2: 4 connections x 64 streams x 1 MB bodies",
            h2_big_bodies(&server, 4, 64)
        );
        attack!(
            "HTTP/2: 32 connections x 8 streams x 1 MB bodies",
            h2_big_bodies(&server, 32, 8)
        );
        attack!(
            "HTTP/2: 32 connections x 4 unread answers, 25 s",
            h2_unread_answers(&server, 32, 4, Duration::from_secs(25))
        );
        attack!(
            "HTTP/1.1: 300 connections x 1 MB bodies at once",
            http1_big_bodies(&server, 300)
        );
        attack!(
            "HTTP/1.1: 64 requests announcing 1 MiB, sending nothing",
            announced_bodies(&server, 64)
        );
        attack!(
            "metrics port: 18000 idle sockets from one address, 15 s",
            metrics_flood(&server, 18_000, Duration::from_secs(15))
        );
        attack!(
            "storm: 100 reviews at once, XNAT at 300 ms",
            storm(&server, &xnat, 100)
        );
        println!("peak RSS of all attacks: {worst} MiB (the Deployment's limit: {LIMIT_MIB} MiB)");
        assert!(worst < LIMIT_MIB, "over the Deployment's memory limit");
    });
}
