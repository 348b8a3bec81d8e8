//! Applier for the notebook's env: the planned variables the container does not set yet. The
//! pod's own value of a name always wins, with a warning when it differs — including a name an
//! `envFrom` source of the pod may set (its keys are not in the pod, and Kubernetes would let
//! our `env` beat it).

use serde_json::json;

use super::patch::{At, PodPatch};
use super::plan::EnvValue;
use crate::pod::Notebook;
use crate::policy::Values;
use crate::warning::Warnings;

pub fn apply(
    planned: &[(&str, EnvValue<'_>)],
    values: &Values<'_>,
    notebook: Notebook<'_, '_>,
    patch: &mut PodPatch,
    warnings: &mut Warnings,
) {
    let container = notebook.container;
    let existing = container.env.as_deref().unwrap_or_default();
    let sources = container.env_from.as_deref().unwrap_or_default();
    let mut left_to_sources: Vec<Vec<&str>> = vec![Vec::new(); sources.len()];
    let mut to_add = Vec::new();
    for (name, value) in planned {
        let value = value.render(values);
        match existing.iter().find(|e| e.name == *name) {
            Some(e) if e.value.as_deref() == Some(value.as_str()) => {}
            Some(_) => warnings.push(format_args!(
                "the pod already sets env {name}; its value is kept"
            )),
            None => match sources.iter().position(|s| s.may_set(name)) {
                Some(i) => left_to_sources[i].push(name),
                None => to_add.push(json!({ "name": name, "value": value })),
            },
        }
    }
    for (source, names) in sources.iter().zip(&left_to_sources) {
        if !names.is_empty() {
            warnings.push(format_args!(
                "the pod takes env from {}, which may set {}; left to it",
                source.describe(),
                names.join(", ")
            ));
        }
    }
    patch.append(
        At::container(notebook.index).join("env"),
        notebook.container.env.is_some(),
        to_add,
    );
}
