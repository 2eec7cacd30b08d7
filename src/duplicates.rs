//! Which duplicate payloads may prune the broadcast tree.
//!
//! Plumtree prunes a link whenever a payload arrives twice: the copy that came second marks a
//! cycle in the eager graph, and dropping that link breaks the cycle. One eager graph serves
//! every publisher, though, and when payloads from several publishers cross the same cycle at
//! once, each of them prunes a *different* link of it: the graph falls apart, and the pieces
//! are repaired through the lazy path (IHave, then Graft after a timeout), whose grafts close
//! new cycles. Measured with 20 agents, 50 ms RTT and three publishers: a graft for ~60% of all
//! payloads, p50 latency 290 ms (a lazy repair on most paths) and 0.96 duplicates per payload.
//!
//! Every payload crosses every cycle of the eager graph, so the payloads of any one publisher
//! find every cycle, and they agree on where to cut it. So only duplicates from one publisher
//! at a time prune: the *pruner*, the publisher with the smallest agent id heard from within
//! [`PRUNER_TTL`] (every agent hears every publisher, so agents agree on it except for a moment
//! when it changes). Duplicates from other publishers are dropped here, before the gossip layer
//! sees them, counted but not pruned on.
//!
//! [`PRUNER_TTL`]: crate::duplicates::PRUNER_TTL

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::identity::AgentId;

/// How long the smallest recent publisher stays the pruner after its last payload.
pub const PRUNER_TTL: Duration = Duration::from_secs(2);
/// Payload ids remembered: duplicates arrive within a few round trips.
const SEEN_RETENTION: Duration = Duration::from_secs(5);
/// At most this many ids (oldest forgotten first; ~1.5 MiB); a duplicate of a forgotten
/// payload goes to the gossip layer, which still knows it, and may prune as in plain Plumtree.
/// Under load envelopes carry up to 256 messages, so this covers very high message rates.
const SEEN_CAP: usize = 1 << 14;

/// What to do with a received (verified) payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First copy: deliver and forward (the gossip layer does).
    New,
    /// A duplicate from the pruner: let the gossip layer prune the link it came on.
    Prune,
    /// A duplicate from another publisher: drop it here.
    Drop,
}

/// Payload ids seen recently and the current pruner.
#[derive(Debug, Default)]
pub struct Duplicates {
    seen: HashSet<[u8; 32]>,
    order: VecDeque<([u8; 32], Instant)>,
    pruner: Option<(AgentId, Instant)>,
}

impl Duplicates {
    /// Classifies a payload with content hash `id`, published by `sender`, received at `now`.
    pub fn check(&mut self, id: [u8; 32], sender: AgentId, now: Instant) -> Verdict {
        self.expire(now);
        if self.seen.contains(&id) {
            return if self.is_pruner(sender, now) {
                Verdict::Prune
            } else {
                Verdict::Drop
            };
        }
        self.remember(id, sender, now);
        Verdict::New
    }

    /// Records a payload this agent broadcasts itself (its copies coming back are duplicates).
    pub fn remember(&mut self, id: [u8; 32], sender: AgentId, now: Instant) {
        if self.seen.len() >= SEEN_CAP {
            if let Some((old, _)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if self.seen.insert(id) {
            self.order.push_back((id, now));
        }
        match self.pruner {
            Some((pruner, since)) if pruner < sender && now.duration_since(since) <= PRUNER_TTL => {
            }
            _ => self.pruner = Some((sender, now)),
        }
    }

    fn is_pruner(&self, sender: AgentId, now: Instant) -> bool {
        match self.pruner {
            Some((pruner, since)) => pruner == sender || now.duration_since(since) > PRUNER_TTL,
            None => true,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(id, at)) = self.order.front() {
            if now.duration_since(at) <= SEEN_RETENTION {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(byte: u8) -> AgentId {
        AgentId([byte; 32])
    }

    #[test]
    fn first_copies_are_new_and_only_the_smallest_recent_publisher_prunes() {
        let mut d = Duplicates::default();
        let t = Instant::now();
        assert_eq!(d.check([1; 32], agent(9), t), Verdict::New);
        assert_eq!(d.check([2; 32], agent(5), t), Verdict::New);
        assert_eq!(d.check([1; 32], agent(9), t), Verdict::Drop);
        assert_eq!(d.check([2; 32], agent(5), t), Verdict::Prune);
        // A larger id does not take over while the pruner is recent...
        assert_eq!(d.check([3; 32], agent(7), t + PRUNER_TTL), Verdict::New);
        assert_eq!(d.check([3; 32], agent(7), t + PRUNER_TTL), Verdict::Drop);
        // ...and does once it has been silent for longer than PRUNER_TTL.
        let later = t + PRUNER_TTL + Duration::from_millis(1);
        assert_eq!(d.check([3; 32], agent(7), later), Verdict::Prune);
        assert_eq!(d.check([4; 32], agent(7), later), Verdict::New);
        assert_eq!(d.check([3; 32], agent(7), later), Verdict::Prune);
        // A smaller id takes over at once.
        assert_eq!(d.check([5; 32], agent(2), later), Verdict::New);
        assert_eq!(d.check([4; 32], agent(7), later), Verdict::Drop);
    }

    #[test]
    fn ids_are_forgotten_after_the_retention_and_beyond_the_cap() {
        let mut d = Duplicates::default();
        let t = Instant::now();
        d.remember([1; 32], agent(1), t);
        let later = t + SEEN_RETENTION + Duration::from_millis(1);
        assert_eq!(d.check([1; 32], agent(1), later), Verdict::New);
        for i in 0..SEEN_CAP as u32 + 10 {
            let mut id = [0; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            id[31] = 0xff;
            d.remember(id, agent(1), later);
        }
        assert_eq!(d.seen.len(), SEEN_CAP);
        assert_eq!(d.order.len(), SEEN_CAP);
    }
}
