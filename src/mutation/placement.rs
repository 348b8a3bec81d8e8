//! Applier for node placement: the launch context's node selector entries the pod does not
//! have (the pod's own value of a key wins, with a warning when it differs), and its node
//! affinity expressions merged into the pod's required node affinity — added to every term the
//! pod has, since terms are alternatives and ours must hold in each — never replacing it.

use serde_json::{Map, Value, json};

use super::launch::NodeExpression;
use super::patch::{At, PodPatch};
use crate::pod::PodView;
use crate::warning::Warnings;

pub fn apply(
    planned: &[(String, String)],
    affinity: &[NodeExpression],
    pod: &PodView<'_>,
    patch: &mut PodPatch,
    warnings: &mut Warnings,
) {
    node_selector(planned, pod, patch, warnings);
    if !affinity.is_empty() {
        node_affinity(affinity, pod, patch);
    }
}

fn node_selector(
    planned: &[(String, String)],
    pod: &PodView<'_>,
    patch: &mut PodPatch,
    warnings: &mut Warnings,
) {
    let have = pod.spec.node_selector.as_ref();
    let mut add = Map::new();
    for (k, v) in planned {
        match have.and_then(|h| h.get(k.as_str())) {
            Some(existing) if existing == v => {}
            Some(existing) => warnings.push(format_args!(
                "the pod already selects {k}={existing}; launch constraint {k}=={v} ignored"
            )),
            None => {
                add.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    patch.insert(At::spec().join("nodeSelector"), have.is_some(), add);
}

fn node_affinity(exprs: &[NodeExpression], pod: &PodView<'_>, patch: &mut PodPatch) {
    let ours: Vec<Value> = exprs
        .iter()
        .map(|e| json!({"key": e.key, "operator": e.operator, "values": e.values}))
        .collect();
    // Malformed affinity JSON cannot reach here: the API server decoded the pod.
    let parsed: Option<Value> = pod
        .spec
        .affinity
        .and_then(|raw| serde_json::from_str(raw.get()).ok());
    let affinity = parsed.as_ref();
    let node = affinity.and_then(|a| a.get("nodeAffinity"));
    let required = node.and_then(|n| n.get("requiredDuringSchedulingIgnoredDuringExecution"));
    let terms = required
        .and_then(|r| r.get("nodeSelectorTerms"))
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty());
    let Some(terms) = terms else {
        let whole = json!({"nodeSelectorTerms": [{"matchExpressions": ours}]});
        let at = At::spec().join("affinity");
        match (affinity, node, required) {
            (None, ..) => patch.add(
                at,
                json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": whole}}),
            ),
            (Some(_), None, _) => patch.add(
                at.join("nodeAffinity"),
                json!({"requiredDuringSchedulingIgnoredDuringExecution": whole}),
            ),
            (Some(_), Some(_), _) => patch.set(
                at.join("nodeAffinity")
                    .join("requiredDuringSchedulingIgnoredDuringExecution"),
                required.is_some(),
                whole,
            ),
        }
        return;
    };
    for (i, term) in terms.iter().enumerate() {
        let have = term.get("matchExpressions").and_then(Value::as_array);
        let missing: Vec<Value> = ours
            .iter()
            .filter(|e| !have.is_some_and(|h| h.contains(e)))
            .cloned()
            .collect();
        let at = At::spec()
            .join("affinity")
            .join("nodeAffinity")
            .join("requiredDuringSchedulingIgnoredDuringExecution")
            .join("nodeSelectorTerms")
            .join(&i.to_string())
            .join("matchExpressions");
        patch.append(at, have.is_some(), missing);
    }
}
