//! The gate in front of `/mutate`: at most [`MAX_REVIEWS_IN_FLIGHT`] reviews at once and at most
//! [`MAX_BODY_BYTES_IN_FLIGHT`] bytes of request bodies held ([`MAX_BODY_BYTES_PER_ADDRESS`] from
//! one address), each body at most [`MAX_REVIEW_BYTES`] and in within [`BODY_DEADLINE`]. Past a
//! limit a request gets a fast, clear refusal (503, 413 or 408) that the API server logs — never a
//! reset, and never an unbounded buffer.
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

/// The largest review read. The API server sends the pod being created (no old object for a
/// CREATE); KubeSpawner's pods are 6–10 KB of JSON, and a pod over 1 MiB would need thousands of
/// env vars or volumes. A bigger body is refused (413) rather than buffered.
pub const MAX_REVIEW_BYTES: usize = 1024 * 1024;
/// Reviews answered at once. One API server opens one connection per review in flight and
/// JupyterHub starts at most 100 spawns at once by default (`concurrent_spawn_limit`), so 256
/// leaves room for reinvocations and a second hub; more wait in no queue: they are refused.
pub const MAX_REVIEWS_IN_FLIGHT: usize = 256;
/// Bytes of request bodies held at once, whatever their number and sender.
pub const MAX_BODY_BYTES_IN_FLIGHT: usize = 32 * 1024 * 1024;
/// Bytes of request bodies one address may hold: the API server's 256 reviews of ~7 KB need
/// under 2 MiB, so one client sending big bodies cannot take the whole budget.
pub const MAX_BODY_BYTES_PER_ADDRESS: usize = 8 * 1024 * 1024;
/// The whole body must be in this long after the request's headers: the API server sends a
/// review at once, so only a client that trickles its body on purpose is refused (408).
pub const BODY_DEADLINE: Duration = Duration::from_secs(2);

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("xnat-webhook: {MAX_REVIEWS_IN_FLIGHT} reviews are in flight; refused")]
    Busy,
    #[error(
        "xnat-webhook: bodies of reviews in flight already hold {MAX_BODY_BYTES_IN_FLIGHT} bytes; refused"
    )]
    Bytes,
    #[error("xnat-webhook: a review is at most {MAX_REVIEW_BYTES} bytes")]
    TooLarge,
    #[error("xnat-webhook: the review's body did not arrive within {BODY_DEADLINE:?}")]
    Slow,
    #[error("xnat-webhook: the request body could not be read")]
    Unreadable,
}

/// The permits of one review: held until its answer is built.
pub struct Admitted {
    pub body: Bytes,
    _review: OwnedSemaphorePermit,
    _bytes: Held,
}

#[derive(Clone)]
pub struct Gate {
    reviews: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    /// Bytes held per address (addresses holding none are removed).
    by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            reviews: Arc::new(Semaphore::new(MAX_REVIEWS_IN_FLIGHT)),
            bytes: Arc::new(Semaphore::new(MAX_BODY_BYTES_IN_FLIGHT)),
            by_address: Arc::default(),
        }
    }
}

impl Gate {
    /// Reads a review's body within the byte budgets and the deadline, then lets it in if a
    /// review slot is free, or says why not. `declared` is its Content-Length. The slot is
    /// taken only once the body is in, so a slow upload holds bytes (bounded), never a slot.
    pub async fn admit(
        &self,
        peer: IpAddr,
        declared: Option<u64>,
        body: Body,
    ) -> Result<Admitted, Refused> {
        if declared.is_some_and(|n| n > MAX_REVIEW_BYTES as u64) {
            return Err(Refused::TooLarge);
        }
        let mut held = Held {
            gate: self.clone(),
            peer,
            bytes: 0,
            permit: None,
        };
        let body = tokio::time::timeout(BODY_DEADLINE, read(body, &mut held))
            .await
            .map_err(|_| Refused::Slow)??;
        let review = self
            .reviews
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Busy)?;
        Ok(Admitted {
            body,
            _review: review,
            _bytes: held,
        })
    }
}

/// Collects the body, holding each chunk's bytes before keeping it.
async fn read(mut body: Body, held: &mut Held) -> Result<Bytes, Refused> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refused::Unreadable)?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        if buf.len() + chunk.len() > MAX_REVIEW_BYTES {
            return Err(Refused::TooLarge);
        }
        held.take(chunk.len())?;
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Body bytes one request holds, in the global budget and its address's share; given back
/// when dropped.
struct Held {
    gate: Gate,
    peer: IpAddr,
    bytes: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl Held {
    fn take(&mut self, n: usize) -> Result<(), Refused> {
        if n == 0 {
            return Ok(());
        }
        let mut by_address = lock(&self.gate.by_address);
        let mine = by_address.entry(self.peer).or_default();
        if *mine + n > MAX_BODY_BYTES_PER_ADDRESS {
            if *mine == 0 {
                by_address.remove(&self.peer);
            }
            return Err(Refused::Bytes);
        }
        // A chunk is at most MAX_REVIEW_BYTES (checked by the caller), far below u32::MAX.
        let permits = u32::try_from(n).map_err(|_| Refused::TooLarge)?;
        let permit = self.gate.bytes.clone().try_acquire_many_owned(permits);
        let permit = permit.map_err(|_| Refused::Bytes)?;
        match &mut self.permit {
            Some(p) => p.merge(permit),
            None => self.permit = Some(permit),
        }
        *mine += n;
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut by_address = lock(&self.gate.by_address);
        if let Some(mine) = by_address.get_mut(&self.peer) {
            *mine = mine.saturating_sub(self.bytes);
            if *mine == 0 {
                by_address.remove(&self.peer);
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn bytes_are_held_as_they_arrive_and_per_address() {
        let gate = Gate::default();
        // Declared but never sent: nothing is held, and the deadline ends it.
        let (_tx, body) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let never = Body::from_stream(tokio_stream_from(body));
        tokio::time::pause();
        let waiting = gate.admit(ip("10.0.0.1"), Some(1_000_000), never);
        assert_eq!(waiting.await.err(), Some(Refused::Slow));
        tokio::time::resume();
        assert!(lock(&gate.by_address).is_empty());

        // One address holds at most its share; another still gets in.
        let big = Bytes::from(vec![b' '; MAX_REVIEW_BYTES]);
        let mut kept = Vec::new();
        for _ in 0..MAX_BODY_BYTES_PER_ADDRESS / MAX_REVIEW_BYTES {
            let a = gate.admit(ip("10.0.0.1"), None, Body::from(big.clone()));
            match a.await {
                Ok(admitted) => kept.push(admitted),
                Err(e) => panic!("within the address's share: {e}"),
            }
        }
        let over = gate.admit(ip("10.0.0.1"), None, Body::from(big.clone()));
        assert_eq!(over.await.err(), Some(Refused::Bytes));
        let other = gate.admit(ip("10.0.0.2"), None, Body::from(big.clone()));
        assert!(other.await.is_ok());
        drop(kept);
        assert!(lock(&gate.by_address).is_empty());
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
