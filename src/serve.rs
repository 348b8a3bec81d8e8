//! Assembles the running webhook from a plain [`ServeConfig`]: policy, credentials, XNAT client,
//! certificate, listener; then serves until SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admission::{AccessSource, Admission, Trust};
use crate::policy::{Overrides, Policy};
use crate::reload::{Input, ReloadStatus, read_all, reload_on_change, version_of};
use crate::server::{AppState, Gate, Listener, lifetimes, listen};
use crate::tls::{CertStore, TlsSource};
use crate::watch::Changes;
use crate::xnat::{CredentialSource, Credentials};

/// Everything `serve` needs: the `serve` command's flags, parsed by clap into this one struct
/// (tests build it directly).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address and port for HTTPS.
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain served to the API server.
    #[arg(long, env = "TLS_CERT", default_value = "/etc/webhook/tls/tls.crt")]
    pub tls_cert: PathBuf,
    /// PEM private key of that certificate.
    #[arg(long, env = "TLS_KEY", default_value = "/etc/webhook/tls/tls.key")]
    pub tls_key: PathBuf,
    /// PEM CA bundle the API server trusts (the webhook configuration's caBundle): a serving
    /// certificate it did not issue is refused, at start and on reload. Default: `ca.crt`
    /// beside --tls-cert when it exists (cert-manager's and certs/webhook-certs.sh's Secrets).
    #[arg(long, env = "TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM CA(s) whose client certificates are accepted; every other client is refused at the
    /// TLS handshake. Reloaded when the file changes. Without it, any client is answered.
    #[arg(long, env = "CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// The control plane's addresses (CIDRs or addresses, comma-separated or repeated): their
    /// reviews come first (reserved connections, body bytes and XNAT slots) and, with
    /// --client-ca's verified callers, are the only ones that get Events.
    #[arg(long, env = "CONTROL_PLANE", value_delimiter = ',')]
    pub control_plane: Vec<ipnet::IpNet>,
    /// Address and port for the exec probes' plain-HTTP /healthz and /readyz (`probe`); keep it
    /// on the loopback address so nothing outside the pod can reach it; `off` for none.
    #[arg(long, env = "PROBE_LISTEN", default_value = "127.0.0.1:8081", value_parser = optional_addr)]
    pub probe_listen: std::option::Option<SocketAddr>,
    /// Connections the webhook port holds at once: one per review waiting for its answer (the
    /// API server opens one per review), half of them reserved for --control-plane.
    #[arg(long, default_value_t = 3072, value_parser = clap::value_parser!(u32).range(64..=65536))]
    pub max_connections: u32,
    #[command(flatten)]
    pub inputs: MountedInputs,
    /// How long in-flight reviews may take to finish after SIGTERM.
    #[arg(long = "drain-timeout", value_name = "DRAIN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Address and port for plain-HTTP /metrics (OpenMetrics text); `off` for none.
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9090", value_parser = optional_addr)]
    pub metrics_listen: std::option::Option<SocketAddr>,
    /// How often the policy and certificate files are re-checked besides file events.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,
    /// Close a connection with no request in flight for this long (at least 2m: the API server
    /// keeps idle connections for 90s; a new connection must send a request within 10s).
    #[arg(long, default_value = "5m", value_parser = parse_idle)]
    pub idle_timeout: Duration,
    /// Post Events about notebook pods to the cluster this kubeconfig names (local runs). In a
    /// cluster the webhook's own ServiceAccount is used; elsewhere, without this, no Events.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

/// The policy and the XNAT service credentials, where the Deployment mounts them: `serve` and
/// `check-xnat` read the same files.
#[derive(Debug, Clone, clap::Args)]
pub struct MountedInputs {
    /// The policy YAML (the ConfigMap key, mounted as a file).
    #[arg(
        long,
        env = "POLICY",
        default_value = "/etc/webhook/policy/policy.yaml"
    )]
    pub policy: PathBuf,
    /// XNAT service credentials: a basic-auth Secret directory (`username`, `password`) or a
    /// `username:password` file. Never the credentials themselves.
    #[arg(long, env = "XNAT_CREDENTIALS", default_value = "/etc/webhook/xnat")]
    pub xnat_credentials: PathBuf,
    /// Overrides the policy's xnat.url (local runs against a stand-in).
    #[arg(long, env = "XNAT_URL")]
    pub xnat_url: Option<String>,
    /// Replaces the policy's pods.requesters (comma-separated usernames): the Deployment sets it
    /// from the hub's namespace and service account.
    #[arg(
        long,
        env = "PODS_REQUESTERS",
        value_delimiter = ',',
        value_name = "USERNAMES"
    )]
    pub pods_requesters: Vec<String>,
}

impl MountedInputs {
    /// What the command line sets over the policy file: `--xnat-url`, `--pods-requesters`.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            xnat_url: self.xnat_url.clone(),
            pods_requesters: Overrides::requesters(&self.pods_requesters),
        }
    }
}

/// An address, or `off` for none.
fn optional_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s == "off" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| format!("{s:?}: {e} (or `off`)"))
}

/// The API server keeps an idle connection for up to 90 s and reuses it without retrying a
/// failed POST: the server must keep it longer, or a reuse could land on a closing connection.
fn parse_idle(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(120) {
        return Err("must be at least 2m (the API server keeps idle connections for 90s)".into());
    }
    Ok(d)
}

/// `serve`: binds, posts Events where it can, and serves until SIGTERM.
pub async fn run(config: ServeConfig) -> Result<(), StartError> {
    let bound = bind(&config).await?;
    bound.attach_events(config.kubeconfig.as_deref()).await;
    let addr = bound.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    tracing::info!(%addr, metrics = ?bound.metrics_addr(),
        "serving admission reviews over TLS");
    bound.serve(shutdown_signal(), config.drain).await;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Credentials(#[from] crate::xnat::CredentialsError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("XNAT client: {0}")]
    Xnat(#[from] crate::xnat::XnatError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Builds the admission state from a validated policy and where the credentials come from.
pub fn admission(policy: Policy, credentials: CredentialSource) -> Result<Admission, StartError> {
    let access = AccessSource::xnat(&policy, credentials.clone(), Arc::default())?;
    Ok(Admission::new(policy, access, Some(credentials)))
}

/// Metrics connections idle this long are closed (Prometheus scrapes every 15–60 s).
const METRICS_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// A webhook bound to its ports, not yet serving; lets callers learn the addresses first.
pub struct Bound {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    probe_listener: Option<TcpListener>,
    trust: Arc<Trust>,
    max_connections: usize,
    admission: Arc<Admission>,
    status: Arc<ReloadStatus>,
    app: axum::Router,
    tls: Arc<TlsSource>,
    reloaders: Vec<tokio::task::JoinHandle<()>>,
    idle_timeout: Duration,
}

impl Bound {
    /// Events go to the cluster's API server when there is one; a webhook that cannot post
    /// them still serves (the users lose the spawn-page messages, which the log says).
    pub async fn attach_events(&self, kubeconfig: Option<&std::path::Path>) {
        match crate::events::client(kubeconfig).await {
            Ok(Some(client)) => {
                let sink = crate::events::EventSink::start(client, Default::default());
                self.admission.attach_events(sink);
                tracing::info!("posting Events about notebook pods to the Kubernetes API");
            }
            Ok(None) => tracing::info!(
                "not in a cluster and no --kubeconfig: no Events are posted about notebook pods"
            ),
            Err(error) => tracing::warn!(%error,
                "cannot reach the Kubernetes API: no Events are posted about notebook pods"),
        }
    }

    /// Posts Events through `sink` (tests, with a stand-in API server); false when a sink is
    /// already attached.
    pub fn attach_event_sink(&self, sink: crate::events::EventSink) -> bool {
        self.admission.attach_events(sink)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    pub fn probe_addr(&self) -> Option<SocketAddr> {
        self.probe_listener.as_ref()?.local_addr().ok()
    }

    /// Serves until `shutdown`, drains in-flight reviews, then ends the XNAT session.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>, drain: Duration) {
        let (stop_side_ports, side_ports_stopped) = tokio::sync::watch::channel(());
        // Nobody comes first on the metrics and probe ports: the control plane never calls them.
        let side_port = |tcp, port, capacity, app| {
            let listener = Listener {
                tcp,
                tls: None,
                port,
                capacity,
                trust: Arc::default(),
                lifetimes: lifetimes(METRICS_IDLE_TIMEOUT),
            };
            let mut stopped = side_ports_stopped.clone();
            let stop = async move {
                let _ = stopped.changed().await;
            };
            tokio::spawn(listen::serve(listener, app, stop, Duration::from_secs(1)))
        };
        let metrics = self.metrics_listener.map(|tcp| {
            let app = crate::server::metrics_router(self.status.clone(), self.admission.clone());
            side_port(tcp, "metrics", listen::METRICS, app)
        });
        let probes = self.probe_listener.map(|tcp| {
            let app = crate::server::probe_router(self.status.clone(), self.admission.clone());
            side_port(tcp, "probes", listen::PROBES, app)
        });
        let listener = Listener {
            tcp: self.listener,
            tls: Some(self.tls),
            port: "webhook",
            capacity: listen::webhook_capacity(&self.trust, self.max_connections),
            trust: self.trust.clone(),
            lifetimes: lifetimes(self.idle_timeout),
        };
        listen::serve(listener, self.app, shutdown, drain).await;
        drop(stop_side_ports);
        for task in metrics.into_iter().chain(probes) {
            let _ = task.await;
        }
        for task in &self.reloaders {
            task.abort();
        }
        self.admission.close().await;
    }
}

/// Loads everything and binds the ports. Any error here stops startup with a message that names
/// the file or field at fault.
pub async fn bind(config: &ServeConfig) -> Result<Bound, StartError> {
    let policy_bytes = std::fs::read(&config.inputs.policy).map_err(|source| {
        StartError::Policy(crate::policy::PolicyError::Read {
            path: config.inputs.policy.display().to_string(),
            source,
        })
    })?;
    let overrides = config.inputs.overrides();
    let policy = Policy::from_yaml(&policy_bytes, &overrides)?;
    crate::metrics::policy_version(&policy.version);
    let credentials = Credentials::load(&config.inputs.xnat_credentials)?;
    let (certs, cert_files, cert_bytes) = load_certificate(config).await?;
    let tls = Arc::new(TlsSource::new(&certs, config.client_ca.as_deref())?);
    let client_ca_bytes = match &config.client_ca {
        Some(ca) => Some(read_all(std::slice::from_ref(ca)).await.unwrap_or_default()),
        None => None,
    };
    say_policy_loaded(&policy, &credentials);
    // Read once now so a missing or malformed Secret stops startup; the client re-reads the
    // file at every login, so a rotation on disk needs no restart.
    let admission = Arc::new(admission(
        policy,
        CredentialSource::File(config.inputs.xnat_credentials.clone()),
    )?);
    let listener = bind_port(config.listen).await?;
    let metrics_listener = bind_optional(config.metrics_listen).await?;
    let probe_listener = bind_optional(config.probe_listen).await?;
    let trust = Arc::new(Trust::new(
        config.control_plane.clone(),
        config.client_ca.is_some(),
    ));
    admission.trust(trust.clone());
    say_who_comes_first(&trust, &admission.policy());

    let status = Arc::new(ReloadStatus::default());
    status.loaded(Input::Policy, version_of(&policy_bytes));
    status.loaded(Input::Certificate, version_of(&cert_bytes));
    let mut reloaders = vec![
        reload_policy(config, overrides, policy_bytes, &admission, &status),
        reload_certificate(config, cert_files, cert_bytes, &certs, &status),
    ];
    match (&config.client_ca, client_ca_bytes) {
        (Some(ca), Some(bytes)) => {
            status.loaded(Input::ClientCa, version_of(&bytes));
            reloaders.push(reload_client_ca(config, ca, bytes, &tls, &status));
        }
        _ => warn_unauthenticated_callers(&admission.policy()),
    }

    Ok(Bound {
        listener,
        metrics_listener,
        probe_listener,
        app: crate::server::router(AppState {
            admission: admission.clone(),
            status: status.clone(),
            gate: Gate::new(&trust),
            refusals: Arc::default(),
        }),
        trust,
        max_connections: config.max_connections as usize,
        admission,
        status,
        tls,
        reloaders,
        idle_timeout: config.idle_timeout,
    })
}

/// Watches the policy file; a changed version is validated with the same overrides as at start
/// and swapped in whole, or rejected while the current one keeps serving.
fn reload_policy(
    config: &ServeConfig,
    overrides: Overrides,
    current: Vec<u8>,
    admission: &Arc<Admission>,
    status: &Arc<ReloadStatus>,
) -> tokio::task::JoinHandle<()> {
    let changes = Changes::new(&[&config.inputs.policy], config.reload_interval);
    let admission = admission.clone();
    tokio::spawn(reload_on_change(
        vec![config.inputs.policy.clone()],
        changes,
        current,
        Input::Policy,
        status.clone(),
        move |bytes| {
            // At start an empty file is the default policy; here it is a file emptied or cut
            // short, and the default would drop every rule in force.
            if crate::policy::is_empty_document(bytes) {
                return Err("the policy file is empty; keeping the policy in force".into());
            }
            let policy = Policy::from_yaml(bytes, &overrides).map_err(|e| e.to_string())?;
            let version = policy.version.clone();
            admission.apply_policy(policy).map_err(|e| e.to_string())?;
            crate::metrics::policy_version(&version);
            Ok(())
        },
    ))
}

/// The serving certificate, checked against the configured CA; with the files it is read from
/// and their bytes, to tell a later change. The bytes are read first, then the pair: a renewal
/// landing in between is then seen as a change.
async fn load_certificate(
    config: &ServeConfig,
) -> Result<(Arc<CertStore>, Vec<PathBuf>, Vec<u8>), StartError> {
    let tls_ca = configured_ca(config);
    let mut files = vec![config.tls_cert.clone(), config.tls_key.clone()];
    files.extend(tls_ca.clone());
    let bytes = read_all(&files).await.unwrap_or_default();
    let certs = CertStore::load(&config.tls_cert, &config.tls_key, tls_ca.as_deref())?;
    crate::metrics::certificate_expiry(certs.not_after());
    Ok((certs, files, bytes))
}

/// The configured CA: `--tls-ca`, else `ca.crt` beside the certificate (where cert-manager and
/// certs/webhook-certs.sh put it) when it exists; said at start either way.
fn configured_ca(config: &ServeConfig) -> Option<PathBuf> {
    let ca = config.tls_ca.clone().or_else(|| {
        let beside = config.tls_cert.with_file_name("ca.crt");
        beside.exists().then_some(beside)
    });
    match &ca {
        Some(ca) => tracing::info!(ca = %ca.display(),
            "the serving certificate must be issued by this CA bundle, at start and on reload"),
        None => tracing::warn!(cert = %config.tls_cert.display(),
            "no ca.crt beside the certificate and no --tls-ca: a renewed certificate from another \
             CA would be served, and the API server would refuse it"),
    }
    ca
}

/// Watches the serving certificate, key and CA bundle; a pair that loads (and that the bundle
/// issued) replaces the one served. Any of the files changing retries a refused pair, so a
/// certificate that arrives before its CA is taken once the CA does.
fn reload_certificate(
    config: &ServeConfig,
    files: Vec<PathBuf>,
    current: Vec<u8>,
    certs: &Arc<CertStore>,
    status: &Arc<ReloadStatus>,
) -> tokio::task::JoinHandle<()> {
    let watched: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    let changes = Changes::new(&watched, config.reload_interval);
    let store = certs.clone();
    tokio::spawn(reload_on_change(
        files,
        changes,
        current,
        Input::Certificate,
        status.clone(),
        move |_| {
            store.reload().map_err(|e| e.to_string())?;
            crate::metrics::certificate_expiry(store.not_after());
            Ok(())
        },
    ))
}

/// Watches the client CA file; a CA that loads is used for every new connection.
fn reload_client_ca(
    config: &ServeConfig,
    ca: &std::path::Path,
    current: Vec<u8>,
    tls: &Arc<TlsSource>,
    status: &Arc<ReloadStatus>,
) -> tokio::task::JoinHandle<()> {
    let changes = Changes::new(&[ca], config.reload_interval);
    let tls = tls.clone();
    tokio::spawn(reload_on_change(
        vec![ca.to_owned()],
        changes,
        current,
        Input::ClientCa,
        status.clone(),
        move |_| tls.reload_client_ca().map_err(|e| e.to_string()),
    ))
}

/// Says plainly, at start, what anyone who can reach the port can do without `--client-ca`.
fn warn_unauthenticated_callers(policy: &Policy) {
    let secrets = policy.user_options.enabled
        && policy.user_options.secrets == crate::policy::SecretsPolicy::Pass;
    tracing::warn!(
        "no --client-ca: the webhook cannot tell the API server from any other client. Anyone \
         who can reach its port can send a forged review and read back any user's XNAT project \
         list{}. Restrict the port to the control plane (deploy/components/control-plane-only) or \
         have the API server present a client certificate (README: Caller authentication)",
        if secrets {
            ", and with userOptions.secrets: pass, the XNAT token of a user's launch context"
        } else {
            ""
        }
    );
}

/// Says at start who gets the reserved capacity and Events, and what follows when nobody can.
fn say_who_comes_first(trust: &Trust, policy: &Policy) {
    if trust.distinguishes() {
        tracing::info!(control_plane = ?trust.control_plane(), "reviews from the control plane \
            or a verified client certificate come first: capacity is reserved for them, and only \
            they get Events about notebook pods");
    } else if policy.events.enabled {
        tracing::warn!(
            "events.enabled, but no --control-plane nor --client-ca: the webhook \
            cannot tell the API server's reviews from forged ones, so it posts no Events about \
            notebook pods (the answer's warning and the status annotation still say what \
            happened). Name the control plane's addresses (README: Caller authentication)"
        );
    }
}

fn say_policy_loaded(policy: &Policy, credentials: &Credentials) {
    let claims: Vec<&str> = (policy.storage.volumes.iter())
        .map(|v| v.claim_name.as_str())
        .collect();
    tracing::info!(xnat = %policy.xnat.endpoint.url, xnat_user = credentials.username(),
        claims = %claims.join(","), requesters = %policy.pods.requesters.join(","),
        mode = ?policy.mode, "policy loaded");
}

async fn bind_optional(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, StartError> {
    match addr {
        Some(addr) => bind_port(addr).await.map(Some),
        None => Ok(None),
    }
}

async fn bind_port(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
