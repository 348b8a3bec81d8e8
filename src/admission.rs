//! One review, end to end: parse → classify → map the username → ask XNAT (cached) → decide →
//! answer, with one structured log line. The only I/O here is the XNAT lookup.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use std::collections::HashMap;

use crate::access::{AccessOutcome, UserAccess};
use crate::classify::{SkipReason, Target, classify};
use crate::launch::UserOptions;
use crate::mutation::{Context, Decision, Identity, decide};
use crate::names::{is_acceptable_username, is_safe_segment};
use crate::policy::{Mode, OnError, Policy, XnatChange};
use crate::review::{self, Answer, Review, ReviewError};
use crate::xnat::{AccessCache, CacheStatus, CredentialSource, XnatClient, XnatError};

/// Where a user's access comes from.
#[derive(Clone)]
pub enum AccessSource {
    /// XNAT, through the cache.
    Xnat(AccessCache),
    /// A fixed table (the offline `review` command): XNAT username → access.
    Static(Arc<HashMap<String, Arc<UserAccess>>>),
}

impl AccessSource {
    /// A cached XNAT client built from the policy's `xnat` section.
    pub fn xnat(policy: &Policy, credentials: CredentialSource) -> Result<Self, XnatError> {
        let x = &policy.xnat;
        let client = XnatClient::new(x.endpoint.clone(), credentials, x.client.clone())?;
        Ok(Self::Xnat(AccessCache::new(
            client,
            &x.cache,
            x.live.clone(),
        )))
    }

    async fn lookup(
        &self,
        xnat_user: &str,
        deadline: tokio::time::Instant,
        allow_stale: bool,
    ) -> (AccessOutcome, CacheStatus) {
        match self {
            AccessSource::Xnat(cache) => cache.lookup(xnat_user, deadline, allow_stale).await,
            AccessSource::Static(table) => {
                let access = table
                    .get(xnat_user)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(UserAccess::unknown()));
                (AccessOutcome::Known(access), CacheStatus::Hit)
            }
        }
    }

    async fn user_options(
        &self,
        xnat_user: &str,
        server_name: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Option<UserOptions>, XnatError> {
        match self {
            AccessSource::Xnat(cache) => {
                cache
                    .client()
                    .user_options(xnat_user, server_name, deadline)
                    .await
            }
            AccessSource::Static(_) => Ok(None),
        }
    }

    async fn close(&self) {
        if let AccessSource::Xnat(cache) = self {
            cache.client().close().await;
        }
    }
}

/// What one review reads: a policy and the access source built for it, swapped together.
struct State {
    policy: Arc<Policy>,
    access: AccessSource,
}

/// The webhook's state: the current policy and its XNAT access, replaced atomically on reload.
pub struct Admission {
    state: ArcSwap<State>,
    /// For rebuilding the XNAT client when a reload changes how XNAT is reached.
    credentials: Option<CredentialSource>,
}

impl Admission {
    pub fn new(
        policy: Policy,
        access: AccessSource,
        credentials: Option<CredentialSource>,
    ) -> Self {
        Self {
            state: ArcSwap::from_pointee(State {
                policy: Arc::new(policy),
                access,
            }),
            credentials,
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.state.load().policy.clone()
    }

    /// Makes `policy` the one every following review uses. Reviews in flight finish with the
    /// policy they started with: each review reads the policy and its access source once.
    /// When the new policy reaches XNAT differently (URL, timeouts, cache settings…), a new
    /// client and cache are built and the old session is closed.
    pub fn apply_policy(&self, policy: Policy) -> Result<(), XnatError> {
        let current = self.state.load_full();
        let new = &policy.xnat;
        let change = current.policy.xnat.change_to(new);
        let mut retired: Option<Arc<XnatClient>> = None;
        let access = match (&current.access, &self.credentials, change) {
            (AccessSource::Xnat(cache), Some(credentials), XnatChange::NewCache) => {
                tracing::info!(xnat = %new.endpoint.url, "policy changes which XNAT answers; new client and cache");
                retired = Some(cache.client());
                AccessSource::xnat(&policy, credentials.clone())?
            }
            (AccessSource::Xnat(cache), Some(credentials), change) => {
                if change == XnatChange::NewClient {
                    tracing::info!(
                        "policy changes XNAT timeouts, retries or concurrency; new client, cache kept"
                    );
                    let client = XnatClient::new(
                        new.endpoint.clone(),
                        credentials.clone(),
                        new.client.clone(),
                    )?;
                    retired = Some(cache.replace_client(client));
                }
                cache.update(new.live.clone());
                current.access.clone()
            }
            (access, _, _) => access.clone(),
        };
        self.state.store(Arc::new(State {
            policy: Arc::new(policy),
            access,
        }));
        if let Some(old) = retired {
            // Reviews that started with the old client may still be using it: close its session
            // once they must have finished.
            tokio::spawn(async move {
                tokio::time::sleep(crate::timeouts::CLIENT_RETIREMENT).await;
                old.close().await;
            });
        }
        Ok(())
    }

    /// Ends the XNAT session; called once the server has drained.
    pub async fn close(&self) {
        self.state.load().access.close().await;
    }

    /// Answers one AdmissionReview body with the response body. `Err` only for a body that is
    /// not a review; a denial is an answer.
    pub async fn review(&self, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
        let started = Instant::now();
        let review = review::parse(body)?;
        let state = self.state.load_full();
        let policy = &state.policy;
        let (answer, outcome, reason) = match classify(&review, &policy.pods) {
            Ok(target) => admit(&review, &target, policy, &state.access, started).await,
            Err(reason) => {
                log_skip(&review, reason, started);
                let answer = Answer::Allow {
                    patch: Vec::new(),
                    warnings: reason.warning().map(String::from).into_iter().collect(),
                    audit: Vec::new(),
                };
                (answer, "skipped", reason.as_str())
            }
        };
        crate::metrics::admission(outcome, reason, started.elapsed());
        let req = &review.request;
        Ok(review::response_json(
            &review.api_version,
            &req.uid,
            &answer,
        ))
    }
}

async fn admit(
    review: &Review<'_>,
    target: &Target<'_>,
    policy: &Policy,
    access_source: &AccessSource,
    started: Instant,
) -> (Answer, &'static str, &'static str) {
    let req = &review.request;
    // The hub may name the XNAT user in an annotation of its own; else the JupyterHub name.
    let annotated = policy
        .identity
        .annotation
        .as_deref()
        .and_then(|a| review.pod.as_ref()?.metadata.annotation(a));
    // A present but unusable annotation must not fall back to the JupyterHub name: that could be
    // somebody else's XNAT account.
    if annotated.is_some_and(|v| !is_acceptable_username(v)) {
        log_skip(review, SkipReason::BadUsername, started);
        let answer = Answer::Allow {
            patch: Vec::new(),
            audit: Vec::new(),
            warnings: vec![
                "xnat-webhook: the XNAT username annotation is not a usable username; no XNAT data attached"
                    .into(),
            ],
        };
        return (answer, "skipped", SkipReason::BadUsername.as_str());
    }
    let source = annotated.unwrap_or(target.jupyter_user);
    let xnat_user = policy.identity.apply(source);
    // XNAT usernames are letters, digits and `. _ @ + -`; anything else (`;`, `/`, `..`)
    // could make the XNAT URL ask about somebody else.
    if !is_safe_segment(&xnat_user) {
        log_skip(review, SkipReason::BadUsername, started);
        let answer = Answer::Allow {
            patch: Vec::new(),
            audit: Vec::new(),
            warnings: vec![format!(
                "xnat-webhook: username {:?} maps to an unusable XNAT username; no XNAT data attached",
                target.jupyter_user
            )],
        };
        return (answer, "skipped", SkipReason::BadUsername.as_str());
    }

    let deadline = tokio::time::Instant::now() + policy.xnat.live.budget;
    let allow_stale = policy.xnat.on_error == OnError::StaleThenAllow;
    let access = access_source.lookup(&xnat_user, deadline, allow_stale);
    let launch = async {
        if !policy.user_options.enabled {
            return None;
        }
        match access_source
            .user_options(&xnat_user, target.server_name, deadline)
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
    crate::metrics::cache(cache.as_str());
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
        xnat_url: policy.xnat.endpoint.url.as_str(),
    };
    let spec = target.spec.map_or("{}", |s| s.get());
    let decision = decide(spec, &cx, policy);

    let audit = policy.mode == Mode::Audit;
    let (no_rules, no_warnings) = (Vec::new(), Vec::new());
    let (decision_name, projects, operations, warning_list, rules) = match &decision {
        Decision::Allow {
            patch,
            warnings,
            projects,
            rules,
        } => (
            if patch.is_empty() {
                "unchanged"
            } else {
                "mutated"
            },
            projects.len(),
            patch.len(),
            warnings,
            rules,
        ),
        Decision::Deny { .. } => ("denied", 0, 0, &no_warnings, &no_rules),
    };
    tracing::info!(
        uid = %req.uid,
        namespace = req.namespace.as_deref().unwrap_or_default(),
        pod = target.pod_name,
        user = target.jupyter_user,
        server = target.server_name,
        xnat_user = %xnat_user,
        decision = decision_name,
        audit,
        projects,
        operations,
        // The full text: the API server may truncate long warnings in the response.
        warnings = ?warning_list,
        rules = ?rules,
        launch_context = launch.is_some(),
        xnat = cache.as_str(),
        duration_us = started.elapsed().as_micros() as u64,
        "admission"
    );
    if audit {
        if let Decision::Allow { patch, .. } = &decision {
            tracing::info!(uid = %req.uid, pod = target.pod_name,
                    patch = %redacted(patch), "audit mode: the patch that would have been applied");
        }
        return (audit_answer(decision), "audited", "");
    }
    let answer = match decision {
        Decision::Allow {
            patch, warnings, ..
        } => Answer::Allow {
            patch,
            warnings,
            audit: Vec::new(),
        },
        Decision::Deny { message } => Answer::Deny {
            message,
            warnings: Vec::new(),
        },
    };
    (answer, decision_name, "")
}

/// Audit mode: say what would have happened, in a warning and in audit annotations (which the
/// API server records in its audit log), and change nothing.
pub fn audit_answer(decision: Decision) -> Answer {
    match decision {
        Decision::Allow {
            patch,
            mut warnings,
            projects,
            ..
        } => {
            warnings.push(format!(
                "xnat-webhook (audit mode): would mount {} project(s) [{}] with {} patch operation(s); nothing changed",
                projects.len(),
                projects.join(", "),
                patch.len()
            ));
            Answer::Allow {
                patch: Vec::new(),
                warnings,
                audit: vec![
                    ("would-mount", projects.join(",")),
                    ("would-patch-operations", patch.len().to_string()),
                ],
            }
        }
        Decision::Deny { message } => Answer::Allow {
            patch: Vec::new(),
            warnings: vec![format!(
                "xnat-webhook (audit mode): would deny this pod: {message}"
            )],
            audit: vec![("would-deny", message)],
        },
    }
}

/// The patch as JSON with env values hidden: a launch context can carry the user's alias token.
pub fn redacted(patch: &[json_patch::PatchOperation]) -> String {
    let mut value = serde_json::to_value(patch).unwrap_or_default();
    for op in value.as_array_mut().into_iter().flatten() {
        let is_env = op["path"].as_str().is_some_and(|p| p.contains("/env"));
        if !is_env {
            continue;
        }
        let vars: Vec<&mut serde_json::Value> = match &mut op["value"] {
            serde_json::Value::Array(a) => a.iter_mut().collect(),
            v => vec![v],
        };
        for var in vars {
            if let Some(v) = var.get_mut("value") {
                *v = serde_json::Value::String("<redacted>".into());
            }
        }
    }
    value.to_string()
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
