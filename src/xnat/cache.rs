//! The cache in front of XNAT. It exists to protect XNAT from spawn storms:
//! - one entry per XNAT user, fresh for `cacheTtl` ("no such user" for `negativeCacheTtl`);
//! - concurrent reviews for one user share one XNAT request; failures are not cached;
//! - the last good answer is kept for `staleIfError`, to stand in for XNAT during an outage when
//!   the policy says `onError: staleThenAllow`;
//! - with `refreshAhead`, an entry older than that is served at once and refreshed in the
//!   background, so users who start servers often never wait for XNAT.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use moka::Expiry;
use moka::future::Cache;
use tokio::time::Instant;

use super::index::{AccessIndex, Indexed};
use super::logins::{LoginDirectory, LoginMatch};
use super::memory::Failures;
use super::{XnatClient, XnatError};
pub use crate::access::CacheStatus;
use crate::access::{AccessOutcome, UserAccess};
use crate::archive::ArchiveSpec;
use crate::policy::{CacheShape, LiveSettings};
use crate::sharing::SharedExperiment;

#[derive(Clone)]
struct Entry {
    access: Arc<UserAccess>,
    fetched: Instant,
}

/// Per-entry lifetimes: answers about unknown users expire sooner. Read at insertion, so a
/// reloaded TTL applies to every answer fetched after it.
struct Lifetimes(Arc<ArcSwap<LiveSettings>>);

impl Lifetimes {
    fn of(&self, e: &Entry) -> Duration {
        let s = self.0.load();
        if e.access.unknown_user {
            s.negative_ttl
        } else {
            s.ttl
        }
    }
}

impl Expiry<String, Entry> for Lifetimes {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Entry,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.of(value))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Entry,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.of(value))
    }
}

/// `cacheTtl` as it is when an answer is stored (confirmations of public projects and shared
/// experiments).
struct LiveTtl(Arc<ArcSwap<LiveSettings>>);

impl<V> Expiry<String, V> for LiveTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        _value: &V,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.0.load().ttl)
    }
}

pub(super) struct Inner {
    client: ArcSwap<XnatClient>,
    /// Projects' accessibility (`public`, `protected`, `private`; `None`: XNAT does not show
    /// the project), fresh for `cacheTtl`.
    pub(super) accessibility: Cache<String, Option<Arc<str>>>,
    /// Experiments by id (`None`: XNAT does not know it), fresh for `cacheTtl`.
    pub(super) experiments: Cache<String, Option<Arc<SharedExperiment>>>,
    /// Projects' archive specs, fresh for `cacheTtl`; the last good one of each kept for
    /// `staleIfError`, to stand in while XNAT cannot say.
    pub(super) archive: Cache<String, Arc<ArchiveSpec>>,
    pub(super) last_archive: Option<Cache<String, Arc<ArchiveSpec>>>,
    /// Failed answers to the calls spawns share, remembered for a while ([`super::memory`]).
    pub(super) failures: Failures,
    /// The site's logins, for names XNAT has only in another case ([`super::logins`]).
    logins: LoginDirectory,
    fresh: Cache<String, Entry>,
    last_good: Option<Cache<String, Entry>>,
    pub(super) stale_if_error: Duration,
    pub(super) live: Arc<ArcSwap<LiveSettings>>,
    refreshing: Mutex<HashSet<String>>,
    /// The access index, when the policy turns it on ([`super::index`]).
    pub(super) index: Option<Arc<AccessIndex>>,
}

/// The cached XNAT access lookups; cheap to clone.
#[derive(Clone)]
pub struct AccessCache {
    pub(super) inner: Arc<Inner>,
}

impl AccessCache {
    pub fn new(client: XnatClient, shape: &CacheShape, live: LiveSettings) -> Self {
        let live = Arc::new(ArcSwap::from_pointee(live));
        let fresh = Cache::builder()
            .max_capacity(shape.capacity)
            .expire_after(Lifetimes(live.clone()))
            .build();
        let last_good = (!shape.stale_if_error.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(shape.capacity)
                .time_to_live(shape.stale_if_error)
                .build()
        });
        let accessibility = Cache::builder()
            .max_capacity(shape.capacity)
            .expire_after(LiveTtl(live.clone()))
            .build();
        let experiments = Cache::builder()
            .max_capacity(shape.capacity)
            .expire_after(LiveTtl(live.clone()))
            .build();
        let archive = Cache::builder()
            .max_capacity(shape.capacity)
            .expire_after(LiveTtl(live.clone()))
            .build();
        let last_archive = (!shape.stale_if_error.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(shape.capacity)
                .time_to_live(shape.stale_if_error)
                .build()
        });
        let index = shape
            .index
            .clone()
            .map(|settings| Arc::new(AccessIndex::new(settings, shape.ask_archive)));
        let cache = Self {
            inner: Arc::new(Inner {
                client: ArcSwap::from_pointee(client),
                accessibility,
                experiments,
                archive,
                last_archive,
                failures: Failures::default(),
                logins: LoginDirectory::default(),
                fresh,
                last_good,
                stale_if_error: shape.stale_if_error,
                live,
                refreshing: Mutex::default(),
                index,
            }),
        };
        cache.start_index_refresher();
        cache
    }

    /// Reads the index now and then every `refreshInterval` (sooner, every tenth of it, while
    /// refreshes fail), for as long as this cache is in use.
    fn start_index_refresher(&self) {
        let Some(index) = self.inner.index.clone() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(client) = inner.upgrade().map(|i| i.client.load_full()) else {
                    return;
                };
                // A refresh that left member lists unread is tried again as soon as a failed one.
                let ok = matches!(index.refresh(&client).await, Ok(true));
                drop(client);
                let every = index.settings().refresh_interval;
                tokio::time::sleep(if ok { every } else { every / 10 }).await;
            }
        });
    }

    /// The client in use now.
    /// The access index's state for `/readyz`, when the index is on.
    pub fn index_status(&self) -> Option<serde_json::Value> {
        Some(self.inner.index.as_ref()?.status())
    }

    pub fn client(&self) -> Arc<XnatClient> {
        self.inner.client.load_full()
    }

    /// Uses `client` for every request from now on (a reload changed timeouts, retries or
    /// concurrency), keeping every cached answer; returns the old client to close.
    pub fn replace_client(&self, client: XnatClient) -> Arc<XnatClient> {
        // What the old client was refused may be answered now.
        self.inner.failures.clear();
        self.inner.client.swap(Arc::new(client))
    }

    /// Applies reloaded TTLs, refresh-ahead and budget; cached answers stay.
    pub fn update(&self, settings: LiveSettings) {
        self.inner.live.store(Arc::new(settings));
    }

    /// The user's access, from the cache or from XNAT before `deadline`. With `allow_stale`, a
    /// failed lookup falls back to the last good answer younger than `staleIfError`.
    pub async fn lookup(
        &self,
        xnat_user: &str,
        deadline: Instant,
        allow_stale: bool,
    ) -> (AccessOutcome, CacheStatus) {
        let inner = &self.inner;
        let mut too_old = None;
        if let Some(index) = &inner.index {
            match index.user(xnat_user) {
                Indexed::Fresh(access) => {
                    return (AccessOutcome::Known(access), CacheStatus::Indexed);
                }
                Indexed::TooOld { access, age } => too_old = Some((access, age)),
                Indexed::Unlisted => {
                    if let Some(access) = inner.indexed_other_case(index, xnat_user).await {
                        return (AccessOutcome::Known(access), CacheStatus::Indexed);
                    }
                }
            }
        }
        match self.cached_or_fetched(xnat_user, deadline).await {
            Ok((entry, status)) => {
                // Another caller's review starts no background work at the API server's rank.
                if status == CacheStatus::Hit && !super::client::is_other_caller() {
                    self.maybe_refresh(xnat_user, &entry);
                }
                (AccessOutcome::Known(entry.access), status)
            }
            Err(error) => {
                if allow_stale
                    && let Some(last) = &inner.last_good
                    && let Some(old) = last.get(xnat_user).await
                {
                    let age = old.fetched.elapsed();
                    if age <= inner.stale_if_error {
                        return (
                            AccessOutcome::Stale {
                                access: old.access,
                                age,
                                error: error.to_string(),
                            },
                            CacheStatus::Stale,
                        );
                    }
                }
                // An index too old to answer may still stand in, within the same limit.
                if allow_stale
                    && let Some((access, age)) = too_old
                    && age <= inner.stale_if_error
                {
                    return (
                        AccessOutcome::Stale {
                            access,
                            age,
                            error: error.to_string(),
                        },
                        CacheStatus::Stale,
                    );
                }
                (
                    AccessOutcome::Unavailable(error.to_string()),
                    CacheStatus::Error,
                )
            }
        }
    }

    /// The user's cached entry, or one fetched now (and cached). The API server's reviews share
    /// one fetch per user; another caller's fetches on its own, as in
    /// [`super::confirm::shared_answer`], so the API server never waits at its rank.
    async fn cached_or_fetched(
        &self,
        xnat_user: &str,
        deadline: Instant,
    ) -> Result<(Entry, CacheStatus), Arc<XnatError>> {
        let inner = &self.inner;
        if !super::client::is_other_caller() {
            let e = (inner.fresh.entry_by_ref(xnat_user))
                .or_try_insert_with(inner.fetch(xnat_user, deadline))
                .await?;
            let status = if e.is_fresh() {
                CacheStatus::Miss
            } else {
                CacheStatus::Hit
            };
            return Ok((e.into_value(), status));
        }
        if let Some(e) = inner.fresh.get(xnat_user).await {
            return Ok((e, CacheStatus::Hit));
        }
        let e = inner.fetch(xnat_user, deadline).await.map_err(Arc::new)?;
        inner.fresh.insert(xnat_user.to_owned(), e.clone()).await;
        Ok((e, CacheStatus::Miss))
    }

    /// Starts a background refresh of an entry older than `refreshAhead`, once per user.
    fn maybe_refresh(&self, xnat_user: &str, entry: &Entry) {
        let Some(after) = self.inner.live.load().refresh_ahead else {
            return;
        };
        if entry.fetched.elapsed() < after {
            return;
        }
        {
            let mut refreshing = self
                .inner
                .refreshing
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !refreshing.insert(xnat_user.to_owned()) {
                return;
            }
        }
        let this = self.clone();
        let user = xnat_user.to_owned();
        tokio::spawn(async move {
            let inner = &this.inner;
            let deadline = Instant::now() + inner.live.load().budget;
            match inner.fetch(&user, deadline).await {
                Ok(e) => inner.fresh.insert(user.clone(), e).await,
                Err(e) => tracing::warn!(xnat_user = %user, error = %e, "refresh-ahead failed"),
            }
            inner
                .refreshing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&user);
        });
    }
}

impl Inner {
    /// The index's answer for the login a name was resolved to before (in another case), so
    /// such a user's revocations apply at the index's refresh, as anyone else's.
    async fn indexed_other_case(&self, index: &AccessIndex, name: &str) -> Option<Arc<UserAccess>> {
        let entry = self.fresh.get(name).await?;
        let login = entry.access.login.as_ref()?;
        let Indexed::Fresh(access) = index.user(login) else {
            return None;
        };
        Some(Arc::new(UserAccess {
            login: Some(login.clone()),
            ..(*access).clone()
        }))
    }

    async fn fetch(&self, xnat_user: &str, deadline: Instant) -> Result<Entry, super::XnatError> {
        let client = self.client.load_full();
        let mut access = client.user_access(xnat_user, deadline).await?;
        if access.unknown_user && client.resolves_login_case() {
            access = self
                .by_other_case(&client, xnat_user, access, deadline)
                .await?;
        }
        if !access.rejected.is_empty() {
            tracing::warn!(
                xnat_user,
                groups = ?access.rejected,
                "XNAT listed groups whose project id is not mountable; ignored"
            );
        }
        let entry = Entry {
            access: Arc::new(access),
            fetched: Instant::now(),
        };
        if let Some(last) = &self.last_good {
            last.insert(xnat_user.to_owned(), entry.clone()).await;
        }
        Ok(entry)
    }

    /// The access of the one XNAT login equal to `name` but for case, XNAT having none equal to
    /// it (`unknown`); still unknown, naming them, when several are. The site's login list
    /// says which; while it cannot be read, the access index's logins do.
    async fn by_other_case(
        &self,
        client: &XnatClient,
        name: &str,
        unknown: UserAccess,
        deadline: Instant,
    ) -> Result<UserAccess, super::XnatError> {
        let live = self.live.load_full();
        let found = match self
            .logins
            .matching(
                name,
                client,
                &self.failures,
                (&live, self.stale_if_error),
                deadline,
            )
            .await
        {
            Ok(found) => found,
            Err(e) => match &self.index {
                Some(index) => LoginMatch::among(name, index.logins().iter().map(String::as_str)),
                None => return Err(e),
            },
        };
        match found {
            LoginMatch::None => Ok(unknown),
            LoginMatch::Several(logins) => {
                tracing::warn!(
                    xnat_user = name,
                    ?logins,
                    "XNAT has several logins equal to this name but for case; none is used"
                );
                Ok(UserAccess {
                    ambiguous_logins: logins,
                    ..unknown
                })
            }
            LoginMatch::One(login) => {
                let indexed = self.index.as_ref().map(|i| i.user(&login));
                let mut access = match indexed {
                    Some(Indexed::Fresh(access)) => (*access).clone(),
                    _ => client.user_access(&login, deadline).await?,
                };
                tracing::info!(
                    xnat_user = name,
                    login,
                    "XNAT login differs from the name in case"
                );
                access.login = Some(login);
                Ok(access)
            }
        }
    }
}
