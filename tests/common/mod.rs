//! Shared harness for the integration tests: a real webhook over real TLS on loopback, talking to
//! the XNAT stand-in over real HTTP; and the same admission code in process, for policy logic
//! that needs no sockets.
//!
//! One default set-up — the empty policy, the demo stand-in, the right credentials, a fresh
//! localhost certificate — that a test overrides only where it differs:
//! `Harness::builder().policy(…).credentials(…).start().await`, or `Harness::start(policy)`.
//! A harness stops when dropped; `stop().await` waits for the stop where a test checks it.

#![allow(dead_code)] // the benches use their own subset

pub mod fake_kube;
pub mod in_process;
pub mod pod_rules;
pub mod turns;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jupyter_xnat_webhook::serve::{self, ServeConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use xnat_standin::{Fault, Standin};

#[allow(unused_imports)] // the benches do not run in process
pub use in_process::InProcess;

pub const SVC_USER: &str = "webhook-svc";
pub const SVC_PASSWORD: &str = "s3cret-pw";
pub const HUB: &str = "system:serviceaccount:jupyter:hub";

/// A fixture review from `tests/fixtures/kubespawner-7.1/`.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubespawner-7.1")
        .join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The alice fixture, claimed for another JupyterHub user.
pub fn review_for(user: &str) -> Value {
    let mut review = fixture("alice-default");
    review["request"]["object"]["metadata"]["annotations"]["hub.jupyter.org/username"] =
        serde_json::json!(user);
    review
}

/// The mount paths of the `xnat-data` volume in the pod after the response's patch.
pub fn project_paths(review: &Value, response: &Value) -> Vec<String> {
    mounts_of(&patched_pod(review, response), "xnat-data")
        .into_iter()
        .map(|m| m.0)
        .collect()
}

/// The pod inside a review.
pub fn pod_of(review: &Value) -> Value {
    review["request"]["object"].clone()
}

/// The one test CA: it issues serving certificates for localhost (several, for rotation tests).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        Self { issuer, pem }
    }

    /// A new key and a certificate for localhost: (cert PEM, key PEM, cert DER).
    pub fn issue(&self) -> (String, String, Vec<u8>) {
        self.issue_for("localhost", false)
    }

    /// A new key and a certificate for `name`, expired long ago when `expired`.
    pub fn issue_for(&self, name: &str, expired: bool) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// A client certificate (what the API server presents with `--client-ca`), as one PEM with
    /// its key, for `reqwest::Identity::from_pem`.
    pub fn issue_client(&self, name: &str) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    /// A certificate for localhost written as `tls.crt`/`tls.key` into `dir`, with this CA as
    /// `ca.crt`, as cert-manager's Secret holds them.
    pub fn write_pair(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key, _) = self.issue();
        let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        std::fs::write(dir.join("ca.crt"), &self.pem).unwrap();
        (cert_path, key_path)
    }
}

/// Where the harness's XNAT is.
enum Xnat {
    /// A stand-in the harness serves on loopback (the demo one unless a test gives its own).
    Standin(Arc<Standin>),
    /// A given stand-in at a given URL (served by the test, e.g. over HTTPS).
    At(Arc<Standin>, String),
}

/// Where the harness's credentials come from.
enum CredentialsFrom {
    Text(String),
    Path(PathBuf),
}

/// How a test's webhook differs from the default one.
pub struct Builder {
    policy: Option<String>,
    policy_file: Option<PathBuf>,
    credentials: CredentialsFrom,
    xnat: Xnat,
    tls: Option<(PathBuf, PathBuf, String)>,
    tls_ca: Option<PathBuf>,
    latency: Option<Duration>,
    fault: Option<Fault>,
    idle_timeout: Duration,
    client_ca: Option<PathBuf>,
    control_plane: Vec<ipnet::IpNet>,
    max_connections: u32,
    called_by_api_server: bool,
    /// This test reads absolute gauges: no other webhook runs meanwhile (`turns::alone`).
    alone: bool,
    events: Option<(kube::Client, jupyter_xnat_webhook::events::SinkSettings)>,
    pods_requesters: Vec<String>,
}

impl Builder {
    /// Posts Events to the API server `client` talks to (default: no Kubernetes API).
    pub fn events(
        mut self,
        client: kube::Client,
        settings: jupyter_xnat_webhook::events::SinkSettings,
    ) -> Self {
        self.events = Some((client, settings));
        self
    }

    /// `--pods-requesters`: replaces the policy's `pods.requesters` (default: not given).
    pub fn pods_requesters(mut self, usernames: &[&str]) -> Self {
        self.pods_requesters = usernames.iter().map(|u| u.to_string()).collect();
        self
    }

    /// The policy document (default: empty, the default policy).
    pub fn policy(mut self, yaml: &str) -> Self {
        self.policy = Some(yaml.to_owned());
        self
    }

    /// A policy file laid out by the test (e.g. a kubelet-style ConfigMap directory).
    pub fn policy_file(mut self, path: PathBuf) -> Self {
        self.policy_file = Some(path);
        self
    }

    /// The content of the credentials file (default: the stand-in's right credentials).
    pub fn credentials(mut self, text: &str) -> Self {
        self.credentials = CredentialsFrom::Text(text.to_owned());
        self
    }

    /// Credentials read from `path`, a file or a Secret directory.
    pub fn credentials_path(mut self, path: &Path) -> Self {
        self.credentials = CredentialsFrom::Path(path.to_owned());
        self
    }

    /// This stand-in (served by the harness) instead of the demo one.
    pub fn standin(mut self, xnat: Arc<Standin>) -> Self {
        self.xnat = Xnat::Standin(xnat);
        self
    }

    /// XNAT at `url` (served by the test, or nowhere); `xnat` is what the harness exposes.
    pub fn xnat_at(mut self, xnat: Arc<Standin>, url: String) -> Self {
        self.xnat = Xnat::At(xnat, url);
        self
    }

    /// Serve this certificate pair, issued by the CA with `ca_pem`.
    pub fn tls_files(mut self, cert: PathBuf, key: PathBuf, ca_pem: &str) -> Self {
        self.tls = Some((cert, key, ca_pem.to_owned()));
        self
    }

    /// The CA bundle the served certificate must come from (`--tls-ca`; default: `ca.crt`
    /// beside the certificate, when there is one).
    pub fn tls_ca(mut self, path: PathBuf) -> Self {
        self.tls_ca = Some(path);
        self
    }

    /// The stand-in answers every API call this much later.
    pub fn xnat_latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Connections with no request in flight are closed after this (default 5 s).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Require client certificates from the CA in this PEM file (`--client-ca`).
    pub fn client_ca(mut self, path: PathBuf) -> Self {
        self.client_ca = Some(path);
        self
    }

    /// Require client certificates (`--client-ca`) and have the harness's client present one, as
    /// the API server does once it is set up for it: reviews then come from a verified caller.
    pub fn called_by_api_server(mut self) -> Self {
        self.called_by_api_server = true;
        self
    }

    /// The control plane's addresses (`--control-plane`); by default 127.0.0.1, where the
    /// harness's client calls from: reviews from 127.0.0.2 and up are somebody else's.
    pub fn control_plane(mut self, cidrs: &[&str]) -> Self {
        self.control_plane = cidrs.iter().map(|c| c.parse().unwrap()).collect();
        self
    }

    /// Connections the webhook port holds at once (`--max-connections`; 3072 by default).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// The stand-in answers every API call with this fault.
    /// For a test that reads absolute gauges (the XNAT limit, the index's size): under plain
    /// `cargo test` no other webhook runs while this one does.
    pub fn alone_with_metrics(mut self) -> Self {
        self.alone = true;
        self
    }

    pub fn xnat_fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    pub async fn start(self) -> Harness {
        match self.try_start().await {
            Ok(h) => h,
            Err(e) => panic!("the webhook did not start: {e}"),
        }
    }

    /// Starts the webhook, or says why it did not.
    pub async fn try_start(self) -> Result<Harness, serve::StartError> {
        let turn = match self.alone {
            true => turns::alone().await,
            false => turns::share().await,
        };
        let dir = tempfile::tempdir().unwrap();
        let (xnat, xnat_url) = match self.xnat {
            Xnat::Standin(xnat) => {
                let (url, _task) = xnat
                    .spawn("127.0.0.1:0".parse().unwrap(), "/xnat")
                    .await
                    .unwrap();
                (xnat, url)
            }
            Xnat::At(xnat, url) => (xnat, url),
        };
        // Only what the test asked for: a given stand-in keeps what it was set up with.
        if let Some(latency) = self.latency {
            xnat.set_latency(latency);
        }
        if let Some(fault) = self.fault {
            xnat.set_fault(fault);
        }
        let policy = self.policy_file.unwrap_or_else(|| {
            let path = dir.path().join("policy.yaml");
            std::fs::write(&path, self.policy.unwrap_or_default()).unwrap();
            path
        });
        let credentials = match self.credentials {
            CredentialsFrom::Path(path) => path,
            CredentialsFrom::Text(text) => {
                let path = dir.path().join("xnat-credentials");
                std::fs::write(&path, text).unwrap();
                path
            }
        };
        let (tls_cert, tls_key, ca_pem) = self.tls.unwrap_or_else(|| {
            let ca = TestCa::new();
            let (cert, key) = ca.write_pair(dir.path());
            (cert, key, ca.pem)
        });
        let (client_ca, client) = if self.called_by_api_server {
            let (path, client) = api_server_client(dir.path(), &ca_pem);
            (Some(path), client)
        } else {
            (self.client_ca, https_client(&ca_pem))
        };
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_cert,
            tls_key,
            tls_ca: self.tls_ca,
            client_ca,
            inputs: serve::MountedInputs {
                policy,
                xnat_credentials: credentials,
                xnat_url: Some(xnat_url.clone()),
                pods_requesters: self.pods_requesters,
            },
            drain: Duration::from_secs(5),
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            reload_interval: Duration::from_millis(200),
            idle_timeout: self.idle_timeout,
            control_plane: self.control_plane,
            probe_listen: Some("127.0.0.1:0".parse().unwrap()),
            max_connections: self.max_connections,
            kubeconfig: None,
        };
        let bound = serve::bind(&config).await?;
        if let Some((client, settings)) = self.events {
            let sink = jupyter_xnat_webhook::events::EventSink::start(client, settings);
            assert!(bound.attach_event_sink(sink));
        }
        let addr = bound.local_addr().unwrap();
        let metrics_addr = bound.metrics_addr().unwrap();
        let probe_addr = bound.probe_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        // The turn is the server's: released once it has drained (or its runtime ended), so
        // nothing it still does moves the metrics of a test that runs alone next.
        let server = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            bound.serve(stopped, Duration::from_secs(5)).await;
            drop(turn);
        });
        Ok(Harness {
            xnat,
            xnat_url,
            addr,
            client,
            ca_pem,
            dir,
            metrics_addr,
            probe_addr,
            stop: Some(stop),
            server: Some(server),
        })
    }
}

/// A client CA written into `dir` and a client with the certificate it issued the API server.
fn api_server_client(dir: &Path, ca_pem: &str) -> (PathBuf, reqwest::Client) {
    jupyter_xnat_webhook::install_crypto_provider();
    let clients = TestCa::new();
    let path = dir.join("client-ca.crt");
    std::fs::write(&path, &clients.pem).unwrap();
    let identity = clients.issue_client("kube-apiserver");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
        .timeout(Duration::from_secs(20))
        .pool_idle_timeout(CLIENT_POOL_IDLE)
        .build()
        .unwrap();
    (path, client)
}

/// A running webhook and its XNAT stand-in; stopped when dropped.
pub struct Harness {
    pub xnat: Arc<Standin>,
    pub xnat_url: String,
    pub addr: SocketAddr,
    /// An HTTPS client that trusts only the webhook's CA.
    pub client: reqwest::Client,
    pub ca_pem: String,
    /// Where the harness keeps the policy, credentials and certificate it wrote.
    pub dir: TempDir,
    pub metrics_addr: SocketAddr,
    /// The loopback probe port (`jupyter-xnat-webhook probe`).
    pub probe_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    /// The default set-up: the empty policy, the demo stand-in, the right credentials.
    pub fn builder() -> Builder {
        Builder {
            policy: None,
            policy_file: None,
            credentials: CredentialsFrom::Text(format!("{SVC_USER}:{SVC_PASSWORD}\n")),
            xnat: Xnat::Standin(Standin::demo(SVC_USER, SVC_PASSWORD)),
            tls: None,
            tls_ca: None,
            latency: None,
            fault: None,
            idle_timeout: Duration::from_secs(5),
            client_ca: None,
            control_plane: vec!["127.0.0.1/32".parse().unwrap()],
            max_connections: 3072,
            called_by_api_server: false,
            alone: false,
            events: None,
            pods_requesters: Vec::new(),
        }
    }

    /// An HTTP/1.1 client calling from `ip` (127.0.0.2 and up are not the control plane), with
    /// its own connection per request in flight, as the API server's.
    pub fn client_from(&self, ip: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .local_address(Some(ip.parse().unwrap()))
            .http1_only()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(CLIENT_POOL_IDLE)
            .build()
            .unwrap()
    }

    /// The default set-up with `policy_yaml`.
    pub async fn start(policy_yaml: &str) -> Self {
        Self::builder().policy(policy_yaml).start().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.addr.port(), path)
    }

    /// POSTs a body to /mutate; returns the status and the raw body.
    pub async fn post_raw(&self, body: Vec<u8>) -> (u16, Vec<u8>) {
        let r = self
            .client
            .post(self.url("/mutate"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.bytes().await.unwrap().to_vec())
    }

    /// POSTs a review and returns the response review as raw JSON.
    pub async fn review(&self, review: &Value) -> Value {
        let (status, body) = self.post_raw(serde_json::to_vec(review).unwrap()).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// `/readyz` as JSON.
    pub async fn readyz(&self) -> Value {
        let r = self.client.get(self.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// `/metrics` from the plain-HTTP metrics port.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    /// Stops the webhook gracefully and waits until it has (drained, XNAT session closed).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// How long a harness client keeps an idle connection for reuse: well under the webhook's idle
/// timeout in the harness (5 s), as the API server's 90 s is under the webhook's 5 min. A client
/// that kept it as long as the server does would send a request on a connection the server is
/// just closing (a keep-alive race no server can prevent), which a test's loaded machine meets.
pub const CLIENT_POOL_IDLE: Duration = Duration::from_secs(2);

/// A TLS connection to `addr` from the loopback address `from`, trusting only `ca_pem`, offering
/// the `alpn` protocols: for tests that speak HTTP by hand (HTTP/2 frames, bytes held back).
pub async fn tls_to(
    addr: SocketAddr,
    ca_pem: &str,
    from: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    jupyter_xnat_webhook::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// An HTTPS client that trusts only the test CA.
pub fn https_client(ca_pem: &str) -> reqwest::Client {
    jupyter_xnat_webhook::install_crypto_provider();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(20))
        .pool_idle_timeout(CLIENT_POOL_IDLE)
        .build()
        .unwrap()
}

/// The RFC 6902 patch in a response, decoded from its base64 string; `None` when there is none.
/// Reads the raw JSON, not the webhook's own types.
pub fn decoded_patch(response: &Value) -> Option<Value> {
    let r = &response["response"];
    match (&r["patchType"], &r["patch"]) {
        (Value::Null, Value::Null) => None,
        (Value::String(t), Value::String(p)) => {
            assert_eq!(t, "JSONPatch");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p)
                .expect("patch must be a base64 string");
            let patch: Value = serde_json::from_slice(&bytes).expect("patch must be JSON");
            assert!(patch.is_array(), "patch must be an RFC 6902 array");
            Some(patch)
        }
        other => panic!("patch and patchType must come together as strings: {other:?}"),
    }
}

/// Applies the response's patch (if any) to the review's pod with `json_patch`.
pub fn patched_pod(review: &Value, response: &Value) -> Value {
    let mut pod = pod_of(review);
    if let Some(patch) = decoded_patch(response) {
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        json_patch::patch(&mut pod, &patch).expect("patch must apply to the pod");
    }
    pod
}

/// Warnings in a response.
pub fn warnings(response: &Value) -> Vec<String> {
    response["response"]["warnings"]
        .as_array()
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The notebook container of a pod.
pub fn notebook(pod: &Value) -> &Value {
    &pod["spec"]["containers"][0]
}

/// `(mountPath, subPath, readOnly)` of the notebook's mounts of `volume`.
pub fn mounts_of(pod: &Value, volume: &str) -> Vec<(String, String, bool)> {
    notebook(pod)["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["name"] == volume)
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_owned(),
                m["subPath"].as_str().unwrap_or_default().to_owned(),
                m["readOnly"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// The value of a notebook env var.
pub fn env_of(pod: &Value, name: &str) -> Option<String> {
    notebook(pod)["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap_or_default().to_owned())
}

/// The value of one sample line of Prometheus text (`name{labels} value`), 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// A directory laid out the way kubelet mounts a ConfigMap or Secret: the files are symlinks
/// through `..data`, which points at a timestamped directory and is swapped atomically on update.
pub struct KubeletDir {
    pub dir: TempDir,
    version: std::sync::atomic::AtomicUsize,
}

impl KubeletDir {
    pub fn new(files: &[(&str, &[u8])]) -> Self {
        let k = Self {
            dir: tempfile::tempdir().unwrap(),
            version: std::sync::atomic::AtomicUsize::new(0),
        };
        k.swap(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), k.dir.path().join(name)).unwrap();
        }
        k
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a new version and swaps `..data` to it, as kubelet's atomic writer does.
    pub fn swap(&self, files: &[(&str, &[u8])]) {
        let n = self
            .version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let root = self.dir.path();
        let version = format!("..2026_11_22_00_00_0{n}.{n}");
        std::fs::create_dir(root.join(&version)).unwrap();
        for (name, bytes) in files {
            std::fs::write(root.join(&version).join(name), bytes).unwrap();
        }
        let old = std::fs::read_link(root.join("..data")).ok();
        std::os::unix::fs::symlink(&version, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(root.join(old)).unwrap();
        }
    }
}
