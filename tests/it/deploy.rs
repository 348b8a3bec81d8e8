//! deploy/: the kustomize base and its two overlays render offline with `kubectl kustomize`, and what
//! they render keeps the promises the webhook and the API server rely on (README "Install with kustomize").
//!
//! The overlays are kustomize Components used by a site kustomization outside deploy/ (kustomize
//! refuses an overlay inside its base's directory); the tests build exactly that layout in a temp
//! copy: `<tmp>/deploy` (a copy of deploy/) and `<tmp>/site/kustomization.yaml`. The certs-script
//! overlay is rendered after running the real certs/webhook-certs.sh into the copy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jupyter_xnat_webhook::policy::Policy;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodSpec, Secret, Service, ServiceAccount, Volume,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The hub's service account: the only requester whose pods the webhook is asked about.
const HUB: &str = "system:serviceaccount:jupyter:hub";
const JUPYTER_NS: &str = "jupyter";
/// Set by the API server on every namespace to its own name; cannot be changed.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The API server's own limit is 30s; the webhook's XNAT budget and request timeout are sized for
/// the timeout chain's API server timeout (`timeouts.rs`).
const MAX_TIMEOUT_SECONDS: i32 = jupyter_xnat_webhook::API_SERVER_TIMEOUT.as_secs() as i32;
/// Kinds the webhook's deployment may contain. Anything else (in particular any cluster-wide RBAC:
/// the webhook only posts Events in the hub's namespace) fails the test.
const ALLOWED_KINDS: &[&str] = &[
    "Namespace",
    "ServiceAccount",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "MutatingWebhookConfiguration",
    "Certificate",
    "Issuer",
    "Role",
    "RoleBinding",
    // components/prometheus (Prometheus Operator); tests/monitoring.rs reads them.
    "ServiceMonitor",
    "PrometheusRule",
];

// ---------------------------------------------------------------------------------------------
// Rendering

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl kustomize DIR`, split into its documents.
pub(crate) fn kustomize(dir: &Path) -> Rendered {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "kubectl is not installed: tests/deploy.rs renders deploy/ with `kubectl kustomize` \
             (kubectl >= 1.27, the client alone, no cluster needed)"
        ),
        Err(e) => panic!("cannot run kubectl: {e}"),
    };
    assert!(
        output.status.success(),
        "`kubectl kustomize {}` failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    documents(
        &String::from_utf8_lossy(&output.stdout),
        &dir.display().to_string(),
    )
}

/// A multi-document YAML stream (a render) as one JSON value per object.
pub(crate) fn documents(stream: &str, source: &str) -> Rendered {
    let mut objects = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(stream).enumerate() {
        let yaml: serde_yaml_ng::Value = serde::Deserialize::deserialize(document)
            .unwrap_or_else(|e| panic!("document {i} of {source} is not YAML: {e}"));
        let value = serde_json::to_value(yaml)
            .unwrap_or_else(|e| panic!("document {i} of {source} is not JSON-like: {e}"));
        if !value.is_null() {
            objects.push(value);
        }
    }
    assert!(!objects.is_empty(), "{source} rendered nothing");
    Rendered {
        source: source.to_owned(),
        objects,
    }
}

/// A temp copy of deploy/ (without generated certificates) beside a site kustomization that uses
/// the base with one overlay, as README "Install with kustomize" tells admins to set it up.
pub(crate) struct Site {
    pub(crate) tmp: tempfile::TempDir,
}

impl Site {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("cannot make a temp dir");
        copy_dir(&repo().join("deploy"), &tmp.path().join("deploy"));
        Self { tmp }
    }

    pub(crate) fn deploy(&self) -> PathBuf {
        self.tmp.path().join("deploy")
    }

    fn certs(&self) -> PathBuf {
        self.tmp.path().join("certs")
    }

    /// Renders a site kustomization outside deploy/ (README "Install with kustomize") on one overlay
    /// (`cert-manager`, `certs-script`) or, for any other name, on the base with that component.
    fn render(&self, overlay: &str) -> Rendered {
        self.render_with(&[overlay], "")
    }

    /// Renders a site kustomization: the first name is the overlay it uses as its resource (or a
    /// component on the bare base), the rest components; `extra` are a site's own lines.
    pub(crate) fn render_with(&self, names: &[&str], extra: &str) -> Rendered {
        let site = self.tmp.path().join("site");
        std::fs::create_dir_all(&site).expect("cannot make the site dir");
        let (resource, components) = match names {
            [first @ ("cert-manager" | "certs-script"), rest @ ..] => {
                (format!("../deploy/overlays/{first}"), rest)
            }
            all => ("../deploy/base".to_owned(), all),
        };
        let components: String = components
            .iter()
            .map(|c| format!("  - ../deploy/components/{c}\n"))
            .collect();
        let kustomization = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n  - {resource}\ncomponents:\n{components}{extra}"
        );
        std::fs::write(site.join("kustomization.yaml"), kustomization)
            .expect("cannot write the site kustomization");
        kustomize(&site)
    }

    /// Runs certs/webhook-certs.sh (from the repository) into this copy.
    pub(crate) fn webhook_certs(&self, args: &[&str]) {
        let script = repo().join("certs/webhook-certs.sh");
        let output = Command::new("bash")
            .arg(&script)
            .args(args)
            .arg("--certs")
            .arg(self.certs())
            .arg("--overlay")
            .arg(self.deploy().join("components/certs-script"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "certs/webhook-certs.sh {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub(crate) fn read(&self, relative: &str) -> String {
        let path = self.tmp.path().join(relative);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot make {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot list {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("cannot read a directory entry");
        let path = entry.path();
        if entry.file_name() == "generated" {
            continue; // an admin's own certificates: the tests make their own
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name()))
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", path.display()));
        }
    }
}

/// Every object of one render.
pub(crate) struct Rendered {
    pub(crate) source: String,
    pub(crate) objects: Vec<Value>,
}

impl Rendered {
    pub(crate) fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|o| o["kind"].as_str() == Some(kind))
            .collect()
    }

    /// All objects of `kind`, parsed into their k8s-openapi type.
    pub(crate) fn all<T: DeserializeOwned + Serialize>(&self, kind: &str) -> Vec<T> {
        self.of_kind(kind)
            .into_iter()
            .map(|o| typed(o, &self.source))
            .collect()
    }

    /// The only object of `kind`.
    pub(crate) fn one<T: DeserializeOwned + Serialize>(&self, kind: &str) -> T {
        let mut all = self.all::<T>(kind);
        assert_eq!(all.len(), 1, "{}: expected exactly one {kind}", self.source);
        all.remove(0)
    }

    /// The only object of `kind` named `name`, as plain JSON (for kinds k8s-openapi does not know).
    pub(crate) fn named(&self, kind: &str, name: &str) -> &Value {
        let found: Vec<_> = self
            .of_kind(kind)
            .into_iter()
            .filter(|o| o["metadata"]["name"].as_str() == Some(name))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{}: expected one {kind} named {name}",
            self.source
        );
        found[0]
    }
}

/// Parses `value` into `T` and fails on any field `T` does not know (a typo such as
/// `readOnlyRootFileSystem` would otherwise be dropped without a word, by kubectl too).
pub(crate) fn typed<T: DeserializeOwned + Serialize>(value: &Value, source: &str) -> T {
    let what = format!(
        "{source}: {} {}",
        value["kind"].as_str().unwrap_or("?"),
        value["metadata"]["name"].as_str().unwrap_or("?")
    );
    let parsed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{what} does not parse as its Kubernetes type: {e}"));
    let again = serde_json::to_value(&parsed).expect("a k8s-openapi value serializes");
    let mut lost = Vec::new();
    lost_fields(value, &again, String::new(), &mut lost);
    assert!(
        lost.is_empty(),
        "{what} has fields its Kubernetes type does not know (misspelt or misplaced?): {lost:?}"
    );
    parsed
}

fn lost_fields(original: &Value, again: &Value, path: String, lost: &mut Vec<String>) {
    match (original, again) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => lost_fields(value, other, format!("{path}.{key}"), lost),
                    None => lost.push(format!("{path}.{key}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                lost_fields(x, y, format!("{path}[{i}]"), lost);
            }
        }
        (a, b) if a != b => lost.push(format!("{path} ({a} became {b})")),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Selectors, ports, flags

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            other => panic!("unknown label selector operator {other}"),
        }
    });
    by_labels && by_expressions
}

/// True when no namespace named `namespace` can match `selector`, whatever other labels it is
/// given: some requirement on `kubernetes.io/metadata.name` rules that name out.
fn never_selects_namespace(selector: &LabelSelector, namespace: &str) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .any(|(k, v)| k == NAME_LABEL && v != namespace);
    let by_expression = selector
        .match_expressions
        .iter()
        .flatten()
        .filter(|e| e.key == NAME_LABEL)
        .any(|e| {
            let values = e.values.clone().unwrap_or_default();
            let listed = values.iter().any(|v| v == namespace);
            match e.operator.as_str() {
                "In" => !listed,
                "NotIn" => listed,
                "DoesNotExist" => true,
                _ => false,
            }
        });
    by_label || by_expression
}

/// The number a Service's targetPort, a probe's port or a NetworkPolicy port means in `container`.
fn port_number(container: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("container {} has no port named {name}", container.name))
                .container_port
        }
    }
}

/// The value of `--flag` in the container's args (`--flag=value` or `--flag value`), else of the
/// env var the binary reads for it.
pub(crate) fn flag(container: &Container, name: &str, env: &str) -> Option<String> {
    let args = container.args.clone().unwrap_or_default();
    let long = format!("--{name}");
    for (i, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix(&format!("{long}=")) {
            return Some(value.to_string());
        }
        if *arg == long {
            return args.get(i + 1).cloned();
        }
    }
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == env)
        .and_then(|e| e.value.clone())
}

fn socket_port(address: &str) -> i32 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{address:?} is not host:port"))
}

fn volume<'a>(pod: &'a PodSpec, container: &Container, directory: &str) -> &'a Volume {
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path.trim_end_matches('/') == directory.trim_end_matches('/'))
        .unwrap_or_else(|| panic!("nothing is mounted at {directory} (as a whole directory)"));
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap_or_else(|| {
            panic!(
                "volume {} of the mount at {directory} is missing",
                mount.name
            )
        })
}

fn parent(path: &str) -> String {
    Path::new(path)
        .parent()
        .unwrap_or_else(|| panic!("{path} has no directory"))
        .display()
        .to_string()
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .unwrap_or_else(|| panic!("{path} has no file name"))
        .to_string_lossy()
        .into_owned()
}

pub(crate) fn webhook_container(deployment: &Deployment) -> (&PodSpec, &Container) {
    let pod = deployment
        .spec
        .template
        .spec
        .as_ref()
        .expect("the Deployment has a pod template");
    assert_eq!(pod.containers.len(), 1, "one container: the webhook");
    (pod, &pod.containers[0])
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("the pod template has labels")
}

// ---------------------------------------------------------------------------------------------
// What every render (the base and each overlay) must keep

/// What one render holds, once checked, for the overlay-specific checks.
struct Checked {
    namespace: String,
    service: Service,
    tls_secret: String,
    webhook: MutatingWebhook,
    webhook_config: MutatingWebhookConfiguration,
}

fn check_common(r: &Rendered) -> Checked {
    check_kinds(r);

    let deployment: Deployment = r.one("Deployment");
    let namespace = deployment
        .metadata
        .namespace
        .clone()
        .expect("the Deployment has a namespace");
    assert_ne!(namespace, "default", "the webhook gets its own namespace");
    assert_ne!(namespace, JUPYTER_NS, "the webhook gets its own namespace");
    let ns: Namespace = r.one("Namespace");
    assert_eq!(ns.metadata.name.as_deref(), Some(namespace.as_str()));
    for o in &r.objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        if !matches!(
            kind,
            "Namespace" | "MutatingWebhookConfiguration" | "Role" | "RoleBinding"
        ) {
            assert_eq!(
                o["metadata"]["namespace"].as_str(),
                Some(namespace.as_str()),
                "{}: {kind} {} is not in the webhook's namespace",
                r.source,
                o["metadata"]["name"]
            );
        }
    }

    let policy_text = check_deployment(r, &deployment);
    let (_, container) = webhook_container(&deployment);
    // The policy the webhook runs with: the Deployment's PODS_REQUESTERS replaces its requesters.
    let requesters = flag(container, "pods-requesters", "PODS_REQUESTERS").unwrap_or_else(|| {
        panic!(
            "{}: the Deployment names the hub (PODS_REQUESTERS)",
            r.source
        )
    });
    let overrides = jupyter_xnat_webhook::policy::Overrides {
        pods_requesters: Some(requesters.split(',').map(str::to_owned).collect()),
        ..Default::default()
    };
    let policy = Policy::from_yaml(policy_text.as_bytes(), &overrides)
        .unwrap_or_else(|e| panic!("{}: the policy ConfigMap does not parse: {e}", r.source));
    let listen = socket_port(&flag(container, "listen", "LISTEN").unwrap_or("0.0.0.0:8443".into()));
    let metrics = socket_port(
        &flag(container, "metrics-listen", "METRICS_LISTEN").unwrap_or("0.0.0.0:9090".into()),
    );
    let service = check_service(r, &deployment, listen);
    check_pdb(r, &deployment);
    check_network_policy(r, &deployment, listen, metrics, &policy);
    let (webhook_config, webhook) = check_webhook(r, &service, &namespace, &policy);

    let (pod, container) = webhook_container(&deployment);
    let tls_dir = parent(&flag(container, "tls-cert", "TLS_CERT").expect("--tls-cert"));
    let tls_secret = volume(pod, container, &tls_dir)
        .secret
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .expect("the TLS directory is a Secret volume");
    Checked {
        namespace,
        service,
        tls_secret,
        webhook,
        webhook_config,
    }
}

pub(crate) fn check_kinds(r: &Rendered) {
    for o in &r.objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        assert!(
            !matches!(kind, "ClusterRole" | "ClusterRoleBinding"),
            "{}: {kind} {}: the webhook needs no cluster-wide RBAC",
            r.source,
            o["metadata"]["name"]
        );
        assert!(
            ALLOWED_KINDS.contains(&kind),
            "{}: unexpected kind {kind:?}",
            r.source
        );
        // Each known kind parses strictly into its type.
        match kind {
            "Namespace" => {
                let _: Namespace = typed(o, &r.source);
            }
            "ServiceAccount" => {
                let _: ServiceAccount = typed(o, &r.source);
            }
            "ConfigMap" => {
                let _: ConfigMap = typed(o, &r.source);
            }
            "Secret" => {
                let _: Secret = typed(o, &r.source);
            }
            "Service" => {
                let _: Service = typed(o, &r.source);
            }
            "Deployment" => {
                let _: Deployment = typed(o, &r.source);
            }
            "PodDisruptionBudget" => {
                let _: PodDisruptionBudget = typed(o, &r.source);
            }
            "NetworkPolicy" => {
                let _: NetworkPolicy = typed(o, &r.source);
            }
            "MutatingWebhookConfiguration" => {
                let _: MutatingWebhookConfiguration = typed(o, &r.source);
            }
            _ => {}
        }
    }
}

/// The Deployment; returns the policy text of the ConfigMap it mounts.
fn check_deployment(r: &Rendered, deployment: &Deployment) -> String {
    let spec = &deployment.spec;
    assert_eq!(spec.replicas, Some(2), "two replicas");
    let pod_labels = pod_labels(deployment);
    assert!(
        selector_matches(&spec.selector, &pod_labels),
        "the Deployment's selector matches its pods"
    );
    let (pod, container) = webhook_container(deployment);
    check_spread(pod, &pod_labels);
    check_no_api_access(r, pod);
    check_security(pod, container);
    check_ports_and_probes(pod, container);
    // Flags the binary does not know would stop it at start.
    check_flags_known(container);
    check_mounts(r, deployment, pod, container)
}

/// The replicas are spread over nodes.
fn check_spread(pod: &PodSpec, pod_labels: &BTreeMap<String, String>) {
    let spread = pod.topology_spread_constraints.clone().unwrap_or_default();
    assert!(!spread.is_empty(), "topologySpreadConstraints are set");
    for c in &spread {
        let selector = c.label_selector.as_ref().expect("a spread labelSelector");
        assert!(
            selector_matches(selector, pod_labels),
            "the spread constraint on {} selects the webhook's own pods",
            c.topology_key
        );
    }
    assert!(
        spread
            .iter()
            .any(|c| c.topology_key == "kubernetes.io/hostname"),
        "the replicas are spread over nodes"
    );
}

/// A dedicated service account whose token only the webhook's pods mount (for Events; what it
/// may do is [`check_events_rbac`]'s business).
fn check_no_api_access(r: &Rendered, pod: &PodSpec) {
    assert_eq!(
        pod.automount_service_account_token,
        Some(true),
        "the pod mounts its token, for posting Events"
    );
    let account = pod
        .service_account_name
        .clone()
        .expect("a dedicated service account");
    let accounts: Vec<ServiceAccount> = r.all("ServiceAccount");
    let sa = accounts
        .iter()
        .find(|a| a.metadata.name.as_deref() == Some(account.as_str()))
        .unwrap_or_else(|| panic!("service account {account} is rendered"));
    assert_eq!(sa.automount_service_account_token, Some(false));
}

/// Non-root, read-only root filesystem, no capabilities, seccomp, resources.
fn check_security(pod: &PodSpec, container: &Container) {
    let pod_sc = pod.security_context.clone().unwrap_or_default();
    let sc = container
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(
        sc.run_as_non_root.or(pod_sc.run_as_non_root),
        Some(true),
        "runAsNonRoot"
    );
    assert_ne!(sc.run_as_user.or(pod_sc.run_as_user), Some(0), "not root");
    assert_eq!(
        sc.read_only_root_filesystem,
        Some(true),
        "readOnlyRootFilesystem"
    );
    assert_eq!(
        sc.allow_privilege_escalation,
        Some(false),
        "allowPrivilegeEscalation: false"
    );
    assert_ne!(sc.privileged, Some(true), "not privileged");
    let dropped = sc
        .capabilities
        .as_ref()
        .and_then(|c| c.drop.clone())
        .unwrap_or_default();
    assert!(
        dropped.iter().any(|c| c == "ALL"),
        "capabilities drop ALL, got {dropped:?}"
    );
    assert!(
        sc.capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_none_or(|a| a.is_empty()),
        "no capabilities added"
    );
    let seccomp = sc
        .seccomp_profile
        .or(pod_sc.seccomp_profile)
        .expect("a seccomp profile");
    assert_eq!(seccomp.type_, "RuntimeDefault", "seccomp RuntimeDefault");

    // Resources.
    let resources = container.resources.clone().expect("resources");
    let requests = resources.requests.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    for key in ["cpu", "memory"] {
        assert!(requests.contains_key(key), "resources.requests.{key}");
    }
    assert!(limits.contains_key("memory"), "resources.limits.memory");
}

/// Ports, flags, probes, and a graceful stop that fits in the grace period.
fn check_ports_and_probes(pod: &PodSpec, container: &Container) {
    let listen = flag(container, "listen", "LISTEN").expect("--listen is set explicitly");
    let metrics = flag(container, "metrics-listen", "METRICS_LISTEN")
        .expect("--metrics-listen is set explicitly");
    let ports: BTreeMap<i32, Option<String>> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.container_port, p.name.clone()))
        .collect();
    for (what, address) in [("--listen", &listen), ("--metrics-listen", &metrics)] {
        let port = socket_port(address);
        assert!(
            ports.contains_key(&port),
            "{what} {address}: the container declares port {port} (declared: {ports:?})"
        );
    }
    assert_eq!(
        flag(container, "log-format", "LOG_FORMAT").as_deref(),
        Some("json"),
        "JSON logs in the cluster"
    );
    // Exec probes on the loopback probe port: nothing outside the pod can starve them.
    let probes = flag(container, "probe-listen", "PROBE_LISTEN").unwrap_or("127.0.0.1:8081".into());
    assert!(
        probes.starts_with("127.0.0.1:"),
        "--probe-listen {probes} is on the loopback address"
    );
    for (probe, which) in [
        (&container.readiness_probe, "ready"),
        (&container.liveness_probe, "live"),
    ] {
        let command = probe
            .as_ref()
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.clone())
            .unwrap_or_else(|| panic!("an exec probe `probe {which}`"));
        let addr = format!("--addr={probes}");
        assert!(
            command[0].ends_with("/jupyter-xnat-webhook")
                && command[1..] == ["probe".to_string(), which.to_string(), addr.clone()],
            "the {which} probe runs `jupyter-xnat-webhook probe {which} {addr}`: {command:?}"
        );
    }

    // Graceful stop: the preStop sleep and the drain fit in the grace period.
    let drain = flag(container, "drain-timeout", "DRAIN_TIMEOUT")
        .map(|d| humantime::parse_duration(&d).expect("--drain-timeout is a duration"))
        .unwrap_or(Duration::from_secs(20));
    let pre_stop = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.sleep.as_ref())
        .map_or(0, |s| s.seconds);
    let grace = pod.termination_grace_period_seconds.unwrap_or(30);
    assert!(
        pre_stop as u64 + drain.as_secs() < grace as u64,
        "preStop {pre_stop}s + drain {drain:?} must end before terminationGracePeriodSeconds {grace}"
    );
}

/// Mounts are whole read-only directories; returns the policy text of the mounted ConfigMap.
fn check_mounts(
    r: &Rendered,
    deployment: &Deployment,
    pod: &PodSpec,
    container: &Container,
) -> String {
    // Mounts: whole directories (kubelet never updates subPath mounts, and the webhook reloads).
    for m in container.volume_mounts.iter().flatten() {
        assert!(
            m.sub_path.is_none() && m.sub_path_expr.is_none(),
            "{} is a subPath mount, which never sees updates",
            m.mount_path
        );
        assert_eq!(
            m.read_only,
            Some(true),
            "{} is mounted read-only",
            m.mount_path
        );
    }
    let policy_path = flag(container, "policy", "POLICY").expect("--policy");
    let policy_volume = volume(pod, container, &parent(&policy_path));
    let config_map = policy_volume
        .config_map
        .as_ref()
        .expect("the policy directory is a ConfigMap volume")
        .name
        .clone();
    for (what, file) in [
        ("--tls-cert", flag(container, "tls-cert", "TLS_CERT")),
        ("--tls-key", flag(container, "tls-key", "TLS_KEY")),
    ] {
        let file = file.unwrap_or_else(|| panic!("{what} is set"));
        let v = volume(pod, container, &parent(&file));
        assert!(v.secret.is_some(), "{what} {file} comes from a Secret");
    }
    let credentials =
        flag(container, "xnat-credentials", "XNAT_CREDENTIALS").expect("--xnat-credentials");
    let credentials_secret = volume(pod, container, &credentials)
        .secret
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .expect("--xnat-credentials is a Secret directory");
    check_credentials_template(&credentials_secret, &deployment.metadata.namespace);

    let config_maps: Vec<ConfigMap> = r.all("ConfigMap");
    let cm = config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(config_map.as_str()))
        .unwrap_or_else(|| {
            panic!(
                "{}: the policy ConfigMap {config_map} is rendered",
                r.source
            )
        });
    cm.data
        .as_ref()
        .and_then(|d| d.get(&file_name(&policy_path)))
        .unwrap_or_else(|| {
            panic!(
                "ConfigMap {config_map} has the key {}",
                file_name(&policy_path)
            )
        })
        .clone()
}

/// Every `--flag` of the container is one `jupyter-xnat-webhook serve` accepts.
fn check_flags_known(container: &Container) {
    let help = Command::new(env!("CARGO_BIN_EXE_jupyter-xnat-webhook"))
        .args(["serve", "--help"])
        .output()
        .expect("cannot run jupyter-xnat-webhook serve --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(
        args.first().map(String::as_str),
        Some("serve"),
        "the subcommand"
    );
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let name = arg.split('=').next().unwrap_or(arg);
        assert!(
            help.contains(&format!("{name} ")) || help.contains(&format!("{name}\n")),
            "`jupyter-xnat-webhook serve` has no flag {name}:\n{help}"
        );
    }
}

/// deploy/xnat-credentials.example.yaml names the Secret the Deployment mounts, and is not part of
/// any render (so `kubectl apply -k` never overwrites the real credentials with placeholders).
fn check_credentials_template(secret_name: &str, namespace: &Option<String>) {
    let path = repo().join("deploy/xnat-credentials.example.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let value: Value = serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    let secret: Secret = typed(&value, "deploy/xnat-credentials.example.yaml");
    assert_eq!(secret.metadata.name.as_deref(), Some(secret_name));
    assert_eq!(&secret.metadata.namespace, namespace);
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    let keys: BTreeSet<_> = secret.string_data.unwrap_or_default().into_keys().collect();
    assert_eq!(
        keys,
        BTreeSet::from(["password".to_string(), "username".to_string()])
    );
}

fn check_service(r: &Rendered, deployment: &Deployment, listen: i32) -> Service {
    let service: Service = r.one("Service");
    let spec = service.spec.as_ref().expect("Service.spec");
    let selector = spec.selector.clone().expect("a Service selector");
    let pod_labels = pod_labels(deployment);
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "the Service selects the webhook pods"
    );
    let (_, container) = webhook_container(deployment);
    let https = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == 443)
        .expect("the Service listens on 443");
    let target = https
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(https.port));
    assert_eq!(
        port_number(container, &target),
        listen,
        "Service 443 goes to the container's --listen port"
    );
    service
}

fn check_pdb(r: &Rendered, deployment: &Deployment) {
    let pdb: PodDisruptionBudget = r.one("PodDisruptionBudget");
    let spec = pdb.spec.expect("PodDisruptionBudget.spec");
    let selector = spec.selector.expect("a PDB selector");
    assert!(
        selector_matches(&selector, &pod_labels(deployment)),
        "the PDB selects the webhook pods"
    );
    let replicas = deployment.spec.replicas.unwrap_or(1);
    match (spec.min_available, spec.max_unavailable) {
        (Some(IntOrString::Int(min)), None) => assert!(
            min >= 1 && min < replicas,
            "minAvailable {min} keeps one webhook and lets a drain go on ({replicas} replicas)"
        ),
        (None, Some(IntOrString::Int(max))) => assert!(
            max >= 1 && max < replicas,
            "maxUnavailable {max} keeps one webhook and lets a drain go on ({replicas} replicas)"
        ),
        other => panic!("the PDB sets one of minAvailable/maxUnavailable as a number: {other:?}"),
    }
}

fn check_network_policy(
    r: &Rendered,
    deployment: &Deployment,
    listen: i32,
    metrics: i32,
    policy: &Policy,
) {
    let np: NetworkPolicy = r.one("NetworkPolicy");
    let spec = np.spec.expect("NetworkPolicy.spec");
    assert!(
        selector_matches(
            &spec.pod_selector.unwrap_or_default(),
            &pod_labels(deployment)
        ),
        "the NetworkPolicy selects the webhook pods"
    );
    let types = spec.policy_types.unwrap_or_default();
    assert!(
        types.iter().any(|t| t == "Ingress") && types.iter().any(|t| t == "Egress"),
        "both directions are restricted: {types:?}"
    );
    let (_, container) = webhook_container(deployment);

    let mut ingress = BTreeSet::new();
    for rule in spec.ingress.iter().flatten() {
        let ports = rule.ports.clone().unwrap_or_default();
        assert!(!ports.is_empty(), "an ingress rule without ports opens all");
        for p in ports {
            assert!(p.end_port.is_none(), "no ingress port ranges");
            let port = p.port.expect("an ingress rule names its port");
            let port = port_number(container, &port);
            // A pod anywhere in the cluster could hold the metrics port's connections.
            assert!(
                port != metrics || rule.from.as_ref().is_some_and(|f| !f.is_empty()),
                "the metrics port is open only to named sources"
            );
            ingress.insert(port);
        }
    }
    assert_eq!(
        ingress,
        BTreeSet::from([listen, metrics]),
        "ingress only to the webhook and metrics ports"
    );

    let egress: Vec<(String, i32)> = spec
        .egress
        .iter()
        .flatten()
        .flat_map(|rule| rule.ports.clone().unwrap_or_default())
        .filter_map(|p| {
            let port = port_number(container, p.port.as_ref()?);
            Some((p.protocol.unwrap_or("TCP".into()), port))
        })
        .collect();
    for protocol in ["UDP", "TCP"] {
        assert!(
            egress.contains(&(protocol.to_string(), 53)),
            "egress allows DNS over {protocol}: {egress:?}"
        );
    }
    let xnat = policy
        .xnat
        .endpoint
        .url
        .port_or_known_default()
        .expect("the XNAT URL has a port") as i32;
    assert!(
        egress.contains(&("TCP".to_string(), xnat)),
        "egress allows XNAT's port {xnat} (policy xnat.url): {egress:?}"
    ); // Events go to the API server: 443 through the `kubernetes` Service, 6443 where the API
    // server itself listens (policies apply after Service translation).
    for port in [443, 6443] {
        assert!(
            egress.contains(&("TCP".to_string(), port)),
            "egress allows the Kubernetes API on {port}: {egress:?}"
        );
    }
}

fn check_webhook(
    r: &Rendered,
    service: &Service,
    namespace: &str,
    policy: &Policy,
) -> (MutatingWebhookConfiguration, MutatingWebhook) {
    let config: MutatingWebhookConfiguration = r.one("MutatingWebhookConfiguration");
    let webhooks = config.webhooks.clone().unwrap_or_default();
    assert_eq!(webhooks.len(), 1, "{}: one webhook", r.source);
    let w = webhooks[0].clone();
    let name = &w.name;

    assert_eq!(w.admission_review_versions, ["v1"], "{name}");
    let rules = w.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), 1, "{name}: one rule");
    let rule = &rules[0];
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    assert_eq!(list(&rule.operations), ["CREATE"], "{name}: CREATE only");
    assert_eq!(list(&rule.api_groups), [""], "{name}: the core group");
    assert_eq!(list(&rule.api_versions), ["v1"], "{name}");
    assert_eq!(list(&rule.resources), ["pods"], "{name}: pods only");

    // Which pods: KubeSpawner's notebook pods, in the JupyterHub namespace, created by the hub.
    let objects = w.object_selector.clone().expect("an objectSelector");
    let notebook = labels(&[
        ("app", "jupyterhub"),
        ("component", "singleuser-server"),
        ("hub.jupyter.org/username", "alice"),
    ]);
    assert!(
        selector_matches(&objects, &notebook),
        "{name}: objectSelector matches a KubeSpawner pod"
    );
    for other in [
        labels(&[]),
        labels(&[("app", "jupyterhub"), ("component", "hub")]),
    ] {
        assert!(
            !selector_matches(&objects, &other),
            "{name}: objectSelector must not match {other:?}"
        );
    }
    // The policy would not treat a pod as a notebook pod without its labels: the selector must not
    // ask for more than the policy does, or notebook pods would never reach the webhook.
    let policy_labels: BTreeMap<String, String> = policy.pods.labels.iter().cloned().collect();
    assert!(
        selector_matches(&objects, &policy_labels),
        "{name}: objectSelector asks for labels beyond the policy's pods.labels {policy_labels:?}"
    );

    let namespaces = w.namespace_selector.clone().expect("a namespaceSelector");
    assert!(
        selector_matches(&namespaces, &labels(&[(NAME_LABEL, JUPYTER_NS)])),
        "{name}: namespaceSelector selects {JUPYTER_NS}"
    );
    for never in ["kube-system", namespace] {
        assert!(
            never_selects_namespace(&namespaces, never),
            "{name}: namespaceSelector could select {never} (require {NAME_LABEL})"
        );
    }
    if !policy.pods.namespaces.is_empty() {
        assert!(
            policy.pods.namespaces.iter().any(|n| n == JUPYTER_NS),
            "the policy's pods.namespaces leaves out {JUPYTER_NS}"
        );
    }

    let conditions = w.match_conditions.clone().unwrap_or_default();
    assert!(!conditions.is_empty(), "{name}: matchConditions are set");
    assert!(
        conditions
            .iter()
            .any(|c| c.expression.contains("request.userInfo.username")
                && c.expression.contains(&format!("'{HUB}'"))),
        "{name}: a matchCondition skips requests not from {HUB}: {conditions:?}"
    );
    assert!(
        policy.pods.requesters.iter().any(|r| r == HUB),
        "the policy's pods.requesters has the hub the matchCondition names"
    );

    // Events are a side effect, skipped on dry runs (tests/events.rs).
    assert_eq!(w.side_effects, "NoneOnDryRun", "{name}: sideEffects");
    let timeout = w.timeout_seconds.expect("timeoutSeconds is set");
    assert!(
        timeout <= MAX_TIMEOUT_SECONDS,
        "{name}: timeoutSeconds {timeout}"
    );
    assert!(
        policy.xnat.live.budget < Duration::from_secs(timeout as u64),
        "the policy's xnat.budget {:?} fits in timeoutSeconds {timeout}",
        policy.xnat.live.budget
    );
    assert_eq!(w.reinvocation_policy.as_deref(), Some("IfNeeded"), "{name}");
    assert_eq!(
        w.failure_policy.as_deref(),
        Some("Ignore"),
        "{name}: failurePolicy is the documented Ignore (change this test together with the \
         comment in deploy/base/mutatingwebhookconfiguration.yaml)"
    );

    assert!(
        w.client_config.url.is_none(),
        "{name}: called through the Service"
    );
    let target = w
        .client_config
        .service
        .clone()
        .expect("clientConfig.service");
    assert_eq!(Some(&target.name), service.metadata.name.as_ref(), "{name}");
    assert_eq!(Some(&target.namespace), service.metadata.namespace.as_ref());
    assert_eq!(target.path.as_deref(), Some("/mutate"), "{name}");
    assert_eq!(target.port, Some(443), "{name}");
    (config, w)
}

fn dns_names(service: &Service) -> [String; 2] {
    let name = service.metadata.name.clone().expect("Service name");
    let namespace = service
        .metadata
        .namespace
        .clone()
        .expect("Service namespace");
    [
        format!("{name}.{namespace}.svc"),
        format!("{name}.{namespace}.svc.cluster.local"),
    ]
}

// ---------------------------------------------------------------------------------------------
// openssl, for what the certs-script overlay carries

pub(crate) fn openssl(args: &[&str], input_files: &[(&Path, &[u8])]) -> String {
    for (path, bytes) in input_files {
        std::fs::write(path, bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("cannot run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn pem_certificates(bundle: &[u8]) -> usize {
    String::from_utf8_lossy(bundle)
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

fn ca_bundle(webhook: &MutatingWebhook) -> Vec<u8> {
    let ByteString(bytes) = webhook
        .client_config
        .ca_bundle
        .clone()
        .unwrap_or_else(|| panic!("{}: clientConfig.caBundle is set", webhook.name));
    bytes
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn base_renders_and_keeps_its_promises() {
    let r = kustomize(&repo().join("deploy/base"));
    let checked = check_common(&r);
    assert!(
        checked.webhook.client_config.ca_bundle.is_none(),
        "the base has no caBundle: the overlays provide it"
    );
    assert!(
        r.of_kind("Secret").is_empty(),
        "the base renders no Secret: the XNAT credentials are created by hand (never overwritten \
         by `kubectl apply -k`) and the TLS Secret comes from an overlay"
    );
}

/// The one thing the webhook may do with the Kubernetes API: post Events (and count repeats into
/// them) in the namespace whose pods it is asked about, as its own ServiceAccount.
fn check_events_rbac(r: &Rendered) {
    let deployment: Deployment = r.one("Deployment");
    let (pod, _) = webhook_container(&deployment);
    let config: MutatingWebhookConfiguration = r.one("MutatingWebhookConfiguration");
    let selector = config.webhooks.unwrap()[0]
        .namespace_selector
        .clone()
        .expect("a namespaceSelector");
    let hub = selector.match_labels.unwrap_or_default()[NAME_LABEL].clone();
    let role: Role = r.one("Role");
    assert_eq!(
        role.metadata.namespace.as_deref(),
        Some(hub.as_str()),
        "{}",
        r.source
    );
    let rules = serde_json::to_value(role.rules.unwrap_or_default()).unwrap();
    assert_eq!(
        rules,
        serde_json::json!([{"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}]),
        "{}: Events only",
        r.source
    );
    let binding: RoleBinding = r.one("RoleBinding");
    assert_eq!(binding.metadata.namespace.as_deref(), Some(hub.as_str()));
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(Some(binding.role_ref.name), role.metadata.name);
    let subjects = binding.subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1, "{}", r.source);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), pod.service_account_name.as_ref());
    assert_eq!(subjects[0].namespace, deployment.metadata.namespace);
}

#[test]
fn the_overlays_apply_straight_from_the_checkout_with_their_events_rbac() {
    // `kubectl apply -k deploy/overlays/cert-manager`, as README "Install with kustomize" says.
    let r = kustomize(&repo().join("deploy/overlays/cert-manager"));
    check_common(&r);
    check_events_rbac(&r);
    // The certs-script overlay, once `make deploy-certs` wrote its inputs.
    let site = Site::new();
    site.webhook_certs(&[]);
    let r = kustomize(&site.deploy().join("overlays/certs-script"));
    check_common(&r);
    check_events_rbac(&r);
    // And from a site kustomization outside the checkout.
    check_events_rbac(&site.render("certs-script"));
}

#[test]
fn cert_manager_overlay_issues_and_injects_the_serving_certificate() {
    let site = Site::new();
    let r = site.render("cert-manager");
    let checked = check_common(&r);

    let certificates = r.of_kind("Certificate");
    let serving = certificates
        .iter()
        .find(|c| c["spec"]["secretName"].as_str() == Some(checked.tls_secret.as_str()))
        .unwrap_or_else(|| {
            panic!(
                "a Certificate writes the Secret {} the Deployment mounts",
                checked.tls_secret
            )
        });
    let certificate = serving["metadata"]["name"]
        .as_str()
        .expect("Certificate name");
    assert_eq!(
        serving["metadata"]["namespace"].as_str(),
        Some(checked.namespace.as_str())
    );
    let names: Vec<&str> = serving["spec"]["dnsNames"]
        .as_array()
        .expect("Certificate dnsNames")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for name in dns_names(&checked.service) {
        assert!(
            names.contains(&name.as_str()),
            "the serving certificate names {name}: {names:?}"
        );
    }
    assert!(serving["spec"]["isCA"].as_bool() != Some(true));

    // Its issuer is a CA issuer whose CA is another Certificate, issued by a self-signed issuer.
    let issuer_name = serving["spec"]["issuerRef"]["name"]
        .as_str()
        .expect("issuerRef.name");
    let kind = serving["spec"]["issuerRef"]["kind"]
        .as_str()
        .unwrap_or("Issuer");
    assert_eq!(kind, "Issuer", "a namespaced Issuer, not a ClusterIssuer");
    let issuer = r.named("Issuer", issuer_name);
    let ca_secret = issuer["spec"]["ca"]["secretName"]
        .as_str()
        .expect("the serving issuer is a CA issuer");
    let ca = certificates
        .iter()
        .find(|c| c["spec"]["secretName"].as_str() == Some(ca_secret))
        .unwrap_or_else(|| panic!("a Certificate makes the CA Secret {ca_secret}"));
    assert_eq!(ca["spec"]["isCA"].as_bool(), Some(true), "the CA is a CA");
    assert_eq!(
        ca["spec"]["privateKey"]["rotationPolicy"].as_str(),
        Some("Never"),
        "a renewed CA keeps its key, so certificates it signed before still verify"
    );
    let root = r.named(
        "Issuer",
        ca["spec"]["issuerRef"]["name"]
            .as_str()
            .expect("CA issuerRef"),
    );
    assert!(root["spec"]["selfSigned"].is_object(), "a self-signed root");

    let annotation = checked
        .webhook_config
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("cert-manager.io/inject-ca-from"))
        .expect("the cert-manager.io/inject-ca-from annotation");
    assert_eq!(
        annotation,
        &format!("{}/{certificate}", checked.namespace),
        "the CA injector reads the serving Certificate"
    );
}

#[test]
fn certs_script_overlay_carries_the_secret_and_the_ca_bundle() {
    let site = Site::new();
    site.webhook_certs(&[]);
    let r = site.render("certs-script");
    let checked = check_common(&r);

    let secret: Secret = r.one("Secret");
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some(checked.tls_secret.as_str())
    );
    assert_eq!(
        secret.metadata.namespace.as_deref(),
        Some(checked.namespace.as_str())
    );
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.expect("Secret data");
    let get = |key: &str| {
        data.get(key)
            .unwrap_or_else(|| panic!("the TLS Secret has {key}"))
            .0
            .clone()
    };
    let (certificate, key) = (get("tls.crt"), get("tls.key"));
    assert!(String::from_utf8_lossy(&key).contains("PRIVATE KEY"));

    let bundle = ca_bundle(&checked.webhook);
    assert_eq!(pem_certificates(&bundle), 1, "caBundle: the CA");
    let generated_ca = site.read("certs/ca.crt");
    assert_eq!(
        String::from_utf8_lossy(&bundle),
        generated_ca,
        "caBundle is the generated CA"
    );
    let bundle_file = site.read("deploy/components/certs-script/generated/caBundle");
    let ByteString(from_file) =
        serde_json::from_value(Value::String(bundle_file.trim().to_string()))
            .expect("generated/caBundle is base64");
    assert_eq!(from_file, bundle, "generated/caBundle is the patched value");

    // The certificate is for the Service's names and verifies against the caBundle.
    let dir = site.tmp.path();
    let (crt, ca) = (dir.join("served.crt"), dir.join("bundle.pem"));
    let crt_path = crt.to_str().expect("utf-8 temp path");
    let ca_path = ca.to_str().expect("utf-8 temp path");
    let text = openssl(
        &[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage",
            "-in",
            crt_path,
        ],
        &[(&crt, &certificate)],
    );
    for name in dns_names(&checked.service) {
        assert!(
            text.contains(&format!("DNS:{name}")),
            "the certificate names {name}: {text}"
        );
    }
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    openssl(&["verify", "-CAfile", ca_path, crt_path], &[(&ca, &bundle)]);

    // And the webhook itself serves that pair: a client that trusts only the caBundle and asks
    // for the Service's name gets through, as the API server would. The Secret's ca.crt, beside
    // the certificate as kubelet mounts it, is the CA the webhook checks the pair against.
    assert_eq!(
        get("ca.crt"),
        generated_ca.as_bytes(),
        "the Secret's ca.crt"
    );
    std::fs::write(dir.join("ca.crt"), get("ca.crt")).expect("write ca.crt");
    let key_path = dir.join("served.key");
    std::fs::write(&key_path, &key).expect("write the key");
    std::fs::write(&crt, &certificate).expect("write the certificate");
    let [service_name, _] = dns_names(&checked.service);
    serves_with(&crt, &key_path, &bundle, &service_name);
}

/// Starts the real server with `cert`/`key` and checks `/healthz` over TLS as `name`, trusting
/// only `ca_bundle`.
pub(crate) fn serves_with(cert: &Path, key: &Path, ca_bundle: &[u8], name: &str) {
    use jupyter_xnat_webhook::serve::{self, ServeConfig};
    let dir = tempfile::tempdir().expect("temp dir");
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "svc:pw\n").expect("write creds");
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        tls_cert: cert.to_owned(),
        tls_key: key.to_owned(),
        tls_ca: None,
        client_ca: None,
        inputs: serve::MountedInputs {
            policy: repo().join("deploy/base/policy.yaml"),
            xnat_credentials: creds,
            xnat_url: Some("http://127.0.0.1:9/xnat".into()),
            pods_requesters: Vec::new(),
        },
        drain: Duration::from_secs(1),
        metrics_listen: None,
        reload_interval: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(30),
        control_plane: Vec::new(),
        probe_listen: None,
        max_connections: 3072,
        kubeconfig: None,
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        // Its XNAT client moves the process-wide gauges, as a harness's does.
        let _turn = crate::common::turns::share().await;
        let bound = serve::bind(&config)
            .await
            .expect("the webhook starts with the generated pair");
        let addr = bound.local_addr().expect("address");
        tokio::spawn(bound.serve(std::future::pending(), Duration::from_secs(1)));
        jupyter_xnat_webhook::install_crypto_provider();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_bundle).expect("caBundle is PEM")])
            .resolve(name, addr)
            .build()
            .expect("client");
        let url = format!("https://{name}:{}/healthz", addr.port());
        let response = client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status(), 200, "{url}");
    });
}

/// --renew keeps the caBundle; --new-ca trusts old and new CA until --drop-old-ca; every served
/// certificate verifies against the caBundle applied with it.
#[test]
fn certs_script_rotation_never_breaks_trust() {
    let site = Site::new();
    let state = |site: &Site| {
        let r = site.render("certs-script");
        let checked = check_common(&r);
        let secret: Secret = r.one("Secret");
        let crt = secret.data.expect("data")["tls.crt"].0.clone();
        (ca_bundle(&checked.webhook), crt)
    };
    let verify = |site: &Site, bundle: &[u8], crt: &[u8]| {
        let dir = site.tmp.path();
        let (b, c) = (dir.join("bundle.pem"), dir.join("served.crt"));
        openssl(
            &[
                "verify",
                "-CAfile",
                b.to_str().expect("utf-8 temp path"),
                c.to_str().expect("utf-8 temp path"),
            ],
            &[(&b, bundle), (&c, crt)],
        );
    };

    site.webhook_certs(&[]);
    let (bundle1, crt1) = state(&site);

    // Running again keeps everything.
    site.webhook_certs(&[]);
    assert_eq!(state(&site), (bundle1.clone(), crt1.clone()), "idempotent");

    site.webhook_certs(&["--renew"]);
    let (bundle2, crt2) = state(&site);
    assert_eq!(bundle2, bundle1, "--renew keeps the caBundle");
    assert_ne!(crt2, crt1, "--renew issues a new certificate");
    verify(&site, &bundle2, &crt2);

    site.webhook_certs(&["--new-ca"]);
    let (bundle3, crt3) = state(&site);
    assert_eq!(pem_certificates(&bundle3), 2, "new and previous CA");
    verify(&site, &bundle3, &crt2); // what the pods serve until kubelet swaps the Secret
    verify(&site, &bundle3, &crt3); // and after

    site.webhook_certs(&["--drop-old-ca"]);
    let (bundle4, crt4) = state(&site);
    assert_eq!(pem_certificates(&bundle4), 1, "only the new CA");
    assert_eq!(crt4, crt3, "--drop-old-ca keeps the certificate");
    verify(&site, &bundle4, &crt4);
}

/// The client-auth component mounts the ConfigMap certs/apiserver-client-certs.sh writes and
/// passes --client-ca; the script's client certificate is answered and nothing else is; its
/// kubeconfig names the webhook Service's namespace and its admission file names the kubeconfig.
#[test]
fn client_auth_takes_the_api_servers_certificate_and_nothing_else() {
    let site = Site::new();
    let r = site.render_with(&["cert-manager", "client-auth"], "");
    let checked = check_common(&r);
    let deployment: Deployment = r.one("Deployment");
    let (pod, container) = webhook_container(&deployment);
    let ca_file = flag(container, "client-ca", "CLIENT_CA").expect("--client-ca is set");
    let config_map = volume(pod, container, &parent(&ca_file))
        .config_map
        .as_ref()
        .expect("the client CA comes from a ConfigMap")
        .name
        .clone();

    let out = site.tmp.path().join("apiserver-client");
    let status = Command::new("bash")
        .arg(repo().join("certs/apiserver-client-certs.sh"))
        .args(["--out", out.to_str().expect("utf-8 path")])
        .args(["--namespace", &checked.namespace])
        .status()
        .expect("bash");
    assert!(status.success(), "apiserver-client-certs.sh failed");
    let generated: ConfigMap = serde_yaml_ng::from_str(
        &std::fs::read_to_string(out.join("client-ca-configmap.yaml")).expect("configmap"),
    )
    .expect("the ConfigMap parses");
    assert_eq!(
        generated.metadata.name.as_deref(),
        Some(config_map.as_str())
    );
    assert!(
        generated
            .data
            .unwrap_or_default()
            .contains_key(&file_name(&ca_file))
    );
    let kubeconfig = std::fs::read_to_string(out.join("kubeconfig")).expect("kubeconfig");
    assert!(
        kubeconfig.contains(&format!("\"*.{}.svc\"", checked.namespace)),
        "{kubeconfig}"
    );
    let admission = std::fs::read_to_string(out.join("admission.yaml")).expect("admission");
    assert!(admission.contains("kind: WebhookAdmissionConfiguration"));
    assert!(admission.contains("/kubeconfig"));

    let identity = [
        std::fs::read(out.join("client.crt")).expect("client.crt"),
        std::fs::read(out.join("client.key")).expect("client.key"),
    ]
    .concat();
    answers_only(&out.join("client-ca.crt"), &identity);
}

/// Starts the real server with `--client-ca` and checks who gets an answer.
fn answers_only(client_ca: &Path, identity: &[u8]) {
    use jupyter_xnat_webhook::serve::{self, ServeConfig};
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key, ca) = serving_pair(dir.path());
    std::fs::write(dir.path().join("creds"), "svc:pw\n").expect("write creds");
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        tls_cert: cert,
        tls_key: key,
        tls_ca: None,
        client_ca: Some(client_ca.to_owned()),
        inputs: serve::MountedInputs {
            policy: repo().join("deploy/base/policy.yaml"),
            xnat_credentials: dir.path().join("creds"),
            xnat_url: Some("http://127.0.0.1:9/xnat".into()),
            pods_requesters: Vec::new(),
        },
        drain: Duration::from_secs(1),
        metrics_listen: None,
        reload_interval: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(300),
        control_plane: Vec::new(),
        probe_listen: None,
        max_connections: 3072,
        kubeconfig: None,
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        // Its XNAT client moves the process-wide gauges, as a harness's does.
        let _turn = crate::common::turns::share().await;
        let bound = serve::bind(&config).await.expect("the webhook starts");
        let addr = bound.local_addr().expect("address");
        tokio::spawn(bound.serve(std::future::pending(), Duration::from_secs(1)));
        jupyter_xnat_webhook::install_crypto_provider();
        let get = |identity: Option<&[u8]>| {
            let mut b = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("CA PEM")]);
            if let Some(pem) = identity {
                b = b.identity(reqwest::Identity::from_pem(pem).expect("identity PEM"));
            }
            let client = b.build().expect("client");
            async move {
                client
                    .get(format!("https://localhost:{}/healthz", addr.port()))
                    .send()
                    .await
            }
        };
        let answered = get(Some(identity))
            .await
            .expect("the API server's certificate");
        assert_eq!(answered.status(), 200);
        assert!(
            get(None).await.is_err(),
            "a client without a certificate was answered"
        );
    });
}

/// A CA and a serving certificate for localhost, written by certs/gen-certs.sh (openssl).
fn serving_pair(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let status = Command::new("bash")
        .arg(repo().join("certs/gen-certs.sh"))
        .args([
            "--out",
            dir.to_str().expect("utf-8 path"),
            "--dns",
            "localhost",
        ])
        .status()
        .expect("bash");
    assert!(status.success(), "gen-certs.sh failed");
    let ca = std::fs::read(dir.join("ca.crt")).expect("ca.crt");
    (dir.join("tls.crt"), dir.join("tls.key"), ca)
}

/// docs/operations.md "The kustomize tree", step 1: a site kustomization on an overlay, with its own image and policy.
#[test]
fn a_site_kustomization_sets_its_image_and_policy_over_an_overlay() {
    let site = Site::new();
    let dir = site.tmp.path().join("site");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("policy.yaml"),
        "xnat:\n  url: https://xnat.example.org/xnat\n",
    )
    .unwrap();
    let r = site.render_with(
        &["cert-manager", "prometheus"],
        "images:\n  - {name: jupyter-xnat-webhook, newName: registry.example.org/jupyter-xnat-webhook, newTag: \"0.1.0\"}\n\
         configMapGenerator:\n  - {name: jupyter-xnat-webhook-policy, namespace: xnat-webhook, behavior: replace,\n     \
         files: [policy.yaml], options: {disableNameSuffixHash: true}}\n",
    );
    check_common(&r);
    check_events_rbac(&r);
    let deployment: Deployment = r.one("Deployment");
    let (_, container) = webhook_container(&deployment);
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example.org/jupyter-xnat-webhook:0.1.0")
    );
    let config: ConfigMap = r.one("ConfigMap");
    let policy = &config.data.unwrap()["policy.yaml"];
    assert!(policy.contains("xnat.example.org"), "{policy}");
    assert_eq!(r.of_kind("ServiceMonitor").len(), 1);
}

/// The control-plane-only component keeps the webhook port to the addresses a site gives it and
/// the metrics port (probes, Prometheus) open.
#[test]
fn control_plane_only_keeps_the_webhook_port_to_the_given_addresses() {
    let site = Site::new();
    let r = site.render("control-plane-only");
    let np: NetworkPolicy = r.one("NetworkPolicy");
    let rules = np.spec.expect("spec").ingress.expect("ingress rules");
    let sources = |port: i32| -> Vec<String> {
        rules
            .iter()
            .filter(|rule| {
                rule.ports
                    .iter()
                    .flatten()
                    .any(|p| p.port == Some(IntOrString::Int(port)))
            })
            .flat_map(|rule| match &rule.from {
                None => vec!["anywhere".to_string()],
                Some(peers) => peers
                    .iter()
                    .map(|p| {
                        p.ip_block
                            .as_ref()
                            .map_or("not a CIDR".into(), |b| b.cidr.clone())
                    })
                    .collect(),
            })
            .collect()
    };
    assert_eq!(
        sources(8443),
        ["192.0.2.0/24"],
        "a placeholder that matches nothing"
    );
    assert_eq!(sources(9090), ["not a CIDR"], "Prometheus's namespace");
    let control_plane = |r: &Rendered| {
        let deployment: Deployment = r.one("Deployment");
        let (_, container) = webhook_container(&deployment);
        flag(container, "control-plane", "CONTROL_PLANE").expect("CONTROL_PLANE is set")
    };
    assert_eq!(
        control_plane(&r),
        "192.0.2.0/24",
        "the webhook knows the same addresses"
    );

    // The README's site patch replaces the placeholder.
    let patch = "patches:\n  - target: {kind: NetworkPolicy, name: jupyter-xnat-webhook}\n    \
                 patch: |-\n      - op: replace\n        path: /spec/ingress/0/from\n        \
                 value: [{ipBlock: {cidr: 10.0.0.0/28}}]\n  \
                 - target: {kind: Deployment, name: jupyter-xnat-webhook}\n    \
                 patch: |-\n      - op: replace\n        \
                 path: /spec/template/spec/containers/0/env/0\n        \
                 value: {name: CONTROL_PLANE, value: 10.0.0.0/28}\n";
    let r = site.render_with(&["cert-manager", "control-plane-only"], patch);
    check_common(&r);
    let np: NetworkPolicy = r.one("NetworkPolicy");
    let from = np.spec.expect("spec").ingress.expect("ingress")[0]
        .from
        .clone();
    assert_eq!(
        from.expect("from")[0]
            .ip_block
            .as_ref()
            .expect("ipBlock")
            .cidr,
        "10.0.0.0/28"
    );
    assert_eq!(control_plane(&r), "10.0.0.0/28");
    let cidrs = control_plane(&r);
    jupyter_xnat_webhook::admission::Trust::parse_cidrs([cidrs.as_str()]).expect("CIDRs");
}

/// The archive-view component mounts, read-only, the claim the NrgXnat preset's `seenAt` names,
/// where that preset says: a policy's optional mounts and the deployment agree.
#[test]
fn archive_view_shows_the_archive_where_the_preset_looks() {
    let site = Site::new();
    let r = site.render_with(&["cert-manager", "archive-view"], "");
    check_common(&r);
    let deployment: Deployment = r.one("Deployment");
    let (pod, container) = webhook_container(&deployment);
    let preset = Policy::from_yaml(
        &std::fs::read(repo().join("deploy/presets/nrgxnat-k8s.yaml")).expect("preset"),
        &Default::default(),
    )
    .expect("the preset is valid");
    let seen_at = preset
        .storage
        .volume("archive")
        .and_then(|v| v.seen_at.clone())
        .expect("the preset's archive volume has seenAt");
    let seen_at = seen_at.to_str().expect("utf-8");
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == seen_at)
        .expect("the archive is mounted at seenAt");
    assert_eq!(mount.read_only, Some(true), "the webhook only looks");
    let claim = volume(pod, container, seen_at)
        .persistent_volume_claim
        .as_ref()
        .expect("the archive comes from a claim");
    assert_eq!(claim.claim_name, "xnat-archive-view");
    assert_eq!(claim.read_only, Some(true));
    assert!(
        preset.storage.projects.iter().all(|p| p.optional),
        "the preset mounts each project directory only when it exists"
    );
}

/// KubeSpawner's user namespaces (`enable_user_namespaces`): a namespace per user, unknown ahead,
/// so the webhook is called for namespaces the hub labels, never kube-system or its own, and may
/// post Events (and nothing else) in any namespace.
#[test]
fn user_namespaces_select_by_label_and_post_events_where_the_pods_are() {
    let site = Site::new();
    let r = site.render_with(&["cert-manager", "user-namespaces"], "");
    let config: MutatingWebhookConfiguration = r.one("MutatingWebhookConfiguration");
    let webhook = &config.webhooks.as_ref().expect("webhooks")[0];
    let selector = webhook
        .namespace_selector
        .as_ref()
        .expect("namespaceSelector");
    assert_eq!(
        selector.match_labels,
        Some(BTreeMap::from([(
            "jupyter-xnat-webhook/notebooks".to_owned(),
            "true".to_owned()
        )]))
    );
    let never = selector
        .match_expressions
        .iter()
        .flatten()
        .find(|e| e.key == "kubernetes.io/metadata.name" && e.operator == "NotIn")
        .expect("a NotIn on the namespace's own name");
    let never: Vec<&str> = never.values.iter().flatten().map(String::as_str).collect();
    assert!(
        never.contains(&"kube-system") && never.contains(&"xnat-webhook"),
        "{never:?}"
    );
    // The hub still makes the pods: the requester is unchanged.
    assert!(
        webhook
            .match_conditions
            .iter()
            .flatten()
            .any(|c| c.expression.contains(&format!("'{HUB}'")))
    );
    let role = r
        .of_kind("ClusterRole")
        .into_iter()
        .next()
        .expect("a ClusterRole")
        .clone();
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}])
    );
    let binding = r
        .of_kind("ClusterRoleBinding")
        .into_iter()
        .next()
        .expect("a ClusterRoleBinding")
        .clone();
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "jupyter-xnat-webhook", "namespace": "xnat-webhook"}])
    );
}

/// README "Install with kustomize", NrgXnat's chart: the hub runs in namespace `xnat`. The README's
/// site kustomization (with its hub.yaml) sends that namespace's pods to the webhook, accepts its
/// hub's requester — in the matchConditions and in the policy the webhook runs with (the
/// Deployment's PODS_REQUESTERS over the policy file) — and gives the webhook Events there.
#[test]
fn the_readmes_nrgxnat_site_puts_every_hub_field_in_namespace_xnat() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("# xnat-webhook-site/kustomization.yaml, NrgXnat's chart")
        .expect("the README's NrgXnat site kustomization");
    let end = start + readme[start..].find("```").unwrap();
    let kustomization: String = readme[start..end]
        .lines()
        .map(|l| l.strip_prefix("   ").unwrap_or(l))
        .map(|l| l.replace("../jupyter-xnat-webhook/", "../"))
        .collect::<Vec<_>>()
        .join("\n");
    let hub = readme
        .find("# my-site/hub.yaml")
        .map(|at| &readme[at..at + readme[at..].find("```").unwrap()])
        .expect("the README's hub.yaml")
        .to_owned();
    let site = Site::new();
    let dir = site.tmp.path().join("xnat-webhook-site");
    std::fs::create_dir_all(&dir).unwrap();
    let requester = "system:serviceaccount:xnat:hub";
    let policy = format!(
        "{}\nxnat:\n  url: http://xnat-xnat-web.xnat.svc.cluster.local\n",
        std::fs::read_to_string(repo().join("deploy/presets/nrgxnat-k8s.yaml")).unwrap()
    );
    std::fs::write(dir.join("policy.yaml"), &policy).unwrap();
    std::fs::write(dir.join("hub.yaml"), hub).unwrap();
    std::fs::write(dir.join("kustomization.yaml"), kustomization).unwrap();
    let r = kustomize(&dir);
    check_events_rbac(&r);
    let config: MutatingWebhookConfiguration = r.one("MutatingWebhookConfiguration");
    let webhook = &config.webhooks.unwrap()[0];
    let selector = webhook.namespace_selector.clone().unwrap();
    assert_eq!(selector.match_labels.unwrap()[NAME_LABEL], "xnat");
    let condition = &webhook.match_conditions.as_ref().unwrap()[0].expression;
    assert_eq!(
        condition,
        &format!("request.userInfo.username == '{requester}'")
    );
    let role: Role = r.one("Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some("xnat"));
    let config: ConfigMap = r.one("ConfigMap");
    let rendered = &config.data.unwrap()["policy.yaml"];
    let deployment: Deployment = r.one("Deployment");
    let (_, container) = webhook_container(&deployment);
    let given = flag(container, "pods-requesters", "PODS_REQUESTERS").expect("PODS_REQUESTERS");
    let overrides = jupyter_xnat_webhook::policy::Overrides {
        pods_requesters: Some(vec![given]),
        ..Default::default()
    };
    let policy = Policy::from_yaml(rendered.as_bytes(), &overrides).unwrap();
    assert_eq!(policy.pods.requesters, [requester]);
    assert!(
        container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/archive"),
        "the archive-view component"
    );
}
