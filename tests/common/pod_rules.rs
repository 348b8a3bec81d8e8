//! The Kubernetes rules a patched notebook pod must keep, as the API server checks them
//! (`ValidatePod`): what the webhook could break by adding mounts, env, resources, placement or
//! labels. A list of what is wrong; empty for a pod the API server would take.

use std::collections::BTreeSet;

use jupyter_xnat_webhook::Amount;
use jupyter_xnat_webhook::{is_label_value, is_qualified_name};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

pub fn pod_problems(spec: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let pod: Pod =
        match serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "spec": spec})) {
            Ok(p) => p,
            Err(e) => return vec![format!("not a Pod: {e}")],
        };
    let spec = pod.spec.unwrap_or_default();
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    if volumes.len() != volumes.iter().collect::<BTreeSet<_>>().len() {
        problems.push(format!("volume names repeat: {volumes:?}"));
    }
    for c in &spec.containers {
        container_problems(c, &volumes, &mut problems);
    }
    for (k, v) in spec.node_selector.iter().flatten() {
        if !is_qualified_name(k) || !is_label_value(v) {
            problems.push(format!("nodeSelector {k}={v} is not a label"));
        }
    }
    let required = spec
        .affinity
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution);
    if let Some(r) = required {
        if r.node_selector_terms.is_empty() {
            problems.push("required node affinity without terms".into());
        }
        for e in r
            .node_selector_terms
            .iter()
            .flat_map(|t| t.match_expressions.iter().flatten())
        {
            let values = e.values.as_deref().unwrap_or_default();
            let needs_values = matches!(e.operator.as_str(), "In" | "NotIn");
            if !is_qualified_name(&e.key) || (needs_values && values.is_empty()) {
                problems.push(format!("node affinity expression {e:?}"));
            }
        }
    }
    problems
}

fn container_problems(
    c: &k8s_openapi::api::core::v1::Container,
    volumes: &[&str],
    problems: &mut Vec<String>,
) {
    let mounts: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    if mounts.len() != mounts.iter().collect::<BTreeSet<_>>().len() {
        problems.push(format!("mount paths repeat: {mounts:?}"));
    }
    for m in c.volume_mounts.iter().flatten() {
        if !volumes.contains(&m.name.as_str()) {
            problems.push(format!("mount of a missing volume {}", m.name));
        }
        let sub = m.sub_path.as_deref().unwrap_or_default();
        if sub.starts_with('/') || sub.split('/').any(|s| s == "..") {
            problems.push(format!("subPath {sub:?} is not relative without .."));
        }
        if !m.mount_path.starts_with('/') {
            problems.push(format!("mountPath {:?} is not absolute", m.mount_path));
        }
    }
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    if env.len() != env.iter().collect::<BTreeSet<_>>().len() {
        problems.push(format!("env names repeat: {env:?}"));
    }
    if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        problems.push("no image".into());
    }
    let resources = c.resources.clone().unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    for (name, request) in resources.requests.iter().flatten() {
        let limit = limits.get(name).and_then(|l| Amount::parse(&l.0));
        let r = Amount::parse(&request.0);
        if name.contains('/') && limit != r {
            problems.push(format!(
                "{name}: an extended resource's request must equal its limit"
            ));
        }
        if let (Some(r), Some(l)) = (r, limit)
            && r > l
        {
            problems.push(format!("{name}: request {} above limit", request.0));
        }
    }
}
