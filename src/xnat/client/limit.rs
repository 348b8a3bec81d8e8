//! How many calls XNAT is working on for the webhook, and how many it may be: an adaptive limit
//! between the policy's `minConcurrentRequests` and `maxConcurrentRequests`.
//!
//! A call counts until XNAT has finished with it, not until the review gave up on it: a
//! timed-out call keeps its slot while XNAT still works on it (Tomcat goes on after the client
//! stops listening), up to [`MAX_CALL_LIFETIME`], when its connection is closed. So the limit is
//! what XNAT really sees, even while it is slower than the timeout.
//!
//! The limit halves (at most once per call timeout) when a call times out or XNAT answers 5xx,
//! and grows by one slot per limit's worth of successes (additive increase, multiplicative
//! decrease, as TCP does), so a struggling XNAT gets fewer calls at once and a recovered one
//! gets its full share back within a few round trips.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The longest a call keeps its slot: past it, the call's connection is closed and its slot
/// freed, whether or not XNAT has finished.
pub const MAX_CALL_LIFETIME: Duration = Duration::from_secs(30);

/// The slots of one client.
pub struct Limiter {
    min: usize,
    max: usize,
    /// The window in which one decrease is made and retries are not: the call timeout.
    window: Duration,
    state: Mutex<State>,
    freed: Notify,
}

struct State {
    limit: f64,
    in_flight: usize,
    last_decrease: Option<Instant>,
    last_timeout: Option<Instant>,
}

/// One call's slot; freed (and the next waiter woken) when dropped.
pub struct Slot {
    limiter: Arc<Limiter>,
}

/// How a call ended, for the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// XNAT answered in time (any status that is not a 5xx).
    Answered,
    /// XNAT answered 5xx: it is struggling.
    Overloaded,
    /// The call timed out: XNAT is slower than the timeout.
    TimedOut,
    /// Anything else (connection refused, a bad body): says nothing about XNAT's load.
    Other,
}

impl Limiter {
    pub fn new(min: usize, max: usize, window: Duration) -> Arc<Self> {
        let (min, max) = (min.clamp(1, max.max(1)), max.max(1));
        let limiter = Arc::new(Self {
            min,
            max,
            window,
            state: Mutex::new(State {
                limit: max as f64,
                in_flight: 0,
                last_decrease: None,
                last_timeout: None,
            }),
            freed: Notify::new(),
        });
        limiter.publish(&limiter.lock());
        limiter
    }

    /// A slot, waiting for one until `deadline`; `None` when none came free in time.
    pub async fn acquire(self: &Arc<Self>, deadline: Instant) -> Option<Slot> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a slot freed in between still wakes this waiter.
            freed.as_mut().enable();
            {
                let mut s = self.lock();
                if s.in_flight < s.limit.floor() as usize {
                    s.in_flight += 1;
                    self.publish(&s);
                    return Some(Slot {
                        limiter: self.clone(),
                    });
                }
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// Moves the limit after a call ended.
    pub fn ended(&self, ending: Ending) {
        let mut s = self.lock();
        let now = Instant::now();
        match ending {
            Ending::Answered => {
                let grown = (s.limit + 1.0 / s.limit).min(self.max as f64);
                let woke = grown.floor() > s.limit.floor();
                s.limit = grown;
                if woke {
                    self.freed.notify_one();
                }
            }
            Ending::Overloaded | Ending::TimedOut => {
                if ending == Ending::TimedOut {
                    s.last_timeout = Some(now);
                }
                if s.last_decrease
                    .is_none_or(|at| now.duration_since(at) >= self.window)
                {
                    s.limit = (s.limit / 2.0).max(self.min as f64);
                    s.last_decrease = Some(now);
                    tracing::info!(
                        limit = s.limit.floor(),
                        "XNAT is struggling; fewer calls at once"
                    );
                }
            }
            Ending::Other => {}
        }
        self.publish(&s);
    }

    /// Whether a call timed out within the last window: no retries then, they would only add
    /// to what XNAT is already behind on.
    pub fn timing_out(&self) -> bool {
        self.lock()
            .last_timeout
            .is_some_and(|at| at.elapsed() < self.window)
    }

    /// The limit now and the calls XNAT is working on.
    #[cfg(test)]
    pub fn current(&self) -> (usize, usize) {
        let s = self.lock();
        (s.limit.floor() as usize, s.in_flight)
    }

    fn publish(&self, s: &State) {
        crate::metrics::xnat_concurrency(s.limit.floor() as i64, s.in_flight as i64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.limiter.lock();
        s.in_flight -= 1;
        self.limiter.publish(&s);
        drop(s);
        self.limiter.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_bounded_and_freed_in_turn() {
        let l = Limiter::new(1, 2, Duration::from_secs(1));
        let deadline = Instant::now() + Duration::from_secs(1);
        let a = l.acquire(deadline).await.unwrap();
        let _b = l.acquire(deadline).await.unwrap();
        assert!(l.acquire(deadline).await.is_none(), "a third call waits");
        let waiter = tokio::spawn({
            let l = l.clone();
            async move {
                l.acquire(Instant::now() + Duration::from_secs(1))
                    .await
                    .is_some()
            }
        });
        tokio::task::yield_now().await;
        drop(a);
        assert!(waiter.await.unwrap(), "a freed slot goes to the waiter");
        assert_eq!(
            l.current().1,
            1,
            "the waiter has finished; one slot is still held"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_halves_on_timeouts_and_grows_back_on_answers() {
        let l = Limiter::new(2, 16, Duration::from_secs(2));
        l.ended(Ending::TimedOut);
        assert_eq!(l.current().0, 8);
        assert!(l.timing_out());
        // A burst of timeouts within one window is one decrease, not sixteen.
        for _ in 0..10 {
            l.ended(Ending::TimedOut);
        }
        assert_eq!(l.current().0, 8);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!l.timing_out());
        l.ended(Ending::Overloaded);
        l.ended(Ending::Overloaded);
        assert_eq!(l.current().0, 4);
        tokio::time::advance(Duration::from_secs(2)).await;
        for _ in 0..3 {
            l.ended(Ending::TimedOut);
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        assert_eq!(l.current().0, 2, "never under the policy's minimum");
        for _ in 0..200 {
            l.ended(Ending::Answered);
        }
        assert_eq!(l.current().0, 16, "back to the maximum, never over it");
        l.ended(Ending::Other);
        assert_eq!(l.current().0, 16);
    }
}
