//! Who may look at a claim now. A `stat` that hangs cannot be cancelled: its blocking thread stays
//! until the file system answers. So a look holds two things: a slot, while a review waits for it
//! (at most [`super::LOOK_LIMIT`]), and a thread token, until its thread returns. Slots are
//! waited for; tokens are not: a claim whose [`THREADS_PER_CLAIM`] tokens are all out (or all
//! claims' [`THREADS`]) has that many threads stuck in its file system, and its looks fail at once
//! until one returns. A hung file system therefore strands a bounded number of blocking threads,
//! holds no slot past the look limit, and one hung claim does not starve another.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Most looks waited for at once, all claims together.
const LOOKS: usize = 16;
/// Most looks waited for at once at one claim: a hung claim holds at most half the slots while
/// its looks run out their limit, and the other claims keep the rest.
const LOOKS_PER_CLAIM: usize = 8;
/// Most threads in one claim's file system, waited for or given up. As many as its slots: a
/// claim that answers returns a thread before its slot, so it never runs out; one that hangs
/// strands no more than this, and its next look fails at once instead of stranding another.
const THREADS_PER_CLAIM: usize = LOOKS_PER_CLAIM;
/// Most threads in all claims' file systems: four hung claims' worth, a sixteenth of tokio's 512
/// blocking threads (which file reads and reloads share).
const THREADS: usize = 4 * THREADS_PER_CLAIM;

const _: () = assert!(THREADS >= LOOKS && THREADS_PER_CLAIM >= LOOKS_PER_CLAIM);

struct Claim {
    looks: Arc<Semaphore>,
    threads: Arc<Semaphore>,
}

/// The slots and thread tokens of every claim.
pub(super) struct Slots {
    looks: Arc<Semaphore>,
    threads: Arc<Semaphore>,
    claims: Mutex<HashMap<std::path::PathBuf, Claim>>,
}

impl Default for Slots {
    fn default() -> Self {
        Self {
            looks: Arc::new(Semaphore::new(LOOKS)),
            threads: Arc::new(Semaphore::new(THREADS)),
            claims: Mutex::new(HashMap::new()),
        }
    }
}

/// A review waiting for a look: dropped when it stops waiting.
pub(super) struct Slot {
    _claim: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

/// A thread in a claim's file system: moved into the blocking look, dropped when it returns.
pub(super) struct Thread {
    _claim: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

impl Slots {
    /// A slot to look at `root`'s claim (waited for until `deadline`) and a thread token (not
    /// waited for); `None` when no slot came in time or the claim has no token left.
    pub(super) async fn acquire(&self, root: &Path, deadline: Instant) -> Option<(Slot, Thread)> {
        let (looks, threads) = {
            let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
            let claim = claims.entry(root.to_owned()).or_insert_with(|| Claim {
                looks: Arc::new(Semaphore::new(LOOKS_PER_CLAIM)),
                threads: Arc::new(Semaphore::new(THREADS_PER_CLAIM)),
            });
            (claim.looks.clone(), claim.threads.clone())
        };
        let slot = async {
            let claim = looks.acquire_owned().await.ok()?;
            let all = self.looks.clone().acquire_owned().await.ok()?;
            Some(Slot {
                _claim: claim,
                _all: all,
            })
        };
        let slot = tokio::time::timeout_at(deadline, slot).await.ok()??;
        let thread = Thread {
            _claim: threads.try_acquire_owned().ok()?,
            _all: self.threads.clone().try_acquire_owned().ok()?,
        };
        Some((slot, thread))
    }
}
