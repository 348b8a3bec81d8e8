//! `jupyter-xnat-webhook`: command-line entry point. Parses flags into plain configs and hands
//! them to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jupyter_xnat_webhook::policy::{Overrides, Policy};
use jupyter_xnat_webhook::serve::{self, ServeConfig};
use jupyter_xnat_webhook::telemetry::{self, LogFormat};
use jupyter_xnat_webhook::tools;
use jupyter_xnat_webhook::xnat::CredentialSource;

#[derive(Parser)]
#[command(
    version,
    about = "Mutating admission webhook that mounts a JupyterHub user's XNAT projects"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the admission webhook over TLS (POST /mutate, GET /healthz, GET /readyz).
    Serve(Box<ServeArgs>),
    /// Validate a policy file and print its effective values (defaults filled in).
    CheckPolicy {
        /// The policy YAML.
        file: PathBuf,
    },
    /// Run an AdmissionReview (stdin) through the webhook's decision code, offline, and print
    /// the AdmissionResponse, the decoded patch and the pod after it.
    Review(ReviewArgs),
    /// Print the policy's JSON Schema (also kept in deploy/base/policy.schema.json).
    PolicySchema,
    /// Check the XNAT service account before the first spawn: log in, read its roles, and make
    /// every call the policy makes on a spawn with real ids; exit 1 naming a call that fails.
    CheckXnat(CheckXnatArgs),
    /// Exit 0 when the webhook answers its loopback probe port (`--probe-listen`): kubelet's
    /// exec probes, which no flood on the other ports can fail.
    Probe {
        /// `ready` (/readyz) or `live` (/healthz).
        #[arg(value_enum)]
        which: jupyter_xnat_webhook::server::probe::Probe,
        #[arg(long, default_value = "127.0.0.1:8081")]
        addr: SocketAddr,
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// The policy and the XNAT service credentials, where the Deployment mounts them: `serve` and
/// `check-xnat` read the same files.
#[derive(clap::Args)]
struct MountedInputs {
    /// The policy YAML (the ConfigMap key, mounted as a file).
    #[arg(
        long,
        env = "POLICY",
        default_value = "/etc/webhook/policy/policy.yaml"
    )]
    policy: PathBuf,
    /// XNAT service credentials: a basic-auth Secret directory (`username`, `password`) or a
    /// `username:password` file. Never the credentials themselves.
    #[arg(long, env = "XNAT_CREDENTIALS", default_value = "/etc/webhook/xnat")]
    xnat_credentials: PathBuf,
    /// Overrides the policy's xnat.url (local runs against a stand-in).
    #[arg(long, env = "XNAT_URL")]
    xnat_url: Option<String>,
}

#[derive(clap::Args)]
struct CheckXnatArgs {
    #[command(flatten)]
    inputs: MountedInputs,
    /// The user to look up (default: a member of --project, or of one of the first projects
    /// XNAT lists).
    #[arg(long)]
    user: Option<String>,
    /// The project whose archive_spec and accessibility are asked (default: the first the
    /// user may read).
    #[arg(long)]
    project: Option<String>,
    /// An experiment to ask about when launches are on (default: an id no XNAT has, whose 404
    /// still proves the media type).
    #[arg(long)]
    experiment: Option<String>,
}

#[derive(clap::Args)]
struct ReviewArgs {
    /// The policy YAML to try.
    #[arg(long)]
    policy: PathBuf,
    /// Ask a real XNAT (with --xnat-credentials) instead of a fixed access table.
    #[arg(long, requires = "xnat_credentials", conflicts_with = "access")]
    xnat_url: Option<String>,
    /// XNAT service credentials (a file `username:password` or a Secret directory).
    #[arg(long, requires = "xnat_url")]
    xnat_credentials: Option<PathBuf>,
    /// What a user may read: USER=PROJ[:role],PROJ… (repeatable). Users not listed are unknown
    /// to XNAT.
    #[arg(long)]
    access: Vec<String>,
    /// A stored launch context (JSON, as `GET …/user-options` answers it) for the review's
    /// server; with `userOptions.enabled` it is used as XNAT's plugin stored it.
    #[arg(long, conflicts_with = "xnat_url")]
    user_options: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address and port for HTTPS.
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// PEM certificate chain served to the API server.
    #[arg(long, env = "TLS_CERT", default_value = "/etc/webhook/tls/tls.crt")]
    tls_cert: PathBuf,
    /// PEM private key of that certificate.
    #[arg(long, env = "TLS_KEY", default_value = "/etc/webhook/tls/tls.key")]
    tls_key: PathBuf,
    /// PEM CA bundle the API server trusts (the webhook configuration's caBundle): a serving
    /// certificate it did not issue is refused, at start and on reload. Default: `ca.crt`
    /// beside --tls-cert when it exists (cert-manager's and certs/webhook-certs.sh's Secrets).
    #[arg(long, env = "TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// PEM CA(s) whose client certificates are accepted; every other client is refused at the
    /// TLS handshake. Reloaded when the file changes. Without it, any client is answered.
    #[arg(long, env = "CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// The control plane's addresses (CIDRs or addresses, comma-separated or repeated): their
    /// reviews come first (reserved connections, body bytes and XNAT slots) and, with
    /// --client-ca's verified callers, are the only ones that get Events.
    #[arg(long, env = "CONTROL_PLANE", value_delimiter = ',')]
    control_plane: Vec<ipnet::IpNet>,
    /// Address and port for the exec probes' plain-HTTP /healthz and /readyz (`probe`); keep it
    /// on the loopback address so nothing outside the pod can reach it; `off` for none.
    #[arg(long, env = "PROBE_LISTEN", default_value = "127.0.0.1:8081")]
    probe_listen: OptionalAddr,
    /// Connections the webhook port holds at once: one per review waiting for its answer (the
    /// API server opens one per review), half of them reserved for --control-plane.
    #[arg(long, default_value_t = 3072, value_parser = clap::value_parser!(u32).range(64..=65536))]
    max_connections: u32,
    #[command(flatten)]
    inputs: MountedInputs,
    /// How long in-flight reviews may take to finish after SIGTERM.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Address and port for plain-HTTP /metrics (Prometheus text); `off` for none.
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    metrics_listen: OptionalAddr,
    /// How often the policy and certificate files are re-checked besides file events.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    reload_interval: Duration,
    /// Close a connection with no request in flight for this long (at least 2m: the API server
    /// keeps idle connections for 90s; a new connection must send a request within 10s).
    #[arg(long, default_value = "5m", value_parser = parse_idle)]
    idle_timeout: Duration,
    /// Post Events about notebook pods to the cluster this kubeconfig names (local runs). In a
    /// cluster the webhook's own ServiceAccount is used; elsewhere, without this, no Events.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

/// Events go to the cluster's API server when there is one; a webhook that cannot post them
/// still serves (the users lose the spawn-page messages, which the log says).
async fn attach_events(bound: &serve::Bound, kubeconfig: Option<&std::path::Path>) {
    match jupyter_xnat_webhook::events::client(kubeconfig).await {
        Ok(Some(client)) => {
            let sink = jupyter_xnat_webhook::events::EventSink::start(client, Default::default());
            bound.admission.attach_events(sink);
            tracing::info!("posting Events about notebook pods to the Kubernetes API");
        }
        Ok(None) => tracing::info!(
            "not in a cluster and no --kubeconfig: no Events are posted about notebook pods"
        ),
        Err(error) => tracing::warn!(%error,
            "cannot reach the Kubernetes API: no Events are posted about notebook pods"),
    }
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

/// An address, or `off`.
#[derive(Clone)]
struct OptionalAddr(Option<SocketAddr>);

impl std::str::FromStr for OptionalAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            Ok(Self(None))
        } else {
            s.parse()
                .map(|a| Self(Some(a)))
                .map_err(|e| format!("{s:?}: {e} (or `off`)"))
        }
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        // One readable line (with its causes), not a Debug dump.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `serve`: the webhook, until SIGTERM.
async fn serve(a: Box<ServeArgs>) -> anyhow::Result<()> {
    let config = ServeConfig {
        listen: a.listen,
        tls_cert: a.tls_cert,
        tls_key: a.tls_key,
        tls_ca: a.tls_ca,
        client_ca: a.client_ca,
        policy: a.inputs.policy,
        xnat_credentials: a.inputs.xnat_credentials,
        xnat_url: a.inputs.xnat_url,
        drain: a.drain_timeout,
        metrics_listen: a.metrics_listen.0,
        reload_interval: a.reload_interval,
        idle_timeout: a.idle_timeout,
        control_plane: a.control_plane,
        probe_listen: a.probe_listen.0,
        max_connections: a.max_connections as usize,
    };
    let bound = serve::bind(&config)
        .await
        .context("cannot start the webhook")?;
    attach_events(&bound, a.kubeconfig.as_deref()).await;
    tracing::info!(addr = %bound.local_addr()?, metrics = ?bound.metrics_addr(),
        "serving admission reviews over TLS");
    bound.serve(serve::shutdown_signal(), config.drain).await;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Probe {
            which,
            addr,
            timeout,
        } => {
            let probed = jupyter_xnat_webhook::server::probe::probe(addr, which, timeout).await;
            probed.map_err(|why| anyhow::anyhow!("probe failed: {why}"))
        }
        Command::CheckPolicy { file } => {
            let yaml = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let effective = tools::check_policy(&yaml)
                .with_context(|| format!("{} is not a valid policy", file.display()))?;
            print!("{effective}");
            Ok(())
        }
        Command::PolicySchema => {
            print!("{}", tools::policy_schema());
            Ok(())
        }
        Command::CheckXnat(a) => {
            let overrides = Overrides {
                xnat_url: a.inputs.xnat_url.clone(),
            };
            let policy = Policy::load(&a.inputs.policy, &overrides)?;
            let credentials = CredentialSource::File(a.inputs.xnat_credentials);
            let targets = jupyter_xnat_webhook::xnat::check::CheckTargets {
                user: a.user.as_deref(),
                project: a.project.as_deref(),
                experiment: a.experiment.as_deref(),
            };
            let report =
                jupyter_xnat_webhook::xnat::check::check_xnat(&policy, credentials, targets)
                    .await?;
            print!("{}", report.text);
            if report.problems > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Review(a) => {
            let overrides = Overrides {
                xnat_url: a.xnat_url.clone(),
            };
            let policy = Policy::load(&a.policy, &overrides)?;
            let access = match a.xnat_credentials {
                Some(path) => tools::ReviewAccess::Xnat(CredentialSource::File(path)),
                None => {
                    let launch = match &a.user_options {
                        Some(file) => {
                            let text = std::fs::read(file)
                                .with_context(|| format!("cannot read {}", file.display()))?;
                            Some(serde_json::from_slice(&text).with_context(|| {
                                format!("{} is not a stored launch context", file.display())
                            })?)
                        }
                        None => None,
                    };
                    tools::ReviewAccess::Table(
                        tools::access_table(&a.access, &policy)?,
                        launch.map(Box::new),
                    )
                }
            };
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)
                .context("cannot read the AdmissionReview from stdin")?;
            print!("{}", tools::review(policy, access, &body).await?);
            Ok(())
        }
    }
}
