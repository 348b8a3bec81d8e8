//! `jupyter-xnat-webhook`: command-line entry point. Parses flags into plain configs and hands
//! them to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jupyter_xnat_webhook::serve::{self, ServeConfig};
use jupyter_xnat_webhook::telemetry::{self, LogFormat};

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
    Serve(ServeArgs),
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
    /// How long in-flight reviews may take to finish after SIGTERM.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Address and port for plain-HTTP /metrics (Prometheus text); `off` for none.
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:9090", value_parser = parse_listen)]
    metrics_listen: Option<SocketAddr>,
    /// How often the policy and certificate files are re-checked besides file events.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    reload_interval: Duration,
}

fn parse_listen(s: &str) -> Result<Option<SocketAddr>, String> {
    if s == "off" {
        Ok(None)
    } else {
        s.parse().map(Some).map_err(|e| format!("{s:?}: {e}"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(a) => {
            let config = ServeConfig {
                listen: a.listen,
                tls_cert: a.tls_cert,
                tls_key: a.tls_key,
                policy: a.policy,
                xnat_credentials: a.xnat_credentials,
                xnat_url: a.xnat_url,
                drain: a.drain_timeout,
                metrics_listen: a.metrics_listen,
                reload_interval: a.reload_interval,
            };
            let bound = serve::bind(&config)
                .await
                .context("cannot start the webhook")?;
            tracing::info!(addr = %bound.local_addr()?, metrics = ?bound.metrics_addr(),
                "serving admission reviews over TLS");
            bound.serve(serve::shutdown_signal(), config.drain).await;
            Ok(())
        }
    }
}
