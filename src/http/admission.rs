//! Who holds the server's connection slots, and whom to close to make room.
//!
//! Every connection is admitted at once, so the accept loop never waits and a
//! new scrape never queues behind clients that hold sockets. Room is made by
//! closing old connections instead: past its own cap, a peer loses its
//! oldest connection; past the global cap, the peer holding the most does.
//! A scraper opens few connections and uses each at once, so a client
//! hoarding idle or half-sent sockets only ever closes its own.

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// A client as the caps count it: an IPv4 address, or an IPv6 /64 (a host
/// is usually given a whole /64, so counting its addresses would not cap it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Peer(IpAddr);

impl Peer {
    fn of(ip: IpAddr) -> Peer {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Peer(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = v6.to_bits() & !u128::from(u64::MAX);
                Peer(IpAddr::V6(Ipv6Addr::from_bits(prefix)))
            }
        }
    }
}

/// The open connections, per peer, and the caps on them.
#[derive(Debug)]
pub(super) struct Admission {
    per_peer: usize,
    total: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Each peer's connections, oldest first; a peer with none is absent.
    peers: HashMap<Peer, VecDeque<Slot>>,
    open: usize,
    next_id: u64,
}

/// One admitted connection; dropping it tells the connection to close.
#[derive(Debug)]
struct Slot {
    id: u64,
    _close: oneshot::Sender<()>,
}

/// A connection's place: freed when dropped.
#[derive(Debug)]
pub(super) struct Ticket {
    admission: Arc<Admission>,
    peer: Peer,
    id: u64,
    evicted: oneshot::Receiver<()>,
}

impl Admission {
    /// At most `per_peer` connections per peer and `total` in all (both at
    /// least one).
    pub(super) fn new(per_peer: usize, total: usize) -> Arc<Admission> {
        Arc::new(Admission {
            per_peer: per_peer.max(1),
            total: total.max(1),
            table: Mutex::default(),
        })
    }

    /// Admits a connection from `ip`, first closing the one that must make
    /// room for it, if any.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Ticket {
        let peer = Peer::of(ip);
        let mut table = self.lock();
        if table.count(peer) >= self.per_peer {
            table.evict_oldest(peer);
        } else if table.open >= self.total {
            table.evict_from_heaviest();
        }
        let (id, evicted) = table.insert(peer);
        Ticket {
            admission: Arc::clone(self),
            peer,
            id,
            evicted,
        }
    }

    /// The table is consistent after every statement that can panic, so a
    /// poisoned lock is still good to use.
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    fn count(&self, peer: Peer) -> usize {
        self.peers.get(&peer).map_or(0, VecDeque::len)
    }

    fn insert(&mut self, peer: Peer) -> (u64, oneshot::Receiver<()>) {
        let id = self.next_id;
        self.next_id += 1;
        let (close, evicted) = oneshot::channel();
        let slot = Slot { id, _close: close };
        self.peers.entry(peer).or_default().push_back(slot);
        self.open += 1;
        (id, evicted)
    }

    /// Closes `peer`'s oldest connection.
    fn evict_oldest(&mut self, peer: Peer) {
        let oldest = self.peers.get(&peer).and_then(|slots| slots.front());
        if let Some(id) = oldest.map(|slot| slot.id) {
            tracing::debug!(peer = %peer.0, "a peer at its cap: closing its oldest HTTP connection");
            self.remove(peer, id);
        }
    }

    /// Closes the oldest connection of the peer that holds the most (of
    /// those, the one whose oldest is oldest).
    fn evict_from_heaviest(&mut self) {
        let heaviest = self
            .peers
            .iter()
            .filter_map(|(peer, slots)| Some((*peer, slots.len(), slots.front()?.id)))
            .max_by_key(|&(_, count, oldest)| (count, Reverse(oldest)));
        if let Some((peer, _, id)) = heaviest {
            tracing::debug!(peer = %peer.0, "HTTP connections at the cap: closing the oldest of the peer holding the most");
            self.remove(peer, id);
        }
    }

    /// Forgets a connection (and so closes it, if it is still open).
    fn remove(&mut self, peer: Peer, id: u64) {
        let Some(slots) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(at) = slots.iter().position(|slot| slot.id == id) else {
            return;
        };
        slots.remove(at);
        self.open -= 1;
        if slots.is_empty() {
            self.peers.remove(&peer);
        }
    }
}

impl Ticket {
    /// Resolves when the connection was chosen to make room and must close
    /// now.
    pub(super) async fn evicted(&mut self) {
        // The sender only goes away with its slot: an error is the signal.
        let _ = (&mut self.evicted).await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.lock().remove(self.peer, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn is_evicted(ticket: &mut Ticket) -> bool {
        let closed = Err(oneshot::error::TryRecvError::Closed);
        ticket.evicted.try_recv() == closed
    }

    #[test]
    fn fault_a_peer_past_its_cap_loses_its_oldest_connection() {
        let admission = Admission::new(2, 100);
        let mut a = [0; 3].map(|_| admission.admit(ip("10.0.0.1")));
        let mut other = admission.admit(ip("10.0.0.2"));
        assert_eq!(a.each_mut().map(is_evicted), [true, false, false]);
        assert!(!is_evicted(&mut other));
        assert_eq!(admission.lock().open, 3);
    }

    #[test]
    fn fault_at_the_global_cap_the_heaviest_peer_makes_room() {
        let admission = Admission::new(8, 4);
        let mut light = admission.admit(ip("10.0.0.1"));
        let mut heavy = [0; 3].map(|_| admission.admit(ip("10.0.0.2")));
        let mut new = admission.admit(ip("10.0.0.3"));
        assert!(!is_evicted(&mut light) && !is_evicted(&mut new));
        assert_eq!(heavy.each_mut().map(is_evicted), [true, false, false]);
        assert_eq!(admission.lock().open, 4);
    }

    #[test]
    fn fault_closed_connections_free_their_slots() {
        let admission = Admission::new(1, 1);
        drop(admission.admit(ip("10.0.0.1")));
        let mut next = admission.admit(ip("10.0.0.1"));
        assert!(!is_evicted(&mut next));
        drop(next);
        assert_eq!(admission.lock().open, 0);
        assert!(admission.lock().peers.is_empty());
    }

    #[test]
    fn fault_an_ipv6_slash_64_is_one_peer_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            Peer::of(ip("2001:db8::1")),
            Peer::of(ip("2001:db8::ffff:2"))
        );
        assert_ne!(Peer::of(ip("2001:db8::1")), Peer::of(ip("2001:db8:0:1::1")));
        assert_eq!(Peer::of(ip("::ffff:10.0.0.1")), Peer::of(ip("10.0.0.1")));
    }
}
