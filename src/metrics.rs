//! Prometheus metrics, served as text on the separate plain-HTTP metrics port (`/metrics`).
//!
//! One process-wide registry: the webhook is one server per process, and recording from deep in
//! the XNAT client or the reloaders needs no handle threaded through every call.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `mutated`, `unchanged`, `skipped`, `denied`, `audited` or `errored`.
    pub outcome: &'static str,
    /// Why a pod was skipped (`not_notebook_pod`, `requester_not_allowed`, …); empty otherwise.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct XnatLabels {
    /// `login`, `logout`, `groups`, `access`, `user_options`.
    pub endpoint: &'static str,
    /// The HTTP status, or `timeout`, `connect`, `error`.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct XnatFailureLabels {
    pub endpoint: &'static str,
    /// `bad_credentials` (401: the password), `missing_role` (403: the account's role),
    /// `not_acceptable` (406, or a media type not read), `wrong_answer` (not about what was
    /// asked), `timeout`, `connect`, `status`, `html`, `bad_json`, `too_large`, `busy`,
    /// `request`, `credentials_file`: [`crate::xnat::XnatError::metric_label`].
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit`, `miss`, `stale`, `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `policy` or `certificate`.
    pub input: &'static str,
    /// `success` or `failure`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `webhook` or `metrics`.
    pub port: &'static str,
    /// `per_address` (the address holds the most one may) or `busy` (every slot is busy).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictedLabels {
    /// `webhook`, `metrics` or `probes`.
    pub port: &'static str,
    /// What it was doing: `unused` (no request yet: a handshake), `stalled` (a request that
    /// stopped arriving) or `idle` (a served keep-alive connection).
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    /// The git commit built (`GIT_COMMIT` at build time, else `git rev-parse`), or `unknown`.
    pub commit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The short content hash `/readyz` and the pods' status annotation show.
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `created`, `updated` (a repeat counted into the Event already posted) or `failed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabels {
    /// `queue_full` (the API server is slower than admissions) or `rate_limited`.
    pub reason: &'static str,
}

#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// From 50 µs (a cached review) to 10 s (the API server's timeout).
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

struct Metrics {
    registry: Registry,
    admissions: Family<AdmissionLabels, Counter>,
    admission_seconds: Histogram,
    xnat_requests: Family<XnatLabels, Counter>,
    xnat_seconds: Family<EndpointLabels, Histogram, Buckets>,
    xnat_failures: Family<XnatFailureLabels, Counter>,
    cache: Family<CacheLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    evicted: Family<EvictedLabels, Counter>,
    ops: Operations,
    load: XnatLoad,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IndexLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// What the webhook asks of XNAT as a whole: the adaptive call limit and the access index.
struct XnatLoad {
    concurrency_limit: Gauge,
    in_flight: Gauge,
    index_users: Gauge,
    index_projects: Gauge,
    index_refreshed: Gauge,
    index_refreshes: Family<IndexLabels, Counter>,
}

impl XnatLoad {
    fn register(r: &mut Registry) -> Self {
        Self {
            concurrency_limit: registered(
                r,
                "xnat_concurrency_limit",
                "XNAT calls allowed at once now (shrinks on timeouts and 5xx, grows back on \
                 answers, within xnat.minConcurrentRequests..maxConcurrentRequests)",
                Gauge::default(),
            ),
            in_flight: registered(
                r,
                "xnat_in_flight",
                "XNAT calls XNAT is working on, timed-out ones it has not finished included",
                Gauge::default(),
            ),
            index_users: registered(
                r,
                "xnat_index_users",
                "Users in the access index (0 when it is off or not built yet)",
                Gauge::default(),
            ),
            index_projects: registered(
                r,
                "xnat_index_projects",
                "Projects in the access index",
                Gauge::default(),
            ),
            index_refreshed: registered(
                r,
                "xnat_index_refreshed_timestamp_seconds",
                "When the access index in use was read from XNAT, in seconds since the Unix \
                 epoch (0: none yet); its age is time() minus this",
                Gauge::default(),
            ),
            index_refreshes: registered(
                r,
                "xnat_index_refreshes",
                "Refreshes of the access index, by result",
                Family::default(),
            ),
        }
    }
}

/// What an operator reads besides the traffic: the build, the certificate, the policy, Events.
struct Operations {
    certificate_expiry: Gauge,
    policy_info: Family<PolicyLabels, Gauge>,
    events: Family<EventLabels, Counter>,
    events_dropped: Family<DroppedLabels, Counter>,
}

impl Operations {
    fn register(r: &mut Registry) -> Self {
        let build_info = registered(
            r,
            "build_info",
            "The running build: always 1, with its version and commit",
            Family::<BuildLabels, Gauge>::default(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: env!("JXW_COMMIT"),
            })
            .set(1);
        Self {
            certificate_expiry: registered(
                r,
                "certificate_expiry_timestamp_seconds",
                "When the serving certificate in use expires (notAfter), in seconds since the \
                 Unix epoch",
                Gauge::default(),
            ),
            policy_info: registered(
                r,
                "policy_info",
                "The policy in use: always 1, with its content hash",
                Family::default(),
            ),
            events: registered(
                r,
                "events",
                "Kubernetes Events about notebook pods sent to the API server, by result",
                Family::default(),
            ),
            events_dropped: registered(
                r,
                "events_dropped",
                "Kubernetes Events not sent, by reason",
                Family::default(),
            ),
        }
    }
}

/// Registers `metric` under `name` and hands it back.
fn registered<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("xnat_webhook");
        let r = &mut registry;
        Metrics {
            admissions: registered(
                r,
                "admissions",
                "Admission reviews answered, by outcome",
                Family::default(),
            ),
            admission_seconds: registered(
                r,
                "admission_duration_seconds",
                "Time to answer one admission review",
                Histogram::new(LATENCY_BUCKETS.iter().copied()),
            ),
            xnat_requests: registered(
                r,
                "xnat_requests",
                "XNAT requests, by endpoint and HTTP status",
                Family::default(),
            ),
            xnat_seconds: registered(
                r,
                "xnat_request_duration_seconds",
                "Time of one XNAT request",
                Family::new_with_constructor(Buckets(LATENCY_BUCKETS)),
            ),
            xnat_failures: registered(
                r,
                "xnat_failures",
                "XNAT lookups that failed after retries, by endpoint and reason",
                Family::default(),
            ),
            cache: registered(
                r,
                "xnat_cache_lookups",
                "Access lookups, by cache result",
                Family::default(),
            ),
            reloads: registered(
                r,
                "reloads",
                "Reloads of the policy and the certificate, by result",
                Family::default(),
            ),
            refused: registered(
                r,
                "connections_refused",
                "Connections closed at once for want of a slot, by port and reason",
                Family::default(),
            ),
            evicted: registered(
                r,
                "connections_evicted",
                "Connections closed to make room for a new one, by port and what they were doing",
                Family::default(),
            ),
            ops: Operations::register(r),
            load: XnatLoad::register(r),
            registry,
        }
    })
}

pub fn admission(outcome: &'static str, reason: &'static str, took: Duration) {
    let m = metrics();
    m.admissions
        .get_or_create(&AdmissionLabels { outcome, reason })
        .inc();
    m.admission_seconds.observe(took.as_secs_f64());
}

pub fn xnat_request(endpoint: &'static str, status: String, took: Duration) {
    let m = metrics();
    m.xnat_requests
        .get_or_create(&XnatLabels { endpoint, status })
        .inc();
    m.xnat_seconds
        .get_or_create(&EndpointLabels { endpoint })
        .observe(took.as_secs_f64());
}

pub fn xnat_failure(endpoint: &'static str, reason: &'static str) {
    metrics()
        .xnat_failures
        .get_or_create(&XnatFailureLabels { endpoint, reason })
        .inc();
}

pub fn cache(result: &'static str) {
    metrics().cache.get_or_create(&CacheLabels { result }).inc();
}

pub fn reload(input: &'static str, ok: bool) {
    let result = if ok { "success" } else { "failure" };
    metrics()
        .reloads
        .get_or_create(&ReloadLabels { input, result })
        .inc();
}

pub fn connection_refused(port: &'static str, reason: &'static str) {
    metrics()
        .refused
        .get_or_create(&RefusedLabels { port, reason })
        .inc();
}

pub fn connection_evicted(port: &'static str, state: &'static str) {
    metrics()
        .evicted
        .get_or_create(&EvictedLabels { port, state })
        .inc();
}

/// The serving certificate's notAfter, at start and after every reload.
pub fn certificate_expiry(not_after: std::time::SystemTime) {
    let secs = not_after
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    metrics()
        .ops
        .certificate_expiry
        .set(i64::try_from(secs).unwrap_or(i64::MAX));
}

/// The policy in use; the previous version's series goes, so one series is 1 at a time.
pub fn policy_version(version: &str) {
    let m = metrics();
    m.ops.policy_info.clear();
    m.ops
        .policy_info
        .get_or_create(&PolicyLabels {
            version: version.to_owned(),
        })
        .set(1);
}

pub fn event(result: &'static str) {
    metrics()
        .ops
        .events
        .get_or_create(&EventLabels { result })
        .inc();
}

pub fn event_dropped(reason: &'static str) {
    metrics()
        .ops
        .events_dropped
        .get_or_create(&DroppedLabels { reason })
        .inc();
}

/// The XNAT client's adaptive limit and the calls XNAT is working on.
pub fn xnat_concurrency(limit: i64, in_flight: i64) {
    let m = &metrics().load;
    m.concurrency_limit.set(limit);
    m.in_flight.set(in_flight);
}

/// The access index now in use: its size and when it was read.
pub fn index_in_use(users: usize, projects: usize, read_at: std::time::SystemTime) {
    let m = &metrics().load;
    m.index_users.set(i64::try_from(users).unwrap_or(i64::MAX));
    m.index_projects
        .set(i64::try_from(projects).unwrap_or(i64::MAX));
    let secs = read_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    m.index_refreshed
        .set(i64::try_from(secs).unwrap_or(i64::MAX));
}

/// One refresh of the access index: `success`, `partial` (some member lists unread) or
/// `failure`.
pub fn index_refresh(result: &'static str) {
    metrics()
        .load
        .index_refreshes
        .get_or_create(&IndexLabels { result })
        .inc();
}

/// What [`render`] writes: OpenMetrics text (it ends with `# EOF`), which Prometheus asks for
/// first in its scrape `Accept` header.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry in OpenMetrics text format ([`CONTENT_TYPE`]).
pub fn render() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &metrics().registry);
    out
}
