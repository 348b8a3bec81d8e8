//! Applier for the notebook's cpu, memory and extended-resource requests and limits. In
//! `fillUnset` mode the pod's values stay and only what it lacks is filled in; in `override`
//! mode the plan's values win. Either way every request stays at or below its limit, so a
//! filled-in value never makes the pod invalid, and quantities compare exactly, so a pod that
//! already has a value in another notation (`700m` for `0.7`) is left alone.

use serde_json::{Map, Value};

use super::patch::{At, PodPatch};
use crate::names::requests_equal_limits;
use crate::pod::{Notebook, StrMap};
use crate::policy::{ResourceMode, ResourceSet};
use crate::quantity::{Amount, Quantity};

/// One request or limit: its text, and its exact value when it reads as a quantity (every
/// value is read once).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Side<'a> {
    text: &'a str,
    amount: Option<Amount>,
}

impl<'a> Side<'a> {
    fn pod(text: &'a str) -> Self {
        Self {
            text,
            amount: Amount::parse(text),
        }
    }

    fn policy(q: &'a Quantity) -> Self {
        Self {
            text: q.as_str(),
            amount: Some(q.value()),
        }
    }

    /// Equal as quantities (`0.7` = `700m`): the API server may write a value in another
    /// notation between two passes over the same pod.
    fn same(&self, other: &Side<'_>) -> bool {
        self.text == other.text || (self.amount.is_some() && self.amount == other.amount)
    }
}

/// Fills in (or, in `override` mode, replaces) requests and limits. Extended resources (GPUs)
/// are set as limits; when the pod has a request for one, it is set equal, as Kubernetes
/// requires.
pub fn apply<'v>(
    want: &ResourceSet,
    mode: ResourceMode,
    notebook: Notebook<'v, '_>,
    patch: &mut PodPatch,
) {
    let have = notebook.container.resources.as_ref();
    let have_limits = have.and_then(|r| r.limits.as_ref());
    let have_requests = have.and_then(|r| r.requests.as_ref());
    let get = |m: Option<&'v StrMap<'_>>, k: &str| -> Option<Side<'v>> {
        m.and_then(|m| m.get(k)).map(|v| Side::pod(v.as_ref()))
    };
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
        let p_lim = want.limits.get(name).map(Side::policy);
        let p_req = if requests_equal_limits(name) {
            pod_req.and(p_lim)
        } else {
            want.requests.get(name).map(Side::policy)
        };
        let (req, lim) = settle(pod_req, pod_lim, p_req, p_lim, mode);
        for (target, pod_value, value, kind) in [
            (&mut new_requests, pod_req, req, "requests"),
            (&mut new_limits, pod_lim, lim, "limits"),
        ] {
            match (pod_value, value) {
                (None, Some(v)) => {
                    target.insert(name.to_owned(), Value::String(v.text.to_owned()));
                }
                (Some(old), Some(v)) if !old.same(&v) => replaced.push((kind, name, v.text)),
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
        patch.insert(at, false, res);
    } else {
        patch.insert(at.clone().join("limits"), have_limits.is_some(), new_limits);
        patch.insert(
            at.clone().join("requests"),
            have_requests.is_some(),
            new_requests,
        );
        for (kind, name, v) in replaced {
            patch.replace(
                at.clone().join(kind).join(name),
                Value::String(v.to_owned()),
            );
        }
    }
}

/// The request and limit a container should end up with for one resource.
///
/// `fillUnset`: the pod's values stay; a filled-in limit is raised to the pod's request, and a
/// filled-in request lowered to the pod's limit. `override`: the policy's values win; the pod's
/// value on the other side is moved to keep request ≤ limit.
fn settle<'a>(
    pod_req: Option<Side<'a>>,
    pod_lim: Option<Side<'a>>,
    policy_req: Option<Side<'a>>,
    policy_lim: Option<Side<'a>>,
    mode: ResourceMode,
) -> (Option<Side<'a>>, Option<Side<'a>>) {
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
    match (req, lim) {
        // A quantity we cannot read is the API server's to reject, not ours to reorder.
        (Some(r), Some(l)) if matches!((r.amount, l.amount), (Some(rv), Some(lv)) if rv > lv) => {
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
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Option<Quantity> {
        Some(Quantity::parse(s).unwrap())
    }

    /// `super::settle` on text: the pod's values as written, the policy's as parsed.
    fn settle(
        pod_req: Option<&str>,
        pod_lim: Option<&str>,
        p_req: &Option<Quantity>,
        p_lim: &Option<Quantity>,
        mode: ResourceMode,
    ) -> (Option<String>, Option<String>) {
        let (req, lim) = super::settle(
            pod_req.map(Side::pod),
            pod_lim.map(Side::pod),
            p_req.as_ref().map(Side::policy),
            p_lim.as_ref().map(Side::policy),
            mode,
        );
        let text = |s: Option<Side<'_>>| s.map(|s| s.text.to_owned());
        (text(req), text(lim))
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
