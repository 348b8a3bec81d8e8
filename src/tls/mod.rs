//! The serving certificate: loaded from PEM files into a rustls resolver that holds the current
//! pair behind an `ArcSwap`, so a renewed certificate can be swapped in without locking or
//! restarting (every handshake reads the current pair).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

mod ca;
mod leaf;
pub use leaf::Leaf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate {path}: {message}")]
    Cert { path: String, message: String },
    #[error("cannot read private key {path}: {message}")]
    Key { path: String, message: String },
    #[error("certificate {cert} and key {key} do not form a usable pair: {message}")]
    Pair {
        cert: String,
        key: String,
        message: String,
    },
    #[error("certificate {path} is not usable: {message}")]
    Unusable { path: String, message: String },
    #[error("certificate {path} does not cover {missing:?}, which the served one does")]
    Names { path: String, missing: Vec<String> },
    #[error("CA bundle {path} is not usable: {message}")]
    Ca { path: String, message: String },
    #[error("certificate {cert} is not issued by the configured CA {ca}: {message}")]
    NotIssued {
        cert: String,
        ca: String,
        message: String,
    },
    #[error("client CA {path} is not usable: {message}")]
    ClientCa { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The result of every fallible step here.
pub type Result<T, E = TlsError> = std::result::Result<T, E>;

/// The TLS configuration each new connection gets. The serving certificate inside it is swapped
/// by [`CertStore`]; the configuration itself is rebuilt when the client CA file changes.
pub struct TlsSource {
    config: ArcSwap<ServerConfig>,
    /// With `--client-ca`: the CA file and the store the rebuilt configuration serves.
    clients: Option<(PathBuf, Arc<CertStore>)>,
}

impl TlsSource {
    /// A configuration that never changes.
    pub fn fixed(config: Arc<ServerConfig>) -> Self {
        Self {
            config: ArcSwap::new(config),
            clients: None,
        }
    }

    /// Serves `certs`; with `client_ca`, every client must present a certificate that CA
    /// issued, or it gets no answer at all (the handshake fails).
    pub fn new(certs: &Arc<CertStore>, client_ca: Option<&Path>) -> Result<Self> {
        let Some(ca) = client_ca else {
            return Ok(Self::fixed(certs.server_config()?));
        };
        let config = certs.server_config_verifying(Some(client_verifier(ca)?))?;
        Ok(Self {
            config: ArcSwap::new(config),
            clients: Some((ca.to_owned(), certs.clone())),
        })
    }

    /// Re-reads the client CA file; one that does not load keeps the current one in use.
    pub fn reload_client_ca(&self) -> Result<()> {
        let Some((ca, certs)) = &self.clients else {
            return Ok(());
        };
        let config = certs.server_config_verifying(Some(client_verifier(ca)?))?;
        self.config.store(config);
        Ok(())
    }

    /// An acceptor for one new connection, with the configuration current now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }
}

/// Verifies client certificates against the CAs in `path` (PEM); the API server's own
/// certificate is the one expected.
fn client_verifier(path: &Path) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let unusable = |message: String| TlsError::ClientCa {
        path: path.display().to_string(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unusable(e.to_string()))? {
        roots
            .add(cert.map_err(|e| unusable(e.to_string()))?)
            .map_err(|e| unusable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unusable("no CERTIFICATE block found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| unusable(e.to_string()))
}

/// The serving certificate and key, reloadable.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    /// The configured CA: a pair it did not issue is refused.
    ca_path: Option<PathBuf>,
    current: ArcSwap<CertifiedKey>,
    /// What the served certificate says: a renewal must cover the same names.
    leaf: ArcSwap<Leaf>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads the pair; refuses a certificate that is not valid now, or that the CA bundle at
    /// `ca_path` (when given) did not issue.
    pub fn load(cert_path: &Path, key_path: &Path, ca_path: Option<&Path>) -> Result<Arc<Self>> {
        let (pair, leaf) = read_issued_pair(cert_path, key_path, ca_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            ca_path: ca_path.map(Path::to_owned),
            current: ArcSwap::from_pointee(pair),
            leaf: ArcSwap::from_pointee(leaf),
        }))
    }

    /// Re-reads the files, the CA bundle with them (a rotation changes both). A pair that does
    /// not load, is not valid now, was not issued by the configured CA, or does not cover every
    /// name the served certificate covers is refused, and the current pair keeps serving.
    pub fn reload(&self) -> Result<()> {
        let (pair, leaf) =
            read_issued_pair(&self.cert_path, &self.key_path, self.ca_path.as_deref())?;
        let missing = leaf.missing_names(&self.leaf.load());
        if !missing.is_empty() {
            return Err(TlsError::Names {
                path: self.cert_path.display().to_string(),
                missing,
            });
        }
        self.current.store(Arc::new(pair));
        self.leaf.store(Arc::new(leaf));
        Ok(())
    }

    /// The configured CA bundle, when there is one.
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// When the served certificate expires.
    pub fn not_after(&self) -> std::time::SystemTime {
        self.leaf.load().not_after
    }

    /// A rustls server config (TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1) that serves this store and
    /// asks for no client certificate.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>> {
        self.server_config_verifying(None)
    }

    /// The same, requiring a client certificate that `clients` verifies when given.
    fn server_config_verifying(
        self: &Arc<Self>,
        clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Result<Arc<ServerConfig>> {
        crate::install_crypto_provider();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match clients {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The pair and its leaf, checked against the CA bundle at `ca_path` when given.
fn read_issued_pair(
    cert_path: &Path,
    key_path: &Path,
    ca_path: Option<&Path>,
) -> Result<(CertifiedKey, Leaf)> {
    let (pair, leaf) = read_pair(cert_path, key_path)?;
    if let Some(ca_path) = ca_path {
        let roots = ca::read_bundle(ca_path).map_err(|message| TlsError::Ca {
            path: ca_path.display().to_string(),
            message,
        })?;
        ca::check_issued(&pair.cert, &leaf, &roots, std::time::SystemTime::now()).map_err(
            |message| TlsError::NotIssued {
                cert: cert_path.display().to_string(),
                ca: ca_path.display().to_string(),
                message,
            },
        )?;
    }
    Ok((pair, leaf))
}

/// The pair, and what its leaf certificate says (which must be valid now).
fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(CertifiedKey, Leaf)> {
    let cert_err = |message: String| TlsError::Cert {
        path: cert_path.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    let Some(first) = chain.first() else {
        return Err(cert_err("no CERTIFICATE block found".into()));
    };
    let unusable = |message: String| TlsError::Unusable {
        path: cert_path.display().to_string(),
        message,
    };
    let leaf = Leaf::parse(first).map_err(unusable)?;
    leaf.check_valid_at(std::time::SystemTime::now())
        .map_err(unusable)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.display().to_string(),
        message: e.to_string(),
    })?;
    let pair = CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .map_err(|e| TlsError::Pair {
            cert: cert_path.display().to_string(),
            key: key_path.display().to_string(),
            message: e.to_string(),
        })?;
    Ok((pair, leaf))
}
