//! Prometheus metrics, served as text on the separate plain-HTTP metrics port (`/metrics`).
//!
//! One process-wide registry: the webhook is one server per process, and recording from deep in
//! the XNAT client or the reloaders needs no handle threaded through every call.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
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
    /// `timeout`, `connect`, `status`, `html`, `bad_json`, `too_large`, `busy`, `request`,
    /// `credentials_file`.
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
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("xnat_webhook");
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission reviews answered, by outcome",
            admissions.clone(),
        );
        let admission_seconds = Histogram::new(LATENCY_BUCKETS.iter().copied());
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission review",
            admission_seconds.clone(),
        );
        let xnat_requests = Family::<XnatLabels, Counter>::default();
        registry.register(
            "xnat_requests",
            "XNAT requests, by endpoint and HTTP status",
            xnat_requests.clone(),
        );
        let xnat_seconds = Family::new_with_constructor(Buckets(LATENCY_BUCKETS));
        registry.register(
            "xnat_request_duration_seconds",
            "Time of one XNAT request",
            xnat_seconds.clone(),
        );
        let xnat_failures = Family::<XnatFailureLabels, Counter>::default();
        registry.register(
            "xnat_failures",
            "XNAT lookups that failed after retries, by endpoint and reason",
            xnat_failures.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "xnat_cache_lookups",
            "Access lookups, by cache result",
            cache.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of the policy and the certificate, by result",
            reloads.clone(),
        );
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed at once for want of a slot, by port and reason",
            refused.clone(),
        );
        Metrics {
            registry,
            refused,
            admissions,
            admission_seconds,
            xnat_requests,
            xnat_seconds,
            xnat_failures,
            cache,
            reloads,
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

/// The registry in Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &metrics().registry);
    out
}
