//! One review, end to end: parse → classify → map the username → ask XNAT (cached) → decide →
//! answer, with one structured log line. The only I/O here is the cache lookup.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::access::AccessOutcome;
use crate::classify::{SkipReason, classify};
use crate::identity::is_acceptable_username;
use crate::mutation::{Decision, Identity, decide};
use crate::policy::Policy;
use crate::review::{self, Answer, Review, ReviewError};
use crate::xnat::{AccessCache, CacheStatus};

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

    /// Answers one AdmissionReview body with the response body. `Err` only for a body that is
    /// not a review; a denial is an answer.
    pub async fn review(&self, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
        let started = Instant::now();
        let review = review::parse(body)?;
        let req = &review.request;
        let policy = self.policy.load();
        let target = match classify(&review, &policy.pods) {
            Ok(t) => t,
            Err(reason) => {
                log_skip(&review, reason, started);
                let warnings = reason.warning().map(String::from).into_iter().collect();
                let answer = Answer::Allow {
                    patch: Vec::new(),
                    warnings,
                };
                return Ok(review::response_json(
                    &review.api_version,
                    &req.uid,
                    &answer,
                ));
            }
        };

        let xnat_user = policy.identity.apply(target.jupyter_user);
        if !is_acceptable_username(&xnat_user) {
            log_skip(&review, SkipReason::BadUsername, started);
            let answer = Answer::Allow {
                patch: Vec::new(),
                warnings: vec![format!(
                    "xnat-webhook: username {:?} maps to an unusable XNAT username; no XNAT data attached",
                    target.jupyter_user
                )],
            };
            return Ok(review::response_json(
                &review.api_version,
                &req.uid,
                &answer,
            ));
        }

        let (access, cache) = self.access.lookup(&xnat_user).await;
        if let AccessOutcome::Unavailable(why) = &access {
            tracing::warn!(uid = %req.uid, xnat_user = %xnat_user, error = %why, "XNAT lookup failed");
        }
        let who = Identity {
            jupyter_user: target.jupyter_user,
            server_name: target.server_name,
            xnat_user: &xnat_user,
        };
        let spec = target.spec.map_or("{}", |s| s.get());
        let decision = decide(spec, &who, &access, &policy, policy.xnat.url.as_str());

        let answer = match decision {
            Decision::Allow {
                patch,
                warnings,
                projects,
            } => {
                tracing::info!(
                    uid = %req.uid,
                    namespace = req.namespace.as_deref().unwrap_or_default(),
                    pod = target.pod_name,
                    user = target.jupyter_user,
                    server = target.server_name,
                    xnat_user = %xnat_user,
                    decision = if patch.is_empty() { "unchanged" } else { "mutated" },
                    projects = projects.len(),
                    operations = patch.len(),
                    warnings = warnings.len(),
                    xnat = access_label(&access, cache),
                    duration_us = started.elapsed().as_micros() as u64,
                    "admission"
                );
                Answer::Allow { patch, warnings }
            }
            Decision::Deny { message } => {
                tracing::info!(
                    uid = %req.uid,
                    namespace = req.namespace.as_deref().unwrap_or_default(),
                    pod = target.pod_name,
                    user = target.jupyter_user,
                    server = target.server_name,
                    xnat_user = %xnat_user,
                    decision = "denied",
                    projects = 0,
                    xnat = access_label(&access, cache),
                    duration_us = started.elapsed().as_micros() as u64,
                    "admission"
                );
                Answer::Deny {
                    message,
                    warnings: Vec::new(),
                }
            }
        };
        Ok(review::response_json(
            &review.api_version,
            &req.uid,
            &answer,
        ))
    }
}

fn access_label(access: &AccessOutcome, cache: CacheStatus) -> &'static str {
    match access {
        AccessOutcome::Known(_) => cache.as_str(),
        AccessOutcome::Unavailable(_) => "error",
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
    let duration_us = started.elapsed().as_micros() as u64;
    if reason.warning().is_some() {
        tracing::warn!(uid = %req.uid, namespace = req.namespace.as_deref().unwrap_or_default(),
            pod = name, requester, decision = "skipped", reason = reason.as_str(), duration_us, "admission");
    } else {
        tracing::info!(uid = %req.uid, namespace = req.namespace.as_deref().unwrap_or_default(),
            pod = name, requester, decision = "skipped", reason = reason.as_str(), duration_us, "admission");
    }
}
