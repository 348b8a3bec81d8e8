//! One review through the webhook: classify → identify → look up → decide → answer. The only
//! I/O is the lookup (XNAT through the cache, or a fixed table).

use std::time::Instant;

use super::log::{self, Decided};
use super::{AccessSource, Caller, Outcome, audit};
use crate::access::AccessOutcome;
use crate::archive::{AbsentDirs, ProjectRoots};
use crate::classify::{SkipReason, Target, classify};
use crate::echo::echo;
use crate::events::{EventSink, PodEvent};
use crate::launch::{Launch, UserOptions};
use crate::mutation::launch::to_confirm;
use crate::mutation::{Context, Decision, Identity, decide, decide_unreadable};
use crate::mutation::{PodStatus, STATUS_ANNOTATION, XnatState, stamp};
use crate::mutation::{optional_dirs, workspace_path};
use crate::pod::PodView;
use crate::policy::Values;
use crate::policy::{Mode, OnError, Policy};
use crate::review::{Answer, PodSpec, Review};
use crate::seen::DirProbe;
use crate::sharing::Confirmed;
use crate::warning::Warnings;
use crate::xnat::CacheStatus;

/// What one review reads and writes besides the review itself.
pub(super) struct Edges<'a> {
    pub source: &'a AccessSource,
    pub dirs: &'a DirProbe,
    pub events: &'a EventSink,
}

/// Answers one parsed review.
pub(super) async fn admit(
    review: &Review<'_>,
    caller: &Caller,
    policy: &Policy,
    edges: Edges<'_>,
    started: Instant,
) -> (Answer, Outcome) {
    let Edges {
        source,
        dirs,
        events,
    } = edges;
    let skipped = |reason: SkipReason, why: Option<String>| {
        if let Some(why) = &why {
            post(events, policy, review, |at| PodEvent::skipped(at, why));
        }
        skip(review, caller, reason, why, started)
    };
    let target = match classify(review, &policy.pods) {
        Ok(t) => t,
        Err(reason) => return skipped(reason, reason.warning().map(str::to_owned)),
    };
    let xnat_user = match policy.identity.resolve(target.jupyter_user, target.meta) {
        Ok(u) => u,
        Err(why) => return skipped(SkipReason::BadUsername, Some(why.to_string())),
    };
    let deadline = tokio::time::Instant::now() + policy.xnat.live.budget;
    let (access, cache, launch, login) =
        look_up(review, &target, &xnat_user, policy, source, deadline).await;
    // The XNAT login the name stands for, when XNAT has it only in another case.
    let xnat_user = login.map_or(xnat_user, std::borrow::Cow::Owned);
    let confirmed = confirm(
        &target,
        &xnat_user,
        &access,
        launch.as_ref(),
        policy,
        (source, dirs),
        deadline,
    )
    .await;
    let launch_ref = launch.as_ref();
    let mut decision = decide_for(
        &target, &xnat_user, &access, launch_ref, &confirmed, policy, caller,
    );
    let audit = policy.mode == Mode::Audit;
    let launched = matches!(launch, Some(Ok(_)));
    if !audit {
        let who = (&target, &*xnat_user);
        report(
            &mut decision,
            who,
            &access,
            (launched, cache),
            policy,
            review,
            events,
        );
    }
    let decided = Decided {
        caller,
        target: &target,
        xnat_user: &xnat_user,
        launch_context: launched,
        cache,
        audit,
        started,
    };
    log::decided(review, &decided, &decision);
    if let (true, Decision::Allow { patch, .. }) = (audit, &decision) {
        tracing::info!(uid = %echo(&review.request.uid), pod = %echo(target.pod_name),
            patch = %audit::redacted(patch), "audit mode: the patch that would have been applied");
    }
    answer(decision, policy.mode)
}

/// The pure decision for this review's pod.
fn decide_for(
    target: &Target<'_>,
    xnat_user: &str,
    access: &AccessOutcome,
    launch: Option<&Result<UserOptions, String>>,
    confirmed: &Confirmed,
    policy: &Policy,
    caller: &Caller,
) -> Decision {
    let cx = Context {
        who: Identity {
            jupyter_user: target.jupyter_user,
            server_name: target.server_name,
            xnat_user,
        },
        access,
        launch: match launch {
            None => Launch::None,
            Some(Ok(opts)) => Launch::Stored(opts),
            Some(Err(why)) => Launch::Unreadable(why),
        },
        confirmed,
        xnat_url: policy.xnat.endpoint.url.as_str(),
        caller_verified: caller.verified,
    };
    let pod = match target.spec {
        PodSpec::Read(spec) => Ok(PodView::read(target.meta, spec)),
        PodSpec::Raw(raw) => PodView::new(target.meta, *raw),
    };
    match pod {
        Ok(pod) => decide(&pod, &cx, policy),
        Err(e) => decide_unreadable(&cx, policy, e),
    }
}

/// What XNAT must confirm beyond the user's project list, asked within the same deadline: for a
/// launch, the public projects and shared experiment its mounts name; for the project list,
/// where each project keeps its files (when the policy asks).
async fn confirm(
    target: &Target<'_>,
    xnat_user: &str,
    access: &AccessOutcome,
    launch: Option<&Result<UserOptions, String>>,
    policy: &Policy,
    (source, dirs): (&AccessSource, &DirProbe),
    deadline: tokio::time::Instant,
) -> Confirmed {
    let (AccessOutcome::Known(a) | AccessOutcome::Stale { access: a, .. }) = access else {
        return Confirmed::NONE;
    };
    let readable = a.readable_projects(&policy.xnat.roles);
    let values = Values {
        project: None,
        arc: "",
        xnat_user,
        jupyter_user: target.jupyter_user,
        server_name: target.server_name,
        projects: "",
        xnat_url: policy.xnat.endpoint.url.as_str(),
    };
    match launch {
        Some(Ok(opts)) => {
            let workspace = workspace_path(policy, &values);
            let asks = to_confirm(opts, &policy.user_options, &readable, workspace.as_deref());
            if asks.is_empty() {
                Confirmed::NONE
            } else {
                source.confirm(&asks, deadline).await
            }
        }
        _ => {
            let storage = &policy.storage;
            let mounted: Vec<&str> = readable
                .into_iter()
                .filter(|p| !storage.is_never_mounted(p))
                .take(storage.max_project_mounts.unwrap_or(usize::MAX))
                .collect();
            if mounted.is_empty() {
                return Confirmed::NONE;
            }
            let roots = if policy.xnat.ask_project_archive_paths {
                let site = &policy.xnat.archive_path;
                source.project_roots(&mounted, site, deadline).await
            } else {
                ProjectRoots::SITE
            };
            let optional = optional_dirs(&mounted, &roots, &values, policy);
            let absent = if optional.is_empty() {
                AbsentDirs::NONE
            } else {
                dirs.absent(optional, storage, deadline).await
            };
            Confirmed {
                roots,
                absent,
                ..Confirmed::NONE
            }
        }
    }
}

/// Stamps the pod's status annotation and posts its Event. A pod that already carries the
/// annotation is the webhook's own first pass coming back (`reinvocationPolicy: IfNeeded`; the
/// API server gives each call a new `request.uid`): its Event was posted, and the annotation
/// stays unless this pass changes the pod. A spawn retried by KubeSpawner is a new pod, without
/// it.
fn report(
    decision: &mut Decision,
    (target, xnat_user): (&Target<'_>, &str),
    access: &AccessOutcome,
    (launch, cache): (bool, CacheStatus),
    policy: &Policy,
    review: &Review<'_>,
    events: &EventSink,
) {
    let seen = target.meta.annotation(STATUS_ANNOTATION).is_some();
    if seen && matches!(decision, Decision::Allow { patch, .. } if patch.is_empty()) {
        return;
    }
    if !seen {
        post(events, policy, review, |at| {
            PodEvent::decided(at, decision, access, launch, xnat_user)
        });
    }
    let xnat = XnatState::of(xnat_user, access, cache);
    if let Some(status) = PodStatus::of(decision, &policy.version, launch, xnat) {
        stamp(decision, target.meta, &status);
    }
}

/// Queues an Event about the review's pod, when the policy wants Events, the pod has a name
/// and the request makes something (not `dryRun`).
fn post(
    events: &EventSink,
    policy: &Policy,
    review: &Review<'_>,
    event: impl FnOnce((&str, &str)) -> PodEvent,
) {
    if !events.is_enabled() || !policy.events.enabled || review.request.is_dry_run() {
        return;
    }
    let req = &review.request;
    let meta = review.pod.as_ref().map(|p| &p.metadata);
    let name = meta.and_then(|m| m.name.as_deref()).unwrap_or(&req.name);
    let namespace = req.namespace.as_deref().unwrap_or_default();
    if name.is_empty() || namespace.is_empty() {
        return;
    }
    events.post(event((namespace, name)).for_attempt(&req.uid));
}

/// Passes the review unchanged, saying why when a person should hear about it.
fn skip(
    review: &Review<'_>,
    caller: &Caller,
    reason: SkipReason,
    warning: Option<impl std::fmt::Display>,
    started: Instant,
) -> (Answer, Outcome) {
    log::skipped(review, caller, reason, started);
    let mut warnings = Warnings::new();
    if let Some(w) = warning {
        warnings.push(w);
    }
    let answer = Answer::Allow {
        patch: Vec::new(),
        warnings: warnings.into_vec(),
        audit: Vec::new(),
    };
    (answer, Outcome::Skipped(reason))
}

/// The user's access and, when the policy uses it, the launch context, asked for together
/// inside the policy's XNAT budget; and the XNAT login the name stands for when XNAT has it only
/// in another case (the launch context is then read again, for that login).
async fn look_up(
    review: &Review<'_>,
    target: &Target<'_>,
    xnat_user: &str,
    policy: &Policy,
    source: &AccessSource,
    deadline: tokio::time::Instant,
) -> (
    AccessOutcome,
    CacheStatus,
    Option<Result<UserOptions, String>>,
    Option<String>,
) {
    let uid = echo(&review.request.uid);
    let allow_stale = policy.xnat.on_error == OnError::StaleThenAllow;
    let access = source.lookup(xnat_user, deadline, allow_stale);
    let launch = |login: &str| {
        let login = login.to_owned();
        async move {
            if !policy.user_options.enabled {
                return None;
            }
            match source
                .user_options(&login, target.server_name, deadline)
                .await
            {
                Ok(opts) => opts.map(Ok),
                Err(e) => {
                    tracing::warn!(%uid, xnat_user = login, error = %e,
                        "cannot read the launch context; using the project list");
                    Some(Err(e.to_string()))
                }
            }
        }
    };
    let ((access, cache), mut launched) = tokio::join!(access, launch(xnat_user));
    crate::metrics::cache(cache.as_str());
    if let AccessOutcome::Unavailable(why) | AccessOutcome::Stale { error: why, .. } = &access {
        tracing::warn!(%uid, xnat_user, error = %why, cache = cache.as_str(),
            "XNAT lookup failed");
    }
    let login = match &access {
        AccessOutcome::Known(a) | AccessOutcome::Stale { access: a, .. } => a.login.clone(),
        AccessOutcome::Unavailable(_) => None,
    };
    if let Some(login) = &login {
        launched = launch(login).await;
    }
    (access, cache, launched, login)
}

/// The answer for a decision, as the policy's mode has it.
fn answer(decision: Decision, mode: Mode) -> (Answer, Outcome) {
    if mode == Mode::Audit {
        return (audit::audit_answer(decision), Outcome::Audited);
    }
    let outcome = Outcome::of(&decision);
    let answer = match decision {
        Decision::Allow {
            patch, warnings, ..
        } => Answer::Allow {
            patch,
            warnings: warnings.into_vec(),
            audit: Vec::new(),
        },
        Decision::Deny { message } => Answer::Deny {
            message,
            warnings: Vec::new(),
        },
    };
    (answer, outcome)
}
