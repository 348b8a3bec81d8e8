//! The cache in front of XNAT: one entry per XNAT user for the policy's TTL. Concurrent reviews
//! for one user share one XNAT request; failures are not cached.

use std::sync::Arc;

use moka::future::Cache;

use super::XnatClient;
use crate::access::{AccessOutcome, UserAccess};
use crate::policy::XnatPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from the cache, or by a request another review had already started.
    Hit,
    /// This review asked XNAT.
    Miss,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
        }
    }
}

pub struct AccessCache {
    client: XnatClient,
    cache: Cache<String, Arc<UserAccess>>,
}

impl AccessCache {
    pub fn new(client: XnatClient, policy: &XnatPolicy) -> Self {
        let cache = Cache::builder()
            .max_capacity(policy.cache_capacity)
            .time_to_live(policy.cache_ttl)
            .build();
        Self { client, cache }
    }

    pub fn client(&self) -> &XnatClient {
        &self.client
    }

    /// The user's access, from the cache or from XNAT.
    pub async fn lookup(&self, xnat_user: &str) -> (AccessOutcome, CacheStatus) {
        let entry = self
            .cache
            .entry_by_ref(xnat_user)
            .or_try_insert_with(async {
                let access = self.client.user_access(xnat_user).await?;
                if !access.rejected.is_empty() {
                    tracing::warn!(
                        xnat_user,
                        groups = ?access.rejected,
                        "XNAT listed groups whose project id is not mountable; ignored"
                    );
                }
                Ok::<_, super::XnatError>(Arc::new(access))
            })
            .await;
        match entry {
            Ok(e) => {
                let status = if e.is_fresh() {
                    CacheStatus::Miss
                } else {
                    CacheStatus::Hit
                };
                (AccessOutcome::Known(e.into_value()), status)
            }
            Err(e) => (AccessOutcome::Unavailable(e.to_string()), CacheStatus::Miss),
        }
    }
}
