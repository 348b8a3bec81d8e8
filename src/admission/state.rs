//! The state every review reads once — the policy and the access source built for it — and the
//! rules for replacing it on a reload, derived from which XNAT settings changed
//! ([`crate::policy::XnatPolicy::change_to`]).

use std::sync::Arc;

use super::{AccessSource, Admission};
use crate::policy::{Policy, XnatChange};
use crate::xnat::{XnatClient, XnatError};

/// What one review reads: a policy and the access source built for it, swapped together.
pub(super) struct State {
    pub(super) policy: Arc<Policy>,
    pub(super) access: AccessSource,
}

impl Admission {
    /// Makes `policy` the one every following review uses. Reviews in flight finish with the
    /// policy they started with: each review reads the policy and its access source once.
    /// Another XNAT or another cache shape gets a new client and cache; other timeouts, retries
    /// or concurrency a new client with every cached answer kept; live settings apply in place.
    /// A replaced client's session is closed once no review can still be using it.
    pub fn apply_policy(&self, policy: Policy) -> Result<(), XnatError> {
        let current = self.state.load_full();
        let new = &policy.xnat;
        let change = current.policy.xnat.change_to(new);
        let mut retired: Option<Arc<XnatClient>> = None;
        let access = match (&current.access, &self.credentials, change) {
            (AccessSource::Xnat(cache), Some(credentials), XnatChange::NewCache) => {
                tracing::info!(xnat = %new.endpoint.url, "policy changes which XNAT answers or how it is cached; new client and cache");
                let old = cache.client();
                let access = AccessSource::xnat(&policy, credentials.clone(), old.health())?;
                // The same XNAT is still working on the old client's calls.
                if let AccessSource::Xnat(fresh) = &access
                    && current.policy.xnat.endpoint.url == new.endpoint.url
                {
                    fresh.client().take_over_calls(&old);
                }
                retired = Some(old);
                access
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
                        cache.client().health(),
                    )?;
                    client.take_over_calls(&cache.client());
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
            tokio::spawn(async move {
                tokio::time::sleep(crate::timeouts::CLIENT_RETIREMENT).await;
                old.close().await;
            });
        }
        Ok(())
    }
}
