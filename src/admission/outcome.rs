//! What became of one review, typed once and used for the log line and the metrics.

use std::time::Duration;

use crate::classify::SkipReason;
use crate::mutation::Decision;

/// What the webhook did with one review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A notebook pod, patched.
    Mutated,
    /// A notebook pod that needed nothing (or could not be understood).
    Unchanged,
    /// Not ours, or not safely ours: allowed as it is.
    Skipped(SkipReason),
    /// Refused (`onError: deny` while XNAT could not be asked).
    Denied,
    /// Audit mode: decided, reported, nothing changed.
    Audited,
    /// Not an answerable review (HTTP 400).
    Errored(ErrorKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    MalformedReview,
    /// Refused at the gate: the bodies of reviews waiting hold all the bytes the caller may.
    Bytes,
    /// Refused at the gate: larger than a review may be.
    TooLarge,
    /// Refused at the gate: the body did not arrive in time.
    Slow,
}

impl Outcome {
    /// What a decision stands for (audit mode then reports it as [`Outcome::Audited`]).
    pub fn of(decision: &Decision) -> Self {
        match decision {
            Decision::Allow { patch, .. } if patch.is_empty() => Outcome::Unchanged,
            Decision::Allow { .. } => Outcome::Mutated,
            Decision::Deny { .. } => Outcome::Denied,
        }
    }

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Mutated => "mutated",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped(_) => "skipped",
            Outcome::Denied => "denied",
            Outcome::Audited => "audited",
            Outcome::Errored(_) => "errored",
        }
    }

    /// The `reason` label: why a review was skipped or errored; empty otherwise.
    pub fn reason(self) -> &'static str {
        match self {
            Outcome::Skipped(r) => r.as_str(),
            Outcome::Errored(ErrorKind::MalformedReview) => "malformed_review",
            Outcome::Errored(ErrorKind::Bytes) => "body_budget",
            Outcome::Errored(ErrorKind::TooLarge) => "too_large",
            Outcome::Errored(ErrorKind::Slow) => "slow_body",
            _ => "",
        }
    }

    /// Counts the review in the metrics.
    pub fn record(self, took: Duration) {
        crate::metrics::admission(self.label(), self.reason(), took);
    }
}
