//! Admin tools in the same binary: see what a policy means (`check-policy`), what it will do to
//! a real pod (`review`, through the very decision code the server runs), and the policy's JSON
//! Schema for editors (`policy-schema`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine;
use serde_json::Value;

use crate::access::UserAccess;
use crate::admission::{AccessSource, Admission};
use crate::policy::{Policy, PolicyError, PolicyFile};
use crate::xnat::CredentialSource;

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
    Table(HashMap<String, Arc<UserAccess>>),
    Xnat(CredentialSource),
}

/// Runs one AdmissionReview through the server's decision code and describes the result: the
/// AdmissionResponse, the decoded patch, and the pod after the patch.
pub async fn review(
    policy: Policy,
    access: ReviewAccess,
    body: &[u8],
) -> Result<String, ToolError> {
    let admission = match access {
        ReviewAccess::Table(t) => Admission::new(policy, AccessSource::Static(Arc::new(t)), None),
        ReviewAccess::Xnat(credentials) => {
            let source = AccessSource::xnat(&policy, credentials.clone())?;
            Admission::new(policy, source, Some(credentials))
        }
    };
    let response = admission.review(body).await?;
    admission.close().await;
    let response: Value =
        serde_json::from_slice(&response).map_err(|e| ToolError::Input(e.to_string()))?;
    let request: Value =
        serde_json::from_slice(body).map_err(|e| ToolError::Input(e.to_string()))?;

    let mut out = String::new();
    let pretty =
        |v: &Value| serde_json::to_string_pretty(&redact_secrets(v.clone())).unwrap_or_default();
    // The patch is shown decoded below; its base64 would only repeat it (secrets included).
    let mut shown = response.clone();
    if shown["response"]["patch"].is_string() {
        shown["response"]["patch"] = Value::String("<base64 of the patch below>".into());
    }
    let _ = writeln!(out, "# AdmissionResponse\n{}", pretty(&shown));
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
    match patch {
        None => {
            let _ = writeln!(out, "\n# Patch\nnone: the pod is admitted unchanged");
        }
        Some(patch) => {
            let patch_json = serde_json::to_value(&patch).unwrap_or_default();
            let _ = writeln!(out, "\n# Patch (decoded)\n{}", pretty(&patch_json));
            let mut pod = request["request"]["object"].clone();
            json_patch::patch(&mut pod, &patch)
                .map_err(|e| ToolError::Input(format!("the patch does not apply: {e}")))?;
            let _ = writeln!(out, "\n# Pod after the patch\n{}", pretty(&pod));
        }
    }
    Ok(out)
}

/// Env values whose names say they are secrets (`XNAT_PASS` from a launch context, `*TOKEN*`,
/// `*SECRET*`, `*PASSWORD*`) become `<redacted>`: the output is for reading and sharing.
fn redact_secrets(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                let secret = map.get("name").and_then(Value::as_str).is_some_and(|n| {
                    let n = n.to_ascii_uppercase();
                    ["PASS", "TOKEN", "SECRET"].iter().any(|s| n.contains(s))
                });
                if secret && let Some(value) = map.get_mut("value") {
                    *value = Value::String("<redacted>".into());
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}
