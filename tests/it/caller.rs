//! Caller authentication: with `--client-ca`, a client without a certificate from that CA gets no
//! answer at all (the handshake fails), the CA file reloads like the serving certificate, and
//! kubelet's probes use the plain metrics port. Launch-context secrets reach a pod only as the
//! policy's `userOptions.secrets` says.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

/// An HTTPS client trusting the webhook's CA, presenting `identity` (cert + key PEM) if given.
fn client(h: &Harness, identity: Option<&str>) -> reqwest::Client {
    jupyter_xnat_webhook::install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(h.ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(10));
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn post(client: &reqwest::Client, h: &Harness, review: &Value) -> reqwest::Result<Value> {
    client
        .post(h.url("/mutate"))
        .json(review)
        .send()
        .await?
        .json()
        .await
}

fn launch_with_token() -> Value {
    json!({"task_template": {"container_spec": {
        "env": {"XNAT_USER": "alias-1", "XNAT_PASS": "token-secret-1", "XNAT_DATA": "/data"},
        "mounts": []
    }}})
}

#[tokio::test]
async fn with_a_client_ca_only_its_clients_get_an_answer() {
    let clients = TestCa::new();
    let ca_dir = KubeletDir::new(&[("ca.crt", clients.pem.as_bytes())]);
    let h = Harness::builder()
        .alone_with_metrics()
        .policy("userOptions:\n  enabled: true\n")
        .client_ca(ca_dir.path("ca.crt"))
        .start()
        .await;
    h.xnat.set_user_options("alice", "", launch_with_token());
    let review = review_for("alice");

    // No certificate, or one from another CA: refused at the handshake.
    let stranger = TestCa::new().issue_client("intruder");
    for (what, identity) in [
        ("no certificate", None),
        ("another CA", Some(stranger.as_str())),
    ] {
        let result = post(&client(&h, identity), &h, &review).await;
        assert!(result.is_err(), "{what}: answered {result:?}");
    }
    assert_eq!(h.xnat.lookups_for("alice"), 0, "nothing reached XNAT");

    // The API server's certificate: answered, and as a verified caller it gets the token pair.
    let apiserver = clients.issue_client("kube-apiserver");
    let response = post(&client(&h, Some(&apiserver)), &h, &review)
        .await
        .unwrap();
    let pod = patched_pod(&review, &response);
    assert_eq!(env_of(&pod, "XNAT_PASS").as_deref(), Some("token-secret-1"));

    // Probes go to the plain metrics port, which asks for no certificate.
    for path in ["/healthz", "/readyz"] {
        let url = format!("http://{}{path}", h.metrics_addr);
        assert_eq!(reqwest::get(url).await.unwrap().status(), 200, "{path}");
    }

    // A new client CA is picked up without a restart; the old clients are refused from then on.
    let renewed = TestCa::new();
    ca_dir.swap(&[("ca.crt", renewed.pem.as_bytes())]);
    let new_apiserver = renewed.issue_client("kube-apiserver");
    let deadline = Instant::now() + Duration::from_secs(10);
    while post(&client(&h, Some(&new_apiserver)), &h, &review)
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the new client CA was never used"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        post(&client(&h, Some(&apiserver)), &h, &review)
            .await
            .is_err()
    );
    let ready: Value = reqwest::get(format!("http://{}/readyz", h.metrics_addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["clientCa"]["reloads"], 1, "{ready}");
}

#[tokio::test]
async fn launch_secrets_reach_the_pod_only_as_the_policy_says() {
    let cases = [
        (
            "",
            None,
            "the default passes secrets only to verified callers",
        ),
        ("  secrets: drop\n", None, "drop"),
        ("  secrets: pass\n", Some("token-secret-1"), "pass"),
    ];
    for (setting, expected, what) in cases {
        let policy = format!("userOptions:\n  enabled: true\n{setting}");
        let h = Harness::start(&policy).await;
        h.xnat.set_user_options("alice", "", launch_with_token());
        let review = review_for("alice");
        let response = h.review(&review).await;
        let pod = patched_pod(&review, &response);
        assert_eq!(env_of(&pod, "XNAT_PASS").as_deref(), expected, "{what}");
        assert_eq!(
            env_of(&pod, "XNAT_DATA").as_deref(),
            Some("/data"),
            "{what}"
        );
        if expected.is_none() {
            assert!(
                warnings(&response)
                    .iter()
                    .any(|w| w.contains("XNAT_PASS") && w.contains("not passed on")),
                "{what}: {:?}",
                warnings(&response)
            );
        }
    }
}
