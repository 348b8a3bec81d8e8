//! The pod's status annotation: what the webhook did to this pod and why, as compact JSON, so
//! `kubectl get pod … -o jsonpath` shows at a glance what a notebook got (as Istio's
//! `sidecar.istio.io/status` does for its injection).
//!
//! Added by the same patch, to every pod the webhook changes. A second pass
//! (`reinvocationPolicy: IfNeeded`) that changes nothing keeps the annotation the first pass
//! wrote: the pod is what that pass made it.

use serde::Serialize;
use serde_json::{Map, Value};

use super::Decision;
use super::patch::{At, PodPatch};
use crate::access::AccessOutcome;
use crate::access::CacheStatus;
use crate::pod::PodMeta;
use crate::warning::PREFIX;

/// The annotation's key.
pub const STATUS_ANNOTATION: &str = "jupyter-xnat-webhook/status";

/// Up to this many projects are listed by name; past it, only counted.
pub const MAX_LISTED_PROJECTS: usize = 20;
/// The annotation keeps at most this many warnings, each at most this many characters; the
/// Event and the webhook's log have them all.
const MAX_NOTES: usize = 10;
const MAX_NOTE_CHARS: usize = 200;

/// What the annotation says.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// The policy's content hash (as in `/readyz` and `xnat_webhook_policy_info`).
    pub policy: String,
    /// `projects` (the user's project list) or `launch` (a launch context from XNAT's UI).
    pub mode: &'static str,
    pub project_count: usize,
    /// The projects, when at most [`MAX_LISTED_PROJECTS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<String>>,
    pub xnat: XnatState,
    /// What was left out or refused, and why: the review's warnings, without their prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Where the user's project list came from.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct XnatState {
    /// The XNAT login the pod's data is for (the hub name as mapped; the login XNAT has in
    /// another case, when it has the name only so).
    pub user: String,
    /// `cached`, `indexed` (from the access index), `asked` (this review asked XNAT), `stale` (XNAT failed; an older answer stood
    /// in) or `unavailable` (XNAT failed; nothing stood in).
    pub answer: &'static str,
    /// How old a stale answer was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl XnatState {
    pub fn of(xnat_user: &str, access: &AccessOutcome, cache: CacheStatus) -> Self {
        let (answer, age_seconds, error) = match access {
            AccessOutcome::Known(_) if cache == CacheStatus::Miss => ("asked", None, None),
            AccessOutcome::Known(_) if cache == CacheStatus::Indexed => ("indexed", None, None),
            AccessOutcome::Known(_) => ("cached", None, None),
            AccessOutcome::Stale { age, error, .. } => {
                ("stale", Some(age.as_secs()), Some(error.clone()))
            }
            AccessOutcome::Unavailable(error) => ("unavailable", None, Some(error.clone())),
        };
        Self {
            user: xnat_user.to_owned(),
            answer,
            age_seconds,
            error,
        }
    }
}

impl PodStatus {
    /// The status of an allowed decision; `None` for a denial (no pod is made).
    pub fn of(decision: &Decision, policy: &str, launch: bool, xnat: XnatState) -> Option<Self> {
        let Decision::Allow {
            warnings, projects, ..
        } = decision
        else {
            return None;
        };
        Some(Self {
            policy: policy.to_owned(),
            mode: if launch { "launch" } else { "projects" },
            project_count: projects.len(),
            projects: (projects.len() <= MAX_LISTED_PROJECTS).then(|| projects.clone()),
            xnat,
            warnings: warnings.iter().take(MAX_NOTES).map(|w| note(w)).collect(),
        })
    }
}

/// A warning as the annotation keeps it: without the prefix, bounded.
fn note(warning: &str) -> String {
    let text = warning
        .strip_prefix(PREFIX)
        .and_then(|w| w.strip_prefix(": "))
        .unwrap_or(warning);
    match text.char_indices().nth(MAX_NOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Adds the status annotation to the patch of a pod the decision changes, unless the pod has
/// that very annotation already. A pod left unchanged stays unchanged (a second pass, a spec
/// the webhook cannot read); its Event and the log say why.
pub fn stamp(decision: &mut Decision, meta: &PodMeta<'_>, status: &PodStatus) {
    let Decision::Allow { patch, .. } = decision else {
        return;
    };
    if patch.is_empty() {
        return;
    }
    let existing = meta.annotation(STATUS_ANNOTATION);
    // Serializing strings and numbers cannot fail.
    let json = serde_json::to_string(status).unwrap_or_default();
    if existing == Some(json.as_str()) {
        return;
    }
    let mut ops = PodPatch::new();
    ops.insert(
        At::metadata().join("annotations"),
        meta.annotations.is_some(),
        Map::from_iter([(STATUS_ANNOTATION.to_owned(), Value::String(json))]),
    );
    patch.extend(ops.into_ops());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warning::Warnings;

    fn allow(projects: usize, warnings: usize) -> Decision {
        let mut w = Warnings::new();
        for i in 0..warnings {
            w.push(format_args!("left out {i}: {}", "x".repeat(300)));
        }
        Decision::Allow {
            patch: Vec::new(),
            warnings: w,
            projects: (0..projects).map(|i| format!("P{i}")).collect(),
            rules: Vec::new(),
        }
    }

    fn cached() -> XnatState {
        XnatState {
            user: "alice".into(),
            answer: "cached",
            age_seconds: None,
            error: None,
        }
    }

    #[test]
    fn projects_are_listed_up_to_a_size_then_counted() {
        let few = PodStatus::of(&allow(2, 0), "v1", false, cached()).unwrap();
        assert_eq!(
            serde_json::to_string(&few).unwrap(),
            r#"{"policy":"v1","mode":"projects","projectCount":2,"projects":["P0","P1"],"xnat":{"user":"alice","answer":"cached"}}"#
        );
        let many = PodStatus::of(&allow(MAX_LISTED_PROJECTS + 1, 0), "v1", true, cached()).unwrap();
        assert_eq!(many.projects, None);
        assert_eq!(many.project_count, MAX_LISTED_PROJECTS + 1);
        assert_eq!(many.mode, "launch");
    }

    #[test]
    fn warnings_lose_their_prefix_and_are_bounded() {
        let s = PodStatus::of(&allow(0, 40), "v1", false, cached()).unwrap();
        assert_eq!(s.warnings.len(), MAX_NOTES);
        assert!(s.warnings[0].starts_with("left out 0: xxx"));
        assert!(
            s.warnings
                .iter()
                .all(|w| w.chars().count() == MAX_NOTE_CHARS + 1)
        );
    }

    #[test]
    fn a_denial_has_no_status() {
        let deny = Decision::Deny {
            message: "no".into(),
        };
        assert_eq!(PodStatus::of(&deny, "v1", false, cached()), None);
    }
}
