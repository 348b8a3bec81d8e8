//! The one `admission` log line every review gets: what was decided, for whom, and why.

use std::time::Instant;

use crate::classify::{SkipReason, Target, USERNAME_ANNOTATION};
use crate::echo::echo;
use crate::mutation::Decision;
use crate::review::Review;
use crate::xnat::CacheStatus;

use super::{Caller, Outcome};

/// A review that was not ours, or not safely ours.
pub(super) fn skipped(review: &Review<'_>, caller: &Caller, reason: SkipReason, started: Instant) {
    let req = &review.request;
    let meta = review.pod.as_ref().map(|p| &p.metadata);
    let name = meta.and_then(|m| m.name.as_deref()).unwrap_or(&req.name);
    let requester = req.requester();
    // The username the pod claims: worth having in the log when a stranger claims one.
    let user = meta
        .and_then(|m| m.annotation(USERNAME_ANNOTATION))
        .unwrap_or_default();
    let namespace = echo(req.namespace.as_deref().unwrap_or_default());
    let (pod, user, requester) = (echo(name), echo(user), echo(requester));
    let duration_us = started.elapsed().as_micros() as u64;
    let decision = Outcome::Skipped(reason).label();
    let (addr, verified) = (caller.addr, caller.verified);
    if reason.warning().is_some() {
        tracing::warn!(uid = %echo(&req.uid), caller = %addr, verified, %namespace, %pod, %user,
            %requester, decision, reason = reason.as_str(), projects = 0, duration_us, "admission");
    } else {
        tracing::info!(uid = %echo(&req.uid), caller = %addr, verified, %namespace, %pod, %user,
            %requester, decision, reason = reason.as_str(), projects = 0, duration_us, "admission");
    }
}

/// What one decided review is logged with besides the decision itself.
pub(super) struct Decided<'a> {
    pub caller: &'a Caller,
    pub target: &'a Target<'a>,
    pub xnat_user: &'a str,
    pub launch_context: bool,
    pub cache: CacheStatus,
    pub audit: bool,
    pub started: Instant,
}

/// A notebook pod the decision code ran for.
pub(super) fn decided(review: &Review<'_>, d: &Decided<'_>, decision: &Decision) {
    let req = &review.request;
    let outcome = Outcome::of(decision);
    let (projects, operations, warnings, rules): (usize, usize, &[String], &[String]) =
        match decision {
            Decision::Allow {
                patch,
                warnings,
                projects,
                rules,
            } => (projects.len(), patch.len(), warnings, rules),
            Decision::Deny { .. } => (0, 0, &[], &[]),
        };
    tracing::info!(
        uid = %echo(&req.uid),
        caller = %d.caller.addr,
        verified = d.caller.verified,
        namespace = %echo(req.namespace.as_deref().unwrap_or_default()),
        pod = %echo(d.target.pod_name),
        user = %echo(d.target.jupyter_user),
        server = %echo(d.target.server_name),
        xnat_user = %echo(d.xnat_user),
        decision = outcome.label(),
        audit = d.audit,
        projects,
        operations,
        // The full text: the API server may truncate long warnings in the response.
        warnings = ?warnings,
        rules = ?rules,
        launch_context = d.launch_context,
        xnat = d.cache.as_str(),
        duration_us = d.started.elapsed().as_micros() as u64,
        "admission"
    );
}
