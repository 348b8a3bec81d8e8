//! Admin tools in the same binary: see what a policy means (`check-policy`), what it will do to
//! a real pod (`review`, through the very decision code the server runs), and the policy's JSON
//! Schema for editors (`policy-schema`).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine;
use serde_json::Value;

use crate::access::UserAccess;
use crate::admission::{AccessSource, Admission, Caller};
use crate::launch::UserOptions;
use crate::names::is_secret_name;
use crate::policy::{Overrides, Policy, PolicyError, PolicyFile};
use crate::serve::MountedInputs;
use crate::xnat::CredentialSource;
use crate::xnat::check::{CheckReport, CheckTargets};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Review(#[from] crate::review::ReviewError),
    #[error(transparent)]
    Xnat(#[from] crate::xnat::XnatError),
}

// === The commands, as `main` calls them: flags in, text out ===

/// `check-policy FILE`: the effective policy, or why the file is not one.
pub fn check_policy_file(file: &Path) -> anyhow::Result<String> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    check_policy(&yaml).with_context(|| format!("{} is not a valid policy", file.display()))
}

/// `review`'s flags.
#[derive(clap::Args)]
pub struct ReviewArgs {
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
    /// Replaces the policy's pods.requesters (comma-separated usernames), as `serve` does: the
    /// Deployment sets it from the hub's namespace and service account.
    #[arg(
        long,
        env = "PODS_REQUESTERS",
        value_delimiter = ',',
        value_name = "USERNAMES"
    )]
    pods_requesters: Vec<String>,
}

/// `review`: the AdmissionReview on stdin through the decision, described.
pub async fn review_command(a: ReviewArgs) -> anyhow::Result<String> {
    let overrides = Overrides {
        xnat_url: a.xnat_url.clone(),
        pods_requesters: Overrides::requesters(&a.pods_requesters),
    };
    let policy = Policy::load(&a.policy, &overrides)?;
    let access = match a.xnat_credentials {
        Some(path) => ReviewAccess::Xnat(CredentialSource::File(path)),
        None => {
            let launch = match &a.user_options {
                Some(file) => Some(Box::new(read_stored_options(file)?)),
                None => None,
            };
            ReviewAccess::Table(access_table(&a.access, &policy)?, launch)
        }
    };
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)
        .context("cannot read the AdmissionReview from stdin")?;
    Ok(review(policy, access, &body).await?)
}

fn read_stored_options(file: &Path) -> anyhow::Result<UserOptions> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a stored launch context", file.display()))
}

/// `check-xnat`'s flags.
#[derive(clap::Args)]
pub struct CheckXnatArgs {
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

/// `check-xnat`: every call a spawn makes, made once with real ids.
pub async fn check_xnat(a: CheckXnatArgs) -> anyhow::Result<CheckReport> {
    let policy = Policy::load(&a.inputs.policy, &a.inputs.overrides())?;
    let credentials = CredentialSource::File(a.inputs.xnat_credentials);
    let targets = CheckTargets {
        user: a.user.as_deref(),
        project: a.project.as_deref(),
        experiment: a.experiment.as_deref(),
    };
    Ok(crate::xnat::check::check_xnat(&policy, credentials, targets).await?)
}

// === The pieces, as tests call them ===

/// Validates a policy document and returns its effective values (defaults filled) as YAML.
pub fn check_policy(yaml: &str) -> Result<String, ToolError> {
    let file = PolicyFile::parse(yaml)?;
    Policy::from_file(file.clone())?;
    serde_yaml_ng::to_string(&file).map_err(|e| ToolError::Input(e.to_string()))
}

/// The JSON Schema of the policy document, generated from the types that parse it.
pub fn policy_schema() -> String {
    let schema = schemars::schema_for!(PolicyFile);
    let mut out = serde_json::to_string_pretty(&schema).unwrap_or_default();
    out.push('\n');
    out
}

/// Parses `--access USER=PROJ[:role],PROJ…` into a fixed access table. A project without a
/// role gets the policy's first role, i.e. "the user can read it".
pub fn access_table(
    entries: &[String],
    policy: &Policy,
) -> Result<HashMap<String, Arc<UserAccess>>, ToolError> {
    let default_role = policy.xnat.roles.first().cloned().unwrap_or_default();
    let mut table = HashMap::new();
    for entry in entries {
        let (user, projects) = entry.split_once('=').ok_or_else(|| {
            ToolError::Input(format!("--access {entry:?}: expected USER=PROJ,PROJ"))
        })?;
        let groups: Vec<String> = projects
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once(':') {
                Some((project, role)) => format!("{project}_{role}"),
                None => format!("{p}_{default_role}"),
            })
            .collect();
        table.insert(
            user.to_owned(),
            Arc::new(UserAccess::from_group_ids(&groups)),
        );
    }
    Ok(table)
}

/// Where `review` gets access from.
pub enum ReviewAccess {
    /// A fixed table, and the launch context every server has (as XNAT's GET answers it).
    Table(HashMap<String, Arc<UserAccess>>, Option<Box<UserOptions>>),
    Xnat(CredentialSource),
}

/// Runs one AdmissionReview through the server's decision code and describes the result: the
/// AdmissionResponse, the decoded patch, and the pod after the patch.
pub async fn review(
    policy: Policy,
    access: ReviewAccess,
    body: &[u8],
) -> Result<String, ToolError> {
    let policy_env: HashSet<String> = policy
        .env
        .iter()
        .chain(policy.user_options.env.iter())
        .chain(policy.rules.iter().flat_map(|r| r.env.iter()))
        .map(|v| v.name.clone())
        .collect();
    let admission = match access {
        ReviewAccess::Table(t, launch) => {
            let source = AccessSource::Static(Arc::new(t), launch.map(|l| Arc::new(*l)));
            Admission::new(policy, source, None)
        }
        ReviewAccess::Xnat(credentials) => {
            let source = AccessSource::xnat(&policy, credentials.clone(), Arc::default())?;
            Admission::new(policy, source, Some(credentials))
        }
    };
    let response = admission.review(body, &Caller::offline()).await?;
    admission.close().await;
    let response: Value =
        serde_json::from_slice(&response).map_err(|e| ToolError::Input(e.to_string()))?;
    let request: Value =
        serde_json::from_slice(body).map_err(|e| ToolError::Input(e.to_string()))?;
    describe(&response, &request, &policy_env)
}

/// The response (its base64 patch elided), the decoded patch and the pod after it, with every
/// env value that may be secret redacted.
fn describe(
    response: &Value,
    request: &Value,
    policy_env: &HashSet<String>,
) -> Result<String, ToolError> {
    let patch = response["response"]["patch"]
        .as_str()
        .map(|p| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| ToolError::Input(e.to_string()))?;
            serde_json::from_slice::<json_patch::Patch>(&bytes)
                .map_err(|e| ToolError::Input(e.to_string()))
        })
        .transpose()?;
    let patch_json = serde_json::to_value(&patch).unwrap_or_default();
    let redactor = Redactor::new(&patch_json, policy_env);
    let pretty = |v: &Value| serde_json::to_string_pretty(&redactor.apply(v)).unwrap_or_default();
    let mut out = String::new();
    // The patch is shown decoded below; its base64 would only repeat it (secrets included).
    let mut shown = response.clone();
    if shown["response"]["patch"].is_string() {
        shown["response"]["patch"] = Value::String("<base64 of the patch below>".into());
    }
    let _ = writeln!(out, "# AdmissionResponse\n{}", pretty(&shown));
    match patch {
        None => {
            let _ = writeln!(out, "\n# Patch\nnone: the pod is admitted unchanged");
        }
        Some(patch) => {
            let _ = writeln!(out, "\n# Patch (decoded)\n{}", pretty(&patch_json));
            let mut pod = request["request"]["object"].clone();
            json_patch::patch(&mut pod, &patch)
                .map_err(|e| ToolError::Input(format!("the patch does not apply: {e}")))?;
            let _ = writeln!(out, "\n# Pod after the patch\n{}", pretty(&pod));
        }
    }
    Ok(out)
}

/// Which env values `review` hides: every variable the patch adds that the policy does not set
/// (a launch context's, which can carry the user's alias token), and every name
/// [`is_secret_name`] says is a secret.
struct Redactor {
    launch_env: HashSet<String>,
}

impl Redactor {
    fn new(patch: &Value, policy_env: &HashSet<String>) -> Self {
        let mut launch_env = HashSet::new();
        for op in patch.as_array().into_iter().flatten() {
            if !op["path"].as_str().is_some_and(|p| p.contains("/env")) {
                continue;
            }
            let vars: Vec<&Value> = match &op["value"] {
                Value::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            for name in vars.iter().filter_map(|v| v["name"].as_str()) {
                if !policy_env.contains(name) {
                    launch_env.insert(name.to_owned());
                }
            }
        }
        Self { launch_env }
    }

    fn is_secret(&self, name: &str) -> bool {
        self.launch_env.contains(name) || is_secret_name(name)
    }

    fn apply(&self, v: &Value) -> Value {
        let mut v = v.clone();
        self.walk(&mut v);
        v
    }

    fn walk(&self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                let secret = map
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| self.is_secret(n));
                if secret && let Some(value) = map.get_mut("value") {
                    *value = Value::String("<redacted>".into());
                }
                map.values_mut().for_each(|v| self.walk(v));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_names_by_their_words() {
        let r = Redactor {
            launch_env: HashSet::from(["PLAIN".to_owned()]),
        };
        for secret in [
            "XNAT_PASS",
            "XNAT_ALIAS",
            "MY_API_KEY",
            "apiKey",
            "JUPYTERHUB_API_TOKEN",
            "db.password",
            "PLAIN",
        ] {
            assert!(r.is_secret(secret), "{secret}");
        }
        for shown in [
            "XNAT_HOST",
            "JUPYTERHUB_OAUTH_SCOPES",
            "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED",
            "KEYBOARD",
            "MONKEY",
        ] {
            assert!(!r.is_secret(shown), "{shown}");
        }
    }
}
