//! deploy/helm/jupyter-xnat-webhook: the chart lints and renders for its defaults and for every
//! option (its ci/*-values.yaml), renders what deploy/ (kustomize) renders object by object, so the
//! two cannot drift, checks a policy value at install with the policy's own JSON Schema, and keeps
//! one version with Cargo. Needs `helm` v3 (.ci/install-helm puts one on the PATH).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jupyter_xnat_webhook::policy::{Overrides, Policy};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::Role;
use serde_json::{Value, json};

use crate::deploy::{
    Rendered, Site, check_kinds, documents, flag, kustomize, labels, repo, selector_matches,
    serves_with, typed, webhook_container,
};

const CHART: &str = "deploy/helm/jupyter-xnat-webhook";
/// The namespace deploy/ installs into, and the one the chart is rendered for.
const NAMESPACE: &str = "xnat-webhook";
/// Labels only Helm sets: the one expected difference between the two renders.
const HELM_LABELS: &[&str] = &[
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
];
const NRGXNAT_URL: &str = "http://xnat-xnat-web.xnat.svc.cluster.local";

// ---------------------------------------------------------------------------------------------
// Running helm

/// `$HELM` (the Makefile sets it, fetching helm when the PATH has none), else `helm`.
fn helm(args: &[&str], cwd: &Path) -> Output {
    let helm = std::env::var_os("HELM").unwrap_or_else(|| "helm".into());
    match Command::new(helm).args(args).current_dir(cwd).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "helm is not installed: tests/it/chart.rs lints and renders the chart with helm v3 \
             (no cluster needed); `make test` fetches one (.ci/install-helm), or set HELM"
        ),
        Err(e) => panic!("cannot run helm: {e}"),
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `helm template` of the chart with these values (YAML), into the webhook's namespace.
fn template(values: &str) -> Rendered {
    let output = template_output(values);
    assert!(
        output.status.success(),
        "helm template with values\n{values}\nfailed:\n{}",
        stderr(&output)
    );
    documents(
        &String::from_utf8_lossy(&output.stdout),
        &format!("helm template with values {{{}}}", values.trim()),
    )
}

fn template_output(values: &str) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).expect("write values");
    let chart = repo().join(CHART);
    helm(
        &[
            "template",
            "jupyter-xnat-webhook",
            chart.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
            "--values",
            file.to_str().unwrap(),
        ],
        dir.path(),
    )
}

/// A site kustomization outside deploy/ (README "Install with kustomize"): its resources (the
/// first one relative to the copied deploy/, the others files written beside it) and components.
fn site(site: &Site, resources: &[&str], components: &[&str], files: &[(&str, &str)]) -> Rendered {
    let dir = site.tmp.path().join("site");
    std::fs::create_dir_all(&dir).expect("site dir");
    let list =
        |items: Vec<String>| -> String { items.iter().map(|i| format!("  - {i}\n")).collect() };
    let resources = list(
        resources
            .iter()
            .map(|r| r.replace("@", "../deploy/"))
            .collect(),
    );
    let components = list(
        components
            .iter()
            .map(|c| format!("../deploy/components/{c}"))
            .collect(),
    );
    let mut kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         resources:\n{resources}components:\n{components}"
    );
    for (name, text) in files {
        if *name == "kustomization-extra" {
            kustomization.push_str(text);
        } else {
            std::fs::write(dir.join(name), text).expect("site file");
        }
    }
    std::fs::write(dir.join("kustomization.yaml"), kustomization).expect("kustomization");
    kustomize(&dir)
}

/// The README's hub setting for kustomize: a local-config ConfigMap the hub component reads.
fn hub_file(namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: jupyter-xnat-webhook-hub\n  \
         annotations:\n    config.kubernetes.io/local-config: \"true\"\ndata:\n  namespace: {namespace}\n"
    )
}

// ---------------------------------------------------------------------------------------------
// Comparing the two renders

/// What may differ by construction between a kustomize and a Helm render.
#[derive(Clone, Copy, PartialEq)]
enum Pair {
    /// Both renders carry the same TLS material (none, or cert-manager's).
    Same,
    /// Each made its own CA and certificate (certs-script vs the chart's generated pair).
    OwnEach,
}

/// Every object by "Kind namespace/name", with what differs by construction taken out: Helm's
/// own labels, the Namespace (Helm does not own its release's namespace), the order of lists
/// whose order means nothing, and the policy's text (compared as the document it is).
fn normalized(r: &Rendered, pair: Pair) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for object in &r.objects {
        let mut o = object.clone();
        let kind = o["kind"].as_str().unwrap_or_default().to_owned();
        if kind == "Namespace" {
            continue;
        }
        strip_helm_labels(&mut o["metadata"]);
        if kind == "Deployment" {
            strip_helm_labels(&mut o["spec"]["template"]["metadata"]);
            let pod = &mut o["spec"]["template"]["spec"];
            sort_by_name(&mut pod["volumes"]);
            for container in pod["containers"].as_array_mut().into_iter().flatten() {
                sort_by_name(&mut container["volumeMounts"]);
                sort_by_name(&mut container["env"]);
            }
        }
        if let Some(text) = o["data"]["policy.yaml"].as_str() {
            let parsed: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).expect("the policy is YAML");
            o["data"]["policy.yaml"] = serde_json::to_value(parsed).unwrap();
        }
        if pair == Pair::OwnEach {
            if kind == "Secret" {
                o["data"] = json!("(each its own pair)");
            }
            if kind == "MutatingWebhookConfiguration" {
                o["webhooks"][0]["clientConfig"]["caBundle"] = json!("(each its own CA)");
            }
        }
        let key = format!(
            "{kind} {}/{}",
            o["metadata"]["namespace"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str().unwrap_or("?")
        );
        assert!(
            all.insert(key.clone(), o).is_none(),
            "{}: two {key}",
            r.source
        );
    }
    all
}

fn strip_helm_labels(metadata: &mut Value) {
    if let Some(labels) = metadata["labels"].as_object_mut() {
        for label in HELM_LABELS {
            labels.remove(*label);
        }
    }
}

fn sort_by_name(list: &mut Value) {
    if let Some(items) = list.as_array_mut() {
        items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    }
}

/// Each path at which `a` and `b` differ, with both values.
fn differences(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differences(va, vb, format!("{path}.{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(va, vb, format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: kustomize {a} / chart {b}")),
        _ => {}
    }
}

/// The kustomize render and the chart's are the same objects, field by field.
fn assert_same(kustomized: &Rendered, charted: &Rendered, pair: Pair) {
    let k = normalized(kustomized, pair);
    let h = normalized(charted, pair);
    let only_k: Vec<_> = k.keys().filter(|key| !h.contains_key(*key)).collect();
    let only_h: Vec<_> = h.keys().filter(|key| !k.contains_key(*key)).collect();
    assert!(
        only_k.is_empty() && only_h.is_empty(),
        "{} vs {}: objects only in kustomize {only_k:?}, only in the chart {only_h:?}",
        kustomized.source,
        charted.source
    );
    let mut out = Vec::new();
    for (key, object) in &k {
        differences(object, &h[key], key.clone(), &mut out);
    }
    assert!(
        out.is_empty(),
        "{} and {} differ:\n{}",
        kustomized.source,
        charted.source,
        out.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// One source, no drift

/// Each kustomize component and its chart value render the same objects: the defaults against
/// overlays/cert-manager, then each option alone, then all of them at once.
#[test]
fn the_chart_renders_what_kustomize_renders_for_each_option() {
    let s = Site::new();
    let overlay = ["@overlays/cert-manager"];
    let cases: &[(&str, &[&str], &str)] = &[
        ("", &[], "defaults"),
        (
            "clientAuth: {enabled: true}",
            &["client-auth"],
            "client auth",
        ),
        (
            "controlPlane: {cidrs: [192.0.2.0/24]}",
            &["control-plane-only"],
            "control plane only",
        ),
        (
            "archiveView: {enabled: true}",
            &["archive-view"],
            "archive view",
        ),
        (
            "monitoring: {serviceMonitor: {enabled: true}, prometheusRule: {enabled: true}, \
             grafanaDashboard: {enabled: true}}",
            &["prometheus", "grafana-dashboard"],
            "monitoring",
        ),
        (
            "hub: {userNamespaces: true}",
            &["user-namespaces"],
            "user namespaces",
        ),
        (
            "clientAuth: {enabled: true}\ncontrolPlane: {cidrs: [192.0.2.0/24]}\n\
             archiveView: {enabled: true}\nhub: {userNamespaces: true}\n\
             monitoring: {serviceMonitor: {enabled: true}, prometheusRule: {enabled: true}, \
             grafanaDashboard: {enabled: true}}",
            &[
                "client-auth",
                "control-plane-only",
                "archive-view",
                "user-namespaces",
                "prometheus",
                "grafana-dashboard",
            ],
            "every option",
        ),
    ];
    for (values, components, what) in cases {
        let kustomized = site(&s, &overlay, components, &[]);
        let charted = template(values);
        assert_same(&kustomized, &charted, Pair::Same);
        eprintln!("same objects: {what}");
    }
}

/// The hub's namespace is one setting in each: `hub.namespace` in the chart, the hub component
/// with a local-config ConfigMap in kustomize; both render the same objects for `xnat`, and the
/// render sends that namespace's pods to the webhook, accepts its hub's requester (matchConditions
/// and the policy the webhook runs with) and lets it post Events there.
#[test]
fn the_hub_namespace_is_one_value_in_both_and_reaches_every_place() {
    let s = Site::new();
    let hub = hub_file("xnat");
    let kustomized = site(
        &s,
        &["@overlays/cert-manager", "hub.yaml"],
        &["hub"],
        &[("hub.yaml", &hub)],
    );
    let charted = template("hub: {namespace: xnat}");
    assert_same(&kustomized, &charted, Pair::Same);
    // With user namespaces too (the hub component first: user-namespaces replaces the selector).
    let both = site(
        &s,
        &["@overlays/cert-manager", "hub.yaml"],
        &["hub", "user-namespaces"],
        &[("hub.yaml", &hub)],
    );
    assert_same(
        &both,
        &template("hub: {namespace: xnat, userNamespaces: true}"),
        Pair::Same,
    );
    for r in [&kustomized, &charted] {
        assert_hub_is(r, "xnat");
    }
    assert_hub_is(&template(""), "jupyter");
}

/// What "the hub is in `namespace`" means in one render.
fn assert_hub_is(r: &Rendered, namespace: &str) {
    let requester = format!("system:serviceaccount:{namespace}:hub");
    let config: MutatingWebhookConfiguration = r.one("MutatingWebhookConfiguration");
    let webhook = &config.webhooks.unwrap()[0];
    let selector = webhook.namespace_selector.clone().unwrap();
    let ns = |name: &str| labels(&[("kubernetes.io/metadata.name", name)]);
    assert!(selector_matches(&selector, &ns(namespace)), "{}", r.source);
    for other in ["jupyter", "xnat", "kube-system", NAMESPACE] {
        if other != namespace {
            assert!(
                !selector_matches(&selector, &ns(other)),
                "{}: {other}",
                r.source
            );
        }
    }
    let conditions = webhook.match_conditions.clone().unwrap();
    assert_eq!(
        conditions[0].expression,
        format!("request.userInfo.username == '{requester}'"),
        "{}",
        r.source
    );
    assert_acts_for_the_hub(r, namespace);
    let policy = running_policy(r);
    assert_eq!(
        policy.pods.requesters,
        std::slice::from_ref(&requester),
        "{}",
        r.source
    );
    let role: Role = r.one("Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some(namespace));
}

/// The webhook's own decision (the `review` tool, the server's code) with the rendered policy and
/// the Deployment's PODS_REQUESTERS acts on KubeSpawner's pod from that hub in `namespace`, and
/// skips the same pod from the other hub.
fn assert_acts_for_the_hub(r: &Rendered, namespace: &str) {
    let deployment: Deployment = r.one("Deployment");
    let (_, container) = webhook_container(&deployment);
    let requesters = flag(container, "pods-requesters", "PODS_REQUESTERS").unwrap();
    let config: ConfigMap = typed(
        r.named("ConfigMap", "jupyter-xnat-webhook-policy"),
        &r.source,
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, &config.data.unwrap()["policy.yaml"]).unwrap();
    let fixture = repo().join("tests/fixtures/kubespawner-7.1/alice-default.json");
    let review: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    let review_from = |hub: &str| {
        let mut review = review.clone();
        review["request"]["namespace"] = json!(hub);
        review["request"]["object"]["metadata"]["namespace"] = json!(hub);
        review["request"]["userInfo"]["username"] =
            json!(format!("system:serviceaccount:{hub}:hub"));
        let input = dir.path().join(format!("review-{hub}.json"));
        std::fs::write(&input, review.to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_jupyter-xnat-webhook"))
            .args([
                "review",
                "--policy",
                policy.to_str().unwrap(),
                "--access",
                "alice=ALPHA",
            ])
            .args(["--pods-requesters", &requesters])
            .stdin(std::fs::File::open(&input).unwrap())
            .env_remove("PODS_REQUESTERS")
            .output()
            .unwrap();
        assert!(out.status.success(), "review: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let skipped = "not created by an allowed requester";
    let answer = review_from(namespace);
    assert!(
        !answer.contains(skipped),
        "{}: the hub in {namespace} is skipped:\n{answer}",
        r.source
    );
    assert!(
        answer.contains("\"op\""),
        "{}: no patch for the hub:\n{answer}",
        r.source
    );
    let other = if namespace == "jupyter" {
        "xnat"
    } else {
        "jupyter"
    };
    assert!(
        review_from(other).contains(skipped),
        "{}: the hub in {other} is acted for",
        r.source
    );
}

/// The policy the webhook runs with: the ConfigMap's file with the Deployment's overrides.
fn running_policy(r: &Rendered) -> Policy {
    let deployment: Deployment = r.one("Deployment");
    let (_, container) = webhook_container(&deployment);
    let requesters = flag(container, "pods-requesters", "PODS_REQUESTERS")
        .expect("the Deployment sets PODS_REQUESTERS");
    let config: ConfigMap = typed(
        r.named("ConfigMap", "jupyter-xnat-webhook-policy"),
        &r.source,
    );
    let text = &config.data.unwrap()["policy.yaml"];
    let overrides = Overrides {
        pods_requesters: Some(requesters.split(',').map(str::to_owned).collect()),
        ..Overrides::default()
    };
    Policy::from_yaml(text.as_bytes(), &overrides)
        .unwrap_or_else(|e| panic!("{}: the policy does not load: {e}", r.source))
}

/// NrgXnat's set-up: `preset: nrgxnat` with the hub and XNAT in `xnat` renders what the README's
/// NrgXnat site kustomization renders (the preset as the policy, the hub component, the archive
/// view the preset needs).
#[test]
fn the_nrgxnat_preset_renders_what_the_nrgxnat_site_kustomization_renders() {
    let s = Site::new();
    let preset = std::fs::read_to_string(repo().join("deploy/presets/nrgxnat-k8s.yaml")).unwrap();
    let policy = format!("{preset}\nxnat:\n  url: {NRGXNAT_URL}\n");
    let hub = hub_file("xnat");
    let generator = "configMapGenerator:\n  - {name: jupyter-xnat-webhook-policy, namespace: \
                     xnat-webhook, behavior: replace, files: [policy.yaml], \
                     options: {disableNameSuffixHash: true}}\n";
    let kustomized = site(
        &s,
        &["@overlays/cert-manager", "hub.yaml"],
        &["hub", "archive-view"],
        &[
            ("hub.yaml", &hub),
            ("policy.yaml", &policy),
            ("kustomization-extra", generator),
        ],
    );
    let charted = template(&format!(
        "preset: nrgxnat\nhub: {{namespace: xnat}}\nxnat: {{url: \"{NRGXNAT_URL}\"}}"
    ));
    assert_same(&kustomized, &charted, Pair::Same);
}

/// `certificates.mode: generated` renders what the certs-script overlay renders, each with its
/// own CA; the chart's pair is one the webhook serves with, for the Service's name, verified by
/// the caBundle it renders with it.
#[test]
fn the_generated_certificate_is_served_and_trusted_by_its_ca_bundle() {
    let s = Site::new();
    s.webhook_certs(&[]);
    let kustomized = site(&s, &["@overlays/certs-script"], &[], &[]);
    let charted = template("certificates: {mode: generated}");
    assert_same(&kustomized, &charted, Pair::OwnEach);

    let secret: Secret = charted.one("Secret");
    let data = secret.data.unwrap();
    let config: MutatingWebhookConfiguration = charted.one("MutatingWebhookConfiguration");
    let ca_bundle = config.webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .expect("a caBundle")
        .0;
    assert_eq!(
        ca_bundle, data["ca.crt"].0,
        "the caBundle is the Secret's CA"
    );
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &data["tls.crt"].0).unwrap();
    std::fs::write(&key, &data["tls.key"].0).unwrap();
    serves_with(
        &cert,
        &key,
        &ca_bundle,
        "jupyter-xnat-webhook.xnat-webhook.svc",
    );
}

/// `certificates.mode: generated` is made once: with the Secret already in the cluster (as on
/// every `helm upgrade`), the chart reads it back with `lookup` and renders the same pair and
/// caBundle; only without one does it make a new CA. `helm template --dry-run=server` runs the
/// lookups against a fake API server that answers the two calls helm makes as the real one does.
#[test]
fn the_generated_certificate_is_kept_on_upgrade() {
    let existing = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "jupyter-xnat-webhook-tls", "namespace": NAMESPACE},
        "data": {"tls.crt": "Q0VSVA==", "tls.key": "S0VZ", "ca.crt": "Q0E="},
    });
    for secret in [Some(existing.clone()), None] {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let api = runtime.block_on(fake_api_server(secret.clone()));
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{api}\"}}}}]\n\
                 users: [{{name: u, user: {{token: t}}}}]\n\
                 contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"
            ),
        )
        .unwrap();
        let chart = repo().join(CHART);
        let output = helm(
            &[
                "template",
                "jupyter-xnat-webhook",
                chart.to_str().unwrap(),
                "--namespace",
                NAMESPACE,
                "--set",
                "certificates.mode=generated",
                "--dry-run=server",
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert!(
            output.status.success(),
            "helm template --dry-run=server:\n{}",
            stderr(&output)
        );
        let r = documents(&String::from_utf8_lossy(&output.stdout), "dry-run=server");
        let rendered: Secret = r.one("Secret");
        let data = serde_json::to_value(rendered.data.unwrap()).unwrap();
        let config: MutatingWebhookConfiguration = r.one("MutatingWebhookConfiguration");
        let bundle = config.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .clone()
            .unwrap();
        match secret {
            Some(existing) => {
                assert_eq!(data, existing["data"], "the Secret in the cluster is kept");
                assert_eq!(bundle.0, b"CA", "its CA stays the caBundle");
            }
            None => {
                let crt = String::from_utf8(rendered_field(&data, "tls.crt")).unwrap();
                assert!(
                    crt.starts_with("-----BEGIN CERTIFICATE-----"),
                    "a new pair: {crt}"
                );
                assert_eq!(bundle.0, rendered_field(&data, "ca.crt"));
            }
        }
    }
}

fn rendered_field(data: &Value, key: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(data[key].as_str().unwrap())
        .unwrap()
}

/// The two calls `lookup "v1" "Secret"` makes: discovery of the core group, then the GET; a
/// Secret that is not there is a 404 `Status`, as the API server answers.
async fn fake_api_server(secret: Option<Value>) -> String {
    use axum::Json;
    use axum::http::StatusCode;
    use axum::routing::get;
    let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets/jupyter-xnat-webhook-tls");
    let app = axum::Router::new()
        .route(
            "/api/v1",
            get(|| async {
                Json(json!({
                    "kind": "APIResourceList", "groupVersion": "v1",
                    "resources": [{"name": "secrets", "singularName": "secret",
                        "namespaced": true, "kind": "Secret", "verbs": ["get", "list"]}],
                }))
            }),
        )
        .route(
            &path,
            get(move || async move {
                match secret {
                    Some(secret) => (StatusCode::OK, Json(secret)),
                    None => (
                        StatusCode::NOT_FOUND,
                        Json(
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "NotFound", "code": 404,
                            "message": "secrets \"jupyter-xnat-webhook-tls\" not found"}),
                        ),
                    ),
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------------
// Every option renders; the policy is checked at install

/// `helm lint --strict` and `helm template` for the defaults and each ci/*-values.yaml (one per
/// option), and every object parses strictly as its Kubernetes type.
#[test]
fn the_chart_lints_and_renders_for_its_defaults_and_every_option() {
    let chart = repo().join(CHART);
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart.join("ci"))
        .expect("the chart's ci/ values")
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "a values file per option in ci/: {files:?}"
    );
    let mut runs = vec![None];
    runs.extend(files.iter().map(Some));
    for file in runs {
        let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
        let values = file.map(|f| f.to_str().unwrap());
        if let Some(values) = values {
            args.extend(["--values", values]);
        }
        let output = helm(&args, &chart);
        assert!(
            output.status.success(),
            "helm lint {values:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
        let text = values.map(|v| std::fs::read_to_string(v).unwrap());
        let r = template(text.as_deref().unwrap_or(""));
        check_kinds_with_cluster_rbac(&r);
        running_policy(&r);
    }
}

/// deploy.rs's kind checks, but the user-namespaces option's ClusterRole (Events only) is allowed.
fn check_kinds_with_cluster_rbac(r: &Rendered) {
    let mut rest = Rendered {
        source: r.source.clone(),
        objects: Vec::new(),
    };
    for o in &r.objects {
        match o["kind"].as_str() {
            Some("ClusterRole") => assert_eq!(
                o["rules"],
                json!([{"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}]),
                "{}: Events only",
                r.source
            ),
            Some("ClusterRoleBinding") => {
                assert_eq!(o["roleRef"]["kind"], "ClusterRole", "{}", r.source);
                assert_eq!(o["roleRef"]["name"], "jupyter-xnat-webhook-events");
                assert_eq!(
                    o["subjects"],
                    json!([{"kind": "ServiceAccount", "name": "jupyter-xnat-webhook",
                        "namespace": NAMESPACE}]),
                    "{}: the webhook's own account only",
                    r.source
                );
            }
            _ => rest.objects.push(o.clone()),
        }
    }
    check_kinds(&rest);
}

/// A mistyped policy value fails `helm template` (and so `helm install`) naming the field, and
/// so do the chart's own values; the schema's policy part is the policy's JSON Schema.
#[test]
fn a_mistyped_policy_value_fails_at_install_naming_the_field() {
    for (values, named) in [
        ("policy: {xnat: {timout: 3s}}", "timout"),
        (
            "policy: {storage: {volumes: [{name: a, claimNam: b}]}}",
            "claimNam",
        ),
        ("policy: {mode: enforcing}", "policy.mode"),
        ("policy: {xnat: {onError: retry}}", "policy.xnat.onError"),
        ("preset: nrgxnatt", "preset"),
        ("hub: {namespce: xnat}", "namespce"),
        (
            "hub: {serviceAccount: \"x' || true || '\"}",
            "hub.serviceAccount",
        ),
        ("certificates: {mode: selfsigned}", "certificates.mode"),
        // The chart's own checks name the value to set instead, or what is wrong.
        ("policy: {pods: {requesters: [x]}}", "hub.namespace"),
        ("hub: {namespace: xnat-webhook}", "its own namespace"),
        ("hub: {namespace: kube-system}", "kube-system"),
        ("policy: {xnat: {url: \"http://x\"}}", "xnat.url"),
        ("claims: {archiv: a}", "claims.archiv"),
    ] {
        let output = template_output(values);
        assert!(!output.status.success(), "{values} rendered");
        let err = stderr(&output);
        assert!(
            err.contains(named),
            "{values}: the error names {named}:\n{err}"
        );
    }

    let schema: Value = read_json(&repo().join(CHART).join("values.schema.json"));
    let policy: Value = read_json(&repo().join("deploy/base/policy.schema.json"));
    let mut part = schema["properties"]["policy"].clone();
    part.as_object_mut().unwrap().remove("description");
    let mut whole = policy.clone();
    for key in ["$schema", "$defs", "title", "description"] {
        whole.as_object_mut().unwrap().remove(key);
    }
    assert!(
        part == whole && schema["$defs"] == policy["$defs"],
        "values.schema.json's policy is not deploy/base/policy.schema.json's: run `make schema`"
    );
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The chart's files/ are copies of deploy/'s (a chart cannot read outside its directory and
/// kustomize refuses links out of its own): `make schema` copies them.
#[test]
fn the_charts_files_are_deploys_own() {
    for (copy, source) in [
        ("files/policy-generic.yaml", "deploy/base/policy.yaml"),
        (
            "files/policy-nrgxnat.yaml",
            "deploy/presets/nrgxnat-k8s.yaml",
        ),
        (
            "files/dashboard.json",
            "deploy/components/grafana-dashboard/dashboard.json",
        ),
        (
            "files/prometheusrule.yaml",
            "deploy/components/prometheus/prometheusrule.yaml",
        ),
    ] {
        let a = std::fs::read(repo().join(CHART).join(copy)).unwrap();
        let b = std::fs::read(repo().join(source)).unwrap();
        assert!(a == b, "{CHART}/{copy} is not {source}: run `make schema`");
    }
}

// ---------------------------------------------------------------------------------------------
// The README's commands, one version

/// Every `helm install` and `helm upgrade` in README.md renders as written (as `helm template`),
/// in a directory holding the checkout's deploy/ and `my-values.yaml`, a copy of the example
/// values file, and the render is NrgXnat's: the hub in `xnat`.
#[test]
fn the_readmes_helm_commands_render_with_its_example_values() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let commands = helm_commands(&readme);
    assert!(
        commands.iter().any(|c| c.starts_with("helm install ")),
        "README.md has a `helm install` in a ```sh block: {commands:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("deploy"), dir.path().join("deploy")).unwrap();
    std::fs::copy(
        repo().join("deploy/helm/examples/nrgxnat-values.yaml"),
        dir.path().join("my-values.yaml"),
    )
    .unwrap();
    for command in &commands {
        let rendered = command
            .replacen("helm upgrade --install ", "helm template ", 1)
            .replacen("helm upgrade ", "helm template ", 1)
            .replacen("helm install ", "helm template ", 1);
        let helm = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
        let rendered = rendered.replacen("helm ", &format!("{helm} "), 1);
        let output = Command::new("bash")
            .args(["-c", &rendered])
            .current_dir(dir.path())
            .output()
            .expect("bash");
        assert!(
            output.status.success(),
            "README: `{command}` does not render:\n{}",
            stderr(&output)
        );
        let r = documents(&String::from_utf8_lossy(&output.stdout), command);
        assert_hub_is(&r, "xnat");
        assert_eq!(
            running_policy(&r)
                .xnat
                .endpoint
                .url
                .as_str()
                .trim_end_matches('/'),
            NRGXNAT_URL
        );
    }
}

/// The `helm install`/`helm upgrade` lines of README.md's ```sh blocks, continuations joined.
fn helm_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut line = String::new();
    for raw in readme.lines() {
        let trimmed = raw.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let (part, more) = match trimmed.strip_suffix('\\') {
            Some(part) => (part, true),
            None => (trimmed, false),
        };
        line.push_str(part);
        if more {
            continue;
        }
        let command = std::mem::take(&mut line);
        let command = command.split(" # ").next().unwrap().trim().to_owned();
        if command.starts_with("helm install ") || command.starts_with("helm upgrade ") {
            commands.push(command);
        }
    }
    commands
}

/// One version: Cargo's, the chart's version and appVersion, the kustomize image tag, and the
/// CHANGELOG's latest release.
#[test]
fn one_version_in_cargo_the_chart_kustomize_and_the_changelog() {
    let version = env!("CARGO_PKG_VERSION");
    let chart: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join(CHART).join("Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        chart["version"].as_str(),
        Some(version),
        "Chart.yaml version"
    );
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(version),
        "Chart.yaml appVersion"
    );
    let base: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("deploy/base/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        base["images"][0]["newTag"].as_str(),
        Some(version),
        "deploy/base/kustomization.yaml images[0].newTag"
    );
    let changelog = std::fs::read_to_string(repo().join("CHANGELOG.md")).unwrap();
    let released = changelog
        .lines()
        .find(|l| l.starts_with("## [") && !l.starts_with("## [Unreleased]"))
        .expect("CHANGELOG.md has a release");
    assert!(
        released.starts_with(&format!("## [{version}]")),
        "CHANGELOG.md's latest release is {version}: {released}"
    );
    let deployment: Deployment = template("").one("Deployment");
    let (_, container) = webhook_container(&deployment);
    assert_eq!(
        container.image.as_deref(),
        Some(format!("jupyter-xnat-webhook:{version}").as_str())
    );
    assert!(repo().join("LICENSE").exists(), "LICENSE");
}

/// What values do beyond deploy/'s components: the claims, the runbook address, env replaced
/// rather than merged, XNAT's own port opened, no PDB for one replica (it would block drains).
#[test]
fn values_reach_the_objects_they_name() {
    let r = template(
        "preset: nrgxnat\nclaims: {archive: xnat-archive}\nxnat: {url: \"http://xnat:8081/xnat\"}\n\
         policy: {env: {ONLY: this}}\nreplicas: 1\n\
         monitoring: {prometheusRule: {enabled: true, runbookBaseUrl: \"https://docs.example.org/jxw/README.md\"}}",
    );
    let policy = running_policy(&r);
    let archive = policy
        .storage
        .volumes
        .iter()
        .find(|v| v.name == "archive")
        .unwrap();
    assert_eq!(archive.claim_name, "xnat-archive");
    let workspaces = policy
        .storage
        .volumes
        .iter()
        .find(|v| v.name == "workspaces")
        .unwrap();
    assert_eq!(
        workspaces.claim_name, "workspaces",
        "the preset's claim kept"
    );
    let config: ConfigMap = typed(
        r.named("ConfigMap", "jupyter-xnat-webhook-policy"),
        &r.source,
    );
    let text: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&config.data.unwrap()["policy.yaml"]).unwrap();
    assert_eq!(
        serde_json::to_value(&text["env"]).unwrap(),
        json!({"ONLY": "this"}),
        "env replaces the preset's"
    );
    let rule = r.named("PrometheusRule", "jupyter-xnat-webhook");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    for alert in rules {
        let url = alert["annotations"]["runbook_url"].as_str().unwrap();
        let name = alert["alert"].as_str().unwrap().to_lowercase();
        assert_eq!(
            url,
            format!("https://docs.example.org/jxw/README.md#{name}")
        );
    }
    assert!(
        r.of_kind("PodDisruptionBudget").is_empty(),
        "no PDB for one replica"
    );
    let policy = r.named("NetworkPolicy", "jupyter-xnat-webhook");
    let ports: Vec<i64> = policy["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap().iter())
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert!(ports.contains(&8081), "XNAT's port is open: {ports:?}");
}

/// `certificates.mode: existing` serves the Secret named and puts the CA given into the caBundle,
/// and renders no certificate of its own.
#[test]
fn an_existing_certificate_is_the_one_served_and_trusted() {
    let r = template(
        "certificates: {mode: existing, existing: {secretName: site-webhook-tls, caBundle: Q0E=}}",
    );
    assert!(r.of_kind("Secret").is_empty() && r.of_kind("Certificate").is_empty());
    assert_eq!(
        mounted_secret(&r, "tls").as_deref(),
        Some("site-webhook-tls")
    );
    let config: MutatingWebhookConfiguration = r.one("MutatingWebhookConfiguration");
    assert!(
        config.metadata.annotations.is_none(),
        "no cert-manager injection"
    );
    let bundle = config.webhooks.unwrap()[0].client_config.ca_bundle.clone();
    assert_eq!(bundle.unwrap().0, b"CA");
}

/// Optional pieces switch off: no Events RBAC when the policy posts no Events, no
/// NetworkPolicy or PDB when turned off, and the chart's own credentials Secret when asked.
#[test]
fn switches_leave_out_what_they_name() {
    let r = template(
        "policy: {events: {enabled: false}}\nnetworkPolicy: {enabled: false}\n\
         podDisruptionBudget: {enabled: false}\n\
         xnat: {credentials: {create: true, username: svc, password: pw}}",
    );
    for kind in [
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "PodDisruptionBudget",
    ] {
        assert!(r.of_kind(kind).is_empty(), "{kind} rendered");
    }
    let secret: Secret = r.one("Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(mounted_secret(&r, "xnat-credentials"), secret.metadata.name);
}

/// The Secret the webhook's pod mounts as its volume `volume`.
fn mounted_secret(r: &Rendered, volume: &str) -> Option<String> {
    let deployment: Deployment = r.one("Deployment");
    let (pod, _) = webhook_container(&deployment);
    let found = pod.volumes.iter().flatten().find(|v| v.name == volume)?;
    found.secret.as_ref()?.secret_name.clone()
}
