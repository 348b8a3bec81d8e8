//! `jupyter-xnat-webhook probe`: kubelet's exec probe. It asks the probe port on the pod's own
//! loopback address, which no other pod can reach, so a flood of connections on the webhook or
//! metrics port can never fail a probe and take a healthy replica out of service.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Probe {
    /// `/readyz`: serving (readiness).
    Ready,
    /// `/healthz`: alive (liveness).
    Live,
}

/// `probe`'s flags.
#[derive(clap::Args)]
pub struct ProbeArgs {
    /// `ready` (/readyz) or `live` (/healthz).
    #[arg(value_enum)]
    which: Probe,
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: SocketAddr,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// `probe`: `Ok` when the probe port answers 200 in time.
pub async fn run(a: ProbeArgs) -> Result<(), String> {
    probe(a.addr, a.which, a.timeout).await
}

/// The most of an answer read: the status line is all that counts.
const MAX_ANSWER: usize = 16 * 1024;

/// `Ok` when the probe port answers 200 within `timeout`; otherwise why not.
pub async fn probe(addr: SocketAddr, which: Probe, timeout: Duration) -> Result<(), String> {
    let path = match which {
        Probe::Ready => "/readyz",
        Probe::Live => "/healthz",
    };
    let ask = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        (&mut tcp)
            .take(MAX_ANSWER as u64)
            .read_to_end(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| format!("{addr}{path}: no answer within {timeout:?}"))?
        .map_err(|e| format!("{addr}{path}: {e}"))?;
    let status = answer.split(|b| *b == b'\r').next().unwrap_or_default();
    let status = String::from_utf8_lossy(status);
    if status.starts_with("HTTP/1.1 200 ") || status.starts_with("HTTP/1.0 200 ") {
        Ok(())
    } else {
        Err(format!("{addr}{path}: {status}"))
    }
}
