//! deploy/components/prometheus and grafana-dashboard: they render with an overlay, every alert
//! is complete, every PromQL expression parses, and every metric an alert or a panel reads is
//! one the real server's `/metrics` serves (or, explicitly, the API server's own).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common::fake_kube::{FakeKube, KubeFault};
use crate::common::*;
use jupyter_xnat_webhook::events::SinkSettings;
use promql_parser::parser::Expr;
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

/// Metrics read from the API server's own scrape, not the webhook's (Kubernetes Metrics
/// Reference; staging/src/k8s.io/apiserver/pkg/admission/metrics/metrics.go).
const API_SERVER_METRICS: &[&str] = &[
    "apiserver_admission_webhook_fail_open_count",
    "apiserver_admission_webhook_rejection_count",
];

/// The objects a site kustomization with the cert-manager overlay and both components renders.
fn rendered() -> Vec<Value> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // kustomize takes relative paths only: a site directory inside the checkout's target/.
    let site = tempfile::tempdir_in(repo.join("target")).unwrap();
    let up = "../..";
    std::fs::write(
        site.path().join("kustomization.yaml"),
        format!(
            "resources: [{up}/deploy/overlays/cert-manager]\n\
             components: [{up}/deploy/components/prometheus, {up}/deploy/components/grafana-dashboard]\n"
        ),
    )
    .unwrap();
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(site.path())
        .output()
        .expect("kubectl is needed to render deploy/");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde_yaml_ng::from_value::<Value>(serde_yaml_ng::Value::deserialize(d).unwrap())
                .unwrap()
        })
        .collect()
}

use serde::Deserialize;

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// Every (where, PromQL) pair of the alerts and the dashboard's panels.
fn expressions(objects: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rule = of_kind(objects, "PrometheusRule");
    assert_eq!(rule.len(), 1);
    for group in rule[0]["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            out.push((
                format!("alert {}", r["alert"]),
                r["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let dashboards: Vec<&Value> = of_kind(objects, "ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(
        dashboards.len(),
        1,
        "one dashboard ConfigMap for the sidecar"
    );
    let json: Value =
        serde_json::from_str(dashboards[0]["data"]["dashboard.json"].as_str().unwrap()).unwrap();
    for panel in json["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            out.push((
                format!("panel {}", panel["title"]),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// The metric names an expression selects.
fn selected(expr: &Expr) -> BTreeSet<String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = ();
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, ()> {
            match e {
                Expr::VectorSelector(v) => self.0.extend(v.name.clone()),
                Expr::MatrixSelector(m) => self.0.extend(m.vs.name.clone()),
                _ => {}
            }
            Ok(true)
        }
    }
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, expr).unwrap();
    names.0
}

/// The sample names `/metrics` can serve, from its `# TYPE` lines (a family is listed even
/// before its first sample).
fn served(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest.split_once(' ').unwrap();
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
    }
    names
}

/// `/metrics` after every path that records a metric has run once: a family appears with its
/// first sample. XNAT answers and fails, a reload is rejected, Events are posted, refused and
/// dropped.
async fn exercised_metrics() -> String {
    let (kube, url) = FakeKube::start().await;
    kube.set_fault(KubeFault::Forbidden);
    let settings = SinkSettings {
        burst: 1,
        per_second: 0.001,
        ..SinkSettings::default()
    };
    let h = Harness::builder()
        .policy("xnat:\n  retries: 0\n")
        .events(FakeKube::client(&url), settings)
        .start()
        .await;
    h.review(&review_for("alice")).await;
    h.xnat.set_fault(xnat_standin::Fault::Status(503));
    h.review(&review_for("erin")).await;
    kube.wait_for_calls(1).await;
    fill_the_metrics_port(&h).await;
    std::fs::write(h.dir.path().join("policy.yaml"), "xnat: [not a policy\n").unwrap();
    for _ in 0..100 {
        if h.readyz().await["policy"]["failedReloads"].as_u64() > Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = h.metrics().await;
    for family in [
        "reloads_total",
        "events_total",
        "events_dropped_total",
        "xnat_failures_total",
        "connections_refused_total",
        "connections_evicted_total",
    ] {
        assert!(
            text.contains(&format!("xnat_webhook_{family}{{")),
            "{family} not exercised:\n{text}"
        );
    }
    text
}

/// Four addresses fill the metrics port with stalled connections: a fifth address evicts one,
/// and one address past its share is refused.
async fn fill_the_metrics_port(h: &Harness) {
    use tokio::io::AsyncWriteExt;
    let per_peer = jupyter_xnat_webhook::server::listen::METRICS.per_peer;
    let connect = |ip: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        let mut tcp = socket.connect(h.metrics_addr).await.unwrap();
        let _ = tcp.write_all(b"G").await;
        tcp
    };
    let mut held = Vec::new();
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        for _ in 0..per_peer {
            held.push(connect(ip).await);
        }
    }
    held.push(connect("127.0.0.2").await);
    tokio::time::sleep(jupyter_xnat_webhook::server::STALLED_AFTER).await;
    held.push(connect("127.0.0.6").await);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

#[tokio::test]
async fn every_alert_and_panel_reads_metrics_the_webhook_serves() {
    let objects = rendered();
    let served = served(&exercised_metrics().await);
    assert!(
        served.contains("xnat_webhook_admissions_total"),
        "{served:?}"
    );
    let mut read = BTreeSet::new();
    for (place, text) in expressions(&objects) {
        let expr = promql_parser::parser::parse(&text)
            .unwrap_or_else(|e| panic!("{place}: {text:?} is not PromQL: {e}"));
        let names = selected(&expr);
        assert!(!names.is_empty(), "{place}: {text:?} reads no metric");
        for name in names {
            assert!(
                served.contains(&name) || API_SERVER_METRICS.contains(&name.as_str()),
                "{place}: {name} is not served by the webhook ({text})"
            );
            read.insert(name);
        }
    }
    // The API server's view of the webhook is watched: an unreachable webhook under
    // failurePolicy Ignore starts every pod, so only the API server can tell.
    for name in API_SERVER_METRICS {
        assert!(read.contains(*name), "nothing reads {name}");
    }
    // The name the API server labels its metrics with is the webhook's.
    let config = &of_kind(&objects, "MutatingWebhookConfiguration")[0];
    let name = config["webhooks"][0]["name"].as_str().unwrap();
    for (place, text) in expressions(&objects) {
        if text.contains("apiserver_admission_webhook") {
            assert!(
                text.contains(&format!("name=\"{name}\"")),
                "{place}: {text}"
            );
        }
    }
}

#[test]
fn a_misspelled_metric_is_caught() {
    let served = served("# TYPE xnat_webhook_admissions counter\n");
    let expr = promql_parser::parser::parse("sum(rate(xnat_webhook_admission_total[5m]))").unwrap();
    let names = selected(&expr);
    assert_eq!(
        names,
        BTreeSet::from(["xnat_webhook_admission_total".to_owned()])
    );
    assert!(!served.contains("xnat_webhook_admission_total"));
    assert!(served.contains("xnat_webhook_admissions_total"));
    assert!(promql_parser::parser::parse("sum(rate(x[5m])").is_err());
}

#[test]
fn every_alert_says_how_bad_and_what_to_do() {
    let objects = rendered();
    let rule = &of_kind(&objects, "PrometheusRule")[0];
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let mut names = BTreeSet::new();
    for r in rules {
        let alert = r["alert"].as_str().expect("every rule is an alert");
        assert!(names.insert(alert), "{alert} twice");
        assert!(r["for"].is_string(), "{alert}: no `for`");
        let severity = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{alert}: severity {severity:?}"
        );
        for a in ["summary", "description"] {
            assert!(
                r["annotations"][a].as_str().is_some_and(|s| s.len() > 20),
                "{alert}: no {a}"
            );
        }
    }
    for must in [
        "XnatWebhookFailOpen",
        "XnatWebhookXnatErrors",
        "XnatWebhookStaleAnswers",
        "XnatWebhookReloadRejected",
        "XnatWebhookAdmissionErrors",
        "XnatWebhookCertificateExpiresSoon",
        "XnatWebhookRefusing",
        "XnatWebhookIndexStale",
    ] {
        assert!(names.contains(must), "no {must}");
    }
    // A refusal is a pod started without its data and without an Event: the first burst alerts.
    let refusing = rules.iter().find(|r| r["alert"] == "XnatWebhookRefusing");
    assert_eq!(refusing.unwrap()["for"], "0m");
    // The ServiceMonitor scrapes the Service port that serves /metrics.
    let monitor = &of_kind(&objects, "ServiceMonitor")[0];
    let port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
    let service = &of_kind(&objects, "Service")[0];
    let ports = service["spec"]["ports"].as_array().unwrap();
    let metrics = ports
        .iter()
        .find(|p| p["name"] == port)
        .expect("the scraped port");
    assert_eq!(metrics["targetPort"], "metrics");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "the ServiceMonitor selects the Service"
        );
    }
}
