//! The connection table: which connection the node sends on per peer, spare connections from
//! simultaneous dials, and frames waiting for a peer being dialed. Sans-IO: connections are the
//! driver's, named by id.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use bytes::Bytes;

use crate::identity::AgentId;

/// Frames kept for a peer we are still dialing.
const PENDING_CAP: usize = 4096;

/// A frame the node sends; its kind decides the stream it goes on and how the reader reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// An encoded gossip message.
    Gossip(Bytes),
    /// An encoded directory message (`overlay::directory::Message`).
    Directory(Bytes),
    /// This agent's signed card (`presence`); the driver sends it, never the node.
    Card(Bytes),
    /// An origin frame's body (`wire::Origin`): a batch this agent published, unsigned, for a
    /// neighbour in the batch's topic swarm.
    Origin(Bytes),
}

impl Outgoing {
    /// The encoded message's length.
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::Gossip(frame)
            | Outgoing::Directory(frame)
            | Outgoing::Card(frame)
            | Outgoing::Origin(frame) => frame.len(),
        }
    }
}

/// A connection the node adopted.
#[derive(Debug)]
pub(crate) struct Link {
    pub peer: AgentId,
    /// The peer agent run's incarnation at the other end.
    pub incarnation: u64,
    pub conn_id: u64,
    /// The address the connection reached us from (or that we dialed).
    pub remote: SocketAddr,
}

/// What [`Links::add`] made of a new connection.
pub(crate) enum Added {
    /// The peer's link: send these frames, queued while it was being dialed.
    Primary(Vec<Outgoing>),
    /// The peer has a link already: kept open and read, promoted if that one ends.
    Spare,
}

/// What a connection's end did to the table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It was a spare, or not in the table: nothing changes.
    Nothing,
    /// It was the peer's link, and a spare took its place.
    Replaced,
    /// It was the peer's link, and the peer has no connection left.
    Gone,
}

/// The node's connection table.
#[derive(Debug, Default)]
pub(crate) struct Links {
    /// The connection we send on, per peer.
    links: BTreeMap<AgentId, Link>,
    /// Extra connections from simultaneous dials: read from, kept open, promoted if needed.
    spares: Vec<Link>,
    pending: HashMap<AgentId, Vec<Outgoing>>,
}

impl Links {
    /// The link to `peer`.
    pub(crate) fn get(&self, peer: &AgentId) -> Option<&Link> {
        self.links.get(peer)
    }

    pub(crate) fn contains(&self, peer: &AgentId) -> bool {
        self.links.contains_key(peer)
    }

    /// Every peer's link (spares not included), in peer order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    /// Open connections: links and spares.
    pub(crate) fn connections(&self) -> usize {
        self.links.len() + self.spares.len()
    }

    /// Takes the link to `peer` out of the table (its spares stay).
    pub(crate) fn remove(&mut self, peer: &AgentId) -> Option<Link> {
        self.links.remove(peer)
    }

    /// Takes the link to `peer` out if it is connection `conn_id`.
    pub(crate) fn remove_connection(&mut self, peer: &AgentId, conn_id: u64) -> Option<Link> {
        if self.links.get(peer).is_some_and(|l| l.conn_id == conn_id) {
            self.links.remove(peer)
        } else {
            None
        }
    }

    /// Forgets `peer`'s spares (its old run's, when it restarted).
    pub(crate) fn forget_spares(&mut self, peer: &AgentId) {
        self.spares.retain(|spare| spare.peer != *peer);
    }

    /// Adds an adopted connection.
    pub(crate) fn add(&mut self, link: Link) -> Added {
        match self.links.entry(link.peer) {
            std::collections::btree_map::Entry::Occupied(_) => {
                self.spares.push(link);
                Added::Spare
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                let peer = link.peer;
                slot.insert(link);
                Added::Primary(self.pending.remove(&peer).unwrap_or_default())
            }
        }
    }

    /// Connection `conn_id` to `peer` ended.
    pub(crate) fn ended(&mut self, peer: &AgentId, conn_id: u64) -> Ended {
        if let Some(i) = self.spares.iter().position(|l| l.conn_id == conn_id) {
            self.spares.swap_remove(i);
            return Ended::Nothing;
        }
        if self.remove_connection(peer, conn_id).is_none() {
            return Ended::Nothing;
        }
        match self.spares.iter().position(|l| l.peer == *peer) {
            Some(i) => {
                let spare = self.spares.swap_remove(i);
                self.links.insert(*peer, spare);
                Ended::Replaced
            }
            None => Ended::Gone,
        }
    }

    /// Empties the table: every link and spare, to be closed; queued frames are dropped.
    pub(crate) fn take_all(&mut self) -> Vec<Link> {
        self.pending.clear();
        let mut all: Vec<Link> = std::mem::take(&mut self.links).into_values().collect();
        all.append(&mut self.spares);
        all
    }

    /// Queues `frame` for `peer`, which has no link yet (at most [`PENDING_CAP`]); true if it
    /// is the first, so that the peer must be dialed.
    pub(crate) fn queue(&mut self, peer: AgentId, frame: Outgoing) -> bool {
        let queue = self.pending.entry(peer).or_default();
        if queue.len() < PENDING_CAP {
            queue.push(frame);
        }
        queue.len() == 1
    }

    /// Drops what is queued for `peer` (it cannot be reached).
    pub(crate) fn drop_queued(&mut self, peer: &AgentId) {
        self.pending.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(peer: u8, conn_id: u64) -> Link {
        Link {
            peer: AgentId([peer; 32]),
            incarnation: 1,
            conn_id,
            remote: "10.0.0.1:7000".parse().unwrap(),
        }
    }

    #[test]
    fn frames_wait_for_the_link_and_a_spare_takes_over_when_it_ends() {
        let peer = AgentId([1; 32]);
        let frame = |bytes: &'static [u8]| Outgoing::Gossip(Bytes::from_static(bytes));
        assert!(Links::default().queue(peer, frame(b"a")));
        let mut links = Links::default();
        assert!(links.queue(peer, frame(b"a")));
        assert!(
            !links.queue(peer, Outgoing::Directory(Bytes::from_static(b"b"))),
            "dialed once"
        );
        match links.add(link(1, 10)) {
            Added::Primary(frames) => assert_eq!(frames.len(), 2),
            Added::Spare => panic!("the first connection is the link"),
        }
        assert!(matches!(links.add(link(1, 11)), Added::Spare));
        assert_eq!(links.connections(), 2);
        assert_eq!(links.ended(&peer, 99), Ended::Nothing);
        assert_eq!(links.ended(&peer, 10), Ended::Replaced);
        assert_eq!(links.get(&peer).map(|l| l.conn_id), Some(11));
        assert_eq!(links.ended(&peer, 11), Ended::Gone);
        assert_eq!(links.connections(), 0);
    }
}
