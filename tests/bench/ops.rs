//! Instruction counts of the hot path, for `make bench-instructions`: runs one piece of the
//! admission N times, so callgrind's counts for two N give a per-op figure that does not depend
//! on what else the machine is doing (unlike `make bench`'s timings).
//!
//! `ops decide N`: read alice's spec and decide; `ops review N`: the whole review in process,
//! access from a fixed table (parse, classify, identify, lookup, decide, serialize);
//! `ops review-compact N`: the same for the body as the API server sends it (compact JSON).

mod body;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use jupyter_xnat_webhook::Confirmed;
use jupyter_xnat_webhook::Launch;
use jupyter_xnat_webhook::admission::{AccessSource, Admission, Caller};
use jupyter_xnat_webhook::mutation::{Context, Identity, decide, prepare};
use jupyter_xnat_webhook::policy::Policy;
use jupyter_xnat_webhook::{AccessOutcome, UserAccess};
use jupyter_xnat_webhook::{PodMeta, PodView};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/kubespawner-7.1/alice-default.json"
);
const GROUPS: [&str; 3] = ["ALPHA_owner", "BETA_member", "ALL_DATA_ACCESS"];

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let (Some(what), Some(n)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!("usage: ops decide|review|review-compact N");
        std::process::exit(2);
    };
    let body = std::fs::read(FIXTURE).unwrap();
    match what.as_str() {
        "decide" => decide_n(&body, n),
        "review" => review_n(&body, n),
        "review-compact" => review_n(&body::compact(&body), n),
        other => panic!("unknown piece {other:?}"),
    }
}

fn decide_n(body: &[u8], n: usize) {
    let review: serde_json::Value = serde_json::from_slice(body).unwrap();
    let spec = serde_json::value::to_raw_value(&review["request"]["object"]["spec"]).unwrap();
    let meta: PodMeta = serde_json::from_str("{}").unwrap();
    let policy = Policy::parse("").unwrap();
    let access = AccessOutcome::Known(Arc::new(UserAccess::from_group_ids(&GROUPS)));
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
    for _ in 0..n {
        let pod = PodView::new(&meta, Some(black_box(&spec))).unwrap();
        black_box(decide(
            &pod,
            prepare(&cx, &policy),
            &Confirmed::NONE,
            &policy,
        ));
    }
}

fn review_n(body: &[u8], n: usize) {
    let table = HashMap::from([(
        "alice".to_owned(),
        Arc::new(UserAccess::from_group_ids(&GROUPS)),
    )]);
    let admission = Admission::new(
        Policy::parse("").unwrap(),
        AccessSource::Static(Arc::new(table), None),
        None,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..n {
            black_box(
                admission
                    .review(black_box(body), &Caller::offline())
                    .await
                    .unwrap(),
            );
        }
    });
}
