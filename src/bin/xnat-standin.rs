//! `xnat-standin`: a local XNAT stand-in with demo users, for `make run` and for poking at the
//! webhook without a real XNAT. Not for production.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use jupyter_xnat_webhook::xnat::Credentials;
use jupyter_xnat_webhook::xnat_standin::Standin;

#[derive(Parser)]
#[command(about = "Local XNAT stand-in with demo users (alice, Bob.Smith@uni.edu.au, carol, erin)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// XNAT's context path.
    #[arg(long, default_value = "/xnat")]
    context_path: String,
    /// The service credentials it accepts (same file the webhook reads).
    #[arg(long)]
    credentials: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    jupyter_xnat_webhook::telemetry::init(jupyter_xnat_webhook::telemetry::LogFormat::Text);
    let creds = Credentials::load(&args.credentials).context("stand-in credentials")?;
    let standin = Standin::demo(creds.username(), creds.password());
    let (base, task) = standin
        .spawn(args.listen, &args.context_path)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(%base, "XNAT stand-in serving demo users");
    task.await?;
    Ok(())
}
