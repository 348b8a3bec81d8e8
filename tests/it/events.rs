//! What the user and the admin see: every notebook pod the webhook decides on carries a status
//! annotation, and a Kubernetes Event about it reaches the API server, where KubeSpawner's spawn
//! page shows it (an Event whose `involvedObject` is the Pod of the notebook's name). The API
//! server here is `common::fake_kube` (the real endpoints and shapes); the webhook runs for real
//! over TLS with the real kube client.

use std::time::{Duration, Instant};

use crate::common::fake_kube::{FakeKube, KubeFault};
use crate::common::*;
use jupyter_xnat_webhook::events::SinkSettings;
use serde_json::{Value, json};
use xnat_standin::Fault;

const STATUS: &str = "jupyter-xnat-webhook/status";

/// The status annotation of the pod the response makes, parsed.
fn status_of(review: &Value, response: &Value) -> Value {
    let pod = patched_pod(review, response);
    let text = pod["metadata"]["annotations"][STATUS]
        .as_str()
        .unwrap_or_else(|| panic!("no status annotation: {:#}", pod["metadata"]));
    show("status annotation", &json!(text));
    serde_json::from_str(text).unwrap()
}

/// With `SHOW=1`, prints what a user or admin would see (for docs/behaviour.md's examples):
/// `SHOW=1 cargo nextest run -E "test(/^events::/)" --no-capture`.
fn show(what: &str, value: &Value) {
    if std::env::var_os("SHOW").is_some() {
        println!("{what}: {value}");
    }
}

/// The Event as `kubectl get events` shows its columns.
fn show_event(e: &Value) {
    let line = format!(
        "{}  {}  pod/{}  {}",
        e["type"].as_str().unwrap_or_default(),
        e["reason"].as_str().unwrap_or_default(),
        e["involvedObject"]["name"].as_str().unwrap_or_default(),
        e["message"].as_str().unwrap_or_default()
    );
    show("event", &json!(line));
}

fn settings() -> SinkSettings {
    SinkSettings {
        instance: "jupyter-xnat-webhook-7d9f-abcde".into(),
        ..SinkSettings::default()
    }
}

async fn with_events(policy: &str) -> (Harness, std::sync::Arc<FakeKube>) {
    let (kube, url) = FakeKube::start().await;
    let h = Harness::builder()
        .policy(policy)
        .events(FakeKube::client(&url), settings())
        .start()
        .await;
    (h, kube)
}

fn review_of_pod(user: &str, pod: &str) -> Value {
    let mut review = review_for(user);
    review["request"]["name"] = json!(pod);
    review["request"]["object"]["metadata"]["name"] = json!(pod);
    review
}

async fn policy_version(h: &Harness) -> String {
    h.readyz().await["policy"]["version"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn attached_projects_are_on_the_pod_and_in_an_event() {
    let (h, kube) = with_events("").await;
    let review = review_for("alice");
    let response = h.review(&review).await;
    assert_eq!(
        status_of(&review, &response),
        json!({"policy": policy_version(&h).await, "mode": "projects", "projectCount": 2,
               "projects": ["ALPHA", "BETA"], "xnat": {"user": "alice", "answer": "asked"}})
    );
    let events = kube.wait_for_events(1).await;
    let e = &events[0];
    show_event(e);
    assert_eq!(
        e["involvedObject"],
        json!({"apiVersion": "v1", "kind": "Pod", "name": "jupyter-alice", "namespace": "jupyter"})
    );
    assert_eq!(e["metadata"]["namespace"], "jupyter");
    assert_eq!(e["type"], "Normal");
    assert_eq!(e["reason"], "XnatDataAttached");
    assert_eq!(e["message"], "Attached XNAT projects ALPHA, BETA");
    assert_eq!(e["count"], 1);
    assert_eq!(e["source"]["component"], "jupyter-xnat-webhook");
    assert_eq!(e["reportingInstance"], "jupyter-xnat-webhook-7d9f-abcde");
    // KubeSpawner sorts and prints by `lastTimestamp or eventTime`: one must be set.
    assert!(e["lastTimestamp"].is_string(), "{e:#}");
    assert!(
        e["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("jupyter-alice.")
    );

    // A second pass (reinvocation) changes nothing, not even the annotation, and says nothing.
    let mut again = review.clone();
    again["request"]["object"] = patched_pod(&review, &response);
    assert_eq!(decoded_patch(&h.review(&again).await), None);
    // Erin's Event arriving after it shows the worker had the second pass's turn.
    h.review(&review_of_pod("erin", "jupyter-erin")).await;
    let events = kube.wait_for_events(2).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["message"], "Attached XNAT project BETA");
    assert!(kube.patches().is_empty());
}

#[tokio::test]
async fn xnat_down_is_on_the_pod_and_in_a_warning_event() {
    let (h, kube) = with_events("xnat:\n  retries: 0\n").await;
    h.xnat.set_fault(Fault::Status(503));
    let review = review_for("alice");
    let response = h.review(&review).await;
    let status = status_of(&review, &response);
    assert_eq!(status["projectCount"], 0);
    assert_eq!(status["xnat"]["answer"], "unavailable");
    assert!(
        status["xnat"]["error"].as_str().unwrap().contains("503"),
        "{status}"
    );
    assert!(
        status["warnings"][0]
            .as_str()
            .unwrap()
            .ends_with("started without project data"),
        "{status}"
    );
    let e = &kube.wait_for_events(1).await[0];
    show_event(e);
    assert_eq!(
        (e["type"].as_str(), e["reason"].as_str()),
        (Some("Warning"), Some("XnatUnavailable"))
    );
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with("XNAT could not be asked ("),
        "{message}"
    );
    assert!(
        message.ends_with("started without project data"),
        "{message}"
    );
}

#[tokio::test]
async fn a_stale_answer_says_how_old_it_is() {
    let policy = "xnat:\n  cacheTtl: 1s\n  negativeCacheTtl: 1s\n  staleIfError: 1h\n  onError: staleThenAllow\n  retries: 0\n";
    let (h, kube) = with_events(policy).await;
    let review = review_for("alice");
    h.review(&review).await;
    kube.wait_for_events(1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.xnat.set_fault(Fault::Status(503));
    // Another pod name: the same pod again within seconds would count into the first Event.
    let review = review_of_pod("alice", "jupyter-alice--second");
    let response = h.review(&review).await;
    let status = status_of(&review, &response);
    assert_eq!(status["projects"], json!(["ALPHA", "BETA"]));
    assert_eq!(status["xnat"]["answer"], "stale");
    assert!(
        status["xnat"]["ageSeconds"].as_u64().unwrap() >= 1,
        "{status}"
    );
    let e = &kube.wait_for_events(2).await[1];
    show_event(e);
    assert_eq!(
        (e["type"].as_str(), e["reason"].as_str()),
        (Some("Warning"), Some("XnatStale"))
    );
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with("Attached XNAT projects ALPHA, BETA. XNAT could not be asked"),
        "{message}"
    );
    assert!(message.contains("using its answer from"), "{message}");
}

#[tokio::test]
async fn a_refused_launch_mount_is_named_on_the_pod_and_in_the_event() {
    let (kube, url) = FakeKube::start().await;
    let preset = include_str!("../../deploy/presets/nrgxnat-k8s.yaml");
    let h = Harness::builder()
        .policy(preset)
        .called_by_api_server()
        .events(FakeKube::client(&url), settings())
        .start()
        .await;
    let server = "20240621T123456789Z";
    // What XNAT's plugin stores for a launch (see tests/launch_fidelity.rs for the shape's
    // source): alice's own ALPHA, and GAMMA, which she may not read.
    let mount = |project: &str| {
        json!({"source": format!("./{project}/arc001"),
               "target": format!("/data/projects/{project}/experiments"),
               "type": "bind", "read_only": true})
    };
    let options = json!({
        "userId": 7, "servername": server, "xsiType": "xnat:projectData", "itemId": "ALPHA",
        "projectId": "ALPHA", "eventTrackingId": server,
        "task_template": {
            "container_spec": {"image": "xnat/datascience-notebook:latest", "command": null,
                               "env": {"XNAT_DATA": "/data"}, "labels": {},
                               "mounts": [mount("ALPHA"), mount("GAMMA")]},
            "resources": {"cpu_limit": null, "cpu_reservation": null, "mem_limit": null,
                          "mem_reservation": null, "generic_resources": {}},
            "placement": {"constraints": []}}
    });
    h.xnat.set_user_options("alice", server, options);
    let mut review = review_of_pod("alice", "jupyter-alice--launch");
    review["request"]["object"]["metadata"]["annotations"]["hub.jupyter.org/servername"] =
        json!(server);
    let response = h.review(&review).await;
    let status = status_of(&review, &response);
    assert_eq!(status["mode"], "launch");
    assert_eq!(status["projects"], json!(["ALPHA"]));
    let refused: Vec<&str> = status["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|w| w.contains("GAMMA"))
        .collect();
    assert_eq!(refused.len(), 1, "{status}");
    let e = &kube.wait_for_events(1).await[0];
    show_event(e);
    assert_eq!(
        (e["type"].as_str(), e["reason"].as_str()),
        (Some("Warning"), Some("XnatDataLeftOut"))
    );
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with("Started from XNAT: attached XNAT project ALPHA. "),
        "{message}"
    );
    // The same words, as a sentence of the message.
    let said = refused[0].replacen("launch mount", "Launch mount", 1);
    assert!(message.contains(&said), "{message}");
}

#[tokio::test]
async fn a_skipped_notebook_pod_is_not_patched_but_its_user_hears_why() {
    let (h, kube) = with_events("").await;
    let mut review = review_of_pod("alice", "jupyter-stranger");
    // Not the hub: anyone able to create pods could claim any username.
    review["request"]["userInfo"]["username"] = json!("system:serviceaccount:jupyter:someone");
    let response = h.review(&review).await;
    assert_eq!(decoded_patch(&response), None);
    let e = &kube.wait_for_events(1).await[0];
    show_event(e);
    assert_eq!(e["involvedObject"]["name"], "jupyter-stranger");
    assert_eq!(
        (e["type"].as_str(), e["reason"].as_str()),
        (Some("Warning"), Some("XnatDataNotAttached"))
    );
    assert_eq!(
        e["message"],
        "No XNAT data attached: this notebook pod was not created by an allowed requester; \
         no XNAT data attached"
    );
}

#[tokio::test]
async fn a_dry_run_is_stamped_but_posts_no_event() {
    let (h, kube) = with_events("").await;
    let mut dry = review_of_pod("alice", "jupyter-alice--dry");
    dry["request"]["dryRun"] = json!(true);
    let response = h.review(&dry).await;
    assert_eq!(status_of(&dry, &response)["projectCount"], 2);
    h.review(&review_of_pod("erin", "jupyter-erin")).await;
    let events = kube.wait_for_events(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kube.events().len(), 1);
    assert_eq!(events[0]["involvedObject"]["name"], "jupyter-erin");
}

#[tokio::test]
async fn the_policy_turns_events_off_live() {
    let (h, kube) = with_events("events:\n  enabled: false\n").await;
    let review = review_for("alice");
    let response = h.review(&review).await;
    // The annotation stays: it costs the API server nothing.
    assert_eq!(status_of(&review, &response)["projectCount"], 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kube.calls(), 0);
    // Back on with a reload: the next pod's Event is posted.
    std::fs::write(
        h.dir.path().join("policy.yaml"),
        "events:\n  enabled: true\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while kube.events().is_empty() {
        assert!(
            Instant::now() < deadline,
            "Events stayed off after the reload"
        );
        n += 1;
        h.review(&review_of_pod("erin", &format!("jupyter-erin-{n}")))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_same_event_twice_is_counted_into_the_first() {
    let (h, kube) = with_events("").await;
    // The API server retrying a create: the same pod, still without our annotation.
    let review = review_for("alice");
    h.review(&review).await;
    h.review(&review).await;
    kube.wait_for_calls(2).await;
    let events = kube.wait_for_events(1).await;
    assert_eq!(events.len(), 1);
    let patches = kube.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(
        patches[0].0,
        events[0]["metadata"]["name"].as_str().unwrap()
    );
    assert_eq!(patches[0].1["count"], 2);
    assert_eq!(kube.events()[0]["count"], 2);
}

/// A spawn retried at once under the same pod name is a new admission request: it gets its own
/// Event. KubeSpawner's spawn page skips every Event of the pod's name up to the newest it saw
/// before the spawn started (`progress` and `_last_event` in kubespawner/spawner.py), so a
/// count added to the first attempt's Event would never show on the retry's page.
#[tokio::test]
async fn a_quick_retry_of_a_spawn_gets_an_event_of_its_own() {
    let (h, kube) = with_events("").await;
    let first = review_for("alice");
    h.review(&first).await;
    kube.wait_for_events(1).await;
    let mut retry = first.clone();
    retry["request"]["uid"] = json!("7c1f0a6e-0000-4000-8000-000000000002");
    h.review(&retry).await;
    let events = kube.wait_for_events(2).await;
    assert_eq!(events.len(), 2);
    assert!(kube.patches().is_empty(), "{:?}", kube.patches());
    let (a, b) = (&events[0], &events[1]);
    assert_eq!(a["involvedObject"]["name"], b["involvedObject"]["name"]);
    assert_ne!(a["metadata"]["name"], b["metadata"]["name"]);
    assert!(b["lastTimestamp"].as_str() >= a["lastTimestamp"].as_str());
}

/// The API server gives every webhook call a new `request.uid`, a reinvocation too
/// (`reinvocationPolicy: IfNeeded`, after a later webhook changed the pod). The pod then carries
/// the status annotation of the first pass, whose Event was posted: none is posted again, even
/// when this pass patches the pod once more.
#[tokio::test]
async fn a_reinvocation_posts_no_second_event() {
    let (h, kube) = with_events("").await;
    let first = review_for("alice");
    let response = h.review(&first).await;
    kube.wait_for_events(1).await;
    let mut pod = patched_pod(&first, &response);
    // A later webhook dropped one of our mounts: this pass adds it back.
    let mounts = pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap();
    let before = mounts.len();
    mounts.retain(|m| m["mountPath"] != "/data/projects/BETA");
    assert_eq!(mounts.len(), before - 1);
    let mut again = first.clone();
    again["request"]["uid"] = json!("7c1f0a6e-0000-4000-8000-000000000003");
    again["request"]["object"] = pod;
    let response = h.review(&again).await;
    assert!(
        decoded_patch(&response).is_some(),
        "the mount is added back"
    );
    // Anything the sink would post has been posted by the time a later Event arrives.
    h.review(&review_of_pod("erin", "jupyter-erin")).await;
    let events = kube.wait_for_events(2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(kube.patches().is_empty(), "{:?}", kube.patches());
    assert_eq!(events[1]["involvedObject"]["name"], "jupyter-erin");
}

/// Reviews answered while the API server is slow, refusing or down: all within `limit`.
async fn reviews_are_answered_quickly(h: &Harness, n: usize, limit: Duration) {
    for i in 0..n {
        let review = review_of_pod("alice", &format!("jupyter-alice-{i}"));
        let started = Instant::now();
        let response = h.review(&review).await;
        assert!(
            started.elapsed() < limit,
            "review {i} took {:?}",
            started.elapsed()
        );
        assert_eq!(status_of(&review, &response)["projectCount"], 2);
    }
}

#[tokio::test]
async fn a_slow_api_server_never_slows_admission_and_drops_are_counted() {
    let (kube, url) = FakeKube::start().await;
    kube.set_fault(KubeFault::Slow(Duration::from_secs(3)));
    let h = Harness::builder()
        .alone_with_metrics()
        .events(
            FakeKube::client(&url),
            SinkSettings {
                queue: 2,
                call_timeout: Duration::from_secs(1),
                ..settings()
            },
        )
        .start()
        .await;
    let before = metric(
        &h.metrics().await,
        "xnat_webhook_events_dropped_total{reason=\"queue_full\"}",
    );
    reviews_are_answered_quickly(&h, 12, Duration::from_millis(500)).await;
    let text = h.metrics().await;
    // One Event in the worker's hands, two queued: the rest dropped.
    let dropped = metric(
        &text,
        "xnat_webhook_events_dropped_total{reason=\"queue_full\"}",
    ) - before;
    assert!(dropped >= 9.0, "{text}");
    // The worker gives up on a call after call_timeout and counts it failed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = h.metrics().await;
    assert!(
        metric(&text, "xnat_webhook_events_total{result=\"failed\"}") >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_refusing_or_absent_api_server_leaves_admission_alone() {
    let (kube, url) = FakeKube::start().await;
    kube.set_fault(KubeFault::Forbidden);
    let h = Harness::builder()
        .alone_with_metrics()
        .events(FakeKube::client(&url), settings())
        .start()
        .await;
    reviews_are_answered_quickly(&h, 3, Duration::from_millis(500)).await;
    kube.wait_for_calls(3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = h.metrics().await;
    assert!(
        metric(&text, "xnat_webhook_events_total{result=\"failed\"}") >= 3.0,
        "{text}"
    );
    assert!(kube.events().is_empty());
    drop(h);

    // Nothing listening at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let h = Harness::builder()
        .alone_with_metrics()
        .events(FakeKube::client(&url), settings())
        .start()
        .await;
    reviews_are_answered_quickly(&h, 3, Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_storm_is_rate_limited() {
    let (kube, url) = FakeKube::start().await;
    let h = Harness::builder()
        .alone_with_metrics()
        .events(
            FakeKube::client(&url),
            SinkSettings {
                burst: 3,
                per_second: 0.001,
                ..settings()
            },
        )
        .start()
        .await;
    let before = metric(
        &h.metrics().await,
        "xnat_webhook_events_dropped_total{reason=\"rate_limited\"}",
    );
    reviews_are_answered_quickly(&h, 10, Duration::from_millis(500)).await;
    kube.wait_for_events(3).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = h.metrics().await;
        let dropped = metric(
            &text,
            "xnat_webhook_events_dropped_total{reason=\"rate_limited\"}",
        ) - before;
        if dropped >= 7.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(kube.events().len(), 3);
}

#[tokio::test]
async fn a_kubeconfig_names_the_api_server_for_local_runs() {
    let (kube, url) = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test\n  cluster:\n    server: {url}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: jupyter\n\
             users:\n- name: test\n  user:\n    token: not-a-real-token\n"
        ),
    )
    .unwrap();
    let client = jupyter_xnat_webhook::events::client(Some(&path))
        .await
        .unwrap()
        .expect("a client for the kubeconfig");
    let h = Harness::builder().events(client, settings()).start().await;
    h.review(&review_for("alice")).await;
    assert_eq!(
        kube.wait_for_events(1).await[0]["reason"],
        "XnatDataAttached"
    );
    // A kubeconfig that is not one is a clear error.
    std::fs::write(&path, "clusters: 7\n").unwrap();
    let Err(error) = jupyter_xnat_webhook::events::client(Some(&path)).await else {
        panic!("a file that is no kubeconfig was read as one");
    };
    assert!(error.contains("kubeconfig"), "{error}");
}

/// The API server's review of a pod that the webhook cannot take (here a body over 1 MiB,
/// streamed as the API server may send it, so it is refused only once its first bytes are in) is
/// answered 413, and the pod's user still hears why: a Warning naming the pod. The same review
/// from another address posts nothing (anyone could name any pod).
#[tokio::test]
async fn a_review_refused_unread_still_tells_the_pods_user() {
    let (h, kube) = with_events("").await;
    let mut review = review_of_pod("alice", "jupyter-huge");
    review["request"]["object"]["metadata"]["annotations"]["padding"] =
        json!("x".repeat(1_100_000));
    let body = axum::body::Bytes::from(serde_json::to_vec(&review).unwrap());
    assert_eq!(post_streamed(&h, "127.0.0.2", body.clone()).await, 413);
    assert_eq!(post_streamed(&h, "127.0.0.1", body).await, 413);
    let e = &kube.wait_for_events(1).await[0];
    show_event(e);
    assert_eq!(e["involvedObject"]["name"], "jupyter-huge");
    assert_eq!(
        (e["type"].as_str(), e["reason"].as_str()),
        (Some("Warning"), Some("XnatDataNotAttached"))
    );
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("the webhook could not take this pod's review now"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kube.events().len(), 1, "only the API server's review tells");
}

/// POSTs `body` over HTTP/2 from `from`, in 64 KiB DATA frames with no Content-Length; the status.
async fn post_streamed(h: &Harness, from: &str, body: axum::body::Bytes) -> u16 {
    let tls = tls_to(h.addr, &h.ca_pem, from, &[b"h2"]).await;
    let (mut send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let request = axum::http::Request::post(h.url("/mutate"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (response, mut stream) = send.send_request(request, false).unwrap();
    let sending = tokio::spawn(async move {
        let chunks: Vec<_> = body
            .chunks(64 * 1024)
            .map(axum::body::Bytes::copy_from_slice)
            .collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            stream.reserve_capacity(chunk.len());
            // Refused before the end: the server resets the stream, and sending stops.
            if stream.send_data(chunk, i == last).is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
    let status = response.await.unwrap().status().as_u16();
    sending.abort();
    status
}
