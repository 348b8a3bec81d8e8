//! The webhook beside a no-op server, in one run (`make bench`, after the admission figures): a
//! rustls + hyper server that reads the body and answers a fixed response is the most any
//! webhook on this stack can do, so the ratio says how much the webhook's own work costs.
//!
//! Both get the same load from 8 keep-alive HTTP/1.1 TLS connections: as fast as they answer
//! (throughput), then a fixed 1,000 reviews/s (latency quantiles). The two take turns in short
//! rounds and the medians are reported: on a shared machine one long run each mostly measures
//! which of the two had the noisier neighbours.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;

use crate::stats::quantile;

const CONNECTIONS: usize = 8;

/// A no-op HTTPS server on loopback; returns its URL.
pub async fn start_noop(cert_pem: &str, key_pem: &str, answer: Bytes) -> String {
    jupyter_xnat_webhook::install_crypto_provider();
    let certs = rustls_pemfile_certs(cert_pem);
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, answer) = (acceptor.clone(), answer.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let _body = req.into_body().collect().await;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(answer)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    format!("https://localhost:{port}/mutate")
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(Result::unwrap)
        .collect()
}

fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .http1_only()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap()
}

/// Reviews per second from [`CONNECTIONS`] connections sending back to back for `seconds`.
pub async fn throughput(ca_pem: &str, url: &str, body: &Bytes, seconds: u64) -> f64 {
    let client = client(ca_pem);
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    let r = client.post(&url).body(body.clone()).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    total as f64 / seconds as f64
}

/// p50 and p99 at a fixed 1,000 reviews/s spread over the connections, for `seconds`.
pub async fn latency_at_1000(
    ca_pem: &str,
    url: &str,
    body: &Bytes,
    seconds: u64,
) -> (Duration, Duration) {
    let client = client(ca_pem);
    let per_worker = Duration::from_micros(1_000 * CONNECTIONS as u64);
    let ticks = seconds * 1000 / CONNECTIONS as u64;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(1_000 * i as u64)).await;
                let mut tick = tokio::time::interval(per_worker);
                let mut lat = Vec::with_capacity(ticks as usize);
                for _ in 0..ticks {
                    tick.tick().await;
                    let t = Instant::now();
                    let r = client.post(&url).body(body.clone()).send().await.unwrap();
                    r.bytes().await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await.unwrap());
    }
    lat.sort();
    (quantile(&lat, 0.5), quantile(&lat, 0.99))
}
