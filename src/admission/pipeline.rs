//! One review through the webhook: classify → identify → look up → prepare → confirm → decide →
//! report → answer. The only I/O is asking (XNAT through the cache, or a fixed table; the
//! directory probe) and posting the Event; what to ask is the decision's
//! ([`crate::mutation::Prepared::questions`]), so the selection rule is not repeated here.

use std::borrow::Cow;
use std::time::Instant;

use tokio::time::Instant as TokioInstant;

use super::log::{self, Decided};
use super::{AccessSource, Caller, Outcome, audit};
use crate::access::{AccessOutcome, CacheStatus};
use crate::archive::ProjectRoots;
use crate::classify::{SkipReason, Target, classify};
use crate::echo::echo;
use crate::events::{EventSink, PodEvent};
use crate::launch::LaunchContext;
use crate::mutation::{Context, Decision, Identity, Prepared, decide, decide_unreadable, prepare};
use crate::mutation::{PodStatus, STATUS_ANNOTATION, XnatState, stamp};
use crate::pod::PodView;
use crate::policy::{Mode, OnError, Policy};
use crate::review::{Answer, PodSpec, Review};
use crate::seen::DirProbe;
use crate::sharing::Confirmed;
use crate::warning::Warnings;

/// What one review reads and writes besides the review itself.
pub(super) struct Edges<'a> {
    pub source: &'a AccessSource,
    pub dirs: &'a DirProbe,
    pub events: &'a EventSink,
}

/// One review on its way through the webhook: what it is, who sent it, the policy it is
/// decided by, what it may read and write, and since when.
pub(super) struct Admitting<'a> {
    pub review: &'a Review<'a>,
    pub caller: &'a Caller,
    pub policy: &'a Policy,
    pub edges: Edges<'a>,
    pub started: Instant,
}

/// The pod the review is about, for whom, and until when XNAT may be waited for.
struct Subject<'a> {
    target: Target<'a>,
    /// The XNAT login the pod's data is for.
    xnat_user: Cow<'a, str>,
    deadline: TokioInstant,
}

/// What XNAT said of the user before the decision: their access, where the answer came from,
/// and the launch context of the server being started.
struct Looked {
    access: AccessOutcome,
    cache: CacheStatus,
    launch: LaunchContext,
}

impl Admitting<'_> {
    /// Answers the review: classify → identify → look up → prepare → confirm → decide → report.
    pub(super) async fn admit(&self) -> (Answer, Outcome) {
        let policy = self.policy;
        let target = match classify(self.review, &policy.pods) {
            Ok(t) => t,
            Err(reason) => return self.skip(reason, reason.warning().map(str::to_owned)),
        };
        let xnat_user = match policy.identity.resolve(target.jupyter_user, target.meta) {
            Ok(u) => u,
            Err(why) => return self.skip(SkipReason::BadUsername, Some(why.to_string())),
        };
        let mut subject = Subject {
            target,
            xnat_user,
            deadline: TokioInstant::now() + policy.xnat.live.budget,
        };
        let (looked, login) = self.look_up(&subject).await;
        // The XNAT login the name stands for, when XNAT has it only in another case.
        if let Some(login) = login {
            subject.xnat_user = Cow::Owned(login);
        }
        let cx = subject.context(&looked, self);
        let mut prepared = prepare(&cx, policy);
        let confirmed = self.confirm(&mut prepared, subject.deadline).await;
        let mut decision = subject.decide(prepared, &confirmed, policy);
        let audit = policy.mode == Mode::Audit;
        if !audit {
            self.report(&mut decision, &subject, &looked);
        }
        let decided = Decided {
            caller: self.caller,
            target: &subject.target,
            xnat_user: &subject.xnat_user,
            launch_context: looked.launch.is_stored(),
            cache: looked.cache,
            audit,
            started: self.started,
        };
        log::decided(self.review, &decided, &decision);
        if let (true, Decision::Allow { patch, .. }) = (audit, &decision) {
            tracing::info!(uid = %echo(&self.review.request.uid),
                pod = %echo(subject.target.pod_name), patch = %audit::redacted(patch),
                "audit mode: the patch that would have been applied");
        }
        answer(decision, policy.mode)
    }

    /// What XNAT must confirm beyond the user's project list, asked within the same deadline:
    /// for a launch, the public projects and shared experiment its pending mounts name; for the
    /// project list, where each project mounted keeps its files (when the policy asks), then
    /// which optional directories exist.
    async fn confirm(&self, prepared: &mut Prepared<'_>, deadline: TokioInstant) -> Confirmed {
        let Edges { source, dirs, .. } = &self.edges;
        let policy = self.policy;
        let questions = prepared.questions(policy);
        let mut confirmed = match questions.launch.is_empty() {
            true => Confirmed::NONE,
            false => source.confirm(&questions.launch, deadline).await,
        };
        let roots = match questions.archive_paths {
            [] => ProjectRoots::SITE,
            projects => {
                let site = &policy.xnat.archive_path;
                source.project_roots(projects, site, deadline).await
            }
        };
        let optional = prepared.place(&roots, policy);
        if !optional.is_empty() {
            confirmed.absent = dirs.absent(optional, &policy.storage, deadline).await;
        }
        confirmed
    }

    /// Passes the review unchanged, saying why when a person should hear about it.
    fn skip(&self, reason: SkipReason, why: Option<String>) -> (Answer, Outcome) {
        let review = self.review;
        if let Some(why) = &why {
            self.post(|at| PodEvent::skipped(at, why));
        }
        log::skipped(review, self.caller, reason, self.started);
        let mut warnings = Warnings::new();
        if let Some(w) = why {
            warnings.push(w);
        }
        let answer = Answer::Allow {
            patch: Vec::new(),
            warnings: warnings.into_vec(),
            audit: Vec::new(),
        };
        (answer, Outcome::Skipped(reason))
    }
}

impl Subject<'_> {
    /// What the decision knows besides the pod and the policy.
    fn context<'a>(&'a self, looked: &'a Looked, a: &Admitting<'a>) -> Context<'a> {
        Context {
            who: Identity {
                jupyter_user: self.target.jupyter_user,
                server_name: self.target.server_name,
                xnat_user: &self.xnat_user,
            },
            access: &looked.access,
            launch: looked.launch.as_launch(),
            xnat_url: a.policy.xnat.endpoint.url.as_str(),
            caller_verified: a.caller.verified,
        }
    }

    /// The pure decision for this review's pod.
    fn decide(&self, prepared: Prepared<'_>, confirmed: &Confirmed, policy: &Policy) -> Decision {
        let pod = match self.target.spec {
            PodSpec::Read(spec) => Ok(PodView::read(self.target.meta, spec)),
            PodSpec::Raw(raw) => PodView::new(self.target.meta, *raw),
        };
        match pod {
            Ok(pod) => decide(&pod, prepared, confirmed, policy),
            Err(e) => decide_unreadable(&prepared, e),
        }
    }
}

impl Admitting<'_> {
    /// Stamps the pod's status annotation and posts its Event. A pod that already carries the
    /// annotation is the webhook's own first pass coming back (`reinvocationPolicy: IfNeeded`;
    /// the API server gives each call a new `request.uid`): its Event was posted, and the
    /// annotation stays unless this pass changes the pod. A spawn retried by KubeSpawner is a
    /// new pod, without it.
    fn report(&self, decision: &mut Decision, subject: &Subject<'_>, looked: &Looked) {
        let meta = subject.target.meta;
        let seen = meta.annotation(STATUS_ANNOTATION).is_some();
        if seen && matches!(decision, Decision::Allow { patch, .. } if patch.is_empty()) {
            return;
        }
        let (xnat_user, launched) = (&*subject.xnat_user, looked.launch.is_stored());
        if !seen {
            self.post(|at| PodEvent::decided(at, decision, &looked.access, launched, xnat_user));
        }
        let xnat = XnatState::of(xnat_user, &looked.access, looked.cache);
        if let Some(status) = PodStatus::of(decision, &self.policy.version, launched, xnat) {
            stamp(decision, meta, &status);
        }
    }

    /// Queues an Event about the review's pod, when the policy wants Events, the pod has a
    /// name and the request makes something (not `dryRun`).
    fn post(&self, event: impl FnOnce((&str, &str)) -> PodEvent) {
        let (events, review) = (self.edges.events, self.review);
        if !events.is_enabled() || !self.policy.events.enabled || review.request.is_dry_run() {
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

    /// The user's access and, when the policy uses it, the launch context, asked for together
    /// inside the policy's XNAT budget; and the XNAT login the name stands for when XNAT has it
    /// only in another case (the launch context is then read again, for that login).
    async fn look_up(&self, subject: &Subject<'_>) -> (Looked, Option<String>) {
        let (policy, source) = (self.policy, self.edges.source);
        let (xnat_user, deadline) = (&*subject.xnat_user, subject.deadline);
        let uid = echo(&self.review.request.uid);
        let allow_stale = policy.xnat.on_error == OnError::StaleThenAllow;
        let access = source.lookup(xnat_user, deadline, allow_stale);
        let server_name = subject.target.server_name;
        let launch = |login: &str| {
            let login = login.to_owned();
            async move {
                if !policy.user_options.enabled {
                    return LaunchContext::None;
                }
                match source.user_options(&login, server_name, deadline).await {
                    Ok(opts) => {
                        opts.map_or(LaunchContext::None, |o| LaunchContext::Stored(Box::new(o)))
                    }
                    Err(e) => {
                        tracing::warn!(%uid, xnat_user = login, error = %e,
                            "cannot read the launch context; using the project list");
                        LaunchContext::Unreadable(e.to_string())
                    }
                }
            }
        };
        let ((access, cache), mut launch_context) = tokio::join!(access, launch(xnat_user));
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
            launch_context = launch(login).await;
        }
        let looked = Looked {
            access,
            cache,
            launch: launch_context,
        };
        (looked, login)
    }
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
