//! The gate in front of `/mutate`: at most [`MAX_REVIEWS_IN_FLIGHT`] reviews at once and at most
//! [`MAX_BODY_BYTES_IN_FLIGHT`] bytes of request bodies held, each body at most
//! [`MAX_REVIEW_BYTES`]. Past a limit a request gets a fast, clear refusal (503 or 413) that the
//! API server logs — never a reset, and never an unbounded buffer.

use std::sync::Arc;

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
/// Bytes of request bodies held at once, whatever their number: real reviews are ~7 KB, so this
/// only ever binds when somebody sends large bodies on purpose.
pub const MAX_BODY_BYTES_IN_FLIGHT: usize = 32 * 1024 * 1024;

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
    #[error("xnat-webhook: the request body could not be read")]
    Unreadable,
}

/// The permits of one review: held until its answer is built.
pub struct Admitted {
    pub body: Bytes,
    _review: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

#[derive(Clone)]
pub struct Gate {
    reviews: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            reviews: Arc::new(Semaphore::new(MAX_REVIEWS_IN_FLIGHT)),
            bytes: Arc::new(Semaphore::new(MAX_BODY_BYTES_IN_FLIGHT)),
        }
    }
}

impl Gate {
    /// Reads a review's body within the byte budget, then lets it in if a review slot is free,
    /// or says why not. `declared` is its Content-Length. The slot is taken only once the body
    /// is in, so a client that uploads slowly holds bytes (bounded), never a review slot.
    pub async fn admit(&self, declared: Option<u64>, body: Body) -> Result<Admitted, Refused> {
        if declared.is_some_and(|n| n > MAX_REVIEW_BYTES as u64) {
            return Err(Refused::TooLarge);
        }
        // Without a length, the whole allowance is held while the body streams in.
        let hold = declared.map_or(MAX_REVIEW_BYTES, |n| n as usize);
        let bytes = if hold == 0 {
            None
        } else {
            let permits = u32::try_from(hold).map_err(|_| Refused::TooLarge)?;
            let permit = self.bytes.clone().try_acquire_many_owned(permits);
            Some(permit.map_err(|_| Refused::Bytes)?)
        };
        let limited = http_body_util::Limited::new(body, hold);
        let body = match limited.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(Refused::TooLarge),
            Err(_) => return Err(Refused::Unreadable),
        };
        let review = self
            .reviews
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Busy)?;
        Ok(Admitted {
            body,
            _review: review,
            _bytes: bytes,
        })
    }
}
