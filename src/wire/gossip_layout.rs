//! The byte layout of iroh-gossip's messages, read and written where its types are private.
//! The one file to review when the `=0.101.0` pin moves: the node's tests build real messages
//! through the proto state machine and check every function here against them.

use super::{put_varint, read_varint};

/// If `frame` is an encoded gossip **data** message (`proto::Message` → topic `Gossip` →
/// plumtree `Gossip`), returns its content: the bytes we must verify before the gossip layer may
/// deliver or forward them. `None` for control messages.
///
/// iroh-gossip keeps these types private, so this reads their postcard layout directly
/// (`[u8; 32]` topic, variant 1, variant 0, `[u8; 32]` id, length-prefixed content). The crate is
/// pinned to an exact version, and a test builds a real data message through the proto state
/// machine and checks this against it.
pub fn gossip_data_content(frame: &[u8]) -> Option<&[u8]> {
    split_gossip_data(frame).map(|(content, _)| content)
}

/// The most hops a data message may claim. The gossip layer forwards a message with its round
/// plus one in a `u16`, which a peer could set to 65535 to overflow (a panic in builds with
/// overflow checks, found by fuzzing); no real path is anywhere near this long.
pub const MAX_GOSSIP_ROUND: u64 = 1024;

/// The delivery round (hops so far) a gossip data frame claims: `Some` for swarm scope, `None`
/// for neighbour scope and for anything that is not a data frame. Unsigned: any relay sets it.
pub fn gossip_data_round(frame: &[u8]) -> Option<u64> {
    const SCOPE_SWARM: u64 = 0;
    let (_, rest) = split_gossip_data(frame)?;
    let (scope, rest) = read_varint(rest)?;
    if scope != SCOPE_SWARM {
        return None;
    }
    read_varint(rest).map(|(round, _)| round)
}

const TOPIC_MESSAGE_GOSSIP: u64 = 1;
const PLUMTREE_GOSSIP: u64 = 0;
const PLUMTREE_IHAVE: u64 = 3;

/// The bytes after the broadcast-layer variant tag, if `frame` is a broadcast (plumtree)
/// message of variant `variant`.
fn plumtree_body(frame: &[u8], variant: u64) -> Option<&[u8]> {
    let rest = frame.get(32..)?;
    let (outer, rest) = read_varint(rest)?;
    let (inner, rest) = read_varint(rest)?;
    (outer == TOPIC_MESSAGE_GOSSIP && inner == variant).then_some(rest)
}

/// The smallest delivery round an IHave frame announces; `None` for every other frame. Layout
/// as for [`gossip_data_content`], then a varint count and per entry a `[u8; 32]` id and the
/// round (a varint). Unsigned, like the round of a data frame: only a hint.
pub fn ihave_min_round(frame: &[u8]) -> Option<u64> {
    let rest = plumtree_body(frame, PLUMTREE_IHAVE)?;
    let (count, mut rest) = read_varint(rest)?;
    let mut min: Option<u64> = None;
    for _ in 0..count {
        let (round, after) = read_varint(rest.get(32..)?)?;
        min = Some(min.map_or(round, |m| m.min(round)));
        rest = after;
    }
    min
}

/// An encoded gossip IHave on `topic` announcing payload ids with their delivery rounds, as
/// the gossip layer's lazy push writes one (layout as in [`ihave_min_round`]); rounds are
/// capped at [`MAX_GOSSIP_ROUND`]. The proto offers no way to announce payloads to one peer,
/// and the node needs one (see `overlay::node::Node::announce_recent`).
pub fn ihave_frame(topic: &[u8; 32], ihaves: &[([u8; 32], u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 12 + ihaves.len() * 35);
    out.extend_from_slice(topic);
    put_varint(&mut out, TOPIC_MESSAGE_GOSSIP);
    put_varint(&mut out, PLUMTREE_IHAVE);
    put_varint(&mut out, ihaves.len() as u64);
    for (id, round) in ihaves {
        out.extend_from_slice(id);
        put_varint(&mut out, (*round).min(MAX_GOSSIP_ROUND));
    }
    out
}

const TOPIC_MESSAGE_SWARM: u64 = 0;
const HYPARVIEW_NEIGHBOR: u64 = 4;
const HYPARVIEW_DISCONNECT: u64 = 5;
const PRIORITY_HIGH: u64 = 0;
const OPTION_SOME: u8 = 1;

/// An encoded high-priority HyParView `Neighbor` request on `topic` carrying the sender's peer
/// data, as the membership layer writes one after a `ForwardJoin` walk ends (layout: topic,
/// variant 0 `Swarm`, variant 4 `Neighbor`, priority 0 `High`, `Some`, length-prefixed data).
/// The receiver adds the sender to its active view, dropping at most one random neighbour, and
/// answers with its own `Neighbor`. The proto sends one only when its active view is empty;
/// the node needs one for an agent that has some neighbours but too few, where a `Join` would
/// make up to six peers drop a neighbour each (see `overlay::node::Node::ask_to_be_neighbour`).
pub fn neighbour_request_frame(topic: &[u8; 32], peer_data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 8 + peer_data.len());
    out.extend_from_slice(topic);
    put_varint(&mut out, TOPIC_MESSAGE_SWARM);
    put_varint(&mut out, HYPARVIEW_NEIGHBOR);
    put_varint(&mut out, PRIORITY_HIGH);
    out.push(OPTION_SOME);
    put_varint(&mut out, peer_data.len() as u64);
    out.extend_from_slice(peer_data);
    out
}

/// An encoded HyParView `Disconnect` on `topic` from a peer that stays alive (layout: topic,
/// variant 0 `Swarm`, variant 5 `Disconnect`, `alive`, and an obsolete `false`). The node feeds
/// one to a swarm that let a peer go while another swarm keeps its connection: that swarm must
/// forget the neighbour request it may have pending to the peer, as it does when a connection
/// ends (else the peer's next request is taken for the reply and never answered).
pub fn disconnect_frame(topic: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 4);
    out.extend_from_slice(topic);
    put_varint(&mut out, TOPIC_MESSAGE_SWARM);
    put_varint(&mut out, HYPARVIEW_DISCONNECT);
    out.extend_from_slice(&[1, 0]);
    out
}

/// Splits a gossip data frame into its content and the bytes after it (the delivery scope).
fn split_gossip_data(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = plumtree_body(frame, PLUMTREE_GOSSIP)?;
    let rest = rest.get(32..)?;
    let (len, rest) = read_varint(rest)?;
    let len = usize::try_from(len).ok()?;
    Some((rest.get(..len)?, rest.get(len..)?))
}
