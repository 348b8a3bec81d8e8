//! Applier for the notebook's env: the planned variables the container does not set yet. The
//! pod's own value of a name always wins, with a warning when it differs.

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
    let existing = notebook.container.env.as_deref().unwrap_or_default();
    let mut to_add = Vec::new();
    for (name, value) in planned {
        let value = value.render(values);
        match existing.iter().find(|e| e.name == *name) {
            Some(e) if e.value.as_deref() == Some(value.as_str()) => {}
            Some(_) => warnings.push(format_args!(
                "the pod already sets env {name}; its value is kept"
            )),
            None => to_add.push(json!({ "name": name, "value": value })),
        }
    }
    patch.append(
        At::container(notebook.index).join("env"),
        notebook.container.env.is_some(),
        to_add,
    );
}
