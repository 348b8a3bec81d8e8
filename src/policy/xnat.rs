//! `xnat`: where XNAT is and how it is asked. The validated form is built from the structs that
//! use it — [`Endpoint`], [`ClientSettings`], [`CacheShape`], [`LiveSettings`] — so what a reload
//! must rebuild is derived from which of them changed ([`XnatPolicy::change_to`]), not kept by
//! hand.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PolicyError, invalid};
use crate::access::PROJECT_ROLES;
use crate::echo::without_url_credentials;
use crate::timeouts::{MAX_XNAT_BUDGET, MAX_XNAT_TIMEOUT};

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    /// Admit the pod without project mounts, with a warning.
    Allow,
    /// Use a cached answer younger than `staleIfError` (with a warning); without one, allow.
    StaleThenAllow,
    /// Refuse the pod; the user sees `denyMessage` in JupyterHub's spawn error.
    Deny,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ProjectSource {
    /// `GET /xapi/users/{user}/groups` (the user themself or an admin may call it).
    Groups,
    /// `GET /xapi/access/{user}/projects` (admin only).
    Access,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct XnatFile {
    /// XNAT base URL, context path included (`http://xnat-web.xnat.svc/xnat`).
    pub url: String,
    /// PEM file of extra CAs to trust for an https XNAT (besides the system's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Which endpoint lists a user's projects.
    pub project_source: ProjectSource,
    /// Timeout of one XNAT request, connect included.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// All the time one admission may spend on XNAT: queueing, login, retries. Must stay well
    /// under the webhook's own timeout (10s in deploy/).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub budget: Duration,
    /// How many XNAT requests may be in flight at once; more wait in a queue. A request counts
    /// until XNAT has finished with it, timed-out ones included (for at most 30s).
    pub max_concurrent_requests: usize,
    /// The fewest requests allowed at once while XNAT is struggling: the limit halves on
    /// timeouts and 5xx answers, down to this, and grows back to `maxConcurrentRequests`.
    /// Default 2 (or `maxConcurrentRequests` when that is 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_concurrent_requests: Option<usize>,
    /// Extra tries of a GET after a connection error or 5xx, inside `budget`; never after a
    /// timeout, nor while XNAT is timing out.
    pub retries: u32,
    /// First backoff between tries (doubled each time, with jitter).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_backoff: Duration,
    /// How long a user's project list is reused.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub cache_ttl: Duration,
    /// How long "XNAT has no such user" (404) is reused.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub negative_cache_ttl: Duration,
    /// With `onError: staleThenAllow`, the oldest cached answer that may stand in for XNAT.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stale_if_error: Duration,
    /// When set, a cached answer older than this is served and refreshed in the background.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub refresh_ahead: Option<Duration>,
    /// How many users' project lists are kept.
    pub cache_capacity: u64,
    /// Project group roles that grant a mount (`{project}_{role}`): XNAT's standard groups
    /// `owner`, `member`, `collaborator` (custom groups never do).
    pub roles: Vec<String>,
    /// What to do when XNAT cannot be asked.
    pub on_error: OnError,
    /// The message a user sees when `onError: deny` refuses their pod.
    pub deny_message: String,
    /// XNAT's site archive path (Administer > Site Administration > File System), as XNAT sees
    /// it: a project whose own archive path is elsewhere is mounted through
    /// `userOptions.pathMappings`, or not at all.
    pub archive_path: String,
    /// Ask XNAT where each mounted project's files are (`/data/projects/{ID}/archive_spec`,
    /// cached per project like the project lists), so a project with its own archive path is
    /// never mounted from `{archivePath}/{ID}`. `false` when no project has one.
    pub ask_project_archive_paths: bool,
    /// The access index: every project membership of the site, read in the background, so
    /// spawns are answered with no XNAT call (off by default).
    pub index: IndexFile,
}

/// `xnat.index`: read every membership of the site in the background (as a site
/// Administrator: `/data/projects` and `/data/projects/{ID}/users`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IndexFile {
    /// Answer spawns from the index (users it does not list are still looked up one by one).
    pub enabled: bool,
    /// How often the whole site is read again: the longest a revoked membership still mounts
    /// (plus the time one refresh takes).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub refresh_interval: Duration,
    /// An index older than this (its refreshes failing) is not used for spawns: they fall back
    /// to per-user lookups, and to the index only as a stale answer under
    /// `onError: staleThenAllow`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_age: Duration,
    /// XNAT calls one refresh makes at once (out of `maxConcurrentRequests`, so spawns keep
    /// the rest).
    pub concurrency: usize,
}

impl Default for IndexFile {
    fn default() -> Self {
        Self {
            enabled: false,
            refresh_interval: Duration::from_secs(300),
            max_age: Duration::from_secs(900),
            concurrency: 2,
        }
    }
}

/// The validated `xnat.index`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSettings {
    pub refresh_interval: Duration,
    pub max_age: Duration,
    pub concurrency: usize,
}

impl IndexFile {
    fn validate(&self, max_concurrent: usize) -> Result<Option<IndexSettings>, PolicyError> {
        if !self.enabled {
            return Ok(None);
        }
        if self.refresh_interval < Duration::from_secs(1)
            || self.refresh_interval > Duration::from_secs(24 * 3600)
        {
            return Err(invalid(
                "xnat.index.refreshInterval",
                "must be between 1s and 24h",
            ));
        }
        if self.max_age <= self.refresh_interval || self.max_age > Duration::from_secs(7 * 86400) {
            return Err(invalid(
                "xnat.index.maxAge",
                "must be longer than xnat.index.refreshInterval and at most 7 days",
            ));
        }
        if self.concurrency == 0 || self.concurrency > max_concurrent {
            return Err(invalid(
                "xnat.index.concurrency",
                "must be at least 1 and at most xnat.maxConcurrentRequests",
            ));
        }
        Ok(Some(IndexSettings {
            refresh_interval: self.refresh_interval,
            max_age: self.max_age,
            concurrency: self.concurrency,
        }))
    }
}

impl Default for XnatFile {
    fn default() -> Self {
        Self {
            url: "http://xnat-web.xnat.svc.cluster.local".into(),
            ca_file: None,
            project_source: ProjectSource::Groups,
            timeout: Duration::from_secs(2),
            budget: Duration::from_secs(4),
            max_concurrent_requests: 16,
            min_concurrent_requests: None,
            retries: 2,
            retry_backoff: Duration::from_millis(100),
            cache_ttl: Duration::from_secs(60),
            negative_cache_ttl: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(600),
            refresh_ahead: None,
            cache_capacity: 10_000,
            roles: vec!["owner".into(), "member".into(), "collaborator".into()],
            on_error: OnError::Allow,
            deny_message: "XNAT is not reachable, so your project data cannot be attached. \
                           Please try again in a few minutes."
                .into(),
            archive_path: "/data/xnat/archive".into(),
            ask_project_archive_paths: true,
            index: IndexFile::default(),
        }
    }
}

/// The validated `xnat` section.
#[derive(Debug, Clone)]
pub struct XnatPolicy {
    pub endpoint: Endpoint,
    pub client: ClientSettings,
    pub cache: CacheShape,
    pub live: LiveSettings,
    /// Roles that grant a mount. Read at decision time: cached answers keep every role.
    pub roles: Vec<String>,
    pub on_error: OnError,
    pub deny_message: String,
    /// Absolute, as written.
    pub archive_path: String,
    pub ask_project_archive_paths: bool,
}

/// Which XNAT answers, and what its answers mean. Cached answers belong to one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: Url,
    /// Extra CAs (PEM) to trust for an https XNAT.
    pub ca_file: Option<PathBuf>,
    pub project_source: ProjectSource,
    /// A name XNAT does not have is looked for in another case (`identity.resolveLoginCase`).
    pub resolve_login_case: bool,
}

/// How the client talks to XNAT: fixed for one client's life.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    pub timeout: Duration,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub max_concurrent_requests: usize,
    pub min_concurrent_requests: usize,
}

/// The cache's fixed shape (a moka cache's capacity and lifetime are set when it is built).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheShape {
    pub capacity: u64,
    /// How long the last good answer of each user is kept; zero keeps none.
    pub stale_if_error: Duration,
    /// The access index, when on.
    pub index: Option<IndexSettings>,
    /// Whether projects' archive specs are asked (and read into the index).
    pub ask_archive: bool,
}

/// What a reload changes in place: lifetimes of answers fetched from then on, refresh-ahead and
/// each admission's XNAT budget.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSettings {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub refresh_ahead: Option<Duration>,
    pub budget: Duration,
}

/// What a new policy needs from the running XNAT client and cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XnatChange {
    /// Another XNAT, answers that mean something else, or another cache shape.
    NewCache,
    /// The same XNAT reached differently: a new client, every cached answer kept.
    NewClient,
    /// Only live settings (or nothing) changed.
    InPlace,
}

impl XnatPolicy {
    /// What moving from this policy to `new` needs.
    pub fn change_to(&self, new: &XnatPolicy) -> XnatChange {
        if self.endpoint != new.endpoint || self.cache != new.cache {
            XnatChange::NewCache
        } else if self.client != new.client {
            XnatChange::NewClient
        } else {
            XnatChange::InPlace
        }
    }
}

impl XnatFile {
    /// Checks every field, in the documented order (a policy with several mistakes is told about
    /// the first), then builds the settings structs.
    pub(super) fn validate(self) -> Result<XnatPolicy, PolicyError> {
        let url = self.check_url()?;
        self.check_requests()?;
        self.check_cache()?;
        if let Some((i, r)) = self
            .roles
            .iter()
            .enumerate()
            .find(|(_, r)| !PROJECT_ROLES.contains(&r.as_str()))
        {
            // Custom groups' ids can read as another project's standard groups, and their
            // permissions are the site's own: only XNAT's standard groups grant a mount.
            return Err(invalid(
                format!("xnat.roles[{i}]"),
                format!("{r:?} is not one of XNAT's project roles (owner, member, collaborator)"),
            ));
        }
        if self.deny_message.trim().is_empty() {
            return Err(invalid("xnat.denyMessage", "must not be empty"));
        }
        if self.ca_file.as_deref().is_some_and(|p| !p.starts_with('/')) {
            return Err(invalid("xnat.caFile", "must be an absolute path"));
        }
        crate::names::check_abs_path(self.archive_path.trim_end_matches('/'))
            .map_err(|m| invalid("xnat.archivePath", m))?;
        Ok(XnatPolicy {
            endpoint: Endpoint {
                url,
                ca_file: self.ca_file.map(Into::into),
                project_source: self.project_source,
                resolve_login_case: true,
            },
            client: ClientSettings {
                timeout: self.timeout,
                retries: self.retries,
                retry_backoff: self.retry_backoff,
                max_concurrent_requests: self.max_concurrent_requests,
                min_concurrent_requests: self
                    .min_concurrent_requests
                    .unwrap_or(self.max_concurrent_requests.min(2)),
            },
            cache: CacheShape {
                capacity: self.cache_capacity,
                stale_if_error: self.stale_if_error,
                index: self.index.validate(self.max_concurrent_requests)?,
                ask_archive: self.ask_project_archive_paths,
            },
            live: LiveSettings {
                ttl: self.cache_ttl,
                negative_ttl: self.negative_cache_ttl,
                refresh_ahead: self.refresh_ahead,
                budget: self.budget,
            },
            roles: self.roles,
            on_error: self.on_error,
            deny_message: self.deny_message,
            archive_path: self.archive_path,
            ask_project_archive_paths: self.ask_project_archive_paths,
        })
    }

    fn check_url(&self) -> Result<Url, PolicyError> {
        // Never echo credentials a mistaken URL may carry: the error reaches /readyz. One that
        // does not parse is not shown at all when it has an `@`.
        let url = Url::parse(&self.url).map_err(|e| {
            let shown = if self.url.contains('@') {
                "(not shown: it has an `@`, so it may hold credentials)".to_owned()
            } else {
                format!("{:?}", without_url_credentials(&self.url))
            };
            invalid("xnat.url", format!("{shown}: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("xnat.url", "must be an http:// or https:// URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "xnat.url",
                "must not contain credentials; they come from the mounted credentials file",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
            return Err(invalid(
                "xnat.url",
                "must be a plain base URL (no query or fragment)",
            ));
        }
        Ok(url)
    }

    /// One request's timeout, the admission's budget, concurrency and retries.
    fn check_requests(&self) -> Result<(), PolicyError> {
        if self.timeout < Duration::from_millis(50) || self.timeout > MAX_XNAT_TIMEOUT {
            return Err(invalid(
                "xnat.timeout",
                format!(
                    "must be between 50ms and {}",
                    humantime::format_duration(MAX_XNAT_TIMEOUT)
                ),
            ));
        }
        if self.budget < self.timeout || self.budget > MAX_XNAT_BUDGET {
            return Err(invalid(
                "xnat.budget",
                format!(
                    "must be at least xnat.timeout and at most {}",
                    humantime::format_duration(MAX_XNAT_BUDGET)
                ),
            ));
        }
        if self.max_concurrent_requests == 0 || self.max_concurrent_requests > 1024 {
            return Err(invalid(
                "xnat.maxConcurrentRequests",
                "must be between 1 and 1024",
            ));
        }
        if let Some(min) = self.min_concurrent_requests
            && (min == 0 || min > self.max_concurrent_requests)
        {
            return Err(invalid(
                "xnat.minConcurrentRequests",
                "must be at least 1 and at most xnat.maxConcurrentRequests",
            ));
        }
        if self.retries > 10 {
            return Err(invalid("xnat.retries", "must be at most 10"));
        }
        if self.retry_backoff > Duration::from_secs(2) {
            return Err(invalid("xnat.retryBackoff", "must be at most 2s"));
        }
        Ok(())
    }

    /// Lifetimes of cached answers, stale answers, refresh-ahead and capacity.
    fn check_cache(&self) -> Result<(), PolicyError> {
        if self.cache_ttl < Duration::from_secs(1)
            || self.cache_ttl > Duration::from_secs(24 * 3600)
        {
            return Err(invalid("xnat.cacheTtl", "must be between 1s and 24h"));
        }
        if self.negative_cache_ttl.is_zero() || self.negative_cache_ttl > self.cache_ttl {
            return Err(invalid(
                "xnat.negativeCacheTtl",
                "must be more than 0 and at most xnat.cacheTtl",
            ));
        }
        if self.stale_if_error > Duration::from_secs(7 * 24 * 3600) {
            return Err(invalid("xnat.staleIfError", "must be at most 7 days"));
        }
        if self.on_error == OnError::StaleThenAllow && self.stale_if_error <= self.cache_ttl {
            return Err(invalid(
                "xnat.staleIfError",
                "must be longer than xnat.cacheTtl for onError: staleThenAllow to use anything",
            ));
        }
        if let Some(r) = self.refresh_ahead
            && (r.is_zero() || r >= self.cache_ttl)
        {
            return Err(invalid(
                "xnat.refreshAhead",
                "must be more than 0 and less than xnat.cacheTtl",
            ));
        }
        if self.cache_capacity == 0 {
            return Err(invalid("xnat.cacheCapacity", "must be at least 1"));
        }
        Ok(())
    }
}
