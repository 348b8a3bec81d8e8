//! Failed answers to the calls many spawns share — a project's archive spec or accessibility, an
//! experiment, the site's logins — remembered per call and item for a while, so an XNAT that
//! refuses one (a 406, a 403, an answer that cannot be used) is not asked again by every spawn:
//! with archive_spec refused, 20 spawns of a user in 4 projects made 80 calls.
//!
//! A refusal is remembered for `negativeCacheTtl`, doubling with each further one up to
//! `cacheTtl`; a transient failure (timeout, connection, 5xx) for a second, doubling up to
//! `negativeCacheTtl`. A success forgets. What the caller does with the failure (a last good
//! answer standing in, the item left out with a warning) is the same whether it was remembered
//! or new. A user's own lookups are not remembered: each spawn asks again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{XnatCall, XnatError};
use crate::policy::LiveSettings;

/// Most failures remembered; past it, new ones are not (the oldest expire first).
const MAX_REMEMBERED: usize = 4096;

struct Failure {
    error: XnatError,
    until: Instant,
    streak: u32,
}

/// The remembered failures of one cache.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<(XnatCall, String), Failure>>);

impl Failures {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(XnatCall, String), Failure>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The failure of `call` for `item`, while it is remembered.
    pub fn recall(&self, call: XnatCall, item: &str) -> Option<XnatError> {
        let map = self.lock();
        let f = map.get(&(call, item.to_owned()))?;
        (Instant::now() < f.until).then(|| f.error.clone())
    }

    /// Remembers a failure that is XNAT's answer about the item, for longer the more often it
    /// recurs. The webhook's own trouble — no request slot free, credentials refused or
    /// unreadable (a rotation in progress), a session XNAT rejected — says nothing of the item
    /// and is not remembered.
    pub fn failed(&self, call: XnatCall, item: &str, error: &XnatError, live: &LiveSettings) {
        if !is_about_the_item(error) {
            return;
        }
        let (base, cap) = if error.is_transient() {
            (
                Duration::from_secs(1).min(live.negative_ttl),
                live.negative_ttl,
            )
        } else {
            (live.negative_ttl, live.ttl)
        };
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_REMEMBERED {
            map.retain(|_, f| now < f.until);
        }
        let key = (call, item.to_owned());
        let streak = map.get(&key).map_or(0, |f| f.streak).saturating_add(1);
        if map.len() >= MAX_REMEMBERED && !map.contains_key(&key) {
            return;
        }
        let wait = base
            .saturating_mul(1 << (streak - 1).min(16))
            .min(cap.max(base));
        map.insert(
            key,
            Failure {
                error: error.clone(),
                until: now + wait,
                streak,
            },
        );
    }

    /// Forgets every failure: how XNAT is reached changed.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Forgets a failure: XNAT answered.
    pub fn succeeded(&self, call: XnatCall, item: &str) {
        let mut map = self.lock();
        if !map.is_empty() {
            map.remove(&(call, item.to_owned()));
        }
    }

    /// Runs `ask` unless a failure of `call` for `item` is remembered, and remembers how it went.
    pub async fn ask<T>(
        &self,
        call: XnatCall,
        item: &str,
        live: &LiveSettings,
        ask: impl Future<Output = Result<T, XnatError>>,
    ) -> Result<T, XnatError> {
        if let Some(e) = self.recall(call, item) {
            return Err(e);
        }
        let answer = ask.await;
        match &answer {
            Ok(_) => self.succeeded(call, item),
            Err(e) => self.failed(call, item, e, live),
        }
        answer
    }
}

/// Whether a failure is XNAT's answer about the item asked (or XNAT's own trouble answering it).
fn is_about_the_item(error: &XnatError) -> bool {
    match error {
        XnatError::NotAcceptable { .. }
        | XnatError::MissingRole { .. }
        | XnatError::WrongAnswer { .. }
        | XnatError::BadJson(_)
        | XnatError::TooLarge { .. }
        | XnatError::Status(_)
        | XnatError::Timeout(_)
        | XnatError::Connect(_) => true,
        XnatError::Busy
        | XnatError::BadCredentials(_)
        | XnatError::Credentials(_)
        | XnatError::Html
        | XnatError::Request(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> LiveSettings {
        LiveSettings {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
            refresh_ahead: None,
            budget: Duration::from_secs(4),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_remembered_longer_each_time_up_to_the_cache_ttl() {
        let f = Failures::default();
        let refused = XnatError::Status(406);
        let mut waits = Vec::new();
        for _ in 0..5 {
            f.failed(XnatCall::ArchiveSpec, "ALPHA", &refused, &live());
            let start = Instant::now();
            while f.recall(XnatCall::ArchiveSpec, "ALPHA").is_some() {
                tokio::time::advance(Duration::from_secs(1)).await;
            }
            waits.push((Instant::now() - start).as_secs());
        }
        assert_eq!(waits, [10, 20, 40, 60, 60]);
        assert!(f.recall(XnatCall::ArchiveSpec, "BETA").is_none());
        assert!(f.recall(XnatCall::Accessibility, "ALPHA").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_remembered_briefly_and_a_success_forgets() {
        let f = Failures::default();
        f.failed(
            XnatCall::ArchiveSpec,
            "ALPHA",
            &XnatError::Status(503),
            &live(),
        );
        assert!(f.recall(XnatCall::ArchiveSpec, "ALPHA").is_some());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(f.recall(XnatCall::ArchiveSpec, "ALPHA").is_none());
        f.failed(
            XnatCall::ArchiveSpec,
            "ALPHA",
            &XnatError::Status(503),
            &live(),
        );
        f.succeeded(XnatCall::ArchiveSpec, "ALPHA");
        assert!(f.recall(XnatCall::ArchiveSpec, "ALPHA").is_none());
    }
}
