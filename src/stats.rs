//! Counters an agent keeps about its traffic: useful to users, and what the tests assert on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
        /// Messages this agent published (counted as its signer takes them, before any
        /// subscriber, here or at a neighbour, can have them).
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
        /// Envelope copies received on topics this agent takes part in neither as a subscriber
        /// nor as a publisher, duplicates included: each topic travels in a swarm of its own,
        /// so only copies already on their way when the agent left a topic's swarm.
        foreign_envelopes_in,
        /// The bytes of those envelope copies.
        foreign_bytes_in,
        /// Direct messages and requests this agent sent (each written to its recipient).
        direct_out,
        /// Direct messages and requests other agents sent to this one.
        direct_in,
        /// Of those, the ones refused (no inbox open, a duplicate request, a request dropped
        /// unanswered) or answered with a failure.
        direct_refused,
        /// Agent cards dropped: the signature did not verify, or the card named another agent
        /// than the one that presented it.
        cards_rejected,
        /// Origin frames sent: small batches this agent published, sent unsigned to its neighbours in
        /// the topic's swarm ahead of their signed envelopes (one per neighbour).
        origin_frames_out,
        /// Origin frames received from neighbours (well-formed ones).
        origin_frames_in,
        /// Of those, the ones delivered at once (before their signed envelopes); each batch's signed
        /// envelope is compared with it when it arrives and is not delivered again.
        origin_delivered,
        /// Of those, the ones not delivered: the sender is not a neighbour in that topic's swarm here,
        /// its previous envelope there was not delivered yet, or this one was (its signed envelope then
        /// delivers it, as usual).
        origin_ignored,
        /// Signed envelopes that carried another batch than the origin frame delivered under the same
        /// sequence number: the publisher equivocated; its connection was closed.
        origin_mismatches,
        /// Of the origin frames delivered, those whose signed envelope had not come 30 s later (a
        /// publisher that never signed what it sent, or that stopped in between): nobody else can
        /// check those messages.
        origin_unconfirmed,
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

/// One topic's traffic at one agent: envelope copies (signed batches of messages on the topic)
/// received and sent, duplicates and relayed copies included, and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopicStats {
    /// Envelope copies received.
    pub envelopes_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Envelope copies sent (our own, and relayed).
    pub envelopes_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
}

/// Topics tracked at most; past it, a topic nobody here subscribes to any more makes room.
const MAX_TRACKED_TOPICS: usize = 4096;

#[derive(Debug, Default)]
struct Tracked {
    stats: TopicStats,
    subscribed: bool,
}

/// Per-topic traffic for the topics this agent takes part in (subscribed to, or published on);
/// what arrives on other topics is counted as foreign in [`Counters`].
#[derive(Debug, Default)]
pub struct TopicTraffic {
    topics: Mutex<HashMap<Arc<str>, Tracked>>,
}

impl TopicTraffic {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Tracked>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This agent takes part in `topic` from now on; `subscribed`: whether it has a
    /// subscription to it now (else it publishes on it).
    pub(crate) fn take_part(&self, topic: &str, subscribed: bool) {
        let mut topics = self.lock();
        if let Some(tracked) = topics.get_mut(topic) {
            tracked.subscribed |= subscribed;
            return;
        }
        if topics.len() >= MAX_TRACKED_TOPICS {
            let stale = topics
                .iter()
                .find(|(_, t)| !t.subscribed)
                .map(|(k, _)| k.clone());
            match stale {
                Some(stale) => topics.remove(&stale),
                None => return,
            };
        }
        let tracked = Tracked {
            stats: TopicStats::default(),
            subscribed,
        };
        topics.insert(Arc::from(topic), tracked);
    }

    /// The last subscription to `topic` here closed.
    pub(crate) fn unsubscribed(&self, topic: &str) {
        if let Some(tracked) = self.lock().get_mut(topic) {
            tracked.subscribed = false;
        }
    }

    /// Counts an envelope copy of `bytes` received on `topic`.
    pub(crate) fn received(&self, topic: &str, bytes: usize, counters: &Counters) {
        match self.lock().get_mut(topic) {
            Some(tracked) => {
                tracked.stats.envelopes_in += 1;
                tracked.stats.bytes_in += bytes as u64;
            }
            None => {
                counters.add(&counters.foreign_envelopes_in, 1);
                counters.add(&counters.foreign_bytes_in, bytes as u64);
            }
        }
    }

    /// Counts an envelope copy of `bytes` sent on `topic` (foreign copies are not counted).
    pub(crate) fn sent(&self, topic: &str, bytes: usize) {
        if let Some(tracked) = self.lock().get_mut(topic) {
            tracked.stats.envelopes_out += 1;
            tracked.stats.bytes_out += bytes as u64;
        }
    }

    /// Bytes received on all the topics this agent takes part in.
    pub(crate) fn own_bytes_in(&self) -> u64 {
        self.lock()
            .values()
            .map(|tracked| tracked.stats.bytes_in)
            .sum()
    }

    /// The traffic of `topic`, if this agent takes part in it.
    pub fn get(&self, topic: &str) -> Option<TopicStats> {
        self.lock().get(topic).map(|tracked| tracked.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_counts_by_topic_and_the_rest_as_foreign() {
        let (traffic, counters) = (TopicTraffic::default(), Counters::default());
        traffic.take_part("mine", true);
        traffic.received("mine", 100, &counters);
        traffic.sent("mine", 40);
        traffic.received("theirs", 7, &counters);
        traffic.sent("theirs", 7);
        let mine = traffic.get("mine").unwrap();
        assert_eq!((mine.envelopes_in, mine.bytes_in), (1, 100));
        assert_eq!((mine.envelopes_out, mine.bytes_out), (1, 40));
        assert_eq!(traffic.get("theirs"), None);
        let stats = counters.snapshot(0, 0);
        assert_eq!((stats.foreign_envelopes_in, stats.foreign_bytes_in), (1, 7));
    }

    #[test]
    fn a_full_table_makes_room_only_from_topics_nobody_subscribes_to() {
        let traffic = TopicTraffic::default();
        for i in 0..MAX_TRACKED_TOPICS {
            traffic.take_part(&format!("t{i}"), i != 5);
        }
        traffic.take_part("new", true);
        assert!(traffic.get("new").is_some() && traffic.get("t5").is_none());
        traffic.take_part("newer", true);
        assert!(
            traffic.get("newer").is_none(),
            "every tracked topic is subscribed"
        );
        traffic.unsubscribed("t0");
        traffic.take_part("newer", false);
        assert!(traffic.get("newer").is_some() && traffic.get("t0").is_none());
    }
}
