//! Whom an agent knows beyond its neighbours, and the repair dials it has under way: the
//! address book, bootstrap and hinted addresses, top-up dials, lost peers and their probes,
//! and superseded incarnations. Plain bookkeeping and choices; the node (`node.rs`) decides
//! when to top up or probe and turns the choices into dials and neighbour requests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
use rand::RngExt;
use tokio::time::Instant;

use crate::identity::AgentId;
use crate::net;
use crate::overlay::links::Links;
use crate::wire;

/// Peer addresses remembered at most.
const ADDR_BOOK_CAP: usize = 4096;
/// Top-up dials at once. A dial to a dead address takes a whole dial timeout, and one at a
/// time let a dead bootstrap peer hold up every other candidate (R3: survivors whose bootstrap
/// peer was killed stayed below 3 neighbours for 9 s or for good).
const TOP_UP_DIALS: usize = 3;
/// Probe dials to lost peers at once (one new one per top-up period).
const PROBE_DIALS: usize = 2;
/// Probes and top-up dials give up sooner than a join: many go to dead peers, and a dead one
/// holds a dial slot for this long (5 s slots made R3 survivors take 7 s now and then).
pub(crate) const REPAIR_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Lost peers are probed for this long, at most this many.
const LOST_RETENTION: Duration = Duration::from_secs(300);
const LOST_CAP: usize = 256;
/// Incarnations that a newer one of the same agent replaced, remembered this long (at most
/// [`SUPERSEDED_CAP`]): a connection from one of them is a second live copy of that agent.
const SUPERSEDED_RETENTION: Duration = Duration::from_secs(600);
const SUPERSEDED_CAP: usize = 1024;
/// Hello hints kept at most (see [`Membership::hints`]).
const HINTS_CAP: usize = 64;

/// Which repair dial a connection or a failed dial ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Repair {
    pub topped_up: bool,
    pub probed: bool,
}

impl Repair {
    pub(crate) fn any(self) -> bool {
        self.topped_up || self.probed
    }
}

/// An agent's knowledge of peers and its repair dials (see the module docs). Collections whose
/// order reaches a decision are B-trees, so one seed gives one run.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    /// Where each known peer listens (from hellos and the gossip layer's peer data).
    addr_book: BTreeMap<AgentId, SocketAddr>,
    /// The bootstrap addresses of the last join, for topping up.
    bootstrap: Vec<SocketAddr>,
    /// Addresses peers passed on in their hellos ([`wire::Hello::peers`]): top-up candidates
    /// besides the address book (which shuffles fill).
    hints: BTreeSet<SocketAddr>,
    /// Top-up dials under way, by address, with when they started.
    top_up_dials: HashMap<SocketAddr, Instant>,
    /// Peers lost while joined (their last connection timed out or failed, or a dial to them
    /// failed), with their address and when they were lost. Probed whatever the neighbour
    /// count, so that a healed partition is found again even when both sides have enough
    /// neighbours of their own (measured: with top-ups alone a 4|4 partition healed only when
    /// some agent happened to be below 3 neighbours).
    lost: BTreeMap<AgentId, (SocketAddr, Instant)>,
    /// Probe dials under way, by address, with when they started.
    probes: HashMap<SocketAddr, Instant>,
    /// Peers' incarnations that a newer one replaced, and when.
    superseded: HashMap<AgentId, (u64, Instant)>,
}

impl Membership {
    /// Remembers the bootstrap addresses of a join (an empty list keeps the last).
    pub(crate) fn set_bootstrap(&mut self, bootstrap: &[SocketAddr]) {
        if !bootstrap.is_empty() {
            self.bootstrap = bootstrap.to_vec();
        }
    }

    /// What a verified hello taught us: `peer` listens at `listen`, and passed on `hints`
    /// (our own address `me_at` excluded). Bounded: every authenticated key adds an entry, and
    /// keys cost an attacker nothing, so a full book forgets a random entry.
    pub(crate) fn learn_from_hello(
        &mut self,
        peer: AgentId,
        listen: SocketAddr,
        hints: Vec<SocketAddr>,
        me_at: SocketAddr,
        rng: &mut StdRng,
    ) {
        if self.addr_book.len() >= ADDR_BOOK_CAP && !self.addr_book.contains_key(&peer) {
            let victim = self
                .addr_book
                .keys()
                .nth(rng.random_range(0..self.addr_book.len()));
            if let Some(victim) = victim.copied() {
                self.addr_book.remove(&victim);
            }
        }
        self.addr_book.insert(peer, listen);
        self.hints.remove(&listen);
        for hint in hints {
            if self.hints.len() >= HINTS_CAP {
                break;
            }
            if hint != me_at && !self.addr_book.values().any(|addr| *addr == hint) {
                self.hints.insert(hint);
            }
        }
    }

    /// The address the gossip layer reports for `peer` (its peer data). A wildcard names no
    /// host (agents advertise a concrete address): it never replaces one we know.
    pub(crate) fn note_address(&mut self, peer: AgentId, addr: SocketAddr) {
        if !addr.ip().is_unspecified() || !self.addr_book.contains_key(&peer) {
            self.addr_book.insert(peer, addr);
        }
    }

    /// Where `peer` listens, if known.
    pub(crate) fn address(&self, peer: &AgentId) -> Option<SocketAddr> {
        self.addr_book.get(peer).copied()
    }

    /// Forgets `peer`'s address (it is most likely gone); returns it.
    pub(crate) fn forget(&mut self, peer: &AgentId) -> Option<SocketAddr> {
        self.addr_book.remove(peer)
    }

    /// Address-book entries of peers other than `me` that are not neighbours.
    pub(crate) fn others_known<'a>(
        &'a self,
        me: AgentId,
        neighbours: &'a BTreeSet<AgentId>,
    ) -> impl Iterator<Item = (&'a AgentId, &'a SocketAddr)> + 'a {
        self.addr_book
            .iter()
            .filter(move |(peer, _)| **peer != me && !neighbours.contains(peer))
    }

    /// Forgets top-up dials that should have ended by now (every dial ends within its
    /// timeout; this only guards the bookkeeping).
    pub(crate) fn expire_top_ups(&mut self, now: Instant) {
        self.top_up_dials
            .retain(|_, started| now.duration_since(*started) < 2 * REPAIR_DIAL_TIMEOUT);
    }

    /// Forgets lost peers past their retention, and probes that should have ended by now.
    pub(crate) fn expire_probes(&mut self, now: Instant) {
        self.lost
            .retain(|_, (_, lost_at)| now.duration_since(*lost_at) < LOST_RETENTION);
        self.probes
            .retain(|_, started| now.duration_since(*started) < 2 * REPAIR_DIAL_TIMEOUT);
    }

    /// Whom a top-up reaches out to: up to [`TOP_UP_DIALS`] (minus those under way) of the
    /// known, bootstrap and hinted peers that are neither neighbours nor linked nor being
    /// dialled, each with its id if known. Those without a link are recorded as top-up dials
    /// started `now` (the caller dials them). `None`: nobody to dial, or every slot is busy.
    pub(crate) fn top_up_targets(
        &mut self,
        me: AgentId,
        neighbours: &BTreeSet<AgentId>,
        links: &Links,
        now: Instant,
        rng: &mut StdRng,
    ) -> Option<Vec<(Option<AgentId>, SocketAddr)>> {
        // Addresses of peers we are linked to already: dialing them again only opens a spare
        // connection (once one per second with two agents, leaking ~5 MiB a minute in R8).
        // A peer may be known under the address it advertises and the one we reached it at
        // (a bootstrap address such as 0.0.0.0:PORT or 127.0.0.1:PORT): both count.
        let linked: BTreeSet<SocketAddr> = links
            .iter()
            .flat_map(|link| {
                let advertised = self.addr_book.get(&link.peer).copied();
                advertised.into_iter().chain([link.remote])
            })
            .collect();
        let known: Vec<(Option<AgentId>, SocketAddr)> = self
            .others_known(me, neighbours)
            .map(|(peer, addr)| (Some(*peer), *addr))
            .chain(
                self.bootstrap
                    .iter()
                    .chain(&self.hints)
                    .filter(|addr| !linked.contains(&net::dialable(**addr)))
                    .map(|addr| (None, *addr)),
            )
            .filter(|(_, addr)| !self.top_up_dials.contains_key(addr))
            .collect();
        let free = TOP_UP_DIALS.saturating_sub(self.top_up_dials.len());
        if free == 0 || known.is_empty() {
            return None;
        }
        let targets: Vec<_> = known.into_iter().sample(rng, free);
        for (peer, addr) in &targets {
            if !peer.is_some_and(|peer| links.contains(&peer)) {
                self.top_up_dials.insert(*addr, now);
            }
        }
        Some(targets)
    }

    /// The lost peer to probe next, recorded as a probe started `now`: one not linked and not
    /// being dialled, if fewer than [`PROBE_DIALS`] probes are under way.
    pub(crate) fn probe_target(
        &mut self,
        links: &Links,
        now: Instant,
        rng: &mut StdRng,
    ) -> Option<(AgentId, SocketAddr)> {
        if self.probes.len() >= PROBE_DIALS {
            return None;
        }
        let candidates: Vec<(AgentId, SocketAddr)> = self
            .lost
            .iter()
            .filter(|(peer, (addr, _))| {
                !links.contains(peer)
                    && !self.probes.contains_key(addr)
                    && !self.top_up_dials.contains_key(addr)
            })
            .map(|(peer, (addr, _))| (*peer, *addr))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (peer, addr) = candidates[rng.random_range(0..candidates.len())];
        self.probes.insert(addr, now);
        Some((peer, addr))
    }

    /// A connection to `remote` came up, or a dial to it failed: which repair dial that ended.
    pub(crate) fn dial_ended(&mut self, remote: &SocketAddr) -> Repair {
        Repair {
            topped_up: self.top_up_dials.remove(remote).is_some(),
            probed: self.probes.remove(remote).is_some(),
        }
    }

    /// A dial to `addr` failed: it is no hint worth passing on.
    pub(crate) fn unreachable(&mut self, addr: &SocketAddr) {
        self.hints.remove(addr);
    }

    /// Remembers `peer` (at `addr`) as lost at `now`, to be probed. At most [`LOST_CAP`]: the
    /// oldest loss is forgotten. A failed probe keeps the original time, so lost peers expire
    /// [`LOST_RETENTION`] after the loss.
    pub(crate) fn remember_lost(&mut self, peer: AgentId, addr: SocketAddr, now: Instant) {
        if self.lost.len() >= LOST_CAP && !self.lost.contains_key(&peer) {
            let oldest = self
                .lost
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                self.lost.remove(&oldest);
            }
        }
        self.lost.entry(peer).or_insert((addr, now));
    }

    /// `peer` is linked again: no longer lost.
    pub(crate) fn found(&mut self, peer: &AgentId) {
        self.lost.remove(peer);
    }

    /// Forgets every lost peer (the agent left).
    pub(crate) fn forget_lost(&mut self) {
        self.lost.clear();
    }

    /// Remembers that `incarnation` of `peer` was replaced by a newer one at `now`.
    pub(crate) fn supersede(&mut self, peer: AgentId, incarnation: u64, now: Instant) {
        if self.superseded.len() >= SUPERSEDED_CAP {
            self.superseded
                .retain(|_, (_, at)| now.duration_since(*at) < SUPERSEDED_RETENTION);
            if self.superseded.len() >= SUPERSEDED_CAP {
                return;
            }
        }
        self.superseded.insert(peer, (incarnation, now));
    }

    /// Whether `incarnation` of `peer` was replaced by a newer one lately: a restarted agent's
    /// old run never connects again, so this is a second live process with the same agent key.
    pub(crate) fn is_superseded(&self, peer: AgentId, incarnation: u64, now: Instant) -> bool {
        self.superseded.get(&peer).is_some_and(|(old, at)| {
            *old == incarnation && now.duration_since(*at) < SUPERSEDED_RETENTION
        })
    }

    /// The addresses the next hellos pass on: a random few from the address book.
    pub(crate) fn peer_sample(&self, rng: &mut StdRng) -> Vec<SocketAddr> {
        self.addr_book
            .values()
            .copied()
            .sample(rng, wire::HELLO_PEERS)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::overlay::links::Link;

    fn peer(n: u8) -> AgentId {
        AgentId([n; 32])
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 5483))
    }

    fn link(n: u8) -> Link {
        Link {
            peer: peer(n),
            incarnation: 1,
            conn_id: u64::from(n),
            remote: addr(n),
        }
    }

    #[test]
    fn top_ups_skip_linked_and_busy_addresses_and_run_three_at_once() {
        let (mut members, mut rng, now) = (
            Membership::default(),
            StdRng::seed_from_u64(1),
            Instant::now(),
        );
        let me = peer(0);
        for n in 1..=8 {
            members.note_address(peer(n), addr(n));
        }
        let mut links = Links::default();
        let _ = links.add(link(1));
        let neighbours = BTreeSet::from([peer(2)]);
        let first = members
            .top_up_targets(me, &neighbours, &links, now, &mut rng)
            .unwrap();
        assert_eq!(first.len(), TOP_UP_DIALS);
        assert!(
            first.iter().all(|(p, _)| *p != Some(peer(2))),
            "a neighbour is no target: {first:?}"
        );
        let dialled = first.iter().filter(|(p, _)| *p != Some(peer(1))).count();
        assert_eq!(
            members.top_up_dials.len(),
            dialled,
            "only unlinked ones are dialled"
        );
        let busy: BTreeSet<_> = members.top_up_dials.keys().copied().collect();
        match members.top_up_targets(me, &neighbours, &links, now, &mut rng) {
            None => assert_eq!(busy.len(), TOP_UP_DIALS, "every slot busy"),
            Some(second) => {
                assert!(second.len() <= TOP_UP_DIALS - busy.len(), "{second:?}");
                assert!(second.iter().all(|(_, a)| !busy.contains(a)), "{second:?}");
            }
        }
        // Once the dials end, the slots are free again.
        for n in 1..=8 {
            let _ = members.dial_ended(&addr(n));
        }
        assert!(members.top_up_dials.is_empty());
    }

    #[test]
    fn lost_peers_are_probed_unless_linked_and_expire() {
        let (mut members, mut rng, now) = (
            Membership::default(),
            StdRng::seed_from_u64(2),
            Instant::now(),
        );
        let mut links = Links::default();
        let _ = links.add(link(1));
        members.remember_lost(peer(1), addr(1), now);
        members.remember_lost(peer(2), addr(2), now);
        assert_eq!(
            members.probe_target(&links, now, &mut rng),
            Some((peer(2), addr(2))),
            "the linked one is not probed"
        );
        assert_eq!(
            members.probe_target(&links, now, &mut rng),
            None,
            "one probe each"
        );
        assert_eq!(
            members.dial_ended(&addr(2)),
            Repair {
                topped_up: false,
                probed: true
            }
        );
        members.expire_probes(now + LOST_RETENTION);
        assert_eq!(members.probe_target(&links, now, &mut rng), None, "expired");
    }

    #[test]
    fn the_lost_list_and_the_address_book_are_bounded() {
        let (mut members, mut rng, now) = (
            Membership::default(),
            StdRng::seed_from_u64(3),
            Instant::now(),
        );
        for i in 0..=LOST_CAP as u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            members.remember_lost(AgentId(id), addr(1), now + Duration::from_millis(i.into()));
        }
        assert_eq!(members.lost.len(), LOST_CAP);
        assert!(
            !members.lost.contains_key(&AgentId([0; 32])),
            "the oldest went"
        );
        for i in 0..=ADDR_BOOK_CAP as u32 {
            let mut id = [1u8; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            members.learn_from_hello(AgentId(id), addr(2), Vec::new(), addr(0), &mut rng);
        }
        assert_eq!(members.addr_book.len(), ADDR_BOOK_CAP);
    }
}
