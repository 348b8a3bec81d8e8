//! `xnat-standin`: a local XNAT stand-in with demo users, for `make run` and for poking at the
//! webhook without a real XNAT. Not for production.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use xnat_standin::Standin;

#[derive(Parser)]
#[command(about = "Local XNAT stand-in with demo users (alice, Bob.Smith@uni.edu.au, carol, erin)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// XNAT's context path.
    #[arg(long, default_value = "/xnat")]
    context_path: String,
    /// The service credentials it accepts: a file with one line `username:password` (the file
    /// the webhook reads).
    #[arg(long)]
    credentials: PathBuf,
    /// The service account's site roles (comma-separated; `JupyterHub` alone is the plugin's
    /// own account, which `check-xnat` should refuse).
    #[arg(long, value_delimiter = ',', default_value = "Administrator")]
    roles: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let text = std::fs::read_to_string(&args.credentials)
        .with_context(|| format!("cannot read {}", args.credentials.display()))?;
    let (user, password) = text
        .trim_end_matches(['\n', '\r'])
        .split_once(':')
        .context("the credentials file must hold one line `username:password`")?;
    let standin = Standin::demo(user, password);
    let roles: Vec<&str> = args.roles.iter().map(String::as_str).collect();
    standin.set_roles(user, &roles);
    let (base, task) = standin
        .spawn(args.listen, &args.context_path)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(%base, "XNAT stand-in serving demo users");
    task.await?;
    Ok(())
}
