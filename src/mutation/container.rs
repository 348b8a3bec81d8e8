//! Applier for what a launch context sets on the notebook container itself: the compute
//! environment's image (pulled `IfNotPresent`, as the chart's hook pulls it) and command, and the
//! working directory.
//!
//! The command goes where KubeSpawner puts its `cmd`: the container's `args`, followed by the
//! hub's own arguments (`--ip=…`, `--port=…`, which KubeSpawner appends to a `cmd`), so the
//! image's entrypoint still runs it. A hub that sets no `cmd` sends no args at all; then the
//! arguments KubeSpawner would have appended are `--ip=0.0.0.0 --port={the notebook port}`.

use serde_json::Value;

use super::patch::{At, PodPatch};
use super::plan::ContainerPlan;
use crate::pod::{ContainerView, Notebook};
use crate::warning::Warnings;

/// Env KubeSpawner sets to its image: they follow the image a launch picks.
const IMAGE_ENV: [&str; 2] = ["JUPYTER_IMAGE", "JUPYTER_IMAGE_SPEC"];

pub fn apply(
    plan: &ContainerPlan<'_>,
    notebook: Notebook<'_, '_>,
    patch: &mut PodPatch,
    warnings: &mut Warnings,
) {
    let c = notebook.container;
    let at = || At::container(notebook.index);
    if let Some(image) = plan.image {
        let old = c.image.as_deref();
        if old != Some(image) {
            patch.set(
                at().join("image"),
                old.is_some(),
                Value::String(image.to_owned()),
            );
            for (i, e) in c.env.iter().flatten().enumerate() {
                if IMAGE_ENV.contains(&e.name.as_ref())
                    && old.is_some()
                    && e.value.as_deref() == old
                {
                    let value = at().join("env").join(&i.to_string()).join("value");
                    patch.replace(value, Value::String(image.to_owned()));
                }
            }
        }
        if c.image_pull_policy.as_deref() != Some("IfNotPresent") {
            let exists = c.image_pull_policy.is_some();
            patch.set(at().join("imagePullPolicy"), exists, "IfNotPresent".into());
        }
    }
    if let Some(env) = &c.env {
        for (name, value) in plan.resource_env {
            match env.iter().position(|e| e.name == *name) {
                // An entry with `valueFrom` (no `value`) is the hub's own choice: left alone.
                Some(i) if env[i].value.is_some() && env[i].value.as_deref() != Some(value) => {
                    let at = at().join("env").join(&i.to_string()).join("value");
                    patch.replace(at, Value::String(value.clone()));
                }
                Some(_) => {}
                None => patch.add(
                    at().join("env").join("-"),
                    serde_json::json!({"name": name, "value": value}),
                ),
            }
        }
    }
    if let Some(words) = plan.command
        && let Some(args) = args_for(words, c)
    {
        let args = args.into_iter().map(Value::String).collect();
        patch.set(at().join("args"), c.args.is_some(), Value::Array(args));
    }
    if let Some(dir) = &plan.working_dir {
        match c.working_dir.as_deref() {
            None => patch.add(at().join("workingDir"), Value::String(dir.clone())),
            Some(have) if have == dir => {}
            Some(have) => warnings.push(format_args!(
                "the pod already works in {have:?}; launch working directory {dir:?} ignored"
            )),
        }
    }
}

/// The container's args for the command `words`, or `None` when it has them already.
fn args_for(words: &[String], c: &ContainerView<'_>) -> Option<Vec<String>> {
    let args: Vec<&str> = c.args.iter().flatten().map(AsRef::as_ref).collect();
    if let Some(rest) = args.strip_prefix(
        words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
    ) && rest.first().is_none_or(|a| is_hub_argument(a))
    {
        return None;
    }
    let hub: Vec<String> = match args.iter().position(|a| is_hub_argument(a)) {
        Some(i) => args[i..].iter().map(|a| (*a).to_owned()).collect(),
        None => {
            let port = c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some("notebook-port"))
                .and_then(|p| p.container_port)
                .unwrap_or(8888);
            vec!["--ip=0.0.0.0".to_owned(), format!("--port={port}")]
        }
    };
    Some(words.iter().cloned().chain(hub).collect())
}

/// The first of the arguments JupyterHub's `Spawner.get_args()` appends (`--ip` comes first,
/// then `--port`).
fn is_hub_argument(a: &str) -> bool {
    a.starts_with("--ip=") || a.starts_with("--port=")
}
