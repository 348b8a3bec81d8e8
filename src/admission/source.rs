//! Where a user's access and launch context come from: XNAT through the cache, or a fixed table
//! (the offline `review` tool and in-process tests, which run the same admission code).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use crate::access::{AccessOutcome, UserAccess};
use crate::archive::ProjectRoots;
use crate::launch::UserOptions;
use crate::policy::Policy;
use crate::sharing::{Asks, Confirmed};
use crate::xnat::health::Health;
use crate::xnat::{AccessCache, CacheStatus, CredentialSource, XnatClient, XnatError};

#[derive(Clone)]
pub enum AccessSource {
    /// XNAT, through the cache.
    Xnat(AccessCache),
    /// A fixed table: XNAT username → access. Users not in it are unknown to XNAT.
    /// A fixed access table, and the launch context every server has (`review --user-options`).
    Static(
        Arc<HashMap<String, Arc<UserAccess>>>,
        Option<Arc<UserOptions>>,
    ),
}

impl AccessSource {
    /// A cached XNAT client built from the policy's `xnat` section, recording what fails in
    /// `health` (the webhook's one [`Health`], kept across reloads).
    pub fn xnat(
        policy: &Policy,
        credentials: CredentialSource,
        health: Arc<Health>,
    ) -> Result<Self, XnatError> {
        let x = &policy.xnat;
        let client = XnatClient::new(x.endpoint.clone(), credentials, x.client.clone(), health)?;
        Ok(Self::Xnat(AccessCache::new(
            client,
            &x.cache,
            x.live.clone(),
        )))
    }

    pub(super) async fn lookup(
        &self,
        xnat_user: &str,
        deadline: Instant,
        allow_stale: bool,
    ) -> (AccessOutcome, CacheStatus) {
        match self {
            AccessSource::Xnat(cache) => cache.lookup(xnat_user, deadline, allow_stale).await,
            AccessSource::Static(table, _) => {
                let access = table
                    .get(xnat_user)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(UserAccess::unknown()));
                (AccessOutcome::Known(access), CacheStatus::Hit)
            }
        }
    }

    pub(super) async fn user_options(
        &self,
        xnat_user: &str,
        server_name: &str,
        deadline: Instant,
    ) -> Result<Option<UserOptions>, XnatError> {
        match self {
            AccessSource::Xnat(cache) => {
                cache
                    .client()
                    .user_options(xnat_user, server_name, deadline)
                    .await
            }
            AccessSource::Static(_, launch) => Ok(launch.as_deref().cloned()),
        }
    }

    /// What XNAT confirms for a launch beyond the user's projects; nothing from a fixed table.
    pub(super) async fn confirm(&self, asks: &Asks, deadline: Instant) -> Confirmed {
        match self {
            AccessSource::Xnat(cache) => cache.confirm(asks, deadline).await,
            AccessSource::Static(..) => Confirmed::NONE,
        }
    }

    /// Where each project keeps its files; every project at the site archive for a table.
    pub(super) async fn project_roots(
        &self,
        projects: &[&str],
        site_archive: &str,
        deadline: Instant,
    ) -> ProjectRoots {
        match self {
            AccessSource::Xnat(cache) => {
                cache.project_roots(projects, site_archive, deadline).await
            }
            AccessSource::Static(..) => ProjectRoots::SITE,
        }
    }

    /// `/readyz`'s `xnat` member: what is failing, and the access index when there is one.
    pub(super) fn readiness(&self) -> serde_json::Value {
        let AccessSource::Xnat(cache) = self else {
            return serde_json::json!({ "ok": true });
        };
        let mut xnat = cache.client().health().snapshot();
        if let Some(index) = cache.index_status() {
            xnat["index"] = index;
        }
        xnat
    }

    pub(super) async fn close(&self) {
        if let AccessSource::Xnat(cache) = self {
            cache.client().close().await;
        }
    }
}
