//! Assembles the running webhook from a plain [`ServeConfig`]: policy, credentials, XNAT client,
//! certificate, listener; then serves until SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admission::Admission;
use crate::policy::{Policy, PolicyFile};
use crate::tls::CertStore;
use crate::xnat::{AccessCache, ClientSettings, CredentialSource, Credentials, XnatClient};

/// Everything `serve` needs, already parsed from the command line.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub policy: PathBuf,
    pub xnat_credentials: PathBuf,
    /// Replaces the policy's `xnat.url` (for local runs against a stand-in).
    pub xnat_url: Option<String>,
    /// How long in-flight reviews may take to finish after SIGTERM.
    pub drain: Duration,
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

/// Loads the policy file, applying the `--xnat-url` override before validation.
pub fn load_policy(path: &std::path::Path, xnat_url: Option<&str>) -> Result<Policy, StartError> {
    let mut file = PolicyFile::load(path)?;
    if let Some(url) = xnat_url {
        file.xnat.url = url.to_owned();
    }
    Ok(Policy::from_file(file)?)
}

/// Builds the admission state from a validated policy and where the credentials come from.
pub fn admission(policy: Policy, credentials: CredentialSource) -> Result<Admission, StartError> {
    let client = XnatClient::new(
        policy.xnat.url.clone(),
        credentials,
        ClientSettings::from(&policy.xnat),
    )?;
    let cache = AccessCache::new(client, &policy.xnat);
    Ok(Admission::new(policy, cache))
}

/// A webhook bound to its port, not yet serving; lets callers learn the address first.
pub struct Bound {
    pub listener: TcpListener,
    pub admission: Arc<Admission>,
    pub app: axum::Router,
    pub tls: Arc<rustls::ServerConfig>,
    pub certs: Arc<CertStore>,
}

impl Bound {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, drains in-flight reviews, then ends the XNAT session.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>, drain: Duration) {
        crate::server::serve_tls(self.listener, self.tls, self.app, shutdown, drain).await;
        self.admission.close().await;
    }
}

/// Loads everything and binds the port. Any error here stops startup with a message that names
/// the file or field at fault.
pub async fn bind(config: &ServeConfig) -> Result<Bound, StartError> {
    let policy = load_policy(&config.policy, config.xnat_url.as_deref())?;
    let credentials = Credentials::load(&config.xnat_credentials)?;
    let certs = CertStore::load(&config.tls_cert, &config.tls_key)?;
    let tls = certs.server_config()?;
    tracing::info!(
        xnat = %policy.xnat.url,
        xnat_user = credentials.username(),
        claim = %policy.storage.claim_name,
        "policy loaded"
    );
    // Read once now so a missing or malformed Secret stops startup; the client re-reads the
    // file at every login, so a rotation on disk needs no restart.
    let admission = Arc::new(admission(
        policy,
        CredentialSource::File(config.xnat_credentials.clone()),
    )?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    Ok(Bound {
        listener,
        app: crate::server::router(admission.clone()),
        admission,
        tls,
        certs,
    })
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
