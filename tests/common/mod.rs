//! Shared harness for the integration tests: a real webhook over real TLS on loopback, talking to
//! the XNAT stand-in over real HTTP.

#![allow(dead_code)] // each test binary uses its own subset

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
use xnat_standin::Standin;

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

/// A demo XNAT stand-in on loopback, and a credentials file for it in `dir`.
pub async fn standin_with_credentials(dir: &Path) -> (Arc<Standin>, String, PathBuf) {
    let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
    let (url, _task) = xnat
        .spawn("127.0.0.1:0".parse().unwrap(), "/xnat")
        .await
        .unwrap();
    let creds = dir.join("xnat-credentials");
    std::fs::write(&creds, format!("{SVC_USER}:{SVC_PASSWORD}\n")).unwrap();
    (xnat, url, creds)
}

/// The pod inside a review.
pub fn pod_of(review: &Value) -> Value {
    review["request"]["object"].clone()
}

/// A CA and a serving certificate for localhost, written as PEM files.
pub struct TestCerts {
    pub dir: TempDir,
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA that can issue several serving certificates (for rotation tests).
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
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

pub fn make_certs() -> TestCerts {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    TestCerts {
        ca_pem: ca.pem(),
        dir,
        cert: cert_path,
        key: key_path,
    }
}

/// A running webhook and its XNAT stand-in.
pub struct Harness {
    pub xnat: Arc<Standin>,
    pub xnat_url: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub certs: TestCerts,
    pub metrics_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    /// Starts the stand-in (demo users) and the webhook with `policy_yaml` (its `xnat.url` is
    /// pointed at the stand-in).
    pub async fn start(policy_yaml: &str) -> Self {
        let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
        let (xnat_url, _task) = xnat
            .spawn("127.0.0.1:0".parse().unwrap(), "/xnat")
            .await
            .unwrap();
        Self::start_with(
            xnat,
            xnat_url,
            policy_yaml,
            &format!("{SVC_USER}:{SVC_PASSWORD}\n"),
        )
        .await
    }

    /// Starts the demo stand-in and the webhook with the given credentials file content (e.g.
    /// wrong ones).
    pub async fn start_with_credentials(policy_yaml: &str, credentials: &str) -> Self {
        let xnat = Standin::demo(SVC_USER, SVC_PASSWORD);
        let (xnat_url, _task) = xnat
            .spawn("127.0.0.1:0".parse().unwrap(), "/xnat")
            .await
            .unwrap();
        Self::start_with(xnat, xnat_url, policy_yaml, credentials).await
    }

    /// Starts the webhook against any XNAT URL, with the given credentials file content.
    pub async fn start_with(
        xnat: Arc<Standin>,
        xnat_url: String,
        policy_yaml: &str,
        credentials: &str,
    ) -> Self {
        let certs = make_certs();
        let creds = certs.dir.path().join("xnat-credentials");
        std::fs::write(&creds, credentials).unwrap();
        Self::start_full(xnat, xnat_url, policy_yaml, certs, creds).await
    }

    /// Starts the webhook with credentials read from `path` (a file or a Secret directory).
    pub async fn start_with_credentials_path(
        xnat: Arc<Standin>,
        xnat_url: String,
        policy_yaml: &str,
        path: &Path,
    ) -> Self {
        Self::start_full(xnat, xnat_url, policy_yaml, make_certs(), path.to_owned()).await
    }

    async fn start_full(
        xnat: Arc<Standin>,
        xnat_url: String,
        policy_yaml: &str,
        certs: TestCerts,
        creds: PathBuf,
    ) -> Self {
        let policy = certs.dir.path().join("policy.yaml");
        std::fs::write(&policy, policy_yaml).unwrap();
        let (cert, key) = (certs.cert.clone(), certs.key.clone());
        Self::start_files(xnat, xnat_url, policy, cert, key, creds, certs).await
    }

    /// Starts the webhook on files laid out by the caller (e.g. kubelet-style directories).
    pub async fn start_files(
        xnat: Arc<Standin>,
        xnat_url: String,
        policy: PathBuf,
        tls_cert: PathBuf,
        tls_key: PathBuf,
        creds: PathBuf,
        certs: TestCerts,
    ) -> Self {
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_cert,
            tls_key,
            policy,
            xnat_credentials: creds,
            xnat_url: Some(xnat_url.clone()),
            drain: Duration::from_secs(5),
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            reload_interval: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(5),
        };
        let bound = serve::bind(&config).await.unwrap();
        let addr = bound.local_addr().unwrap();
        let metrics_addr = bound.metrics_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(bound.serve(
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        let client = https_client(&certs.ca_pem);
        Self {
            xnat,
            xnat_url,
            addr,
            client,
            certs,
            metrics_addr,
            stop: Some(stop),
            server: Some(server),
        }
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

    /// Stops the webhook gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }
}

/// An HTTPS client that trusts only the test CA.
pub fn https_client(ca_pem: &str) -> reqwest::Client {
    jupyter_xnat_webhook::install_crypto_provider();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(20))
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
