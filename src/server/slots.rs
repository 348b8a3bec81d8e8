//! Connection slots of one listener: at most `max` connections, at most `per_peer` from one
//! address. One API server opens a connection per review in flight and all of them come from its
//! address, so the per-address cap sits above a spawn storm (see [`super::listen`]). When every
//! slot is taken, the connection idle longest makes room — so idle connections, however many,
//! never lock the API server out; busy ones are never cut.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::conn::ConnState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoSlot {
    #[error("this address already holds the most connections one address may")]
    Peer,
    #[error("every connection slot is busy with a request")]
    Busy,
}

impl NoSlot {
    /// The metric's `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            NoSlot::Peer => "per_address",
            NoSlot::Busy => "busy",
        }
    }
}

pub struct Slots {
    max: usize,
    per_peer: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Arc<ConnState>>,
    per_peer: HashMap<IpAddr, usize>,
}

/// One counted connection; uncounted when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    ip: IpAddr,
}

impl Slots {
    pub fn new(max: usize, per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            per_peer,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `ip`, evicting the connection idle longest when all are
    /// taken.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, state: Arc<ConnState>) -> Result<Slot, NoSlot> {
        let mut inner = self.lock();
        if inner.per_peer.get(&ip).copied().unwrap_or(0) >= self.per_peer {
            return Err(NoSlot::Peer);
        }
        let live = inner.conns.values().filter(|c| !c.is_evicted()).count();
        if live >= self.max {
            // Connections that never served a request go first: a client stalling handshakes
            // cannot push out the API server's keep-alive connections.
            let idle_longest = inner
                .conns
                .values()
                .filter(|c| !c.is_evicted())
                .filter_map(|c| Some(((c.has_served(), c.idle_since()?), c)))
                .min_by_key(|(key, _)| *key);
            match idle_longest {
                Some((_, c)) => c.evict(),
                None => return Err(NoSlot::Busy),
            }
        }
        inner.next += 1;
        let id = inner.next;
        inner.conns.insert(id, state);
        *inner.per_peer.entry(ip).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            id,
            ip,
        })
    }

    /// Connections counted now.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.slots.lock();
        inner.conns.remove(&self.id);
        if let Some(n) = inner.per_peer.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                inner.per_peer.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_listener_evicts_the_longest_idle_and_never_a_busy_one() {
        let slots = Slots::new(2, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let (a, b) = (ConnState::new(), ConnState::new());
        let _busy = a.request_started();
        let _sa = slots.admit(ip, a.clone()).unwrap();
        let _sb = slots.admit(ip, b.clone()).unwrap();
        // Per-address cap first.
        assert_eq!(slots.admit(ip, ConnState::new()).err(), Some(NoSlot::Peer));
        // Another address: b is idle, a is busy.
        let _sc = slots
            .admit("10.0.0.2".parse().unwrap(), ConnState::new())
            .unwrap();
        assert!(b.is_evicted() && !a.is_evicted());
    }

    #[tokio::test(start_paused = true)]
    async fn connections_that_never_served_go_before_ones_that_did() {
        let slots = Slots::new(2, 4);
        let served = ConnState::new();
        drop(served.request_started());
        tokio::time::advance(std::time::Duration::from_secs(10)).await;
        let fresh = ConnState::new();
        let _a = slots.admit("10.0.0.1".parse().unwrap(), served.clone());
        let _b = slots.admit("10.0.0.2".parse().unwrap(), fresh.clone());
        // `served` has been idle longer, but `fresh` (a handshake, say) never served anyone.
        let _c = slots.admit("10.0.0.3".parse().unwrap(), ConnState::new());
        assert!(fresh.is_evicted() && !served.is_evicted());
    }

    #[test]
    fn busy_slots_refuse() {
        let slots = Slots::new(1, 4);
        let a = ConnState::new();
        let _busy = a.request_started();
        let _sa = slots.admit("10.0.0.1".parse().unwrap(), a).unwrap();
        assert_eq!(
            slots
                .admit("10.0.0.2".parse().unwrap(), ConnState::new())
                .err(),
            Some(NoSlot::Busy)
        );
    }
}
