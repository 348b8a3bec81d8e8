//! Posting Events without slowing admission: reviews hand an Event to a bounded queue and move
//! on; one worker posts them to the API server, each call bounded in time. A full queue, the
//! rate limit and a failing API server drop Events, never reviews, and every drop is counted
//! (`xnat_webhook_events_dropped_total`, `xnat_webhook_events_total{result="failed"}`).

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::PodEvent;

/// The webhook's name in `source.component` and `reportingComponent`.
const COMPONENT: &str = "jupyter-xnat-webhook";

/// How the sink queues, limits and deduplicates.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Events waiting for the worker; past it they are dropped (`queue_full`).
    pub queue: usize,
    /// Events posted in a burst, and per second after it (`rate_limited` past that): as many as
    /// the pods of a first-day-of-term surge (each pod is one API call the API server has just
    /// answered; one Event each is the same again, not a flood), while a storm that goes on is
    /// held to a steady rate. client-go's recorder limits per object, not in all.
    pub burst: u32,
    pub per_second: f64,
    /// The same Event about the same admission request within this window (the API server
    /// calling again for one request) is counted into the Event already posted instead of posted
    /// again; another request for the same pod (a retried spawn) gets its own.
    pub repeat_window: Duration,
    /// The longest one API call may take.
    pub call_timeout: Duration,
    /// `reportingInstance`: this replica (its pod name).
    pub instance: String,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            queue: 1024,
            burst: 512,
            per_second: 50.0,
            repeat_window: Duration::from_secs(10),
            call_timeout: Duration::from_secs(5),
            instance: std::env::var("HOSTNAME").unwrap_or_default(),
        }
    }
}

/// Where reviews hand their Events; cheap to clone. A disabled sink drops nothing and counts
/// nothing: there is no API server to post to.
#[derive(Clone, Default)]
pub struct EventSink {
    tx: Option<mpsc::Sender<PodEvent>>,
}

impl EventSink {
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Starts the worker that posts to `client`'s API server; it ends when every sink is gone.
    pub fn start(client: kube::Client, settings: SinkSettings) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        tokio::spawn(Worker::new(client, settings).run(rx));
        Self { tx: Some(tx) }
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `event`, or drops it when the queue is full. Never waits.
    pub fn post(&self, event: PodEvent) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(event) {
            crate::metrics::event_dropped("queue_full");
        }
    }
}

/// An Event already posted, for counting repeats into it.
struct Posted {
    name: String,
    count: i32,
    last: Instant,
}

struct Worker {
    client: kube::Client,
    settings: SinkSettings,
    tokens: f64,
    refilled: Instant,
    posted: HashMap<PodEvent, Posted>,
    failing: bool,
}

/// Most Events remembered for repeats; older ones are forgotten first.
const MAX_REMEMBERED: usize = 4096;

impl Worker {
    fn new(client: kube::Client, settings: SinkSettings) -> Self {
        Self {
            client,
            tokens: f64::from(settings.burst),
            settings,
            refilled: Instant::now(),
            posted: HashMap::new(),
            failing: false,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<PodEvent>) {
        while let Some(event) = rx.recv().await {
            let now = Instant::now();
            if !self.take_token(now) {
                crate::metrics::event_dropped("rate_limited");
                continue;
            }
            let window = self.settings.repeat_window;
            self.posted.retain(|_, p| now - p.last < window);
            let result = tokio::time::timeout(self.settings.call_timeout, self.send(&event, now))
                .await
                .unwrap_or_else(|_| Err("the API server did not answer in time".into()));
            match result {
                Ok(label) => {
                    crate::metrics::event(label);
                    if std::mem::replace(&mut self.failing, false) {
                        tracing::info!("posting Events works again");
                    }
                }
                Err(error) => {
                    crate::metrics::event("failed");
                    if !std::mem::replace(&mut self.failing, true) {
                        tracing::warn!(%error, namespace = %event.namespace, pod = %event.pod,
                            "cannot post an Event about a notebook pod; users will not see it \
                             on the spawn page (README: What the user sees)");
                    }
                }
            }
        }
    }

    /// A token bucket: `burst` at once, `per_second` after.
    fn take_token(&mut self, now: Instant) -> bool {
        let s = &self.settings;
        let elapsed = (now - self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * s.per_second).min(f64::from(s.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Creates the Event, or counts a repeat into the one posted; the metric label on success.
    async fn send(&mut self, event: &PodEvent, now: Instant) -> Result<&'static str, String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &event.namespace);
        if let Some(posted) = self.posted.get_mut(event) {
            posted.count += 1;
            posted.last = now;
            let patch = serde_json::json!({
                "count": posted.count,
                "lastTimestamp": Time(Timestamp::now()),
            });
            api.patch(&posted.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| e.to_string())?;
            return Ok("updated");
        }
        let created = api
            .create(&PostParams::default(), &self.object(event))
            .await
            .map_err(|e| e.to_string())?;
        if self.posted.len() >= MAX_REMEMBERED {
            self.posted.clear();
        }
        self.posted.insert(
            event.clone(),
            Posted {
                name: created.metadata.name.unwrap_or_default(),
                count: 1,
                last: now,
            },
        );
        Ok("created")
    }

    /// A core/v1 Event as client-go's recorder writes one: `lastTimestamp` is what KubeSpawner
    /// sorts and prints by (falling back to `eventTime`).
    fn object(&self, event: &PodEvent) -> Event {
        let now = Timestamp::now();
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", event.pod, now.as_nanosecond())),
                namespace: Some(event.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(event.pod.clone()),
                namespace: Some(event.namespace.clone()),
                ..ObjectReference::default()
            },
            type_: Some(event.type_().into()),
            reason: Some(event.reason.into()),
            message: Some(event.message.clone()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some(COMPONENT.into()),
                host: None,
            }),
            reporting_component: Some(COMPONENT.into()),
            reporting_instance: Some(self.settings.instance.clone()),
            event_time: None::<MicroTime>,
            ..Event::default()
        }
    }
}
