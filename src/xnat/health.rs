//! What is wrong with XNAT right now, per endpoint, for `/readyz` and the log: the last failure
//! of each endpoint until that endpoint next succeeds. One [`Health`] per webhook, created with
//! its first XNAT client and handed to every client a reload builds for the same webhook, so
//! what it learnt outlives the client; `/readyz` reads it through the admission state.
//!
//! A failing XNAT never makes the webhook unready (`failurePolicy` and `onError` decide what
//! spawns get); `/readyz` only says so, so an admin sees "missing_role: Administrator" next to
//! the probe they already look at.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use super::XnatError;

struct Failure {
    at: Instant,
    error: XnatError,
}

/// The failing endpoints of one webhook's XNAT.
#[derive(Default)]
pub struct Health {
    failing: Mutex<BTreeMap<&'static str, Failure>>,
    /// Whether anything is in `failing`: a success then needs no lock.
    any: AtomicBool,
}

impl Health {
    fn failing(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Failure>> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a failed lookup (after its retries): counted, and logged when the endpoint was
    /// fine before or fails differently now, so a storm logs one line, not one per spawn.
    pub fn failed(&self, endpoint: &'static str, error: &XnatError) {
        crate::metrics::xnat_failure(endpoint, error.metric_label());
        let mut failing = self.failing();
        let changed = failing
            .get(endpoint)
            .is_none_or(|f| f.error.metric_label() != error.metric_label());
        if changed {
            match error.missing_role() {
                Some(role) => tracing::error!(endpoint, reason = error.metric_label(), role,
                    %error, "XNAT refuses the service account: it needs the {role} role"),
                None => tracing::warn!(endpoint, reason = error.metric_label(), %error,
                    "XNAT lookups failing"),
            }
        }
        failing.insert(
            endpoint,
            Failure {
                at: Instant::now(),
                error: error.clone(),
            },
        );
        self.any.store(true, Ordering::Release);
    }

    /// Records an answer from XNAT (a 404 included): the endpoint works again.
    pub fn succeeded(&self, endpoint: &'static str) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut failing = self.failing();
        if failing.remove(endpoint).is_some() {
            tracing::info!(endpoint, "XNAT lookups work again");
        }
        self.any.store(!failing.is_empty(), Ordering::Release);
    }

    /// `/readyz`'s `xnat` member: `{"ok": true}`, or the failing endpoints with why.
    pub fn snapshot(&self) -> Value {
        let failing = self.failing();
        if failing.is_empty() {
            return json!({ "ok": true });
        }
        let problems: Vec<Value> = failing
            .iter()
            .map(|(endpoint, f)| {
                let mut p = json!({
                    "endpoint": endpoint,
                    "reason": f.error.metric_label(),
                    "message": f.error.to_string(),
                    "secondsAgo": f.at.elapsed().as_secs(),
                });
                if let Some(role) = f.error.missing_role() {
                    p["role"] = json!(role);
                }
                p
            })
            .collect();
        json!({ "ok": false, "problems": problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xnat::XnatCall;

    /// A refused media type is named in `/readyz` as such, with the call's path.
    #[test]
    fn a_refusal_is_named_in_readyz() {
        let health = Health::default();
        let endpoint = "archive_spec";
        let e = XnatError::NotAcceptable {
            path: XnatCall::ArchiveSpec.path(),
            asked: XnatCall::ArchiveSpec.accept(),
            got: None,
        };
        health.failed(endpoint, &e);
        let ready = health.snapshot();
        let problem = ready["problems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["endpoint"] == endpoint)
            .unwrap()
            .clone();
        assert_eq!(problem["reason"], "not_acceptable");
        assert!(
            problem["message"]
                .as_str()
                .unwrap()
                .contains("/data/projects/{id}/archive_spec as text/xml (406 Not Acceptable)")
        );
        health.succeeded(endpoint);
        assert_eq!(health.snapshot(), json!({"ok": true}));
    }
}
