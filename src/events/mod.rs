//! Kubernetes Events about notebook pods: what the webhook attached, what it left out and why.
//! KubeSpawner's spawn page shows every Event whose `involvedObject` is a Pod of the notebook's
//! name (`KubeSpawner.events` and `progress` in kubespawner/spawner.py), so this is where a
//! student learns that a notebook started without data.
//!
//! [`PodEvent`] (pure) words the Event for one review; [`EventSink`] posts it off the admission
//! path: a bounded queue, one worker, a rate limit and deduplication, every drop counted.

mod connect;
mod sink;

pub use connect::client;
pub use sink::{EventSink, SinkSettings};

use crate::access::AccessOutcome;
use crate::mutation::{Decision, MAX_LISTED_PROJECTS};
use crate::warning::PREFIX;

/// The longest message sent: the API server keeps longer ones, but a spawn page line should stay
/// readable (events.k8s.io/v1 caps `note` at 1 KB).
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// One Event about one pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodEvent {
    pub namespace: String,
    pub pod: String,
    /// The admission request it is about (`request.uid`): only the same request (a webhook
    /// call repeated as it was) is counted into an Event already posted. A spawn retried under
    /// the same pod name is a new request and gets an Event of its own, which KubeSpawner shows:
    /// its spawn page skips every Event up to the newest one it saw before the spawn, so a count
    /// added to an old one would not show. (A reinvocation for a pod the webhook already
    /// annotated posts none: the admission pipeline sees to that.)
    pub attempt: String,
    /// `Warning` when something was left out, refused or not known; else `Normal`.
    pub warning: bool,
    /// CamelCase, as Kubernetes reasons are.
    pub reason: &'static str,
    pub message: String,
}

impl PodEvent {
    /// The Event for a notebook pod the webhook decided on.
    pub fn decided(
        (namespace, pod): (&str, &str),
        decision: &Decision,
        access: &AccessOutcome,
        launch: bool,
        xnat_user: &str,
    ) -> Self {
        let (reason, warning, message) = match decision {
            Decision::Deny { message } => ("XnatDenied", true, message.clone()),
            Decision::Allow {
                warnings, projects, ..
            } => {
                let reason = match access {
                    AccessOutcome::Unavailable(_) => "XnatUnavailable",
                    AccessOutcome::Stale { .. } => "XnatStale",
                    AccessOutcome::Known(_) if warnings.is_empty() => "XnatDataAttached",
                    AccessOutcome::Known(_) => "XnatDataLeftOut",
                };
                let headline = headline(projects, launch, xnat_user, warnings.is_empty());
                let notes = warnings.iter().map(|w| sentence(without_prefix(w)));
                let message = headline
                    .into_iter()
                    .chain(notes)
                    .collect::<Vec<_>>()
                    .join(". ");
                (reason, !warnings.is_empty(), message)
            }
        };
        Self {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            attempt: String::new(),
            warning,
            reason,
            message: bounded(message),
        }
    }

    /// The Event for a notebook pod passed unchanged for a reason its user should hear.
    pub fn skipped((namespace, pod): (&str, &str), why: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            attempt: String::new(),
            warning: true,
            reason: "XnatDataNotAttached",
            message: bounded(format!("No XNAT data attached: {why}")),
        }
    }

    /// The same Event, for admission request `uid`.
    pub fn for_attempt(mut self, uid: &str) -> Self {
        self.attempt = uid.to_owned();
        self
    }

    pub fn type_(&self) -> &'static str {
        if self.warning { "Warning" } else { "Normal" }
    }
}

/// What was attached, in a few words; nothing when the warnings say it all (XNAT down).
fn headline(projects: &[String], launch: bool, xnat_user: &str, clean: bool) -> Option<String> {
    let from = if launch {
        "Started from XNAT: attached"
    } else {
        "Attached"
    };
    match projects.len() {
        0 if clean => Some(format!(
            "No XNAT projects attached: XNAT lists none that {xnat_user} may read"
        )),
        0 => None,
        n if n > MAX_LISTED_PROJECTS => Some(format!("{from} {n} XNAT projects")),
        1 => Some(format!("{from} XNAT project {}", projects[0])),
        _ => Some(format!("{from} XNAT projects {}", projects.join(", "))),
    }
}

fn without_prefix(warning: &str) -> &str {
    warning
        .strip_prefix(PREFIX)
        .and_then(|w| w.strip_prefix(": "))
        .unwrap_or(warning)
}

/// A warning as a sentence of the message: its first letter capitalized.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn bounded(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS - 1) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::access::UserAccess;
    use crate::warning::Warnings;

    fn allow(projects: &[&str], warnings: &[&str]) -> Decision {
        let mut w = Warnings::new();
        for text in warnings {
            w.push(text);
        }
        Decision::Allow {
            patch: Vec::new(),
            warnings: w,
            projects: projects.iter().map(|p| p.to_string()).collect(),
            rules: Vec::new(),
        }
    }

    fn known() -> AccessOutcome {
        AccessOutcome::Known(Arc::new(UserAccess::unknown()))
    }

    const AT: (&str, &str) = ("jupyter", "jupyter-alice");

    #[test]
    fn each_outcome_reads_as_a_sentence() {
        let e = PodEvent::decided(
            AT,
            &allow(&["ALPHA", "BETA"], &[]),
            &known(),
            false,
            "alice",
        );
        assert_eq!(
            (e.type_(), e.reason, e.message.as_str()),
            (
                "Normal",
                "XnatDataAttached",
                "Attached XNAT projects ALPHA, BETA"
            )
        );
        let down = AccessOutcome::Unavailable("timeout".into());
        let e = PodEvent::decided(
            AT,
            &allow(
                &[],
                &["XNAT could not be asked (timeout); started without project data"],
            ),
            &down,
            false,
            "alice",
        );
        assert_eq!(
            (e.type_(), e.reason, e.message.as_str()),
            (
                "Warning",
                "XnatUnavailable",
                "XNAT could not be asked (timeout); started without project data"
            )
        );
        let stale = AccessOutcome::Stale {
            access: Arc::new(UserAccess::unknown()),
            age: Duration::from_secs(90),
            error: "timeout".into(),
        };
        let e = PodEvent::decided(
            AT,
            &allow(
                &["ALPHA"],
                &["XNAT could not be asked (timeout); using its answer from 90s ago"],
            ),
            &stale,
            true,
            "alice",
        );
        assert_eq!(e.reason, "XnatStale");
        assert_eq!(
            e.message,
            "Started from XNAT: attached XNAT project ALPHA. \
             XNAT could not be asked (timeout); using its answer from 90s ago"
        );
        let e = PodEvent::decided(AT, &allow(&[], &[]), &known(), false, "alice");
        assert_eq!(
            e.message,
            "No XNAT projects attached: XNAT lists none that alice may read"
        );
    }

    #[test]
    fn messages_are_bounded() {
        let long = "y".repeat(400);
        let e = PodEvent::decided(
            AT,
            &allow(&["A"], &[&long, &long, &long, &long]),
            &known(),
            false,
            "alice",
        );
        assert_eq!(e.message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(e.message.ends_with('…'));
    }
}
