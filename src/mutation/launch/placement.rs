//! A launch's placement constraints as Kubernetes means them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{LaunchPlan, NodeExpression};
use crate::names::{is_label_value, is_qualified_name};
use crate::warning::Warnings;

/// One key with one allowed value → nodeSelector (as the hook sets it); several allowed values
/// → one `In`, values ruled out → `NotIn`, in one required affinity term.
pub(super) fn placement(stored: &[Value], out: &mut LaunchPlan, warnings: &mut Warnings) {
    let mut by_key: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for c in stored.iter().take(super::MAX_LIST_ENTRIES) {
        let parsed = c.as_str().and_then(constraint);
        match parsed {
            Some((key, equal, value)) => {
                let (is, not) = by_key.entry(key).or_default();
                let list = if equal { is } else { not };
                if !list.contains(&value) {
                    list.push(value);
                }
            }
            None => warnings.push(format_args!(
                "placement constraint {} is not `label==value` or `label!=value` of a node \
                 label; ignored",
                crate::echo::echo(&c.to_string())
            )),
        }
    }
    for (key, (is, not)) in by_key {
        if let ([value], []) = (is.as_slice(), not.as_slice()) {
            out.node_selector.push((key, value.clone()));
            continue;
        }
        if !is.is_empty() {
            out.node_affinity.push(NodeExpression {
                key: key.clone(),
                operator: "In",
                values: is,
            });
        }
        if !not.is_empty() {
            out.node_affinity.push(NodeExpression {
                key,
                operator: "NotIn",
                values: not,
            });
        }
    }
}

/// `key==value` or `key!=value`, a Docker Swarm key mapped: `node.labels.key` is the label,
/// `node.hostname`/`node.platform.os`/`node.platform.arch` the well-known labels; other `node.*`
/// and `engine.*` attributes (role, id) have no Kubernetes label and are refused.
pub(super) fn constraint(c: &str) -> Option<(String, bool, String)> {
    let (k, equal, v) = match c.split_once("==") {
        Some((k, v)) => (k, true, v),
        None => {
            let (k, v) = c.split_once("!=")?;
            (k, false, v)
        }
    };
    let k = k.trim();
    let k = match k {
        "node.hostname" => "kubernetes.io/hostname",
        "node.platform.os" => "kubernetes.io/os",
        "node.platform.arch" => "kubernetes.io/arch",
        _ => match k.strip_prefix("node.labels.") {
            Some(label) => label,
            None if k.starts_with("node.") || k.starts_with("engine.") => return None,
            None => k,
        },
    };
    let v = v.trim();
    (is_qualified_name(k) && is_label_value(v)).then(|| (k.to_owned(), equal, v.to_owned()))
}
