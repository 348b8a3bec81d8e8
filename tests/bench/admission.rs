//! Admission benchmark (release build): `make bench` or `cargo bench --bench admission`.
//!
//! Measures, on the KubeSpawner 7.1 fixture pod for alice (2 projects + workspace):
//! 1. the pure decision (`mutation::decide`, reading the spec included) alone;
//! 2. parsing the review alone;
//! 3. one whole review in process (parse, classify, cached XNAT lookup, decide, serialize);
//! 4. reviews over real TLS on loopback from a keep-alive client, with 16 in flight;
//! 5. beside a no-op rustls server in the same run, for the fixture as stored (pretty-printed)
//!    and compact, as the API server sends it.
//!
//! The XNAT stand-in answers the first lookup; everything after is a cache hit, which is what a
//! spawn storm looks like after its first second. `BENCH_XNAT_REFUSE=archive_spec` has XNAT
//! refuse that call (406) throughout: a refusal remembered keeps the path warm.

mod body;
#[path = "../common/mod.rs"]
mod common;
mod stats;
mod versus_noop;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jupyter_xnat_webhook::Confirmed;
use jupyter_xnat_webhook::Launch;
use jupyter_xnat_webhook::admission::Caller;
use jupyter_xnat_webhook::mutation::{Context, Identity, decide, prepare};
use jupyter_xnat_webhook::policy::{Overrides, Policy};
use jupyter_xnat_webhook::serve;
use jupyter_xnat_webhook::xnat::{CredentialSource, Credentials};
use jupyter_xnat_webhook::{AccessOutcome, UserAccess};
use jupyter_xnat_webhook::{PodMeta, PodView};
use serde_json::value::RawValue;
use xnat_standin::Standin;

use stats::{median, quantile};

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
    let body = std::fs::read(FIXTURE).unwrap();
    // `BENCH_ONLY=versus` runs only the side-by-side with the no-op server (for a profiler).
    let all = std::env::var("BENCH_ONLY").is_err();
    if all {
        bench_decide(&body);
        bench_parse(&body);
    }
    rt.block_on(async {
        let xnat = Standin::demo(common::SVC_USER, common::SVC_PASSWORD);
        // `BENCH_XNAT_REFUSE=archive_spec` (any Counts name): XNAT answers that call 406, as a
        // version that offers another media type would; the warm path must stay warm.
        if let Ok(call) = std::env::var("BENCH_XNAT_REFUSE") {
            xnat.set_endpoint_fault(&call, xnat_standin::Fault::Status(406));
            println!("XNAT refuses every {call} call with 406");
        }
        if all {
            bench_in_process(&body, &xnat).await;
            bench_https(&body, xnat.clone()).await;
        }
        bench_versus_noop(
            "fixture as stored (6.6 KB, pretty-printed)",
            &body,
            xnat.clone(),
        )
        .await;
        let compact = body::compact(&body);
        let label = format!(
            "compact, as the API server sends it ({} bytes)",
            compact.len()
        );
        bench_versus_noop(&label, &compact, xnat.clone()).await;
        let c = xnat.counts();
        println!(
            "XNAT during all of the above: {} group calls, {} archive_spec calls, {} logins \
             (one cache per admission state)",
            c.groups, c.archive_specs, c.logins
        );
    });
}

/// 1. The pure decision, reading the spec included (as when `decide` took the raw text).
fn bench_decide(body: &[u8]) {
    let review: serde_json::Value = serde_json::from_slice(body).unwrap();
    let spec = serde_json::value::to_raw_value(&review["request"]["object"]["spec"]).unwrap();
    let meta: PodMeta = serde_json::from_str("{}").unwrap();
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
        launch: Launch::None,
        xnat_url: "http://xnat/xnat",
        caller_verified: false,
    };
    let read_and_decide = |spec: &RawValue| {
        let pod = PodView::new(&meta, Some(spec)).unwrap();
        decide(&pod, prepare(&cx, &policy), &Confirmed::NONE, &policy)
    };
    for _ in 0..1000 {
        black_box(read_and_decide(&spec));
    }
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        black_box(read_and_decide(black_box(&spec)));
    }
    println!("decide (pure, reads the spec) {}", per_op(t.elapsed(), n));
}

/// 2. Parsing the review alone.
fn bench_parse(body: &[u8]) {
    let n = 50_000;
    let t = Instant::now();
    for _ in 0..n {
        black_box(jupyter_xnat_webhook::parse_review(black_box(body)).is_ok());
    }
    println!("parse review                  {}", per_op(t.elapsed(), n));
}

/// 3. A whole review in process, cache warm.
async fn bench_in_process(body: &[u8], xnat: &Arc<Standin>) {
    let (url, _task) = xnat
        .spawn("127.0.0.1:0".parse().unwrap(), "/xnat")
        .await
        .unwrap();
    let overrides = Overrides {
        xnat_url: Some(url),
        ..Overrides::default()
    };
    let credentials = Credentials::new(common::SVC_USER, common::SVC_PASSWORD);
    // `BENCH_POLICY` (YAML) compares policies, e.g. `xnat: {askProjectArchivePaths: false}`.
    let yaml = std::env::var("BENCH_POLICY").unwrap_or_default();
    let admission = serve::admission(
        Policy::from_yaml(yaml.as_bytes(), &overrides).unwrap(),
        CredentialSource::Fixed(credentials),
    )
    .unwrap();
    admission.review(body, &Caller::offline()).await.unwrap();
    let n = 50_000;
    let t = Instant::now();
    for _ in 0..n {
        black_box(
            admission
                .review(black_box(body), &Caller::offline())
                .await
                .unwrap(),
        );
    }
    println!("review (in process, cached)   {}", per_op(t.elapsed(), n));
}

/// 5. Beside a no-op rustls server, 8 keep-alive connections, in the same run.
async fn bench_versus_noop(label: &str, body: &[u8], xnat: Arc<Standin>) {
    println!("beside a no-op rustls server: {label}");
    let yaml = std::env::var("BENCH_POLICY").unwrap_or_default();
    let h = common::Harness::builder()
        .standin(xnat)
        .policy(&yaml)
        .start()
        .await;
    let body = axum::body::Bytes::copy_from_slice(body);
    let webhook = h.url("/mutate");
    // The no-op server answers what the webhook answers, so both send the same bytes back.
    let answer = common::https_client(&h.ca_pem)
        .post(&webhook)
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let ca = common::TestCa::new();
    let (cert, key, _) = ca.issue();
    let noop = versus_noop::start_noop(&cert, &key, answer).await;
    let (mut w, mut n, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let a = versus_noop::throughput(&h.ca_pem, &webhook, &body, 2).await;
        let b = versus_noop::throughput(&ca.pem, &noop, &body, 2).await;
        w.push(a);
        n.push(b);
        ratio.push(a / b);
    }
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), x| (l.min(*x), h.max(*x)));
        format!("{lo:.2}–{hi:.2}")
    };
    println!(
        "8 keep-alive connections       webhook {:.0} reviews/s, no-op server {:.0}/s: {:.2}× \
         (medians of 5 alternating 2 s rounds; ratio per round {})",
        median(w),
        median(n),
        median(ratio.clone()),
        spread(&ratio)
    );
    let (mut w50, mut w99, mut n50, mut n99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let (a, b) = versus_noop::latency_at_1000(&h.ca_pem, &webhook, &body, 3).await;
        let (c, d) = versus_noop::latency_at_1000(&ca.pem, &noop, &body, 3).await;
        w50.push(a);
        w99.push(b);
        n50.push(c);
        n99.push(d);
    }
    println!(
        "at 1,000 reviews/s             webhook p50 {:?} p99 {:?}; no-op p50 {:?} p99 {:?} \
         (medians of 3 alternating 3 s rounds)",
        median(w50),
        median(w99),
        median(n50),
        median(n99)
    );
}

/// 4. Over TLS on loopback: the test harness's webhook (the default policy, or `BENCH_POLICY`).
async fn bench_https(body: &[u8], xnat: Arc<Standin>) {
    let yaml = std::env::var("BENCH_POLICY").unwrap_or_default();
    let h = common::Harness::builder()
        .standin(xnat)
        .policy(&yaml)
        .start()
        .await;
    let target = h.url("/mutate");
    // A client as the API server uses one: no per-request timer of its own.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(h.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let body = axum::body::Bytes::copy_from_slice(body);
    let (total, workers) = (20_000usize, 16);
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
    for handle in handles {
        lat.extend(handle.await.unwrap());
    }
    let elapsed = started.elapsed();
    lat.sort();
    println!(
        "HTTPS loopback, {workers} in flight  {:.0} reviews/s, p50 {:?}, p99 {:?} ({} reviews, client on the same 2 cores)",
        lat.len() as f64 / elapsed.as_secs_f64(),
        quantile(&lat, 0.50),
        quantile(&lat, 0.99),
        lat.len()
    );
}
