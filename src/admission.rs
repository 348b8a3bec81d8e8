//! One review, end to end: parse → classify → map the username → ask XNAT (cached) → decide →
//! answer, with one structured log line. The only I/O here is the XNAT lookup.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::access::AccessOutcome;
use crate::classify::{SkipReason, Target, classify};
use crate::identity::{is_acceptable_username, is_safe_segment};
use crate::launch::UserOptions;
use crate::mutation::{Context, Decision, Identity, decide};
use crate::policy::{OnError, Policy};
use crate::review::{self, Answer, Review, ReviewError};
use crate::xnat::AccessCache;

/// The webhook's state: the current policy and the cached XNAT client.
pub struct Admission {
    policy: ArcSwap<Policy>,
    access: AccessCache,
}

impl Admission {
    pub fn new(policy: Policy, access: AccessCache) -> Self {
        Self {
            policy: ArcSwap::from_pointee(policy),
            access,
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Ends the XNAT session; called once the server has drained.
    pub async fn close(&self) {
        self.access.client().close().await;
    }

    /// Answers one AdmissionReview body with the response body. `Err` only for a body that is
    /// not a review; a denial is an answer.
    pub async fn review(&self, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
        let started = Instant::now();
        let review = review::parse(body)?;
        let policy = self.policy.load_full();
        let answer = match classify(&review, &policy.pods) {
            Ok(target) => self.admit(&review, &target, &policy, started).await,
            Err(reason) => {
                log_skip(&review, reason, started);
                Answer::Allow {
                    patch: Vec::new(),
                    warnings: reason.warning().map(String::from).into_iter().collect(),
                }
            }
        };
        let req = &review.request;
        Ok(review::response_json(
            &review.api_version,
            &req.uid,
            &answer,
        ))
    }

    async fn admit(
        &self,
        review: &Review<'_>,
        target: &Target<'_>,
        policy: &Policy,
        started: Instant,
    ) -> Answer {
        let req = &review.request;
        // The hub may name the XNAT user in an annotation of its own; else the JupyterHub name.
        let source = policy
            .identity
            .annotation
            .as_deref()
            .and_then(|a| review.pod.as_ref()?.metadata.annotation(a))
            .filter(|v| is_acceptable_username(v))
            .unwrap_or(target.jupyter_user);
        let xnat_user = policy.identity.apply(source);
        // XNAT usernames are letters, digits and `. _ @ + -`; anything else (`;`, `/`, `..`)
        // could make the XNAT URL ask about somebody else.
        if !is_safe_segment(&xnat_user) {
            log_skip(review, SkipReason::BadUsername, started);
            return Answer::Allow {
                patch: Vec::new(),
                warnings: vec![format!(
                    "xnat-webhook: username {:?} maps to an unusable XNAT username; no XNAT data attached",
                    target.jupyter_user
                )],
            };
        }

        let deadline = tokio::time::Instant::now() + policy.xnat.budget;
        let allow_stale = policy.xnat.on_error == OnError::StaleThenAllow;
        let access = self.access.lookup(&xnat_user, deadline, allow_stale);
        let launch = async {
            if !policy.user_options.enabled {
                return None;
            }
            let client = self.access.client();
            match client
                .user_options::<UserOptions>(&xnat_user, target.server_name, deadline)
                .await
            {
                Ok(opts) => opts,
                Err(e) => {
                    tracing::warn!(uid = %req.uid, xnat_user = %xnat_user, error = %e,
                        "cannot read the launch context; using the project list");
                    None
                }
            }
        };
        let ((access, cache), launch) = tokio::join!(access, launch);
        if let AccessOutcome::Unavailable(why) | AccessOutcome::Stale { error: why, .. } = &access {
            tracing::warn!(uid = %req.uid, xnat_user = %xnat_user, error = %why, cache = cache.as_str(),
                "XNAT lookup failed");
        }
        let cx = Context {
            who: Identity {
                jupyter_user: target.jupyter_user,
                server_name: target.server_name,
                xnat_user: &xnat_user,
            },
            access: &access,
            launch: launch.as_ref(),
            xnat_url: policy.xnat.url.as_str(),
        };
        let spec = target.spec.map_or("{}", |s| s.get());
        let decision = decide(spec, &cx, policy);

        let (decision_name, projects, operations, warning_count) = match &decision {
            Decision::Allow {
                patch,
                warnings,
                projects,
            } => (
                if patch.is_empty() {
                    "unchanged"
                } else {
                    "mutated"
                },
                projects.len(),
                patch.len(),
                warnings.len(),
            ),
            Decision::Deny { .. } => ("denied", 0, 0, 0),
        };
        tracing::info!(
            uid = %req.uid,
            namespace = req.namespace.as_deref().unwrap_or_default(),
            pod = target.pod_name,
            user = target.jupyter_user,
            server = target.server_name,
            xnat_user = %xnat_user,
            decision = decision_name,
            projects,
            operations,
            warnings = warning_count,
            launch_context = launch.is_some(),
            xnat = cache.as_str(),
            duration_us = started.elapsed().as_micros() as u64,
            "admission"
        );
        match decision {
            Decision::Allow {
                patch, warnings, ..
            } => Answer::Allow { patch, warnings },
            Decision::Deny { message } => Answer::Deny {
                message,
                warnings: Vec::new(),
            },
        }
    }
}

fn log_skip(review: &Review<'_>, reason: SkipReason, started: Instant) {
    let req = &review.request;
    let name = review
        .pod
        .as_ref()
        .and_then(|p| p.metadata.name.as_deref())
        .unwrap_or(&req.name);
    let requester = req.requester();
    // The username the pod claims: worth having in the log when a stranger claims one.
    let user = review
        .pod
        .as_ref()
        .and_then(|p| p.metadata.annotation(crate::classify::USERNAME_ANNOTATION))
        .unwrap_or_default();
    let namespace = req.namespace.as_deref().unwrap_or_default();
    let duration_us = started.elapsed().as_micros() as u64;
    if reason.warning().is_some() {
        tracing::warn!(uid = %req.uid, namespace, pod = name, user, requester, decision = "skipped",
            reason = reason.as_str(), projects = 0, duration_us, "admission");
    } else {
        tracing::info!(uid = %req.uid, namespace, pod = name, user, requester, decision = "skipped",
            reason = reason.as_str(), projects = 0, duration_us, "admission");
    }
}
