//! Connection slots of one listener: at most `max` connections. When the site names the control
//! plane's addresses, `reserved` of them are the control plane's alone: every other address
//! shares the rest, at most `per_peer` each, and can never evict a control-plane connection. One
//! API server opens a connection per review in flight, all from its address, so the control plane
//! has no per-address cap. When every slot it may take is taken, a new connection evicts the one
//! holding its slot for least: a handshake or a stalled request first, then the keep-alive
//! connection idle longest, oldest first — busy ones are never cut; the control plane's first
//! evicts any other address's connection without a request in flight, at once even if one is
//! arriving (it is not the API server's). Every refusal and eviction
//! is counted (`xnat_webhook_connections_refused_total`, `…_evicted_total`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::conn::ConnState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoSlot {
    #[error("this address already holds the most connections one address may")]
    Peer,
    #[error("every connection slot this address may take is busy with a request")]
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

/// How many connections a listener takes, and how many are the control plane's alone.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    pub max: usize,
    /// Only for control-plane addresses (0 when the site names none).
    pub reserved: usize,
    /// From one address outside the control plane.
    pub per_peer: usize,
}

pub struct Slots {
    port: &'static str,
    capacity: Capacity,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Held>,
    per_peer: HashMap<IpAddr, usize>,
}

struct Held {
    state: Arc<ConnState>,
    first: bool,
}

/// One counted connection; uncounted when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    ip: IpAddr,
    first: bool,
}

impl Slots {
    pub fn new(port: &'static str, capacity: Capacity) -> Arc<Self> {
        Arc::new(Self {
            port,
            capacity,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `ip` (`first`: a control-plane address), evicting the
    /// connection holding its slot for least when all it may take are taken.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        first: bool,
        state: Arc<ConnState>,
    ) -> Result<Slot, NoSlot> {
        let Capacity {
            max,
            reserved,
            per_peer,
        } = self.capacity;
        let mut inner = self.lock();
        if !first && inner.per_peer.get(&ip).copied().unwrap_or(0) >= per_peer {
            return Err(NoSlot::Peer);
        }
        // An evicted connection still finishing a request holds its slot until it closes.
        let holds = |h: &&Held| h.state.holds_slot();
        let live = |first_only: Option<bool>| {
            let wanted = |h: &&Held| first_only.is_none_or(|f| h.first == f);
            inner.conns.values().filter(wanted).filter(holds).count()
        };
        let full = live(None) >= max || (!first && live(Some(false)) >= max - reserved);
        if full {
            // Others make room among themselves. The control plane takes any other address's
            // connection without a request in flight first (a request arriving included: it is
            // not the API server's), then its own unused or idle ones.
            let key = |h: &Held| match (first, h.first) {
                (true, false) => h.state.without_request().map(|since| (0, since)),
                (false, true) => None,
                // Among the control plane's own: its idle keep-alive connections before its new
                // ones still on their way to a first request.
                (true, true) => h.state.eviction_key().map(|(idle, since)| {
                    let unused = !idle && h.state.eviction_kind() == "unused";
                    (if unused { 3 } else { 1 + u8::from(idle) }, since)
                }),
                (false, false) => {
                    (h.state.eviction_key()).map(|(idle, since)| (1 + u8::from(idle), since))
                }
            };
            let victim = inner
                .conns
                .values()
                .filter(|h| !h.state.is_evicted())
                .filter_map(|h| Some((key(h)?, h)))
                .min_by_key(|(key, _)| *key);
            let Some((_, victim)) = victim else {
                return Err(NoSlot::Busy);
            };
            if first && !victim.first {
                victim.state.cut();
            } else {
                victim.state.evict();
            }
            crate::metrics::connection_evicted(self.port, victim.state.eviction_kind());
        }
        inner.next += 1;
        let id = inner.next;
        inner.conns.insert(id, Held { state, first });
        if !first {
            *inner.per_peer.entry(ip).or_default() += 1;
        }
        Ok(Slot {
            slots: self.clone(),
            id,
            ip,
            first,
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
        if !self.first
            && let Some(n) = inner.per_peer.get_mut(&self.ip)
        {
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn slots(max: usize, reserved: usize, per_peer: usize) -> Arc<Slots> {
        Slots::new(
            "test",
            Capacity {
                max,
                reserved,
                per_peer,
            },
        )
    }

    #[test]
    fn a_full_listener_evicts_the_longest_idle_and_never_a_busy_one() {
        let slots = slots(2, 0, 2);
        let (a, b) = (ConnState::new(), ConnState::new());
        let _busy = a.request_started();
        drop(b.request_started());
        let _sa = slots.admit(ip("10.0.0.1"), false, a.clone()).unwrap();
        let _sb = slots.admit(ip("10.0.0.1"), false, b.clone()).unwrap();
        // Per-address cap first.
        let third = slots.admit(ip("10.0.0.1"), false, ConnState::new());
        assert_eq!(third.err(), Some(NoSlot::Peer));
        // Another address: b is idle, a is busy.
        let _sc = slots
            .admit(ip("10.0.0.2"), false, ConnState::new())
            .unwrap();
        assert!(b.is_evicted() && !a.is_evicted());
    }

    #[tokio::test(start_paused = true)]
    async fn connections_that_never_served_go_before_ones_that_did() {
        let slots = slots(2, 0, 4);
        let served = ConnState::new();
        drop(served.request_started());
        tokio::time::advance(std::time::Duration::from_secs(10)).await;
        let fresh = ConnState::new();
        let _a = slots.admit(ip("10.0.0.1"), false, served.clone());
        let _b = slots.admit(ip("10.0.0.2"), false, fresh.clone());
        // `served` has been idle longer, but `fresh` (a handshake, say) never served anyone.
        let _c = slots.admit(ip("10.0.0.3"), false, ConnState::new());
        assert!(fresh.is_evicted() && !served.is_evicted());
    }

    #[test]
    fn busy_slots_refuse() {
        let slots = slots(1, 0, 4);
        let a = ConnState::new();
        let _busy = a.request_started();
        let _sa = slots.admit(ip("10.0.0.1"), false, a).unwrap();
        let other = slots.admit(ip("10.0.0.2"), false, ConnState::new());
        assert_eq!(other.err(), Some(NoSlot::Busy));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_request_gives_up_its_slot() {
        let slots = slots(1, 0, 4);
        let stalled = ConnState::new();
        drop(stalled.request_started());
        stalled.read(); // one byte of the next request, then nothing
        let _s = slots.admit(ip("10.0.0.1"), false, stalled.clone()).unwrap();
        let early = slots.admit(ip("10.0.0.2"), false, ConnState::new());
        assert_eq!(early.err(), Some(NoSlot::Busy), "arriving, not yet stalled");
        tokio::time::advance(super::super::conn::STALLED_AFTER).await;
        let _t = slots
            .admit(ip("10.0.0.2"), false, ConnState::new())
            .unwrap();
        assert!(stalled.is_evicted());
    }

    #[test]
    fn the_control_plane_closes_another_addresss_arriving_request_at_once() {
        let slots = slots(2, 1, 4);
        let other = ConnState::new();
        other.read(); // one byte, as a client holding a slot on purpose sends
        let _o = slots.admit(ip("10.9.9.9"), false, other.clone()).unwrap();
        let _p = slots.admit(ip("10.0.0.1"), true, ConnState::new()).unwrap();
        let _q = slots.admit(ip("10.0.0.1"), true, ConnState::new()).unwrap();
        // Not the API server's request: its slot is free now, not once it has stalled.
        assert!(!other.holds_slot());
        let l = super::super::conn::Lifetimes {
            first_request: std::time::Duration::from_secs(10),
            headers: std::time::Duration::from_secs(10),
            idle: std::time::Duration::from_secs(300),
            request: std::time::Duration::from_secs(14),
            max_age: std::time::Duration::from_secs(1800),
        };
        assert_eq!(
            other.verdict(&l, true, false).0,
            Some(super::super::conn::Verdict::Close(
                "evicted for a new connection"
            ))
        );
    }

    #[test]
    fn others_never_push_the_control_plane_out() {
        let slots = slots(4, 2, 8);
        let plane: Vec<_> = (0..2).map(|_| ConnState::new()).collect();
        let _p: Vec<_> = plane
            .iter()
            .map(|c| slots.admit(ip("10.0.0.1"), true, c.clone()).unwrap())
            .collect();
        // Others share the two slots left, evicting each other's unused connections.
        let mut kept = Vec::new();
        for _ in 0..5 {
            kept.push(
                slots
                    .admit(ip("10.9.9.9"), false, ConnState::new())
                    .unwrap(),
            );
        }
        assert!(plane.iter().all(|c| !c.is_evicted()));
        // The control plane takes the others' slots before its own idle ones.
        let others_before = kept.len();
        let _q = slots.admit(ip("10.0.0.1"), true, ConnState::new()).unwrap();
        assert!(plane.iter().all(|c| !c.is_evicted()), "{others_before}");
        assert_eq!(slots.len(), 8, "evicted ones count until they close");
    }
}
