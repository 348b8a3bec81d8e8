//! `jupyter-xnat-webhook`: command-line entry point. Each command's flags are parsed by clap into
//! the library's own config and handed over in one call.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jupyter_xnat_webhook::serve::{self, ServeConfig};
use jupyter_xnat_webhook::server::probe::{self, ProbeArgs};
use jupyter_xnat_webhook::telemetry::{self, LogFormat};
use jupyter_xnat_webhook::tools::{self, CheckXnatArgs, ReviewArgs};

/// `--version`: the Cargo version and the commit built (build.rs), as `xnat_webhook_build_info`.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("JXW_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    version = VERSION,
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
    Serve(Box<ServeConfig>),
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
    Probe(ProbeArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    if let Err(e) = run(cli.command).await {
        // One readable line (with its causes), not a Debug dump.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(config) => serve::run(*config)
            .await
            .context("cannot start the webhook"),
        Command::Probe(a) => probe::run(a)
            .await
            .map_err(|why| anyhow::anyhow!("probe failed: {why}")),
        Command::CheckPolicy { file } => say(tools::check_policy_file(&file)?),
        Command::PolicySchema => say(tools::policy_schema()),
        Command::Review(a) => say(tools::review_command(a).await?),
        Command::CheckXnat(a) => {
            let report = tools::check_xnat(a).await?;
            print!("{}", report.text);
            if report.problems > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// A command's text on stdout.
fn say(text: String) -> anyhow::Result<()> {
    print!("{text}");
    Ok(())
}
