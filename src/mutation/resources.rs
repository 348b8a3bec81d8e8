//! Applier for the notebook's cpu, memory and extended-resource requests and limits. In
//! `fillUnset` mode the pod's values stay and only what it lacks is filled in; in `override`
//! mode the plan's values win. Either way every request stays at or below its limit, so a
//! filled-in value never makes the pod invalid, and quantities compare exactly, so a pod that
//! already has a value in another notation (`700m` for `0.7`) is left alone.

use serde_json::{Map, Value};

use super::patch::{At, PodPatch};
use crate::names::is_extended_resource;
use crate::pod::{Notebook, StrMap};
use crate::policy::{ResourceMode, ResourceSet};
use crate::quantity::{Quantity, same_quantity, value_of};

/// Fills in (or, in `override` mode, replaces) requests and limits. Extended resources (GPUs)
/// are set as limits; when the pod has a request for one, it is set equal, as Kubernetes
/// requires.
pub fn apply(
    want: &ResourceSet,
    mode: ResourceMode,
    notebook: Notebook<'_, '_>,
    patch: &mut PodPatch,
) {
    let have = notebook.container.resources.as_ref();
    let have_limits = have.and_then(|r| r.limits.as_ref());
    let have_requests = have.and_then(|r| r.requests.as_ref());
    let get = |m: Option<&StrMap<'_>>, k: &str| m.and_then(|m| m.get(k)).map(|v| v.to_string());
    let mut new_limits = Map::new();
    let mut new_requests = Map::new();
    let mut replaced = Vec::new();

    let mut names: Vec<&String> = want.requests.keys().chain(want.limits.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let name = name.as_str();
        let pod_req = get(have_requests, name);
        let pod_lim = get(have_limits, name);
        let p_lim = want.limits.get(name).cloned();
        let p_req = if is_extended_resource(name) {
            pod_req.as_ref().and(p_lim.clone())
        } else {
            want.requests.get(name).cloned()
        };
        let (req, lim) = settle(pod_req.as_deref(), pod_lim.as_deref(), &p_req, &p_lim, mode);
        for (target, pod_value, value, kind) in [
            (&mut new_requests, &pod_req, req, "requests"),
            (&mut new_limits, &pod_lim, lim, "limits"),
        ] {
            match (pod_value, value) {
                (None, Some(v)) => {
                    target.insert(name.to_owned(), Value::String(v));
                }
                (Some(old), Some(v)) if !same_quantity(old, &v) => replaced.push((kind, name, v)),
                _ => {}
            }
        }
    }

    let at = At::container(notebook.index).join("resources");
    if have.is_none() {
        let mut res = Map::new();
        if !new_limits.is_empty() {
            res.insert("limits".into(), Value::Object(new_limits));
        }
        if !new_requests.is_empty() {
            res.insert("requests".into(), Value::Object(new_requests));
        }
        patch.insert(at.clone(), false, res);
    } else {
        patch.insert(at.join("limits"), have_limits.is_some(), new_limits);
        patch.insert(at.join("requests"), have_requests.is_some(), new_requests);
    }
    for (kind, name, v) in replaced {
        patch.replace(at.join(kind).join(name), Value::String(v));
    }
}

/// The request and limit a container should end up with for one resource.
///
/// `fillUnset`: the pod's values stay; a filled-in limit is raised to the pod's request, and a
/// filled-in request lowered to the pod's limit. `override`: the policy's values win; the pod's
/// value on the other side is moved to keep request ≤ limit.
fn settle(
    pod_req: Option<&str>,
    pod_lim: Option<&str>,
    p_req: &Option<Quantity>,
    p_lim: &Option<Quantity>,
    mode: ResourceMode,
) -> (Option<String>, Option<String>) {
    let policy_req = p_req.as_ref().map(Quantity::as_str);
    let policy_lim = p_lim.as_ref().map(Quantity::as_str);
    let (req, lim, req_from_policy, lim_from_policy) = match mode {
        ResourceMode::FillUnset => (
            pod_req.or(policy_req),
            pod_lim.or(policy_lim),
            pod_req.is_none() && policy_req.is_some(),
            pod_lim.is_none() && policy_lim.is_some(),
        ),
        ResourceMode::Override => (
            policy_req.or(pod_req),
            policy_lim.or(pod_lim),
            policy_req.is_some(),
            policy_lim.is_some(),
        ),
    };
    let (req, lim) = match (req, lim) {
        (Some(r), Some(l)) => match (value_of(r), value_of(l)) {
            // A quantity we cannot read is the API server's to reject, not ours to reorder.
            (Some(rv), Some(lv)) if rv > lv => {
                let raise_limit = match mode {
                    ResourceMode::FillUnset => lim_from_policy,
                    ResourceMode::Override => req_from_policy && !lim_from_policy,
                };
                let lower_request = match mode {
                    ResourceMode::FillUnset => req_from_policy,
                    ResourceMode::Override => lim_from_policy && !req_from_policy,
                };
                if raise_limit {
                    (Some(r), Some(r))
                } else if lower_request {
                    (Some(l), Some(l))
                } else {
                    (Some(r), Some(l))
                }
            }
            _ => (Some(r), Some(l)),
        },
        other => other,
    };
    (req.map(str::to_owned), lim.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Option<Quantity> {
        Some(Quantity::parse(s).unwrap())
    }

    #[test]
    fn fill_unset_keeps_the_pods_values() {
        let s = settle(
            Some("1"),
            Some("2"),
            &q("500m"),
            &q("4"),
            ResourceMode::FillUnset,
        );
        assert_eq!(s, (Some("1".into()), Some("2".into())));
    }

    #[test]
    fn fill_unset_never_puts_a_limit_below_the_pods_request() {
        // Pod asks for 16Gi, policy's default limit is 8Gi: the filled-in limit becomes 16Gi.
        let s = settle(
            Some("16Gi"),
            None,
            &q("1Gi"),
            &q("8Gi"),
            ResourceMode::FillUnset,
        );
        assert_eq!(s, (Some("16Gi".into()), Some("16Gi".into())));
    }

    #[test]
    fn fill_unset_never_puts_a_request_above_the_pods_limit() {
        let s = settle(
            None,
            Some("250m"),
            &q("500m"),
            &q("4"),
            ResourceMode::FillUnset,
        );
        assert_eq!(s, (Some("250m".into()), Some("250m".into())));
    }

    #[test]
    fn override_wins_and_moves_the_pods_other_side() {
        let s = settle(
            Some("16Gi"),
            Some("16Gi"),
            &None,
            &q("8Gi"),
            ResourceMode::Override,
        );
        assert_eq!(s, (Some("8Gi".into()), Some("8Gi".into())));
        let s = settle(Some("1"), Some("1"), &q("2"), &None, ResourceMode::Override);
        assert_eq!(s, (Some("2".into()), Some("2".into())));
        let s = settle(
            Some("1"),
            Some("2"),
            &q("500m"),
            &q("4"),
            ResourceMode::Override,
        );
        assert_eq!(s, (Some("500m".into()), Some("4".into())));
    }
}
