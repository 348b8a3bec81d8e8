//! Applier for the notebook's env: the planned variables the container does not set yet. The
//! pod's own value of a name always wins, with a warning when it differs — including a name an
//! `envFrom` source of the pod may set (its keys are not in the pod, and Kubernetes would let
//! our `env` beat it).

use serde_json::json;

use super::launch::TOKEN_PAIR;
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
    // The token pair is one value: if the pod has (or may have) either half its own way, adding
    // the other would give the notebook an alias with another's secret, or a secret without it.
    let pair_planned = TOKEN_PAIR
        .iter()
        .all(|n| planned.iter().any(|(p, _)| p == n));
    let pair_blocked = pair_planned
        && TOKEN_PAIR.iter().any(|n| {
            let want = planned
                .iter()
                .find(|(p, _)| p == n)
                .map(|(_, v)| v.render(values));
            let pod_differs = existing
                .iter()
                .any(|e| e.name == *n && e.value.as_deref() != want.as_deref());
            pod_differs || sources.iter().any(|s| s.may_set(n))
        });
    if pair_blocked {
        warnings.push(
            "the pod sets (or an envFrom source may set) XNAT_USER or XNAT_PASS its own way: \
             the launch's token pair is not added, so the two stay a pair",
        );
    }
    for (name, value) in planned {
        if pair_blocked && TOKEN_PAIR.contains(name) {
            continue;
        }
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
