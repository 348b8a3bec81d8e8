//! The gate in front of `/mutate`: it bounds what reviews waiting for an answer cost in memory,
//! not their number. A review waiting for XNAT holds its body and its state; refusing it for being
//! one of many would start a pod without its data and tell nobody, so there is no count: it waits
//! until its XNAT budget and is then answered by `onError`, with its warning, status annotation
//! and Event.
//!
//! Each review is charged its body's bytes plus [`REVIEW_COST`] (what a waiting review holds
//! besides its body, measured: docs/performance.md). At most [`MAX_BYTES_IN_FLIGHT`] are
//! charged at once; when the webhook can tell the API server from others
//! ([`Trust::distinguishes`]), the API server alone may take the last [`RESERVED_BYTES`] of
//! them, and every other address at most [`MAX_BYTES_PER_ADDRESS`]; when it cannot, any address
//! may be the API server's and may take them all. Each body is at most
//! [`MAX_REVIEW_BYTES`] and in within [`BODY_DEADLINE`]. Past a limit a request gets a fast,
//! clear refusal (503, 413 or 408) that the API server logs — never a reset, and never an
//! unbounded buffer. With the connections' own cost ([`super::listen`]) this bounds the
//! process's memory under the Deployment's limit whatever the callers send.
//!
//! Bytes are counted as they arrive, not as declared: a client that announces a large body and
//! sends nothing holds nothing but its connection, and that only until the deadline.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admission::{Caller, Trust};

/// The largest review read. The API server sends the pod being created (no old object for a
/// CREATE); KubeSpawner's pods are 6–10 KB of JSON, and a pod over 1 MiB would need thousands of
/// env vars or volumes. A bigger body is refused (413) rather than buffered.
pub const MAX_REVIEW_BYTES: usize = 1024 * 1024;
/// What a review waiting for its answer holds besides its body (request and connection
/// buffers, the parsed review, the pipeline's state): 31 KiB measured with `make bench-storm`
/// (2,000 waiting reviews against 2,000 idle connections).
pub const REVIEW_COST: usize = 32 * 1024;
/// Bytes charged at once, whatever the reviews' number and sender: 2,900 waiting reviews of
/// KubeSpawner's ~7 KB.
pub const MAX_BYTES_IN_FLIGHT: usize = 112 * 1024 * 1024;
/// Of those, the bytes only the API server may take (when it can be told apart): 1,650 of its
/// reviews waiting, whatever the others send.
pub const RESERVED_BYTES: usize = 64 * 1024 * 1024;
/// Bytes one address other than the API server's may be charged (when it can be told apart), so
/// one client sending big bodies cannot take all the others' share. Without a way to tell the API
/// server apart, any address may be its, with all its reviews waiting: none has a cap of its own.
pub const MAX_BYTES_PER_ADDRESS: usize = 24 * 1024 * 1024;
/// The whole body must be in this long after the request's headers: the API server sends a
/// review at once, so only a client that trickles its body on purpose is refused (408).
pub const BODY_DEADLINE: Duration = Duration::from_secs(2);

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "xnat-webhook: the reviews waiting for an answer already hold all the memory this caller may; refused"
    )]
    Bytes,
    #[error("xnat-webhook: a review is at most {MAX_REVIEW_BYTES} bytes")]
    TooLarge,
    #[error("xnat-webhook: the review's body did not arrive within {BODY_DEADLINE:?}")]
    Slow,
    #[error("xnat-webhook: the request body could not be read")]
    Unreadable,
}

/// A request not let in: why, and the pod its review is about when what was read before the
/// refusal names it (an API server review's first bytes carry the request's `name` and
/// `namespace`), so its user can be told.
#[derive(Debug)]
pub struct Refusal {
    pub why: Refused,
    pub pod: Option<(String, String)>,
}

impl From<Refused> for Refusal {
    fn from(why: Refused) -> Self {
        Self { why, pod: None }
    }
}

/// The body of one review and the bytes it holds until its answer is built.
pub struct Admitted {
    pub body: Bytes,
    _bytes: Held,
}

#[derive(Clone)]
pub struct Gate {
    /// Bytes everyone may take.
    shared: Arc<Semaphore>,
    /// Bytes only the API server may take (none when it cannot be told apart).
    reserved: Arc<Semaphore>,
    /// Bytes held per address outside the API server's (addresses holding none are removed).
    by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// What one of those addresses may hold.
    per_address: usize,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new(&Trust::default())
    }
}

impl Gate {
    pub fn new(trust: &Trust) -> Self {
        let (reserved, per_address) = if trust.distinguishes() {
            (RESERVED_BYTES, MAX_BYTES_PER_ADDRESS)
        } else {
            (0, MAX_BYTES_IN_FLIGHT)
        };
        Self {
            shared: Arc::new(Semaphore::new(MAX_BYTES_IN_FLIGHT - reserved)),
            reserved: Arc::new(Semaphore::new(reserved)),
            by_address: Arc::default(),
            per_address,
        }
    }

    /// Reads a review's body within the byte budgets and the deadline, or says why not.
    /// `declared` is its Content-Length.
    pub async fn admit(
        &self,
        caller: &Caller,
        declared: Option<u64>,
        body: Body,
    ) -> Result<Admitted, Refusal> {
        if declared.is_some_and(|n| n > MAX_REVIEW_BYTES as u64) {
            return Err(Refused::TooLarge.into());
        }
        let mut held = Held {
            gate: self.clone(),
            peer: (!caller.is_first()).then(|| caller.addr.ip()),
            bytes: 0,
            permits: Vec::new(),
        };
        let mut buf = Vec::new();
        let read = tokio::time::timeout(BODY_DEADLINE, read(body, &mut held, &mut buf)).await;
        match read {
            Ok(Ok(())) => Ok(Admitted {
                body: Bytes::from(buf),
                _bytes: held,
            }),
            Ok(Err(why)) => Err(Refusal {
                why,
                pod: crate::review::pod_named_in(&buf),
            }),
            Err(_) => Err(Refused::Slow.into()),
        }
    }
}

/// Collects the body into `buf`, holding each chunk's bytes before keeping it; the review's own
/// cost once its first bytes are in (so a refusal for want of memory has read what names the pod).
async fn read(mut body: Body, held: &mut Held, buf: &mut Vec<u8>) -> Result<(), Refused> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refused::Unreadable)?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        if buf.len() + chunk.len() > MAX_REVIEW_BYTES {
            return Err(Refused::TooLarge);
        }
        held.take(chunk.len())?;
        let first = buf.is_empty();
        buf.extend_from_slice(&chunk);
        if first {
            held.take(REVIEW_COST)?;
        }
    }
    if buf.is_empty() {
        held.take(REVIEW_COST)?;
    }
    Ok(())
}

/// Body bytes one request holds, in the budgets and (outside the API server) its address's
/// share; given back when dropped.
struct Held {
    gate: Gate,
    /// The address whose share is counted; `None` for the API server.
    peer: Option<IpAddr>,
    bytes: usize,
    permits: Vec<OwnedSemaphorePermit>,
}

impl Held {
    fn take(&mut self, n: usize) -> Result<(), Refused> {
        if n == 0 {
            return Ok(());
        }
        // A chunk is at most MAX_REVIEW_BYTES (checked by the caller), far below u32::MAX.
        let permits = u32::try_from(n).map_err(|_| Refused::TooLarge)?;
        let Some(peer) = self.peer else {
            // The API server: the shared bytes first, its reserve when they are gone.
            let permit = (self.gate.shared.clone().try_acquire_many_owned(permits))
                .or_else(|_| self.gate.reserved.clone().try_acquire_many_owned(permits))
                .map_err(|_| Refused::Bytes)?;
            self.permits.push(permit);
            self.bytes += n;
            return Ok(());
        };
        let mut by_address = lock(&self.gate.by_address);
        let mine = by_address.entry(peer).or_default();
        if *mine + n > self.gate.per_address {
            if *mine == 0 {
                by_address.remove(&peer);
            }
            return Err(Refused::Bytes);
        }
        let Ok(permit) = self.gate.shared.clone().try_acquire_many_owned(permits) else {
            if *mine == 0 {
                by_address.remove(&peer);
            }
            return Err(Refused::Bytes);
        };
        self.permits.push(permit);
        *mine += n;
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(peer) = self.peer.filter(|_| self.bytes > 0) else {
            return;
        };
        let mut by_address = lock(&self.gate.by_address);
        if let Some(mine) = by_address.get_mut(&peer) {
            *mine = mine.saturating_sub(self.bytes);
            if *mine == 0 {
                by_address.remove(&peer);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(ip: &str, control_plane: bool) -> Caller {
        Caller {
            addr: std::net::SocketAddr::new(ip.parse().unwrap(), 1),
            verified: false,
            control_plane,
        }
    }

    fn big() -> Body {
        Body::from(vec![b' '; MAX_REVIEW_BYTES])
    }

    #[tokio::test]
    async fn bytes_are_held_as_they_arrive_and_per_address() {
        let gate = Gate::new(&Trust::new(vec!["10.0.0.9/32".parse().unwrap()], false));
        // Declared but never sent: nothing is held, and the deadline ends it.
        let (_tx, body) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let never = Body::from_stream(tokio_stream_from(body));
        tokio::time::pause();
        let waiting = gate
            .admit(&from("10.0.0.1", false), Some(1_000_000), never)
            .await;
        assert_eq!(waiting.err().map(|r| r.why), Some(Refused::Slow));
        tokio::time::resume();
        assert!(lock(&gate.by_address).is_empty());

        // One address holds at most its share; another still gets in.
        let mut kept = Vec::new();
        let each = MAX_REVIEW_BYTES + REVIEW_COST;
        for _ in 0..MAX_BYTES_PER_ADDRESS / each {
            match gate.admit(&from("10.0.0.1", false), None, big()).await {
                Ok(admitted) => kept.push(admitted),
                Err(e) => panic!("within the address's share: {:?}", e.why),
            }
        }
        let over = gate.admit(&from("10.0.0.1", false), None, big()).await;
        assert_eq!(over.err().map(|r| r.why), Some(Refused::Bytes));
        let other = gate.admit(&from("10.0.0.2", false), None, big()).await;
        assert!(other.is_ok());
        drop((kept, other));
        assert!(lock(&gate.by_address).is_empty());
    }

    #[tokio::test]
    async fn others_never_take_the_api_servers_bytes() {
        let trust = Trust::new(vec!["10.0.0.1/32".parse().unwrap()], false);
        let gate = Gate::new(&trust);
        let mut kept = Vec::new();
        // Many addresses together take every byte they may: the shared part.
        for i in 0..128 {
            let caller = from(&format!("10.9.0.{i}"), false);
            if let Ok(a) = gate.admit(&caller, None, big()).await {
                kept.push(a);
            }
        }
        let each = MAX_REVIEW_BYTES + REVIEW_COST;
        let shared = (MAX_BYTES_IN_FLIGHT - RESERVED_BYTES) / each;
        assert_eq!(kept.len(), shared);
        let holding = lock(&gate.by_address).len();
        assert_eq!(holding, kept.len(), "refused addresses leave no entry");
        // The API server still has its reserve (and what the others left), and no per-address cap.
        let left = MAX_BYTES_IN_FLIGHT - shared * each;
        for _ in 0..left / each {
            let a = gate.admit(&from("10.0.0.1", true), None, big()).await;
            kept.push(a.expect("the API server's reserve"));
        }
        let over = gate.admit(&from("10.0.0.1", true), None, big()).await;
        assert_eq!(
            over.err().map(|r| r.why),
            Some(Refused::Bytes),
            "the whole budget is held"
        );
    }

    #[tokio::test]
    async fn a_refused_review_of_the_api_server_still_names_its_pod() {
        let trust = Trust::new(vec!["10.0.0.1/32".parse().unwrap()], false);
        let gate = Gate::new(&trust);
        let mut kept = Vec::new();
        while let Ok(a) = gate.admit(&from("10.0.0.1", true), None, big()).await {
            kept.push(a);
        }
        // Then reviews of one byte: what is left is less than one review's own cost, but room
        // for the first bytes of another.
        while let Ok(a) = gate
            .admit(&from("10.0.0.1", true), None, Body::from("x"))
            .await
        {
            kept.push(a);
        }
        let review = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kubespawner-7.1/alice-default.json"
        ));
        let refused = gate
            .admit(&from("10.0.0.1", true), None, Body::from(&review[..]))
            .await;
        let refused = refused.err().expect("every byte is held");
        assert_eq!(refused.why, Refused::Bytes);
        let pod = ("jupyter".to_owned(), "jupyter-alice".to_owned());
        assert_eq!(refused.pod, Some(pod), "its user can be told");
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
