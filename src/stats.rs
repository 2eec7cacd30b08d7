//! Counters an agent keeps about its traffic: useful to users, and what the tests assert on.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, updated with relaxed atomics from the network tasks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages this agent published (signed and sent).
    pub published: AtomicU64,
    /// Envelopes (signed batches) this agent produced.
    pub envelopes_signed: AtomicU64,
    /// Messages handed to subscriber queues (one per subscriber).
    pub delivered: AtomicU64,
    /// Verified envelopes received from the gossip overlay, duplicates included.
    pub envelopes_received: AtomicU64,
    /// Of those, envelopes seen before (suppressed: not delivered again, not forwarded).
    pub duplicates: AtomicU64,
    /// Incoming connections refused before the handshake: their address kept sending invalid
    /// messages (see `penalties`).
    pub connections_refused: AtomicU64,
    /// Received envelopes dropped: the signature did not verify.
    pub dropped_bad_signature: AtomicU64,
    /// Received envelopes dropped: the sender id was not the id of the included key.
    pub dropped_wrong_sender: AtomicU64,
    /// Received frames or envelopes dropped: they did not decode.
    pub dropped_malformed: AtomicU64,
    /// Received frames over the size limit (the connection is closed).
    pub dropped_oversized: AtomicU64,
    /// Received envelopes dropped as replays (a sequence number seen before from that sender).
    pub dropped_replay: AtomicU64,
    /// Messages dropped from full subscriber queues.
    pub queue_overflow: AtomicU64,
    /// Frame bytes received.
    pub bytes_in: AtomicU64,
    /// Frame bytes sent.
    pub bytes_out: AtomicU64,
    /// Times this agent's id, or a peer's, was seen live in two processes at once (the same
    /// agent key running twice); the later connection is refused.
    pub identity_conflicts: AtomicU64,
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot of all counters.
    pub fn snapshot(&self, neighbours: usize, connections: usize) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            published: get(&self.published),
            envelopes_signed: get(&self.envelopes_signed),
            delivered: get(&self.delivered),
            envelopes_received: get(&self.envelopes_received),
            duplicates: get(&self.duplicates),
            connections_refused: get(&self.connections_refused),
            dropped_bad_signature: get(&self.dropped_bad_signature),
            dropped_wrong_sender: get(&self.dropped_wrong_sender),
            dropped_malformed: get(&self.dropped_malformed),
            dropped_oversized: get(&self.dropped_oversized),
            dropped_replay: get(&self.dropped_replay),
            queue_overflow: get(&self.queue_overflow),
            neighbours: neighbours as u64,
            connections: connections as u64,
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            identity_conflicts: get(&self.identity_conflicts),
        }
    }
}

/// A snapshot of an agent's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages this agent published.
    pub published: u64,
    /// Signed envelopes (batches) this agent produced.
    pub envelopes_signed: u64,
    /// Messages handed to subscriber queues (one per subscriber).
    pub delivered: u64,
    /// Verified envelopes received from the gossip overlay, duplicates included.
    pub envelopes_received: u64,
    /// Received envelopes that were duplicates (suppressed). `duplicates / (envelopes_received
    /// - duplicates)` is the overlay's relative message redundancy as this agent sees it.
    pub duplicates: u64,
    /// Incoming connections refused before the handshake because their address kept sending
    /// invalid messages.
    pub connections_refused: u64,
    /// Received envelopes dropped for a bad signature.
    pub dropped_bad_signature: u64,
    /// Received envelopes dropped for naming a sender whose key the peer did not announce.
    pub dropped_wrong_sender: u64,
    /// Received frames or envelopes dropped because they did not decode.
    pub dropped_malformed: u64,
    /// Received frames over the size limit.
    pub dropped_oversized: u64,
    /// Received envelopes dropped as replays.
    pub dropped_replay: u64,
    /// Messages dropped from full subscriber queues.
    pub queue_overflow: u64,
    /// Current gossip neighbours.
    pub neighbours: u64,
    /// Open peer connections (neighbours, peers being answered, spares from simultaneous dials).
    pub connections: u64,
    /// Frame bytes received.
    pub bytes_in: u64,
    /// Frame bytes sent.
    pub bytes_out: u64,
    /// Times an agent id was seen live in two processes at once (an agent key running twice).
    pub identity_conflicts: u64,
}
