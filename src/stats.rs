//! Counters an agent keeps about its traffic: useful to users, and what the tests assert on.

use std::sync::atomic::{AtomicU64, Ordering};

/// Declares every counter once: the live atomics ([`Counters`]), the snapshot ([`Stats`], which
/// also carries the gauges) and the copy between them. The C struct (`ffi::X0xStats`) and the
/// Python `Stats` mirror [`Stats`]; the compiler and a Python test check that they agree.
macro_rules! counters {
    (
        counters { $( $(#[doc = $doc:literal])* $name:ident, )* }
        gauges { $( $(#[doc = $gdoc:literal])* $gauge:ident, )* }
    ) => {
        /// Live counters, updated with relaxed atomics from the network tasks.
        #[derive(Debug, Default)]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $name: AtomicU64, )*
        }

        /// A snapshot of an agent's counters.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Stats {
            $( $(#[doc = $doc])* pub $name: u64, )*
            $( $(#[doc = $gdoc])* pub $gauge: u64, )*
        }

        impl Counters {
            /// A snapshot of all counters, with the current gauges.
            pub fn snapshot(&self, $( $gauge: usize, )*) -> Stats {
                Stats {
                    $( $name: self.$name.load(Ordering::Relaxed), )*
                    $( $gauge: $gauge as u64, )*
                }
            }
        }
    };
}

counters! {
    counters {
        /// Messages this agent published (signed and sent).
        published,
        /// Envelopes (signed batches) this agent produced.
        envelopes_signed,
        /// Messages handed to subscriber queues (one per subscriber).
        delivered,
        /// Verified envelopes received from the gossip overlay, duplicates included.
        envelopes_received,
        /// Of those, envelopes seen before (suppressed: not delivered again, not forwarded).
        /// `duplicates / (envelopes_received - duplicates)` is the overlay's relative message
        /// redundancy as this agent sees it.
        duplicates,
        /// Incoming connections refused before the handshake: their address kept sending
        /// invalid messages (see `penalties`).
        connections_refused,
        /// Received envelopes dropped: the signature did not verify.
        dropped_bad_signature,
        /// Received envelopes dropped: they named a sender whose key the peer did not announce.
        dropped_wrong_sender,
        /// Received frames, envelopes or task-list sync messages dropped: they did not decode
        /// (a sync message also when it was not sealed with its list's key).
        dropped_malformed,
        /// Received frames over the size limit (the connection is closed).
        dropped_oversized,
        /// Received envelopes dropped as replays (a sequence number seen before from that
        /// sender).
        dropped_replay,
        /// Messages dropped from full subscriber queues.
        queue_overflow,
        /// Frame bytes received.
        bytes_in,
        /// Frame bytes sent.
        bytes_out,
        /// Times this agent's id, or a peer's, was seen live in two processes at once (the same
        /// agent key running twice); the later connection is refused.
        identity_conflicts,
    }
    gauges {
        /// Current gossip neighbours.
        neighbours,
        /// Open peer connections (neighbours, peers being answered, spares from simultaneous
        /// dials).
        connections,
    }
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
