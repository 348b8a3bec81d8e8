//! Turns at the one process-wide state, the metrics registry. Under nextest every test is its own
//! process; under plain `cargo test` the tests share one, so a test that reads absolute gauges
//! takes [`alone`]: it waits until no other webhook runs, and webhooks started meanwhile
//! ([`share`], which every harness takes) wait for it. Sharers never wait for one another, and a
//! sharer waits for a waiting [`alone`] at most [`YIELD_AT_MOST`], so a test holding two webhooks
//! at once cannot deadlock.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

struct Turns {
    sharing: usize,
    alone: bool,
    waiting_alone: usize,
}

static TURNS: Mutex<Turns> = Mutex::new(Turns {
    sharing: 0,
    alone: false,
    waiting_alone: 0,
});

/// How long a new sharer lets a waiting `alone` go first.
const YIELD_AT_MOST: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(2);

fn turns() -> MutexGuard<'static, Turns> {
    TURNS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Held while a webhook runs (or a test reads the metrics alone); released when dropped.
pub struct Turn {
    alone: bool,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut t = turns();
        if self.alone {
            t.alone = false;
        } else {
            t.sharing -= 1;
        }
    }
}

/// The metrics to this test alone until the turn is dropped.
pub async fn alone() -> Turn {
    /// Counts this test as waiting until it has its turn, or gives up waiting (cancelled).
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            turns().waiting_alone -= 1;
        }
    }
    turns().waiting_alone += 1;
    let _waiting = Waiting;
    loop {
        {
            let mut t = turns();
            if !t.alone && t.sharing == 0 {
                t.alone = true;
                return Turn { alone: true };
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A webhook among others; waits while a test has the metrics alone.
pub async fn share() -> Turn {
    let since = Instant::now();
    loop {
        {
            let mut t = turns();
            let yield_to_alone = t.waiting_alone > 0 && since.elapsed() < YIELD_AT_MOST;
            if !t.alone && !yield_to_alone {
                t.sharing += 1;
                return Turn { alone: false };
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
