//! One review, end to end: parse → classify → identify → ask XNAT (cached) → decide → answer,
//! with one structured log line and one metric. Split by job: [`source`] (where access comes
//! from), [`state`] (the swappable policy + access, and the reload rules), [`pipeline`] (one
//! review), [`outcome`] (what became of it), [`audit`] (audit mode and redaction), `log`.

mod audit;
mod caller;
mod log;
mod outcome;
mod pipeline;
mod source;
mod state;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

pub use audit::{audit_answer, redacted};
pub use caller::{BadCidr, Caller, Trust};
pub use outcome::{ErrorKind, Outcome};
pub use source::AccessSource;
use state::State;

use crate::events::EventSink;
use crate::policy::Policy;
use crate::review::{self, ReviewError};
use crate::seen::DirProbe;
use crate::xnat::CredentialSource;

/// The webhook's state: the current policy and its XNAT access, replaced atomically on reload.
pub struct Admission {
    state: ArcSwap<State>,
    /// For rebuilding the XNAT client when a reload changes how XNAT is reached.
    credentials: Option<CredentialSource>,
    /// Looks at the claims the webhook sees (`optional` project mounts), across reloads.
    dirs: DirProbe,
    /// Where Events about notebook pods go, once a Kubernetes API is known.
    events: std::sync::OnceLock<EventSink>,
    /// How the API server is told from other callers, once the server knows.
    trust: std::sync::OnceLock<Arc<Trust>>,
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
            dirs: DirProbe::default(),
            events: std::sync::OnceLock::new(),
            trust: std::sync::OnceLock::new(),
        }
    }

    /// Tells the API server's reviews from others from now on: others' XNAT calls take at most
    /// half the slots. `false` when set already.
    pub fn trust(&self, trust: Arc<Trust>) -> bool {
        self.trust.set(trust).is_ok()
    }

    /// Posts Events about notebook pods to `events` from now on (when the policy's
    /// `events.enabled`); `false` when a sink was attached already.
    pub fn attach_events(&self, events: EventSink) -> bool {
        self.events.set(events).is_ok()
    }

    /// Tells the user of a pod whose review the server refused before reading it (the API
    /// server's own, when the webhook cannot take more): the pod starts without XNAT data, and
    /// its spawn page says why.
    pub fn tell_refused(&self, (namespace, pod): &(String, String), why: &str) {
        let Some(events) = self.events.get() else {
            return;
        };
        if events.is_enabled() && self.policy().events.enabled {
            let why = why.trim_start_matches("xnat-webhook: ");
            let why = format!("the webhook could not take this pod's review now ({why})");
            events.post(crate::events::PodEvent::skipped((namespace, pod), &why));
        }
    }

    /// `/readyz`'s `xnat` member: what is failing at XNAT, and the access index in use.
    pub fn readiness(&self) -> serde_json::Value {
        self.state.load().access.readiness()
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.state.load().policy.clone()
    }

    /// Ends the XNAT session; called once the server has drained.
    pub async fn close(&self) {
        self.state.load().access.close().await;
    }

    /// Answers one AdmissionReview body with the response body. `Err` only for a body that is
    /// not a review; a denial is an answer.
    pub async fn review(&self, body: &[u8], caller: &Caller) -> Result<Vec<u8>, ReviewError> {
        let started = Instant::now();
        let review = review::parse(body).inspect_err(|e| {
            tracing::warn!(caller = %caller.addr, error = %e, bytes = body.len(),
                "rejected a malformed admission review");
            Outcome::Errored(ErrorKind::MalformedReview).record(started.elapsed());
        })?;
        let state = self.state.load_full();
        let no_events = EventSink::disabled();
        // Only the API server's reviews post Events: a forged one must not put its text on
        // somebody's spawn page, nor use up the Event rate.
        let events = self.events.get().filter(|_| caller.is_first());
        let admitting = pipeline::Admitting {
            review: &review,
            caller,
            policy: &state.policy,
            edges: pipeline::Edges {
                source: &state.access,
                dirs: &self.dirs,
                events: events.unwrap_or(&no_events),
            },
            started,
        };
        let admitted = admitting.admit();
        let other = self.trust.get().is_some_and(|t| t.distinguishes()) && !caller.is_first();
        let (answer, outcome) = if other {
            crate::xnat::as_other_caller(admitted).await
        } else {
            admitted.await
        };
        outcome.record(started.elapsed());
        let req = &review.request;
        Ok(review::response_json(
            &review.api_version,
            &req.uid,
            &answer,
        ))
    }
}
