//! Which Kubernetes API the Events go to: the cluster the webhook runs in, or a kubeconfig
//! named on the command line (local runs). Never a kubeconfig found by chance: `make run` on a
//! laptop must not post to whatever cluster the admin last used.

use std::path::Path;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};

/// A client for `kubeconfig`, or for the cluster this process runs in; `None` outside a cluster
/// without a kubeconfig. `Err` says why a client could not be built.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Option<kube::Client>, String> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            Config::incluster().map_err(|e| format!("in-cluster Kubernetes config: {e}"))?
        }
        None => return Ok(None),
    };
    kube::Client::try_from(config)
        .map(Some)
        .map_err(|e| format!("Kubernetes client: {e}"))
}
