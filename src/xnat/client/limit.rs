//! How many calls XNAT is working on for the webhook, and how many it may be: an adaptive limit
//! between the policy's `minConcurrentRequests` and `maxConcurrentRequests`.
//!
//! A call counts until XNAT has finished with it, not until the review gave up on it: a
//! timed-out call keeps its slot while XNAT still works on it (Tomcat goes on after the client
//! stops listening), up to [`MAX_CALL_LIFETIME`], when its connection is closed. So the limit is
//! what XNAT really sees, even while it is slower than the timeout — also across a reload that
//! replaces the client: the new limiter takes over the calls the old one still has at XNAT
//! ([`Limiter::take_over`]).
//!
//! The limit halves (at most once per call timeout) when a call times out or XNAT answers 5xx,
//! and grows by one slot per limit's worth of successes (additive increase, multiplicative
//! decrease, as TCP does), so a struggling XNAT gets fewer calls at once and a recovered one
//! gets its full share back within a few round trips.
//!
//! Who waits for a freed slot, in order: calls whose answer many reviews share (a project's
//! `archive_spec`, an experiment, the login list: cached and asked once for all), then calls
//! about one user. In a surge of cold users, a review that got its user's projects then finds
//! the project's `archive_spec` asked at once, instead of behind every other user's first call.
//!
//! And the API server comes first: reviews from other callers (when the webhook can tell them
//! apart, [`crate::admission::Trust`]) run inside [`as_other_caller`], wait behind the API
//! server's and hold at most half the slots (none while the limit is 1), so a flood of forged
//! cold users can never take the slots the API server's spawns need.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The longest a call keeps its slot: past it, the call's connection is closed and its slot
/// freed, whether or not XNAT has finished.
pub const MAX_CALL_LIFETIME: Duration = Duration::from_secs(30);

tokio::task_local! {
    /// Set around a review whose caller is not the API server's: a task-local rather than an
    /// argument, because the slot is taken deep in the client, below every cache.
    static OTHER_CALLER: ();
}

/// Runs `review` as one from a caller that is not the API server's: its XNAT calls take at most
/// half the slots.
pub async fn as_other_caller<F: Future>(review: F) -> F::Output {
    OTHER_CALLER.scope((), review).await
}

/// Whether the running review is another caller's (see [`as_other_caller`]).
pub fn is_other_caller() -> bool {
    OTHER_CALLER.try_with(|_| ()).is_ok()
}

/// The slots of one client.
pub struct Limiter {
    min: usize,
    max: usize,
    /// The window in which one decrease is made and retries are not: the call timeout.
    window: Duration,
    state: Mutex<State>,
    /// One queue per [`Rank`]: a freed slot wakes the best rank waiting.
    queues: [Notify; RANKS],
}

/// Ranks of waiters, best first: the API server's shared calls, its per-user calls, then other
/// callers' shared and per-user calls.
const RANKS: usize = 4;

fn rank(other: bool, shared: bool) -> usize {
    usize::from(other) * 2 + usize::from(!shared)
}

struct State {
    limit: f64,
    in_flight: usize,
    /// Of those, calls of other callers' reviews.
    others_in_flight: usize,
    /// Calls waiting for a slot, by rank.
    waiting: [usize; RANKS],
    last_decrease: Option<Instant>,
    last_timeout: Option<Instant>,
    /// The limiter that took over this one's calls (a reload replaced the client).
    successor: Option<Arc<Limiter>>,
}

/// One call's slot; freed (and the next waiter woken) when dropped.
pub struct Slot {
    limiter: Arc<Limiter>,
    other: bool,
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
                others_in_flight: 0,
                waiting: [0; RANKS],
                last_decrease: None,
                last_timeout: None,
                successor: None,
            }),
            queues: Default::default(),
        });
        limiter.publish(&limiter.lock());
        limiter
    }

    /// Counts the calls `old` still has at XNAT as this limiter's, until they end: a reload that
    /// replaces the client must not double what XNAT is asked at once.
    pub fn take_over(self: &Arc<Self>, old: &Arc<Limiter>) {
        let mut o = old.lock();
        let mut s = self.lock();
        s.in_flight += o.in_flight;
        s.others_in_flight += o.others_in_flight;
        s.limit = s.limit.min(o.limit.max(self.min as f64));
        o.successor = Some(self.clone());
        self.publish(&s);
        drop((s, o));
        // Waiters of the old limiter look again: they now wait for this one's slots.
        for queue in &old.queues {
            queue.notify_waiters();
        }
    }

    /// The limiter that counts this one's calls now, if a reload replaced it.
    fn successor(&self) -> Option<Arc<Limiter>> {
        self.lock().successor.clone()
    }

    /// A slot, waiting for one until `deadline`; `None` when none came free in time. `shared`:
    /// the answer serves many reviews (it is cached for all), so it is asked first.
    pub async fn acquire(self: &Arc<Self>, deadline: Instant, shared: bool) -> Option<Slot> {
        let other = is_other_caller();
        let rank = rank(other, shared);
        let mut waiting = Waiting {
            limiter: self,
            rank,
            counted: false,
        };
        loop {
            let freed = self.queues[rank].notified();
            tokio::pin!(freed);
            // Registered before looking, so a slot freed in between still wakes this waiter.
            freed.as_mut().enable();
            let successor = {
                let mut s = self.lock();
                // Reviews that started before a reload still call the old client; checked under
                // the lock, so no slot is ever taken here once its calls moved on.
                let successor = s.successor.clone();
                if successor.is_some() {
                    waiting.done(&mut s);
                }
                successor
            };
            if let Some(next) = successor {
                return Box::pin(next.acquire(deadline, shared)).await;
            }
            {
                let mut s = self.lock();
                if s.successor.is_some() {
                    continue;
                }
                let limit = s.limit.floor() as usize;
                let room = s.in_flight < limit
                    && (!other || s.others_in_flight < limit / 2)
                    // No cutting in before a better rank already waiting.
                    && s.waiting[..rank].iter().all(|n| *n == 0);
                if room {
                    s.in_flight += 1;
                    s.others_in_flight += usize::from(other);
                    waiting.done(&mut s);
                    self.publish(&s);
                    if s.in_flight < limit {
                        // Two slots freed before this waiter ran: the next one hears of the other.
                        self.wake(&s);
                    }
                    return Some(Slot {
                        limiter: self.clone(),
                        other,
                    });
                }
                if !waiting.counted {
                    s.waiting[rank] += 1;
                    waiting.counted = true;
                }
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// Moves the limit after a call ended.
    pub fn ended(&self, ending: Ending) {
        if let Some(next) = self.successor() {
            return next.ended(ending);
        }
        let mut s = self.lock();
        let now = Instant::now();
        match ending {
            Ending::Answered => {
                let grown = (s.limit + 1.0 / s.limit).min(self.max as f64);
                let woke = grown.floor() > s.limit.floor();
                s.limit = grown;
                if woke {
                    self.wake(&s);
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
        if let Some(next) = self.successor() {
            return next.timing_out();
        }
        self.lock()
            .last_timeout
            .is_some_and(|at| at.elapsed() < self.window)
    }

    /// The limit now and the calls XNAT is working on.
    /// The limit now and the calls XNAT is working on.
    #[cfg(test)]
    pub fn current(&self) -> (usize, usize) {
        let s = self.lock();
        (s.limit.floor() as usize, s.in_flight)
    }

    /// Wakes the next waiter: the best rank waiting.
    fn wake(&self, s: &State) {
        if let Some(rank) = s.waiting.iter().position(|n| *n > 0) {
            self.queues[rank].notify_one();
        }
    }

    /// Frees one slot of this limiter, or of the one that took over its calls.
    fn release(&self, other: bool) {
        let mut s = self.lock();
        if let Some(next) = s.successor.clone() {
            drop(s);
            return next.release(other);
        }
        s.in_flight -= 1;
        s.others_in_flight -= usize::from(other);
        self.publish(&s);
        self.wake(&s);
    }

    fn publish(&self, s: &State) {
        if s.successor.is_none() {
            crate::metrics::xnat_concurrency(s.limit.floor() as i64, s.in_flight as i64);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A call counted as waiting, uncounted when it gets its slot or gives up.
struct Waiting<'a> {
    limiter: &'a Limiter,
    rank: usize,
    counted: bool,
}

impl Waiting<'_> {
    fn done(&mut self, s: &mut State) {
        if std::mem::take(&mut self.counted) {
            s.waiting[self.rank] -= 1;
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.counted {
            let mut s = self.limiter.lock();
            self.done(&mut s);
            // It may have been woken for a slot it no longer takes: pass the turn on.
            self.limiter.wake(&s);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.release(self.other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_bounded_and_freed_in_turn() {
        let l = Limiter::new(1, 2, Duration::from_secs(1));
        let deadline = Instant::now() + Duration::from_secs(1);
        let a = l.acquire(deadline, false).await.unwrap();
        let _b = l.acquire(deadline, false).await.unwrap();
        assert!(
            l.acquire(deadline, false).await.is_none(),
            "a third call waits"
        );
        let waiter = tokio::spawn({
            let l = l.clone();
            async move {
                l.acquire(Instant::now() + Duration::from_secs(1), false)
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

    #[tokio::test(start_paused = true)]
    async fn other_callers_hold_at_most_half_and_the_api_server_goes_first() {
        let l = Limiter::new(1, 4, Duration::from_secs(1));
        let soon = || Instant::now() + Duration::from_secs(1);
        let a = as_other_caller(l.acquire(soon(), false)).await.unwrap();
        let _b = as_other_caller(l.acquire(soon(), false)).await.unwrap();
        assert!(
            as_other_caller(l.acquire(soon(), false)).await.is_none(),
            "two of four is the others' share"
        );
        let _c = l.acquire(soon(), false).await.unwrap();
        // One slot left; an other caller waits first, then the API server: the slot freed
        // next goes to the API server.
        let _d = l.acquire(soon(), false).await.unwrap();
        let other = tokio::spawn({
            let l = l.clone();
            async move {
                as_other_caller(l.acquire(Instant::now() + Duration::from_secs(5), false))
                    .await
                    .is_some()
            }
        });
        tokio::task::yield_now().await;
        let first = tokio::spawn({
            let l = l.clone();
            async move {
                l.acquire(Instant::now() + Duration::from_millis(500), false)
                    .await
                    .map(|_| ())
            }
        });
        tokio::task::yield_now().await;
        drop(a);
        assert!(
            first.await.unwrap().is_some(),
            "the API server's review got the slot"
        );
        assert!(other.await.unwrap(), "and the other one the next");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_limiter_counts_the_calls_the_old_one_still_has() {
        let old = Limiter::new(1, 2, Duration::from_secs(1));
        let soon = || Instant::now() + Duration::from_secs(1);
        let abandoned = old.acquire(soon(), false).await.unwrap();
        let new = Limiter::new(1, 2, Duration::from_secs(1));
        new.take_over(&old);
        assert_eq!(
            new.current().1,
            1,
            "XNAT still works on the old client's call"
        );
        let _one = new.acquire(soon(), false).await.unwrap();
        assert!(
            new.acquire(soon(), false).await.is_none(),
            "two in all, not three"
        );
        // Reviews that started before the reload still ask the old client: same slots.
        assert!(old.acquire(soon(), false).await.is_none());
        drop(abandoned);
        assert_eq!(new.current().1, 1);
        assert!(old.acquire(soon(), false).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_many_reviews_share_goes_before_per_user_calls() {
        let l = Limiter::new(1, 1, Duration::from_secs(1));
        let later = || Instant::now() + Duration::from_secs(5);
        let held = l.acquire(later(), false).await.unwrap();
        let per_user: Vec<_> = (0..3)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { l.acquire(later(), false).await.map(|_| Instant::now()) })
            })
            .collect();
        tokio::task::yield_now().await;
        let shared = tokio::spawn({
            let l = l.clone();
            async move {
                let slot = l.acquire(later(), true).await;
                let at = Instant::now();
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(slot);
                at
            }
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        let shared_at = shared.await.unwrap();
        for t in per_user {
            let at = t.await.unwrap().expect("every call got its turn");
            assert!(at > shared_at, "the shared call went first");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn two_slots_freed_at_once_go_to_two_waiters() {
        let l = Limiter::new(1, 2, Duration::from_secs(1));
        let soon = || Instant::now() + Duration::from_secs(1);
        let (x, y) = (
            l.acquire(soon(), false).await,
            l.acquire(soon(), false).await,
        );
        let waiter = |shared| {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(soon(), shared).await })
        };
        let (a, c) = (waiter(true), waiter(false));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(l.lock().waiting, [1, 1, 0, 0], "both wait");
        // Both freed before either waiter runs: the first one woken passes the turn on.
        drop((x, y));
        // Each keeps its slot: a slot given back would wake the other anyway.
        let a = a.await.unwrap();
        assert!(a.is_some());
        let c = c.await.unwrap();
        assert!(c.is_some(), "the second slot did not sit free");
    }
}
