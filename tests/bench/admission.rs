//! Admission benchmark (release build): `make bench` or `cargo bench --bench admission`.
//!
//! Measures, on the KubeSpawner 7.1 fixture pod for alice (2 projects + workspace):
//! 1. the pure decision (`mutation::decide`) alone;
//! 2. parsing the review alone;
//! 3. one whole review in process (parse, classify, cached XNAT lookup, decide, serialize);
//! 4. reviews over real TLS on loopback from a keep-alive client, with 16 in flight.
//!
//! The XNAT stand-in answers the first lookup; everything after is a cache hit, which is what a
//! spawn storm looks like after its first second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jupyter_xnat_webhook::access::{AccessOutcome, UserAccess};
use jupyter_xnat_webhook::mutation::{Context, Identity, decide};
use jupyter_xnat_webhook::pod::{PodMeta, PodView};
use jupyter_xnat_webhook::policy::Policy;
use jupyter_xnat_webhook::serve::{self, ServeConfig};
use jupyter_xnat_webhook::xnat::{CredentialSource, Credentials};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use xnat_standin::Standin;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/kubespawner-7.1/alice-default.json"
);

fn per_op(total: Duration, n: u32) -> String {
    let ns = total.as_nanos() as f64 / f64::from(n);
    if ns < 1000.0 {
        format!("{ns:.0} ns/op")
    } else {
        format!("{:.1} µs/op", ns / 1000.0)
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let body = std::fs::read(FIXTURE).unwrap();
    let review: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let spec = serde_json::value::to_raw_value(&review["request"]["object"]["spec"]).unwrap();
    let policy = Policy::parse("").unwrap();
    let access = AccessOutcome::Known(Arc::new(UserAccess::from_group_ids(&[
        "ALPHA_owner",
        "BETA_member",
        "ALL_DATA_ACCESS",
    ])));
    let cx = Context {
        who: Identity {
            jupyter_user: "alice",
            server_name: "",
            xnat_user: "alice",
        },
        access: &access,
        launch: None,
        xnat_url: "http://xnat/xnat",
    };

    let meta: PodMeta = serde_json::from_str("{}").unwrap();
    // Reading the spec is part of the decision's cost, as it was when decide took the raw text.
    let read_and_decide = |spec: &serde_json::value::RawValue| {
        let pod = PodView::new(&meta, Some(spec)).unwrap();
        decide(&pod, &cx, &policy)
    };

    // 1. The pure decision.
    let n = 200_000;
    for _ in 0..1000 {
        std::hint::black_box(read_and_decide(&spec));
    }
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(read_and_decide(std::hint::black_box(&spec)));
    }
    println!("decide (pure, reads the spec) {}", per_op(t.elapsed(), n));

    // 2. Parsing the review alone.
    let n = 50_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            jupyter_xnat_webhook::review::parse(std::hint::black_box(&body)).is_ok(),
        );
    }
    println!("parse review                  {}", per_op(t.elapsed(), n));

    // 3. A whole review in process, cache warm.
    let xnat = Standin::demo("svc", "pw");
    let (url, _task) = xnat
        .spawn("127.0.0.1:0".parse().unwrap(), "/xnat")
        .await
        .unwrap();
    let overrides = jupyter_xnat_webhook::policy::Overrides {
        xnat_url: Some(url.clone()),
    };
    let admission = serve::admission(
        Policy::from_yaml(b"", &overrides).unwrap(),
        CredentialSource::Fixed(Credentials::new("svc", "pw")),
    )
    .unwrap();
    admission.review(&body).await.unwrap();
    let n = 50_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(admission.review(std::hint::black_box(&body)).await.unwrap());
    }
    println!("review (in process, cached)   {}", per_op(t.elapsed(), n));

    // 4. Over TLS on loopback.
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("tls.crt"), cert.pem()).unwrap();
    std::fs::write(p("tls.key"), key.serialize_pem()).unwrap();
    std::fs::write(p("policy.yaml"), "").unwrap();
    std::fs::write(p("creds"), "svc:pw\n").unwrap();
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: p("tls.crt"),
        tls_key: p("tls.key"),
        policy: p("policy.yaml"),
        xnat_credentials: p("creds"),
        xnat_url: Some(url),
        drain: Duration::from_secs(1),
        metrics_listen: None,
        reload_interval: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(30),
    };
    let bound = serve::bind(&config).await.unwrap();
    let port = bound.local_addr().unwrap().port();
    tokio::spawn(bound.serve(std::future::pending(), Duration::from_secs(1)));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let target = format!("https://localhost:{port}/mutate");
    let body = axum::body::Bytes::from(body);
    let total = 20_000usize;
    let workers = 16;
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (client, target, body) = (client.clone(), target.clone(), body.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total / workers);
            for _ in 0..total / workers {
                let t = Instant::now();
                let r = client
                    .post(&target)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::with_capacity(total);
    for h in handles {
        lat.extend(h.await.unwrap());
    }
    let elapsed = started.elapsed();
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "HTTPS loopback, {workers} in flight  {:.0} reviews/s, p50 {:?}, p99 {:?} ({} reviews, client on the same 2 cores)",
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        lat.len()
    );
    println!(
        "XNAT during all of the above: {} group calls, {} logins (one cache per admission state)",
        xnat.counts().groups,
        xnat.counts().logins
    );
}
