//! Audit mode and redaction: say what would have happened — in a warning and in audit
//! annotations, which the API server records in its audit log — and change nothing; and never
//! let a logged patch show env values (a launch context can carry the user's alias token).

use serde_json::Value;

use crate::mutation::Decision;
use crate::review::Answer;

/// The answer in audit mode: no patch, the would-be outcome reported.
pub fn audit_answer(decision: Decision) -> Answer {
    match decision {
        Decision::Allow {
            patch,
            mut warnings,
            projects,
            ..
        } => {
            warnings.lead_with_audit(format_args!(
                "would mount {} project(s) [{}] with {} patch operation(s); nothing changed",
                projects.len(),
                projects.join(", "),
                patch.len()
            ));
            Answer::Allow {
                patch: Vec::new(),
                warnings: warnings.into_vec(),
                audit: vec![
                    ("would-mount", projects.join(",")),
                    ("would-patch-operations", patch.len().to_string()),
                ],
            }
        }
        Decision::Deny { message } => {
            let mut warnings = crate::warning::Warnings::new();
            warnings.push_audit(format_args!("would deny this pod: {message}"));
            Answer::Allow {
                patch: Vec::new(),
                warnings: warnings.into_vec(),
                audit: vec![("would-deny", message)],
            }
        }
    }
}

/// The patch as JSON with every env value hidden.
pub fn redacted(patch: &[json_patch::PatchOperation]) -> String {
    let mut value = serde_json::to_value(patch).unwrap_or_default();
    for op in value.as_array_mut().into_iter().flatten() {
        let is_env = op["path"].as_str().is_some_and(|p| p.contains("/env"));
        if !is_env {
            continue;
        }
        let vars: Vec<&mut Value> = match &mut op["value"] {
            Value::Array(a) => a.iter_mut().collect(),
            v => vec![v],
        };
        for var in vars {
            if let Some(v) = var.get_mut("value") {
                *v = Value::String("<redacted>".into());
            }
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_values_never_reach_the_log() {
        let patch: Vec<json_patch::PatchOperation> = serde_json::from_value(json!([
            {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "XNAT_PASS", "value": "s3cret"}},
            {"op": "add", "path": "/spec/containers/1/env", "value": [{"name": "T", "value": "tok"}]},
        ]))
        .unwrap();
        let shown = redacted(&patch);
        assert!(
            !shown.contains("s3cret") && !shown.contains("tok"),
            "{shown}"
        );
        assert!(shown.contains("XNAT_PASS"), "{shown}");
    }
}
