//! Applier for the pod labels a launch context may add (only when the policy lets it): labels
//! the pod does not have. The pod's own value of a key wins, with a warning when it differs.

use serde_json::{Map, Value};

use super::patch::{At, PodPatch};
use crate::pod::PodView;
use crate::warning::Warnings;

pub fn apply(
    planned: &[(String, String)],
    pod: &PodView<'_>,
    patch: &mut PodPatch,
    warnings: &mut Warnings,
) {
    let have = pod.meta.labels.as_ref();
    let mut add = Map::new();
    for (k, v) in planned {
        match have.and_then(|h| h.get(k.as_str())) {
            Some(existing) if existing == v => {}
            Some(existing) => warnings.push(format_args!(
                "the pod already has label {k}={existing}; launch label {k}={v} ignored"
            )),
            None => {
                add.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    patch.insert(At::metadata().join("labels"), have.is_some(), add);
}
