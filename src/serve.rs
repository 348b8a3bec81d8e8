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

/// Everything `serve` needs, already parsed from the command line.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The CA bundle the API server trusts (`--tls-ca`); `None`: `ca.crt` beside `tls_cert`
    /// when that file exists at start.
    pub tls_ca: Option<PathBuf>,
    /// When set, every client must present a certificate this CA (PEM) issued.
    pub client_ca: Option<PathBuf>,
    pub policy: PathBuf,
    pub xnat_credentials: PathBuf,
    /// Replaces the policy's `xnat.url` (for local runs against a stand-in).
    pub xnat_url: Option<String>,
    /// How long in-flight reviews may take to finish after SIGTERM.
    pub drain: Duration,
    /// Plain-HTTP `/metrics`; `None` for no metrics port.
    pub metrics_listen: Option<SocketAddr>,
    /// How often the policy and certificate files are checked besides file-change events.
    pub reload_interval: Duration,
    /// A connection whose client sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The control plane's address ranges (`--control-plane`): capacity is reserved for them and
    /// only their reviews (or a verified client's) get Events.
    pub control_plane: Vec<ipnet::IpNet>,
    /// Plain-HTTP `/healthz` and `/readyz` for the exec probes, on the loopback address; `None`
    /// for none.
    pub probe_listen: Option<SocketAddr>,
    /// Connections the webhook port holds at once (each a review waiting, or a keep-alive).
    pub max_connections: usize,
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
    pub listener: TcpListener,
    pub metrics_listener: Option<TcpListener>,
    pub probe_listener: Option<TcpListener>,
    pub trust: Arc<Trust>,
    max_connections: usize,
    pub admission: Arc<Admission>,
    pub status: Arc<ReloadStatus>,
    pub app: axum::Router,
    pub tls: Arc<TlsSource>,
    pub certs: Arc<CertStore>,
    reloaders: Vec<tokio::task::JoinHandle<()>>,
    idle_timeout: Duration,
}

impl Bound {
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
    let policy_bytes = std::fs::read(&config.policy).map_err(|source| {
        StartError::Policy(crate::policy::PolicyError::Read {
            path: config.policy.display().to_string(),
            source,
        })
    })?;
    let overrides = Overrides {
        xnat_url: config.xnat_url.clone(),
    };
    let policy = Policy::from_yaml(&policy_bytes, &overrides)?;
    crate::metrics::policy_version(&policy.version);
    let credentials = Credentials::load(&config.xnat_credentials)?;
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
        CredentialSource::File(config.xnat_credentials.clone()),
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
        max_connections: config.max_connections,
        admission,
        status,
        tls,
        certs,
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
    let changes = Changes::new(&[&config.policy], config.reload_interval);
    let admission = admission.clone();
    tokio::spawn(reload_on_change(
        vec![config.policy.clone()],
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
        claims = %claims.join(","), mode = ?policy.mode, "policy loaded");
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
